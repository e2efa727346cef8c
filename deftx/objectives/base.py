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

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor], step_seed: int) -> torch.Tensor:
        """The mean training loss of a batch."""

    def evaluate(self, model: nn.Module, batch_size: int) -> dict[str, Any] | None:
        """Validation metrics, or None when the objective has no validation data."""


def move(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device) for k, v in batch.items()}
