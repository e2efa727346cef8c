"""Short human-readable formats for the dashboard; a missing value is the dash ``—``."""

from __future__ import annotations

from datetime import datetime, timezone

from deftx.methods import system_label

from deftx_cli.text import DASH, format_duration, model_label  # noqa: F401 (re-exported to the dashboard)


def method_label(method: str | None) -> str:
    """A method or baseline as columns and rows show it (``LT-SFT``, ``no lang SFT``)."""
    return system_label(method) if method else DASH


def languages_label(languages: dict[str, str]) -> str:
    """``quy`` for a language or task run, ``ind→ace`` for an evaluation (source→target)."""
    source, target = languages.get("source"), languages.get("target")
    if source and target:
        return f"{source}→{target}"
    if source or target:
        return source or target or DASH
    others = [v for v in languages.values() if v]
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


def format_utc(text: str | None) -> str:
    """An ISO timestamp shown in UTC, to the minute (the same on every machine)."""
    if not text:
        return DASH
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return text[:25]
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
