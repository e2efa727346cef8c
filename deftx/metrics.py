"""Classification scores from predicted and gold label ids: accuracy, macro-F1, per-class scores, the
share of predictions per class and the classes a classifier (almost) never predicts. Pure Python (no
torch): shared by training-time validation, evaluation, the CLI and the dashboard."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

COLLAPSE_SHARE = 0.02
"""A class predicted for fewer than this share of the examples counts as collapsed (never or almost
never predicted): the classifier has not learned it."""

# Validation macro-F1 points a sparse phase 2 may lose against the full fine-tuning of phase 1 before
# deftx warns: on NusaX/SmSA at the quick budget phase 2 cost 0.6-3 points in stable runs and 7-9 in
# multi-source runs whose phase 2 nearly lost a class (docs/quality.md).
PHASE2_DROP_POINTS = 5.0


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
    shares = prediction_shares(preds, label_names)
    return {
        "accuracy": sum(confusion[i][i] for i in range(n_labels)) / n if n else 0.0,
        "macro_f1": sum(f1s) / n_labels if n_labels else 0.0,
        "n": n,
        "per_class": per_class,
        "confusion": confusion,
        "labels": list(label_names),
        "prediction_shares": shares,
        "collapsed_classes": collapsed_classes(shares),
    }


def prediction_shares(preds: Sequence[int], label_names: Sequence[str]) -> dict[str, float]:
    """The share of the examples predicted as each class (0.0 for a class never predicted)."""
    counts = [0] * len(label_names)
    for p in preds:
        counts[p] += 1
    n = len(preds)
    return {name: (counts[i] / n if n else 0.0) for i, name in enumerate(label_names)}


def collapsed_classes(shares: dict[str, float], threshold: float = COLLAPSE_SHARE) -> list[str]:
    """The classes predicted for fewer than ``threshold`` of the examples (none when there are no
    examples or a single class)."""
    if len(shares) < 2 or not any(shares.values()):
        return []
    return [name for name, share in shares.items() if share < threshold]


def collapse_warning(metrics: dict[str, Any] | None, where: str) -> str | None:
    """One line naming the classes a classifier (almost) never predicts, with every class's share;
    ``None`` when every class is predicted. ``where`` says which evaluation (``ace test``)."""
    if not isinstance(metrics, dict):
        return None
    shares = metrics.get("prediction_shares")
    collapsed = metrics.get("collapsed_classes")
    if not isinstance(shares, dict) or not collapsed:
        return None
    names = ", ".join(repr(str(c)) for c in collapsed)
    listing = ", ".join(f"{name} {_percent(share)}" for name, share in shares.items())
    n = metrics.get("n")
    over = f" of {n} examples" if isinstance(n, int) else ""
    return (f"warning: {where}: the classifier (almost) never predicts {names} "
            f"(predictions{over}: {listing}); it has not learned every class")


def _percent(share: Any) -> str:
    return f"{100 * share:.1f}%" if isinstance(share, (int, float)) else "?"


def phase2_drop_warning(summary: dict[str, Any] | None, where: str,
                        points: float = PHASE2_DROP_POINTS) -> str | None:
    """One line when a task SFT's validation macro-F1 after phase 2 (the sparse SFT) is more than ``points``
    below that after phase 1 (full fine-tuning), naming the classes whose predicted share fell to less
    than half; ``None`` otherwise (and for trainings without both evaluations)."""
    if not isinstance(summary, dict):
        return None
    first, second = ((summary.get(phase) or {}).get("eval") for phase in ("phase1", "phase2"))
    if not isinstance(first, dict) or not isinstance(second, dict):
        return None
    before, after = first.get("macro_f1"), second.get("macro_f1")
    if not isinstance(before, (int, float)) or not isinstance(after, (int, float)):
        return None
    lost = 100 * (before - after)
    if lost <= points:
        return None
    shares = (first.get("prediction_shares") or {}, second.get("prediction_shares") or {})
    fallen = [f"{name} {_percent(shares[1][name])} (phase 1: {_percent(share)})" for name, share in shares[0].items()
              if isinstance(share, (int, float)) and isinstance(shares[1].get(name), (int, float))
              and shares[1][name] < share / 2]
    classes = f"; predicted less: {', '.join(fallen)}" if fallen else ""
    return (f"warning: {where}: validation macro-F1 fell from {before:.4f} after phase 1 (full fine-tuning) to "
            f"{after:.4f} after phase 2 (the sparse SFT), {lost:.1f} points{classes}; compare another seed or give "
            f"phase 2 more steps before using this SFT")
