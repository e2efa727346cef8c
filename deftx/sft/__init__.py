"""The SFT artifact: a sparse difference with its manifest (:mod:`~deftx.sft.diff`,
:mod:`~deftx.sft.manifest`), SFTs given as hub ids (:mod:`~deftx.sft.sources`), composable-sft's format
(:mod:`~deftx.sft.interop`) and the overlap of two SFTs (:mod:`~deftx.sft.overlap`).

The names below load on first use, so that the torch-free parts (manifest, sources, overlap) do not
import torch through this package.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "SparseDiff": "deftx.sft.diff",
    "compose": "deftx.sft.diff",
    "save_mask": "deftx.sft.diff",
    "load_mask": "deftx.sft.diff",
    "save_difference": "deftx.sft.diff",
    "load_difference": "deftx.sft.diff",
    "read_manifest": "deftx.sft.manifest",
    "sha256_file": "deftx.sft.manifest",
    "resolve_sft_source": "deftx.sft.sources",
}

__all__ = list(_EXPORTS)

if TYPE_CHECKING:
    from deftx.sft.diff import SparseDiff, compose, load_difference, load_mask, save_difference, save_mask
    from deftx.sft.manifest import read_manifest, sha256_file
    from deftx.sft.sources import resolve_sft_source


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'deftx.sft' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
