"""Paired bootstrap and sign test (deftx.analysis.stats) on cases that can be checked by hand."""

import random

import numpy as np
import pytest

from deftx.metrics import classification_metrics
from deftx.analysis.stats import accuracy, macro_f1, paired_bootstrap, pooled_paired_bootstrap, sign_test

GOLD = [0, 1, 2] * 20  # 60 sentences, 3 labels
RIGHT = list(GOLD)
WRONG = [(g + 1) % 3 for g in GOLD]


def test_macro_f1_matches_the_classification_metrics_of_the_records():
    rng = random.Random(3)
    for _ in range(5):
        gold = [rng.randrange(3) for _ in range(50)]
        pred = [rng.randrange(3) for _ in range(50)]
        pred[:5] = [0] * 5
        expected = classification_metrics(pred, gold, ["a", "b", "c", "d"])  # d: a label never seen
        got = macro_f1(np.array([gold]), np.array([pred]), 4)[0]
        assert got == pytest.approx(expected["macro_f1"])
        assert accuracy(np.array([gold]), np.array([pred]), 4)[0] == pytest.approx(expected["accuracy"])


def test_identical_systems_differ_by_exactly_zero():
    preds = [[(g + s) % 3 if i % 4 == 0 else g for i, g in enumerate(GOLD)] for s in range(3)]
    result = paired_bootstrap(GOLD, preds, preds, n=300)
    assert (result.delta, result.low, result.high) == (0.0, 0.0, 0.0)
    assert result.seeds == 3 and result.items == 60 and not result.excludes_zero


def test_always_right_against_always_wrong_excludes_zero():
    result = paired_bootstrap(GOLD, [RIGHT, RIGHT], [WRONG, WRONG], n=500)
    assert result.delta == pytest.approx(1.0)
    assert result.above_zero and 0.9 < result.low <= result.high <= 1.0
    flipped = paired_bootstrap(GOLD, [WRONG], [RIGHT], n=500)
    assert flipped.excludes_zero and not flipped.above_zero and flipped.delta == pytest.approx(-1.0)


def test_accuracy_difference_and_its_interval():
    # A right on every sentence, B on the first half: the difference is the share B gets wrong, 0.5
    half = GOLD[:30] + WRONG[30:]
    result = paired_bootstrap(GOLD, [RIGHT], [half], metric=accuracy, n=2000, seed=1)
    assert result.delta == pytest.approx(0.5)
    # binomial share of 60: standard error sqrt(.25 / 60) = 0.0645; the 95% interval is about ± 0.126
    assert result.low == pytest.approx(0.5 - 0.126, abs=0.03) and result.high == pytest.approx(0.5 + 0.126, abs=0.03)


def test_deterministic_for_a_seed_and_seeds_are_averaged():
    noisy = [g if i % 3 else (g + 1) % 3 for i, g in enumerate(GOLD)]
    one = paired_bootstrap(GOLD, [RIGHT, noisy], [noisy, noisy], metric=accuracy, n=400, seed=7)
    assert one == paired_bootstrap(GOLD, [RIGHT, noisy], [noisy, noisy], metric=accuracy, n=400, seed=7)
    assert one != paired_bootstrap(GOLD, [RIGHT, noisy], [noisy, noisy], metric=accuracy, n=400, seed=8)
    # seed 0 differs by 1/3 (20 of 60 wrong), seed 1 by 0: the mean over seeds is 1/6
    assert one.delta == pytest.approx(1 / 6)


def test_one_resample_serves_every_seed():
    # seed 0: A = P, B = Q; seed 1: A = Q, B = P. With one resample for both seeds the two differences
    # cancel in every replicate (interval [0, 0]); resampling each seed apart would not.
    p = [g if i < 40 else (g + 1) % 3 for i, g in enumerate(GOLD)]
    q = [g if i >= 20 else (g + 1) % 3 for i, g in enumerate(GOLD)]
    result = paired_bootstrap(GOLD, [p, q], [q, p], n=300)
    assert result.delta == pytest.approx(0.0, abs=1e-12)
    assert result.low == pytest.approx(0.0, abs=1e-12) and result.high == pytest.approx(0.0, abs=1e-12)
    assert not paired_bootstrap(GOLD, [p], [q], n=300).low == paired_bootstrap(GOLD, [p], [q], n=300).high


def test_pooled_is_the_mean_of_the_languages():
    pooled = pooled_paired_bootstrap([(GOLD, [RIGHT], [WRONG]), (GOLD[:30], [RIGHT[:30]], [RIGHT[:30]])], n=300)
    assert pooled.delta == pytest.approx(0.5) and pooled.languages == 2 and pooled.items == 90
    assert pooled.above_zero and pooled.high <= 0.5


def test_bad_input_is_a_value_error():
    with pytest.raises(ValueError, match="one label id per gold"):
        paired_bootstrap(GOLD, [RIGHT[:-1]], [RIGHT[:-1]])
    with pytest.raises(ValueError, match="same number of seeds"):
        paired_bootstrap(GOLD, [RIGHT, RIGHT], [RIGHT])
    with pytest.raises(ValueError, match="outside the 2 labels"):
        paired_bootstrap(GOLD, [RIGHT], [RIGHT], n_labels=2)


@pytest.mark.parametrize("differences, expected", [
    ([1.0] * 10, (10, 0, 0, 2 / 1024)),
    ([0.1] * 8 + [-0.2] * 2, (8, 2, 0, 2 * (1 + 10 + 45) / 1024)),
    ([1, -1] * 5, (5, 5, 0, 1.0)),
    ([0.5, 0.0, 0.0, -0.0], (1, 0, 3, 1.0)),
    ([], (0, 0, 0, 1.0)),
    ([-1.0] * 6, (0, 6, 0, 2 / 64)),
])
def test_sign_test_exact_binomial(differences, expected):
    result = sign_test(differences)
    assert (result.wins, result.losses, result.ties) == expected[:3]
    assert result.p == pytest.approx(expected[3])
