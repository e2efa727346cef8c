"""Reading run directories: ``run.json``, a growing ``metrics.jsonl``, ``results.json`` and the
experiment's progress, each through its model in :mod:`deftx.records.schema`.

Reading never raises on a broken file: a run that cannot be read is a :class:`RunInfo` with the
reason, a malformed metrics line is counted, a results record that cannot be read is named with its
path and reason (:class:`ResultsRead`), so that the dashboard shows it and a table says it is
incomplete. Torch-free.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from deftx.errors import UsageError
from deftx.records.files import EXPERIMENT_JSON, RESULTS_JSON, RUN_JSON, parse_iso
from deftx.records.schema import Event, ExperimentRecord, MetricsEvent, ResultRecord, RunRecord, parse_event, problem


# ----------------------------------------------------------------------------------------------
# run.json


@dataclass
class RunInfo:
    """One run directory as read: its record, or why it could not be read."""

    path: Path
    run_id: str
    record: RunRecord | None = None
    error: str | None = None  # why the run could not be read

    @property
    def readable(self) -> bool:
        return self.record is not None

    @property
    def status(self) -> str | None:
        return self.record.status if self.record is not None else None

    @property
    def kind(self) -> str | None:
        return self.record.kind if self.record is not None else None

    @property
    def started(self) -> float | None:
        """When the run started, in seconds since the epoch (``None`` when it does not say)."""
        return parse_iso(self.record.started_at) if self.record is not None else None


def read_run(path: Path) -> RunInfo:
    path = Path(path)
    run_json = path / RUN_JSON
    try:
        text = run_json.read_text(encoding="utf-8")
    except FileNotFoundError:
        return RunInfo(path, path.name, error="run.json is missing")
    except OSError as exc:
        return RunInfo(path, path.name, error=f"run.json unreadable: {exc.strerror or exc}")
    except UnicodeDecodeError:
        return RunInfo(path, path.name, error="run.json is not UTF-8 text")
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        return RunInfo(path, path.name, error=f"run.json is not valid JSON (line {exc.lineno}: {exc.msg})")
    if not isinstance(obj, dict):
        return RunInfo(path, path.name, error="run.json does not hold a JSON object")
    run_id = obj.get("run_id") if isinstance(obj.get("run_id"), str) and obj.get("run_id") else path.name
    try:
        record = RunRecord.model_validate({**obj, "run_id": run_id})
    except ValidationError as exc:
        return RunInfo(path, run_id, error=f"run.json: {problem(exc)}")
    return RunInfo(path, run_id, record=record)


def list_runs(runs_dir: Path) -> list[RunInfo]:
    """Every run directory under ``runs_dir``, newest first by start time (``started_at``); runs that
    do not say when they started (unreadable ones) last, by name."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        return []
    out = [read_run(child) for child in runs_dir.iterdir() if child.is_dir() and not child.name.startswith(".")]
    return sorted(out, key=started_key, reverse=True)


def started_key(info: RunInfo) -> tuple[bool, float, str]:
    """A sort key, newest last: runs by start time, then those that do not say when they started
    (unreadable ones) by name, before them all."""
    started = info.started
    return started is not None, started or 0.0, info.path.name


def latest_run(runs_dir: Path, kind: str, method: str | None, languages: dict[str, str]) -> RunInfo | None:
    """The newest run of this kind, method and languages under ``runs_dir`` (``None`` if there is none);
    among runs started in the same second, the one whose ``run.json`` was written last."""
    matching = [info for info in list_runs(runs_dir) if info.record is not None
                and (info.record.kind, info.record.method, info.record.languages) == (kind, method, languages)]

    def newest(info: RunInfo) -> tuple[tuple[bool, float], int]:
        try:
            written = (info.path / RUN_JSON).stat().st_mtime_ns
        except OSError:
            written = 0
        return started_key(info)[:2], written

    return max(matching, key=newest, default=None)


def pid_alive(pid: Any) -> bool:
    """Whether a process with this id exists on this machine (``True`` when it cannot be told)."""
    if isinstance(pid, bool) or not isinstance(pid, int):
        return True
    if pid <= 0 or os.name != "posix":
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError, ValueError):
        return True
    return True


def on_this_host(host: str | None) -> bool:
    return host in (None, socket.gethostname())


def still_running(record: RunRecord | ExperimentRecord) -> bool:
    """A run (or experiment) marked running whose process is alive on this machine."""
    if record.status != "running" or not on_this_host(record.host):
        return False
    return pid_alive(record.pid)


def find_resumable(runs_dir: Path, kind: str, *, languages: dict[str, str] | None = None, task: str | None = None,
                   run_id: str | None = None) -> tuple[RunInfo | None, list[str]]:
    """The run an interrupted training continues, and the runs passed over.

    With ``run_id``: that run (``None`` when the directory does not exist yet); refused when it
    finished or its process is alive here. A run marked running on another machine (killed there,
    requeued here) is taken: naming it says it is not running any more. Without: the latest
    unfinished run of the same kind, languages and task whose process is gone; runs marked running
    on another machine are passed over (their ids are returned, to be named) since this machine
    cannot tell whether they still run."""
    runs_dir = Path(runs_dir)
    if run_id is not None:
        path = runs_dir / run_id
        if not (path / RUN_JSON).exists():
            return None, []
        info = read_run(path)
        if info.record is None:
            raise UsageError(f"cannot resume run {run_id}: {info.error}")
        if info.record.status == "finished":
            raise UsageError(f"run {run_id} already finished", hint="nothing to resume; choose another --run-id")
        if still_running(info.record):
            raise UsageError(f"run {run_id} is still running (process {info.record.pid})",
                             hint="stop it first, or choose another --run-id")
        return info, []
    candidates, elsewhere = [], []
    for info in list_runs(runs_dir):
        record = info.record
        if record is None or record.kind != kind or record.status == "finished":
            continue
        if record.languages != (languages or {}) or record.task != task:
            continue
        if record.status == "running" and not on_this_host(record.host):
            elsewhere.append(info.run_id)
            continue
        if still_running(record):
            continue
        candidates.append(info)
    if not candidates:
        return None, elsewhere
    return max(candidates, key=lambda i: (i.started or 0.0, i.run_id)), elsewhere


# ----------------------------------------------------------------------------------------------
# metrics.jsonl


class MetricsTail:
    """Incremental reader of a growing ``metrics.jsonl``.

    ``read_new()`` returns the events of the complete lines written since the last call, each as its
    model (:func:`~deftx.records.schema.parse_event`). A last line without its newline is held back
    until it is complete; lines that are not events (not JSON, not an object, a known event with a
    malformed field) are counted in ``bad_lines`` and skipped. If the file shrinks or is replaced (a
    resumed run cuts it back to its checkpoint), reading starts again from the top and ``restarts``
    counts it.
    """

    def __init__(self, path: Path, max_bytes_per_read: int = 64 * 1024 * 1024) -> None:
        self.path = Path(path)
        self.offset = 0
        self.bad_lines = 0
        self.last_bad: str | None = None
        self.max_bytes = max_bytes_per_read
        self.restarts = 0
        self._inode: int | None = None

    def read_new(self) -> list[MetricsEvent | Event]:
        try:
            stat = self.path.stat()
        except OSError:
            return []
        size = stat.st_size
        replaced = self._inode is not None and stat.st_ino != self._inode
        self._inode = stat.st_ino
        if size < self.offset or (replaced and self.offset):
            self.offset = 0
            self.bad_lines = 0
            self.restarts += 1
        if size == self.offset:
            return []
        with open(self.path, "rb") as handle:
            handle.seek(self.offset)
            chunk = handle.read(min(size - self.offset, self.max_bytes))
        end = chunk.rfind(b"\n")
        if end < 0:
            return []
        complete = chunk[: end + 1]
        self.offset += len(complete)
        events = []
        for raw in complete.splitlines():
            if not raw.strip():
                continue
            try:
                event = parse_event(json.loads(raw))
            except (json.JSONDecodeError, UnicodeDecodeError):
                event = None
            if event is not None:
                events.append(event)
            else:
                self.bad_lines += 1
                self.last_bad = raw[:80].decode("utf-8", "replace")
        return events


def read_metrics(path: Path) -> list[MetricsEvent | Event]:
    """All complete, valid events of a ``metrics.jsonl``."""
    return MetricsTail(path, max_bytes_per_read=1 << 62).read_new()


# ----------------------------------------------------------------------------------------------
# results.json


@dataclass
class ResultsRead:
    """The result records of one or more runs directories, and those that could not be read (a line
    each: the file and why)."""

    records: list[ResultRecord] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def extend(self, other: ResultsRead) -> None:
        self.records += other.records
        self.problems += other.problems

    def __iter__(self) -> Iterator[ResultRecord]:  # the records, as a list of them would give
        return iter(self.records)

    def __len__(self) -> int:
        return len(self.records)


def read_result(path: Path) -> ResultRecord:
    """One ``results.json``; :class:`ValueError` says why it cannot be read, naming the file
    (``results.json is not valid JSON (...)``, ``results.json: task: field required``)."""
    name = Path(path).name
    try:
        obj = json.loads(Path(path).read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ValueError(f"{name} is not UTF-8 text") from None
    except OSError as exc:
        raise ValueError(f"{name} unreadable: {exc.strerror or exc}") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{name} is not valid JSON (line {exc.lineno}: {exc.msg}; truncated?)") from None
    if not isinstance(obj, dict):
        raise ValueError(f"{name} does not hold a JSON object")
    obj.setdefault("run_id", Path(path).parent.name)
    try:
        return ResultRecord.model_validate(obj)
    except ValidationError as exc:
        raise ValueError(f"{name}: {problem(exc)}") from None


def read_results(runs_dir: Path) -> ResultsRead:
    """Every ``results.json`` under ``runs_dir`` (one level of run directories)."""
    out = ResultsRead()
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        return out
    for child in sorted(runs_dir.iterdir()):
        path = child / RESULTS_JSON
        if not path.is_file():
            continue
        try:
            out.records.append(read_result(path))
        except ValueError as exc:
            out.problems.append(f"{child}: {exc}")
    return out


# ----------------------------------------------------------------------------------------------
# experiment.json


def read_experiment(runs_dir: Path) -> ExperimentRecord | None:
    """The experiment record of ``runs_dir`` (``None`` when there is none or it cannot be read)."""
    try:
        obj = json.loads((Path(runs_dir) / EXPERIMENT_JSON).read_text())
        return ExperimentRecord.model_validate(obj)
    except (OSError, ValueError):  # ValidationError is a ValueError
        return None
