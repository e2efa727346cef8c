"""An evaluation's result record: the headline metric and the per-class scores."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import DataTable, Static

from deftx_cli.tui.format import DASH, as_dict, as_float, as_int, as_str, format_number, method_label, model_label


def result_text(record: dict[str, Any]) -> Text:
    metrics = as_dict(record.get("metrics"))
    metric = as_str(record.get("metric"))
    text = Text()
    system = as_str(record.get("system")) or as_str(record.get("method"))
    text.append(f"Result ({method_label(system)})\n", style="bold")
    text.append(f"{as_str(record.get('task')) or DASH} · {as_str(record.get('split')) or DASH}")
    text.append(f" · {model_label(record.get('base_model'))}\n", style="dim")
    shown = []
    for name in ([metric] if metric else []) + [k for k in ("accuracy", "macro_f1") if k != metric]:
        value = as_float(metrics.get(name))
        if value is not None:
            shown.append(f"{name} {format_number(value, 3)}")
    n = as_int(metrics.get("n"))
    if n is not None:
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

    def show(self, record: dict[str, Any]) -> None:
        self.query_one("#result-summary", Static).update(result_text(record))
        table = self.query_one("#per-class-table", DataTable)
        table.clear()
        per_class = as_dict(as_dict(record.get("metrics")).get("per_class"))
        for name, scores in per_class.items():
            scores = as_dict(scores)
            support = as_int(scores.get("support"))
            table.add_row(
                Text(str(name)),
                *(Text(format_number(as_float(scores.get(k)), 3), justify="right") for k in ("precision", "recall", "f1")),
                Text(str(support) if support is not None else DASH, justify="right"),
            )
        table.display = bool(per_class)
