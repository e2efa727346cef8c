"""What a new user notices first at 80x24: titles, run order, feedback, chart scale, layer order."""

from __future__ import annotations

from pathlib import Path

import tui_fixtures as F
from tui_fixtures import wait_until

from deftx.records.reading import list_runs
from deftx_cli.tui.app import DeftxDashboard
from deftx.analysis.denoise_summary import parse_denoise, summarize
from deftx_cli.tui.screens.compare import CompareScreen
from deftx_cli.tui.screens.runs import runs_title
from deftx_cli.tui.widgets.charts import y_range


def _run(runs: Path, run_id: str, start: str) -> None:
    F.write_run(runs, run_id, kind="language", method="deftx", languages={"target": "ace"}, started=F.at(start))


def test_runs_are_listed_newest_first_by_start_time_not_by_name(tmp_path):
    runs = tmp_path / "runs"
    _run(runs, "xfer-lang-ace-deftx-s0-aaaa", "10:00:00")  # names sort against the times
    _run(runs, "20261125-090000-language-deftx-ace", "09:00:00")
    _run(runs, "xfer-lang-ace-deftx-s0-zzzz", "08:00:00")
    (runs / "broken").mkdir()
    assert [info.path.name for info in list_runs(runs)] == [
        "xfer-lang-ace-deftx-s0-aaaa", "20261125-090000-language-deftx-ace", "xfer-lang-ace-deftx-s0-zzzz", "broken"]


def test_the_title_counts_runs_in_words():
    assert runs_title(Path("runs"), 1, 0) == "1 run in runs, 0 running"
    assert runs_title(Path("runs"), 3, 1) == "3 runs in runs, 1 running"


async def test_next_table_with_a_single_table_says_so(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runs = tmp_path / "runs"
    F.evaluation_runs(runs, second_task=False)
    app = DeftxDashboard(Path("runs"), poll_interval=0.25, clock=F.clock)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: pilot.app.screen.scans >= 1)
        await pilot.press("c")
        await wait_until(pilot, lambda: isinstance(pilot.app.screen, CompareScreen) and pilot.app.screen.pivot is not None)
        assert len(pilot.app.screen.pivots) == 1
        await pilot.press("t")
        await pilot.pause()
        assert any("only table" in n.message for n in pilot.app._notifications)


def test_loss_axis_does_not_blow_up_early_noise():
    low, high = y_range([10.02, 10.07, 10.05])
    assert high - low >= 0.2 * 10.07 - 1e-9 and low <= 10.02 and high >= 10.07
    # a real descent keeps its own range
    assert y_range([10.0, 2.0]) == (2.0, 10.0)
    assert y_range([0.0, 0.0]) == (0.0, 1.0)


def test_layers_sort_numerically():
    names = [f"encoder.layer.{i}.attention.self.query.weight" for i in (0, 1, 10, 11, 2)]
    names.append("embeddings.word_embeddings.weight")
    matrices = parse_denoise([{"name": n, "shape": [8, 8], "rank": 2, "energy_kept": 0.9} for n in names])
    assert [g.label for g in summarize(matrices, "matrix")] == [
        "emb.word", "L0 attn.query", "L1 attn.query", "L2 attn.query", "L10 attn.query", "L11 attn.query"]
    assert [g.label for g in summarize(matrices, "layer")] == [
        "layer 0", "layer 1", "layer 2", "layer 10", "layer 11", "other"]


async def test_a_one_class_evaluation_is_flagged_in_the_runs_view_and_marked_in_the_compare_view(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    F.make_runs_dir(tmp_path)
    app = DeftxDashboard(Path("runs"), poll_interval=0.25, clock=F.clock)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(pilot, lambda: pilot.app.screen.scans >= 1)
        table = pilot.app.screen.query_one("#runs-table")
        (row,) = [r for r in pilot.app.screen.rows if r.key.endswith("evaluation-full-ft-ban-s0")]
        assert row.status == "finished" and row.warning
        table.move_cursor(row=table.get_row_index(row.key))
        await pilot.pause()
        detail = str(pilot.app.screen.query_one("#run-detail").content)
        assert "never predicts 'neutral'" in detail and "neutral 0.0%" in detail
        await pilot.press("c")
        await wait_until(pilot, lambda: isinstance(pilot.app.screen, CompareScreen) and pilot.app.screen.pivot is not None)
        pivot = pilot.app.screen.pivot
        (ban,) = [r for r in pivot.rows if r.label == "ban"]
        assert ban.cells["full-ft"].collapsed == 1 and not ban.cells["deftx"].collapsed
        notes = str(pilot.app.screen.query_one("#compare-notes").content)
        assert "†" in notes and "never predicts one of its classes" in notes
