"""Short human-readable texts shared by the command line and the dashboard (no Textual import)."""

from __future__ import annotations

from pathlib import PurePath

from deftx.records.schema import ExperimentRecord
from deftx.records.files import format_duration, parse_iso  # noqa: F401 - format_duration: shared here

DASH = "—"  # no value


def model_label(text: str | None) -> str:
    """The last component of a local model path; a hub id (``org/name``) is kept whole."""
    if not text:
        return DASH
    if text.startswith((".", "/", "~")) or "\\" in text:
        return PurePath(text.replace("\\", "/")).name or text
    return text


def experiment_text(record: ExperimentRecord | None, now: float, alive: bool = True) -> str | None:
    """One line on the last ``deftx transfer`` of a runs directory (its ``experiment.json``):
    ``Experiment: step 3 of 9 · [seed 0] language SFT ace (DeFT-X) · about 6m10s left``.
    ``alive``: whether its process still runs (a running record whose process is gone stopped)."""
    if record is None:
        return None
    total, index, label, status = record.total, record.index, record.step_label, record.status
    where = f"step {index} of {total}" if index else f"{total} steps"
    if status == "running" and not alive:
        return f"Experiment stopped at {where} (its process is gone): rerun the same deftx transfer to continue"
    if status == "running":
        running = record.running or []
        if len(running) > 1:  # steps side by side (deftx transfer --jobs)
            text = f"Experiment: {record.finished or 0} of {total} steps done · {len(running)} running: " + "; ".join(running)
        else:
            text = f"Experiment: {where}" + (f" · {label}" if label else "")
        if record.eta_seconds is not None and record.step_started is not None:
            text += f" · about {format_duration(max(0.0, record.eta_seconds - (now - record.step_started)))} left"
        return text
    if status == "finished":
        start, end = parse_iso(record.started_at), parse_iso(record.ended_at)
        took = f" in {format_duration(end - start)}" if start is not None and end is not None else ""
        return f"Experiment finished: {total} steps{took}"
    return f"Experiment {status} at {where}" + (f" · {label}" if label else "")
