"""The compare view's SFT overlap: which SFTs an experiment used, and the panel that reports them."""

from __future__ import annotations

import json
from pathlib import Path

import tui_fixtures as F
from tui_fixtures import wait_until

from deftx.sft.overlap import pair_overlap, read_sparse_arrays
from deftx_cli.tui.app import DeftxDashboard
from deftx.analysis.comparison import TableKey
from deftx_cli.tui.overlap import experiment_sfts, locate_sft, overlap_rows
from deftx_cli.tui.screens.compare import CompareScreen
from deftx_cli.tui.widgets.overlap_panel import OverlapPanel

Q = "encoder.layer.0.attention.self.query.weight"
KEY = TableKey("nusax-senti", F.MODEL, "test", "macro_f1", "cpu")

# (method, role) -> indices and values of one parameter of shape (4, 4)
SFTS = {
    ("lt-sft", "lang"): ([0, 1, 2, 3], [1.0, 1.0, 1.0, 1.0]),
    ("lt-sft", "task"): ([2, 3, 4], [-1.0, 2.0, 1.0]),
    ("deftx", "lang"): ([0, 5], [1.0, 1.0]),
    ("deftx", "task"): ([6, 7], [1.0, 1.0]),
}


def write_sft(path: Path, idx, values, kind: str) -> Path:
    import numpy as np
    from safetensors.numpy import save_file

    path.mkdir(parents=True)
    save_file({f"{Q}.indices": np.array(idx, dtype=np.int32), f"{Q}.values": np.array(values, dtype=np.float32)},
              str(path / "diff.safetensors"))
    (path / "sft.json").write_text(json.dumps({"format": "deftx-sft", "format_version": 1, "kind": kind,
                                               "shapes": {Q: [4, 4]}}))
    return path


def experiment(runs: Path, language: str = "ace") -> None:
    """Four SFT runs and the two evaluations that composed them, paths as the CLI records them."""
    for (method, role), (idx, values) in SFTS.items():
        write_sft(runs / f"{role}-{method}" / "sft", idx, values, "language" if role == "lang" else "task")
    for method in ("lt-sft", "deftx"):
        run_id = f"eval-{method}-{language}"
        record = F.result_record(method, language, 0, 0.6, run_id=run_id)
        record.update(lang_sft=f"runs/lang-{method}/sft", task_sft=str((runs / f"task-{method}" / "sft").resolve()))
        (runs / run_id).mkdir()
        (runs / run_id / "results.json").write_text(json.dumps(record))


def test_the_sfts_of_an_experiment_are_found_and_paired(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runs = Path("runs")
    runs.mkdir()
    experiment(runs)
    records = [json.loads(p.read_text()) for p in runs.glob("*/results.json")]
    sfts = experiment_sfts(records, KEY, runs)
    assert sfts is not None and sfts.language == "ace" and sfts.seed == 0
    assert sfts.paths[("lt-sft", "lang")] == Path("runs/lang-lt-sft/sft")
    assert locate_sft("elsewhere/lang-deftx/sft", runs) == runs / "lang-deftx" / "sft"  # moved runs dir
    assert locate_sft("runs/nope/sft", runs) is None
    rows = overlap_rows(sfts)
    assert [r.label for r in rows] == ["LT-SFT: lang ace × task", "DeFT-X: lang ace × task",
                                       "lang ace: LT-SFT × DeFT-X", "task: LT-SFT × DeFT-X"]
    lt = rows[0].total
    assert lt["shared"] == 2 and lt["sign_disagreement"] == 0.5  # positions 2 (1 vs -1) and 3 (1 vs 2)
    arrays = {k: read_sparse_arrays(p) for k, p in sfts.paths.items()}
    assert lt == pair_overlap(arrays[("lt-sft", "lang")], arrays[("lt-sft", "task")])["total"]
    assert rows[3].total["shared"] == 0
    assert experiment_sfts(records, TableKey("americasnli", F.MODEL, "test", "accuracy", "cpu"), runs) is None


async def test_the_compare_view_shows_the_overlap_only_when_the_sfts_exist(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runs = F.make_runs_dir(tmp_path)  # records that name SFTs that are not on disk
    app = DeftxDashboard(Path("runs"), poll_interval=0.25, clock=F.clock)
    async with app.run_test(size=(100, 36)) as pilot:
        await wait_until(pilot, lambda: pilot.app.screen.scans >= 1)
        await pilot.press("c")
        await wait_until(pilot, lambda: isinstance(pilot.app.screen, CompareScreen) and pilot.app.screen.pivot is not None)
        panel = pilot.app.screen.query_one(OverlapPanel)
        await wait_until(pilot, lambda: panel.computed >= 1, what="the overlap")
        assert not panel.display
        experiment(runs, language="ace")
        await wait_until(pilot, lambda: panel.display, what="the overlap panel")
        await pilot.pause()
        text = "\n".join(line.text for line in panel.render_lines(panel.region.reset_offset))
        assert "SFT overlap (ace, seed 0)" in text
        assert "LT-SFT: lang ace × task" in text and "50.0%" in text
