"""Classification scores from predicted and gold label ids: accuracy, macro-F1, per-class scores.
Pure Python (no torch), shared by training-time validation and evaluation."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def classification_metrics(preds: Sequence[int], golds: Sequence[int], label_names: Sequence[str]) -> dict[str, Any]:
    """Accuracy, macro-F1 (mean of per-class F1 over every class in ``label_names``), per-class
    precision / recall / F1 / support, and the confusion matrix (rows gold, columns predicted)."""
    if len(preds) != len(golds):
        raise ValueError("predictions and gold labels differ in length")
    n_labels = len(label_names)
    confusion = [[0] * n_labels for _ in range(n_labels)]
    for p, g in zip(preds, golds):
        confusion[g][p] += 1
    per_class = {}
    f1s = []
    for i, name in enumerate(label_names):
        tp = confusion[i][i]
        predicted = sum(confusion[r][i] for r in range(n_labels))
        support = sum(confusion[i])
        precision = tp / predicted if predicted else 0.0
        recall = tp / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[name] = {"precision": precision, "recall": recall, "f1": f1, "support": support}
        f1s.append(f1)
    n = len(golds)
    return {
        "accuracy": sum(confusion[i][i] for i in range(n_labels)) / n if n else 0.0,
        "macro_f1": sum(f1s) / n_labels if n_labels else 0.0,
        "n": n,
        "per_class": per_class,
        "confusion": confusion,
        "labels": list(label_names),
    }
