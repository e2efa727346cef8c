"""Length-grouped batches of the task objective: every example once per epoch, less padding, seeded."""

import random

from deftx.objectives.classification import batch_rows


def _lengths(n: int, seed: int = 1) -> list[list[int]]:
    rng = random.Random(seed)
    return [[0] * rng.randint(5, 120) for _ in range(n)]


def _padded(ids, batches) -> int:
    return sum(max(len(ids[r]) for r in rows) * len(rows) for rows in batches)


def test_grouped_batches_cover_every_example_once_and_pad_less():
    ids = _lengths(3000)
    grouped = batch_rows(ids, 16, seed=0, group_by_length=True)
    plain = batch_rows(ids, 16, seed=0, group_by_length=False)
    assert sorted(r for rows in grouped for r in rows) == list(range(3000))
    assert all(len(rows) <= 16 for rows in grouped)
    real = sum(len(x) for x in ids)
    assert _padded(ids, grouped) < 1.1 * real < _padded(ids, plain)


def test_grouped_batches_follow_the_seed_and_mix_lengths_across_the_epoch():
    ids = _lengths(2000)
    assert batch_rows(ids, 16, 3, True) == batch_rows(ids, 16, 3, True)
    assert batch_rows(ids, 16, 3, True) != batch_rows(ids, 16, 4, True)
    widths = [max(len(ids[r]) for r in rows) for rows in batch_rows(ids, 16, 3, True)]
    # Not one long sort: the batch order is shuffled, so short and long batches alternate.
    assert widths != sorted(widths) and widths != sorted(widths, reverse=True)


def test_ungrouped_batches_are_the_plain_shuffled_order():
    ids = _lengths(100)
    rows = [r for b in batch_rows(ids, 16, 0, False) for r in b]
    assert sorted(rows) == list(range(100)) and rows != list(range(100))
