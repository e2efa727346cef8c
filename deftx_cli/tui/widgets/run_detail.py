"""A few lines about one run: the highlighted run in the runs view, the followed run in the live view."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from deftx_cli.tui.format import DASH
from deftx_cli.tui.progress import RunRow
from deftx_cli.tui.widgets.runs_table import status_text


def describe_lines(row: RunRow) -> Text:
    """Run id, status and start; what it is; where it stands; then any reasons and warnings."""
    text = Text(no_wrap=False)
    text.append(row.run_id, style="bold")
    text.append("  ")
    text.append_text(status_text(row))
    if row.status != "unreadable":
        text.append(f" · started {row.started}", style="dim")
        what = [row.kind, row.method, row.languages] + ([row.task] if row.task != DASH else [])
        text.append("\n" + " · ".join(what))
        text.append(f" · {row.base_model}", style="dim")
        parts = [
            ("phase", row.phase),
            ("step", row.step),
            ("elapsed", row.elapsed),
            ("ETA", row.eta),
            ("loss", row.loss),
            ("best", row.best),
        ]
        shown = [f"{name} {value}" for name, value in parts if value != DASH]
        text.append("\n" + (" · ".join(shown) if shown else "no metrics yet"))
    for line in row.details:
        style = "red" if line.startswith(("unreadable", "failed", "error")) else "yellow"
        text.append("\n" + line, style=style)
    return text


class RunDetail(Static):
    """The highlighted run, spelled out (with the reason when it is unreadable)."""

    _shown: object = None

    def show(self, row: RunRow | None, empty_message: str = "") -> None:
        shown = row if row is not None else empty_message
        if shown == self._shown:  # most polls change nothing: skip the repaint
            return
        self._shown = shown
        self.update(describe_lines(row) if row is not None else Text(empty_message, style="dim"))
