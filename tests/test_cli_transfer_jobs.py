"""``deftx transfer --jobs`` and ``--lang-set`` / ``--task-set`` through the command line."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_cli import one_error_line, run

from deftx.config import parse_settings
from deftx.errors import UsageError
from deftx.experiment.plan import TransferPlan, plan_steps


def settings_plan(lang_set=(), task_set=()):
    return TransferPlan(task="nusax-senti", targets=["ace"], preset="smoke", baselines=["no-lang-sft", "full-ft"],
                        lang_overrides=parse_settings(list(lang_set)), task_overrides=parse_settings(list(task_set)))


def run_ids(p, tmp_path):
    return {s.label: s.run_id for s in plan_steps(p, model="m", runs_dir=tmp_path)}


def test_a_language_setting_renames_the_language_sfts_and_what_uses_them(tmp_path):
    base = run_ids(settings_plan(), tmp_path)
    changed = run_ids(settings_plan(lang_set=["batch_size=8"]), tmp_path)
    for label in base:
        # the full-FT task SFT and its evaluation apply no language SFT: they stay cached
        assert (base[label] == changed[label]) == ("full FT" in label or "full-ft" in label), label


def test_a_task_setting_leaves_the_language_sfts_alone(tmp_path):
    base = run_ids(settings_plan(), tmp_path)
    changed = run_ids(settings_plan(task_set=["batch_size=8"]), tmp_path)
    for label in base:
        assert (base[label] == changed[label]) == ("language SFT" in label), label


def test_settings_are_converted_by_the_config_so_equal_values_name_equal_runs(tmp_path):
    assert parse_settings(["batch_size=64", "max_examples=0", "mixed_precision=bf16", "group_by_length=false",
                           "denoise_exclude=[\"*embeddings*\"]"]) == {
        "batch_size": 64, "max_examples": 0, "mixed_precision": "bf16", "group_by_length": False,
        "denoise_exclude": ["*embeddings*"]}
    as_text = run_ids(settings_plan(lang_set=["phase1_steps=3", "phase2_steps=3"]), tmp_path)
    as_numbers = run_ids(TransferPlan(task="nusax-senti", targets=["ace"], preset="smoke",
                                      baselines=["no-lang-sft", "full-ft"],
                                      lang_overrides={"phase1_steps": 3, "phase2_steps": 3}), tmp_path)
    assert as_text == as_numbers


def test_max_examples_zero_means_every_example(tmp_path):
    p = settings_plan(task_set=["max_examples=0"])
    task = next(s for s in plan_steps(p, model="m", runs_dir=tmp_path) if s.kind == "task")
    assert task.config.max_examples is None


@pytest.mark.parametrize("pair, needle", [
    ("batchsize=8", "unknown setting 'batchsize'; did you mean 'batch_size'?"),
    ("batch_size=eight", "invalid batch_size"),
    ("batch_size", "expected KEY=VALUE"),
    ("seed=3", "use --seed"),
    ("rank_rule=energy:2", "rank_rule"),
])
def test_bad_settings_name_the_key(pair, needle):
    with pytest.raises(UsageError, match="--lang-set") as caught:
        parse_settings([pair], "--lang-set")
    assert needle in str(caught.value)


@pytest.mark.parametrize("args, needle", [
    (["--lang-set", "batchsize=8"], "--lang-set: unknown setting 'batchsize'"),
    (["--task-set", "max_length=4"], "--task-set invalid max_length"),
    (["--lang-steps", "3", "--lang-set", "phase1_steps=5"], "--lang-set phase1_steps and --lang-steps both set"),
    (["--jobs", "0"], "--jobs"),
    (["--mixed-precision", "no", "--task-set", "mixed_precision=bf16"],
     "--task-set mixed_precision and --mixed-precision both set"),
    (["--mixed-precision", "fp16"], "--mixed-precision fp16 needs a CUDA device"),
])
def test_transfer_refuses_bad_settings_before_anything_runs(tmp_path, args, needle):
    r = run("transfer", "--targets", "ace", *args, "--model", tmp_path / "no-model", "--runs-dir", tmp_path / "runs",
            ok=False)
    assert r.exit_code == 2, r.stderr
    assert needle in r.stderr, r.stderr
    if args[0] != "--jobs":  # Typer reports its own range check
        one_error_line(r, 2)
    assert not (tmp_path / "runs").exists()


def test_transfer_help_shows_the_new_options_in_their_panels():
    out = run("transfer", "--help").stdout
    for option in ("--jobs", "--threads", "--lang-set", "--task-set", "Parallel steps"):
        assert option in out, option


# ------------------------------------------------------------------------------ end to end, tiny model


def transfer_args(model, data, runs, *more):
    return ["transfer", "--targets", "ace", "--baselines", "no-lang-sft", "--split", "valid", "--preset", "smoke",
            "--model", model, "--data-dir", data, "--runs-dir", runs, "--json", *more]


@pytest.mark.slow
def test_two_jobs_give_the_same_results_as_one(tiny_model_dir, shared_data, tmp_path, monkeypatch):
    import torch

    for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        monkeypatch.setenv(variable, os.environ.get(variable, ""))  # restored after the test
    threads = torch.get_num_threads()
    try:
        one = run(*transfer_args(tiny_model_dir, shared_data, tmp_path / "one", "--threads", "1", "--quiet"))
    finally:
        torch.set_num_threads(threads)
    two = run(*transfer_args(tiny_model_dir, shared_data, tmp_path / "two", "--jobs", "2", "--threads", "1"))
    first, second = json.loads(one.stdout), json.loads(two.stdout)
    key = lambda r: (r["system"], r["language"], r["seed"])  # noqa: E731
    assert sorted(map(key, first["records"])) == sorted(map(key, second["records"]))
    assert [(key(r), r["metrics"]) for r in second["records"]] == [(key(r), r["metrics"]) for r in first["records"]]
    assert second["tables"] == first["tables"]
    assert "step 1 of 9 started: [seed 0] language SFT ind (LT-SFT)" in two.stderr
    assert "(2 running" in two.stderr and two.stderr.count(" finished in ") == 9
    again = run(*transfer_args(tiny_model_dir, shared_data, tmp_path / "two", "--jobs", "2"))
    assert " started: " not in again.stderr and json.loads(again.stdout)["tables"] == first["tables"]


@pytest.mark.slow
def test_a_failing_step_in_a_worker_is_one_error_line(tiny_model_dir, shared_data, tmp_path):
    data = tmp_path / "data"  # NusaX without its MT text: no unlabelled text for any language SFT
    (data / "nusax").mkdir(parents=True)
    (data / "nusax" / "sentiment").symlink_to(Path(shared_data) / "nusax" / "sentiment")
    (data / "smsa").symlink_to(Path(shared_data) / "smsa")
    r = run(*transfer_args(tiny_model_dir, data, tmp_path / "runs", "--jobs", "2", "--threads", "1"), ok=False)
    line = one_error_line(r, r.exit_code, "[seed 0] language SFT")
    assert r.exit_code not in (0, 1), r.stderr  # the data error's own code, not an internal error
    assert "failed: [seed 0] language SFT" in r.stderr and " started: " in r.stderr
    assert r.stdout == ""
    assert json.loads((tmp_path / "runs" / "experiment.json").read_text())["status"] == "failed"
    assert "language SFT" in line


@pytest.mark.slow
def test_sigterm_stops_the_workers_at_a_checkpoint_and_a_rerun_finishes(tiny_model_dir, shared_data, tmp_path):
    runs = tmp_path / "runs"
    args = [sys.executable, "-m", "deftx_cli.app", *map(str, transfer_args(
        tiny_model_dir, shared_data, runs, "--jobs", "2", "--threads", "1", "--methods", "lt-sft",
        "--lang-set", "phase1_steps=150", "--lang-set", "phase2_steps=4", "--save-every", "0"))]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not any(
            (p / "metrics.jsonl").exists() and '"train"' in (p / "metrics.jsonl").read_text()
            for p in runs.glob("xfer-lang-*")):
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert err.count("deftx: error:") == 1 and "terminated (SIGTERM)" in err and "Traceback" not in err, err
    assert json.loads((runs / "experiment.json").read_text())["status"] == "interrupted"
    stopped = [json.loads((p / "run.json").read_text()) for p in runs.glob("xfer-lang-*")]
    assert stopped and all(r["status"] == "interrupted" for r in stopped), stopped
    assert any((p / "checkpoints").is_dir() and any((p / "checkpoints").iterdir()) for p in runs.glob("xfer-lang-*"))
    rerun = subprocess.run(args, capture_output=True, text=True, env=env, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    assert "resuming run" in rerun.stderr, rerun.stderr
    shutil.rmtree(runs)


@pytest.mark.slow
def test_deftx_settings_in_one_command_share_phase_one_and_get_columns(tiny_model_dir, shared_data, tmp_path):
    runs = tmp_path / "runs"
    out = run(*transfer_args(tiny_model_dir, shared_data, runs, "--methods",
                             "lt-sft,deftx,deftx@lang=rank:2,deftx@task=rank:2", "--quiet"))
    records = json.loads(out.stdout)["records"]
    settings = {(r["system"], r["settings"]["rank_rule"], r["settings"]["lang_rank_rule"]) for r in records}
    assert settings == {("lt-sft", None, None), ("deftx", "energy:0.9", "energy:0.9"), ("deftx", "energy:0.9", "rank:2"),
                        ("deftx", "rank:2", "energy:0.9"), ("no-lang-sft", None, None)}
    # one phase 1 per language (LT-SFT's) and one per task-SFT start point
    phase1 = {p.parent.name for p in runs.glob("*/metrics.jsonl")
              if any(json.loads(line).get("phase") == 1 for line in p.read_text().splitlines())}
    assert sorted(name.split("-s0-")[0] for name in phase1) == [
        "xfer-lang-ace-lt-sft", "xfer-lang-ind-lt-sft", "xfer-task-smsa-ind-deftx", "xfer-task-smsa-ind-deftx",
        "xfer-task-smsa-ind-lt-sft"]  # DeFT-X's task SFT and the one of DeFT-X lang rank:2 (another start)
    [r2] = [r for r in records if r["settings"]["rank_rule"] == "rank:2"]
    task_sft = json.loads((Path(r2["task_sft"]) / "sft.json").read_text())
    assert task_sft["selection"]["rank_rule"] == "rank:2" and task_sft["training"]["rank_rule"] == "rank:2"
    # the comparison table gives each setting its own column, named by what differs
    table = run("results", "--runs-dir", runs, "--split", "valid")
    header = next(line for line in table.stdout.splitlines() if line.startswith("| Language"))
    assert header == "| Language | LT-SFT | DeFT-X | Δ | DeFT-X lang rank:2 | DeFT-X task rank:2 | no lang SFT |"
    paired = run("results", "--runs-dir", runs, "--split", "valid", "--paired")
    assert "| DeFT-X lang rank:2 − LT-SFT |" in paired.stdout and "| DeFT-X task rank:2 − LT-SFT |" in paired.stdout
