"""The comparison pivot as a DataTable: languages down, systems across, the better of LT-SFT and DeFT-X marked."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import DataTable

from deftx.analysis.comparison import Pivot
from deftx.methods import PAIR

from deftx_cli.tables import column_labels, format_cell, format_delta

BETTER_STYLE = "bold green"
BETTER_MARK = "*"


class CompareTable(DataTable):
    def __init__(self, **kwargs) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)

    def show(self, pivot: Pivot | None) -> None:
        self.clear(columns=True)
        if pivot is None:
            return
        self.add_column("Lang", key="language")
        columns = column_labels(pivot)
        for key, header in columns:
            self.add_column(Text(header, justify="right"), key=key)
        for row in pivot.all_rows():
            cells = [Text(row.label, style="bold" if row.is_average else "")]
            for key, _ in columns:
                if key == "delta":
                    delta = format_delta(row.delta, pivot.scale)
                    style = dict(zip(PAIR, ("red", "green"))).get(row.better or "", "")
                    cells.append(Text(delta, style=style, justify="right"))
                    continue
                text = format_cell(row.cells.get(key), pivot.scale)
                if row.better == key:
                    cells.append(Text(BETTER_MARK + text, style=BETTER_STYLE, justify="right"))
                else:
                    cells.append(Text(text, style="bold" if row.is_average else "", justify="right"))
            self.add_row(*cells, key="__average__" if row.is_average else f"lang:{row.label}")
