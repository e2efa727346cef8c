"""deftx: zero-shot cross-lingual transfer with composable sparse fine-tuning.

The public API is importable from the package and loads lazily, as peft's does: ``import deftx``
and the torch-free modules (``deftx.runs``, ``deftx.errors``, ``deftx.config``, ``deftx.methods``,
``deftx.sparsity``, ``deftx.results``, ``deftx.data.registry``) do not import torch, so that the
dashboard and ``deftx --help`` open fast; a name such as ``deftx.train_language_sft`` imports its
module on first use.

    from deftx import DeftX, resolve_config, train_language_sft, train_task_sft, evaluate_transfer
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

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
    "train_language_sft": "deftx.pipeline",
    "train_task_sft": "deftx.pipeline",
    "evaluate_transfer": "deftx.pipeline",
    "evaluate_language_model": "deftx.pipeline",
    "compose_model": "deftx.pipeline",
    "SparseDiff": "deftx.sft",
    "compose": "deftx.sft",
    "denoise_difference": "deftx.denoise",
    "select_top_k": "deftx.selection",
    "train_sft": "deftx.training",
    "TransferPlan": "deftx.transfer",
    "run_transfer": "deftx.transfer",
    "build_pivots": "deftx.results",
    "read_records": "deftx.results",
    "DeftxError": "deftx.errors",
}

__all__ = ["__version__", *_EXPORTS]

if TYPE_CHECKING:  # for type checkers and editors; at run time the names load on first use
    from deftx.config import TrainConfig, resolve_config
    from deftx.denoise import denoise_difference
    from deftx.errors import DeftxError
    from deftx.methods import DeftX, FullFt, LtSft, MethodConfig
    from deftx.pipeline import (compose_model, evaluate_language_model, evaluate_transfer, train_language_sft,
                                train_task_sft)
    from deftx.results import build_pivots, read_records
    from deftx.selection import select_top_k
    from deftx.sft import SparseDiff, compose
    from deftx.sparsity import RankRule, resolve_k
    from deftx.training import train_sft
    from deftx.transfer import TransferPlan, run_transfer


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'deftx' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # once loaded, an ordinary attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
