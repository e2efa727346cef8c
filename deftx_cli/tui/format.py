"""Tolerant value coercion and short human-readable formats for the dashboard.

Everything here takes whatever a JSON file held (strings where numbers belong, ``null``, NaN) and
never raises: a value that cannot be shown becomes ``None`` or the dash ``—``.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from deftx.results import SYSTEM_LABELS, as_dict, as_float, as_int, as_str  # noqa: F401 (re-exported to the dashboard)

from deftx_cli.text import DASH, format_duration, model_label  # noqa: F401 (re-exported to the dashboard)


METHOD_LABELS = SYSTEM_LABELS  # methods and baselines, as columns and rows show them


def method_label(method: Any) -> str:
    text = as_str(method)
    if not text:
        return DASH
    return METHOD_LABELS.get(text, text)


def languages_label(languages: Any) -> str:
    """``quy`` for a language or task run, ``ind→ace`` for an evaluation (source→target)."""
    langs = as_dict(languages)
    source = as_str(langs.get("source"))
    target = as_str(langs.get("target"))
    if source and target:
        return f"{source}→{target}"
    if source or target:
        return source or target or DASH
    others = [s for s in (as_str(v) for v in langs.values()) if s]
    return ",".join(others) if others else DASH


def format_number(value: float | None, digits: int = 4) -> str:
    """A short number: ``2.310``, ``0.0012``, ``4.9e-05``."""
    if value is None:
        return DASH
    if value == 0:
        return "0"
    magnitude = abs(value)
    if magnitude >= 1e5 or magnitude < 1e-3:
        return f"{value:.2e}"
    return f"{value:.{digits}g}" if magnitude < 1 else f"{value:.{max(digits - 1, 1)}f}".rstrip("0").rstrip(".")


def format_count(value: int | None) -> str:
    """``1,500,000``."""
    return DASH if value is None else f"{value:,}"


def format_percent(fraction: float | None, digits: int = 2) -> str:
    return DASH if fraction is None else f"{100 * fraction:.{digits}f}%"


def format_utc(iso: Any) -> str:
    """An ISO timestamp shown in UTC, to the minute (the same on every machine)."""
    text = as_str(iso)
    if not text:
        return DASH
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return text[:25]
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
