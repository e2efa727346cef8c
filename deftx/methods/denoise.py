"""SVD denoising of a weight-difference matrix (DeFT-X).

``Delta = U S V^T``. Keep the top r singular components, ``L_r = U_r S_r V_r^T``, where r comes from a
rank rule (:class:`deftx.sparsity.RankRule`):

- ``energy:F``: the smallest r with ``sum_{i<=r} s_i^2 >= F * ||Delta||_F^2``;
- ``rank:R``: a fixed rank, clamped to ``min(m, n)``.

Optionally keep a fraction ``tail_keep`` of the residual ``H = Delta - L_r`` (its largest entries by
magnitude): ``Delta_denoised = L_r + Prune(H)``. ``tail_keep = 0`` is pure truncation.

The truncation is exact on every path. Small matrices take the dense SVD; larger ones the
eigen-decomposition of the p x p Gram matrix (p = the short side), accumulated in float64 row slices,
and ``L_r = Delta V_r V_r^T``: the same singular values and subspace as a dense SVD, also when the
singular values at the cut are nearly equal, for one m p^2 product instead of a tall SVD.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass

import torch

from deftx.errors import UsageError
from deftx.sparsity import RankRule, check_tail_keep

@dataclass
class DenoiseInfo:
    """What denoising did to one matrix."""

    name: str
    shape: tuple[int, int]
    rank: int
    energy_kept: float  # sum of the kept s_i^2 over ||Delta||_F^2
    frobenius: float
    svd: str  # "gram", "full" or "zero"
    tail_kept: int = 0  # residual entries added back

    def to_json(self) -> dict:
        out = asdict(self)
        out["shape"] = list(self.shape)
        out["energy_kept"] = round(self.energy_kept, 6)
        out["frobenius"] = float(f"{self.frobenius:.6g}")
        return out


def rank_from_energy(singular_values: torch.Tensor, total_energy: float, fraction: float) -> int | None:
    """Smallest r whose leading singular values hold ``fraction`` of ``total_energy``; None if these
    singular values do not reach it."""
    if total_energy <= 0:
        return 0
    cumulative = torch.cumsum(singular_values.double() ** 2, 0)
    reached = torch.nonzero(cumulative >= fraction * total_energy * (1 - 1e-12))
    if reached.numel() == 0:
        return None
    return int(reached[0]) + 1


_CHUNK = 1 << 22  # entries per slice when summing squares (no full-size float64 copy)
_ROWS = 1 << 14  # rows per slice when accumulating a Gram matrix


def squared_norm(matrix: torch.Tensor) -> float:
    """``||matrix||_F^2`` accumulated in float64, one slice at a time."""
    flat = matrix.reshape(-1)
    return sum(float(torch.linalg.vector_norm(c, dtype=torch.float64)) ** 2 for c in flat.split(_CHUNK))


def gram_spectrum(matrix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact singular values (descending) and the right singular vectors of the tall orientation,
    from the eigen-decomposition of the p x p Gram matrix (p = the short side), accumulated in row
    slices. Returns ``(s, v)`` with ``v`` p x p in float64."""
    tall = matrix if matrix.shape[0] >= matrix.shape[1] else matrix.T
    p = tall.shape[1]
    gram = torch.zeros(p, p, dtype=torch.float64, device=matrix.device)
    for rows in tall.split(_ROWS):
        rows = rows.double()  # float64 products: exact singular vectors also across a small gap
        gram += rows.T @ rows
    evals, evecs = torch.linalg.eigh(gram)
    return evals.flip(0).clamp_min(0).sqrt(), evecs.flip(1)


def _low_rank_factors(
    delta: torch.Tensor, rule: RankRule, svd: str, total: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int, str]:
    """``(left, right, S_r, r, path)`` with ``L_r = left @ right`` for the rank rule; ``total`` is
    ``||delta||_F^2``.

    Paths: ``full`` (the dense SVD: the reference, and for small matrices) and ``gram`` (the exact
    spectrum and singular vectors from the float64 Gram matrix: one m p^2 product and a p x p
    eigen-decomposition, p the short side). Both give the truncated SVD the method defines, also
    when singular values at the cut are nearly equal, where a randomized SVD does not."""
    m, n = delta.shape
    p = min(m, n)

    def rank(s: torch.Tensor) -> int:
        if rule.kind == "rank":
            return min(int(rule.value), p)
        return rank_from_energy(s, total, rule.value) or p

    if svd == "full" or p <= 64:
        u, s, vh = torch.linalg.svd(delta, full_matrices=False)
        r = rank(s)
        return u[:, :r] * s[:r], vh[:r], s[:r], r, "full"
    s, v = gram_spectrum(delta)
    r = rank(s)
    basis = v[:, :r].to(delta.dtype)
    if m >= n:  # basis = V_r: L_r = (Delta V_r) V_r^T
        return delta @ basis, basis.T, s[:r], r, "gram"
    return basis, basis.T @ delta, s[:r], r, "gram"  # basis = U_r: L_r = U_r (U_r^T Delta)


def denoise_difference(
    delta: torch.Tensor,
    rank_rule: str | RankRule = "energy:0.9",
    tail_keep: float = 0.0,
    *,
    svd: str = "auto",
    name: str = "",
) -> tuple[torch.Tensor, DenoiseInfo]:
    """Denoise one 2-D difference matrix. Returns ``(Delta_denoised, info)``.

    ``svd``: ``"auto"`` (the dense SVD for small matrices, else the exact spectrum from the float64
    Gram matrix) or ``"full"`` (always the dense SVD; the reference). Both truncate exactly."""
    if delta.dim() != 2:
        raise ValueError(f"denoise_difference needs a 2-D matrix, got shape {tuple(delta.shape)}")
    if svd not in ("auto", "full"):
        raise UsageError(f"svd must be 'auto' or 'full', not {svd!r}")
    rule = RankRule.parse(rank_rule)
    tail_keep = check_tail_keep(tail_keep)
    work = delta.detach().to(torch.float32)
    frob2 = squared_norm(work)
    shape = (int(work.shape[0]), int(work.shape[1]))
    if frob2 == 0.0:
        return torch.zeros_like(work), DenoiseInfo(name, shape, 0, 1.0, 0.0, "zero")
    left, right, s, r, which = _low_rank_factors(work, rule, svd, frob2)
    low_rank = left @ right
    del left, right
    energy_kept = float(s.double().pow(2).sum()) / frob2
    info = DenoiseInfo(name, shape, r, min(energy_kept, 1.0), frob2**0.5, which)
    if tail_keep > 0:
        residual = work - low_rank
        n_keep = int(round(tail_keep * residual.numel()))
        if n_keep > 0:
            flat = residual.reshape(-1)
            keep = torch.topk(flat.abs(), n_keep, sorted=False).indices
            pruned = torch.zeros_like(flat)
            pruned[keep] = flat[keep]
            low_rank = low_rank + pruned.view_as(low_rank)
            info.tail_kept = n_keep
    return low_rank, info


def matches_any(name: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)


def denoise_targets(
    names_and_shapes: Iterable[tuple[str, tuple[int, ...]]],
    include: Iterable[str] = ("*",),
    exclude: Iterable[str] = (),
) -> list[str]:
    """Names of the 2-D matrices to denoise: every 2-D one matching ``include`` and no ``exclude``."""
    include, exclude = list(include), list(exclude)
    return [
        name
        for name, shape in names_and_shapes
        if len(shape) == 2 and matches_any(name, include) and not matches_any(name, exclude)
    ]


def matrix_type(name: str) -> str:
    """A parameter name without its layer number: 'encoder.layer.3.attention.self.query.weight' ->
    'attention.self.query.weight' (for grouping summaries per matrix type)."""
    return re.sub(r"^.*?\blayers?\.\d+\.", "", name)
