"""What a new user hits on a first run: help at 80 columns, K written as 2.0, compose without --model,
offline hub ids, file modes, portable records, a re-run after Ctrl-C, predict, collapsed classifiers."""

from __future__ import annotations

import inspect
import json
import os
import re
import stat
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from deftx_cli.app import app
from test_cli import one_error_line

runner = CliRunner()
COMMANDS = ("train-lang", "train-task", "denoise", "compose", "evaluate", "transfer", "predict", "info",
            "import", "export", "overlap", "datasets", "results", "tui")
EXAMPLE = re.compile(r"^\s*(deftx |export |[A-Z]+=)")


def invoke(*args, env=None):
    return runner.invoke(app, [str(a) for a in args], env=env)


def _command_function(name):
    info = next(c for c in app.registered_commands if c.name == name)
    return inspect.unwrap(info.callback)


@pytest.mark.parametrize("command", COMMANDS)
def test_help_at_80_columns_has_copyable_examples_and_no_type_noise(command):
    r = invoke(command, "--help", env={"COLUMNS": "80", "TERMINAL_WIDTH": "80"})
    assert r.exit_code == 0, r.stderr
    assert "<bool>" not in r.stdout and "<list[Path]>" not in r.stdout
    assert max(len(line.rstrip()) for line in r.stdout.splitlines()) <= 80
    rendered = {line.strip() for line in r.stdout.splitlines()}
    examples = [line.strip() for line in (_command_function(command).__doc__ or "").splitlines() if EXAMPLE.match(line)]
    assert examples, f"{command} --help has no example"
    for example in examples:  # each example line is whole on one screen line: copy-paste works
        assert example in rendered, f"{example!r} wraps at 80 columns in:\n{r.stdout}"


def test_the_top_level_help_has_no_bool_either():
    r = invoke("--help", env={"COLUMNS": "80"})
    assert r.exit_code == 0 and "<bool>" not in r.stdout and "predict" in r.stdout


SMOKE = ["--preset", "smoke", "--device", "cpu", "--quiet"]


def run(*args, ok=True, env=None):
    result = invoke(*args, env=env)
    if ok:
        assert result.exit_code == 0, f"exit {result.exit_code}\nstdout: {result.stdout}\nstderr: {result.stderr}\n{result.exception!r}"
    return result


@pytest.fixture(scope="module")
def first_run(tiny_model_dir, shared_data, tmp_path_factory):
    """SFTs trained the way a new user does: from the model's directory, with a relative --model path."""
    root = tmp_path_factory.mktemp("first-run")
    runs = root / "runs"
    here = os.getcwd()
    os.chdir(tiny_model_dir.parent)
    try:
        common = ["--model", f"./{tiny_model_dir.name}", "--data-dir", shared_data, "--runs-dir", runs, *SMOKE]
        out = {}
        for lang in ("ind", "ace"):
            out[lang] = json.loads(run("train-lang", "--lang", lang, "--keep-phase1-diff", "--json", *common).stdout)
        out["task"] = json.loads(run("train-task", "--task", "smsa", "--source-lang", "ind",
                                     "--lang-sft", out["ind"]["sft"], "--json", *common).stdout)
    finally:
        os.chdir(here)
    out["runs"], out["root"] = runs, root
    return out


def _one_class_task_sft(task_sft: Path, out: Path) -> Path:
    """The task SFT with a head that always says 'positive'."""
    import torch

    from deftx.sft.diff import SparseDiff

    sft = SparseDiff.load(task_sft)
    sft.head["classifier.bias"] = torch.tensor([0.0, 0.0, 1000.0])
    sft.save(out)
    return out


def test_k_written_with_a_point_is_refused_with_a_hint(tiny_model_dir, tmp_path):
    text = tmp_path / "t.txt"
    text.write_text("saya suka film ini\n" * 50)
    r = run("train-lang", "--lang", "ind", "--k", "2.0", "--model", tiny_model_dir, "--text", text,
            "--runs-dir", tmp_path / "runs", *SMOKE, ok=False)
    one_error_line(r, 2, "K = 2.0 is ambiguous", "write 2 for a count", "0.02", "2%")


def test_the_base_model_is_recorded_as_an_absolute_path(first_run, tiny_model_dir):
    for name in ("ind", "task"):
        manifest = json.loads((Path(first_run[name]["sft"]) / "sft.json").read_text())
        assert manifest["base_model"] == str(tiny_model_dir.resolve())
        record = json.loads((Path(first_run[name]["run"]) / "run.json").read_text())
        assert record["base_model"] == str(tiny_model_dir.resolve())


def test_compose_without_model_uses_the_recorded_base_from_another_directory(first_run, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the SFTs recorded ./<model> from elsewhere
    r = run("compose", "--sft", first_run["ace"]["sft"], "--sft", first_run["task"]["sft"], "--out", "composed", "--json")
    result = json.loads(r.stdout)
    assert Path(result["base_model"]).is_absolute() and (Path(result["base_model"]) / "config.json").is_file()
    assert (tmp_path / "composed" / "config.json").is_file()


def test_compose_force_overrides_a_base_mismatch_between_two_sfts(first_run, tmp_path):
    from deftx.sft.diff import SparseDiff

    other = SparseDiff.load(first_run["ace"]["sft"])
    other.manifest["base_fingerprint"] = "sha256:" + "0" * 32
    other.save(tmp_path / "other-base")
    args = ["compose", "--sft", tmp_path / "other-base", "--sft", first_run["task"]["sft"]]
    one_error_line(run(*args, "--out", tmp_path / "a", ok=False), 5, "different base models", "--force")
    run(*args, "--out", tmp_path / "b", "--force")
    assert (tmp_path / "b" / "config.json").is_file()


@pytest.mark.parametrize("how", ["HF_HUB_OFFLINE", "no network"])
def test_a_hub_id_fails_at_once_offline(how, first_run, tmp_path, monkeypatch):
    if how == "no network":
        import deftx.hub
        monkeypatch.delenv("HF_HUB_OFFLINE")
        monkeypatch.setattr(deftx.hub, "_hub_reachable", lambda endpoint: False)
    started = time.monotonic()
    r = run("compose", "--model", "xlm-roberta-base", "--sft", first_run["ace"]["sft"], "--out", tmp_path / "m", ok=False)
    one_error_line(r, 3, "xlm-roberta-base", "offline")
    assert time.monotonic() - started < 10
    assert not (tmp_path / "m").exists()


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_files_are_created_with_the_users_umask(first_run, tmp_path):
    umask = os.umask(0o022)
    os.umask(umask)
    run_dir, sft = Path(first_run["task"]["run"]), Path(first_run["task"]["sft"])
    for path in (run_dir / "run.json", run_dir / "metrics.jsonl", sft / "sft.json", sft / "diff.safetensors",
                 sft / "head.safetensors", Path(first_run["ind"]["run"]) / "phase1_diff.safetensors"):
        assert _mode(path) == 0o666 & ~umask, path
    assert _mode(sft) == 0o777 & ~umask
    run("compose", "--sft", first_run["task"]["sft"], "--out", tmp_path / "m")
    assert _mode(tmp_path / "m") == 0o777 & ~umask
    assert _mode(tmp_path / "m" / "deftx_compose.json") == 0o666 & ~umask
    run("denoise", "--diff", first_run["ind"]["run"], "--k", "0.05", "--out", tmp_path / "mask.safetensors")
    assert _mode(tmp_path / "mask.safetensors") == 0o666 & ~umask


def test_results_json_paths_are_valid_from_another_directory(first_run, shared_data, tmp_path, monkeypatch):
    monkeypatch.chdir(first_run["root"])
    r = run("evaluate", "--task", "nusax-senti", "--lang", "ace", "--task-sft", "runs/" + Path(first_run["task"]["run"]).name + "/sft",
            "--lang-sft", os.path.relpath(first_run["ace"]["sft"]), "--data-dir", shared_data, "--runs-dir", "runs", "--json")
    record = json.loads(r.stdout)
    saved = json.loads((first_run["runs"] / record["run_id"] / "results.json").read_text())
    monkeypatch.chdir(tmp_path)
    for key in ("task_sft", "lang_sft"):
        assert Path(saved[key]).is_absolute() and (Path(saved[key]) / "sft.json").is_file()


def test_a_rerun_after_ctrl_c_says_it_starts_over(tiny_model_dir, tmp_path):
    from deftx.records.runs import Run

    runs = tmp_path / "runs"
    Run.create(runs, "language", config={}, run_id="earlier", method="deftx", languages={"target": "ind"}).close("interrupted")
    text = tmp_path / "t.txt"
    text.write_text("saya suka film ini\n" * 50)
    r = run("train-lang", "--lang", "ind", "--model", tiny_model_dir, "--text", text, "--runs-dir", runs, *SMOKE)
    assert "interrupted" in r.stderr and "starts over in a new run directory" in r.stderr
    r = run("train-lang", "--lang", "ind", "--model", tiny_model_dir, "--text", text, "--runs-dir", runs, *SMOKE)
    assert "starts over" not in r.stderr  # the last run finished


def test_predict_prints_the_label_and_probabilities_of_each_sentence(first_run, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the base model comes from the SFT's manifest, from any directory
    task = first_run["task"]["sft"]
    r = run("predict", "--task-sft", task, "--lang-sft", first_run["ace"]["sft"], "film ini sangat bagus", "jelek")
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 2 and lines[0].endswith("film ini sangat bagus") and lines[1].endswith("jelek")
    for line in lines:
        label = line.split()[0]
        assert label in ("negative", "neutral", "positive")
        probs = dict(re.findall(r"(negative|neutral|positive) ([0-9.]+)", line))
        assert set(probs) == {"negative", "neutral", "positive"}
        assert abs(sum(float(p) for p in probs.values()) - 1) < 0.01
        assert max(probs, key=lambda k: float(probs[k])) == label
    sentences = tmp_path / "s.txt"
    sentences.write_text("saya suka makanan ini\n\nfilm ini jelek\n")
    result = json.loads(run("predict", "--task-sft", task, "--file", sentences, "--json").stdout)
    assert [p["text"] for p in result["predictions"]] == ["saya suka makanan ini", "film ini jelek"]
    assert result["labels"] == ["negative", "neutral", "positive"]
    assert all(abs(sum(p["probabilities"].values()) - 1) < 1e-5 for p in result["predictions"])
    one_error_line(run("predict", "--task-sft", task, ok=False), 2, "nothing to predict")
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    one_error_line(run("predict", "--task-sft", task, "--file", empty, ok=False), 4, "holds no text")
    one_error_line(run("predict", "--task-sft", first_run["ace"]["sft"], "x", ok=False), 5, "not a task SFT")


def test_predict_agrees_with_a_head_that_always_says_positive(first_run, tmp_path):
    task = _one_class_task_sft(Path(first_run["task"]["sft"]), tmp_path / "positive")
    result = json.loads(run("predict", "--task-sft", task, "a", "b c", "--json").stdout)
    assert [p["label"] for p in result["predictions"]] == ["positive", "positive"]
    assert all(p["probabilities"]["positive"] > 0.99 for p in result["predictions"])


def test_a_one_class_classifier_is_reported(first_run, shared_data, tmp_path):
    task = _one_class_task_sft(Path(first_run["task"]["sft"]), tmp_path / "positive")
    r = run("evaluate", "--task", "nusax-senti", "--lang", "ace", "--task-sft", task, "--data-dir", shared_data,
            "--runs-dir", tmp_path / "runs", "--json")
    record = json.loads(r.stdout)
    assert record["metrics"]["collapsed_classes"] == ["negative", "neutral"]
    assert record["metrics"]["prediction_shares"] == {"negative": 0.0, "neutral": 0.0, "positive": 1.0}
    (warning,) = [l for l in r.stderr.splitlines() if l.startswith("warning:")]
    assert "ace test" in warning and "'negative', 'neutral'" in warning and "positive 100.0%" in warning
    saved = json.loads((tmp_path / "runs" / record["run_id"] / "results.json").read_text())
    assert saved["metrics"]["collapsed_classes"] == ["negative", "neutral"]
    # the results table marks the cell and explains the mark
    table = run("results", "--runs-dir", tmp_path / "runs").stdout
    assert "†" in table.split("| ace |")[1].splitlines()[0] and "never predicts one of its classes" in table


def test_the_task_sfts_final_validation_records_prediction_shares(first_run):
    summary = json.loads((Path(first_run["task"]["run"]) / "run.json").read_text())["summary"]
    final = summary["phase2"]["eval"]
    assert set(final["prediction_shares"]) == {"negative", "neutral", "positive"}
    assert abs(sum(final["prediction_shares"].values()) - 1) < 1e-9
    assert final["collapsed_classes"] == [c for c, s in final["prediction_shares"].items() if s < 0.02]


def test_prediction_shares_and_collapsed_classes():
    from deftx.metrics import classification_metrics, collapse_warning

    metrics = classification_metrics([2] * 98 + [0] * 2, [0, 1, 2] * 33 + [0], ["negative", "neutral", "positive"])
    assert metrics["prediction_shares"] == {"negative": 0.02, "neutral": 0.0, "positive": 0.98}
    assert metrics["collapsed_classes"] == ["neutral"]  # 2% is enough, under it is not
    line = collapse_warning(metrics, "ace test")
    assert line.startswith("warning: ace test:") and "'neutral'" in line and "of 100 examples" in line
    every = classification_metrics([0, 1, 2] * 10, [0, 1, 2] * 10, ["a", "b", "c"])
    assert every["collapsed_classes"] == [] and collapse_warning(every, "x") is None


def test_info_shows_density_final_metrics_and_entries_per_type(first_run):
    r = run("info", first_run["task"]["sft"])
    assert "density" in r.stdout and "% of the maskable parameters" in r.stdout
    assert "final metrics" in r.stdout and "macro_f1" in r.stdout
    assert "entries per parameter type" in r.stdout and "ffn.in" in r.stdout and "attn.query" in r.stdout


def test_phase2_drop_warning_names_the_drop_and_the_classes_predicted_less():
    from deftx.metrics import phase2_drop_warning

    def summary(before, after, neutral_before=0.13, neutral_after=0.04):
        shares = lambda n: {"negative": 0.33, "neutral": n, "positive": 0.67 - n}  # noqa: E731
        return {"phase1": {"eval": {"macro_f1": before, "prediction_shares": shares(neutral_before)}},
                "phase2": {"eval": {"macro_f1": after, "prediction_shares": shares(neutral_after)}}}

    line = phase2_drop_warning(summary(0.7575, 0.6835), "task SFT r")
    assert line.startswith("warning: task SFT r:") and "7.4 points" in line
    assert "neutral 4.0% (phase 1: 13.0%)" in line and "negative" not in line.split("predicted less")[1]
    assert phase2_drop_warning(summary(0.84, 0.81), "x") is None  # 3 points: what a stable phase 2 costs
    assert "predicted less" not in phase2_drop_warning(summary(0.80, 0.70, 0.13, 0.12), "x")
    assert phase2_drop_warning({"phase1": {"eval": {"macro_f1": 0.9}}}, "x") is None  # no phase 2 evaluation
    assert phase2_drop_warning({"phase1": {"eval": {"mlm_loss": 3.0}}, "phase2": {"eval": {"mlm_loss": 9.0}}},
                               "x") is None  # a language SFT's evaluation
    assert phase2_drop_warning(None, "x") is None


def test_info_shows_the_validation_after_each_phase_and_warns_of_a_drop(first_run, tmp_path):
    import shutil

    run_dir = tmp_path / "run"
    shutil.copytree(Path(first_run["task"]["run"]), run_dir)
    r = run("info", run_dir / "sft")
    assert "after phase 1: macro_f1" in r.stdout and "after phase 2: macro_f1" in r.stdout
    assert "predicted: negative" in r.stdout
    record = json.loads((run_dir / "run.json").read_text())
    record["summary"]["phase1"]["eval"].update(macro_f1=0.95, prediction_shares={"negative": 0.3, "neutral": 0.3,
                                                                                  "positive": 0.4})
    (run_dir / "run.json").write_text(json.dumps(record))
    after = record["summary"]["phase2"]["eval"]["macro_f1"]
    r = run("info", run_dir / "sft")
    [line] = [l for l in r.stderr.splitlines() if "fell from" in l]
    assert line.startswith("warning: this SFT:") and f"{after:.4f} after phase 2" in line
    assert "0.9500 after phase 1" in line


def test_denoise_names_matrices_by_layer_and_short_type(first_run):
    r = run("denoise", "--diff", first_run["ind"]["run"], "--k", "0.05", env={"COLUMNS": "80"})
    rows = [l for l in r.stdout.splitlines() if re.search(r"\bL\d+ ", l)]
    assert rows and "encoder.layer" not in r.stdout
    layers = [int(re.search(r"\bL(\d+) ", l).group(1)) for l in rows]
    assert layers == sorted(layers)


def test_datasets_list_guarani_as_grn():
    listing = json.loads(run("datasets", "--json").stdout)
    languages = listing["tasks"]["americasnli"]["languages"]
    assert "grn" in languages and "gn" not in languages


def test_the_package_license_is_an_spdx_string():
    import tomllib

    project = tomllib.loads((Path(__file__).resolve().parent.parent / "pyproject.toml").read_text())
    assert project["project"]["license"] == "Apache-2.0"  # setuptools >= 77 warns on the old table form
    assert any(r.replace(" ", "").startswith("setuptools>=77") for r in project["build-system"]["requires"])


def test_transfer_marks_a_one_class_result_in_its_table(tiny_model_dir, shared_data, tmp_path):
    runs = tmp_path / "runs"
    r = run("transfer", "--targets", "ace", "--methods", "lt-sft", "--baselines", "", "--split", "valid",
            "--model", tiny_model_dir, "--data-dir", shared_data, "--runs-dir", runs, "--preset", "smoke", "--quiet",
            env={"COLUMNS": "120"})
    [record] = [json.loads(p.read_text()) for p in runs.glob("*/results.json")]
    row = next(line for line in r.stdout.splitlines() if "ace" in line)
    warnings = [line for line in r.stderr.splitlines() if line.startswith("warning: ace valid")]
    if record["metrics"]["collapsed_classes"]:  # the smoke budget's classifier usually predicts one class
        assert "†" in row and "never predicts one of its classes" in r.stdout and len(warnings) == 1
        assert all(f"'{c}'" in warnings[0] for c in record["metrics"]["collapsed_classes"])
    else:
        assert "†" not in r.stdout and not warnings


def test_an_evaluation_run_records_the_collapse_in_its_run_record(first_run, shared_data, tmp_path):
    task = _one_class_task_sft(Path(first_run["task"]["sft"]), tmp_path / "positive")
    record = json.loads(run("evaluate", "--task", "nusax-senti", "--lang", "ace", "--task-sft", task, "--data-dir",
                            shared_data, "--runs-dir", tmp_path / "runs", "--json").stdout)
    run_dir = tmp_path / "runs" / record["run_id"]
    assert json.loads((run_dir / "run.json").read_text())["summary"]["collapsed_classes"] == ["negative", "neutral"]
    (event,) = [json.loads(l) for l in (run_dir / "metrics.jsonl").read_text().splitlines() if '"eval"' in l]
    assert event["metrics"]["prediction_shares"]["positive"] == 1.0


def test_a_long_note_stays_one_line_in_a_log(capsys):
    from deftx_cli.output import note

    message = "[seed 0] language SFT ace (DeFT-X): phase 1 shared with LT-SFT; mask selected from its difference " * 2
    note(message)
    assert capsys.readouterr().err == message + "\n"


def test_transfer_warns_of_a_task_sft_whose_phase2_lost_its_validation(tmp_path, capsys):
    from deftx_cli.commands.transfer import _print_results

    run_dir = tmp_path / "xfer-task-smsa-ind-lt-sft-s1-abc"
    (run_dir / "sft").mkdir(parents=True)
    shares = {"negative": 0.33, "neutral": 0.13, "positive": 0.54}
    summary = {"phase1": {"steps": 4, "eval": {"macro_f1": 0.76, "prediction_shares": shares}},
               "phase2": {"steps": 4, "eval": {"macro_f1": 0.68, "prediction_shares": {**shares, "neutral": 0.04}}}}
    (run_dir / "run.json").write_text(json.dumps({"run_id": run_dir.name, "status": "finished", "summary": summary}))
    records = [{"language": lang, "split": "test", "system": "lt-sft", "seed": 1, "task": "nusax-senti",
                "metric": "macro_f1", "metrics": {"macro_f1": 0.6}, "task_sft": str(run_dir / "sft")}
               for lang in ("ace", "mad")]
    _print_results(records, tmp_path, as_json=True)
    warnings = [l for l in capsys.readouterr().err.splitlines() if "fell from" in l]
    assert len(warnings) == 1  # one per task SFT, not per evaluation
    assert warnings[0].startswith(f"warning: task SFT {run_dir.name}:") and "neutral 4.0%" in warnings[0]
