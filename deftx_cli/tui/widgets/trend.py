"""A one-line trend: a name, a Sparkline of the whole run, and the latest value."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Label, Sparkline


class TrendLine(Horizontal):
    """``lr  ▁▂▃▅▇▇▆▅  4.90e-05``."""

    def __init__(self, name: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self._label = name

    def compose(self) -> ComposeResult:
        yield Label(self._label, classes="trend-name")
        yield Sparkline([], classes="trend-spark")
        yield Label("—", classes="trend-value")

    def show(self, values: list[float], value_text: str) -> None:
        self.query_one(Sparkline).data = values
        self.query_one(".trend-value", Label).update(value_text)

    @property
    def value_text(self) -> str:
        return str(self.query_one(".trend-value", Label).content)
