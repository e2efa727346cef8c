"""How much a sparse fine-tuning keeps: K (a count, a fraction or a percentage of the maskable
parameters) and DeFT-X's rank rule and tail. Torch-free, so that settings are checked when a command
starts, long before a model loads.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from deftx.errors import UsageError

_RULE = re.compile(r"^\s*(energy|rank)\s*[:=]\s*([0-9.eE+-]+)\s*$")


@dataclass(frozen=True)
class RankRule:
    kind: str  # "energy" or "rank"
    value: float

    @classmethod
    def parse(cls, text: str | RankRule) -> RankRule:
        if isinstance(text, RankRule):
            return text
        match = _RULE.match(str(text))
        if not match:
            raise UsageError(
                f"malformed rank rule {text!r}",
                hint="use energy:F with 0 < F <= 1 (e.g. energy:0.9) or rank:R with a whole R >= 1 (e.g. rank:16)",
            )
        kind, raw = match.groups()
        try:
            value = float(raw)
        except ValueError:
            raise UsageError(f"malformed rank rule {text!r}: {raw!r} is not a number") from None
        if kind == "energy" and not 0 < value <= 1:
            raise UsageError(f"rank rule {text!r}: the energy fraction must be in (0, 1]")
        if kind == "rank" and (value < 1 or value != int(value)):
            raise UsageError(f"rank rule {text!r}: the rank must be a whole number >= 1")
        return cls(kind, value)

    def __str__(self) -> str:
        return f"energy:{self.value:g}" if self.kind == "energy" else f"rank:{int(self.value)}"


def check_tail_keep(tail_keep: float) -> float:
    if not 0.0 <= float(tail_keep) <= 1.0:
        raise UsageError(f"tail_keep = {tail_keep} must be a fraction in [0, 1]")
    return float(tail_keep)


def resolve_k(k: int | float | str, n_maskable: int) -> int:
    """Turn a K given as a count (``7667712``), a fraction (``0.05``) or a percentage (``"2.8%"``)
    into a count, checking ``0 < K <= n_maskable``."""
    value: float
    if isinstance(k, str):
        text = k.strip().replace("_", "").replace(",", "")
        try:
            if text.endswith("%"):
                value = float(text[:-1]) / 100.0
                if not 0 < value <= 1:
                    raise UsageError(f"K = {k} is not a percentage in (0%, 100%]")
                return _fraction_to_count(value, n_maskable, k)
            value = float(text)
            if "." in text and value >= 1:
                raise UsageError(
                    f"K = {k} is ambiguous: a count or a fraction?",
                    hint=(f"write {int(value)} for a count of entries, or " if value == int(value) else "write ")
                    + f"a fraction below 1 ({value / 100:g}) or a percentage ({value:g}%)",
                )
        except ValueError:
            raise UsageError(
                f"K = {k!r} is neither a count, a fraction nor a percentage",
                hint="examples: --k 7667712, --k 0.05, --k 2.5%",
            ) from None
        if re.fullmatch(r"[0-9]+", text):
            return check_count(int(text), n_maskable, k)
    else:
        value = float(k)
    if isinstance(k, bool) or math.isnan(value):
        raise UsageError(f"K = {k!r} is not a number")
    if 0 < value < 1:
        return _fraction_to_count(value, n_maskable, k)
    if value != int(value):
        raise UsageError(f"K = {k} must be a whole count or a fraction below 1")
    return check_count(int(value), n_maskable, k)


def _fraction_to_count(fraction: float, n_maskable: int, given: object) -> int:
    return check_count(max(1, round(fraction * n_maskable)), n_maskable, given)


def check_count(count: int, n_maskable: int, given: object) -> int:
    if count <= 0:
        raise UsageError(f"K must be positive (got {given})", hint="give a count like 100000 or a fraction like 0.05")
    if count > n_maskable:
        raise UsageError(
            f"K = {count:,} is larger than the {n_maskable:,} maskable parameters",
            hint="give a smaller count, or a fraction like 0.05",
        )
    return count


def check_k(k: int | float | str) -> int | float | str:
    """Check that K can be resolved against some number of maskable parameters (a positive count, a
    fraction in (0, 1), a percentage in (0%, 100%]); whether a count fits the model is known only once
    the model loads (:func:`resolve_k`). Returns K unchanged."""
    resolve_k(k, _ANY_MODEL)
    return k


_ANY_MODEL = 1 << 62  # a model size no K count exceeds: only the form of K is checked

