"""The runs view's line on the directory's last deftx transfer (experiment.json)."""

from __future__ import annotations

import json
import os

import tui_fixtures as F
from tui_fixtures import wait_until
from textual.widgets import Static

from deftx.records.schema import ExperimentRecord
from deftx_cli.text import experiment_text
from deftx_cli.tui.app import DeftxDashboard


def record(**kw):
    base = {"kind": "transfer", "status": "running", "pid": os.getpid(), "total": 9, "index": 3,
            "step_label": "[seed 0] language SFT ace (DeFT-X)", "step_started": 1000.0, "eta_seconds": 600.0}
    return ExperimentRecord.model_validate({**base, **kw})


def test_experiment_line_says_the_step_and_the_time_left():
    assert experiment_text(record(), now=1060.0) == (
        "Experiment: step 3 of 9 · [seed 0] language SFT ace (DeFT-X) · about 9m00s left")
    assert experiment_text(record(), now=9999.0).endswith("about 0s left")  # never negative
    assert experiment_text(record(eta_seconds=None), now=1060.0) == (
        "Experiment: step 3 of 9 · [seed 0] language SFT ace (DeFT-X)")
    assert experiment_text(record(), now=1060.0, alive=False).startswith("Experiment stopped at step 3 of 9")
    assert experiment_text(record(status="finished"), now=0) == "Experiment finished: 9 steps"
    assert experiment_text(record(status="finished", started_at="2026-12-04T17:26:06+00:00",
                                  ended_at="2026-12-04T17:39:57+00:00"), now=0) == "Experiment finished: 9 steps in 13m51s"
    assert experiment_text(record(status="interrupted"), now=0) == (
        "Experiment interrupted at step 3 of 9 · [seed 0] language SFT ace (DeFT-X)")
    assert experiment_text(None, now=0) is None


async def test_runs_view_shows_the_experiment_and_follows_it(runs_dir):
    path = runs_dir / "experiment.json"
    path.write_text(json.dumps(record(step_started=F.clock() - 60).to_json()))
    app = DeftxDashboard(runs_dir, poll_interval=0.25, clock=F.clock)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(pilot, lambda: pilot.app.screen.scans >= 1, what="the first scan")
        line = pilot.app.screen.query_one("#experiment", Static)
        assert line.display and "step 3 of 9" in str(line.content) and "about 9m00s left" in str(line.content)
        path.write_text(json.dumps(record(status="finished").to_json()))
        await wait_until(pilot, lambda: "finished" in str(line.content), what="the finished experiment")


async def test_runs_view_hides_the_line_without_an_experiment(runs_dir):
    async with DeftxDashboard(runs_dir, poll_interval=0.25, clock=F.clock).run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: pilot.app.screen.scans >= 1, what="the first scan")
        assert not pilot.app.screen.query_one("#experiment", Static).display
