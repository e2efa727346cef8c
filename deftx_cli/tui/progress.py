"""Where a run stands: fold ``metrics.jsonl`` events into a small summary and describe it as a row.

Pure and torch-free. :class:`RunProgress` keeps O(1) state however long the metrics file is (it
never stores the events), so the runs view can follow every run at once. :func:`describe_run`
turns a run's ``run.json`` and its progress into the strings the runs table shows; the current
time comes in as an argument so elapsed time and ETA are exact in tests.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from deftx.methods import SPARSE_METHODS
from deftx.metrics import collapse_warning
from deftx.analysis.comparison import PRIMARY_METRICS, higher_is_better, pick_metric
from deftx.records.files import parse_iso
from deftx.records.reading import RunInfo, on_this_host, pid_alive
from deftx.records.schema import (Evaluated, Event, MaskSelected, PhaseStarted, ResultRecord, RunDone, RunRecord,
                                  RunResumed, Resumption, StepsTrained, TextPrepared, as_events, number)

from deftx_cli.text import prepare_text
from deftx_cli.tui.format import (
    DASH,
    format_duration,
    format_number,
    format_utc,
    languages_label,
    method_label,
    model_label,
)

Clock = Callable[[], float]
"""Seconds since the epoch; ``time.time`` in the app, a constant in tests."""

# Short names for the runs table's narrow "Best" column.
METRIC_SHORT = {"macro_f1": "F1", "accuracy": "acc", "mlm_loss": "mlm", "mlm_accuracy": "mlm acc", "perplexity": "ppl"}


def metric_text(name: str, value: float | None) -> str:
    """``F1 0.79``: a metric's short name and its value."""
    return f"{METRIC_SHORT.get(name, name)} {format_number(value, 3)}"


@dataclass
class _PhaseRate:
    first_step: int
    first_time: float
    last_step: int
    last_time: float

    def steps_per_second(self) -> float | None:
        steps = self.last_step - self.first_step
        seconds = self.last_time - self.first_time
        if steps <= 0 or seconds <= 0:
            return None
        return steps / seconds


@dataclass
class RunProgress:
    """A running summary of one run's metrics events (constant memory)."""

    phase: int | None = None
    step: int | None = None
    phase_totals: dict[int, int] = field(default_factory=dict)
    last_loss: float | None = None
    last_lr: float | None = None
    last_throughput: float | None = None
    last_time: float | None = None
    first_time: float | None = None
    best: dict[str, float] = field(default_factory=dict)  # metric name -> best value seen
    phase_best: dict[int, dict[str, float]] = field(default_factory=dict)  # the same, per phase
    collapse: dict[str, Any] | None = None  # the latest evaluation's classes (almost) never predicted
    latest_eval: dict[str, float] = field(default_factory=dict)
    rates: dict[int, _PhaseRate] = field(default_factory=dict)
    selection: MaskSelected | None = None
    preparing: TextPrepared | None = None  # the text preparation in progress (None when none is)
    source: str | None = None  # a multi-source task SFT: the source of the batch trained last
    done: bool = False
    summary: dict[str, Any] = field(default_factory=dict)
    events: int = 0

    def update(self, events: Iterable[Event | dict[str, Any]]) -> None:
        for event in as_events(events):  # JSON objects are parsed as metrics.jsonl is
            self.events += 1
            when = event.time
            if when is not None:
                self.last_time = when if self.last_time is None else max(self.last_time, when)
                if self.first_time is None:
                    self.first_time = when
            if isinstance(event, StepsTrained):
                self._train(event, when)
            elif isinstance(event, PhaseStarted):
                self.phase, self.step = event.phase, 0
                if event.total_steps is not None:
                    self.phase_totals[event.phase] = event.total_steps
            elif isinstance(event, Evaluated):
                self._eval(event.metrics, self.phase if event.phase is None else event.phase)
            elif isinstance(event, RunResumed):  # the step rate starts again: the pause is not training time
                if event.phase is not None:
                    self.phase, self.step = event.phase, event.step
                    self.rates.pop(event.phase, None)
            elif isinstance(event, MaskSelected):
                self.selection = event
            elif isinstance(event, TextPrepared):
                self.preparing = event if event.stage in ("reading", "tokenising") else None
            elif isinstance(event, RunDone):
                self.done = True
                self.summary = event.summary

    def _train(self, event: StepsTrained, when: float | None) -> None:
        phase = event.phase if event.phase is not None else self.phase
        step = self.step = event.step
        self.phase = phase
        if phase is not None and event.total_steps is not None:
            self.phase_totals[phase] = event.total_steps
        if event.loss is not None:
            self.last_loss = event.loss
        if event.lr is not None:
            self.last_lr = event.lr
        if event.throughput is not None:
            self.last_throughput = event.throughput
        if event.source is not None:
            self.source = event.source
        if phase is not None and when is not None:
            rate = self.rates.get(phase)
            if rate is None:
                self.rates[phase] = _PhaseRate(step, when, step, when)
            elif step >= rate.last_step:
                rate.last_step, rate.last_time = step, when

    def _eval(self, metrics: dict[str, Any], phase: int | None = None) -> None:
        collapsed = metrics.get("collapsed_classes")
        if isinstance(collapsed, list):
            self.collapse = {"phase": phase, "metrics": metrics} if collapsed else None
        for name, raw in metrics.items():
            value = number(raw)
            if value is None:
                continue
            self.latest_eval[name] = value
            for best in (self.best, self.phase_best.setdefault(phase or 0, {})):
                old = best.get(name)
                if old is None or (value > old if higher_is_better(name) else value < old):
                    best[name] = value

    def steps_per_second(self) -> float | None:
        """The step rate of the current phase, else of the latest phase that has one."""
        if self.phase is not None and self.phase in self.rates:
            rate = self.rates[self.phase].steps_per_second()
            if rate is not None:
                return rate
        for phase in sorted(self.rates, reverse=True):
            rate = self.rates[phase].steps_per_second()
            if rate is not None:
                return rate
        return None

    def remaining_steps(self, totals: dict[int, int]) -> int | None:
        """Steps left in the current phase plus every later phase, or ``None`` if unknown."""
        if self.phase is None or self.phase not in totals:
            return None
        left = max(totals[self.phase] - (self.step or 0), 0)
        return left + sum(max(t, 0) for p, t in totals.items() if p > self.phase)


def phase_totals_from_record(record: RunRecord) -> dict[int, int]:
    """``{"phase1": 400, "phase2": 400}`` -> ``{1: 400, 2: 400}`` (other keys ignored)."""
    out: dict[int, int] = {}
    for key, total in record.total_steps.items():
        match = re.fullmatch(r"phase_?(\d+)", key)
        if match:
            out[int(match.group(1))] = total
    return out


@dataclass(frozen=True)
class RunRow:
    """One run as the runs table and the live view's header show it (all strings)."""

    key: str  # the run directory's name: stable across refreshes
    run_id: str
    status: str  # running | finished | failed | interrupted | stale | unreadable | other text
    kind: str
    method: str
    languages: str
    task: str
    phase: str
    step: str
    elapsed: str
    eta: str
    loss: str
    best: str
    base_model: str = DASH
    started: str = DASH
    details: tuple[str, ...] = ()  # reasons and warnings, one per line
    warning: bool = False  # readable, but something in it was skipped


def _best_text(progress: RunProgress | None, result: ResultRecord | None, two_phase: bool = False) -> str:
    """An evaluation's result, else the best evaluation of the run's last evaluated phase: the SFT's own
    (phase 2) metric. A two-phase run evaluated only in phase 1 (dense fine-tuning, not the SFT) says so."""
    if result is not None and result.value is not None:
        return metric_text(result.metric, result.value)
    if progress is not None and progress.phase_best:
        phase = max(progress.phase_best)
        best = progress.phase_best[phase]
        name = pick_metric(best)
        if name is not None:
            return metric_text(name, best[name]) + (" (p1)" if two_phase and phase == 1 else "")
    if progress is not None:
        summary_metrics = {k: number(v) for k, v in progress.summary.items() if number(v) is not None}
        name = pick_metric(n for n in summary_metrics if n in PRIMARY_METRICS)
        if name:
            return metric_text(name, summary_metrics[name])
    return DASH


def describe_run(
    info: RunInfo,
    progress: RunProgress | None,
    now: float,
    *,
    bad_lines: int = 0,
    last_bad: str | None = None,
    result: ResultRecord | None = None,
    result_error: str | None = None,
    alive: Callable[[Any], bool] = pid_alive,
    reading: float | None = None,
) -> RunRow:
    """The row for one run. ``now`` is the current time (seconds since the epoch).

    ``reading`` is the fraction of ``metrics.jsonl`` read so far while a big file is still being
    read (the step then ends in ``…``).
    """
    notes = _bad_line_details(bad_lines, last_bad)
    if reading is not None:
        notes.append(f"reading metrics.jsonl: {100 * reading:.0f}% so far")
    if info.record is None:
        return _unreadable_row(info, progress, result, notes)
    record = info.record
    status, details = _status(record, alive)
    totals = phase_totals_from_record(record)
    if progress is not None:
        totals = {**progress.phase_totals, **totals} if totals else dict(progress.phase_totals)
    phase_text, step_text = _position(progress, totals, reading)
    eta = _eta(status, progress, totals, now)
    if status == "running" and progress is not None and progress.preparing is not None and progress.phase is None:
        prepare = progress.preparing  # the text (or the examples) being tokenised: no training step yet
        if prepare.examples_total is not None:
            total, done, phase_text = prepare.examples_total, prepare.examples, "data"
        else:
            total, done, phase_text = prepare.bytes_total, prepare.bytes_read, "text"
        step_text = f"{done / total:.0%}" if total and done is not None else DASH
        details.append(prepare_text(prepare.model_dump(exclude_none=True)))
        if prepare.eta_seconds is not None:
            eta = format_duration(prepare.eta_seconds)
    sources = (record.languages or {}).get("source") or ""
    if "+" in sources:  # a multi-source task SFT: its sources, and the source of the batch being trained
        now_training = f"; batch from {progress.source}" if status == "running" and progress is not None and progress.source else ""
        details.append(f"sources: {sources.replace('+', ', ')}{now_training}")
    collapse_line = _collapse_line(progress, result)
    if collapse_line:
        details.append(collapse_line)
    return RunRow(
        key=info.path.name,
        run_id=info.run_id,
        status=status,
        kind=record.kind or DASH,
        method=method_label(record.method),
        languages=languages_label(record.languages),
        task=record.task or DASH,
        phase=phase_text,
        step=step_text,
        elapsed=format_duration(_elapsed(record, status, progress, now)),
        eta=eta,
        loss=format_number(progress.last_loss) if progress is not None else DASH,
        best=_best_text(progress, result, 2 in totals or record.method in SPARSE_METHODS),
        base_model=model_label(record.base_model),
        started=format_utc(record.started_at),
        details=tuple(details + notes + ([result_error] if result_error else [])),
        warning=bool(bad_lines or result_error or collapse_line),
    )


def _unreadable_row(info: RunInfo, progress: RunProgress | None, result: ResultRecord | None,
                    notes: list[str]) -> RunRow:
    """A run whose run.json cannot be read: the reason, and what its metrics say."""
    has_steps = progress is not None and progress.step is not None
    return RunRow(
        key=info.path.name, run_id=info.run_id, status="unreadable", kind=DASH, method=DASH, languages=DASH, task=DASH,
        phase=str(progress.phase) if has_steps and progress.phase is not None else DASH,
        step=str(progress.step) if has_steps else DASH, elapsed=DASH, eta=DASH,
        loss=format_number(progress.last_loss) if progress is not None else DASH,
        best=_best_text(progress, result), details=(f"unreadable: {info.error}", *notes),
    )


def _status(record: RunRecord, alive: Callable[[Any], bool]) -> tuple[str, list[str]]:
    """The run's status (``stale`` for a run marked running whose process is gone from this
    machine), and the lines that explain it: staleness, resumptions, the error."""
    status, details = record.status, []
    if status == "running" and on_this_host(record.host) and not alive(record.pid):
        status = "stale"
        details.append(f"stale: marked running, but process {record.pid} is not alive on this machine")
    resumed = resumed_text(record.resumptions)
    if resumed:
        details.append(resumed)
    if record.error and status in ("failed", "interrupted", "stale"):
        details.append(f"{status}: {record.error}")
    elif record.error:
        details.append(f"error: {record.error}")
    return status, details


def _position(progress: RunProgress | None, totals: dict[int, int], reading: float | None) -> tuple[str, str]:
    """``2/2`` and ``200/400`` (``…`` while a big metrics file is still being read)."""
    if progress is None or progress.phase is None:
        return DASH, DASH
    total = totals.get(progress.phase)
    step = progress.step or 0
    step_text = (f"{step}/{total}" if total is not None else str(step)) + ("…" if reading is not None else "")
    return f"{progress.phase}/{max(len(totals), progress.phase)}", step_text


def _elapsed(record: RunRecord, status: str, progress: RunProgress | None, now: float) -> float | None:
    started, ended = parse_iso(record.started_at), parse_iso(record.ended_at)
    if started is None:
        return None
    if status == "running":
        return now - started
    if ended is not None:
        return ended - started
    if progress is not None and progress.last_time is not None:
        return progress.last_time - started
    return None


def _eta(status: str, progress: RunProgress | None, totals: dict[int, int], now: float) -> str:
    """The time left of a running run, by its step rate since its last line; ``done`` when finished."""
    if status == "finished":
        return "done"
    if status != "running" or progress is None:
        return DASH
    remaining = progress.remaining_steps(totals)
    rate = progress.steps_per_second()
    if remaining == 0:
        return "0s"
    if remaining is None or not rate:
        return DASH
    since_last = max(now - progress.last_time, 0.0) if progress.last_time is not None else 0.0
    return format_duration(max(remaining / rate - since_last, 0.0))


def _collapse_line(progress: RunProgress | None, result: ResultRecord | None) -> str | None:
    """A warning when a classifier (almost) never predicts one of its classes: from an evaluation's
    record, else from the run's latest validation."""
    if result is not None:
        return collapse_warning(result.metrics, f"{result.language} {result.split}")
    if progress is not None and progress.collapse:
        phase = progress.collapse["phase"]
        return collapse_warning(progress.collapse["metrics"], "valid" + (f", phase {phase}" if phase else ""))
    return None


def resumed_text(resumptions: list[Resumption]) -> str | None:
    """``resumed at phase 1 step 40`` (``resumed 3 times, last at phase 2 step 4``) from ``run.json``'s
    ``resumptions``, or ``None`` for a run that never was."""
    if not resumptions:
        return None
    last = resumptions[-1]
    where = (f"at phase {last.phase} step {last.step}" if last.phase is not None and last.step is not None
             else "from step 0 (no checkpoint)")
    if len(resumptions) == 1:
        return f"resumed {where}"
    return f"resumed {len(resumptions)} times, last {where}"


def _bad_line_details(bad_lines: int, last_bad: str | None) -> list[str]:
    if not bad_lines:
        return []
    line = f"metrics.jsonl: {bad_lines} line{'s' if bad_lines != 1 else ''} not events, skipped"
    if last_bad:
        line += f" (last: {last_bad[:40]!r})"
    return [line]
