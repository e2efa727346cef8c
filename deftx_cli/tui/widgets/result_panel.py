"""An evaluation's result record: the headline metric and the per-class scores."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import DataTable, Static

from deftx.records.schema import ResultRecord, number

from deftx_cli.tui.format import DASH, format_number, method_label, model_label


def result_text(record: ResultRecord) -> Text:
    metrics = record.metrics
    text = Text()
    text.append(f"Result ({method_label(record.system)})\n", style="bold")
    text.append(f"{record.task} · {record.split}")
    text.append(f" · {model_label(record.base_model)}\n", style="dim")
    shown = []
    for name in [record.metric] + [k for k in ("accuracy", "macro_f1") if k != record.metric]:
        value = number(metrics.get(name))
        if value is not None:
            shown.append(f"{name} {format_number(value, 3)}")
    n = metrics.get("n")
    if isinstance(n, int) and not isinstance(n, bool):
        shown.append(f"n {n}")
    text.append(" · ".join(shown) if shown else "no metrics")
    return text


class ResultPanel(Vertical):
    """Shown in the live view of an evaluation run."""

    def compose(self) -> ComposeResult:
        yield Static("", id="result-summary")
        yield DataTable(id="per-class-table", show_cursor=False, zebra_stripes=True)

    def on_mount(self) -> None:
        table = self.query_one("#per-class-table", DataTable)
        for key, header in (("class", "Class"), ("p", "P"), ("r", "R"), ("f1", "F1"), ("support", "n")):
            table.add_column(header, key=key)

    def show(self, record: ResultRecord) -> None:
        self.query_one("#result-summary", Static).update(result_text(record))
        table = self.query_one("#per-class-table", DataTable)
        table.clear()
        per_class = record.metrics.get("per_class")
        per_class = per_class if isinstance(per_class, dict) else {}
        for name, scores in per_class.items():
            scores = scores if isinstance(scores, dict) else {}
            support = scores.get("support")
            table.add_row(
                Text(str(name)),
                *(Text(format_number(number(scores.get(k)), 3), justify="right") for k in ("precision", "recall", "f1")),
                Text(str(support) if isinstance(support, int) else DASH, justify="right"),
            )
        table.display = bool(per_class)
