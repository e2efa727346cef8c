"""The layout of a run directory, and writing its files atomically (a temporary file in the same
directory, then a rename), with the permissions the user's umask gives.

Layout of one run::

    runs/<run-id>/
        run.json        command, resolved config, status, start/end times, outputs (RunRecord)
        metrics.jsonl   one event per line, whole lines, flushed as written (deftx.records.schema)
        sft/            the SFT the run produced (training runs)
        phase1_diff.safetensors   the dense phase-1 difference (when kept)
        checkpoints/    phase<P>-step<S>/ checkpoints while training (see deftx.training.checkpoint)
        results.json    an evaluation's result record (ResultRecord)

and beside the runs, ``experiment.json``: the progress of the last ``deftx transfer``. A resumed run's
``metrics.jsonl`` is first cut back to its size when the checkpoint was written (the lines after it
are dropped, their count recorded in ``run.json``'s ``resumptions``), then continues.

Torch-free: the dashboard imports it.
"""


from __future__ import annotations

import json
import math
import os
import re
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any


RUN_FORMAT_VERSION = 1
RUN_JSON = "run.json"
METRICS_JSONL = "metrics.jsonl"
RESULTS_JSON = "results.json"
PHASE1_DIFF = "phase1_diff.safetensors"  # the dense phase-1 difference a run keeps (for shared phases, deftx denoise)
SFT_SUBDIR = "sft"  # the SFT a training run produced
EXPERIMENT_JSON = "experiment.json"  # in the runs directory: the progress of the last ``deftx transfer``



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
    """Write ``data`` to ``path`` through a temporary file in the same directory, then rename. A
    failure names ``path`` (not the temporary file, which the user never asked for) and leaves no
    temporary file behind."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        use_umask(tmp)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
        if isinstance(exc, OSError) and exc.errno is not None:
            raise OSError(exc.errno, exc.strerror, str(path)) from None
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


# ----------------------------------------------------------------------------------------------
# result records


