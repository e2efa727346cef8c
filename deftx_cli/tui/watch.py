"""Readers that the dashboard's worker threads call: they only read files and return plain data.

:class:`RunsScanner` lists the runs directory and follows every run's ``metrics.jsonl`` through its
own :class:`deftx.records.reading.MetricsTail`, so each scan reads only the bytes written since the last one.
:class:`RunFollower` does the same for one run in full detail (the live view). Neither touches a
widget; the screens post what they return as messages.

One scanner or follower must be used by one thread at a time (the screens never start a second
read while one is running).

Reads are bounded: a scan reads at most :data:`SCAN_BUDGET` bytes of metrics over all runs and a
follower at most :data:`FOLLOW_CHUNK` per poll, so a directory of huge files shows at once and
fills in over the next polls (``behind`` says more is waiting; the screens poll again at once).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from deftx.records.files import METRICS_JSONL, RESULTS_JSON, RUN_JSON
from deftx.records.reading import (
    MetricsTail,
    RunInfo,
    list_runs,
    on_this_host,
    read_experiment,
    read_result,
    read_results,
    read_run,
    started_key,
)
from deftx.records.schema import Event, ResultRecord

from deftx_cli.text import experiment_text
from deftx_cli.tui.progress import Clock, RunProgress, RunRow, describe_run, pid_alive
from deftx_cli.tui.series import RunSeries


SCAN_CHUNK = 4 * 1024 * 1024  # bytes of one run's metrics per scan
SCAN_BUDGET = 16 * 1024 * 1024  # bytes of metrics per scan, all runs together
FOLLOW_CHUNK = 8 * 1024 * 1024  # bytes of the followed run's metrics per poll


def _unreadable_reason(name: str, exc: Exception) -> str:
    if isinstance(exc, UnicodeDecodeError):
        return f"{name} is not UTF-8 text"
    return f"{name} unreadable: {type(exc).__name__}: {exc}"


def read_run_safely(path: Path) -> RunInfo:
    """:func:`deftx.records.reading.read_run`, and a reason instead of an exception for what it does not catch."""
    path = Path(path)
    try:
        return read_run(path)
    except Exception as exc:  # e.g. bytes that are not UTF-8
        return RunInfo(path, path.name, error=_unreadable_reason(RUN_JSON, exc))


def list_runs_safely(runs_dir: Path) -> list[RunInfo]:
    """:func:`deftx.records.reading.list_runs`; if one run makes it give up, every run is read on its own."""
    try:
        return list_runs(runs_dir)
    except Exception:
        pass
    try:
        children = sorted(Path(runs_dir).iterdir(), key=lambda p: p.name, reverse=True)
    except OSError:
        return []
    infos = [read_run_safely(c) for c in children if c.is_dir() and not c.name.startswith(".")]
    try:
        return sorted(infos, key=started_key, reverse=True)
    except Exception:
        return infos


def read_results_safely(runs_dir: Path) -> tuple[list[ResultRecord], list[str]]:
    """Every result record of ``runs_dir``, and for each ``results.json`` that could not be read its
    run and why (:func:`deftx.records.reading.read_results`); never raises."""
    try:
        read = read_results(runs_dir)
    except OSError:
        return [], []
    prefix = f"{Path(runs_dir)}/"
    return read.records, [problem.removeprefix(prefix) for problem in read.problems]


def _signature(path: Path) -> tuple[int, int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size, stat.st_ino


@dataclass
class _ResultCache:
    signature: tuple[int, int, int] | None = None
    record: ResultRecord | None = None
    error: str | None = None

    def refresh(self, run_path: Path) -> None:
        path = run_path / RESULTS_JSON
        signature = _signature(path)
        if signature == self.signature:
            return
        self.signature = signature
        self.record, self.error = None, None
        if signature is None:
            return
        try:
            self.record = read_result(path)
        except ValueError as exc:
            self.error = str(exc)


@dataclass
class _Tracked:
    tail: MetricsTail
    progress: RunProgress = field(default_factory=RunProgress)
    results: _ResultCache = field(default_factory=_ResultCache)
    read_error: str | None = None
    behind: float | None = None  # fraction of the file read while more than one chunk waits, else None
    restarted: bool = False  # the last read started the file again (a resumed run rewrote it)
    _restarts: int = 0

    def read_metrics(self, allowed: bool = True) -> list[Event]:
        """The new complete lines (at most one chunk); with ``allowed`` false only notes what waits."""
        self.restarted = False
        try:
            size = self.tail.path.stat().st_size
        except OSError:
            size = 0
        waiting = size - self.tail.offset
        if not allowed:
            self.behind = self.tail.offset / size if waiting > 0 else None
            return []
        try:
            events = self.tail.read_new()
        except OSError as exc:
            self.read_error = f"metrics.jsonl unreadable: {exc.strerror or exc}"
            return []
        self.read_error = None
        self.restarted = self.tail.restarts != self._restarts
        if self.restarted:  # what was folded so far came from lines that are gone
            self._restarts = self.tail.restarts
            self.progress = RunProgress()
        self.behind = self.tail.offset / size if waiting > self.tail.max_bytes and size else None
        return events


def _wants_results(info: RunInfo) -> bool:
    return not info.readable or info.kind == "evaluation"


class RunsScanner:
    """Reads every run under ``runs_dir`` into a :class:`RunRow`, incrementally."""

    def __init__(self, runs_dir: Path, clock: Clock, alive: Callable[[Any], bool] = pid_alive) -> None:
        self.runs_dir = Path(runs_dir)
        self.clock = clock
        self.alive = alive
        self._tracked: dict[str, _Tracked] = {}
        self.behind = False  # some run's metrics were not all read in the last scan

    def scan(self) -> list[RunRow]:
        infos = list_runs_safely(self.runs_dir)
        now = self.clock()
        rows = []
        budget = SCAN_BUDGET
        for info in infos:
            key = info.path.name
            tracked = self._tracked.get(key)
            if tracked is None:
                tracked = self._tracked[key] = _Tracked(MetricsTail(info.path / METRICS_JSONL, SCAN_CHUNK))
            before = tracked.tail.offset
            events = tracked.read_metrics(allowed=budget > 0)  # may start a fresh progress: read first
            tracked.progress.update(events)
            budget -= max(tracked.tail.offset - before, 0)
            if _wants_results(info):
                tracked.results.refresh(info.path)
            rows.append(_describe(info, tracked, now, self.alive))
        for key in set(self._tracked) - {info.path.name for info in infos}:
            del self._tracked[key]
        self.behind = any(t.behind is not None for t in self._tracked.values())
        return rows

    def experiment(self) -> str | None:
        """The line on the directory's last ``deftx transfer`` (``None`` without one)."""
        record = read_experiment(self.runs_dir)
        if record is None:
            return None
        alive = not on_this_host(record.host) or self.alive(record.pid)
        return experiment_text(record, self.clock(), alive)


def _describe(info: RunInfo, tracked: _Tracked, now: float, alive: Callable[[Any], bool]) -> RunRow:
    result_error = tracked.results.error
    if tracked.read_error:
        result_error = f"{tracked.read_error}; {result_error}" if result_error else tracked.read_error
    return describe_run(
        info,
        tracked.progress,
        now,
        bad_lines=tracked.tail.bad_lines,
        last_bad=tracked.tail.last_bad,
        result=tracked.results.record,
        result_error=result_error,
        alive=alive,
        reading=tracked.behind,
    )


@dataclass
class FollowedUpdate:
    """What one poll of a followed run found."""

    row: RunRow
    info: RunInfo | None  # the run's record when run.json changed, else None
    batch: RunSeries | None  # the new complete lines, folded; None when there were none
    result: ResultRecord | None  # results.json when it changed
    bad_lines: int = 0
    behind: bool = False  # more complete lines wait than one poll reads: poll again at once
    restarted: bool = False  # the metrics were read again from the top: ``batch`` replaces the series


class RunFollower:
    """Follows one run: its ``run.json`` (re-read only when it changes) and its growing metrics."""

    def __init__(self, run_path: Path, clock: Clock, alive: Callable[[Any], bool] = pid_alive) -> None:
        self.path = Path(run_path)
        self.clock = clock
        self.alive = alive
        self.info = RunInfo(self.path, self.path.name, error="not read yet")
        self._tracked = _Tracked(MetricsTail(self.path / METRICS_JSONL, FOLLOW_CHUNK))
        self._record_signature: tuple[int, int, int] | None | str = "unread"
        self._phase: int | None = None

    def poll(self) -> FollowedUpdate:
        changed_info = None
        signature = _signature(self.path / RUN_JSON)
        if signature != self._record_signature:
            self._record_signature = signature
            self.info = changed_info = read_run_safely(self.path)

        events = self._tracked.read_metrics()
        restarted = self._tracked.restarted
        if restarted:
            self._phase = None
        batch = None
        if events or restarted:
            self._tracked.progress.update(events)
            batch = RunSeries.from_events(events, phase=self._phase)
            self._phase = batch.current_phase

        result = None
        before = self._tracked.results.signature
        self._tracked.results.refresh(self.path)
        if self._tracked.results.signature != before:
            result = self._tracked.results.record

        row = _describe(self.info, self._tracked, self.clock(), self.alive)
        behind = self._tracked.behind is not None
        return FollowedUpdate(row, changed_info, batch, result, self._tracked.tail.bad_lines, behind, restarted)

    @property
    def progress(self) -> RunProgress:
        return self._tracked.progress
