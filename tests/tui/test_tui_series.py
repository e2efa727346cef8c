"""The live view's data: merged batches equal one read, downsampling keeps ends and bounds."""

from __future__ import annotations

import tui_fixtures as F

from deftx_cli.tui.series import RunSeries, downsample


def events():
    out = F.train_events(1, 400, 0.0, 1.0)
    out.append(F.selection_event("deftx", 405.0))
    out += F.train_events(2, 400, 410.0, 1.0, upto=200)
    out.append({"time": 700.0, "event": "eval", "phase": 2, "step": 200, "metrics": {"accuracy": 0.5}})
    return out


def test_batches_merge_to_the_same_series_as_one_read():
    whole = RunSeries.from_events(events())
    merged = RunSeries()
    phase = None
    all_events = events()
    for start in range(0, len(all_events), 7):
        batch = RunSeries.from_events(all_events[start : start + 7], phase=phase)
        phase = batch.current_phase
        merged.merge(batch)
    assert merged.curves == whole.curves
    assert merged.phase_totals == whole.phase_totals == {1: 400, 2: 400}
    assert merged.selection == whole.selection and merged.selection.k == 1_500_000
    assert len(merged.evals) == 1 and merged.events == whole.events


def test_curves_per_phase_and_latest_values():
    series = RunSeries.from_events(events())
    assert series.phases() == [1, 2]
    assert series.curve(1, "loss").steps[:2] == [10, 20] and len(series.curve(1, "loss")) == 40
    assert len(series.curve(2, "loss")) == 20
    phase, step, value = series.latest("loss")
    assert (phase, step, value) == (2, 200, F.loss_at(2, 200))
    assert len(series.trend("lr", points=25)) <= 25


def test_train_lines_without_a_phase_use_the_current_one():
    series = RunSeries.from_events([{"event": "phase", "phase": 2}, {"event": "train", "step": 5, "loss": 1.0}])
    assert series.curve(2, "loss").values == [1.0]


def test_merge_reports_growth_only_for_new_points():
    series = RunSeries()
    assert not series.merge(RunSeries.from_events([{"event": "eval", "metrics": {}}]))
    assert series.merge(RunSeries.from_events([{"event": "train", "phase": 1, "step": 1, "loss": 2.0}]))


def test_downsample_bounds_keeps_ends_and_order():
    xs = list(range(100_000))
    ys = [x * 2 for x in xs]
    for limit in (2, 3, 60, 333, 1000):
        dx, dy = downsample(xs, ys, limit)
        assert len(dx) <= limit
        assert dx[0] == 0 and dx[-1] == 99_999
        assert dx == sorted(dx) and all(y == 2 * x for x, y in zip(dx, dy))
    assert downsample([1, 2], [3, 4], 10) == ([1, 2], [3, 4])
    assert downsample([], [], 10) == ([], [])
