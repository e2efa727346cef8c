"""The readers the worker threads call: incremental, tolerant of half-written and broken files."""

from __future__ import annotations

import json
import shutil

import tui_fixtures as F

from deftx_cli.tui.watch import RunFollower, RunsScanner, read_results_safely


def test_scanner_lists_every_run_and_follows_growth(tmp_path):
    runs = F.make_runs_dir(tmp_path)
    scanner = RunsScanner(runs, F.clock)
    rows = {row.key: row for row in scanner.scan()}
    assert len(rows) == 9 + 27 + 2
    assert rows[F.CORRUPT_ID].status == "unreadable"
    assert rows[F.BAD_LINES_ID].warning and "2 lines not events" in rows[F.BAD_LINES_ID].details[0]
    assert rows[F.RUNNING_ID].step == "200/400"

    metrics = runs / F.RUNNING_ID / "metrics.jsonl"
    # complete the half-written line; it is read now, with the steps after it
    F.append(metrics, 'ep": 205, "loss": 1.2}\n' + F.line({"time": F.at("10:27:50"), "event": "train", "phase": 2,
                                                                 "step": 210, "total_steps": 400, "loss": 1.1}))
    rows = {row.key: row for row in scanner.scan()}
    assert rows[F.RUNNING_ID].step == "210/400" and rows[F.RUNNING_ID].loss == "1.1"

    # a new run appears; a deleted one goes
    F.training_run(runs, "20261125-102900-language-lt-sft-min", kind="language", method="lt-sft", lang="min",
                   start=F.at("10:29:00"), status="running", upto_phase2=0)
    shutil.rmtree(runs / "20261125-083000-language-lt-sft-ace")
    keys = [row.key for row in scanner.scan()]
    assert keys[0] == "20261125-102900-language-lt-sft-min"
    assert "20261125-083000-language-lt-sft-ace" not in keys


def test_scanner_on_a_missing_runs_dir_is_empty(tmp_path):
    assert RunsScanner(tmp_path / "nowhere", F.clock).scan() == []


def test_follower_reads_only_new_complete_lines(tmp_path):
    runs = F.make_runs_dir(tmp_path, evaluations=False)
    path = runs / F.RUNNING_ID
    follower = RunFollower(path, F.clock)
    first = follower.poll()
    assert first.info is not None and first.info.status == "running"
    assert first.batch is not None and first.batch.events == 40 + 1 + 1 + 20 + 1
    complete = len((path / "metrics.jsonl").read_bytes().rsplit(b"\n", 1)[0]) + 1
    assert follower._tracked.tail.offset == complete  # the half-written line is held back

    again = follower.poll()
    assert again.info is None and again.batch is None  # nothing changed: nothing re-read

    F.append(path / "metrics.jsonl", 'ep": 205, "loss": 1.2}\n')
    third = follower.poll()
    assert third.batch is not None and third.batch.events == 1
    assert third.batch.curve(2, "loss").values == [1.2]

    record = json.loads((path / "run.json").read_text())
    record["status"] = "finished"
    (path / "run.json").write_text(json.dumps(record))
    fourth = follower.poll()
    assert fourth.info is not None and fourth.row.status == "finished"


def test_follower_survives_a_run_dir_that_disappears(tmp_path):
    runs = F.make_runs_dir(tmp_path, evaluations=False)
    follower = RunFollower(runs / F.RUNNING_ID, F.clock)
    follower.poll()
    shutil.rmtree(runs / F.RUNNING_ID)
    update = follower.poll()
    assert update.row.status == "unreadable" and "missing" in update.row.details[0]


def test_follower_reads_an_evaluation_result(tmp_path):
    runs = tmp_path / "runs"
    (path,) = [p for p in F.evaluation_runs(runs, second_task=False) if p.name.endswith("deftx-ace-s0")]
    update = RunFollower(path, F.clock).poll()
    assert update.result is not None and update.result.system == "deftx"
    assert update.row.best.startswith("F1 0.671")
    (path / "results.json").write_text("{broken")
    update = RunFollower(path, F.clock).poll()
    assert update.result is None and update.row.warning
    assert any("results.json is not valid JSON" in d for d in update.row.details)


def test_bytes_that_are_not_utf8_make_one_run_unreadable_not_all(tmp_path):
    runs = F.make_runs_dir(tmp_path)
    bad = runs / "20261125-110000-binary"
    bad.mkdir()
    (bad / "run.json").write_bytes(b"\xff\xfe\x00{garbage")
    (runs / "20261124-120100-evaluation-lt-sft-ace-s0" / "results.json").write_bytes(b"\xff\xfe\x00")
    rows = {row.key: row for row in RunsScanner(runs, F.clock).scan()}
    assert len(rows) == 9 + 27 + 2 + 1
    assert rows["20261125-110000-binary"].status == "unreadable"
    assert rows["20261125-110000-binary"].details == ("unreadable: run.json is not UTF-8 text",)
    assert rows[F.RUNNING_ID].status == "running"
    assert "results.json is not UTF-8 text" in rows["20261124-120100-evaluation-lt-sft-ace-s0"].details

    records, unreadable = read_results_safely(runs)
    assert len(records) == 27 + 2 - 1
    assert unreadable == ["20261124-120100-evaluation-lt-sft-ace-s0: results.json is not UTF-8 text"]
    assert RunFollower(bad, F.clock).poll().row.status == "unreadable"


def test_big_files_are_read_in_bounded_chunks_and_rows_show_it(tmp_path, monkeypatch):
    from deftx_cli.tui import watch

    monkeypatch.setattr(watch, "SCAN_CHUNK", 4000)
    monkeypatch.setattr(watch, "SCAN_BUDGET", 6000)
    runs = F.make_runs_dir(tmp_path, evaluations=False)
    scanner = RunsScanner(runs, F.clock)
    rows = {row.key: row for row in scanner.scan()}
    assert scanner.behind
    running = rows[F.RUNNING_ID]
    assert running.step.endswith("…") and any(d.startswith("reading metrics.jsonl: ") for d in running.details)
    for _ in range(40):
        if not scanner.behind:
            break
        rows = {row.key: row for row in scanner.scan()}
    assert not scanner.behind
    assert rows[F.RUNNING_ID].step == "200/400" and rows[F.RUNNING_ID].eta == "1m50s"
    assert not any(d.startswith("reading") for row in rows.values() for d in row.details)


def test_follower_reads_a_big_file_chunk_by_chunk(tmp_path, monkeypatch):
    from deftx_cli.tui import watch

    monkeypatch.setattr(watch, "FOLLOW_CHUNK", 100_000)
    path = tmp_path / "runs" / "big"
    F.write_run(tmp_path / "runs", "big", kind="language", method="lt-sft", languages={"target": "ace"},
                started=F.at("00:00:00"), ended=F.at("01:00:00"))
    F.big_metrics_file(path / "metrics.jsonl", 5000)
    follower = RunFollower(path, F.clock)
    events, polls = 0, 0
    while True:
        update = follower.poll()
        polls += 1
        events += update.batch.events if update.batch else 0
        if not update.behind:
            break
    assert events == 5000 and polls > 3


def test_a_resumed_run_is_shown_as_such_and_its_curve_has_no_duplicate(tmp_path):
    from deftx.records.files import truncate_metrics

    events = F.train_events(1, 400, F.at("10:00:00"), 1.0, upto=60)  # steps 10, 20, ..., 60
    path = F.write_run(tmp_path, "lang-run", kind="language", method="deftx", languages={"target": "ace"},
                       status="running", started=F.at("10:00:00"), total_steps={"phase1": 400, "phase2": 400},
                       events=events)
    follower = RunFollower(path, F.clock)
    assert follower.poll().batch.curve(1, "loss").steps == [10, 20, 30, 40, 50, 60]

    # killed after step 60; resumed from its checkpoint at step 40: the lines after it are cut, and
    # the resumed attempt writes steps 50, 60, 70 again, past the old size of the file
    metrics = path / "metrics.jsonl"
    offset = len("".join(F.line(e) for e in events[:5]).encode())  # the phase line, steps 10 to 40
    assert truncate_metrics(metrics, offset) == 2
    record = json.loads((path / "run.json").read_text())
    record["resumptions"] = [{"phase": 1, "step": 40, "checkpoint": "phase1-step000000040"}]
    (path / "run.json").write_text(json.dumps(record))
    F.append(metrics, "".join(F.line({**e, "loss": 0.5}) for e in F.train_events(1, 400, F.at("10:05:00"), 1.0, upto=70)[5:]))

    update = follower.poll()
    assert update.restarted and "resumed at phase 1 step 40" in update.row.details
    assert update.batch.curve(1, "loss").steps == [10, 20, 30, 40, 50, 60, 70]
    assert update.batch.curve(1, "loss").values[4:] == [0.5, 0.5, 0.5]
    assert follower.progress.step == 70 and update.row.step == "70/400"
    [row] = RunsScanner(tmp_path, F.clock).scan()
    assert "resumed at phase 1 step 40" in row.details
