"""Where a run stands: folding events, elapsed and ETA from an injected clock, broken inputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import tui_fixtures as F

from deftx.records.reading import RunInfo, read_metrics, read_run
from deftx.records.schema import ResultRecord, RunRecord, number, parse_event
from deftx_cli.tui.format import format_duration, format_number, languages_label, model_label
from deftx_cli.tui.progress import RunProgress, describe_run, phase_totals_from_record, pid_alive


def always_alive(pid):
    return True


def test_fold_tracks_phase_step_loss_and_best_metric(tmp_path):
    runs = F.make_runs_dir(tmp_path, evaluations=False)
    progress = RunProgress()
    progress.update(read_metrics(runs / "20261125-090000-task-lt-sft-ind" / "metrics.jsonl"))
    assert (progress.phase, progress.step) == (2, 400)
    assert progress.phase_totals == {1: 400, 2: 400}
    assert progress.last_loss == F.loss_at(2, 400)
    assert progress.best == {"accuracy": 0.81, "macro_f1": 0.79}
    assert progress.done and progress.selection.k == 1_500_000


def test_elapsed_and_eta_come_from_the_clock_and_the_step_rate(tmp_path):
    runs = F.make_runs_dir(tmp_path, evaluations=False)
    path = runs / F.RUNNING_ID
    progress = RunProgress()
    progress.update(read_metrics(path / "metrics.jsonl"))
    row = describe_run(read_run(path), progress, F.NOW, alive=always_alive)
    # started 10:15:00, now 10:30:00; phase 2 at step 200 of 400 at 0.8 steps/s, the last line
    # written 140 s ago: 200 / 0.8 - 140 = 110 s left.
    assert row.elapsed == "15m00s"
    assert row.eta == "1m50s"
    assert (row.phase, row.step, row.status) == ("2/2", "200/400", "running")
    # the clock moves on: elapsed grows, ETA shrinks
    later = describe_run(read_run(path), progress, F.NOW + 60, alive=always_alive)
    assert (later.elapsed, later.eta) == ("16m00s", "50s")


def test_eta_counts_the_phases_still_to_come():
    progress = RunProgress()
    progress.update(F.train_events(1, 400, 1000.0, 1.25, upto=100))
    info = RunInfo(Path("r"), "r", record=RunRecord(run_id="r", status="running", started_at="1970-01-01T00:16:40+00:00",
                                                     total_steps={"phase1": 400, "phase2": 400}))
    row = describe_run(info, progress, 1000.0 + 125, alive=always_alive)
    # 300 + 400 steps at 0.8 steps/s
    assert row.eta == format_duration(700 / 0.8)


def test_finished_failed_and_interrupted_rows(tmp_path):
    runs = F.make_runs_dir(tmp_path, evaluations=False)
    rows = {}
    for name in ("20261125-083000-language-lt-sft-ace", "20261125-080000-language-lt-sft-ban",
                 "20261125-073000-language-deftx-ban"):
        progress = RunProgress()
        progress.update(read_metrics(runs / name / "metrics.jsonl"))
        rows[name] = describe_run(read_run(runs / name), progress, F.NOW)
    done = rows["20261125-083000-language-lt-sft-ace"]
    assert (done.status, done.eta, done.kind, done.method, done.languages) == ("finished", "done", "language", "LT-SFT", "ace")
    failed = rows["20261125-080000-language-lt-sft-ban"]
    assert failed.status == "failed" and failed.step == "120/400"
    assert "failed: CUDA out of memory" in failed.details
    assert rows["20261125-073000-language-deftx-ban"].status == "interrupted"


def test_a_running_run_whose_process_is_gone_is_stale(tmp_path):
    runs = F.make_runs_dir(tmp_path, evaluations=False)
    row = describe_run(read_run(runs / "20261125-070000-language-deftx-bjn"), RunProgress(), F.NOW)
    assert row.status == "stale"
    assert any("not alive" in line for line in row.details)
    assert pid_alive(F.DEAD_PID) is False
    import os

    assert pid_alive(os.getpid()) is True
    assert pid_alive("1234") is True  # cannot tell: not a number


def test_unreadable_run_json_gives_a_row_with_the_reason(tmp_path):
    runs = F.make_runs_dir(tmp_path, evaluations=False)
    row = describe_run(read_run(runs / F.CORRUPT_ID), RunProgress(), F.NOW)
    assert row.status == "unreadable"
    assert row.details[0].startswith("unreadable: run.json is not valid JSON")
    assert row.run_id == F.CORRUPT_ID


def test_bad_lines_are_reported(tmp_path):
    info = RunInfo(Path("r"), "r", record=RunRecord(run_id="r", status="finished"))
    row = describe_run(info, RunProgress(), F.NOW, bad_lines=2, last_bad="[1, 2, 3]")
    assert row.warning
    assert row.details == ("metrics.jsonl: 2 lines not events, skipped (last: '[1, 2, 3]')",)


def test_evaluation_best_comes_from_results():
    info = RunInfo(Path("r"), "r", record=RunRecord(run_id="r", status="finished", kind="evaluation", method="deftx",
                                                     languages={"target": "ace", "source": "ind"}))
    row = describe_run(info, RunProgress(), F.NOW, result=ResultRecord.model_validate(F.result_record("deftx", "ace", 0, 0.69)))
    assert row.best == "F1 0.69" and row.languages == "ind→ace"


GARBAGE_EVENTS = [
    {"event": "train", "phase": "two", "step": None, "loss": "nan", "time": "yesterday"},
    {"event": "train", "phase": 1, "step": 5.0, "loss": float("nan"), "lr": True, "time": 1.0},
    {"event": "train", "phase": 1, "step": 10, "loss": 1e400, "throughput": [], "time": 2.0},
    {"event": "phase", "phase": None, "total_steps": "400"},
    {"event": "eval", "metrics": ["accuracy", 1]},
    {"event": "selection", "denoise": "no"},
    {"event": "done", "summary": 3},
    {"event": 5},
    {},
]


def test_garbage_events_are_not_events_and_the_rest_still_folds():
    assert [parse_event(g) for g in GARBAGE_EVENTS] == [None] * len(GARBAGE_EVENTS)
    progress = RunProgress()
    progress.update(parse_event(e) for e in [
        {"event": "train", "phase": 1, "step": 10, "loss": float("inf"), "time": 2.0},  # not finite: no loss
        {"event": "eval", "phase": 1, "step": 10, "metrics": {"accuracy": "0.9", "macro_f1": None, "loss": 0.3}},
        {"event": "future", "anything": [1]},  # a newer deftx's event: kept, not understood
    ])
    assert progress.step == 10 and progress.phase == 1 and progress.events == 3
    assert progress.last_loss is None  # nan and inf are not losses
    assert progress.best == {"loss": 0.3}  # text and null are not metric values


def test_a_run_json_of_the_wrong_shape_is_unreadable_with_the_field_named(tmp_path):
    run = tmp_path / "weird"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({"status": 3, "kind": [], "languages": "ace", "started_at": "noon"}))
    info = read_run(run)
    assert not info.readable and info.error == "run.json: kind: input should be a valid string (got list)"
    row = describe_run(info, RunProgress(), F.NOW)
    assert row.status == "unreadable" and row.details[0] == f"unreadable: {info.error}"
    assert phase_totals_from_record(RunRecord(run_id="r", total_steps={"phase1": 400, "phase_2": 8, "other": 3})) == {
        1: 400, 2: 8}


@pytest.mark.parametrize(
    ("value", "text"),
    [(None, "—"), (-1, "—"), (0.4, "0s"), (59, "59s"), (61, "1m01s"), (3600, "1h00m"), (90061, "1d01h")],
)
def test_format_duration(value, text):
    assert format_duration(value) == text


def test_small_formatters():
    assert format_number(2.31) == "2.31" and format_number(4.9e-5) == "4.90e-05" and format_number(None) == "—"
    assert number(True) is None and number("1") is None and number(float("nan")) is None and number(3) == 3.0
    assert languages_label({"source": "ind", "target": "ace"}) == "ind→ace" and languages_label({}) == "—"
    assert model_label("../shared/models/me5-small-mlm") == "me5-small-mlm"
    assert model_label("FacebookAI/xlm-roberta-base") == "FacebookAI/xlm-roberta-base"


def test_the_step_rate_after_a_resumption_leaves_out_the_pause():
    progress = RunProgress()
    progress.update(F.train_events(1, 400, 1000.0, 1.0, upto=40))
    # killed after step 40, resumed an hour later from step 40; 2 s per step since
    progress.update([{"time": 4600.0, "event": "resume", "phase": 1, "step": 40, "total_steps": 400}])
    assert (progress.phase, progress.step) == (1, 40)
    progress.update([{"time": 4600.0 + 2 * s, "event": "train", "phase": 1, "step": 40 + s, "total_steps": 400, "loss": 1.0}
                     for s in (10, 20)])
    assert progress.steps_per_second() == 0.5


def _task_run(method: str = "lt-sft") -> RunInfo:
    return RunInfo(Path("r"), "r", record=RunRecord(run_id="r", status="finished", kind="task", method=method,
                                                     started_at="1970-01-01T00:00:00+00:00",
                                                     total_steps={"phase1": 10, "phase2": 10}))


def test_best_is_the_sfts_own_phase_two_metric_and_phase_one_is_labelled():
    """The dense phase 1 scored 0.531 but the SFT (phase 2) 0.248: the table must not show 0.531 as the SFT's."""
    progress = RunProgress()
    progress.update([
        {"event": "eval", "phase": 1, "step": 10, "metrics": {"accuracy": 0.6, "macro_f1": 0.531}},
    ])
    assert describe_run(_task_run(), progress, 0.0, alive=always_alive).best == "F1 0.531 (p1)"
    progress.update([{"event": "eval", "phase": 2, "step": 10, "metrics": {"accuracy": 0.5, "macro_f1": 0.248}}])
    assert describe_run(_task_run(), progress, 0.0, alive=always_alive).best == "F1 0.248"
    # dense fine-tuning has one phase: its phase-1 metric is its own
    dense = RunProgress()
    dense.update([{"event": "eval", "phase": 1, "step": 10, "metrics": {"macro_f1": 0.6}}])
    info = RunInfo(Path("r"), "r", record=RunRecord(run_id="r", status="finished", kind="task", method="full-ft",
                                                     total_steps={"phase1": 10}))
    assert describe_run(info, dense, 0.0, alive=always_alive).best == "F1 0.6"


def test_a_classifier_that_never_predicts_a_class_is_a_warning_on_its_row():
    progress = RunProgress()
    shares = {"negative": 0.0, "neutral": 0.01, "positive": 0.99}
    progress.update([{"event": "eval", "phase": 2, "step": 10, "metrics": {
        "macro_f1": 0.25, "prediction_shares": shares, "collapsed_classes": ["negative", "neutral"]}}])
    row = describe_run(_task_run(), progress, 0.0, alive=always_alive)
    assert row.warning
    line = next(d for d in row.details if d.startswith("warning:"))
    assert "'negative', 'neutral'" in line and "positive 99.0%" in line and "phase 2" in line
    # an evaluation: from its results record
    info = RunInfo(Path("e"), "e", record=RunRecord(run_id="e", status="finished", kind="evaluation", method="deftx"))
    result = ResultRecord(task="nusax-senti", language="ace", split="test", system="deftx", metric="macro_f1", metrics={
        "macro_f1": 0.183, "n": 400, "prediction_shares": shares, "collapsed_classes": ["negative"]})
    row = describe_run(info, RunProgress(), 0.0, alive=always_alive, result=result)
    assert row.warning and any("ace test" in d and "'negative'" in d and "of 400" in d for d in row.details)
    # every class predicted: no warning
    fine = result.model_copy(update={"metrics": {"macro_f1": 0.6, "prediction_shares": {"a": 0.5, "b": 0.5},
                                                 "collapsed_classes": []}})
    row = describe_run(info, RunProgress(), 0.0, alive=always_alive, result=fine)
    assert not row.warning and not any(d.startswith("warning:") for d in row.details)


def test_a_multi_source_task_sft_shows_its_sources_and_the_source_of_the_batch_in_training(tmp_path):
    events = F.train_events(1, 100, 1000.0, 1.0, upto=40)
    for i, event in enumerate(e for e in events if e.get("event") == "train"):
        event["source"] = ["ind", "jav", "sun"][i % 3]
    last = [e["source"] for e in events if e.get("event") == "train"][-1]
    path = F.write_run(tmp_path, "20261207-030000-task-lt-sft-ind_jav_sun", kind="task", method="lt-sft",
                       languages={"source": "ind+jav+sun"}, task="nusax-senti", status="running", started=1000.0,
                       total_steps={"phase1": 100, "phase2": 100}, events=events)
    progress = RunProgress()
    progress.update(read_metrics(path / "metrics.jsonl"))
    row = describe_run(read_run(path), progress, 1045.0, alive=always_alive)
    assert f"sources: ind, jav, sun; batch from {last}" in row.details
    single = F.write_run(tmp_path, "20261207-030000-task-lt-sft-ind", kind="task", method="lt-sft",
                         languages={"source": "ind"}, task="smsa", status="running", started=1000.0,
                         events=F.train_events(1, 100, 1000.0, 1.0, upto=40))
    assert not any("sources" in d for d in describe_run(read_run(single), RunProgress(), 1045.0).details)
