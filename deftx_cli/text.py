"""Short human-readable texts shared by the command line and the dashboard (no Textual import)."""

from __future__ import annotations

import math
from pathlib import PurePath
from typing import Any

from deftx.results import as_str

DASH = "—"  # no value


def model_label(base_model: Any) -> str:
    """The last component of a local model path; a hub id (``org/name``) is kept whole."""
    text = as_str(base_model)
    if not text:
        return DASH
    if text.startswith((".", "/", "~")) or "\\" in text:
        return PurePath(text.replace("\\", "/")).name or text
    return text


def format_duration(seconds: float | None) -> str:
    """``42s``, ``3m05s``, ``1h02m``, ``2d03h``."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return DASH
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
