"""Snapshots of every view at 80x24 and at a larger size (fixed clock, fixed fixture data).

Update the baselines with ``pytest tests/tui/test_tui_snapshots.py --snapshot-update`` and look at the
SVGs under ``__snapshots__/`` before committing them.
"""

from __future__ import annotations

import tui_fixtures as F
from tui_fixtures import wait_until

from deftx_cli.tui.app import DeftxDashboard
from deftx_cli.tui.screens.compare import CompareScreen
from deftx_cli.tui.screens.live import LiveScreen
from deftx_cli.tui.widgets.charts import LossChart
from deftx_cli.tui.widgets.runs_table import RunsTable

SMALL = (80, 24)
LARGE = (140, 40)


def app(runs_dir) -> DeftxDashboard:
    return DeftxDashboard(runs_dir, poll_interval=0.25, clock=F.clock)


async def runs_ready(pilot) -> None:
    await wait_until(pilot, lambda: pilot.app.screen.scans >= 1, what="the runs")


def open_live(key: str, *keys: str):
    async def run_before(pilot) -> None:
        await runs_ready(pilot)
        table = pilot.app.screen.query_one(RunsTable)
        table.move_cursor(row=table.get_row_index(key))
        await pilot.press("enter")
        await wait_until(
            pilot,
            lambda: isinstance(pilot.app.screen, LiveScreen) and pilot.app.screen.polls >= 1
            and (pilot.app.screen.series.events > 0 or "evaluation" in key),
            what="the live view",
        )
        if "evaluation" in key:
            await wait_until(pilot, lambda: pilot.app.screen.query_one("#result-panel").display)
        else:
            await wait_until(pilot, lambda: pilot.app.screen.query_one(LossChart).plotted_points > 0)
        await pilot.press(*keys)

    return run_before


def open_compare(*keys: str):
    async def run_before(pilot) -> None:
        await runs_ready(pilot)
        await pilot.press("c")
        await wait_until(pilot, lambda: isinstance(pilot.app.screen, CompareScreen) and pilot.app.screen.pivot is not None)
        await pilot.press(*keys)

    return run_before


def test_runs_view_small(runs_dir, snap_compare):
    assert snap_compare(app(runs_dir), terminal_size=SMALL, run_before=runs_ready)


def test_runs_view_large_on_the_unreadable_run(runs_dir, snap_compare):
    async def run_before(pilot) -> None:
        await runs_ready(pilot)
        table = pilot.app.screen.query_one(RunsTable)
        # Move only once the table knows it scrolls: a scroll made before its scrollbar is shown leaves
        # the scrollbar's thumb at the top (seen on a busy machine).
        await wait_until(pilot, lambda: table.show_vertical_scrollbar, what="the table's scrollbar")
        row = table.get_row_index(F.CORRUPT_ID)
        table.move_cursor(row=row)
        await wait_until(pilot, lambda: table.scroll_y <= row < table.scroll_y + table.size.height - 2
                         and table.scroll_y == table.scroll_target_y == table.vertical_scrollbar.position,
                         what="the row in view")
        await pilot.pause()

    assert snap_compare(app(runs_dir), terminal_size=LARGE, run_before=run_before)


def test_live_view_small(runs_dir, snap_compare):
    assert snap_compare(app(runs_dir), terminal_size=SMALL, run_before=open_live(F.RUNNING_ID))


def test_live_view_large_ranks_by_layer(runs_dir, snap_compare):
    assert snap_compare(app(runs_dir), terminal_size=LARGE, run_before=open_live(F.RUNNING_ID, "d"))


def test_live_view_of_an_evaluation(runs_dir, snap_compare):
    key = "20261124-121000-evaluation-deftx-ace-s0"
    assert snap_compare(app(runs_dir), terminal_size=SMALL, run_before=open_live(key))


def test_compare_view_small(runs_dir, snap_compare):
    assert snap_compare(app(runs_dir), terminal_size=SMALL, run_before=open_compare())


def test_compare_view_large_second_table(runs_dir, snap_compare):
    assert snap_compare(app(runs_dir), terminal_size=LARGE, run_before=open_compare("t"))


def test_help_small(runs_dir, snap_compare):
    async def run_before(pilot) -> None:
        await runs_ready(pilot)
        await pilot.press("question_mark")

    assert snap_compare(app(runs_dir), terminal_size=SMALL, run_before=run_before)
