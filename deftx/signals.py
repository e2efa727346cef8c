"""SIGTERM, the notice a batch scheduler sends before it kills a job: training stops at the end of the
current step, checkpoints, and the run is marked interrupted.

Torch-free, so that the worker processes of ``deftx transfer`` install their handler before torch
loads. A worker between two steps (or loading a step's data) only notes the signal
(:func:`note_sigterm`): raising from a signal handler at an arbitrary point (inside an import, a
library's callback) is swallowed there or leaves half-built state, so the next training notices the
pending stop when it starts and stops before its first step.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from deftx.errors import TrainingTerminated

_pending = False  # SIGTERM arrived while no StopRequest was installed


def note_sigterm(signum: int, frame: Any) -> None:
    """A SIGTERM handler that only notes the signal, for the next :class:`StopRequest`."""
    global _pending
    _pending = True


def sigterm_pending() -> bool:
    return _pending


class StopRequest:
    """While installed (``with StopRequest():``), SIGTERM does not kill the process: training stops
    at the end of the current step, saves a checkpoint and raises :class:`TrainingTerminated`.
    Inside :meth:`anytime` (the selection, which the phase-1 checkpoint already covers) it raises
    at once. Installed only from the main thread; elsewhere it is inert."""

    def __init__(self, signum: int = signal.SIGTERM) -> None:
        self.signum = signum
        self.requested = False
        self._anytime = False
        self._previous: Any = None
        self._installed = False

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(self.signum, self._handle)
            self._installed = True
            self.requested = self.requested or (self.signum == signal.SIGTERM and _pending)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._installed:
            signal.signal(self.signum, self._previous)
            self._installed = False

    def _handle(self, signum: int, frame: Any) -> None:
        self.requested = True
        if self._anytime:
            self._anytime = False
            raise TrainingTerminated("terminated (SIGTERM); the last checkpoint holds the run",
                                     hint="rerun the same command with --resume")

    @contextmanager
    def anytime(self) -> Iterator[None]:
        self._anytime = True
        try:
            if self.requested:
                self._handle(self.signum, None)
            yield
        finally:
            self._anytime = False
