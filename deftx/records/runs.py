"""Writing a run: its directory and ``run.json`` (through :class:`~deftx.records.schema.RunRecord`),
its ``metrics.jsonl`` events (each checked against its model), an evaluation's ``results.json``, and the
experiment's progress in ``experiment.json``. Torch-free.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from deftx.errors import TrainingInterrupted, UsageError
from deftx.records.files import (
    EXPERIMENT_JSON, METRICS_JSONL, RESULTS_JSON, RUN_FORMAT_VERSION, RUN_JSON, _json_default, atomic_write_json,
    new_run_id, now_iso, truncate_metrics,
)
from deftx.records.provenance import environment
from deftx.records.reading import read_run
from deftx.records.schema import RUN_KINDS, STATUSES, ExperimentRecord, ResultRecord, RunRecord, event_line
from deftx.version import __version__


class Run:
    """A run directory being written. Use :meth:`start` as a context manager.

    On leaving the context the status becomes ``finished``; a ``KeyboardInterrupt`` marks it
    ``interrupted`` (and is re-raised as :class:`TrainingInterrupted`), any other exception
    ``failed`` with the message.
    """

    def __init__(self, path: Path, record: dict[str, Any]) -> None:
        self.path = Path(path)
        self.record = record  # the JSON object of run.json, checked against RunRecord at every write
        self._metrics = open(self.path / METRICS_JSONL, "a", encoding="utf-8")

    @property
    def run_id(self) -> str:
        return self.record["run_id"]

    @property
    def typed(self) -> RunRecord:
        """``run.json`` as its model."""
        return RunRecord.model_validate(self.record)

    def _write(self) -> None:
        try:
            RunRecord.model_validate(self.record)
        except ValueError as exc:  # pydantic's ValidationError: a writer's bug, caught where it is written
            raise ValueError(f"run.json of {self.run_id} does not fit its schema: {exc}") from None
        atomic_write_json(self.path / RUN_JSON, self.record)

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
        if kind not in RUN_KINDS:
            raise ValueError(f"unknown run kind {kind!r}")
        runs_dir = Path(runs_dir)
        runs_dir.mkdir(parents=True, exist_ok=True)
        langs = languages or {}
        run_id = run_id or new_run_id(runs_dir, kind, method, *langs.values())
        path = runs_dir / run_id
        if path.exists() and any(path.iterdir()):
            raise UsageError(f"run directory {path} already exists", hint="choose another --run-id")
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
        run = cls(path, record)
        run._write()
        return run

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
        record = info.record.to_json()
        record["resumptions"] = [
            *record["resumptions"],
            {**resumption, "at": now_iso(), "dropped_metrics_lines": dropped, "status_before": record["status"]},
        ]
        record.update(status="running", ended_at=None, error=None, pid=os.getpid(), host=socket.gethostname())
        run = cls(path, record)
        run._write()
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
        self._write()

    def log(self, event: str, **fields: Any) -> None:
        """Append one whole line to ``metrics.jsonl`` and flush it (a known event is checked against
        its model in :mod:`deftx.records.schema` first)."""
        line = json.loads(json.dumps(event_line(event, fields, round(time.time(), 3)), default=_json_default))
        self._metrics.write(json.dumps(line) + "\n")
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


def write_results(run_path: Path, record: dict[str, Any]) -> Path:
    """Write an evaluation's result record (``results.json``) atomically, checked against
    :class:`~deftx.records.schema.ResultRecord`."""
    record = {"format_version": RUN_FORMAT_VERSION, **record}
    ResultRecord.model_validate(json.loads(json.dumps(record, default=_json_default)))
    path = Path(run_path) / RESULTS_JSON
    atomic_write_json(path, record)
    return path


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
        ExperimentRecord.model_validate(self.record)
        atomic_write_json(self.path, self.record)
