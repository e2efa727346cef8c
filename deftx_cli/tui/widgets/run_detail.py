"""A few lines about one run: the highlighted run in the runs view, the followed run in the live view."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from deftx_cli.tui.format import DASH
from deftx_cli.tui.progress import RunRow
from deftx_cli.tui.widgets.runs_table import status_text


def describe_lines(row: RunRow, extra: str | None = None) -> Text:
    """Run id and status; what it is; where it stands; then any reasons and warnings."""
    text = Text(no_wrap=False)
    text.append(row.run_id, style="bold")
    text.append("  ")
    text.append_text(status_text(row))
    if row.status == "unreadable":
        text.append("\n")
    else:
        what = [row.kind, row.method, row.languages]
        if row.task != DASH:
            what.append(row.task)
        text.append("\n" + " · ".join(what))
        text.append(f" · {row.base_model} · started {row.started}\n", style="dim")
        parts = [
            f"phase {row.phase}",
            f"step {row.step}",
            f"elapsed {row.elapsed}",
            f"ETA {row.eta}",
            f"loss {row.loss}",
        ]
        if extra:
            parts.append(extra)
        parts.append(f"best {row.best}")
        text.append(" · ".join(parts))
    for line in row.details:
        style = "red" if line.startswith(("unreadable", "failed", "error")) else "yellow"
        text.append("\n" + line, style=style)
    return text


class RunDetail(Static):
    """The highlighted run, spelled out (with the reason when it is unreadable)."""

    def show(self, row: RunRow | None, empty_message: str = "") -> None:
        self.update(describe_lines(row) if row is not None else Text(empty_message, style="dim"))
