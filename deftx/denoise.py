"""SVD denoising of a weight-difference matrix (DeFT-X).

``Delta = U S V^T``. Keep the top r singular components, ``L_r = U_r S_r V_r^T``, where r comes from a
rank rule:

- ``energy:F``: the smallest r with ``sum_{i<=r} s_i^2 >= F * ||Delta||_F^2``;
- ``rank:R``: a fixed rank, clamped to ``min(m, n)``.

Optionally keep a fraction ``tail_keep`` of the residual ``H = Delta - L_r`` (its largest entries by
magnitude): ``Delta_denoised = L_r + Prune(H)``. ``tail_keep = 0`` is pure truncation.

Because ``||Delta||_F^2`` is the total energy, the energy rule needs only the leading singular
values: one round of a randomized range finder with power iterations finds them when the wanted
energy lies within the leading 32; otherwise the exact spectrum comes from the eigenvalues of the
p x p Gram matrix (p = the short side), and ``L_r = Delta V_r V_r^T``. Both are much cheaper than
the dense SVD of a tall matrix and choose the same rank.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass

import torch

from deftx.errors import UsageError

_RULE = re.compile(r"^\s*(energy|rank)\s*[:=]\s*([0-9.eE+-]+)\s*$")


@dataclass(frozen=True)
class RankRule:
    kind: str  # "energy" or "rank"
    value: float

    @classmethod
    def parse(cls, text: str | RankRule) -> RankRule:
        if isinstance(text, RankRule):
            return text
        match = _RULE.match(str(text))
        if not match:
            raise UsageError(
                f"malformed rank rule {text!r}",
                hint="use energy:F with 0 < F <= 1 (e.g. energy:0.9) or rank:R with a whole R >= 1 (e.g. rank:16)",
            )
        kind, raw = match.groups()
        try:
            value = float(raw)
        except ValueError:
            raise UsageError(f"malformed rank rule {text!r}: {raw!r} is not a number") from None
        if kind == "energy" and not 0 < value <= 1:
            raise UsageError(f"rank rule {text!r}: the energy fraction must be in (0, 1]")
        if kind == "rank" and (value < 1 or value != int(value)):
            raise UsageError(f"rank rule {text!r}: the rank must be a whole number >= 1")
        return cls(kind, value)

    def __str__(self) -> str:
        return f"energy:{self.value:g}" if self.kind == "energy" else f"rank:{int(self.value)}"


@dataclass
class DenoiseInfo:
    """What denoising did to one matrix."""

    name: str
    shape: tuple[int, int]
    rank: int
    energy_kept: float  # sum of the kept s_i^2 over ||Delta||_F^2
    frobenius: float
    svd: str  # "randomized", "gram", "full" or "zero"
    tail_kept: int = 0  # residual entries added back

    def to_json(self) -> dict:
        out = asdict(self)
        out["shape"] = list(self.shape)
        out["energy_kept"] = round(self.energy_kept, 6)
        out["frobenius"] = float(f"{self.frobenius:.6g}")
        return out


def check_tail_keep(tail_keep: float) -> float:
    if not 0.0 <= float(tail_keep) <= 1.0:
        raise UsageError(f"tail_keep = {tail_keep} must be a fraction in [0, 1]")
    return float(tail_keep)


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


def randomized_svd(
    matrix: torch.Tensor, q: int, niter: int = 4, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Leading ``q`` singular triplets of ``matrix`` (Halko et al. 2011, with re-orthonormalised
    power iterations). Returns U (m x q), S (q), Vh (q x n)."""
    m, n = matrix.shape
    transpose = m < n
    a = matrix.T if transpose else matrix  # tall: rows >= cols
    omega = torch.randn(a.shape[1], q, generator=generator, dtype=a.dtype, device=a.device)
    basis, _ = torch.linalg.qr(a @ omega)
    for _ in range(niter):
        basis, _ = torch.linalg.qr(a.T @ basis)
        basis, _ = torch.linalg.qr(a @ basis)
    small = basis.T @ a
    u_small, s, vh = torch.linalg.svd(small, full_matrices=False)
    u = basis @ u_small
    if transpose:
        return vh.T, s, u.T
    return u, s, vh


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
        gram += (rows.T @ rows).double()
    evals, evecs = torch.linalg.eigh(gram)
    return evals.flip(0).clamp_min(0).sqrt(), evecs.flip(1)


def _low_rank_factors(
    delta: torch.Tensor, rule: RankRule, svd: str, generator: torch.Generator, total: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int, str]:
    """``(left, right, S_r, r, path)`` with ``L_r = left @ right`` for the rank rule; ``total`` is
    ``||delta||_F^2``.

    Paths: ``full`` (the dense SVD: the reference, and for small matrices), ``randomized`` (a fixed
    small rank, or an energy rule met within the leading 32 singular values of one randomized
    round), ``gram`` (otherwise: the exact spectrum from the Gram matrix, so the rank is the full
    SVD's, at the cost of one m n^2 product and a p x p eigen-decomposition)."""
    m, n = delta.shape
    p = min(m, n)

    def fixed_rank() -> int:
        return min(int(rule.value), p)

    def full():
        u, s, vh = torch.linalg.svd(delta, full_matrices=False)
        r = fixed_rank() if rule.kind == "rank" else (rank_from_energy(s, total, rule.value) or p)
        return u[:, :r] * s[:r], vh[:r], s[:r], r, "full"

    def gram():
        s, v = gram_spectrum(delta)
        r = fixed_rank() if rule.kind == "rank" else (rank_from_energy(s, total, rule.value) or p)
        basis = v[:, :r].to(delta.dtype)
        if m >= n:  # basis = V_r: L_r = (Delta V_r) V_r^T
            return delta @ basis, basis.T, s[:r], r, "gram"
        return basis, basis.T @ delta, s[:r], r, "gram"  # basis = U_r: L_r = U_r (U_r^T Delta)

    def oversample(q: int) -> int:
        return max(16, q // 4)

    if svd == "full" or p <= 64:
        return full()
    if rule.kind == "rank":
        r = fixed_rank()
        if r + oversample(r) >= p // 2:
            return gram()
        u, s, vh = randomized_svd(delta, r + oversample(r), generator=generator)
        return u[:, :r] * s[:r], vh[:r], s[:r], r, "randomized"
    q = 32
    if q + oversample(q) < p // 2:
        u, s, vh = randomized_svd(delta, q + oversample(q), generator=generator)
        r = rank_from_energy(s[:q], total, rule.value)
        if r is not None:
            return u[:, :r] * s[:r], vh[:r], s[:r], r, "randomized"
    return gram()


def denoise_difference(
    delta: torch.Tensor,
    rank_rule: str | RankRule = "energy:0.9",
    tail_keep: float = 0.0,
    *,
    svd: str = "auto",
    name: str = "",
    seed: int = 0,
) -> tuple[torch.Tensor, DenoiseInfo]:
    """Denoise one 2-D difference matrix. Returns ``(Delta_denoised, info)``.

    ``svd``: ``"auto"`` (randomized where the rank is small against the matrix, else the exact
    spectrum from the Gram matrix; the rank is always the full SVD's up to rounding) or ``"full"``
    (always the dense SVD; the reference)."""
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
    generator = torch.Generator(device=work.device).manual_seed(seed)
    left, right, s, r, which = _low_rank_factors(work, rule, svd, generator, frob2)
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


def spectrum(delta: torch.Tensor, top: int = 32) -> dict:
    """Singular values and cumulative energy of a difference matrix (full SVD), for inspection."""
    s = torch.linalg.svdvals(delta.detach().to(torch.float32))
    energy = s.double() ** 2
    total = float(energy.sum())
    cumulative = (torch.cumsum(energy, 0) / total).tolist() if total > 0 else [1.0] * len(s)
    ranks = {f: (rank_from_energy(s, total, f) or len(s)) for f in (0.5, 0.8, 0.9, 0.95, 0.99)}
    return {
        "shape": list(delta.shape),
        "singular_values": [float(x) for x in s[:top]],
        "cumulative_energy": [round(x, 6) for x in cumulative[:top]],
        "rank_for_energy": {str(k): v for k, v in ranks.items()},
    }


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


def layer_index(name: str) -> int | None:
    match = re.search(r"\blayers?\.(\d+)\.", name)
    return int(match.group(1)) if match else None
