"""Paired statistics of two systems evaluated on the same sentences: bootstrap intervals and a sign test.

Torch-free (numpy only): ``deftx results --curve`` and ``--paired`` use it on the ``predictions`` and
``gold`` label ids of result records.

* :func:`paired_bootstrap`: the mean over seeds of metric(A_s) - metric(B_s) and its 95% percentile
  interval, resampling sentences with replacement. One resample of the sentences serves every seed and
  both systems, so the interval is about the sentences, with the seeds' pairing kept.
* :func:`pooled_paired_bootstrap`: the same over several languages: each replicate resamples within
  each language and averages the per-language differences.
* :func:`sign_test`: wins, losses and ties over paired cells and the exact two-sided binomial p
  (ties dropped).

Metrics take gold and predicted label ids as 2-D arrays (one row per resample) and the number of
labels, and return one value per row. Macro-F1 averages the F1 of every label (0 for a label neither
in the gold nor predicted), as :func:`deftx.metrics.classification_metrics` does.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from math import comb

import numpy as np

Metric = Callable[[np.ndarray, np.ndarray, int], np.ndarray]

RESAMPLES = 2000
CONFIDENCE = 0.95


def _confusions(gold: np.ndarray, pred: np.ndarray, n_labels: int) -> np.ndarray:
    """Confusion matrices (rows gold, columns predicted), one per row of ``gold``/``pred``: (B, L, L)."""
    rows = gold.shape[0]
    codes = gold * n_labels + pred + (np.arange(rows)[:, None] * n_labels * n_labels)
    counts = np.bincount(codes.ravel(), minlength=rows * n_labels * n_labels)
    return counts.reshape(rows, n_labels, n_labels)


def macro_f1(gold: np.ndarray, pred: np.ndarray, n_labels: int) -> np.ndarray:
    """Macro-F1 of each row: the mean over all ``n_labels`` labels of 2·TP / (predicted + support)."""
    confusion = _confusions(gold, pred, n_labels)
    tp = np.diagonal(confusion, axis1=1, axis2=2).astype(float)
    denominator = confusion.sum(axis=1) + confusion.sum(axis=2)  # predicted + support
    f1 = np.divide(2 * tp, denominator, out=np.zeros_like(tp), where=denominator > 0)
    return f1.mean(axis=1)


def accuracy(gold: np.ndarray, pred: np.ndarray, n_labels: int) -> np.ndarray:
    """Accuracy of each row."""
    return (gold == pred).mean(axis=1)


METRICS: dict[str, Metric] = {"macro_f1": macro_f1, "f1": macro_f1, "accuracy": accuracy, "acc": accuracy}


@dataclass(frozen=True)
class PairedDifference:
    """Mean over seeds of metric(A) - metric(B), with its bootstrap percentile interval."""

    delta: float
    low: float
    high: float
    seeds: int  # paired seeds (for a pooled difference: (language, seed) pairs)
    items: int  # sentences (for a pooled difference: over all its languages)
    resamples: int
    languages: int = 1

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0

    @property
    def above_zero(self) -> bool:
        return self.low > 0


@dataclass(frozen=True)
class SignTest:
    wins: int
    losses: int
    ties: int
    p: float


def _as_arrays(gold: Sequence[int], preds_a: Sequence[Sequence[int]], preds_b: Sequence[Sequence[int]]
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    g = np.asarray(gold, dtype=np.int64)
    if g.ndim != 1 or g.size == 0:
        raise ValueError("gold must be a non-empty sequence of label ids")
    if len(preds_a) != len(preds_b) or not len(preds_a):
        raise ValueError("the two systems need the same number of seeds, at least one")
    a = np.asarray(preds_a, dtype=np.int64)
    b = np.asarray(preds_b, dtype=np.int64)
    if a.shape != (len(preds_a), g.size) or b.shape != a.shape:
        raise ValueError("every seed's predictions must have one label id per gold label")
    if min(g.min(), a.min(), b.min()) < 0:
        raise ValueError("label ids must not be negative")
    return g, a, b


def _label_count(n_labels: int | None, *arrays: np.ndarray) -> int:
    found = max(int(x.max()) for x in arrays) + 1
    if n_labels is not None and n_labels < found:
        raise ValueError(f"label id {found - 1} outside the {n_labels} labels")
    return n_labels if n_labels is not None else found


def _replicates(gold: np.ndarray, a: np.ndarray, b: np.ndarray, metric: Metric, n_labels: int,
                rng: np.random.Generator, n: int, chunk: int = 500) -> tuple[float, np.ndarray]:
    """The observed mean difference over seeds, and ``n`` bootstrap replicates of it."""
    full = np.arange(gold.size)[None, :]
    observed = float(np.mean([metric(gold[full], a[s][full], n_labels)[0] - metric(gold[full], b[s][full], n_labels)[0]
                              for s in range(a.shape[0])]))
    out = np.empty(n)
    for start in range(0, n, chunk):
        idx = rng.integers(0, gold.size, size=(min(chunk, n - start), gold.size))
        g = gold[idx]
        diff = np.zeros(idx.shape[0])
        for s in range(a.shape[0]):
            diff += metric(g, a[s][idx], n_labels) - metric(g, b[s][idx], n_labels)
        out[start:start + idx.shape[0]] = diff / a.shape[0]
    return observed, out


def _interval(replicates: np.ndarray, confidence: float) -> tuple[float, float]:
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(replicates, [tail, 100 - tail])
    return float(low), float(high)


def paired_bootstrap(gold: Sequence[int], preds_a_by_seed: Sequence[Sequence[int]],
                     preds_b_by_seed: Sequence[Sequence[int]], metric: Metric = macro_f1, n: int = RESAMPLES,
                     seed: int = 0, *, n_labels: int | None = None, confidence: float = CONFIDENCE) -> PairedDifference:
    """Mean over seeds of ``metric(A_s) - metric(B_s)`` and its percentile interval over ``n`` resamples
    of the sentences (the same resample for every seed and both systems). ``preds_a_by_seed[i]`` and
    ``preds_b_by_seed[i]`` are the predictions of one seed, paired. Deterministic for a given ``seed``.
    ``n_labels``: the task's label count (default: the largest label id seen, plus one)."""
    g, a, b = _as_arrays(gold, preds_a_by_seed, preds_b_by_seed)
    labels = _label_count(n_labels, g, a, b)
    observed, replicates = _replicates(g, a, b, metric, labels, np.random.default_rng(seed), n)
    low, high = _interval(replicates, confidence)
    return PairedDifference(observed, low, high, a.shape[0], g.size, n)


def pooled_paired_bootstrap(languages: Sequence[tuple[Sequence[int], Sequence[Sequence[int]], Sequence[Sequence[int]]]],
                            metric: Metric = macro_f1, n: int = RESAMPLES, seed: int = 0, *,
                            n_labels: int | None = None, confidence: float = CONFIDENCE) -> PairedDifference:
    """The mean over languages of each language's paired difference (see :func:`paired_bootstrap`),
    with its interval: every replicate resamples the sentences within each language and averages the
    per-language differences. ``languages``: ``(gold, preds_a_by_seed, preds_b_by_seed)`` per language."""
    if not languages:
        raise ValueError("no languages to pool")
    arrays = [_as_arrays(*entry) for entry in languages]
    labels = n_labels if n_labels is not None else max(_label_count(None, *entry) for entry in arrays)
    rng = np.random.default_rng(seed)
    observed = []
    total = np.zeros(n)
    for g, a, b in arrays:
        _label_count(labels, g, a, b)
        value, replicates = _replicates(g, a, b, metric, labels, rng, n)
        observed.append(value)
        total += replicates
    low, high = _interval(total / len(arrays), confidence)
    return PairedDifference(float(np.mean(observed)), low, high, sum(a.shape[0] for _, a, _ in arrays),
                            sum(g.size for g, _, _ in arrays), n, len(arrays))


def sign_test(differences: Sequence[float], tolerance: float = 1e-12) -> SignTest:
    """Wins (difference > 0), losses and ties (|difference| <= ``tolerance``) over paired cells, and
    the exact two-sided binomial p of the wins among the cells that are not ties (1.0 with none)."""
    wins = sum(d > tolerance for d in differences)
    losses = sum(d < -tolerance for d in differences)
    ties = len(differences) - wins - losses
    trials = wins + losses
    if trials == 0:
        return SignTest(wins, losses, ties, 1.0)
    tail = sum(comb(trials, k) for k in range(min(wins, losses) + 1)) / 2 ** trials
    return SignTest(wins, losses, ties, min(1.0, 2 * tail))
