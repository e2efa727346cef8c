"""The curves of one run, kept column-wise so a batch of new lines merges with ``list.extend``.

Pure and torch-free. The live view's reader thread folds each batch of new ``metrics.jsonl`` events
into a fresh :class:`RunSeries` and the screen merges it into the one it holds: the per-event work
happens off the event loop, and the merge is a handful of list extends however big the batch.
Plots are drawn from :func:`downsample`, so a 100,000-step run plots a few hundred points.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from deftx.records.schema import Evaluated, Event, MaskSelected, PhaseStarted, RunDone, StepsTrained, number, as_events

QUANTITIES = ("loss", "lr", "throughput", "l1")


@dataclass
class Curve:
    """Points ``(step, value)`` of one quantity in one phase, in the order written."""

    steps: list[float] = field(default_factory=list)
    values: list[float] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.values)

    def append(self, step: float, value: float) -> None:
        self.steps.append(step)
        self.values.append(value)

    def extend(self, other: Curve) -> None:
        self.steps.extend(other.steps)
        self.values.extend(other.values)


@dataclass
class EvalPoint:
    phase: int | None
    step: int | None
    metrics: dict[str, float]


@dataclass
class RunSeries:
    """Everything the live view plots or lists for one run."""

    curves: dict[tuple[int, str], Curve] = field(default_factory=dict)  # (phase, quantity) -> curve
    evals: list[EvalPoint] = field(default_factory=list)
    selection: MaskSelected | None = None
    phase_totals: dict[int, int] = field(default_factory=dict)
    done: dict[str, Any] | None = None
    events: int = 0
    _phase: int | None = None  # the phase of the last event

    @classmethod
    def from_events(cls, events: Iterable[Event], phase: int | None = None) -> RunSeries:
        series = cls(_phase=phase)
        series.add_events(events)
        return series

    def curve(self, phase: int, quantity: str) -> Curve:
        return self.curves.get((phase, quantity)) or Curve()

    def phases(self) -> list[int]:
        return sorted({phase for phase, _ in self.curves} | set(self.phase_totals))

    @property
    def current_phase(self) -> int | None:
        return self._phase

    def add_events(self, events: Iterable[Event | dict[str, Any]]) -> None:
        curves = self.curves
        for event in as_events(events):  # JSON objects are parsed as metrics.jsonl is
            self.events += 1
            if isinstance(event, StepsTrained):
                phase = self._phase = event.phase if event.phase is not None else (self._phase or 1)
                for name in QUANTITIES:
                    value = getattr(event, name)
                    if value is not None:
                        curve = curves.get((phase, name))
                        if curve is None:
                            curve = curves[(phase, name)] = Curve()
                        curve.append(event.step, value)
                if event.total_steps is not None:
                    self.phase_totals[phase] = event.total_steps
            elif isinstance(event, PhaseStarted):
                self._phase = event.phase
                if event.total_steps is not None:
                    self.phase_totals[event.phase] = event.total_steps
            elif isinstance(event, Evaluated):
                metrics = {k: value for k, v in event.metrics.items() if (value := number(v)) is not None}
                self.evals.append(EvalPoint(self._phase if event.phase is None else event.phase, event.step, metrics))
            elif isinstance(event, MaskSelected):
                self.selection = event
            elif isinstance(event, RunDone):
                self.done = event.summary

    def merge(self, newer: RunSeries) -> bool:
        """Append a later batch. Returns whether any curve grew (a replot is due)."""
        grew = False
        for key, curve in newer.curves.items():
            if not len(curve):
                continue
            mine = self.curves.get(key)
            if mine is None:
                self.curves[key] = Curve(list(curve.steps), list(curve.values))
            else:
                mine.extend(curve)
            grew = True
        self.evals.extend(newer.evals)
        if newer.selection is not None:
            self.selection = newer.selection
        self.phase_totals.update(newer.phase_totals)
        if newer.done is not None:
            self.done = newer.done
        self.events += newer.events
        if newer._phase is not None:
            self._phase = newer._phase
        return grew

    def latest(self, quantity: str) -> tuple[int, float, float] | None:
        """``(phase, step, value)`` of the last point of a quantity, from the latest phase that has one."""
        for phase in sorted({p for p, q in self.curves if q == quantity}, reverse=True):
            curve = self.curves[(phase, quantity)]
            if len(curve):
                return phase, curve.steps[-1], curve.values[-1]
        return None

    def trend(self, quantity: str, points: int = 120) -> list[float]:
        """The quantity over the whole run (phases one after the other), at most ``points`` values."""
        values: list[float] = []
        for phase in sorted(p for p, q in self.curves if q == quantity):
            values.extend(self.curves[(phase, quantity)].values)
        _, ys = downsample(values, values, points)
        return ys


def downsample(xs: list[float], ys: list[float], max_points: int) -> tuple[list[float], list[float]]:
    """At most ``max_points`` evenly spaced points, always keeping the first and the last.

    Plain striding (C-speed slicing): O(n / stride) per call however long the run, which is what
    lets the live view replot twice a second on a 100,000-line file.
    """
    n = min(len(xs), len(ys))
    if max_points < 2:
        max_points = 2
    if n <= max_points:
        return list(xs[:n]), list(ys[:n])
    stride = -(-n // (max_points - 1))  # ceil: leaves room for the last point
    out_x, out_y = xs[0:n:stride], ys[0:n:stride]
    if (n - 1) % stride:
        out_x.append(xs[n - 1])
        out_y.append(ys[n - 1])
    return out_x, out_y
