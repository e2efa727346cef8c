"""Short human-readable texts shared by the command line and the dashboard (no Textual import)."""

from __future__ import annotations

import math
from pathlib import PurePath
from typing import Any

from deftx.results import as_str
from deftx.runs import format_duration, parse_iso  # noqa: F401 - format_duration: shared here

DASH = "—"  # no value


def model_label(base_model: Any) -> str:
    """The last component of a local model path; a hub id (``org/name``) is kept whole."""
    text = as_str(base_model)
    if not text:
        return DASH
    if text.startswith((".", "/", "~")) or "\\" in text:
        return PurePath(text.replace("\\", "/")).name or text
    return text


def experiment_text(record: dict[str, Any] | None, now: float, alive: bool = True) -> str | None:
    """One line on the last ``deftx transfer`` of a runs directory (its ``experiment.json``):
    ``Experiment: step 3 of 9 · [seed 0] language SFT ace (DeFT-X) · about 6m10s left``.
    ``alive``: whether its process still runs (a running record whose process is gone stopped)."""
    if not record:
        return None
    total, index = record.get("total"), record.get("index") or 0
    where = f"step {index} of {total}" if index else f"{total} steps"
    label = record.get("step_label")
    status = record.get("status")
    if status == "running" and not alive:
        return f"Experiment stopped at {where} (its process is gone): rerun the same deftx transfer to continue"
    if status == "running":
        running = record.get("running")
        if isinstance(running, list) and len(running) > 1:  # steps side by side (deftx transfer --jobs)
            text = (f"Experiment: {record.get('finished', 0)} of {total} steps done · {len(running)} running: "
                    + "; ".join(str(r) for r in running))
        else:
            text = f"Experiment: {where}" + (f" · {label}" if label else "")
        eta, started = record.get("eta_seconds"), record.get("step_started")
        if isinstance(eta, (int, float)) and isinstance(started, (int, float)):
            text += f" · about {format_duration(max(0.0, eta - (now - started)))} left"
        return text
    if status == "finished":
        start, end = parse_iso(record.get("started_at")), parse_iso(record.get("ended_at"))
        took = f" in {format_duration(end - start)}" if start is not None and end is not None else ""
        return f"Experiment finished: {total} steps{took}"
    return f"Experiment {status or 'ended'} at {where}" + (f" · {label}" if label else "")
