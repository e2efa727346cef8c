"""The table of runs: one row per run directory, updated in place as runs progress."""

from __future__ import annotations

from rich.text import Text
from textual.binding import Binding
from textual.widgets import DataTable
from textual.widgets.data_table import CellDoesNotExist

from deftx_cli.tui.progress import RunRow

# (column key, header, RunRow attribute); the most useful first: 80 columns show every column up to
# Best whole, the rest (the run id is also spelled out below the table) scroll into view.
COLUMNS = (
    ("status", "Status", "status"),
    ("kind", "Kind", "kind"),
    ("method", "Method", "method"),
    ("languages", "Lang", "languages"),
    ("phase", "Ph", "phase"),
    ("step", "Step", "step"),
    ("eta", "ETA", "eta"),
    ("loss", "Loss", "loss"),
    ("best", "Best", "best"),
    ("elapsed", "Elapsed", "elapsed"),
    ("task", "Task", "task"),
    ("run", "Run", "run_id"),
)
RIGHT_ALIGNED = {"phase", "step", "elapsed", "eta", "loss"}

STATUS_STYLES = {
    "running": "bold cyan",
    "finished": "green",
    "failed": "bold red",
    "interrupted": "yellow",
    "stale": "italic yellow",
    "unreadable": "bold red",
}

KIND_SHORT = {"language": "lang", "evaluation": "eval"}
METHOD_SHORT = {"no lang SFT": "no-lang"}


def status_text(row: RunRow) -> Text:
    text = Text(row.status, style=STATUS_STYLES.get(row.status, ""))
    if row.warning:
        text.append(" ⚠", style="yellow")
    return text


def cell_text(row: RunRow, column: str, attribute: str) -> Text:
    if column == "status":
        return status_text(row)
    value = getattr(row, attribute)
    if column == "kind":
        value = KIND_SHORT.get(value, value)
    elif column == "method":
        value = METHOD_SHORT.get(value, value)
    style = "dim" if row.status == "unreadable" and column != "run" else ""
    return Text(value, style=style, justify="right" if column in RIGHT_ALIGNED else "left", no_wrap=True)


class RunsTable(DataTable):
    """Every run, newest first. :meth:`show_rows` keeps the cursor on the same run."""

    BINDINGS = [Binding("enter", "select_cursor", "Open")]

    def __init__(self, **kwargs) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)
        self._rows: dict[str, RunRow] = {}
        self._order: list[str] = []

    def on_mount(self) -> None:
        for key, header, _ in COLUMNS:
            self.add_column(header, key=key)

    @property
    def highlighted_key(self) -> str | None:
        if not self._order or self.cursor_row < 0 or self.cursor_row >= len(self._order):
            return None
        try:
            return self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
        except CellDoesNotExist:  # an empty or shrinking table: no highlighted row
            return None

    def row_for(self, key: str | None) -> RunRow | None:
        return self._rows.get(key) if key is not None else None

    def show_rows(self, rows: list[RunRow]) -> None:
        order = [row.key for row in rows]
        if order == self._order:
            for row in rows:
                old = self._rows[row.key]
                if old == row:
                    continue
                for column, _, attribute in COLUMNS:
                    if column == "status" or getattr(old, attribute) != getattr(row, attribute):
                        self.update_cell(row.key, column, cell_text(row, column, attribute), update_width=True)
                self._rows[row.key] = row
            return
        keep = self.highlighted_key
        self.clear()
        self._rows = {row.key: row for row in rows}
        self._order = order
        for row in rows:
            self.add_row(*(cell_text(row, c, a) for c, _, a in COLUMNS), key=row.key)
        if keep in self._rows:
            self.move_cursor(row=order.index(keep), animate=False)
