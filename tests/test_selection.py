"""Global top-K selection against a plain sort of all scores."""

import pytest
import torch

from deftx.methods import selection
from deftx.errors import UsageError
from deftx.methods.selection import mask_overlap, select_top_k
from deftx.sparsity import resolve_k


def reference_top_k(scores: dict[str, torch.Tensor], k: int) -> dict[str, torch.Tensor]:
    """Sort all |scores| descending; ties broken by (tensor order, flat index)."""
    rows = []
    for t_index, (name, tensor) in enumerate(scores.items()):
        for i, v in enumerate(tensor.abs().reshape(-1).tolist()):
            rows.append((-v, t_index, i))
    rows.sort()
    masks = {name: torch.zeros(t.numel(), dtype=torch.bool) for name, t in scores.items()}
    names = list(scores)
    for _, t_index, i in rows[:k]:
        masks[names[t_index]][i] = True
    return {name: m.view(scores[name].shape) for name, m in masks.items()}


@pytest.mark.parametrize("k", [1, 7, 50, 333, 999, 1000])
def test_matches_sort_of_all_scores(k):
    g = torch.Generator().manual_seed(0)
    scores = {"a": torch.randn(20, 10, generator=g), "b": torch.randn(300, generator=g), "c": torch.randn(5, 100, generator=g)}
    got = select_top_k(scores, k)
    want = reference_top_k(scores, k)
    for name in scores:
        assert torch.equal(got[name], want[name]), name
    assert sum(int(m.sum()) for m in got.values()) == k


def test_ties_are_broken_by_tensor_order_then_index():
    # Many equal scores, including across tensors, and across chunk boundaries.
    scores = {"x": torch.tensor([1.0, 3.0, 2.0, 2.0, 2.0]), "y": torch.tensor([2.0, 2.0, 5.0]), "z": torch.zeros(4)}
    for k in range(1, 13):
        got = select_top_k(scores, k)
        want = reference_top_k(scores, k)
        for name in scores:
            assert torch.equal(got[name], want[name]), (k, name)


def test_ties_across_chunks(monkeypatch):
    monkeypatch.setattr(selection, "CHUNK", 3)
    scores = {"x": torch.ones(10), "y": torch.ones(7) * 2, "z": torch.ones(5)}
    for k in (1, 7, 8, 12, 22):
        got = select_top_k(scores, k)
        want = reference_top_k(scores, k)
        for name in scores:
            assert torch.equal(got[name], want[name]), (k, name)


def test_signed_scores_compare_by_magnitude():
    scores = {"a": torch.tensor([-5.0, 1.0, -0.5, 4.0])}
    assert select_top_k(scores, 2)["a"].tolist() == [True, False, False, True]


def test_nan_scores_are_refused():
    with pytest.raises(UsageError, match="NaN"):
        select_top_k({"a": torch.tensor([1.0, float("nan")])}, 1)


@pytest.mark.parametrize(
    "given,expected",
    [(10, 10), ("10", 10), (0.25, 25), ("0.25", 25), ("25%", 25), ("1_0", 10), (100, 100), ("1e1", 10)],
)
def test_resolve_k(given, expected):
    assert resolve_k(given, 100) == expected


@pytest.mark.parametrize("given", [0, -3, "0", 101, "150%", "abc", 2.5, "", float("nan")])
def test_resolve_k_rejects(given):
    with pytest.raises(UsageError):
        resolve_k(given, 100)


def test_mask_overlap():
    a = {"p": torch.tensor([True, True, False, False])}
    b = {"p": torch.tensor([True, False, True, False])}
    assert mask_overlap(a, b) == {"shared": 1, "a": 2, "b": 2, "fraction": 0.5}
