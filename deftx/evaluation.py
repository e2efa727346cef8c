"""Evaluating a composed model on a task split (the scores themselves: :mod:`deftx.metrics`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from deftx.errors import LabelMismatchError
from deftx.metrics import COLLAPSE_SHARE, classification_metrics, collapse_warning, collapsed_classes, prediction_shares
from deftx.objectives.classification import encode_labelled, predict

__all__ = ["COLLAPSE_SHARE", "check_labels", "classification_metrics", "collapse_warning", "collapsed_classes",
           "classify_labelled", "evaluate_classifier", "prediction_shares"]


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


def classify_labelled(model, tokenizer, data, *, batch_size: int = 64,
                      max_length: int = 128) -> tuple[list[int], list[int], list[str]]:
    """Predict ``data`` (a :class:`deftx.data.LabelledData`) with a sequence-classification model
    whose labels are ``model.config.id2label``: the predicted and the gold label ids, in data order,
    both as indices into the returned label names (the model's order)."""
    model_labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
    check_labels(model_labels, data.label_names)
    # Map the data's label ids onto the model's label order.
    to_model = {i: model_labels.index(name) for i, name in enumerate(data.label_names)}
    encoded = encode_labelled(tokenizer, data, max_length)
    encoded["labels"] = [to_model[g] for g in encoded["labels"]]
    preds = predict(model, tokenizer, encoded, batch_size)
    return preds, list(encoded["labels"]), model_labels


def evaluate_classifier(model, tokenizer, data, *, batch_size: int = 64, max_length: int = 128) -> dict[str, Any]:
    """The scores of :func:`classify_labelled`'s predictions, over the model's label names."""
    preds, golds, labels = classify_labelled(model, tokenizer, data, batch_size=batch_size, max_length=max_length)
    return classification_metrics(preds, golds, labels)
