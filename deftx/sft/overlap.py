"""How much two SFTs step on each other when composed: an interference report.

For a pair of SFTs A and B (sparse differences over the same base model), and for each group of
parameters (all of them, per matrix type, per layer):

* ``shared``: positions both change; ``jaccard`` = shared / positions either changes; ``chance``: the
  shared positions expected if the two picked their positions independently at random within each
  parameter (sum of ``a * b / numel``), so ``shared / chance`` says how much more they collide than chance;
* ``sign_disagreement``: the share of the shared positions where A and B move the weight in opposite
  directions (their sum then partly cancels);
* ``norm_share``: the share of the composed update's squared L2 norm, ``||phi_A + phi_B||^2``, that
  falls on the shared positions.

Torch-free (numpy and safetensors only), so the dashboard can compute it. Indices in an SFT are
sorted and unique, so the shared positions come from one sorted intersection per parameter.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deftx.errors import ArtifactError
from deftx.sft.manifest import DIFF_FILE, read_manifest, verify_file

_LAYER = re.compile(r"^(?P<before>.*?)(?P<index>\d+)\.(?P<after>.+)$")
_PARAM_SUFFIX = re.compile(r"\.(weight|bias)$")


@dataclass
class SparseArrays:
    """An SFT's sparse entries as numpy arrays: ``entries[name] = (sorted indices, values)``."""

    label: str
    entries: dict[str, tuple[np.ndarray, np.ndarray]]
    manifest: dict[str, Any] = field(default_factory=dict)

    def numel(self, name: str) -> int | None:
        shape = (self.manifest.get("shapes") or {}).get(name)
        return int(np.prod(shape)) if shape is not None else None


def read_sparse_arrays(directory: Path | str, label: str | None = None, *, verify: bool = True) -> SparseArrays:
    """The sparse entries of an SFT directory, read with safetensors into numpy (no torch); with
    ``verify``, the diff file is checked against the manifest's checksum first."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    directory = Path(directory)
    manifest = read_manifest(directory)
    if verify:
        verify_file(directory, manifest, DIFF_FILE)
    try:
        tensors = load_file(str(directory / DIFF_FILE))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ArtifactError(f"{directory / DIFF_FILE} is not readable ({exc}): corrupt or truncated") from None
    entries = {}
    for name in manifest.get("shapes") or {}:
        idx, values = tensors.get(f"{name}.indices"), tensors.get(f"{name}.values")
        if idx is None or values is None:
            raise ArtifactError(f"{directory / DIFF_FILE} has no entries for {name}")
        entries[name] = (idx.astype(np.int64, copy=False), values.astype(np.float64))
    return SparseArrays(label or str(directory), entries, manifest)


def parameter_group(name: str) -> tuple[str, str]:
    """``(matrix type, layer)`` of a parameter: ``encoder.layer.3.attention.self.query.weight`` ->
    ``("attention.self.query", "3")``; parameters outside the layers get the layer ``-``."""
    stem = _PARAM_SUFFIX.sub("", name)
    match = _LAYER.match(stem)
    if match:
        return match.group("after"), match.group("index")
    return stem, "-"


@dataclass
class Counts:
    a: int = 0  # entries of A
    b: int = 0  # entries of B
    shared: int = 0
    disagree: int = 0  # shared positions with opposite signs
    shared_sq: float = 0.0  # squared norm of A + B on the shared positions
    total_sq: float = 0.0  # squared norm of A + B
    chance: float = 0.0  # shared positions expected of independent random picks

    def add(self, other: Counts) -> None:
        self.a += other.a
        self.b += other.b
        self.shared += other.shared
        self.disagree += other.disagree
        self.shared_sq += other.shared_sq
        self.total_sq += other.total_sq
        self.chance += other.chance

    def as_dict(self) -> dict[str, Any]:
        union = self.a + self.b - self.shared
        return {
            "a": self.a, "b": self.b, "shared": self.shared,
            "jaccard": self.shared / union if union else 0.0,
            "shared_of_a": self.shared / self.a if self.a else 0.0,
            "shared_of_b": self.shared / self.b if self.b else 0.0,
            "sign_disagreement": self.disagree / self.shared if self.shared else None,
            "norm_share": self.shared_sq / self.total_sq if self.total_sq else 0.0,
            "chance": self.chance,
            "over_chance": self.shared / self.chance if self.chance else None,
        }


def parameter_counts(a: tuple[np.ndarray, np.ndarray] | None, b: tuple[np.ndarray, np.ndarray] | None,
                     numel: int | None = None) -> Counts:
    """The counts of one parameter (of ``numel`` entries, when known); either side may be absent."""
    if a is None or b is None:
        idx, values = a if a is not None else b  # type: ignore[misc]
        sq = float(np.dot(values, values))
        return Counts(a=len(idx) if a is not None else 0, b=len(idx) if b is not None else 0, total_sq=sq)
    (ia, va), (ib, vb) = a, b
    _, pa, pb = np.intersect1d(ia, ib, assume_unique=True, return_indices=True)
    sa, sb = va[pa], vb[pb]
    summed = sa + sb
    shared_sq = float(np.dot(summed, summed))
    only_a = np.ones(len(ia), dtype=bool)
    only_a[pa] = False
    only_b = np.ones(len(ib), dtype=bool)
    only_b[pb] = False
    rest_sq = float(np.dot(va[only_a], va[only_a]) + np.dot(vb[only_b], vb[only_b]))
    chance = len(ia) * len(ib) / numel if numel else 0.0
    return Counts(len(ia), len(ib), len(pa), int(np.count_nonzero(sa * sb < 0)), shared_sq, shared_sq + rest_sq, chance)


def pair_overlap(a: SparseArrays, b: SparseArrays) -> dict[str, Any]:
    """The interference report of one pair: totals, per matrix type, per layer, per parameter."""
    total = Counts()
    by_type: dict[str, Counts] = {}
    by_layer: dict[str, Counts] = {}
    per_parameter = {}
    for name in sorted(set(a.entries) | set(b.entries)):
        counts = parameter_counts(a.entries.get(name), b.entries.get(name), a.numel(name) or b.numel(name))
        per_parameter[name] = counts.as_dict()
        kind, layer = parameter_group(name)
        total.add(counts)
        by_type.setdefault(kind, Counts()).add(counts)
        by_layer.setdefault(layer, Counts()).add(counts)
    return {
        "a": a.label, "b": b.label,
        "a_sft": _describe(a.manifest), "b_sft": _describe(b.manifest),
        "total": total.as_dict(),
        "by_type": {k: v.as_dict() for k, v in sorted(by_type.items())},
        "by_layer": {k: v.as_dict() for k, v in sorted(by_layer.items(), key=lambda kv: _layer_order(kv[0]))},
        "per_parameter": per_parameter,
    }


def overlap_report(sfts: Sequence[SparseArrays]) -> dict[str, Any]:
    """Every pair of ``sfts`` (in the order given)."""
    if len(sfts) < 2:
        raise ArtifactError("an overlap report needs at least two SFTs")
    fingerprints = {s.manifest.get("base_fingerprint") for s in sfts} - {None}
    return {
        "sfts": [{"label": s.label, **_describe(s.manifest)} for s in sfts],
        "same_base": len(fingerprints) <= 1,
        "pairs": [pair_overlap(x, y) for x, y in itertools.combinations(sfts, 2)],
    }


def _describe(manifest: dict[str, Any]) -> dict[str, Any]:
    return {k: manifest.get(k) for k in ("kind", "method", "language", "task", "n_entries")}


def _layer_order(layer: str) -> tuple[int, int]:
    return (1, int(layer)) if layer.isdigit() else (0, 0)
