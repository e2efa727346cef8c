"""The live view of one run: loss curves of both phases, learning rate, throughput, and the selection."""

from __future__ import annotations

from pathlib import Path

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Header

from deftx.analysis.denoise_summary import GROUPINGS
from deftx_cli.tui.format import DASH, format_number
from deftx_cli.tui.messages import MetricsAppended, ReadFailed, ResultLoaded, RunRecordChanged, RunUpdated
from deftx_cli.tui.polling import FilePoller
from deftx_cli.tui.progress import RunRow
from deftx_cli.tui.series import RunSeries
from deftx_cli.tui.watch import RunFollower
from deftx_cli.tui.widgets.charts import LossChart
from deftx_cli.tui.widgets.result_panel import ResultPanel
from deftx_cli.tui.widgets.run_detail import RunDetail
from deftx_cli.tui.widgets.selection_panel import SelectionPanel
from deftx_cli.tui.widgets.trend import TrendLine

TREND_POINTS = 200


class LiveScreen(Screen):
    """Follows one run's ``metrics.jsonl`` as it grows (complete lines only)."""

    BINDINGS = [
        Binding("escape", "back", "Runs"),
        Binding("d", "cycle_denoise", "Ranks by type/layer/matrix"),
    ]

    def __init__(self, run_path: Path) -> None:
        super().__init__()
        self.run_path = Path(run_path)
        self.series = RunSeries()
        self.row: RunRow | None = None
        self.grouping = "type"
        self.polls = 0  # completed polls (tests wait on it)
        self._follower: RunFollower | None = None
        self._poller: FilePoller | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield RunDetail(id="live-header")
        with Horizontal(id="live-body"):
            yield LossChart(id="loss-chart")
            with Vertical(id="live-side"):
                yield SelectionPanel(id="selection-panel")
                yield ResultPanel(id="result-panel")
        yield TrendLine("lr", id="lr-trend")
        yield TrendLine("examples/s", id="throughput-trend")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = f"live · {self.run_path.name}"
        self.query_one(ResultPanel).display = False
        self.query_one(RunDetail).show(None, f"Reading {self.run_path.name}…")
        self._follower = RunFollower(self.run_path, self.app.clock)
        self.query_one(LossChart).replot(self.series)
        self._poller = FilePoller(self, self._follow, what=f"run {self.run_path.name}", group="live-follow")
        self._poller.start(self.app.poll_interval)

    def poll(self) -> None:
        if self._poller is not None:
            self._poller.poll()

    def _follow(self) -> list[Message]:
        """The new bytes of the run's files, as the messages they make."""
        update = self._follower.poll()
        messages: list[Message] = []
        if update.info is not None:
            messages.append(RunRecordChanged(update.info))
        if update.batch is not None:
            messages.append(MetricsAppended(update.batch, update.bad_lines, update.restarted))
        if update.result is not None:
            messages.append(ResultLoaded(update.result))
        return [*messages, RunUpdated(update.row, update.behind)]

    # -- handlers: the only place widgets change ------------------------------------------------

    def on_run_record_changed(self, message: RunRecordChanged) -> None:
        evaluation = message.info.kind == "evaluation"
        # an evaluation has no training curves: its result takes the whole body
        self.set_class(evaluation, "-evaluation")
        self.query_one(ResultPanel).display = evaluation
        self.query_one(SelectionPanel).display = not evaluation
        self.refresh_bindings()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "cycle_denoise":
            return not self.has_class("-evaluation")
        return True

    def on_metrics_appended(self, message: MetricsAppended) -> None:
        batch = message.batch
        if message.restarted:
            self.series = RunSeries()
        grew = self.series.merge(batch) or message.restarted
        if batch.selection is not None:
            self.query_one(SelectionPanel).show(batch.selection)
        if grew:
            self.query_one(LossChart).replot(self.series)
            self._show_trends()

    def on_result_loaded(self, message: ResultLoaded) -> None:
        panel = self.query_one(ResultPanel)
        panel.display = True
        panel.show(message.record)

    def on_run_updated(self, message: RunUpdated) -> None:
        self.row = message.row
        self.polls += 1
        self.query_one(RunDetail).show(message.row)
        if message.behind:  # a big file is still being read: the next chunk now, not at the next tick
            self.poll()

    def on_read_failed(self, message: ReadFailed) -> None:
        self.notify(f"Could not read the {message.what}: {message.error}", severity="error", timeout=6)

    def _show_trends(self) -> None:
        for quantity, widget_id in (("lr", "#lr-trend"), ("throughput", "#throughput-trend")):
            latest = self.series.latest(quantity)
            text = DASH if latest is None else format_number(latest[2], 3)
            self.query_one(widget_id, TrendLine).show(self.series.trend(quantity, TREND_POINTS), text)

    # -- actions ----------------------------------------------------------------------------------

    def action_back(self) -> None:
        self.app.pop_screen()

    def action_cycle_denoise(self) -> None:
        self.grouping = GROUPINGS[(GROUPINGS.index(self.grouping) + 1) % len(GROUPINGS)]
        self.query_one(SelectionPanel).show(None, self.grouping)
