"""The interface the two-phase engine drives."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

import torch
from torch import nn


class Objective(Protocol):
    """What the engine needs from a training objective."""

    name: str

    def num_examples(self) -> int:
        """Training examples (blocks for masked-LM) in one epoch."""

    def batches(self, batch_size: int, seed: int) -> Iterator[dict[str, torch.Tensor]]:
        """One epoch of shuffled training batches, deterministic for a seed."""

    def prepare_batch(self, batch: dict[str, torch.Tensor], step_seed: int) -> dict[str, torch.Tensor]:
        """The batch with any randomness of the objective drawn (masked-LM: the masking), so that
        its parts can go to several processes and still see what one process would."""

    def loss_terms(self, batch: dict[str, torch.Tensor]) -> int:
        """How many terms the mean loss of a (prepared) batch averages."""

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor], step_seed: int,
             normalizer: float | None = None) -> torch.Tensor:
        """The mean training loss of a batch, or its summed loss divided by ``normalizer``."""

    def evaluate(self, model: nn.Module, batch_size: int) -> dict[str, Any] | None:
        """Validation metrics, or None when the objective has no validation data."""


def move(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device) for k, v in batch.items()}
