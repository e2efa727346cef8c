"""Multi-source sequence classification: labelled data of several languages, each batch from one source
trained with that source's language SFT applied (:class:`deftx.training.swap.LanguageSwap`).

How batches are drawn across sources (``source_sampling``):

- ``proportional`` (the default): one epoch is every batch of every source once, the batches of all
  sources shuffled together. Each example is seen once per epoch whatever its source, so a budget in
  epochs means what it means for one source, and no small source is repeated until it is learnt by heart.
  For NusaX (500 translated sentences in each language, SmSA larger) this is the sound default.
- ``temperature:T``: each batch's source drawn with probability proportional to ``n ** (1 / T)`` (n: the
  source's examples), as multilingual pre-training does for corpora of very different sizes (T=1 is
  proportional in expectation, larger T flattens towards uniform); a source runs through its own shuffled
  batches and starts a new shuffle when they are used up. An epoch has as many batches as proportional's.
- ``uniform``: every source equally often (the limit of large T).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from deftx.data.blocks import Progress
from deftx.errors import UsageError
from deftx.metrics import classification_metrics
from deftx.objectives.classification import ClassificationObjective, ClassificationSteps, batch_rows, collate, predict

SAMPLING_HELP = "proportional (default), uniform, or temperature:T (p ~ n^(1/T))"
SOURCE_KEY = "source"


def parse_sampling(value: str) -> tuple[str, float | None]:
    """``proportional``, ``uniform`` or ``temperature:T`` (T > 0) as (rule, T)."""
    text = str(value).strip().lower()
    if text in ("proportional", "uniform"):
        return text, None
    if text.startswith("temperature:"):
        try:
            t = float(text.split(":", 1)[1])
        except ValueError:
            t = float("nan")
        if math.isfinite(t) and t > 0:
            return "temperature", t
        raise UsageError(f"the temperature of --source-sampling must be a number above 0 (got {value!r})",
                         hint="e.g. temperature:2")
    raise UsageError(f"unknown --source-sampling {value!r}", hint=SAMPLING_HELP)


def normal_sampling(value: str) -> str:
    """The sampling rule as recorded: ``proportional``, ``uniform`` or ``temperature:T``."""
    rule, t = parse_sampling(value)
    return f"temperature:{t:g}" if rule == "temperature" else rule


def source_weights(sizes: Sequence[int], sampling: str) -> list[float]:
    """The probability of drawing each source for a batch under ``sampling``."""
    rule, t = parse_sampling(sampling)
    if rule == "uniform":
        raw = [1.0 for _ in sizes]
    elif rule == "temperature":
        raw = [float(n) ** (1.0 / float(t)) for n in sizes]
    else:
        raw = [float(n) for n in sizes]
    total = sum(raw)
    return [r / total for r in raw]


class MultiSourceObjective(ClassificationSteps):
    """Task batches from several sources, one source per batch. ``sources`` maps each source language to
    its ``(train, validation)`` :class:`~deftx.data.LabelledData` (validation may be None). ``swap``
    (a :class:`~deftx.training.swap.LanguageSwap`, set before training) applies a batch's source's
    language SFT around its forward and backward pass; validation predicts each source's set with its
    own language SFT applied and scores the pooled predictions."""

    name = "sequence-classification (multi-source)"

    def __init__(self, tokenizer, sources: Mapping[str, tuple[Any, Any]], *, max_length: int = 128,
                 group_by_length: bool = True, sampling: str = "proportional", swap=None,
                 progress: Progress | None = None) -> None:
        if not sources:
            raise UsageError("a multi-source task SFT needs at least one source")
        parse_sampling(sampling)
        self.tokenizer = tokenizer
        self.sampling = sampling
        self.swap = swap
        self.names = list(sources)
        self.parts: list[ClassificationObjective] = []
        for name in self.names:
            train, validation = sources[name]

            def told(fields: dict[str, Any], name: str = name) -> None:
                if progress is not None:
                    progress({**fields, "source": name})

            self.parts.append(ClassificationObjective(tokenizer, train, validation, max_length=max_length,
                                                      group_by_length=group_by_length, progress=told))
        labels = {part.label_names for part in self.parts}
        if len(labels) != 1:
            raise UsageError("the sources' label sets differ: " + "; ".join(
                f"{n}: {list(p.label_names)}" for n, p in zip(self.names, self.parts)))
        self.label_names = self.parts[0].label_names
        self.current: str | None = None

    # ------------------------------------------------------------------ the batches of an epoch

    def num_examples(self) -> int:
        return sum(part.num_examples() for part in self.parts)

    def schedule(self, batch_size: int, seed: int) -> list[tuple[int, list[int]]]:
        """One epoch: (source index, rows of that source) for every batch, in training order."""
        sizes = [part.num_examples() for part in self.parts]
        per_source = [batch_rows(part._lengths, batch_size, seed * 7919 + 31 * i, part.group_by_length)
                      for i, part in enumerate(self.parts)]
        total = sum(len(b) for b in per_source)
        generator = torch.Generator().manual_seed(seed)
        rule, _ = parse_sampling(self.sampling)
        if rule == "proportional":
            flat = [(i, rows) for i, batches in enumerate(per_source) for rows in batches]
            return [flat[j] for j in torch.randperm(len(flat), generator=generator).tolist()]
        weights = torch.tensor(source_weights(sizes, self.sampling), dtype=torch.float64)
        draws = torch.multinomial(weights, total, replacement=True, generator=generator).tolist()
        cursor, passes = [0] * len(self.parts), [0] * len(self.parts)
        out = []
        for i in draws:
            if cursor[i] == len(per_source[i]):  # this source's batches are used up: a new shuffle of them
                passes[i] += 1
                cursor[i] = 0
                per_source[i] = batch_rows(self.parts[i]._lengths, batch_size,
                                           seed * 7919 + 31 * i + 1_000_003 * passes[i], self.parts[i].group_by_length)
            out.append((i, per_source[i][cursor[i]]))
            cursor[i] += 1
        return out

    def batches(self, batch_size: int, seed: int) -> Iterator[dict[str, torch.Tensor]]:
        for i, rows in self.schedule(batch_size, seed):
            batch = collate(self.tokenizer, self.parts[i].train, rows)
            batch[SOURCE_KEY] = torch.tensor([i], dtype=torch.long)
            yield batch

    def steps_per_source(self, batch_size: int, seeds: Sequence[tuple[int, int]]) -> dict[str, int]:
        """How many steps each source trains in phases of ``(order seed of its first epoch, steps)``:
        the epochs' schedules replayed (they are deterministic), so a resumed run counts the same."""
        counts = dict.fromkeys(self.names, 0)
        for first_seed, steps in seeds:
            epoch = 0
            while steps > 0:
                for i, _ in self.schedule(batch_size, first_seed + epoch)[:steps]:
                    counts[self.names[i]] += 1
                    steps -= 1
                epoch += 1
        return counts

    # ------------------------------------------------------------------ one step

    @contextmanager
    def source_context(self, batch: dict[str, torch.Tensor]) -> Iterator[dict[str, torch.Tensor]]:
        """The batch without its source marker, with its source's language SFT applied meanwhile."""
        stripped = dict(batch)
        index = stripped.pop(SOURCE_KEY, None)
        source = self.names[int(index.reshape(-1)[0])] if index is not None else None
        self.current = source
        if self.swap is None or source is None:
            yield stripped
            return
        with self.swap.applied(source):
            yield stripped

    def train_fields(self) -> dict[str, Any]:
        """Added to the engine's train events: the source of the last batch trained."""
        return {"source": self.current} if self.current is not None else {}

    def evaluate(self, model: nn.Module, batch_size: int) -> dict[str, Any] | None:
        preds: list[int] = []
        golds: list[int] = []
        per_source: dict[str, float] = {}
        for name, part in zip(self.names, self.parts):
            if part.validation is None:
                continue
            context = self.swap.applied(name) if self.swap is not None else _nothing()
            with context:
                mine = predict(model, self.tokenizer, part.validation, batch_size)
            gold = part.validation.labels.tolist()
            per_source[name] = round(classification_metrics(mine, gold, self.label_names)["macro_f1"], 4)
            preds.extend(mine)
            golds.extend(gold)
        if not preds:
            return None
        metrics = classification_metrics(preds, golds, self.label_names)
        out = {k: metrics[k] for k in ("accuracy", "macro_f1", "prediction_shares", "collapsed_classes")}
        out["macro_f1_by_source"] = per_source
        return out


@contextmanager
def _nothing() -> Iterator[None]:
    yield

