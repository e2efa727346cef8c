"""The one schema of run files: old run directories load, writers write only what it allows, and a
record that cannot be read is named rather than dropped."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from deftx.analysis.comparison import build_pivots, read_records
from deftx.records.reading import MetricsTail, list_runs, read_experiment, read_metrics, read_results
from deftx.records.runs import Run, write_results
from deftx.records.schema import MaskSelected, PhaseStarted, RunDone, StepsTrained, parse_event

OLD_RUNS = Path(__file__).parent / "fixtures" / "runs-a25b44f"


def test_run_directories_of_an_earlier_version_load_through_the_models(tmp_path):
    runs = list_runs(OLD_RUNS)
    assert len(runs) == 9 and all(info.readable for info in runs), [info.error for info in runs if not info.readable]
    kinds = sorted(info.record.kind for info in runs)
    assert kinds == ["evaluation"] * 3 + ["language"] * 4 + ["task"] * 2
    language = next(info.record for info in runs if info.record.kind == "language" and info.record.method == "deftx")
    assert language.status == "finished" and language.summary.phase2 is not None and language.summary.k > 0
    for info in runs:
        lines = (info.path / "metrics.jsonl").read_text().splitlines()
        tail = MetricsTail(info.path / "metrics.jsonl")
        events = tail.read_new()
        assert len(events) == len(lines) and tail.bad_lines == 0, info.run_id
    deftx_lang = next(info for info in runs if info.record.kind == "language" and info.record.method == "deftx")
    events = read_metrics(deftx_lang.path / "metrics.jsonl")
    assert isinstance(events[0], (PhaseStarted, MaskSelected)) or any(isinstance(e, PhaseStarted) for e in events)
    assert any(isinstance(e, MaskSelected) and e.denoise for e in events)
    assert any(isinstance(e, StepsTrained) for e in events) and isinstance(events[-1], RunDone)
    results = read_results(OLD_RUNS)
    assert len(results.records) == 3 and results.problems == []
    [pivot], skipped = build_pivots(results)
    assert skipped == [] and pivot.systems == ["lt-sft", "deftx", "no-lang-sft"]
    assert read_experiment(OLD_RUNS).status == "finished"


def test_a_writer_cannot_write_an_event_or_record_of_the_wrong_shape(tmp_path):
    with Run.start(tmp_path, "language", config={}, run_id="r") as run:
        run.log("train", phase=1, step=3, loss=2.5)
        with pytest.raises(ValueError, match="'train' event that does not fit its schema: train.step: input should be"):
            run.log("train", phase=1, step="three")
        run.log("something-new", anything=[1, 2])  # an event this deftx does not know is written as it is
        with pytest.raises(ValueError, match="run.json of r does not fit its schema"):
            run.update(status="paused")
        run.update(status="running")
    events = [json.loads(line) for line in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    assert [e["event"] for e in events] == ["train", "something-new"]
    with pytest.raises(ValueError):
        write_results(tmp_path / "r", {"task": "t", "language": "ace", "split": "test", "system": "deftx",
                                       "metric": "macro_f1", "metrics": {"macro_f1": "high"}})
    assert not (tmp_path / "r" / "results.json").exists()


def test_records_that_cannot_be_read_are_named_with_their_reason(tmp_path):
    for name in ("xfer-eval-nusax-senti-ace-lt-sft-s0-876ff9ba31", "xfer-eval-nusax-senti-ace-deftx-s0-cc296ec82b"):
        shutil.copytree(OLD_RUNS / name, tmp_path / name)
    truncated = tmp_path / "xfer-eval-nusax-senti-ace-deftx-s0-cc296ec82b" / "results.json"
    truncated.write_bytes(truncated.read_bytes()[:200])
    shaped = tmp_path / "other" / "results.json"
    shaped.parent.mkdir()
    shaped.write_text(json.dumps({"task": "nusax-senti", "language": ["ace"], "split": "test", "system": "x",
                                  "metric": "macro_f1", "metrics": {"macro_f1": 0.5}}))
    read = read_records(tmp_path)
    assert [r.system for r in read.records] == ["lt-sft"]
    assert read.problems[0] == f"{tmp_path / 'other'}: results.json: language: input should be a valid string (got list)"
    assert read.problems[1].startswith(f"{truncated.parent}: results.json is not valid JSON (line ")
    assert read.problems[1].endswith("; truncated?)") and len(read.problems) == 2


@pytest.mark.parametrize("line", [
    {"event": "train", "phase": 1, "step": "7"},  # a number written as text
    {"event": "selection", "k": 10.5},  # a count that is not whole
    {"event": "eval", "metrics": [1, 2]},
    {"event": 3},
    [1, 2, 3],
])
def test_a_malformed_line_is_not_an_event(line):
    assert parse_event(line) is None


def test_a_run_records_the_commit_of_the_source_tree_it_ran():
    from deftx.records.provenance import environment

    if not (Path(__file__).resolve().parents[1] / ".git").exists():
        pytest.skip("not a git checkout")
    commit = environment()["git_commit"]
    assert commit is not None and len(commit.removesuffix("+dirty")) == 40
