"""The compare view: evaluation results as languages x systems, one table per task and base model."""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, Header, Select, Static

from deftx.analysis.comparison import Pivot, TableKey, build_pivots
from deftx.records.schema import ResultRecord
from deftx.records.files import atomic_write_bytes

from deftx_cli.tables import caption, export_stem, table_title, to_csv, to_markdown
from deftx_cli.tui.messages import ComparisonExported, ReadFailed, ResultsLoaded
from deftx_cli.tui.polling import FilePoller
from deftx_cli.tui.watch import read_results_safely
from deftx_cli.tui.widgets.compare_table import BETTER_MARK, CompareTable
from deftx_cli.tui.widgets.overlap_panel import OverlapPanel

RELOAD_SECONDS = 2.0


class CompareScreen(Screen):
    """LT-SFT vs DeFT-X (and the baselines) per target language, mean ± std over seeds."""

    BINDINGS = [
        Binding("escape", "back", "Runs"),
        Binding("t", "next_table", "Next table"),
        Binding("e", "export", "Export CSV+MD"),
        Binding("r", "reload", "Reload"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.pivots: list[Pivot] = []
        self.records: list[ResultRecord] = []
        self.skipped: list[str] = []
        self.current: TableKey | None = None
        self.loads = 0  # completed loads (tests wait on it)
        self._signature: object = None
        self._poller: FilePoller | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield Select([], id="table-select", prompt="Table", compact=True, allow_blank=True)
        yield Static("", id="compare-caption")
        yield CompareTable(id="compare-table")
        yield Static("", id="compare-notes")
        yield OverlapPanel(id="compare-overlap")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = f"compare · {self.app.runs_dir}"
        self.query_one("#table-select", Select).display = False
        self.query_one("#compare-caption", Static).update(Text("Reading results…", style="dim"))
        self._poller = FilePoller(self, self._read, what="results", group="compare-read")
        self._poller.start(max(RELOAD_SECONDS, self.app.poll_interval))

    def reload(self) -> None:
        if self._poller is not None:
            self._poller.poll()

    def _read(self) -> list[ResultsLoaded]:
        return [ResultsLoaded(*read_results_safely(self.app.runs_dir))]

    def on_results_loaded(self, message: ResultsLoaded) -> None:
        self.loads += 1
        signature = repr((message.records, message.unreadable))
        if signature == self._signature:
            return
        self._signature = signature
        self.records = message.records
        self.pivots, skipped = build_pivots(message.records)
        self.skipped = message.unreadable + skipped
        keys = [p.key for p in self.pivots]
        if self.current not in keys:
            self.current = keys[0] if keys else None
        select = self.query_one("#table-select", Select)
        with self.prevent(Select.Changed):
            select.set_options([(table_title(p.key), p.key) for p in self.pivots])
            if self.current is not None:
                select.value = self.current
        select.display = len(self.pivots) > 1
        self._show()

    def on_select_changed(self, event: Select.Changed) -> None:
        if isinstance(event.value, TableKey) and event.value != self.current:
            self.current = event.value
            self._show()

    def on_read_failed(self, message: ReadFailed) -> None:
        self.notify(f"Could not read the {message.what}: {message.error}", severity="error", timeout=6)

    @property
    def pivot(self) -> Pivot | None:
        return next((p for p in self.pivots if p.key == self.current), None)

    def _show(self) -> None:
        pivot = self.pivot
        caption_widget = self.query_one("#compare-caption", Static)
        notes = self.query_one("#compare-notes", Static)
        self.query_one(CompareTable).show(pivot)
        self.query_one(OverlapPanel).show_for(self.records, self.current, self.app.runs_dir)
        if pivot is None:
            caption_widget.update(
                Text(
                    f"No evaluation results in {self.app.runs_dir} yet. "
                    "Evaluation runs write results.json; they appear here by themselves.",
                    style="dim",
                )
            )
            notes.update(self._skipped_text())
            return
        head = Text()
        if len(self.pivots) > 1:  # the selector above names the table
            head.append(f"{self.pivots.index(pivot) + 1}/{len(self.pivots)} · ", style="dim")
        else:
            head.append(table_title(pivot.key) + "\n", style="bold")
        head.append(caption(pivot), style="dim")
        caption_widget.update(head)
        lines = Text(f"{BETTER_MARK} better of LT-SFT and DeFT-X · {pivot.results} results", style="dim")
        for note in pivot.notes:
            lines.append("\n" + note, style="dim")
        lines.append_text(self._skipped_text(newline=True))
        notes.update(lines)

    def _skipped_text(self, newline: bool = False) -> Text:
        if not self.skipped:
            return Text("")
        first = self.skipped[0]
        more = f" (and {len(self.skipped) - 1} more)" if len(self.skipped) > 1 else ""
        return Text(("\n" if newline else "") + f"skipped {first}{more}", style="yellow")

    # -- actions ----------------------------------------------------------------------------------

    def action_back(self) -> None:
        self.app.pop_screen()

    def action_reload(self) -> None:
        self._signature = None
        self.reload()

    def action_next_table(self) -> None:
        if len(self.pivots) < 2:
            self.notify("This is the only table." if self.pivots else "No tables yet: no evaluation results.",
                        severity="information", timeout=3)
            return
        keys = [p.key for p in self.pivots]
        index = keys.index(self.current) if self.current in keys else -1
        self.current = keys[(index + 1) % len(keys)]
        with self.prevent(Select.Changed):
            self.query_one("#table-select", Select).value = self.current
        self._show()

    def action_export(self) -> None:
        pivot = self.pivot
        if pivot is None:
            self.notify("Nothing to export: no evaluation results yet.", severity="warning")
            return
        stem = export_stem(pivot.key, [p.key for p in self.pivots])
        files = {
            self.app.runs_dir / f"{stem}.csv": to_csv(pivot).encode("utf-8"),
            self.app.runs_dir / f"{stem}.md": to_markdown(pivot).encode("utf-8"),
        }
        self.run_worker(lambda: self._write(files), thread=True, group="compare-export", exit_on_error=False)

    def _write(self, files: dict[Path, bytes]) -> None:
        """Worker thread: writes the exported files atomically."""
        written = []
        try:
            for path, data in files.items():
                atomic_write_bytes(path, data)
                written.append(path)
        except OSError as exc:
            self.post_message(ComparisonExported(written, error=f"{exc.strerror or exc} ({exc.filename or ''})"))
        else:
            self.post_message(ComparisonExported(written))

    def on_comparison_exported(self, message: ComparisonExported) -> None:
        if message.error:
            self.notify(f"Export failed: {message.error}", severity="error", timeout=8)
            return
        names = " and ".join(str(p) for p in message.paths)
        self.notify(f"Exported {names}", title="Comparison exported", timeout=6)
