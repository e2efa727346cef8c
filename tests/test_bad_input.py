"""Bad input, third round: each case is one `deftx: error:` line with its exit code, before any work,
and nothing the user did not ask the command to write is touched."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from typer.testing import CliRunner

from deftx.model import load_model
from deftx.sft.diff import SparseDiff
from deftx_cli.app import app
from test_sft import random_sft

SMOKE = ["--preset", "smoke", "--device", "cpu", "--quiet"]


def run(*args, input=None):
    return CliRunner().invoke(app, [str(a) for a in args], input=input)


def one_error_line(result, code, *needles):
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.startswith("deftx: error:")]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr and "╭" not in result.stderr and "internal error" not in result.stderr
    for needle in needles:
        assert needle in result.stderr, result.stderr
    return lines[0]


@pytest.mark.parametrize("args,needle", [
    (["transfer", "--targets", "ace", "--jobs", "0"], "'--jobs'"),
    (["transfer", "--targets", "ace", "--threads", "0"], "'--threads'"),
    (["transfer", "--targets", "ace", "--lang-steps", "0"], "'--lang-steps'"),
    (["train-lang", "--lang", "ace", "--seed", "abc"], "'--seed'"),
    (["train-lang", "--lang", "ace", "--no-such-option"], "--no-such-option"),
    (["nosuchcommand"], "nosuchcommand"),
])
def test_a_bad_option_value_is_one_line_not_a_framed_box(args, needle):
    one_error_line(run(*args), 2, needle, "--help")


def test_transfer_refuses_no_targets_and_a_control_that_is_the_only_target(tmp_path):
    runs = tmp_path / "runs"
    one_error_line(run("transfer", "--targets", "", "--model", tmp_path / "m", "--runs-dir", runs), 2, "names no language")
    one_error_line(run("transfer", "--targets", "ace", "--control-lang", "ace", "--model", tmp_path / "m",
                       "--runs-dir", runs), 2, "--control-lang ace is the only target")
    assert not runs.exists()


def test_a_max_length_beyond_the_models_positions_is_refused_before_any_work(tiny_model_dir, shared_data, tmp_path):
    runs = tmp_path / "runs"  # the tiny model has 128 positions
    common = ["--model", tiny_model_dir, "--data-dir", shared_data, "--runs-dir", runs, *SMOKE]
    one_error_line(run("train-lang", "--lang", "ace", "--max-length", "200", *common), 2,
                   "--max-length 200 is longer than", "(128 tokens)")
    one_error_line(run("train-task", "--task", "smsa", "--source-lang", "ind", "--max-length", "200", *common), 2,
                   "--max-length 200")
    one_error_line(run("evaluate-lm", "--lang", "ace", "--max-length", "129", "--model", tiny_model_dir,
                       "--data-dir", shared_data), 2, "--max-length 129")
    one_error_line(run("transfer", "--targets", "ace", "--lang-set", "max_length=300", "--model", tiny_model_dir,
                       "--data-dir", shared_data, "--runs-dir", runs, "--preset", "smoke"), 2,
                   "--lang-set max_length=300 is longer than", "--lang-set max_length=128")
    assert not runs.exists() or not any(runs.iterdir())


def test_an_existing_run_id_is_a_usage_error_and_a_missing_one_to_resume_is_named(tiny_model_dir, shared_data, tmp_path):
    runs = tmp_path / "runs"
    (runs / "taken").mkdir(parents=True)
    (runs / "taken" / "notes.txt").write_text("an earlier run")
    common = ["train-lang", "--lang", "ace", "--model", tiny_model_dir, "--data-dir", shared_data, "--runs-dir", runs,
              "--preset", "smoke", "--device", "cpu"]
    one_error_line(run(*common, "--run-id", "taken"), 2, "run directory", "already exists")
    r = run(*common, "--resume", "--run-id", "typo")
    assert r.exit_code == 0 and "no run typo in" in r.stderr, r.stderr
    assert (runs / "typo" / "sft").is_dir()


def test_the_dashboard_refuses_a_runs_directory_that_does_not_exist(tmp_path):
    one_error_line(run("tui", "--runs-dir", tmp_path / "nowhere"), 3, "no runs directory")


def test_predict_refuses_an_empty_sentence_instead_of_shifting_the_others(tmp_path):
    one_error_line(run("predict", "", "bagus", "--task-sft", tmp_path), 2, "sentence 1 of the arguments is empty")


def test_overwriting_an_sft_directory_keeps_the_files_that_are_not_the_sfts(tiny_model_dir, tmp_path):
    model = load_model(tiny_model_dir, "mlm")[0]
    out = tmp_path / "out"
    random_sft(model, seed=0, head={"cls.extra": torch.ones(3)}).save(out)
    (out / "notes.txt").write_text("mine")
    random_sft(model, seed=1).save(out, overwrite=True)
    assert (out / "notes.txt").read_text() == "mine"
    again = SparseDiff.load(out)  # the new SFT, whole (its checksums verified), without the old head file
    assert not again.head and not (out / "head.safetensors").exists()
    assert again.n_entries == random_sft(model, seed=1).n_entries
    shutil.rmtree(out / "notes.txt", ignore_errors=True)


def test_the_note_on_different_base_models_goes_to_stderr(tiny_model_dir, other_tiny_model_dir, tmp_path):
    for name, folder in (("a", tiny_model_dir), ("b", other_tiny_model_dir)):
        random_sft(load_model(folder, "mlm")[0], seed=0).save(tmp_path / name)
    r = run("overlap", tmp_path / "a", tmp_path / "b", "--json")
    assert r.exit_code == 0 and "different base models" in r.stderr and "different base" not in r.stdout
    assert json.loads(r.stdout)["same_base"] is False


def test_a_failed_output_write_names_the_users_path_not_a_temporary_file(tmp_path, monkeypatch):
    import deftx.records.files as files
    from pathlib import Path

    fixture = Path(__file__).parent / "fixtures" / "runs-a25b44f"

    def refuse(prefix="", suffix="", dir=None):
        raise PermissionError(13, "Permission denied", f"{dir}/{prefix}abc{suffix}")

    monkeypatch.setattr(files.tempfile, "mkstemp", refuse)
    target = tmp_path / "table.md"
    line = one_error_line(run("results", "--runs-dir", fixture, "--output", target), 3, "Permission denied")
    assert str(target) in line and ".tmp" not in line
