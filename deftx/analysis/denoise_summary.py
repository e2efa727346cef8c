"""Summaries of DeFT-X's denoising step: the rank chosen and energy kept, grouped three ways.

Pure and torch-free. Input is the ``denoise`` list of a ``selection`` event::

    {"name": "encoder.layer.0.attention.self.query.weight", "shape": [384, 384],
     "rank": 57, "energy_kept": 0.901}

Grouping ``type`` merges every layer's matrix of one kind (``attention.self.query``), ``layer``
merges the matrices of one transformer layer (``layer 0``; parameters outside the layer stack,
such as the embeddings, form ``other``), and ``matrix`` lists each matrix on its own: the matrices outside
the layer stack first, then layer by layer in numeric order (L2 before L10), each layer's in the order of
the list.

:func:`selection_kept` condenses a whole ``selection`` record (as ``deftx info``, the progress lines and
the dashboard show it): the rank range and median, the median energy kept, the residual entries kept
(a tail) and the share of the plain magnitude mask that the selection kept.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from statistics import fmean, median
from typing import Any

from deftx.records.schema import MatrixDenoised

GROUPINGS = ("type", "layer", "matrix")

_LAYER = re.compile(r"(?:^|\.)(?:layer|layers|h|block|blocks)\.(\d+)\.")
# Short names for the matrices of BERT-style encoders (XLM-R, mE5, mBERT); others keep their name.
_SHORT = (
    (re.compile(r"^attention\.self\.(query|key|value)$"), r"attn.\1"),
    (re.compile(r"^attention\.output\.dense$"), "attn.out"),
    (re.compile(r"^intermediate\.dense$"), "ffn.in"),
    (re.compile(r"^output\.dense$"), "ffn.out"),
    (re.compile(r"^embeddings\.(word|position|token_type)_embeddings$"), r"emb.\1"),
)
_MODEL_PREFIX = re.compile(r"^(?:bert|roberta|xlm_roberta|model|electra|deberta|distilbert|transformer)\.")


@dataclass(frozen=True)
class DenoisedMatrix:
    name: str
    rows: int | None
    cols: int | None
    rank: int
    energy_kept: float | None
    index: int = 0  # position in the selection event's list (the model's order)
    tail_kept: int = 0  # residual entries added back (DeFT-X's tail)

    @property
    def layer(self) -> int | None:
        match = _LAYER.search(self.name)
        return int(match.group(1)) if match else None

    @property
    def matrix_type(self) -> str:
        match = _LAYER.search(self.name)
        rest = self.name[match.end() :] if match else _MODEL_PREFIX.sub("", self.name)
        return re.sub(r"\.weight$", "", rest) or self.name

    @property
    def short_type(self) -> str:
        """``attn.query``, ``ffn.in``, ``emb.word``... (the full type when it is not a known one)."""
        kind = self.matrix_type
        for pattern, replacement in _SHORT:
            if pattern.match(kind):
                return pattern.sub(replacement, kind)
        return kind

    @property
    def short_name(self) -> str:
        """``L3 attn.query``; a matrix outside the layer stack is shown by its short type."""
        layer = self.layer
        return f"L{layer} {self.short_type}" if layer is not None else self.short_type

    @property
    def rank_fraction(self) -> float | None:
        if not self.rows or not self.cols:
            return None
        return self.rank / min(self.rows, self.cols)


@dataclass(frozen=True)
class DenoiseGroup:
    label: str
    matrices: int
    rank_mean: float
    rank_min: int
    rank_max: int
    energy_mean: float | None
    rank_fraction_mean: float | None


def parameter_type(name: str) -> str:
    """A parameter's short type over all layers: ``attn.query``, ``attn.query bias``, ``emb.word``, or
    its full type (``pooler.dense``) when it is not a known one."""
    bias = name.endswith(".bias")
    kind = DenoisedMatrix(name[: -len(".bias")] + ".weight" if bias else name, None, None, 0, None).short_type
    return f"{kind} bias" if bias else kind


def parse_denoise(entries: Any) -> list[DenoisedMatrix]:
    """The well-formed entries of a ``denoise`` list (models, or their JSON objects; others are skipped)."""
    out: list[DenoisedMatrix] = []
    if not isinstance(entries, list):
        return out
    for entry in entries:
        try:
            matrix = entry if isinstance(entry, MatrixDenoised) else MatrixDenoised.model_validate(entry)
        except ValueError:  # pydantic's ValidationError
            continue
        if matrix.rank is None:
            continue
        rows, cols = matrix.shape if len(matrix.shape) == 2 else (None, None)
        out.append(DenoisedMatrix(matrix.name, rows, cols, matrix.rank, matrix.energy_kept, len(out), matrix.tail_kept))
    return out


def _group_key(matrix: DenoisedMatrix, grouping: str) -> tuple[tuple[Any, ...], str]:
    """A sort key and the label: layers in numeric order, everything else by name."""
    layer = matrix.layer
    if grouping == "layer":
        return ((0, layer), f"layer {layer}") if layer is not None else ((1, 0), "other")
    if grouping == "type":
        return ((matrix.short_type,), matrix.short_type)
    return (layer_order(matrix), matrix.short_name)


def layer_order(matrix: DenoisedMatrix) -> tuple[int, int]:
    """A sort key: matrices outside the layer stack first, then by layer number, then the list's order."""
    layer = matrix.layer
    return (-1 if layer is None else layer, matrix.index)


def _group(label: str, members: list[DenoisedMatrix]) -> DenoiseGroup:
    ranks = [m.rank for m in members]
    energies = [m.energy_kept for m in members if m.energy_kept is not None]
    fractions = [f for f in (m.rank_fraction for m in members) if f is not None]
    return DenoiseGroup(
        label=label,
        matrices=len(members),
        rank_mean=fmean(ranks),
        rank_min=min(ranks),
        rank_max=max(ranks),
        energy_mean=fmean(energies) if energies else None,
        rank_fraction_mean=fmean(fractions) if fractions else None,
    )


def summarize(matrices: Iterable[DenoisedMatrix], grouping: str = "type") -> list[DenoiseGroup]:
    """One :class:`DenoiseGroup` per group, in a stable order."""
    if grouping not in GROUPINGS:
        raise ValueError(f"grouping must be one of {GROUPINGS}, not {grouping!r}")
    groups: dict[tuple[tuple[Any, ...], str], list[DenoisedMatrix]] = {}
    for matrix in matrices:
        groups.setdefault(_group_key(matrix, grouping), []).append(matrix)
    return [_group(key[1], groups[key]) for key in sorted(groups)]


def overall(matrices: list[DenoisedMatrix]) -> DenoiseGroup | None:
    """All matrices as one group (``None`` when there are none)."""
    return _group("all", matrices) if matrices else None


@dataclass(frozen=True)
class SelectionKept:
    """What a DeFT-X selection kept, over all its matrices."""

    matrices: int
    rank_min: int
    rank_max: int
    rank_median: float
    energy_median: float | None
    tail_kept: int  # residual entries kept, over all matrices
    overlap_with_magnitude: float | None  # share of the plain magnitude (LT-SFT) mask kept

    def text(self) -> str:
        """``rank 1-303 (median 74) over 75 matrices, energy kept 0.901 (median); 73.8% of the magnitude
        mask kept``."""
        text = f"rank {self.rank_min}-{self.rank_max} (median {self.rank_median:g}) over {self.matrices} matrices"
        if self.energy_median is not None:
            text += f", energy kept {self.energy_median:.3f} (median)"
        if self.tail_kept:
            text += f", {self.tail_kept:,} residual entries kept"
        if self.overlap_with_magnitude is not None:
            text += f"; {self.overlap_with_magnitude:.1%} of the magnitude mask kept"
        return text


def selection_kept(selection: Any) -> SelectionKept | None:
    """The summary of a ``selection`` record (its model or its JSON object); ``None`` for a selection
    without denoising (LT-SFT's, or a mask read from a file)."""
    if selection is None:
        return None
    get = selection.get if isinstance(selection, dict) else lambda name: getattr(selection, name, None)
    matrices = parse_denoise(get("denoise"))
    if not matrices:
        return None
    ranks = [m.rank for m in matrices]
    energies = [m.energy_kept for m in matrices if m.energy_kept is not None]
    overlap = get("overlap_with_magnitude")
    return SelectionKept(
        matrices=len(matrices), rank_min=min(ranks), rank_max=max(ranks), rank_median=median(ranks),
        energy_median=median(energies) if energies else None, tail_kept=sum(m.tail_kept for m in matrices),
        overlap_with_magnitude=float(overlap) if isinstance(overlap, (int, float)) and not isinstance(overlap, bool) else None,
    )
