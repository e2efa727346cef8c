"""deftx: zero-shot cross-lingual transfer with composable sparse fine-tuning.

The public API is importable from the package and loads lazily, as peft's does: ``import deftx``
and the torch-free modules (``deftx.records``, ``deftx.errors``, ``deftx.config``, ``deftx.methods``,
``deftx.sparsity``, ``deftx.analysis``, ``deftx.data.registry``) do not import torch, so that the
dashboard and ``deftx --help`` open fast; a name such as ``deftx.train_language_sft`` imports its
module on first use.

    from deftx import DeftX, resolve_config, train_language_sft, train_task_sft, evaluate_transfer
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from deftx.version import __version__

# public name -> the module that defines it
_EXPORTS = {
    "TrainConfig": "deftx.config",
    "resolve_config": "deftx.config",
    "MethodConfig": "deftx.methods",
    "LtSft": "deftx.methods",
    "DeftX": "deftx.methods",
    "FullFt": "deftx.methods",
    "RankRule": "deftx.sparsity",
    "resolve_k": "deftx.sparsity",
    "Checkpointing": "deftx.experiment.lifecycle",
    "train_language_sft": "deftx.experiment.language",
    "train_task_sft": "deftx.experiment.task",
    "evaluate_transfer": "deftx.experiment.evaluation",
    "evaluate_language_model": "deftx.experiment.language",
    "compose_model": "deftx.experiment.inference",
    "SparseDiff": "deftx.sft.diff",
    "compose": "deftx.sft.diff",
    "denoise_difference": "deftx.methods.denoise",
    "select_top_k": "deftx.methods.selection",
    "train_sft": "deftx.training",
    "TransferPlan": "deftx.experiment.plan",
    "run_transfer": "deftx.experiment.executor",
    "build_pivots": "deftx.analysis.comparison",
    "read_records": "deftx.analysis.comparison",
    "DeftxError": "deftx.errors",
}

__all__ = ["__version__", *_EXPORTS]

if TYPE_CHECKING:  # for type checkers and editors; at run time the names load on first use
    from deftx.analysis.comparison import build_pivots, read_records
    from deftx.config import TrainConfig, resolve_config
    from deftx.errors import DeftxError
    from deftx.experiment.evaluation import evaluate_transfer
    from deftx.experiment.executor import run_transfer
    from deftx.experiment.inference import compose_model
    from deftx.experiment.language import evaluate_language_model, train_language_sft
    from deftx.experiment.lifecycle import Checkpointing
    from deftx.experiment.plan import TransferPlan
    from deftx.experiment.task import train_task_sft
    from deftx.methods import DeftX, FullFt, LtSft, MethodConfig
    from deftx.methods.denoise import denoise_difference
    from deftx.methods.selection import select_top_k
    from deftx.sft.diff import SparseDiff, compose
    from deftx.sparsity import RankRule, resolve_k
    from deftx.training import train_sft


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'deftx' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # once loaded, an ordinary attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
