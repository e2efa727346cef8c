"""Pilot tests: what the screen holds as runs progress, break, and are compared."""

from __future__ import annotations

import json
from pathlib import Path

import tui_fixtures as F
from tui_fixtures import wait_until
from textual.widgets import DataTable, Select, Static

from deftx.records.reading import MetricsTail

from deftx_cli.tui.app import DeftxDashboard
from deftx_cli.tui.screens.compare import CompareScreen
from deftx_cli.tui.screens.help import HelpScreen
from deftx_cli.tui.screens.live import LiveScreen
from deftx_cli.tui.screens.runs import RunsScreen
from deftx_cli.tui.widgets.charts import LossChart
from deftx_cli.tui.widgets.compare_table import CompareTable
from deftx_cli.tui.widgets.runs_table import RunsTable
from deftx_cli.tui.widgets.trend import TrendLine

POLL = 0.25


def dashboard(runs_dir: Path, poll: float = POLL) -> DeftxDashboard:
    return DeftxDashboard(runs_dir, poll_interval=poll, clock=F.clock)


def cell(table: DataTable, row: str, column: str) -> str:
    return str(table.get_cell(row, column))


def static_text(app, selector: str) -> str:
    return str(app.screen.query_one(selector, Static).content)


async def runs_loaded(pilot) -> RunsTable:
    await wait_until(pilot, lambda: pilot.app.screen.scans >= 1, what="the first scan")
    return pilot.app.screen.query_one(RunsTable)


async def open_run(pilot, key: str) -> LiveScreen:
    table = await runs_loaded(pilot)
    table.move_cursor(row=table.get_row_index(key))
    await pilot.press("enter")
    await wait_until(pilot, lambda: isinstance(pilot.app.screen, LiveScreen) and pilot.app.screen.polls >= 1,
                     what="the live view")
    return pilot.app.screen


# ---- runs view --------------------------------------------------------------------------------


async def test_runs_view_shows_every_run_with_its_state(runs_dir):
    async with dashboard(runs_dir).run_test(size=(160, 50)) as pilot:
        table = await runs_loaded(pilot)
        assert table.row_count == 9 + 27 + 2
        running = F.RUNNING_ID
        assert [cell(table, running, c) for c in ("status", "kind", "method", "languages", "phase", "step")] == [
            "running", "lang", "DeFT-X", "quy", "2/2", "200/400"]
        assert (cell(table, running, "elapsed"), cell(table, running, "eta")) == ("15m00s", "1m50s")
        assert cell(table, running, "loss") == str(F.loss_at(2, 200))[:5]
        task = "20261125-090000-task-lt-sft-ind"
        assert [cell(table, task, c) for c in ("status", "kind", "method", "task", "best", "eta")] == [
            "finished", "task", "LT-SFT", "smsa", "F1 0.79", "done"]
        assert cell(table, "20261125-080000-language-lt-sft-ban", "status") == "failed"
        assert cell(table, "20261125-073000-language-deftx-ban", "status") == "interrupted"
        assert cell(table, "20261125-070000-language-deftx-bjn", "status") == "stale"
        evaluation = "20261124-120100-evaluation-lt-sft-ace-s0"
        assert [cell(table, evaluation, c) for c in ("kind", "languages", "best")] == ["eval", "ind→ace", "F1 0.652"]
        # the first row is highlighted and spelled out below the table
        detail = static_text(pilot.app, "#run-detail")
        assert running in detail and "ETA 1m50s" in detail and "started 2026-11-25 10:15 UTC" in detail


async def test_broken_runs_show_as_unreadable_with_the_reason(runs_dir):
    async with dashboard(runs_dir).run_test(size=(120, 40)) as pilot:
        table = await runs_loaded(pilot)
        assert cell(table, F.CORRUPT_ID, "status") == "unreadable"
        table.move_cursor(row=table.get_row_index(F.CORRUPT_ID))
        await pilot.pause()
        assert "unreadable: run.json is not valid JSON" in static_text(pilot.app, "#run-detail")
        # a run with non-JSON lines in its metrics: readable, flagged, the reason below
        assert cell(table, F.BAD_LINES_ID, "status") == "finished ⚠"
        assert cell(table, F.BAD_LINES_ID, "step") == "400/400"
        table.move_cursor(row=table.get_row_index(F.BAD_LINES_ID))
        await pilot.pause()
        assert "2 lines not events, skipped" in static_text(pilot.app, "#run-detail")
        # and the unreadable run opens without crashing
        table.move_cursor(row=table.get_row_index(F.CORRUPT_ID))
        await pilot.pause()
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(pilot.app.screen, LiveScreen) and pilot.app.screen.polls >= 1)
        assert "unreadable" in static_text(pilot.app, "#live-header")
        await pilot.press("escape")
        assert isinstance(pilot.app.screen, RunsScreen)


async def test_new_runs_appear_and_statuses_change_by_themselves(runs_dir):
    async with dashboard(runs_dir).run_test(size=(120, 40)) as pilot:
        table = await runs_loaded(pilot)
        new_id = "20261125-102900-language-lt-sft-min"
        F.training_run(runs_dir, new_id, kind="language", method="lt-sft", lang="min", start=F.at("10:29:00"),
                       status="running", upto_phase2=0, pid=__import__("os").getpid())
        await wait_until(pilot, lambda: new_id in table.rows, what="the new run")
        assert table.get_row_index(new_id) == 0
        record_path = runs_dir / F.RUNNING_ID / "run.json"
        record = json.loads(record_path.read_text())
        record.update(status="finished", ended_at="2026-11-25T10:29:00+00:00")
        record_path.write_text(json.dumps(record))
        await wait_until(pilot, lambda: cell(table, F.RUNNING_ID, "status") == "finished", what="the status change")
        assert cell(table, F.RUNNING_ID, "elapsed") == "14m00s"


async def test_empty_runs_dir_says_how_runs_get_there(empty_runs_dir):
    async with dashboard(empty_runs_dir).run_test(size=(80, 24)) as pilot:
        table = await runs_loaded(pilot)
        assert table.row_count == 0
        assert "No runs in runs yet" in static_text(pilot.app, "#run-detail")
        await pilot.press("enter", "c")  # nothing to open; compare is empty but fine
        await wait_until(pilot, lambda: isinstance(pilot.app.screen, CompareScreen) and pilot.app.screen.loads >= 1)
        assert "No evaluation results" in static_text(pilot.app, "#compare-caption")
        await pilot.press("e")  # nothing to export: a warning, no file
        await pilot.pause()
        assert not list(Path().glob("runs/compare-*"))


# ---- live view --------------------------------------------------------------------------------


async def test_live_view_follows_a_growing_metrics_file(runs_dir):
    metrics = runs_dir / F.RUNNING_ID / "metrics.jsonl"
    async with dashboard(runs_dir, poll=0.5).run_test(size=(100, 30)) as pilot:
        screen = await open_run(pilot, F.RUNNING_ID)
        chart = screen.query_one(LossChart)
        await wait_until(pilot, lambda: chart.plotted_points == 60)
        assert "step 200/400" in static_text(pilot.app, "#live-header")
        assert screen.series.curve(2, "loss").steps[-1] == 200  # the half-written line is not there

        # the writer finishes the half line and writes two more: shown within about a second
        F.append(metrics, 'ep": 205, "loss": 1.2}\n')
        for step in (210, 220):
            F.append(metrics, F.line({"time": F.at("10:27:40") + (step - 200) * 1.25, "event": "train", "phase": 2,
                                      "step": step, "total_steps": 400, "loss": F.loss_at(2, step), "lr": 2e-5,
                                      "throughput": 30.0}))
        await wait_until(pilot, lambda: "step 220/400" in static_text(pilot.app, "#live-header"), what="step 220")
        assert screen.series.curve(2, "loss").steps[-3:] == [205, 210, 220]
        assert chart.plotted_points == 63
        assert screen.query_one("#throughput-trend", TrendLine).value_text == "30"

        # a new half-written line is held back until its newline arrives
        F.append(metrics, '{"time": 1, "event": "train", "phase": 2, "step": 230, "loss"')
        await pilot.pause(0.8)
        assert screen.series.curve(2, "loss").steps[-1] == 220
        F.append(metrics, ': 0.9}\n')
        await wait_until(pilot, lambda: screen.series.curve(2, "loss").steps[-1] == 230, what="step 230")


async def test_live_view_of_deftx_shows_k_density_and_denoising(runs_dir):
    async with dashboard(runs_dir).run_test(size=(120, 40)) as pilot:
        screen = await open_run(pilot, "20261125-093000-language-deftx-ace")
        await wait_until(pilot, lambda: "K 1,500,000" in static_text(pilot.app, "#selection-summary"))
        summary = static_text(pilot.app, "#selection-summary")
        assert "of 45,000,000" in summary and "density 3.33%" in summary and "energy:0.9" in summary
        assert "median rank 70 · energy kept 0.903" in summary and "top-K 62.0%" in summary
        table = screen.query_one("#denoise-table", DataTable)
        assert table.display
        rows = {str(table.get_row_at(i)[0]): [str(c) for c in table.get_row_at(i)] for i in range(table.row_count)}
        assert rows["attn.query"] == ["attn.query", "2", "42 40–45", "0.901"]
        assert rows["all"][1] == "13"
        await pilot.press("d")
        labels = [str(table.get_row_at(i)[0]) for i in range(table.row_count)]
        assert labels == ["layer 0", "layer 1", "other", "all"]
        await pilot.press("d")
        assert str(table.get_row_at(1)[0]) == "L0 attn.query" and len(table.columns) == 3
        assert screen.query_one(LossChart).plotted_points == 80
        assert screen.query_one("#lr-trend", TrendLine).value_text == "0"


async def test_live_view_of_lt_sft_has_no_denoising_table(runs_dir):
    async with dashboard(runs_dir).run_test(size=(100, 30)) as pilot:
        screen = await open_run(pilot, "20261125-083000-language-lt-sft-ace")
        await wait_until(pilot, lambda: "Selection (LT-SFT)" in static_text(pilot.app, "#selection-summary"))
        assert not screen.query_one("#denoise-table", DataTable).display


async def test_live_view_of_an_evaluation_shows_its_result(runs_dir):
    async with dashboard(runs_dir).run_test(size=(100, 30)) as pilot:
        screen = await open_run(pilot, "20261124-121000-evaluation-deftx-ace-s0")
        await wait_until(pilot, lambda: "macro_f1 0.671" in static_text(pilot.app, "#result-summary"))
        table = screen.query_one("#per-class-table", DataTable)
        assert [str(c) for c in table.get_row_at(0)] == ["negative", "0.7", "0.8", "0.75", "153"]
        assert "no training steps" in str(screen.query_one(LossChart).plt.build())


async def test_live_view_stays_responsive_on_100k_lines(runs_dir, monkeypatch):
    path = runs_dir / "20261125-000000-language-lt-sft-big"
    F.write_run(runs_dir, path.name, kind="language", method="lt-sft", languages={"target": "ace"},
                started=F.at("00:00:00"), ended=F.at("03:00:00"), total_steps={"phase1": 50_000, "phase2": 50_000})
    F.big_metrics_file(path / "metrics.jsonl", 100_000)
    async with dashboard(runs_dir, poll=0.1).run_test(size=(100, 30)) as pilot:
        screen = await open_run(pilot, path.name)
        await wait_until(pilot, lambda: screen.series.events == 100_000, what="the big file")
        chart = screen.query_one(LossChart)
        assert 0 < chart.plotted_points <= 2 * chart.max_points()
        # a new line shows up, and only the new bytes are read for it (not the 100k lines again)
        tail = screen._follower._tracked.tail
        reads = []
        original = MetricsTail.read_new

        def spy(self):
            events = original(self)
            if self is tail and events:
                reads.append(len(events))
            return events

        monkeypatch.setattr(MetricsTail, "read_new", spy)
        F.append(path / "metrics.jsonl", F.line({"time": 1.0, "event": "train", "phase": 2, "step": 50_001, "loss": 0.5}))
        await wait_until(pilot, lambda: screen.series.events == 100_001, what="the new line")
        assert reads == [1]
        assert tail.offset == (path / "metrics.jsonl").stat().st_size
        await pilot.press("d", "question_mark")
        assert isinstance(pilot.app.screen, HelpScreen)


# ---- compare view -----------------------------------------------------------------------------


async def open_compare(pilot) -> CompareScreen:
    await runs_loaded(pilot)
    await pilot.press("c")
    await wait_until(pilot, lambda: isinstance(pilot.app.screen, CompareScreen) and pilot.app.screen.pivot is not None)
    return pilot.app.screen


async def test_compare_view_pivots_languages_by_methods(runs_dir):
    async with dashboard(runs_dir).run_test(size=(100, 30)) as pilot:
        screen = await open_compare(pilot)
        table = screen.query_one(CompareTable)
        assert [str(c.label) for c in table.columns.values()] == ["Lang", "LT-SFT", "DeFT-X", "Δ", "no lang SFT", "full FT"]
        assert [str(c) for c in table.get_row("lang:ace")] == [
            "ace", "65.3±1.1 (3)", "*67.2±1.1 (3)", "+1.9", "58.6±0.8 (2)", "60.1 (1)"]
        assert [str(c) for c in table.get_row("lang:ban")][1:4] == ["*61.9±1.1 (3)", "61.3±1.1 (3)", "−0.6"]
        average = [str(c) for c in table.get_row("__average__")]
        assert average[0] == "Average" and average[2].startswith("*") and average[3] == "+1.2"
        assert "bold" in str(table.get_cell("lang:ace", "deftx").style)
        caption = static_text(pilot.app, "#compare-caption")
        assert caption.startswith("1/2 · macro_f1 ×100")
        # the selector names the two tables; t moves to the next
        select = screen.query_one("#table-select", Select)
        assert select.display and select.value.task == "nusax-senti"
        await pilot.press("t")
        assert select.value.task == "americasnli"
        assert [str(c) for c in table.get_row("lang:quy")] == ["quy", "43.2 (1)", "*45.1 (1)", "+1.9"]
        await pilot.press("escape")
        assert isinstance(pilot.app.screen, RunsScreen)


async def test_compare_export_writes_csv_and_markdown_into_the_runs_dir(runs_dir):
    async with dashboard(runs_dir).run_test(size=(100, 30)) as pilot:
        await open_compare(pilot)
        await pilot.press("e")
        csv_path, md_path = runs_dir / "compare-nusax-senti.csv", runs_dir / "compare-nusax-senti.md"
        await wait_until(pilot, lambda: md_path.exists() and any("Exported" in n.message for n in pilot.app._notifications))
        assert csv_path.read_text().splitlines()[0].startswith("task,base_model,split,metric,preset,language,lt-sft_mean")
        assert "| ace | 65.3±1.1 (3) | **67.2±1.1 (3)** | +1.9 |" in md_path.read_text()
        (note,) = [n for n in pilot.app._notifications if "Exported" in n.message]
        assert str(csv_path) in note.message and str(md_path) in note.message
        assert not list(runs_dir.glob(".*.tmp"))  # atomic: no temporary files left behind
        await pilot.press("t", "e")
        await wait_until(pilot, lambda: (runs_dir / "compare-americasnli.md").exists())


async def test_compare_view_picks_up_new_results_and_skips_broken_ones(runs_dir):
    async with dashboard(runs_dir).run_test(size=(100, 30)) as pilot:
        screen = await open_compare(pilot)
        bad = runs_dir / "20261124-230000-evaluation-broken"
        bad.mkdir()
        (bad / "results.json").write_text(json.dumps({"run_id": "x", "language": "ace", "system": "deftx", "metrics": {}}))
        binary = runs_dir / "20261124-230100-evaluation-binary"
        binary.mkdir()
        (binary / "results.json").write_bytes(b"\xff\xfe\x00")
        new = F.result_record("deftx", "min", 0, 0.5, run_id="new")
        (runs_dir / "20261124-230200-evaluation-new").mkdir()
        (runs_dir / "20261124-230200-evaluation-new" / "results.json").write_text(json.dumps(new))
        await pilot.press("r")
        await wait_until(pilot, lambda: len(screen.skipped) == 2)
        assert screen.skipped == ["20261124-230000-evaluation-broken: results.json: task: field required (got dict)",
                                  "20261124-230100-evaluation-binary: results.json is not UTF-8 text"]
        assert "and 1 more" in static_text(pilot.app, "#compare-notes")
        table = screen.query_one(CompareTable)
        assert [str(c) for c in table.get_row("lang:min")][:3] == ["min", "—", "50.0 (1)"]


# ---- keys -------------------------------------------------------------------------------------


async def test_help_and_quit_keys(runs_dir):
    async with dashboard(runs_dir).run_test(size=(80, 24)) as pilot:
        await runs_loaded(pilot)
        footer_keys = {b.binding.key for b in pilot.app.screen.active_bindings.values() if b.binding.show}
        assert {"enter", "c", "r", "q", "question_mark"} <= footer_keys
        await pilot.press("question_mark")
        assert isinstance(pilot.app.screen, HelpScreen)
        await pilot.press("escape")
        assert isinstance(pilot.app.screen, RunsScreen)
        await pilot.press("q")
        await pilot.pause()
        assert pilot.app.return_code == 0 or not pilot.app.is_running
