"""Sequence classification (single texts or text pairs): the task SFT objective."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from deftx.data.blocks import Progress
from deftx.data.encoded import Encoded, encode_labelled
from deftx.errors import LabelMismatchError
from deftx.objectives.base import move
from deftx.metrics import classification_metrics


def collate(tokenizer, encoded: Encoded, rows: Sequence[int]) -> dict[str, torch.Tensor]:
    """A padded batch of the given rows."""
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    width = int(max(encoded.lengths[i] for i in rows))
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    attention = torch.zeros((len(rows), width), dtype=torch.long)
    types = torch.zeros((len(rows), width), dtype=torch.long) if encoded.token_type_ids is not None else None
    for r, i in enumerate(rows):
        s = torch.from_numpy(np.asarray(encoded.input_ids[i], dtype=np.int64))
        ids[r, : len(s)] = s
        attention[r, : len(s)] = 1
        if types is not None:
            types[r, : len(s)] = torch.from_numpy(np.asarray(encoded.token_type_ids[i], dtype=np.int64))
    batch = {"input_ids": ids, "attention_mask": attention,
             "labels": torch.tensor([int(encoded.labels[i]) for i in rows], dtype=torch.long)}
    if types is not None:
        batch["token_type_ids"] = types
    return batch


@torch.no_grad()
def _logits(model: nn.Module, tokenizer, encoded: Encoded, batch_size: int) -> torch.Tensor:
    """Logits (rows in input order, float32 on the CPU) for every encoded row."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    n = len(encoded)
    # Sorting by length keeps padding (and so time) low; rows go back in input order.
    order = np.argsort(encoded.lengths, kind="stable").tolist()
    out = torch.zeros(n, model.config.num_labels)
    for start in range(0, n, batch_size):
        rows = order[start : start + batch_size]
        batch = collate(tokenizer, encoded, rows)
        batch.pop("labels")
        out[rows] = model(**move(batch, device)).logits.float().cpu()
    model.train(was_training)
    return out


def predict(model: nn.Module, tokenizer, encoded: Encoded, batch_size: int) -> list[int]:
    """Predicted label ids (the model's order) for every encoded row."""
    return _logits(model, tokenizer, encoded, batch_size).argmax(-1).tolist()


def class_probabilities(model: nn.Module, tokenizer, encoded: Encoded, batch_size: int) -> list[list[float]]:
    """The softmax over the model's labels (its order) for every encoded row."""
    return torch.softmax(_logits(model, tokenizer, encoded, batch_size), dim=-1).tolist()


# Examples shuffled together before the length sort: batches of similar length, yet a random mix.
GROUP_BATCHES = 50


def batch_rows(lengths: Sequence[int], batch_size: int, seed: int, group_by_length: bool) -> list[list[int]]:
    """The rows of each batch of one epoch, in a seeded random order. Grouped by length: the shuffled
    examples are cut into pools of ``GROUP_BATCHES`` batches, each pool sorted by length and cut into
    batches, and the batches shuffled (as the length-grouped samplers of common trainers do)."""
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(lengths), generator=generator).tolist()
    if not group_by_length:
        return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    pool = batch_size * GROUP_BATCHES
    batches: list[list[int]] = []
    for i in range(0, len(order), pool):
        block = sorted(order[i : i + pool], key=lambda row: lengths[row])
        batches.extend(block[j : j + batch_size] for j in range(0, len(block), batch_size))
    return [batches[b] for b in torch.randperm(len(batches), generator=generator).tolist()]


class ClassificationSteps:
    """A training step of sequence classification: the batch's cross-entropy (shared by the single- and the
    multi-source objectives)."""

    def prepare_batch(self, batch: dict[str, torch.Tensor], step_seed: int) -> dict[str, torch.Tensor]:
        return batch

    def loss_terms(self, batch: dict[str, torch.Tensor]) -> int:
        """How many terms the batch's mean loss averages: its examples."""
        return int(batch["labels"].shape[0])

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor], step_seed: int,
             normalizer: float | None = None) -> torch.Tensor:
        """The mean loss over the batch, or its summed loss divided by ``normalizer``."""
        device = next(model.parameters()).device
        if normalizer is None:
            return model(**move(batch, device)).loss
        inputs = move(batch, device)
        labels = inputs.pop("labels")
        logits = model(**inputs).logits
        return F.cross_entropy(logits.float(), labels, reduction="sum") / normalizer


class ClassificationObjective(ClassificationSteps):
    name = "sequence-classification"

    def __init__(
        self, tokenizer, train, validation=None, *, max_length: int = 128, group_by_length: bool = False,
        progress: Progress | None = None,
    ) -> None:
        """``train`` and ``validation`` are :class:`deftx.data.LabelledData`, tokenised through the cache
        (:mod:`deftx.data.encoded`; ``progress`` hears of the training data's tokenisation). With
        ``group_by_length``, each batch holds examples of similar length (less padding, so less time
        per example)."""
        self.tokenizer = tokenizer
        self.group_by_length = group_by_length
        self.label_names = tuple(train.label_names)
        self.train = encode_labelled(tokenizer, train, max_length, progress=progress)
        self.validation = (
            encode_labelled(tokenizer, validation, max_length) if validation is not None and len(validation) else None
        )
        self._lengths = self.train.lengths.tolist()

    def num_examples(self) -> int:
        return len(self.train)

    def batches(self, batch_size: int, seed: int) -> Iterator[dict[str, torch.Tensor]]:
        for rows in batch_rows(self._lengths, batch_size, seed, self.group_by_length):
            yield collate(self.tokenizer, self.train, rows)

    def evaluate(self, model: nn.Module, batch_size: int) -> dict[str, Any] | None:
        if self.validation is None:
            return None
        preds = predict(model, self.tokenizer, self.validation, batch_size)
        metrics = classification_metrics(preds, self.validation.labels.tolist(), self.label_names)
        return {k: metrics[k] for k in ("accuracy", "macro_f1", "prediction_shares", "collapsed_classes")}


# ------------------------------------------------------------------------------ evaluating a classifier


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
    golds = [to_model[int(g)] for g in encoded.labels]
    preds = predict(model, tokenizer, encoded, batch_size)
    return preds, golds, model_labels


def evaluate_classifier(model, tokenizer, data, *, batch_size: int = 64, max_length: int = 128) -> dict[str, Any]:
    """The scores of :func:`classify_labelled`'s predictions, over the model's label names."""
    preds, golds, labels = classify_labelled(model, tokenizer, data, batch_size=batch_size, max_length=max_length)
    return classification_metrics(preds, golds, labels)
