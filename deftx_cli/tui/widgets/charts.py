"""Charts drawn with textual-plotext: one widget per chart kind, each redrawn by ``replot()``."""

from __future__ import annotations

from textual_plotext import PlotextPlot

from deftx_cli.tui.series import RunSeries, downsample

PHASE_COLORS = {1: "cyan", 2: "orange"}
MIN_POINTS = 60
MIN_SPAN = 0.2  # the y-axis spans at least this fraction of the largest value's magnitude


def y_range(values: list[float], min_span: float = MIN_SPAN) -> tuple[float, float]:
    """The y-axis limits: the values' range, widened around its middle to at least ``min_span`` of the
    largest magnitude, so that the first few steps' noise (a loss of 10.02-10.07) does not fill the
    chart."""
    low, high = min(values), max(values)
    need = min_span * max(abs(low), abs(high))
    if high - low < need:
        middle = (low + high) / 2
        low, high = middle - need / 2, middle + need / 2
    if high == low:  # all zero
        high = low + 1.0
    return low, high


def step_ticks(last: float, count: int = 5) -> list[int]:
    """Round integer ticks from 0 to ``last`` (steps are integers; plotext would print 107.5)."""
    if last <= 0:
        return [0]
    raw = last / max(count - 1, 1)
    magnitude = 10 ** (len(str(int(raw))) - 1)
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    ticks = []
    value = 0.0
    while value <= last + 1e-9:
        ticks.append(int(value))
        value += step
    return ticks


class SeriesChart(PlotextPlot):
    """A line per training phase of one quantity of a :class:`RunSeries`, downsampled to the width."""

    quantity = "loss"
    chart_title = "loss"

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._series: RunSeries | None = None
        self.plotted_points = 0  # points drawn in the last replot (tests check the downsampling)
        self.y_limits: tuple[float, float] | None = None  # the y-axis range of the last replot

    def on_resize(self) -> None:
        self.replot()

    def max_points(self) -> int:
        # Braille markers put two points in a cell's width.
        return max(2 * self.size.width, MIN_POINTS)

    def replot(self, series: RunSeries | None = None) -> None:
        if series is not None:
            self._series = series
        plt = self.plt
        plt.clear_data()
        plt.xlabel("step")
        self.plotted_points = 0
        phases = [] if self._series is None else [p for p in self._series.phases() if len(self._series.curve(p, self.quantity))]
        last = 0.0
        plotted: list[float] = []
        for phase in phases:
            curve = self._series.curve(phase, self.quantity)
            xs, ys = downsample(curve.steps, curve.values, self.max_points())
            self.plotted_points += len(xs)
            plotted += ys
            last = max(last, xs[-1])
            plt.plot(xs, ys, label=f"phase {phase}", color=PHASE_COLORS.get(phase, "magenta"), marker="braille")
        if phases:
            plt.xticks(step_ticks(last))
            self.y_limits = y_range(plotted)
            plt.ylim(*self.y_limits)
        plt.title(self.chart_title if phases else f"{self.chart_title}: no training steps yet")
        self.refresh()


class LossChart(SeriesChart):
    """Training loss of phase 1 (full fine-tuning) and phase 2 (sparse fine-tuning) against the step."""

    quantity = "loss"
    chart_title = "loss"
