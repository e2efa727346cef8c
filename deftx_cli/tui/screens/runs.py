"""The runs view: every run under the runs directory, refreshed by itself."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static

from deftx_cli.tui.messages import ReadFailed, RunsRefreshed
from deftx_cli.tui.polling import FilePoller
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
        self._poller: FilePoller | None = None
        self.rows: list[RunRow] = []
        self.scans = 0  # completed scans (tests wait on it)

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(id="experiment")
        yield RunsTable(id="runs-table")
        yield RunDetail(id="run-detail")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = f"runs in {self.app.runs_dir}"
        self._scanner = RunsScanner(self.app.runs_dir, self.app.clock)
        self.query_one(RunDetail).show(None, "Reading runs…")
        self._poller = FilePoller(self, self._scan, what="runs directory", group="runs-scan")
        self._poller.start(self.app.poll_interval)

    def on_screen_resume(self) -> None:
        self.poll()

    def poll(self) -> None:
        if self._poller is not None:
            self._poller.poll()

    def _scan(self) -> list[RunsRefreshed]:
        rows = self._scanner.scan()
        return [RunsRefreshed(rows, self._scanner.behind, self._scanner.experiment())]

    def on_runs_refreshed(self, message: RunsRefreshed) -> None:
        self.rows = message.rows
        self.scans += 1
        experiment = self.query_one("#experiment", Static)
        experiment.display = message.experiment is not None
        experiment.update(message.experiment or "")
        table = self.query_one(RunsTable)
        table.show_rows(message.rows)
        running = sum(row.status == "running" for row in message.rows)
        self.sub_title = runs_title(self.app.runs_dir, len(message.rows), running)
        self._show_detail()
        if message.behind:  # a big metrics file is still being read: go on without waiting
            self.poll()

    def on_read_failed(self, message: ReadFailed) -> None:
        self.notify(f"Could not read the {message.what}: {message.error}", severity="error", timeout=6)

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
