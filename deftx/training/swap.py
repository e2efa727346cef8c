"""Language SFTs applied for one batch and removed after it, in place on the model's device.

A multi-source task SFT trains each batch with that batch's source-language SFT applied: the
forward and backward passes see theta + phi_lang(source), the optimizer then updates theta alone.
:class:`LanguageSwap` adds a language SFT's values to the encoder's parameters at its indices and,
after the backward pass, writes back the values it overwrote (saved before, so the removal is exact:
no float rounding of ``(x + d) - d`` accumulates over thousands of steps). Nothing else is copied:
the indices and values live on the parameters' device, moved there once.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import torch
from torch import nn

from deftx.errors import ArtifactError, FingerprintMismatchError
from deftx.model import base_parameters
from deftx.sft.diff import SparseDiff


class LanguageSwap:
    """The language SFT of each source, ready to be applied to ``model`` for one batch at a time.
    ``sfts`` maps a source to its language SFT, or to None for a source trained without one."""

    def __init__(self, model: nn.Module, sfts: Mapping[str, SparseDiff | None], *, force: bool = False) -> None:
        self.params = base_parameters(model)
        self.entries: dict[str, list[tuple[str, torch.Tensor, torch.Tensor]]] = {}
        for source, sft in sfts.items():
            if sft is None:
                continue
            try:
                sft.check_base(model, force=force)
            except FingerprintMismatchError:
                raise FingerprintMismatchError(
                    f"{source}'s language SFT was trained on another base model ({sft.manifest.get('base_model')})",
                    hint="train every SFT on the same model, or pass --force") from None
            entries = []
            for name, (idx, values) in sft.entries.items():
                p = self.params.get(name)
                if p is None:
                    raise ArtifactError(f"{source}'s language SFT changes {name}, which the model does not have",
                                        hint="the SFT belongs to another architecture")
                if tuple(p.shape) != tuple(sft.shapes[name]):
                    raise ArtifactError(f"{source}'s language SFT has shape {tuple(sft.shapes[name])} for {name}, "
                                        f"the model {tuple(p.shape)}", hint="the SFT belongs to another model")
                entries.append((name, idx.to(torch.int64), values))
            self.entries[source] = entries
        self.active: str | None = None

    def sources(self) -> list[str]:
        """The sources that have a language SFT."""
        return list(self.entries)

    def _on_device(self, source: str) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        out = []
        moved = []
        for name, idx, values in self.entries[source]:
            p = self.params[name]
            if idx.device != p.device or values.device != p.device or values.dtype != p.dtype:
                idx, values = idx.to(p.device), values.to(device=p.device, dtype=p.dtype)
            moved.append((name, idx, values))
            out.append((p, idx, values))
        self.entries[source] = moved  # moved once: the next batch of this source finds them there
        return out

    @contextmanager
    def applied(self, source: str | None) -> Iterator[None]:
        """``source``'s language SFT added to the model inside the block, the exact old values back after
        it (also when the block raises). A source without a language SFT changes nothing."""
        if source is None or source not in self.entries:
            yield
            return
        if self.active is not None:
            raise RuntimeError(f"{self.active}'s language SFT is still applied")
        plan = self._on_device(source)
        saved = []
        with torch.no_grad():
            for p, idx, values in plan:
                flat = p.view(-1)
                saved.append(flat.index_select(0, idx))
                flat.index_add_(0, idx, values)
        self.active = source
        try:
            yield
        finally:
            with torch.no_grad():
                for (p, idx, _), old in zip(plan, saved):
                    p.view(-1).index_copy_(0, idx, old)
            self.active = None
