"""Short human-readable texts shared by the command line and the dashboard (no Textual import)."""

from __future__ import annotations

from pathlib import PurePath
from typing import Any

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


def size_text(n: float) -> str:
    """Bytes for people: ``812 KB``, ``3.3 GB``."""
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" or n >= 100 else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def prepare_rates(fields: dict[str, Any]) -> str:
    """``12,000 lines/s, 480,000 tokens/s`` over the preparation so far."""
    seconds = fields.get("seconds") or 0
    if not seconds:
        return ""
    parts = [f"{fields[k] / seconds:,.0f} {k}/s" for k in ("examples", "lines", "tokens") if fields.get(k)]
    return ", ".join(parts)


def prepare_text(fields: dict[str, Any]) -> str:
    """One line on a text preparation event: what stage, how far, how fast, how long is left."""
    stage = fields.get("stage")
    examples = fields.get("examples") is not None  # a task SFT's labelled examples, not a language SFT's text
    if stage == "cached":
        if examples:
            return (f"examples from the cache: {fields['examples']:,} examples, {fields.get('tokens') or 0:,} tokens "
                    f"({fields.get('cache')})")
        return (f"text from the cache: {fields.get('blocks') or 0:,} blocks, {fields.get('tokens') or 0:,} tokens "
                f"({fields.get('cache')})")
    if stage in ("rebuild", "streaming", "waiting"):
        return str(fields.get("message"))
    keys = ("tokens",) if examples else ("lines", "tokens", "blocks")
    counts = ", ".join(f"{fields[k]:,} {k}" for k in keys if fields.get(k) is not None)
    if stage == "done":
        what = f"{fields['examples']:,} examples tokenised" if examples else "text prepared"
        return f"{what} in {fields.get('seconds', 0):.0f}s: {counts}; cached in {fields.get('cache')}"
    rates = prepare_rates(fields)
    left = f", about {format_duration(fields['eta_seconds'])} left" if fields.get("eta_seconds") is not None else ""
    if examples:
        where = f"{fields['examples']:,} of {fields.get('examples_total') or 0:,} examples"
        return f"{stage} the examples: {where}, {counts}" + (f" ({rates})" if rates else "") + left
    total, done = fields.get("bytes_total"), fields.get("bytes_read")
    where = f"{size_text(done or 0)} of {size_text(total)}" if total else f"{size_text(done or 0)}"
    return f"{stage} the text: {where}, {counts}" + (f" ({rates})" if rates else "") + left
