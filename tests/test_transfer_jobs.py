"""Steps side by side (``deftx transfer --jobs``): which steps may start, and running them in workers.

The workers run module-level stand-ins for a step (they travel to a spawned process by name); the
end-to-end runs with a tiny model are in tests/test_cli.py.
"""

import dataclasses
import json
import random
import time
from pathlib import Path

import pytest

from deftx.errors import DataFormatError, DeftxError, TrainingTerminated
from deftx.records.reading import read_experiment
from deftx.experiment.scheduler import StepError, StepSchedule, dependencies
from deftx.experiment.plan import TransferPlan, plan_steps
from deftx.experiment.executor import execute


def plan(**kw):
    kw.setdefault("targets", ["ace"])
    kw.setdefault("preset", "smoke")
    kw.setdefault("methods", ["lt-sft", "deftx"])
    kw.setdefault("baselines", ["no-lang-sft", "full-ft"])
    return TransferPlan(task="nusax-senti", **kw)


def steps_of(p, tmp_path):
    return plan_steps(p, model="m", runs_dir=tmp_path)


def labels(steps, indices):
    return [steps[i].label for i in indices]


# ------------------------------------------------------------------------------ the schedule (pure)


def test_first_ready_are_the_steps_that_need_nothing_in_plan_order(tmp_path):
    steps = steps_of(plan(), tmp_path)
    schedule = StepSchedule(steps)
    assert labels(steps, schedule.ready()) == [
        "[seed 0] language SFT ind (LT-SFT)", "[seed 0] language SFT ace (LT-SFT)", "[seed 0] task SFT smsa/ind (full FT)"]
    assert labels(steps, schedule.next(2)) == ["[seed 0] language SFT ind (LT-SFT)", "[seed 0] language SFT ace (LT-SFT)"]
    assert labels(steps, schedule.next(2)) == ["[seed 0] task SFT smsa/ind (full FT)"]
    assert schedule.next(2) == []  # everything else waits for a running step


def test_a_finished_step_releases_the_steps_that_name_it(tmp_path):
    steps = steps_of(plan(), tmp_path)
    by = {s.label: i for i, s in enumerate(steps)}
    schedule = StepSchedule(steps)
    schedule.next(3)
    schedule.finish(by["[seed 0] language SFT ind (LT-SFT)"])
    # DeFT-X's ind SFT selects its mask from LT-SFT's phase-1 difference; the LT-SFT task SFT applies the ind SFT
    assert labels(steps, schedule.ready()) == ["[seed 0] language SFT ind (DeFT-X)", "[seed 0] task SFT smsa/ind (LT-SFT)"]
    schedule.finish(by["[seed 0] task SFT smsa/ind (full FT)"])
    assert "[seed 0] nusax-senti/ace full-ft" in labels(steps, schedule.ready())
    assert "[seed 0] nusax-senti/ace lt-sft" not in labels(steps, schedule.ready())  # needs ace's SFT and the task SFT


def test_the_control_evaluation_waits_for_the_other_languages_sft(tmp_path):
    steps = steps_of(plan(control_lang="jav"), tmp_path)
    control = next(s for s in steps if s.system == "other-lang-sft")
    jav = next(s for s in steps if s.kind == "language" and s.language == "jav")
    assert jav.run_id in dependencies(control)
    schedule = StepSchedule(steps)
    for step in steps:  # everything but jav's language SFT has finished
        if step is not jav and step is not control:
            schedule.finished.add(step.run_id)
    assert control not in [steps[i] for i in schedule.ready()]
    schedule.finished.add(jav.run_id)
    assert control in [steps[i] for i in schedule.ready()]


def test_cached_steps_count_as_finished(tmp_path):
    steps = steps_of(plan(), tmp_path)
    for step in steps:
        step.cached = step.kind == "language"
    schedule = StepSchedule(steps)
    assert {steps[i].kind for i in schedule.ready()} == {"task"}
    assert not any(steps[i].cached for i in schedule.waiting)


@pytest.mark.parametrize("seed", range(5))
def test_any_finishing_order_starts_each_step_once_after_what_it_needs(tmp_path, seed):
    steps = steps_of(plan(seeds=[0, 1], lang_seed=0, targets=["ace", "mad"]), tmp_path)
    rng = random.Random(seed)
    schedule, started, finished = StepSchedule(steps), [], set()
    while not schedule.done:
        for i in schedule.next(3 - len(schedule.running)):
            assert dependencies(steps[i]) <= finished, steps[i].label
            started.append(i)
        i = rng.choice(schedule.running)
        schedule.finish(i)
        finished.add(steps[i].run_id)
    assert sorted(started) == list(range(len(steps)))


def test_after_a_failure_nothing_new_starts(tmp_path):
    steps = steps_of(plan(), tmp_path)
    schedule = StepSchedule(steps)
    first, second = schedule.next(2)
    schedule.fail(first)
    assert schedule.next(2) == [] and not schedule.done
    schedule.finish(second)
    assert schedule.done


def test_a_worker_error_becomes_one_error_with_its_exit_code():
    error = StepError.of(DataFormatError("no text in mad.txt", hint="give a file"))
    raised = error.to_exception("[seed 0] language SFT mad (LT-SFT)")
    assert isinstance(raised, DeftxError) and raised.exit_code == 4 and raised.hint == "give a file"
    assert str(raised) == "[seed 0] language SFT mad (LT-SFT): no text in mad.txt"
    bug = StepError.of(ZeroDivisionError("division by zero")).to_exception("x")
    assert bug.exit_code == 1 and "internal error: ZeroDivisionError" in str(bug)
    stopped = StepError.of(TrainingTerminated("terminated (SIGTERM) at phase 1 step 3; checkpoint saved"))
    assert stopped.stopped and isinstance(stopped.to_exception("x"), TrainingTerminated)


# ------------------------------------------------------------------------------ in worker processes


def _result(step):
    return {"metric": "macro_f1", "metrics": {"macro_f1": len(step.run_id) / 100}, "system": step.system,
            "language": step.language, "run_id": step.run_id}


def fake_step(plan, step, *, runs_dir, notify, callbacks, **_):
    """A step that checks that what it needs has finished, then writes what marks it finished."""
    import torch

    for run_id in dependencies(step):
        assert (runs_dir / run_id / "done").exists(), f"{step.label} started before {run_id} finished"
    notify(f"{step.label}: training")
    for callback in callbacks:
        callback("train", {"step": 1, "total_steps": 1})
    time.sleep(0.05)
    (runs_dir / step.run_id).mkdir(parents=True, exist_ok=True)
    (runs_dir / step.run_id / "done").write_text(json.dumps({"threads": torch.get_num_threads()}))
    return _result(step) if step.kind == "evaluation" else None


def failing_step(plan, step, *, runs_dir, **kw):
    if step.label == "[seed 0] language SFT ace (LT-SFT)":
        raise DataFormatError("no unlabelled text for ace", hint="give a text file")
    return fake_step(plan, step, runs_dir=runs_dir, **kw)


@pytest.mark.slow
def test_two_jobs_run_every_step_after_its_dependencies_and_return_the_same_records(tmp_path):
    p = plan()
    one, two = tmp_path / "one", tmp_path / "two"
    sequential = execute(p, steps_of(p, one), model="m", data_dir=None, runs_dir=one, run_step=fake_step)
    notes, events = [], []
    steps = steps_of(p, two)
    parallel = execute(p, steps, model="m", data_dir=None, runs_dir=two, run_step=fake_step, jobs=2, threads=1,
                       notify=notes.append, callbacks_for=lambda label: [lambda e, f: events.append((label, e))])
    assert [r["metrics"] for r in parallel] == [r["metrics"] for r in sequential]
    assert [r["system"] for r in parallel] == [r["system"] for r in sequential]
    assert all(json.loads((two / s.run_id / "done").read_text())["threads"] == 1 for s in steps)
    started = [n for n in notes if " started: " in n]
    assert len(started) == len(steps) and started[0].startswith(f"step 1 of {len(steps)} started: {steps[0].label} (")
    assert len([n for n in notes if " finished in " in n]) == len(steps)
    assert any("(2 running" in n for n in started), "two steps ran side by side"
    assert sum(n.endswith(": training") for n in notes) == len(steps), "the workers' lines reach notify"
    assert sorted(events) == sorted((s.label, "train") for s in steps), "training events reach callbacks_for"
    record = read_experiment(two)
    assert record.status == "finished" and record.finished == len(steps)


@pytest.mark.slow
def test_a_failing_step_stops_new_starts_and_raises_its_error(tmp_path):
    p = plan()
    steps = steps_of(p, tmp_path)
    notes = []
    with pytest.raises(DeftxError) as caught:
        execute(p, steps, model="m", data_dir=None, runs_dir=tmp_path, run_step=failing_step, jobs=2, threads=1,
                notify=notes.append)
    assert caught.value.exit_code == 4
    assert str(caught.value) == "[seed 0] language SFT ace (LT-SFT): no unlabelled text for ace"
    assert any(n.startswith("step 3 of") and "failed: [seed 0] language SFT ace (LT-SFT)" in n for n in notes), notes
    ran = {s.label for s in steps if (tmp_path / s.run_id / "done").exists()}
    assert "[seed 0] language SFT ind (LT-SFT)" in ran  # it ran beside the failing step, and finished
    assert not any(s.kind == "evaluation" for s in steps if s.label in ran)
    assert read_experiment(tmp_path).status == "failed"


def test_jobs_and_threads_are_checked(tmp_path):
    p = plan()
    with pytest.raises(DeftxError, match="jobs"):
        execute(p, steps_of(p, tmp_path), model="m", data_dir=None, runs_dir=tmp_path, run_step=fake_step, jobs=0)
    assert not Path(tmp_path / "experiment.json").exists()


def test_the_dashboard_line_names_the_steps_running_side_by_side(tmp_path):
    from deftx.records.runs import ExperimentLog
    from deftx_cli.text import experiment_text

    log = ExperimentLog(tmp_path, [{"label": f"step {i}"} for i in range(9)])
    log.running([3, 5], ["[seed 0] language SFT ace (LT-SFT)", "[seed 0] task SFT smsa/ind (full FT)"], 2, 600.0)
    record = read_experiment(tmp_path)
    now = record.step_started + 60
    assert experiment_text(record, now=now) == ("Experiment: 2 of 9 steps done · 2 running: [seed 0] language SFT ace "
                                                "(LT-SFT); [seed 0] task SFT smsa/ind (full FT) · about 9m00s left")
    log.running([5], ["[seed 0] task SFT smsa/ind (full FT)"], 3, None)
    assert experiment_text(read_experiment(tmp_path), now=now) == (
        "Experiment: step 5 of 9 · [seed 0] task SFT smsa/ind (full FT)")


def test_steps_that_more_steps_wait_for_start_first(tmp_path):
    # Five targets and a control: once every LT-SFT language SFT is done, the LT-SFT task SFT (which 15
    # evaluations wait for) starts before the DeFT-X language SFTs of the targets (one evaluation each).
    steps = steps_of(plan(targets=["ace", "ban", "bjn", "mad", "min"], control_lang="jav"), tmp_path)
    schedule = StepSchedule(steps)
    started = schedule.next(len(steps))
    assert all(steps[i].kind == "language" or "full FT" in steps[i].label for i in started)
    for i in started:
        if "(LT-SFT)" in steps[i].label:
            schedule.finish(i)
    ready = labels(steps, schedule.next(2))
    assert ready == ["[seed 0] task SFT smsa/ind (LT-SFT)", "[seed 0] language SFT ind (DeFT-X)"]
    assert labels(steps, schedule.ready())[0] == "[seed 0] language SFT ace (DeFT-X)"  # then plan order


# ------------------------------------------------------------------------------ the default number of jobs


def test_the_default_jobs_follow_the_cores_the_plan_and_the_memory(tmp_path, monkeypatch):
    from deftx.experiment import scheduler

    steps = steps_of(plan(), tmp_path)
    width = scheduler.plan_width(steps)
    # First the LT-SFT language SFTs of ind and ace and the full-FT task SFT (3 at once); then 4: the DeFT-X
    # language SFTs (their masks from LT-SFT's phase 1), the LT-SFT task SFT and the full-FT evaluation.
    first = [s for s in steps if not s.after]
    assert len(first) == 3 and width == 4
    assert scheduler.plan_width([s for s in steps if s.kind == "evaluation"]) == len(
        [s for s in steps if s.kind == "evaluation"])  # nothing they wait for is still to run
    monkeypatch.setattr(scheduler, "available_memory", lambda: 64 << 30)
    for cpus, expected in ((1, 1), (2, 2), (16, 4)):  # a job per core, at most the plan's width
        monkeypatch.setattr(scheduler, "available_cpus", lambda cpus=cpus: cpus)
        assert scheduler.default_jobs(steps, cuda=False) == expected
    assert scheduler.default_jobs(steps, cuda=True) == 1
    monkeypatch.setattr(scheduler, "available_memory", lambda: 4 << 30)  # room for one job of 3 GB
    assert scheduler.default_jobs(steps, cuda=False) == 1
    cached = [dataclasses.replace(s, cached=True) for s in steps]
    assert scheduler.plan_width(cached) == 0 and scheduler.default_jobs(cached, cuda=False) == 1
    monkeypatch.setattr(scheduler, "available_cpus", lambda: 4)
    assert scheduler.default_threads(2) == 2 and scheduler.default_threads(8) == 1


def test_transfer_runs_a_job_per_core_but_one_for_a_smoke_plan(tmp_path, monkeypatch):
    from deftx.experiment import executor, scheduler

    monkeypatch.setattr(scheduler, "available_memory", lambda: 64 << 30)
    monkeypatch.setattr(executor.torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(scheduler, "available_cpus", lambda: 2)
    assert executor.choose_jobs(steps_of(plan(preset="quick"), tmp_path)) == (2, 1)
    assert executor.choose_jobs(steps_of(plan(preset="quick"), tmp_path), threads=3) == (2, 3)
    assert executor.choose_jobs(steps_of(plan(preset="smoke"), tmp_path)) == (1, 2)
