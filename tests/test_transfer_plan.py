"""The transfer planner and executor without training: which steps run, which come from the cache."""

import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from deftx.errors import DeftxError
from deftx.experiment.plan import TransferPlan, plan_steps
from deftx.experiment.executor import execute

RUNS = Path("runs")


@dataclass
class FakeRuns:
    """The runs directory as the planner sees it: finished runs, and kept phase-1 differences."""

    done: set[str] = field(default_factory=set)
    diffs: set[str] = field(default_factory=set)

    def finished(self, run_id, needs):
        return run_id in self.done

    def has_phase1_diff(self, run_id):
        return run_id in self.diffs


def plan(**kw):
    kw.setdefault("targets", ["ace"])
    kw.setdefault("preset", "smoke")
    kw.setdefault("baselines", [])
    return TransferPlan(task="nusax-senti", **kw)


def steps_of(p, runs=None):
    return plan_steps(p, model="m", runs_dir=RUNS, state=runs or FakeRuns())


def by_label(steps):
    return {s.label: s for s in steps}


def all_done(steps, diffs=True):
    return FakeRuns(done={s.run_id for s in steps},
                    diffs={s.run_id for s in steps if s.keep_phase1_diff} if diffs else set())


def test_a_fresh_experiment_shares_phase_one_and_runs_every_step():
    steps = steps_of(plan(methods=["lt-sft", "deftx"], baselines=["no-lang-sft", "full-ft"]))
    assert [s.kind for s in steps] == ["language"] * 4 + ["task"] * 3 + ["evaluation"] * 4
    assert not any(s.cached for s in steps)
    s = by_label(steps)
    lt, dx = s["[seed 0] language SFT ace (LT-SFT)"], s["[seed 0] language SFT ace (DeFT-X)"]
    assert lt.keep_phase1_diff and lt.mask_from is None
    assert dx.mask_from == lt.run_id and not dx.keep_phase1_diff
    assert s["[seed 0] task SFT smsa/ind (DeFT-X)"].lang_sft == s["[seed 0] language SFT ind (DeFT-X)"].run_id
    assert s["[seed 0] task SFT smsa/ind (full FT)"].lang_sft is None
    no_lang = s["[seed 0] nusax-senti/ace no-lang-sft"]
    assert no_lang.lang_sft is None and no_lang.task_sft == s["[seed 0] task SFT smsa/ind (LT-SFT)"].run_id
    assert len({s.run_id for s in steps}) == len(steps)


def test_one_method_keeps_no_phase_one_difference():
    steps = steps_of(plan(methods=["lt-sft"]))
    assert not any(s.keep_phase1_diff or s.mask_from for s in steps)


def test_a_method_added_later_trains_phase_one_itself_when_no_difference_was_kept():
    before = steps_of(plan(methods=["lt-sft"]))
    after = steps_of(plan(methods=["lt-sft", "deftx"]), all_done(before, diffs=False))
    s = by_label(after)
    assert s["[seed 0] language SFT ace (LT-SFT)"].cached and s["[seed 0] language SFT ind (LT-SFT)"].cached
    assert s["[seed 0] language SFT ace (LT-SFT)"].run_id == by_label(before)["[seed 0] language SFT ace (LT-SFT)"].run_id
    dx = s["[seed 0] language SFT ace (DeFT-X)"]
    assert not dx.cached and dx.mask_from is None


def test_a_kept_phase_one_difference_is_shared_by_the_next_method():
    first = steps_of(plan(methods=["lt-sft", "deftx"]))
    runs = all_done(first)
    for step in first:  # only the LT-SFT language SFTs (and their differences) survived
        if "LT-SFT" not in step.label or step.kind != "language":
            runs.done.discard(step.run_id)
    again = by_label(steps_of(plan(methods=["lt-sft", "deftx"]), runs))
    lt = again["[seed 0] language SFT ace (LT-SFT)"]
    assert lt.cached and again["[seed 0] language SFT ace (DeFT-X)"].mask_from == lt.run_id


def test_seeds_added_later_reuse_the_first_seeds_steps():
    one = steps_of(plan(methods=["lt-sft", "deftx"], seeds=[0]))
    two = steps_of(plan(methods=["lt-sft", "deftx"], seeds=[0, 1]), all_done(one))
    assert [s.run_id for s in two if s.seed == 0] == [s.run_id for s in one]
    assert all(s.cached for s in two if s.seed == 0) and not any(s.cached for s in two if s.seed == 1)


def test_a_shared_language_seed_trains_each_language_sft_once():
    steps = steps_of(plan(methods=["lt-sft", "deftx"], seeds=[0, 1, 2], lang_seed=0))
    assert len([s for s in steps if s.kind == "language"]) == 4
    assert len([s for s in steps if s.kind == "task"]) == 6
    assert {s.seed for s in steps if s.kind == "language"} == {0}


def test_a_deftx_only_setting_changes_only_deftx_steps():
    base = plan(methods=["lt-sft", "deftx"], baselines=["no-lang-sft", "full-ft"])
    ablation = plan(methods=["lt-sft", "deftx"], baselines=["no-lang-sft", "full-ft"],
                    lang_overrides={"rank_rule": "energy:0.5"}, task_overrides={"rank_rule": "energy:0.5"})
    a, b = by_label(steps_of(base)), by_label(steps_of(ablation))
    for label in a:
        same = a[label].run_id == b[label].run_id
        assert same == ("DeFT-X" not in label and "deftx" not in label), label


def test_a_setting_every_method_reads_changes_every_step():
    a = steps_of(plan(methods=["lt-sft", "deftx"]))
    b = steps_of(plan(methods=["lt-sft", "deftx"], lang_overrides={"k": 0.01}))
    assert not {s.run_id for s in a} & {s.run_id for s in b}


@pytest.mark.parametrize("change,needle", [
    (dict(methods=["lt-sft", "full-ft"]), "methods"),
    (dict(methods=["lt-sfts"]), "methods"),
    (dict(baselines=["no-lang"]), "baseline"),
    (dict(split="dev"), "split"),
])
def test_unknown_names_are_refused_before_anything_runs(change, needle):
    with pytest.raises(DeftxError, match=needle):
        steps_of(plan(**change))


def test_the_executor_clears_what_a_failed_step_left_and_reports_progress(tmp_path):
    p = plan(methods=["lt-sft", "deftx"])
    steps = plan_steps(p, model="m", runs_dir=tmp_path)
    dx = next(s for s in steps if s.label == "[seed 0] language SFT ace (DeFT-X)")
    leftover_mask = tmp_path / f".mask-{dx.run_id}.safetensors"
    leftover_mask.write_bytes(b"half a mask")
    (tmp_path / dx.run_id).mkdir()
    (tmp_path / dx.run_id / "metrics.jsonl").write_text('{"event": "phase"}\n')
    seen, progress = [], []

    def fake_step(plan, step, *, runs_dir, **_):
        assert not (runs_dir / step.run_id).exists() and not (runs_dir / f".mask-{step.run_id}.safetensors").exists()
        seen.append(step.run_id)
        if step.kind == "evaluation":
            return {"metric": "macro_f1", "metrics": {"macro_f1": 0.5}, "system": step.system, "language": step.language}
        return None

    records = execute(p, steps, model="m", data_dir=None, runs_dir=tmp_path, run_step=fake_step,
                      on_step=lambda i, n, step, eta: progress.append((i, n, step.label, eta)))
    assert seen == [s.run_id for s in steps] and not leftover_mask.exists()
    assert [(i, n) for i, n, _, _ in progress] == [(i + 1, len(steps)) for i in range(len(steps))]
    assert progress[0][3] is None and all(eta is not None and eta >= 0 for *_, eta in progress[1:])
    assert [r["system"] for r in records] == ["lt-sft", "deftx"]


def test_the_executor_reads_cached_results_and_skips_cached_steps(tmp_path):
    p = plan(methods=["lt-sft"])
    steps = plan_steps(p, model="m", runs_dir=tmp_path, state=FakeRuns())
    for step in steps:
        step.cached = True
        if step.kind == "evaluation":
            (tmp_path / step.run_id).mkdir()
            (tmp_path / step.run_id / "results.json").write_text(json.dumps({"system": step.system}))

    def must_not_run(*args, **kwargs):
        raise AssertionError("a cached step ran")

    assert execute(p, steps, model="m", data_dir=None, runs_dir=tmp_path, run_step=must_not_run) == [{"system": "lt-sft"}]


def test_the_executor_resumes_a_training_step_that_checkpointed(tmp_path):
    p = plan(methods=["lt-sft"])
    steps = plan_steps(p, model="m", runs_dir=tmp_path)
    first = steps[0]
    (tmp_path / first.run_id).mkdir()
    (tmp_path / first.run_id / "run.json").write_text(json.dumps(
        {"run_id": first.run_id, "status": "interrupted", "resume_settings": {"save_every": 2}}))
    (tmp_path / f".mask-{first.run_id}.safetensors").write_bytes(b"stale")
    calls = {}

    def fake_step(plan, step, *, runs_dir, resume, **_):
        calls[step.run_id] = (resume, (runs_dir / step.run_id / "run.json").exists())
        if step.kind == "evaluation":
            return {"metric": "macro_f1", "metrics": {"macro_f1": 0.5}, "system": step.system}
        return None

    execute(p, steps, model="m", data_dir=None, runs_dir=tmp_path, run_step=fake_step)
    assert calls[first.run_id] == (True, True), "the checkpointed run is continued in place"
    assert not (tmp_path / f".mask-{first.run_id}.safetensors").exists()
    assert all(resume is False for run_id, (resume, _) in calls.items() if run_id != first.run_id)


def test_the_executor_records_the_experiment_for_the_dashboard(tmp_path):
    from deftx.records.reading import read_experiment

    p = plan(methods=["lt-sft"])
    steps = plan_steps(p, model="m", runs_dir=tmp_path)
    seen = []

    def fake_step(plan, step, *, runs_dir, **_):
        record = read_experiment(runs_dir)
        seen.append((record.status, record.index, record.step_label, record.total))
        if step.kind == "evaluation":
            return {"metric": "macro_f1", "metrics": {"macro_f1": 0.5}, "system": step.system}
        return None

    execute(p, steps, model="m", data_dir=None, runs_dir=tmp_path, run_step=fake_step)
    assert seen == [("running", i + 1, s.label, len(steps)) for i, s in enumerate(steps)]
    final = read_experiment(tmp_path)
    assert final.status == "finished" and final.eta_seconds is None
    assert [s.run_id for s in final.steps] == [s.run_id for s in steps]


@pytest.mark.parametrize("error, status", [(RuntimeError("boom"), "failed"), (KeyboardInterrupt(), "interrupted")])
def test_a_stopped_experiment_is_recorded_as_such(tmp_path, error, status):
    from deftx.records.reading import read_experiment

    p = plan(methods=["lt-sft"])
    steps = plan_steps(p, model="m", runs_dir=tmp_path)

    def fails_at_the_second(plan, step, **_):
        if step is steps[1]:
            raise error
        return None

    with pytest.raises(type(error)):
        execute(p, steps, model="m", data_dir=None, runs_dir=tmp_path, run_step=fails_at_the_second)
    record = read_experiment(tmp_path)
    assert record.status == status and record.index == 2 and record.step_label == steps[1].label


def test_the_time_left_follows_the_planned_optimizer_steps_of_each_training():
    from deftx.experiment.executor import EVALUATION_AS_TRAIN_STEPS, _Pace, train_steps

    p = plan(methods=["lt-sft", "deftx"], task_overrides={"phase1_steps": 40, "phase2_steps": 60})
    steps = steps_of(p)
    s = by_label(steps)
    lt, dx = s["[seed 0] language SFT ind (LT-SFT)"], s["[seed 0] language SFT ind (DeFT-X)"]
    task = s["[seed 0] task SFT smsa/ind (LT-SFT)"]
    assert (train_steps(lt), train_steps(dx), train_steps(task)) == (8, 4, 100)  # smoke: 4 + 4; DeFT-X phase 2 only
    pace = _Pace()
    assert pace.eta(steps, 0) is None
    pace.add(lt, 16.0)  # 2 s per optimizer step
    evaluations = [x for x in steps if x.kind == "evaluation"]
    expected = 2.0 * sum(train_steps(x) for x in steps[1:] if x.kind != "evaluation") \
        + 2.0 * EVALUATION_AS_TRAIN_STEPS * len(evaluations)
    assert pace.eta(steps, 1) == expected
    pace.add(evaluations[0], 3.0)  # once an evaluation has run, its own time counts
    assert pace.eta(steps, len(steps) - 1) == 3.0


def test_an_epoch_budget_over_every_example_has_no_planned_size():
    from deftx.experiment.executor import train_steps

    p = plan(methods=["lt-sft"], task_overrides={"phase1_epochs": 1.0, "phase2_epochs": 1.0, "max_examples": 0})
    task = next(x for x in steps_of(p) if x.kind == "task")
    assert train_steps(task) is None
    p = plan(methods=["lt-sft"], task_overrides={"phase1_epochs": 1.0, "phase2_epochs": 0.5, "max_examples": 320})
    task = next(x for x in steps_of(p) if x.kind == "task")
    assert train_steps(task) == 320 // 4 + 320 // 4 // 2  # smoke batch 4


def test_dense_fine_tuning_plans_phase_one_only():
    from deftx.experiment.executor import train_steps

    p = plan(methods=["lt-sft"], baselines=["full-ft"], task_overrides={"phase1_steps": 40, "phase2_steps": 60})
    tasks = {s.label: s for s in steps_of(p) if s.kind == "task"}
    assert train_steps(tasks["[seed 0] task SFT smsa/ind (full FT)"]) == 40
    assert train_steps(tasks["[seed 0] task SFT smsa/ind (LT-SFT)"]) == 100


def test_the_control_trains_one_language_sft_and_evaluates_every_other_target_with_it():
    steps = steps_of(plan(targets=["ace", "mad"], methods=["lt-sft", "deftx"], baselines=["no-lang-sft"],
                          control_lang="jav"))
    s = by_label(steps)
    jav = s["[seed 0] language SFT jav (LT-SFT) (control)"]
    assert [x for x in steps if x.kind == "language" and x.language == "jav"] == [jav]  # the first method only
    assert not jav.keep_phase1_diff and jav.mask_from is None
    assert steps.index(jav) < min(steps.index(x) for x in steps if x.kind == "task")
    lt_task = s["[seed 0] task SFT smsa/ind (LT-SFT)"].run_id
    for target in ("ace", "mad"):
        control = s[f"[seed 0] nusax-senti/{target} other-lang-sft (jav SFT)"]
        assert (control.system, control.language, control.task_sft, control.lang_sft, control.control_lang) == (
            "other-lang-sft", target, lt_task, jav.run_id, "jav")
        systems = [x.system for x in steps if x.kind == "evaluation" and x.language == target]
        assert systems == ["lt-sft", "deftx", "no-lang-sft", "other-lang-sft"]
    assert len({x.run_id for x in steps}) == len(steps)
    # the control SFT is the one a target of the same settings trains: run once, reused by both
    as_target = by_label(steps_of(plan(targets=["jav"], methods=["lt-sft"])))
    assert as_target["[seed 0] language SFT jav (LT-SFT)"].run_id == jav.run_id


def test_a_control_language_among_the_targets_reuses_its_sft_and_skips_its_own_control():
    steps = steps_of(plan(targets=["ace", "jav"], methods=["lt-sft", "deftx"], control_lang="jav"))
    s = by_label(steps)
    assert len([x for x in steps if x.kind == "language"]) == 6  # ind, ace, jav x 2 methods: nothing more
    control = s["[seed 0] nusax-senti/ace other-lang-sft (jav SFT)"]
    assert control.lang_sft == s["[seed 0] language SFT jav (LT-SFT)"].run_id
    assert not [x for x in steps if x.language == "jav" and x.system == "other-lang-sft"]


def test_the_source_as_control_language_reuses_the_source_sft():
    steps = steps_of(plan(targets=["ace", "mad"], methods=["deftx", "lt-sft"], control_lang="ind", lang_seed=0,
                          seeds=[0, 1]))
    s = by_label(steps)
    assert len([x for x in steps if x.kind == "language"]) == 6  # shared by the seeds
    for seed in (0, 1):
        control = s[f"[seed {seed}] nusax-senti/mad other-lang-sft (ind SFT)"]
        assert control.lang_sft == s["[seed 0] language SFT ind (DeFT-X)"].run_id  # the first method's
        assert control.task_sft == s[f"[seed {seed}] task SFT smsa/ind (DeFT-X)"].run_id


def test_the_control_is_cached_like_any_step_and_changes_no_other_step():
    without = steps_of(plan(targets=["ace"], methods=["lt-sft", "deftx"], baselines=["no-lang-sft"]))
    with_control = steps_of(plan(targets=["ace"], methods=["lt-sft", "deftx"], baselines=["no-lang-sft"],
                                 control_lang="jav"), all_done(without))
    old = {x.run_id for x in without}
    assert all(x.cached for x in with_control if x.run_id in old)
    assert [x.label for x in with_control if not x.cached] == [
        "[seed 0] language SFT jav (LT-SFT) (control)", "[seed 0] nusax-senti/ace other-lang-sft (jav SFT)"]
    again = steps_of(plan(targets=["ace"], methods=["lt-sft", "deftx"], baselines=["no-lang-sft"],
                          control_lang="jav"), all_done(with_control))
    assert all(x.cached for x in again)


def test_training_keys_stay_and_evaluation_keys_carry_the_record_version(monkeypatch):
    """Experiments already running reuse their trainings (their run ids are those of earlier versions,
    float32 trainings included: the preset's auto precision is float32 on a CPU without fast bf16);
    evaluations run again once, so that their records gain the new fields."""
    from deftx.training import distributed

    monkeypatch.setattr(distributed, "cpu_has_fast_bf16", lambda: False)
    steps = steps_of(plan(methods=["lt-sft", "deftx"], baselines=["no-lang-sft", "full-ft"]))
    assert {x.config.mixed_precision for x in steps if x.kind != "evaluation"} == {"no"}
    assert {x.label: x.run_id for x in steps if x.kind != "evaluation"} == TRAINING_RUN_IDS
    import deftx.experiment.plan
    monkeypatch.setattr("deftx.experiment.plan.EVALUATION_RECORD_VERSION", deftx.experiment.plan.EVALUATION_RECORD_VERSION + 1)
    bumped = steps_of(plan(methods=["lt-sft", "deftx"], baselines=["no-lang-sft", "full-ft"]))
    for a, b in zip(steps, bumped):
        assert (a.run_id == b.run_id) == (a.kind != "evaluation"), a.label


def test_bf16_trainings_are_other_trainings_with_their_own_run_ids(monkeypatch):
    """On a CPU with fast bf16 the CPU presets' trainings run in bf16: the plan says so and their run
    ids differ from the float32 ones, so a float32 run of an earlier version is not taken for them; a
    plan that asks for float32 (--lang-set/--task-set mixed_precision=no) keeps the float32 ids."""
    from deftx.training import distributed

    monkeypatch.setattr(distributed, "cpu_has_fast_bf16", lambda: True)
    kw = dict(methods=["lt-sft", "deftx"], baselines=["no-lang-sft", "full-ft"])
    steps = [x for x in steps_of(plan(**kw)) if x.kind != "evaluation"]
    assert {x.config.mixed_precision for x in steps} == {"bf16"}
    assert not {x.run_id for x in steps} & set(TRAINING_RUN_IDS.values())
    fp32 = plan(**kw, lang_overrides={"mixed_precision": "no"}, task_overrides={"mixed_precision": "no"})
    assert {x.label: x.run_id for x in steps_of(fp32) if x.kind != "evaluation"} == TRAINING_RUN_IDS


# The run ids the planner gave these trainings before results records gained predictions and
# lang_steps (model "m", runs dir "runs", preset smoke, target ace, both methods, full FT).
TRAINING_RUN_IDS = {
    "[seed 0] language SFT ind (LT-SFT)": "xfer-lang-ind-lt-sft-s0-e342fd95d8",
    "[seed 0] language SFT ind (DeFT-X)": "xfer-lang-ind-deftx-s0-9e5afc0bdf",
    "[seed 0] language SFT ace (LT-SFT)": "xfer-lang-ace-lt-sft-s0-5fc025aa93",
    "[seed 0] language SFT ace (DeFT-X)": "xfer-lang-ace-deftx-s0-f7be3a553c",
    "[seed 0] task SFT smsa/ind (LT-SFT)": "xfer-task-smsa-ind-lt-sft-s0-44ecbac1aa",
    "[seed 0] task SFT smsa/ind (DeFT-X)": "xfer-task-smsa-ind-deftx-s0-e3dd6e0492",
    "[seed 0] task SFT smsa/ind (full FT)": "xfer-task-smsa-ind-full-ft-s0-50a326e757",
}


# ---------------------------------------------------------------------------------------------
# DeFT-X settings as methods of their own (an ablation in one command)

ABLATION = ["lt-sft", "deftx", "deftx@lang=energy:0.8", "deftx@task=rank:16", "deftx@rank:8"]


def test_each_deftx_setting_is_a_method_that_shares_phase_one():
    steps = steps_of(plan(methods=ABLATION, baselines=["no-lang-sft"]))
    s = by_label(steps)
    lt = s["[seed 0] language SFT ace (LT-SFT)"]
    plain = s["[seed 0] language SFT ace (DeFT-X)"]
    e08 = s["[seed 0] language SFT ace (DeFT-X lang energy:0.8)"]
    r8 = s["[seed 0] language SFT ace (DeFT-X rank:8)"]
    # one phase 1 per language: every DeFT-X setting selects its mask from LT-SFT's difference
    assert lt.keep_phase1_diff and {plain.mask_from, e08.mask_from, r8.mask_from} == {lt.run_id}
    assert (e08.config.rank_rule, r8.config.rank_rule, plain.config.rank_rule) == ("energy:0.8", "rank:8", "energy:0.9")
    # deftx@task=rank:16 trains no language SFT of its own: its language SFTs are plain DeFT-X's
    assert len([x for x in steps if x.kind == "language"]) == 2 * 4
    tasks = {x.label: x for x in steps if x.kind == "task"}
    assert list(tasks) == [f"[seed 0] task SFT smsa/ind ({m})" for m in
                           ("LT-SFT", "DeFT-X", "DeFT-X lang energy:0.8", "DeFT-X task rank:16", "DeFT-X rank:8")]
    task_plain, task_r16 = tasks["[seed 0] task SFT smsa/ind (DeFT-X)"], tasks["[seed 0] task SFT smsa/ind (DeFT-X task rank:16)"]
    # the language-only setting's task SFT has plain DeFT-X's settings, trained on its own source SFT ...
    task_e08 = tasks["[seed 0] task SFT smsa/ind (DeFT-X lang energy:0.8)"]
    assert task_e08.config.rank_rule == "energy:0.9"
    assert task_e08.lang_sft == s["[seed 0] language SFT ind (DeFT-X lang energy:0.8)"].run_id
    # ... and the task-only setting shares the plain task SFT's start, so its phase 1 too
    assert task_r16.lang_sft == task_plain.lang_sft == s["[seed 0] language SFT ind (DeFT-X)"].run_id
    assert task_plain.keep_phase1_diff and task_r16.mask_from == task_plain.run_id and task_r16.config.rank_rule == "rank:16"
    assert task_e08.mask_from is None and tasks["[seed 0] task SFT smsa/ind (LT-SFT)"].mask_from is None
    # one evaluation per setting and target, each with its own SFTs
    evals = [x for x in steps if x.kind == "evaluation"]
    assert [x.label for x in evals] == [
        "[seed 0] nusax-senti/ace lt-sft", "[seed 0] nusax-senti/ace deftx", "[seed 0] nusax-senti/ace DeFT-X lang energy:0.8",
        "[seed 0] nusax-senti/ace DeFT-X task rank:16", "[seed 0] nusax-senti/ace DeFT-X rank:8", "[seed 0] nusax-senti/ace no-lang-sft"]
    assert {x.system for x in evals[1:5]} == {"deftx"}
    assert len({(x.task_sft, x.lang_sft) for x in evals}) == len(evals)
    assert len({x.run_id for x in steps}) == len(steps)


def test_adding_settings_keeps_the_plain_methods_runs_cached():
    base = steps_of(plan(methods=["lt-sft", "deftx"], baselines=["no-lang-sft"]))
    wider = steps_of(plan(methods=ABLATION, baselines=["no-lang-sft"]), all_done(base))
    old = {x.run_id for x in base}
    assert old <= {x.run_id for x in wider}
    assert all(x.cached for x in wider if x.run_id in old)
    # the plain DeFT-X task SFT was trained without keeping its phase-1 difference: the task-only
    # setting then trains its own phase 1 instead of waiting for a difference that will not come
    [r16] = [x for x in wider if x.kind == "task" and x.config.rank_rule == "rank:16"]
    assert r16.mask_from is None


@pytest.mark.parametrize("methods, needle", [
    (["lt-sft@rank:16"], "LT-SFT has no rank rule"),
    (["deftx@side=rank:16"], "'side' is not lang or task"),
    (["deftx@energy:1.5"], "energy fraction"),
    (["deftx", "deftx"], "given twice"),
    (["deftx@rank:16", "deftx@lang=rank:16@task=rank:16"], "given twice"),
])
def test_a_bad_setting_of_a_method_is_refused_before_anything_runs(methods, needle):
    with pytest.raises(DeftxError, match=needle):
        steps_of(plan(methods=methods))
