"""Run directories: layout, ``run.json``, the append-only ``metrics.jsonl`` and result records.

This module is deliberately free of torch and transformers: the dashboard imports it.

Layout of one run::

    runs/<run-id>/
        run.json        command, resolved config, status, start/end times, outputs
        metrics.jsonl   one JSON object per line, whole lines, flushed as written
        sft/            the SFT the run produced (training runs)
        phase1_diff.safetensors   the dense phase-1 difference (when kept)
        checkpoints/    phase<P>-step<S>/ checkpoints while training (see deftx.training.checkpoint)
        results.json    an evaluation's result record (evaluation runs)

``metrics.jsonl`` events (field ``event``):

    phase      a phase starts: phase, total_steps
    train      phase, step, total_steps, loss, lr, throughput (examples/s), [l1]
    eval       phase, step, metrics {name: value}
    selection  k, maskable, density, method, [rank_rule, tail_keep, denoise: [{name, shape, rank, energy_kept}]]
    checkpointing  save_every, directory, keep, phase1_bytes / phase2_bytes (estimated checkpoint sizes)
    resume     run_id, attempt, phase, step, checkpoint, total_steps, phase_done, dropped_metrics_lines
    done       summary of the run

A resumed run's ``metrics.jsonl`` is first cut back to its size when the checkpoint was written (the
lines after it are dropped, their count recorded in ``run.json``'s ``resumptions``), then continues.

Every line carries ``time`` (seconds since the epoch).
"""

from __future__ import annotations

import json
import math
import os
import re
import socket
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from deftx import __version__
from deftx.errors import DeftxError, TrainingInterrupted, UsageError
from deftx.provenance import environment

RUN_FORMAT_VERSION = 1
RUN_JSON = "run.json"
METRICS_JSONL = "metrics.jsonl"
RESULTS_JSON = "results.json"
EXPERIMENT_JSON = "experiment.json"  # in the runs directory: the progress of the last ``deftx transfer``

STATUSES = ("running", "finished", "failed", "interrupted")
KINDS = ("language", "task", "evaluation", "compose", "transfer")


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def format_duration(seconds: float | None) -> str:
    """``42s``, ``3m05s``, ``1h02m``, ``2d03h``."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "\u2014"
    total = int(round(seconds))
    if total < 60:
        return f"{total}s"
    minutes, secs = divmod(total, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"


def parse_iso(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value).timestamp()
    except (TypeError, ValueError):
        return None


# ----------------------------------------------------------------------------------------------
# atomic writes


def _current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _current_umask()  # read once, at import: os.umask is process-wide and not thread-safe


def use_umask(path: str | Path, directory: bool = False) -> None:
    """Give a file or directory made by ``tempfile`` (private: 0600 / 0700) the mode a plain ``open``
    or ``mkdir`` would give it under the user's umask (typically 0644 / 0755)."""
    os.chmod(path, (0o777 if directory else 0o666) & ~_UMASK)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same directory, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        use_umask(tmp)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n").encode())


def _json_default(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "model_dump"):
        return obj.model_dump(mode="json")
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


# ----------------------------------------------------------------------------------------------
# writing a run


_SLUG = re.compile(r"[^A-Za-z0-9_.-]+")


def slug(*parts: Any) -> str:
    return "-".join(_SLUG.sub("_", str(p)) for p in parts if p not in (None, ""))


def new_run_id(runs_dir: Path, *parts: Any) -> str:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    base = slug(stamp, *parts)
    run_id, n = base, 1
    while (Path(runs_dir) / run_id).exists():
        n += 1
        run_id = f"{base}-{n}"
    return run_id


class Run:
    """A run directory being written. Use :meth:`start` as a context manager.

    On leaving the context the status becomes ``finished``; a ``KeyboardInterrupt`` marks it
    ``interrupted`` (and is re-raised as :class:`TrainingInterrupted`), any other exception
    ``failed`` with the message.
    """

    def __init__(self, path: Path, record: dict[str, Any]) -> None:
        self.path = Path(path)
        self.record = record
        self._metrics = open(self.path / METRICS_JSONL, "a", encoding="utf-8")

    @property
    def run_id(self) -> str:
        return self.record["run_id"]

    @classmethod
    def create(
        cls,
        runs_dir: Path,
        kind: str,
        *,
        config: dict[str, Any],
        run_id: str | None = None,
        method: str | None = None,
        languages: dict[str, str] | None = None,
        task: str | None = None,
        base_model: str | None = None,
        seed: int | None = None,
        total_steps: dict[str, int] | None = None,
        command: list[str] | None = None,
    ) -> Run:
        if kind not in KINDS:
            raise ValueError(f"unknown run kind {kind!r}")
        runs_dir = Path(runs_dir)
        runs_dir.mkdir(parents=True, exist_ok=True)
        langs = languages or {}
        run_id = run_id or new_run_id(runs_dir, kind, method, *langs.values())
        path = runs_dir / run_id
        if path.exists() and any(path.iterdir()):
            raise DeftxError(f"run directory {path} already exists", hint="choose another --run-id")
        path.mkdir(parents=True, exist_ok=True)
        record = {
            "format_version": RUN_FORMAT_VERSION,
            "run_id": run_id,
            "kind": kind,
            "method": method,
            "languages": langs,
            "task": task,
            "base_model": base_model,
            "seed": seed,
            "command": command if command is not None else list(sys.argv),
            "config": config,
            "status": "running",
            "started_at": now_iso(),
            "ended_at": None,
            "total_steps": total_steps or {},
            "outputs": {},
            "summary": {},
            "error": None,
            "library_version": __version__,
            "provenance": environment((config or {}).get("device")),
            "pid": os.getpid(),
            "host": socket.gethostname(),
        }
        atomic_write_json(path / RUN_JSON, record)
        return cls(path, record)

    @classmethod
    @contextmanager
    def start(cls, runs_dir: Path, kind: str, **kwargs: Any) -> Iterator[Run]:
        run = cls.create(runs_dir, kind, **kwargs)
        with run._supervised():
            yield run

    @classmethod
    @contextmanager
    def resume(cls, path: Path, *, metrics_offset: int, resumption: dict[str, Any]) -> Iterator[Run]:
        """Reopen an interrupted run directory. ``metrics.jsonl`` is cut back to ``metrics_offset``
        (its size when the checkpoint resumed from was written): lines the stopped attempt wrote
        after that checkpoint are dropped, so the resumed run's curves have no duplicate. The
        resumption (with the number of lines dropped) is appended to ``run.json``'s
        ``resumptions``."""
        path = Path(path)
        info = read_run(path)
        if not info.readable:
            raise UsageError(f"cannot resume {path}: {info.error}")
        dropped = truncate_metrics(path / METRICS_JSONL, metrics_offset)
        record = dict(info.record)
        record["resumptions"] = [
            *(record.get("resumptions") or []),
            {**resumption, "at": now_iso(), "dropped_metrics_lines": dropped, "status_before": record.get("status")},
        ]
        record.update(status="running", ended_at=None, error=None, pid=os.getpid(), host=socket.gethostname())
        atomic_write_json(path / RUN_JSON, record)
        run = cls(path, record)
        with run._supervised():
            yield run

    @contextmanager
    def _supervised(self) -> Iterator[None]:
        run = self
        try:
            yield
        except KeyboardInterrupt:
            run.close("interrupted", error="interrupted by the user (Ctrl-C)")
            raise TrainingInterrupted(
                f"interrupted; run {run.run_id} marked interrupted", hint=f"run directory: {run.path}"
            ) from None
        except TrainingInterrupted as exc:
            run.close("interrupted", error=str(exc))
            raise
        except BaseException as exc:
            run.close("failed", error=str(exc) or type(exc).__name__)
            raise
        else:
            run.close("finished")

    def update(self, **fields: Any) -> None:
        """Merge fields into ``run.json`` (rewritten atomically)."""
        for key, value in fields.items():
            if isinstance(value, dict) and isinstance(self.record.get(key), dict):
                self.record[key].update(value)
            else:
                self.record[key] = value
        atomic_write_json(self.path / RUN_JSON, self.record)

    def log(self, event: str, **fields: Any) -> None:
        """Append one whole line to ``metrics.jsonl`` and flush it."""
        line = {"time": round(time.time(), 3), "event": event, **fields}
        self._metrics.write(json.dumps(line, default=_json_default) + "\n")
        self._metrics.flush()

    def metrics_offset(self) -> int:
        """Bytes of ``metrics.jsonl`` written so far (whole lines: every line is flushed)."""
        self._metrics.flush()
        return self._metrics.tell()

    def close(self, status: str, error: str | None = None) -> None:
        if status not in STATUSES:
            raise ValueError(status)
        if not self._metrics.closed:
            self._metrics.close()
        self.update(status=status, ended_at=now_iso(), error=error)


def truncate_metrics(path: Path, offset: int) -> int:
    """Cut ``metrics.jsonl`` back to its first ``offset`` bytes; returns how many lines (whole or
    not) went. The shorter file replaces the old one by a rename (a new inode), so a reader following
    the file sees that it was rewritten even if it has grown past its old size since."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return 0
    if len(data) <= offset:
        return 0
    tail = data[offset:]
    atomic_write_bytes(path, data[:offset])
    return tail.count(b"\n") + (0 if tail.endswith(b"\n") else 1)


def pid_alive(pid: Any) -> bool:
    """Whether a process with this id exists on this machine (``True`` when it cannot be told)."""
    if isinstance(pid, float) and pid.is_integer():
        pid = int(pid)
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


def still_running(record: dict[str, Any]) -> bool:
    """A run marked running whose process is alive on this machine."""
    if record.get("status") != "running" or not _on_this_host(record):
        return False
    return pid_alive(record.get("pid"))


def _on_this_host(record: dict[str, Any]) -> bool:
    return record.get("host") in (None, socket.gethostname())


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
        if not info.readable:
            raise UsageError(f"cannot resume run {run_id}: {info.error}")
        record = info.record
        if record.get("status") == "finished":
            raise UsageError(f"run {run_id} already finished", hint="nothing to resume; choose another --run-id")
        if still_running(record):
            raise UsageError(f"run {run_id} is still running (process {record.get('pid')})",
                             hint="stop it first, or choose another --run-id")
        return info, []
    candidates, elsewhere = [], []
    for info in list_runs(runs_dir):
        record = info.record
        if not info.readable or record.get("kind") != kind or record.get("status") == "finished":
            continue
        if (record.get("languages") or {}) != (languages or {}) or record.get("task") != task:
            continue
        if record.get("status") == "running" and not _on_this_host(record):
            elsewhere.append(info.run_id)
            continue
        if still_running(record):
            continue
        candidates.append(info)
    if not candidates:
        return None, elsewhere
    return max(candidates, key=lambda i: (parse_iso(i.get("started_at")) or 0.0, i.run_id)), elsewhere


# ----------------------------------------------------------------------------------------------
# reading runs (tolerant: the dashboard must never crash on a broken file)


@dataclass
class RunInfo:
    path: Path
    run_id: str
    record: dict[str, Any] = field(default_factory=dict)
    error: str | None = None  # why the run could not be read

    @property
    def readable(self) -> bool:
        return self.error is None

    def get(self, key: str, default: Any = None) -> Any:
        return self.record.get(key, default)


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
        record = json.loads(text)
    except json.JSONDecodeError as exc:
        return RunInfo(path, path.name, error=f"run.json is not valid JSON (line {exc.lineno}: {exc.msg})")
    if not isinstance(record, dict):
        return RunInfo(path, path.name, error="run.json does not hold a JSON object")
    return RunInfo(path, str(record.get("run_id") or path.name), record=record)


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
    started = parse_iso(info.get("started_at")) if isinstance(info.get("started_at"), str) else None
    return started is not None, started or 0.0, info.path.name


def latest_run(runs_dir: Path, kind: str, method: str | None, languages: dict[str, str]) -> RunInfo | None:
    """The newest run of this kind, method and languages under ``runs_dir`` (``None`` if there is none);
    among runs started in the same second, the one whose ``run.json`` was written last."""
    matching = [info for info in list_runs(runs_dir)
                if (info.get("kind"), info.get("method"), info.get("languages")) == (kind, method, languages)]

    def newest(info: RunInfo) -> tuple[tuple[bool, float], int]:
        try:
            written = (info.path / RUN_JSON).stat().st_mtime_ns
        except OSError:
            written = 0
        return started_key(info)[:2], written

    return max(matching, key=newest, default=None)


class MetricsTail:
    """Incremental reader of a growing ``metrics.jsonl``.

    ``read_new()`` returns the complete lines written since the last call. A last line without its
    newline is held back until it is complete; lines that are not JSON objects are counted in
    ``bad_lines`` and skipped. If the file shrinks or is replaced (a resumed run cuts it back to its
    checkpoint), reading starts again from the top and ``restarts`` counts it.
    """

    def __init__(self, path: Path, max_bytes_per_read: int = 64 * 1024 * 1024) -> None:
        self.path = Path(path)
        self.offset = 0
        self.bad_lines = 0
        self.last_bad: str | None = None
        self.max_bytes = max_bytes_per_read
        self.restarts = 0
        self._inode: int | None = None

    def read_new(self) -> list[dict[str, Any]]:
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
                obj = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError):
                obj = None
            if isinstance(obj, dict):
                events.append(obj)
            else:
                self.bad_lines += 1
                self.last_bad = raw[:80].decode("utf-8", "replace")
        return events


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """All complete, valid lines of a ``metrics.jsonl``."""
    return MetricsTail(path, max_bytes_per_read=1 << 62).read_new()


# ----------------------------------------------------------------------------------------------
# result records


def write_results(run_path: Path, record: dict[str, Any]) -> Path:
    """Write an evaluation's result record (``results.json``) atomically."""
    record = {"format_version": RUN_FORMAT_VERSION, **record}
    path = Path(run_path) / RESULTS_JSON
    atomic_write_json(path, record)
    return path


def read_results(runs_dir: Path) -> list[dict[str, Any]]:
    """Every readable ``results.json`` under ``runs_dir`` (one level of run directories)."""
    out = []
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        return out
    for child in sorted(runs_dir.iterdir()):
        path = child / RESULTS_JSON
        if not path.is_file():
            continue
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
        if isinstance(record, dict):
            record.setdefault("run_id", child.name)
            out.append(record)
    return out


class ExperimentLog:
    """The progress of a multi-step experiment (``deftx transfer``) in ``runs_dir/experiment.json``, for
    the dashboard: its steps, the one running, when it started, the time left as estimated then, and
    the status (running | finished | failed | interrupted). Rewritten atomically at every step."""

    def __init__(self, runs_dir: Path, steps: list[dict[str, Any]], command: list[str] | None = None) -> None:
        self.path = Path(runs_dir) / EXPERIMENT_JSON
        self.record: dict[str, Any] = {
            "kind": "transfer", "status": "running", "pid": os.getpid(), "host": socket.gethostname(),
            "command": command if command is not None else list(sys.argv), "started_at": now_iso(),
            "total": len(steps), "index": 0, "step_label": None, "step_started": None, "eta_seconds": None,
            "steps": steps,
        }
        self._write()

    def step(self, index: int, label: str, eta: float | None) -> None:
        """Step ``index`` (from 1) starts; ``eta``: seconds the steps from this one on should take."""
        self.record.update(index=index, step_label=label, step_started=time.time(), eta_seconds=eta)
        self._write()

    def running(self, indices: list[int], labels: list[str], finished: int, eta: float | None) -> None:
        """Steps run side by side (``deftx transfer --jobs``): those running now (their indices
        from 1, in plan order, and labels), how many steps have finished (cached ones included), and
        the time left for all the others. ``index`` and ``step_label`` name the first running step."""
        self.record.update(index=indices[0] if indices else self.record["index"],
                           step_label=labels[0] if labels else None, running=labels, finished=finished,
                           step_started=time.time(), eta_seconds=eta)
        self._write()

    def finish(self, status: str) -> None:
        self.record.update(status=status, ended_at=now_iso(), step_started=None, eta_seconds=None)
        self._write()

    def _write(self) -> None:
        self.record["updated_at"] = now_iso()
        atomic_write_json(self.path, self.record)


def read_experiment(runs_dir: Path) -> dict[str, Any] | None:
    """The experiment record of ``runs_dir`` (``None`` when there is none or it cannot be read)."""
    try:
        record = json.loads((Path(runs_dir) / EXPERIMENT_JSON).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None
