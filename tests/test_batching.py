"""Length-grouped batches of the task objective: every example once per epoch, less padding, seeded."""

import random

from deftx.objectives.classification import batch_rows


def _lengths(n: int, seed: int = 1) -> list[int]:
    rng = random.Random(seed)
    return [rng.randint(5, 120) for _ in range(n)]


def _padded(lengths, batches) -> int:
    return sum(max(lengths[r] for r in rows) * len(rows) for rows in batches)


def test_grouped_batches_cover_every_example_once_and_pad_less():
    lengths = _lengths(3000)
    grouped = batch_rows(lengths, 16, seed=0, group_by_length=True)
    plain = batch_rows(lengths, 16, seed=0, group_by_length=False)
    assert sorted(r for rows in grouped for r in rows) == list(range(3000))
    assert all(len(rows) <= 16 for rows in grouped)
    real = sum(lengths)
    assert _padded(lengths, grouped) < 1.1 * real < _padded(lengths, plain)


def test_grouped_batches_follow_the_seed_and_mix_lengths_across_the_epoch():
    lengths = _lengths(2000)
    assert batch_rows(lengths, 16, 3, True) == batch_rows(lengths, 16, 3, True)
    assert batch_rows(lengths, 16, 3, True) != batch_rows(lengths, 16, 4, True)
    widths = [max(lengths[r] for r in rows) for rows in batch_rows(lengths, 16, 3, True)]
    # Not one long sort: the batch order is shuffled, so short and long batches alternate.
    assert widths != sorted(widths) and widths != sorted(widths, reverse=True)


def test_ungrouped_batches_are_the_plain_shuffled_order():
    lengths = _lengths(100)
    rows = [r for b in batch_rows(lengths, 16, 0, False) for r in b]
    assert sorted(rows) == list(range(100)) and rows != list(range(100))
