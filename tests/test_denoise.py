"""SVD denoising against a dense reference."""

import pytest
import torch

from deftx.methods.denoise import denoise_difference, denoise_targets, matrix_type, rank_from_energy, squared_norm
from deftx.errors import UsageError
from deftx.sparsity import RankRule


def low_rank_plus_noise(m, n, rank, noise=0.05, seed=0):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(m, rank, generator=g) @ torch.randn(rank, n, generator=g)
    # decaying strengths so singular values are well separated
    return a / a.norm() + noise * torch.randn(m, n, generator=g) / (m * n) ** 0.5


def reference(delta, rule, tail_keep=0.0):
    u, s, vh = torch.linalg.svd(delta.double(), full_matrices=False)
    energy = (s**2).cumsum(0) / (s**2).sum()
    if rule.kind == "energy":
        r = int(torch.nonzero(energy >= rule.value - 1e-12)[0]) + 1
    else:
        r = min(int(rule.value), min(delta.shape))
    low = (u[:, :r] * s[:r]) @ vh[:r]
    if tail_keep:
        h = delta.double() - low
        n_keep = round(tail_keep * h.numel())
        keep = torch.topk(h.abs().reshape(-1), n_keep).indices
        pruned = torch.zeros(h.numel(), dtype=torch.float64)
        pruned[keep] = h.reshape(-1)[keep]
        low = low + pruned.view_as(h)
    return low.float(), r


@pytest.mark.parametrize("shape", [(200, 120), (120, 300), (40, 40)])
@pytest.mark.parametrize("rule", ["energy:0.5", "energy:0.9", "energy:0.95", "rank:1", "rank:7", "rank:500"])
@pytest.mark.parametrize("svd", ["auto", "full"])
def test_matches_dense_svd(shape, rule, svd):
    delta = low_rank_plus_noise(*shape, rank=12)
    got, info = denoise_difference(delta, rule, svd=svd)
    want, r = reference(delta, RankRule.parse(rule))
    assert info.rank == r
    assert torch.allclose(got, want, atol=1e-5 * float(delta.abs().max()))
    assert 0 < info.energy_kept <= 1.0
    if rule.startswith("energy"):
        assert info.energy_kept >= RankRule.parse(rule).value - 1e-6


def near_tie_at_16(m=800, n=300):
    """A difference whose 16th and 17th singular values are 0.5% apart, under a slowly decaying tail
    (the word embeddings' case): a randomized SVD does not resolve the cut."""
    g = torch.Generator().manual_seed(0)
    s = torch.cat([torch.linspace(10, 5, 16, dtype=torch.float64), torch.tensor([5 * 0.995], dtype=torch.float64),
                   0.5 * torch.linspace(4.9, 0.5, n - 17, dtype=torch.float64)])
    u, _ = torch.linalg.qr(torch.randn(m, n, generator=g, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    return ((u * s) @ v.T).float(), s


@pytest.mark.parametrize("transpose", [False, True])
@pytest.mark.parametrize("rule", ["rank:16", "energy"])
def test_auto_truncates_exactly_when_singular_values_at_the_cut_nearly_tie(rule, transpose):
    delta, s = near_tie_at_16()
    if rule == "energy":  # the energy fraction half-way between ranks 15 and 16
        energy = (s**2).cumsum(0) / (s**2).sum()
        rule = f"energy:{float(energy[14] + energy[15]) / 2:.6f}"
    delta = delta.T.contiguous() if transpose else delta
    got, info = denoise_difference(delta, rule, svd="auto")
    u, sv, vh = torch.linalg.svd(delta.double(), full_matrices=False)
    want = (u[:, :16] * sv[:16]) @ vh[:16]
    assert info.rank == 16
    assert float((got.double() - want).norm() / want.norm()) <= 1e-4


def test_auto_takes_the_gram_path_on_a_large_matrix():
    delta = low_rank_plus_noise(768, 512, rank=20, noise=0.02)
    got, info = denoise_difference(delta, "energy:0.9")
    assert info.svd == "gram"
    want, r = reference(delta, RankRule.parse("energy:0.9"))
    assert info.rank == r
    assert torch.allclose(got, want, atol=1e-4 * float(delta.abs().max()))


@pytest.mark.parametrize("shape", [(700, 300), (300, 700)])
@pytest.mark.parametrize("rule", ["energy:0.9", "energy:0.99", "rank:120"])
def test_gram_path_for_high_ranks_matches_dense_svd(shape, rule):
    # A flat spectrum: the wanted energy lies far beyond the leading 32 singular values.
    delta = low_rank_plus_noise(*shape, rank=150, noise=1.0, seed=3)
    got, info = denoise_difference(delta, rule)
    assert info.svd == "gram"
    want, r = reference(delta, RankRule.parse(rule))
    assert info.rank == r > 32
    assert torch.allclose(got, want, atol=1e-4 * float(delta.abs().max()))


def test_squared_norm_sums_every_slice(monkeypatch):
    monkeypatch.setattr("deftx.methods.denoise._CHUNK", 7)
    delta = torch.randn(13, 11)
    assert squared_norm(delta) == pytest.approx(float(delta.double().pow(2).sum()), rel=1e-12)
    assert squared_norm(delta.T) == pytest.approx(float(delta.double().pow(2).sum()), rel=1e-12)


def test_gram_accumulates_every_row_slice(monkeypatch):
    monkeypatch.setattr("deftx.methods.denoise._ROWS", 5)
    delta = low_rank_plus_noise(120, 70, rank=60, noise=1.0, seed=4)
    got, info = denoise_difference(delta, "rank:40")
    want, _ = reference(delta, RankRule.parse("rank:40"))
    assert info.svd == "gram" and torch.allclose(got, want, atol=1e-4 * float(delta.abs().max()))


@pytest.mark.parametrize("tail_keep", [0.01, 0.1, 0.5])
def test_tail_keep_adds_back_the_largest_residual_entries(tail_keep):
    delta = low_rank_plus_noise(60, 50, rank=5, noise=0.3)
    got, info = denoise_difference(delta, "energy:0.8", tail_keep, svd="full")
    want, _ = reference(delta, RankRule.parse("energy:0.8"), tail_keep)
    assert torch.allclose(got, want, atol=1e-5)
    assert info.tail_kept == round(tail_keep * delta.numel())


def test_full_tail_keep_restores_the_difference():
    delta = low_rank_plus_noise(30, 20, rank=3, noise=0.5)
    got, _ = denoise_difference(delta, "rank:1", 1.0)
    assert torch.allclose(got, delta, atol=1e-5)


def test_zero_matrix():
    got, info = denoise_difference(torch.zeros(10, 8), "energy:0.9")
    assert info.rank == 0 and not got.any()


def test_rank_from_energy():
    s = torch.tensor([3.0, 2.0, 1.0])  # energies 9, 4, 1 of 14
    assert rank_from_energy(s, 14.0, 0.6) == 1
    assert rank_from_energy(s, 14.0, 0.92) == 2
    assert rank_from_energy(s, 14.0, 1.0) == 3
    assert rank_from_energy(s[:1], 14.0, 0.9) is None


@pytest.mark.parametrize("bad", ["energy", "energy:0", "energy:1.5", "rank:0", "rank:2.5", "top:3", "energy:abc", ""])
def test_malformed_rank_rules(bad):
    with pytest.raises(UsageError):
        RankRule.parse(bad)


def test_rank_rule_round_trip():
    assert str(RankRule.parse(" energy = 0.90 ")) == "energy:0.9"
    assert str(RankRule.parse("rank:16")) == "rank:16"


def test_tail_keep_out_of_range():
    with pytest.raises(UsageError):
        denoise_difference(torch.ones(3, 3), "rank:1", 1.5)


def test_targets_and_matrix_types():
    shapes = [("embeddings.word_embeddings.weight", (100, 8)), ("encoder.layer.0.attention.self.query.weight", (8, 8)),
              ("encoder.layer.0.attention.self.query.bias", (8,))]
    assert denoise_targets(shapes) == [shapes[0][0], shapes[1][0]]
    assert denoise_targets(shapes, exclude=["embeddings.*"]) == [shapes[1][0]]
    assert denoise_targets(shapes, include=["*.query.*"]) == [shapes[1][0]]
    assert matrix_type("encoder.layer.11.output.dense.weight") == "output.dense.weight"
