"""Readers that the dashboard's worker threads call: they only read files and return plain data.

:class:`RunsScanner` lists the runs directory and follows every run's ``metrics.jsonl`` through its
own :class:`deftx.runs.MetricsTail`, so each scan reads only the bytes written since the last one.
:class:`RunFollower` does the same for one run in full detail (the live view). Neither touches a
widget; the screens post what they return as messages.

One scanner or follower must be used by one thread at a time (the screens never start a second
read while one is running).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from deftx.runs import METRICS_JSONL, RESULTS_JSON, RUN_JSON, MetricsTail, RunInfo, list_runs, read_run

from deftx_cli.tui.progress import Clock, RunProgress, RunRow, describe_run, pid_alive
from deftx_cli.tui.series import RunSeries


def _signature(path: Path) -> tuple[int, int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size, stat.st_ino


@dataclass
class _ResultCache:
    signature: tuple[int, int, int] | None = None
    record: dict[str, Any] | None = None
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
            record = json.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            self.error = f"results.json unreadable: {exc.strerror or exc}"
            return
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            self.error = f"results.json is not valid JSON ({exc})"
            return
        if isinstance(record, dict):
            self.record = record
        else:
            self.error = "results.json does not hold a JSON object"


@dataclass
class _Tracked:
    tail: MetricsTail
    progress: RunProgress = field(default_factory=RunProgress)
    results: _ResultCache = field(default_factory=_ResultCache)
    read_error: str | None = None

    def read_metrics(self) -> list[dict[str, Any]]:
        try:
            events = self.tail.read_new()
        except OSError as exc:
            self.read_error = f"metrics.jsonl unreadable: {exc.strerror or exc}"
            return []
        self.read_error = None
        return events


def _wants_results(info: RunInfo) -> bool:
    return not info.readable or info.get("kind") == "evaluation"


class RunsScanner:
    """Reads every run under ``runs_dir`` into a :class:`RunRow`, incrementally."""

    def __init__(self, runs_dir: Path, clock: Clock, alive: Callable[[Any], bool] = pid_alive) -> None:
        self.runs_dir = Path(runs_dir)
        self.clock = clock
        self.alive = alive
        self._tracked: dict[str, _Tracked] = {}

    def scan(self) -> list[RunRow]:
        infos = list_runs(self.runs_dir)
        now = self.clock()
        rows = []
        for info in infos:
            key = info.path.name
            tracked = self._tracked.get(key)
            if tracked is None:
                tracked = self._tracked[key] = _Tracked(MetricsTail(info.path / METRICS_JSONL))
            tracked.progress.update(tracked.read_metrics())
            if _wants_results(info):
                tracked.results.refresh(info.path)
            rows.append(_describe(info, tracked, now, self.alive))
        for key in set(self._tracked) - {info.path.name for info in infos}:
            del self._tracked[key]
        return rows


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
    )


@dataclass
class FollowedUpdate:
    """What one poll of a followed run found."""

    row: RunRow
    info: RunInfo | None  # the run's record when run.json changed, else None
    batch: RunSeries | None  # the new complete lines, folded; None when there were none
    result: dict[str, Any] | None  # results.json when it changed
    bad_lines: int = 0


class RunFollower:
    """Follows one run: its ``run.json`` (re-read only when it changes) and its growing metrics."""

    def __init__(self, run_path: Path, clock: Clock, alive: Callable[[Any], bool] = pid_alive) -> None:
        self.path = Path(run_path)
        self.clock = clock
        self.alive = alive
        self.info = RunInfo(self.path, self.path.name, error="not read yet")
        self._tracked = _Tracked(MetricsTail(self.path / METRICS_JSONL))
        self._record_signature: tuple[int, int, int] | None | str = "unread"
        self._phase: int | None = None

    def poll(self) -> FollowedUpdate:
        changed_info = None
        signature = _signature(self.path / RUN_JSON)
        if signature != self._record_signature:
            self._record_signature = signature
            self.info = changed_info = read_run(self.path)

        events = self._tracked.read_metrics()
        batch = None
        if events:
            self._tracked.progress.update(events)
            batch = RunSeries.from_events(events, phase=self._phase)
            self._phase = batch.current_phase

        result = None
        if _wants_results(self.info) or os.path.exists(self.path / RESULTS_JSON):
            before = self._tracked.results.signature
            self._tracked.results.refresh(self.path)
            if self._tracked.results.signature != before:
                result = self._tracked.results.record

        row = _describe(self.info, self._tracked, self.clock(), self.alive)
        return FollowedUpdate(row, changed_info, batch, result, self._tracked.tail.bad_lines)

    @property
    def progress(self) -> RunProgress:
        return self._tracked.progress
