"""Accuracy, macro-F1 and per-class scores; evaluating a composed model on a task split."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from deftx.errors import LabelMismatchError

COLLAPSE_SHARE = 0.02
"""A class predicted for fewer than this share of the examples counts as collapsed (never or almost
never predicted): the classifier has not learned it."""


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


def check_labels(sft_labels: Sequence[str] | None, eval_labels: Sequence[str]) -> list[str]:
    """The task SFT's label names must be the evaluation set's (same names; order may differ).
    Returns the SFT's label order."""
    if not sft_labels:
        raise LabelMismatchError("the task SFT records no label names", hint="was it trained with deftx train-task?")
    if sorted(sft_labels) != sorted(eval_labels):
        raise LabelMismatchError(
            f"the task SFT predicts {list(sft_labels)} but the evaluation set has labels {list(eval_labels)}",
            hint="evaluate on a task with the same label set",
        )
    return list(sft_labels)


def evaluate_classifier(model, tokenizer, data, *, batch_size: int = 64, max_length: int = 128) -> dict[str, Any]:
    """Predict ``data`` (a :class:`deftx.data.LabelledData`) with a sequence-classification model
    whose labels are ``model.config.id2label``; scores are over the data's label names."""
    from deftx.objectives.classification import encode_labelled, predict

    model_labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
    check_labels(model_labels, data.label_names)
    # Map the data's label ids onto the model's label order.
    to_model = {i: model_labels.index(name) for i, name in enumerate(data.label_names)}
    encoded = encode_labelled(tokenizer, data, max_length)
    encoded["labels"] = [to_model[g] for g in encoded["labels"]]
    preds = predict(model, tokenizer, encoded, batch_size)
    return classification_metrics(preds, encoded["labels"], model_labels)
