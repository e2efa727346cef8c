"""Masked-LM blocks made while training reads them: a text far larger than a run consumes (a whole
Wikipedia against 100,000 steps) is never read in full, and the first step starts at once.

The sources are read in order, line by line; every line is tokenised as it comes and the token stream
is cut into blocks as :mod:`deftx.data.blocks` cuts it. A shuffle buffer of ``buffer_blocks`` blocks
mixes the order (a seeded random block of the buffer leaves for each new one that enters). The
held-out blocks are made of the lines whose hash falls in a fixed 2% (:func:`is_held_out`): they are the
same whatever the run, and never trained on. Repeated lines are not removed (that needs a pass over
the whole text); ``max_lines`` reads the first lines only (a random subset needs the whole text).

Where the stream stands (lines read, the partial block, the buffer, the random generator) is a
:class:`StreamState`, saved in every checkpoint, so that a resumed run continues with the very block
the interrupted one would have read next: the lines already read are skipped without being
tokenised.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from deftx.data.blocks import BlockEnds, token_ids
from deftx.data.text import TEXT_HINT, TextSource
from deftx.errors import DataFormatError

HELD_OUT_EVERY = 50  # one line in 50 (by its hash) is held out
TOKENISE_LINES = 256  # lines tokenised together


def line_hash(line: str) -> int:
    return int.from_bytes(hashlib.blake2b(line.encode(), digest_size=8).digest(), "little")


def is_held_out(line: str) -> bool:
    return line_hash(line) % HELD_OUT_EVERY == 0


@dataclass
class StreamState:
    """Where a block stream stands: what a checkpoint holds to continue it exactly."""

    lines: int = 0  # lines of the sources read (held-out ones included)
    carry: list[int] = field(default_factory=list)  # tokens of the block being filled
    buffer: list[np.ndarray] = field(default_factory=list)  # the shuffle buffer's blocks
    rng: dict[str, Any] | None = None  # the buffer's generator
    blocks: int = 0  # blocks given out in this pass
    done: bool = False  # the sources are read to their end

    def to_dict(self) -> dict[str, Any]:
        """JSON values, and the buffer as a tensor (for a checkpoint)."""
        import torch

        buffer = torch.from_numpy(np.stack(self.buffer).astype(np.int32)) if self.buffer else None
        return {"lines": self.lines, "carry": list(self.carry), "blocks": self.blocks, "done": self.done,
                "rng": self.rng, "buffer": buffer}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StreamState:
        buffer = data.get("buffer")
        if buffer is not None and hasattr(buffer, "numpy"):
            buffer = buffer.numpy()
        return cls(int(data["lines"]), [int(t) for t in data.get("carry") or []],
                   list(np.asarray(buffer, dtype=np.int32)) if buffer is not None else [], data.get("rng"),
                   int(data.get("blocks") or 0), bool(data.get("done")))


class BlockStream:
    """The blocks of ``sources``, made as they are read (see the module's docstring)."""

    def __init__(self, sources: Sequence[TextSource], tokenizer: Any, *, max_length: int,
                 buffer_blocks: int = 2048, max_lines: int | None = None) -> None:
        self.sources, self.tokenizer, self.width = list(sources), tokenizer, max_length
        self.buffer_blocks, self.max_lines = buffer_blocks, max_lines
        self.ends = BlockEnds.of(tokenizer, max_length)

    def _lines(self, skip: int = 0) -> Iterator[str]:
        """Every line of the sources, in order, after the first ``skip`` (read, not tokenised)."""
        seen = 0
        for source in self.sources:
            count = 0
            for line in source.lines():
                count += 1
                seen += 1
                if self.max_lines is not None and seen > self.max_lines:
                    return
                if seen > skip:
                    yield line
            if not count:
                raise DataFormatError(f"{source.name} holds no text", hint=TEXT_HINT)

    def _cut(self, carry: list[int], ids: list[int]) -> tuple[list[np.ndarray], list[int]]:
        """Full blocks from the carried tokens and new ones; the tokens left over."""
        tokens = carry + ids
        inner = self.ends.inner
        n_full = len(tokens) // inner
        if not n_full:
            return [], tokens
        body = np.asarray(tokens[: n_full * inner], dtype=np.int32).reshape(n_full, inner)
        return list(self.ends.wrap(body)), tokens[n_full * inner:]

    def held_out(self, max_blocks: int = 128, max_lines: int = 2_000_000) -> np.ndarray:
        """The held-out blocks: those made of the held-out lines, from the start of the text (at most
        ``max_blocks``, looking at most ``max_lines`` lines far)."""
        blocks: list[np.ndarray] = []
        carry: list[int] = []
        for n, line in enumerate(self._lines()):
            if n >= max_lines or len(blocks) >= max_blocks:
                break
            if is_held_out(line):
                made, carry = self._cut(carry, token_ids(self.tokenizer, [line])[0])
                blocks.extend(made)
        return np.stack(blocks[:max_blocks]) if blocks else np.empty((0, self.width), dtype=np.int32)

    def blocks(self, seed: int, state: StreamState | None = None) -> Iterator[tuple[np.ndarray, StreamState]]:
        """The training blocks of one pass over the text, shuffled through the buffer, each with the
        stream's state just after it (the same object, updated: read it before asking for the next
        block); from ``state`` (a checkpoint's) when given. At every block the state holds everything
        read and not given out yet, so a stream continued from it gives the same blocks."""
        state = StreamState(**{**(state or StreamState()).__dict__})
        state.buffer, state.carry = list(state.buffer), list(state.carry)
        rng = np.random.default_rng(seed)
        if state.rng is not None:
            rng.bit_generator.state = state.rng

        def give(limit: int) -> Iterator[tuple[np.ndarray, StreamState]]:
            while len(state.buffer) > limit:  # a random block of the buffer leaves
                out = state.buffer.pop(int(rng.integers(len(state.buffer))))
                state.blocks += 1
                state.rng = rng.bit_generator.state
                yield out, state

        def take(lines: list[str]) -> Iterator[tuple[np.ndarray, StreamState]]:
            """Lines tokenised together (on all cores), then added one by one, so that the state after
            any block names exactly the lines whose tokens are in it."""
            kept = [line for line in lines if not is_held_out(line)]
            ids = iter(token_ids(self.tokenizer, kept) if kept else [])
            for line in lines:
                state.lines += 1
                if is_held_out(line):
                    continue
                made, state.carry = self._cut(state.carry, next(ids))
                state.buffer.extend(made)
                yield from give(self.buffer_blocks)

        if not state.done:
            batch: list[str] = []
            for line in self._lines(skip=state.lines):
                batch.append(line)
                if len(batch) >= TOKENISE_LINES:
                    yield from take(batch)
                    batch = []
            yield from take(batch)
            state.done = True
        yield from give(0)  # the text is read: the buffer empties in random order
