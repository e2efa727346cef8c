"""The runs view: every run under the runs directory, refreshed by itself."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header

from deftx_cli.tui.messages import ReadFailed, RunsRefreshed
from deftx_cli.tui.progress import RunRow
from deftx_cli.tui.screens.compare import CompareScreen
from deftx_cli.tui.screens.live import LiveScreen
from deftx_cli.tui.watch import RunsScanner
from deftx_cli.tui.widgets.run_detail import RunDetail
from deftx_cli.tui.widgets.runs_table import RunsTable


def runs_title(runs_dir, total: int, running: int) -> str:
    """``3 runs in runs/, 1 running``."""
    return f"{total} run{'' if total == 1 else 's'} in {runs_dir}, {running} running"


class RunsScreen(Screen):
    """Kind, method, languages, status, phase, step, elapsed, ETA, loss and best metric of every run."""

    BINDINGS = [
        Binding("enter", "open_run", "Open"),
        Binding("c", "compare", "Compare"),
        Binding("r", "refresh", "Refresh"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self._scanner: RunsScanner | None = None
        self._reading = False
        self._last_failure: str | None = None
        self.rows: list[RunRow] = []
        self.scans = 0  # completed scans (tests wait on it)

    def compose(self) -> ComposeResult:
        yield Header()
        yield RunsTable(id="runs-table")
        yield RunDetail(id="run-detail")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = f"runs in {self.app.runs_dir}"
        self._scanner = RunsScanner(self.app.runs_dir, self.app.clock)
        self.query_one(RunDetail).show(None, "Reading runs…")
        self.set_interval(self.app.poll_interval, self.poll)
        self.poll()

    def on_screen_resume(self) -> None:
        self.poll()

    def poll(self) -> None:
        """Start a read of the runs directory unless one is under way or another view is on top."""
        if self._reading or self._scanner is None or not self.is_current:
            return
        self._reading = True
        self.run_worker(self._scan, thread=True, group="runs-scan", exit_on_error=False)

    def _scan(self) -> None:
        """Worker thread: reads files only, then posts what it found."""
        try:
            rows = self._scanner.scan()
        except Exception as exc:  # never let a strange file system take the dashboard down
            self._reading = False
            self.post_message(ReadFailed("runs directory", f"{type(exc).__name__}: {exc}"))
        else:
            self._reading = False  # before posting, so the handler may start the next read
            self.post_message(RunsRefreshed(rows, self._scanner.behind))

    def on_runs_refreshed(self, message: RunsRefreshed) -> None:
        self.rows = message.rows
        self.scans += 1
        self._last_failure = None
        table = self.query_one(RunsTable)
        table.show_rows(message.rows)
        running = sum(row.status == "running" for row in message.rows)
        self.sub_title = runs_title(self.app.runs_dir, len(message.rows), running)
        self._show_detail()
        if message.behind:  # a big metrics file is still being read: go on without waiting
            self.poll()

    def on_read_failed(self, message: ReadFailed) -> None:
        text = f"Could not read the {message.what}: {message.error}"
        if text != self._last_failure:
            self._last_failure = text
            self.notify(text, severity="error", timeout=6)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show_detail()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.action_open_run()

    def _show_detail(self) -> None:
        table = self.query_one(RunsTable)
        empty = (
            f"No runs in {self.app.runs_dir} yet. Start one (deftx train-lang …) and it appears here by itself."
        )
        self.query_one(RunDetail).show(table.row_for(table.highlighted_key), empty)

    def action_open_run(self) -> None:
        key = self.query_one(RunsTable).highlighted_key
        if key is not None:
            self.app.push_screen(LiveScreen(self.app.runs_dir / key))

    def action_compare(self) -> None:
        self.app.push_screen(CompareScreen())

    def action_refresh(self) -> None:
        self.poll()
