"""Masked-LM on unlabelled text: the language SFT objective.

Text lines are tokenised, concatenated and cut into blocks of ``max_length`` tokens (with the
model's start and end tokens). 15% of the tokens are chosen for prediction (80% replaced by the mask
token, 10% by a random token, 10% kept). Logits are computed only at the chosen positions, which is
much cheaper than over the whole sequence for a large vocabulary.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from deftx.data.blocks import BlockEnds
from deftx.errors import DataFormatError
from deftx.model import base_prefix
from deftx.objectives.base import move


class MaskedLMObjective:
    name = "masked-lm"
    evaluates_start = True  # the engine records the start point's held-out metrics (``base_eval``)

    def __init__(
        self,
        tokenizer,
        text: Sequence[str] | Any,
        *,
        max_length: int = 128,
        mlm_probability: float = 0.15,
        validation_fraction: float = 0.02,
        max_validation_blocks: int = 128,
        seed: int = 0,
    ) -> None:
        """``text``: the lines (tokenised here, for a small text) or the blocks already made of it (rows
        of ``max_length`` token ids, e.g. the memory-mapped :class:`~deftx.data.blocks.BlockArray` of the
        cache)."""
        if tokenizer.mask_token_id is None:
            raise DataFormatError("the tokenizer has no mask token: it cannot be used for masked-LM")
        self.tokenizer = tokenizer
        self.mlm_probability = mlm_probability
        blocks = self._blocks(list(text), max_length) if _is_lines(text) else text
        if not len(blocks):
            raise DataFormatError("the text is empty after tokenisation", hint="give more text with --text")
        self.blocks = blocks
        generator = torch.Generator().manual_seed(seed)
        order = torch.randperm(len(blocks), generator=generator).numpy()
        n_val = min(max_validation_blocks, int(len(blocks) * validation_fraction)) if len(blocks) >= 50 else 0
        self.validation = torch.as_tensor(np.asarray(blocks[order[:n_val]]), dtype=torch.long) if n_val else None
        self.train_rows = order[n_val:] if n_val else np.arange(len(blocks))
        special = {tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.bos_token_id,
                   tokenizer.eos_token_id, tokenizer.pad_token_id}
        self.special_ids = torch.tensor(sorted(i for i in special if i is not None), dtype=torch.long)
        self.vocab_size = len(tokenizer)

    def _blocks(self, lines: Sequence[str], max_length: int) -> torch.Tensor:
        ends = BlockEnds.of(self.tokenizer, max_length)
        inner = ends.inner
        ids: list[int] = []
        for i in range(0, len(lines), 2000):
            encoded = self.tokenizer(list(lines[i : i + 2000]), add_special_tokens=False)["input_ids"]
            for seq in encoded:
                ids.extend(seq)
        if not ids:
            return torch.empty(0, max_length, dtype=torch.long)
        n_full = len(ids) // inner
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        if n_full == 0:  # less text than one block: one padded block
            ids = ids + [pad] * (inner - len(ids))
            n_full = 1
        body = np.asarray(ids[: n_full * inner], dtype=np.int64).reshape(n_full, inner)
        return torch.from_numpy(ends.wrap(body))

    @property
    def train(self) -> torch.Tensor:
        """The training blocks as one tensor (a copy: for a small text, a test)."""
        return torch.as_tensor(np.asarray(self.blocks[self.train_rows]), dtype=torch.long)

    def num_examples(self) -> int:
        return int(len(self.train_rows))

    def batches(self, batch_size: int, seed: int) -> Iterator[dict[str, torch.Tensor]]:
        order = torch.randperm(self.num_examples(), generator=torch.Generator().manual_seed(seed)).numpy()
        for i in range(0, len(order), batch_size):
            rows = self.train_rows[order[i : i + batch_size]]
            yield {"input_ids": torch.as_tensor(np.asarray(self.blocks[rows]), dtype=torch.long)}

    def mask_tokens(self, input_ids: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(masked input ids, labels with -100 at positions not to predict), deterministic for a seed."""
        generator = torch.Generator().manual_seed(seed)
        labels = input_ids.clone()
        special = torch.isin(input_ids, self.special_ids)
        chosen = (torch.rand(input_ids.shape, generator=generator) < self.mlm_probability) & ~special
        if not chosen.any():  # always predict at least one token per batch
            candidates = torch.nonzero(~special)
            if len(candidates):
                r, c = candidates[torch.randint(len(candidates), (1,), generator=generator)][0]
                chosen[r, c] = True
        labels[~chosen] = -100
        masked = input_ids.clone()
        roll = torch.rand(input_ids.shape, generator=generator)
        masked[chosen & (roll < 0.8)] = self.tokenizer.mask_token_id
        random_pos = chosen & (roll >= 0.8) & (roll < 0.9)
        masked[random_pos] = torch.randint(self.vocab_size, (int(random_pos.sum()),), generator=generator)
        return masked, labels

    def _logits_at(self, model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                   labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        prefix = base_prefix(model)
        heads = [m for name, m in model.named_children() if name != prefix]
        positions = labels != -100
        if prefix and len(heads) == 1:
            hidden = getattr(model, prefix)(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            return heads[0](hidden[positions]), labels[positions]
        logits = model(input_ids=input_ids, attention_mask=attention_mask).logits
        return logits[positions], labels[positions]

    def prepare_batch(self, batch: dict[str, torch.Tensor], step_seed: int) -> dict[str, torch.Tensor]:
        """The batch with its masking drawn (masked input ids, attention mask, labels). Drawn over the
        whole batch, so that a batch split over processes is masked as it would be in one."""
        if "labels" in batch:
            return batch
        masked, labels = self.mask_tokens(batch["input_ids"], step_seed)
        pad = self.tokenizer.pad_token_id
        attention = (batch["input_ids"] != pad).long() if pad is not None else torch.ones_like(masked)
        return {"input_ids": masked, "attention_mask": attention, "labels": labels}

    def loss_terms(self, batch: dict[str, torch.Tensor]) -> int:
        """How many terms the batch's mean loss averages: its predicted tokens."""
        return int((batch["labels"] != -100).sum())

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor], step_seed: int,
             normalizer: float | None = None) -> torch.Tensor:
        """The mean loss over the predicted tokens, or their summed loss divided by ``normalizer``."""
        device = next(model.parameters()).device
        inputs = move(self.prepare_batch(batch, step_seed), device)
        logits, targets = self._logits_at(model, inputs["input_ids"], inputs["attention_mask"], inputs["labels"])
        if normalizer is None:
            return F.cross_entropy(logits.float(), targets)
        return F.cross_entropy(logits.float(), targets, reduction="sum") / normalizer

    @torch.no_grad()
    def evaluate(self, model: nn.Module, batch_size: int) -> dict[str, Any] | None:
        if self.validation is None:
            return None
        was_training = model.training
        model.eval()
        device = next(model.parameters()).device
        total_loss, correct, count = 0.0, 0, 0
        for i in range(0, len(self.validation), batch_size):
            ids = self.validation[i : i + batch_size]
            masked, labels = self.mask_tokens(ids, seed=10_000 + i)
            pad = self.tokenizer.pad_token_id
            attention = (ids != pad).long() if pad is not None else torch.ones_like(ids)
            inputs = move({"input_ids": masked, "attention_mask": attention, "labels": labels}, device)
            logits, targets = self._logits_at(model, inputs["input_ids"], inputs["attention_mask"], inputs["labels"])
            total_loss += float(F.cross_entropy(logits.float(), targets, reduction="sum"))
            correct += int((logits.argmax(-1) == targets).sum())
            count += int(targets.numel())
        model.train(was_training)
        mean = total_loss / max(count, 1)
        return {"mlm_loss": mean, "mlm_accuracy": correct / max(count, 1), "perplexity": math.exp(min(mean, 50.0))}


def _is_lines(text: Any) -> bool:
    """Whether ``text`` is lines of text (not blocks of token ids)."""
    if isinstance(text, (str, bytes)):
        raise TypeError("give the text as a sequence of lines")
    if hasattr(text, "shape") or hasattr(text, "chunks"):
        return False
    return all(isinstance(line, str) for line in text)


class StreamingMaskedLMObjective(MaskedLMObjective):
    """Masked-LM over blocks made while training reads them (:class:`~deftx.data.stream.BlockStream`):
    for a text far larger than the run consumes. Its size is not known, so a budget must be in steps;
    where the stream stands after each batch is :meth:`stream_state`, which a checkpoint keeps, and
    :meth:`batches` continues from it."""

    streams = True

    def __init__(self, tokenizer, stream: Any, *, max_length: int = 128, mlm_probability: float = 0.15,
                 max_validation_blocks: int = 128, seed: int = 0) -> None:
        if tokenizer.mask_token_id is None:
            raise DataFormatError("the tokenizer has no mask token: it cannot be used for masked-LM")
        self.tokenizer = tokenizer
        self.mlm_probability = mlm_probability
        self.stream = stream
        held = stream.held_out(max_validation_blocks)
        self.validation = torch.as_tensor(held, dtype=torch.long) if len(held) else None
        special = {tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.bos_token_id,
                   tokenizer.eos_token_id, tokenizer.pad_token_id}
        self.special_ids = torch.tensor(sorted(i for i in special if i is not None), dtype=torch.long)
        self.vocab_size = len(tokenizer)
        self._state: Any = None

    def num_examples(self) -> None:  # type: ignore[override]
        return None

    def batches(self, batch_size: int, seed: int, start: dict[str, Any] | None = None) -> Iterator[dict[str, torch.Tensor]]:
        """One pass over the text in batches of blocks; from ``start`` (a :meth:`stream_state`) when given."""
        from deftx.data.stream import StreamState

        blocks: list[np.ndarray] = []
        state = None
        for block, state in self.stream.blocks(seed, StreamState.from_dict(start) if start else None):
            blocks.append(block)
            if len(blocks) == batch_size:
                self._state = state
                yield {"input_ids": torch.as_tensor(np.stack(blocks), dtype=torch.long)}
                blocks = []
        if blocks:
            self._state = state
            yield {"input_ids": torch.as_tensor(np.stack(blocks), dtype=torch.long)}

    def stream_state(self) -> dict[str, Any] | None:
        """Where the stream stands after the last batch given out (for a checkpoint)."""
        return self._state.to_dict() if self._state is not None else None
