"""Every command end to end through CliRunner: a tiny model, real files from ../shared/data."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

import deftx
from deftx_cli.app import app

runner = CliRunner()
SMOKE = ["--preset", "smoke", "--device", "cpu", "--quiet"]


def run(*args, ok=True):
    result = runner.invoke(app, [str(a) for a in args])
    if ok:
        assert result.exit_code == 0, f"exit {result.exit_code}\nstdout: {result.stdout}\nstderr: {result.stderr}\n{result.exception!r}"
    return result


def one_error_line(result, code, *needles):
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    lines = [l for l in result.stderr.splitlines() if l.startswith("deftx: error:")]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in result.stderr, result.stderr
    return lines[0]


@pytest.fixture(scope="module")
def trained(tiny_model_dir, shared_data, tmp_path_factory):
    """A language SFT for ind and ace, and a task SFT on SmSA with the ind SFT applied."""
    runs = tmp_path_factory.mktemp("runs")
    common = ["--model", tiny_model_dir, "--data-dir", shared_data, "--runs-dir", runs, *SMOKE]
    out = {}
    for lang in ("ind", "ace"):
        r = run("train-lang", "--lang", lang, "--method", "deftx", "--keep-phase1-diff", "--json", *common)
        out[lang] = json.loads(r.stdout)
    r = run("train-task", "--task", "smsa", "--source-lang", "ind", "--lang-sft", out["ind"]["sft"], "--json", *common)
    out["task"] = json.loads(r.stdout)
    out["runs"] = runs
    return out


def test_train_lang_writes_run_and_sft(trained):
    ace = trained["ace"]
    run_dir = Path(ace["run"])
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "finished" and record["kind"] == "language" and record["languages"] == {"target": "ace"}
    assert record["total_steps"] == {"phase1": 4, "phase2": 4}
    provenance = record["provenance"]
    assert provenance["deftx"] == deftx.__version__ and provenance["device"] == "cpu" and provenance["gpu"] is None
    assert provenance["torch"].startswith("2.") and provenance["transformers"] and provenance["threads"] >= 1
    assert provenance["cpu"] and (provenance["git_commit"] is None or len(provenance["git_commit"]) >= 40)
    events = [json.loads(l) for l in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [e["event"] for e in events if e["event"] in ("phase", "selection", "done")] == ["phase", "selection", "phase", "done"]
    selection = next(e for e in events if e["event"] == "selection")
    assert selection["denoise"] and ace["entries"] == selection["k"] == ace["k"]
    manifest = json.loads((Path(ace["sft"]) / "sft.json").read_text())
    assert manifest["kind"] == "language" and manifest["language"] == "ace" and manifest["method"] == "deftx"
    # ace text comes from the NusaX-MT train column only
    assert any("mt/train.csv" in s for s in manifest["data"]["sources"])
    assert not any("valid" in s or "test" in s for s in manifest["data"]["sources"])


def test_train_task_records_the_language_sft(trained):
    manifest = json.loads((Path(trained["task"]["sft"]) / "sft.json").read_text())
    assert manifest["kind"] == "task" and manifest["labels"] == ["negative", "neutral", "positive"]
    assert manifest["trained_with"][0]["language"] == "ind"
    assert "classifier.weight" in manifest["head"]


def test_evaluate_prints_metrics_and_writes_results(trained, shared_data):
    r = run("evaluate", "--task", "nusax-senti", "--lang", "ace", "--task-sft", trained["task"]["sft"],
            "--lang-sft", trained["ace"]["sft"], "--data-dir", shared_data,
            "--runs-dir", trained["runs"], "--json")
    record = json.loads(r.stdout)
    assert record["system"] == "deftx" and record["metrics"]["n"] == 400
    assert set(record["metrics"]["per_class"]) == {"negative", "neutral", "positive"}
    assert 0 <= record["metrics"]["macro_f1"] <= 1
    # the task SFT's budget is part of the settings, so that results of other budgets are not mixed
    assert record["settings"]["task_budget"] == "4+4 steps" and record["settings"]["task_examples"] == 64
    results = list(trained["runs"].glob("*/results.json"))
    assert any(json.loads(p.read_text())["language"] == "ace" for p in results)
    human = run("evaluate", "--task", "nusax-senti", "--lang", "ace", "--task-sft", trained["task"]["sft"],
                "--data-dir", shared_data, "--runs-dir", trained["runs"])
    assert "macro-F1" in human.stdout and "no-lang-sft" in human.stdout
    assert "results written to" in human.stderr


def test_evaluation_records_hold_predictions_gold_and_the_language_sft_budget(trained, shared_data):
    from deftx.metrics import classification_metrics

    common = ["evaluate", "--task", "nusax-senti", "--lang", "ace", "--task-sft", trained["task"]["sft"],
              "--split", "valid", "--data-dir", shared_data, "--runs-dir", trained["runs"], "--json"]
    with_lang = json.loads(run(*common, "--lang-sft", trained["ace"]["sft"]).stdout)
    without = json.loads(run(*common).stdout)
    for record in (with_lang, without):
        metrics = record["metrics"]
        assert len(record["predictions"]) == len(record["gold"]) == metrics["n"] == 100
        # the ids index metrics["labels"] and give back the record's scores
        assert classification_metrics(record["predictions"], record["gold"], metrics["labels"]) == metrics
        assert record["settings"]["lang_steps"] == 4  # the smoke preset's phase-1 steps
        stored = json.loads((trained["runs"] / record["run_id"] / "results.json").read_text())
        assert stored["predictions"] == record["predictions"] and stored["gold"] == record["gold"]
    assert with_lang["gold"] == without["gold"]  # data order
    gold_names = [with_lang["metrics"]["labels"][g] for g in with_lang["gold"]]
    with (Path(shared_data) / "nusax" / "sentiment" / "acehnese" / "valid.csv").open(newline="") as f:
        assert gold_names == [row["label"] for row in csv.DictReader(f)]
    assert with_lang["lang_sft_language"] == "ace" and without["lang_sft_language"] is None


def test_lang_steps_of_task_sfts_trained_before_it_was_recorded(trained, tmp_path):
    from deftx.experiment.evaluation import lang_steps_of

    task = json.loads((Path(trained["task"]["sft"]) / "sft.json").read_text())
    assert task["trained_with"][0]["phase1_steps"] == 4
    older = {**task, "trained_with": [{k: v for k, v in task["trained_with"][0].items() if k != "phase1_steps"}]}
    assert lang_steps_of(older, None) == 4  # read from the language SFT's manifest
    gone = {**older, "trained_with": [{**older["trained_with"][0], "path": str(tmp_path / "deleted")}]}
    assert lang_steps_of(gone, None) is None
    assert lang_steps_of({"method": "full-ft"}, None) is None
    assert lang_steps_of(gone, {"training": {"phase1_steps": 300}}) == 300  # the applied language SFT's


def test_a_language_sft_run_records_the_base_models_held_out_masked_lm(trained):
    record = json.loads((Path(trained["ace"]["run"]) / "run.json").read_text())
    base = record["summary"]["base_eval"]
    assert set(base) == {"mlm_loss", "mlm_accuracy", "perplexity"}
    assert json.loads((Path(trained["ace"]["sft"]) / "sft.json").read_text())["metrics"]["base_eval"] == base
    events = [json.loads(l) for l in (Path(trained["ace"]["run"]) / "metrics.jsonl").read_text().splitlines()]
    first_eval = next(e for e in events if e["event"] == "eval")
    assert (first_eval["phase"], first_eval["step"], first_eval["metrics"]) == (1, 0, base)
    assert "base_eval" not in json.loads((Path(trained["task"]["run"]) / "run.json").read_text())["summary"]


def test_evaluate_lm_scores_the_held_out_text_the_language_sft_held_out(trained, tiny_model_dir, shared_data):
    common = ["evaluate-lm", "--lang", "ace", "--model", tiny_model_dir, "--data-dir", shared_data,
              "--preset", "smoke", "--json"]
    own = json.loads(run(*common, "--sft", trained["ace"]["sft"]).stdout)
    record = json.loads((Path(trained["ace"]["run"]) / "run.json").read_text())
    assert own["base"] == record["summary"]["base_eval"]  # the same blocks, the same masking
    final = record["summary"]["phase2"]["eval"]
    for name in ("mlm_loss", "mlm_accuracy"):  # theta0 + phi is the trained model
        assert own["with_sft"][name] == pytest.approx(final[name], abs=1e-4)
    assert own["sft_language"] == "ace" and own["sft_phase1_steps"] == 4 and own["held_out_blocks"] >= 1
    control = json.loads(run(*common, "--sft", trained["ind"]["sft"]).stdout)
    assert control["base"] == own["base"] and control["sft_language"] == "ind"
    assert control["with_sft"] != own["with_sft"]
    human = run(*common[:-1])
    assert "base model" in human.stdout and "accuracy" in human.stdout and "language SFT" not in human.stdout
    other_length = json.loads(run(*common, "--max-length", "16").stdout)
    assert other_length["base"] != own["base"]
    task = run(*common, "--sft", trained["task"]["sft"], ok=False)
    one_error_line(task, 5, "not a language SFT")


def test_compose_writes_a_loadable_model(trained, tmp_path):
    from transformers import AutoModelForSequenceClassification

    out = tmp_path / "composed"
    run("compose", "--model", _model(trained), "--sft", trained["ace"]["sft"], "--sft", trained["task"]["sft"], "--out", out)
    model = AutoModelForSequenceClassification.from_pretrained(out)
    assert model.config.id2label == {0: "negative", 1: "neutral", 2: "positive"}
    assert (out / "deftx_compose.json").is_file() and (out / "tokenizer_config.json").is_file()
    again = run("compose", "--model", _model(trained), "--sft", trained["ace"]["sft"], "--out", out, ok=False)
    one_error_line(again, 2, "already exists")


def test_compose_of_a_language_sft_saves_the_untied_frozen_decoder_it_was_trained_with(trained, tmp_path):
    import torch
    from transformers import AutoModelForMaskedLM

    from deftx.sft.diff import SparseDiff

    out = tmp_path / "composed-mlm"
    run("compose", "--model", _model(trained), "--sft", trained["ace"]["sft"], "--out", out)
    base = AutoModelForMaskedLM.from_pretrained(_model(trained))
    composed = AutoModelForMaskedLM.from_pretrained(out)
    theta0 = base.get_input_embeddings().weight.detach().clone()
    SparseDiff.load(trained["ace"]["sft"]).apply(base)  # the tied base: the decoder moves with the embeddings
    adapted = composed.get_input_embeddings().weight
    decoder = composed.get_output_embeddings().weight
    assert not composed.config.tie_word_embeddings and decoder.data_ptr() != adapted.data_ptr()
    assert not torch.equal(adapted, theta0), "the language SFT adapts the word embeddings"
    assert torch.equal(adapted, base.get_input_embeddings().weight)
    assert torch.equal(decoder, theta0), "the decoder stays at theta0, as in training"


def test_a_composed_language_sft_loads_in_plain_transformers_with_every_key_and_deftx_logits(tiny_model_dir, shared_data,
                                                                                            tmp_path):
    import shutil

    import torch
    from transformers import AutoModelForMaskedLM

    from deftx.model import load_model, untie_output_embeddings
    from deftx.sft.diff import SparseDiff

    model = tmp_path / "warmed"  # a head_warmup.json: the masked-LM head (its output bias) trains with the SFT
    shutil.copytree(tiny_model_dir, model)
    (model / "head_warmup.json").write_text("{}")
    done = json.loads(run("train-lang", "--lang", "ace", "--model", model, "--data-dir", shared_data,
                          "--runs-dir", tmp_path / "runs", *SMOKE, "--json").stdout)
    sft = SparseDiff.load(done["sft"])
    bias = [v for k, v in sft.head.items() if k.endswith("predictions.bias")]
    assert bias and bias[0].abs().max() > 0, "the SFT trained the output bias"
    out = tmp_path / "composed-mlm"
    run("compose", "--model", model, "--sft", done["sft"], "--out", out)
    composed, info = AutoModelForMaskedLM.from_pretrained(out, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    own, _ = load_model(model, "mlm")  # deftx's own model, as training and evaluate-lm build it
    untie_output_embeddings(own)
    sft.apply(own)
    ids = torch.tensor([[2, 20, 31, 42, 53, 64, 3]])
    composed.eval(), own.eval()
    with torch.no_grad():
        assert torch.allclose(composed(input_ids=ids).logits, own(input_ids=ids).logits, atol=1e-5)


def _model(trained):
    return json.loads((Path(trained["ace"]["run"]) / "run.json").read_text())["base_model"]


def test_denoise_then_phase_two_only(trained, tmp_path, shared_data):
    run_dir = Path(trained["ace"]["run"])
    r = run("denoise", "--diff", run_dir, "--k", "0.02", "--rank-rule", "energy:0.8", "--out", tmp_path / "m.safetensors", "--json")
    result = json.loads(r.stdout)
    assert result["matrices"] and all(m["energy_kept"] >= 0.8 - 1e-6 for m in result["matrices"] if m["rank"])
    assert 0 <= result["overlap_with_magnitude"] <= 1
    human = run("denoise", "--diff", run_dir / "phase1_diff.safetensors", "--k", "100", "--rank-rule", "rank:2")
    assert "overlap with the magnitude" in human.stdout and "energy kept" in human.stdout
    r = run("train-lang", "--lang", "ace", "--mask", tmp_path / "m.safetensors", "--model", _model(trained),
            "--data-dir", shared_data, "--runs-dir", trained["runs"], "--json", *SMOKE)
    out = json.loads(r.stdout)
    assert out["entries"] == result["k"]
    events = [json.loads(l) for l in (Path(out["run"]) / "metrics.jsonl").read_text().splitlines()]
    assert [e["phase"] for e in events if e["event"] == "phase"] == [2]


def test_info_and_datasets(trained, shared_data):
    r = run("info", trained["task"]["sft"])
    assert "task" in r.stdout and "smsa" in r.stdout
    run_id = Path(trained["task"]["run"]).name
    assert f"training run: {run_id} (finished, " in r.stdout  # its run.json, read through the run model
    r = run("datasets", "--data-dir", shared_data, "--json")
    listing = json.loads(r.stdout)
    assert "americasnli" in listing["tasks"] and listing["local"]


def test_info_says_what_the_denoising_kept(trained):
    """A DeFT-X SFT: the rank range over its matrices and the share of the magnitude mask, from its record."""
    selection = json.loads((Path(trained["ace"]["sft"]) / "sft.json").read_text())["selection"]
    ranks = [d["rank"] for d in selection["denoise"]]
    line = next(l for l in run("info", trained["ace"]["sft"]).stdout.splitlines() if "denoised:" in l)
    assert f"rank {min(ranks)}-{max(ranks)} " in line and f"over {len(ranks)} matrices" in line
    assert f"{selection['overlap_with_magnitude']:.1%} of the magnitude mask kept" in line
    assert "energy kept 0." in line or "energy kept 1.000" in line


def test_progress_lines_say_what_the_denoising_kept(trained, capsys):
    """The selection's progress line (plain lines, as in a log) says what ``deftx info`` says later."""
    from deftx_cli.output import TrainingProgress

    events = [json.loads(l) for l in (Path(trained["ace"]["run"]) / "metrics.jsonl").read_text().splitlines()]
    selection = next(e for e in events if e["event"] == "selection")
    TrainingProgress("language SFT ace", bars=False)("selection", selection)
    progress = capsys.readouterr().err
    line = next(l for l in run("info", trained["ace"]["sft"]).stdout.splitlines() if "denoised:" in l)
    assert progress.startswith(f"language SFT ace: selected K = {selection['k']:,} of ")
    assert "; denoised: " + line.split("denoised: ", 1)[1].strip() in progress.replace("\n", "")


def test_help_shows_a_worked_example():
    for command in ("train-lang", "train-task", "denoise", "compose", "evaluate", "evaluate-lm", "transfer", "tui", "info"):
        r = run(command, "--help")
        assert "Example" in r.stdout and "deftx " + command in r.stdout.replace("\n", " ")


# ------------------------------------------------------------------ bad input


def test_missing_paths(tiny_model_dir, tmp_path):
    r = run("evaluate", "--task", "nusax-senti", "--lang", "ace", "--task-sft", tmp_path / "nope", ok=False)
    one_error_line(r, 3, "does not exist")
    r = run("train-lang", "--lang", "ace", "--model", tmp_path / "no-model", "--text", __file__, *SMOKE, ok=False)
    one_error_line(r, 3, "does not exist")


def _path_params():
    """(command, parameter name, its declaration) for every path a command takes."""
    import typer

    group = typer.main.get_command(app)
    for name, command in group.commands.items():
        for param in command.params:
            info = param.type_descriptor.parameter_info
            if "Path" in str(param.type_descriptor.annotation):
                yield name, param.name, info


def test_no_path_is_checked_by_the_option_parser():
    # Typer's own checks (exists, file_okay, dir_okay) fail with its framed box and exit 2
    checked = [f"{name} {param}" for name, param, info in _path_params()
               if info.exists or not info.file_okay or not info.dir_okay]
    assert not checked, checked
    assert len(list(_path_params())) >= 15


# every path that must exist, per command, with the other arguments the command needs
MISSING = {
    "train-lang": (["--lang", "ind"], ["--text", "--mask"]),
    "train-task": (["--task", "smsa", "--source-lang", "ind"], ["--lang-sft", "--train-file", "--validation-file", "--mask"]),
    "evaluate": (["--task", "nusax-senti", "--lang", "ace"], ["--task-sft", "--lang-sft", "--eval-file"]),
    "evaluate-lm": (["--lang", "ace"], ["--sft", "--text"]),
    "compose": (["--out", "composed"], ["--sft"]),
    "denoise": (["--k", "0.1"], ["--diff"]),
    "info": ([], [None]),
    "predict": (["saya suka film ini"], ["--task-sft", "--lang-sft"]),
}


@pytest.mark.parametrize("command,option", [(c, o) for c, (_, opts) in MISSING.items() for o in opts])
def test_a_missing_path_is_an_input_error_for_every_command(command, option, tmp_path):
    required, _ = MISSING[command]
    missing = tmp_path / "missing"
    given = [option, missing] if option else [missing]
    if command in ("evaluate", "predict") and option != "--task-sft":
        given += ["--task-sft", tmp_path]
    r = run(command, *required, *given, ok=False)
    one_error_line(r, 3, "does not exist", str(missing))


def test_a_file_where_a_directory_is_wanted_is_an_input_error(tmp_path):
    a_file = tmp_path / "f.txt"
    a_file.write_text("x")
    one_error_line(run("info", a_file, ok=False), 3, "is a file")
    one_error_line(run("results", "--runs-dir", a_file, ok=False), 3, "--runs-dir", "not a directory")
    empty = tmp_path / "empty"
    empty.mkdir()  # --text takes directories (every file below), but not one without files
    one_error_line(run("train-lang", "--lang", "ind", "--text", empty, ok=False), 3, str(empty), "a directory without files")


def test_unknown_language_and_task_suggest_close_names(tiny_model_dir, shared_data):
    r = run("train-lang", "--lang", "acx", "--model", tiny_model_dir, "--data-dir", shared_data, *SMOKE, ok=False)
    one_error_line(r, 3, "'ace'")
    r = run("train-task", "--task", "nusax-sent", "--source-lang", "ind", "--model", tiny_model_dir,
            "--data-dir", shared_data, *SMOKE, ok=False)
    one_error_line(r, 3, "nusax-senti")


def test_fingerprint_mismatch(trained, other_tiny_model_dir, shared_data):
    r = run("evaluate", "--task", "nusax-senti", "--lang", "ace", "--task-sft", trained["task"]["sft"],
            "--model", other_tiny_model_dir, "--data-dir", shared_data, "--runs-dir", trained["runs"], ok=False)
    one_error_line(r, 5, "trained on")


def test_corrupt_sft(trained, tmp_path):
    import shutil

    copy = tmp_path / "sft"
    shutil.copytree(trained["ace"]["sft"], copy)
    data = (copy / "diff.safetensors").read_bytes()
    (copy / "diff.safetensors").write_bytes(data[:100])
    r = run("info", copy, ok=False)
    one_error_line(r, 5, "corrupt or truncated")


@pytest.mark.parametrize("k", ["0", "-5", "1e12", "lots"])
def test_bad_k(tiny_model_dir, tmp_path, k):
    text = tmp_path / "t.txt"
    text.write_text("saya suka film ini\n" * 50)
    r = run("train-lang", "--lang", "ind", "--k", k, "--model", tiny_model_dir, "--text", text,
            "--runs-dir", tmp_path / "runs", *SMOKE, ok=False)
    one_error_line(r, 2, "K")
    leftovers = [p for p in (tmp_path / "runs").glob("*/sft")]
    assert not leftovers, "no SFT is written for a failed run"


@pytest.mark.parametrize("k", ["0", "-5", "lots", "150%"])
def test_bad_k_fails_when_the_command_starts(tmp_path, k):
    # before the model is read: here there is none
    r = run("train-lang", "--lang", "ind", "--k", k, "--model", tmp_path / "no-model", "--text", __file__,
            "--preset", "smoke", "--quiet", ok=False)
    one_error_line(r, 2, "K")


def test_k_larger_than_the_model_fails_before_any_training(tiny_model_dir, tmp_path):
    text = tmp_path / "t.txt"
    text.write_text("saya suka film ini\n" * 50)
    r = run("train-lang", "--lang", "ind", "--k", "1e12", "--model", tiny_model_dir, "--text", text,
            "--runs-dir", tmp_path / "runs", *SMOKE, ok=False)
    one_error_line(r, 2, "larger than")
    events = [json.loads(line)["event"] for f in (tmp_path / "runs").glob("*/metrics.jsonl")
              for line in f.read_text().splitlines()]
    assert "phase" not in events and "train" not in events, events


@pytest.mark.parametrize("rule", ["energy:1.5", "rank:0", "svd:3", "energy"])
def test_malformed_rank_rule(tiny_model_dir, tmp_path, rule):
    text = tmp_path / "t.txt"
    text.write_text("saya suka film ini\n" * 50)
    r = run("train-lang", "--lang", "ind", "--rank-rule", rule, "--model", tiny_model_dir, "--text", text, *SMOKE, ok=False)
    one_error_line(r, 2, "rank rule")


def test_bad_data_files(tiny_model_dir, tmp_path):
    missing_col = tmp_path / "missing.csv"
    missing_col.write_text("id,text\n1,bagus sekali\n")
    r = run("train-task", "--task", "smsa", "--source-lang", "ind", "--train-file", missing_col,
            "--model", tiny_model_dir, *SMOKE, ok=False)
    one_error_line(r, 4, "label")
    bad_label = tmp_path / "bad.csv"
    bad_label.write_text("text,label\nbagus sekali,positive\njelek,very positive\n")
    r = run("train-task", "--task", "smsa", "--source-lang", "ind", "--train-file", bad_label,
            "--model", tiny_model_dir, *SMOKE, ok=False)
    one_error_line(r, 4, "very positive")
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    r = run("train-lang", "--lang", "ind", "--text", empty, "--model", tiny_model_dir, *SMOKE, ok=False)
    one_error_line(r, 4)


def test_task_sft_labels_must_match_the_evaluation_set(trained, shared_data):
    r = run("evaluate", "--task", "americasnli", "--lang", "quy", "--task-sft", trained["task"]["sft"],
            "--data-dir", shared_data, "--runs-dir", trained["runs"], ok=False)
    one_error_line(r, 5, "labels")


@pytest.mark.slow
def test_ctrl_c_marks_the_run_interrupted_and_leaves_no_sft(tiny_model_dir, tmp_path):
    text = tmp_path / "t.txt"
    text.write_text("saya suka film ini sangat bagus\n" * 400)
    runs = tmp_path / "runs"
    env = {**os.environ, "DEFTX_RUNS_DIR": str(runs), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "deftx_cli.app", "train-lang", "--lang", "ind", "--text", str(text), "--model",
         str(tiny_model_dir), "--preset", "smoke", "--phase1-steps", "100000", "--device", "cpu"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True,
        # a shell's background job ignores SIGINT, and children inherit that: give the child the default
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.time() + 60
    while time.time() < deadline:
        metrics = list(runs.glob("*/metrics.jsonl"))
        if metrics and metrics[0].read_text().count('"train"') >= 2:
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "deftx: error: interrupted" in err and "Traceback" not in err
    run_dir = next(runs.iterdir())
    assert json.loads((run_dir / "run.json").read_text())["status"] == "interrupted"
    assert not (run_dir / "sft").exists()
    assert not [p for p in run_dir.iterdir() if p.name.startswith(".")], "no temporary files left"


@pytest.mark.parametrize("option,code,needle", [
    (["--methods", "lt-sft,deft-x"], 3, "methods"), (["--baselines", "no-lang"], 3, "baseline"),
    (["--split", "dev"], 3, "split"), (["--k-lang", "-5"], 2, "K"), (["--rank-rule", "rank:0"], 2, "rank rule"),
])
def test_transfer_checks_its_settings_before_anything_runs(tmp_path, option, code, needle):
    r = run("transfer", "--targets", "ace", *option, "--model", tmp_path / "no-model", "--runs-dir", tmp_path / "runs",
            ok=False)
    one_error_line(r, code, needle)
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_transfer_shares_language_sfts_across_seeds_and_resumes(tiny_model_dir, shared_data, tmp_path):
    runs = tmp_path / "runs"
    common = ["transfer", "--targets", "ace", "--lang-seed", "0", "--baselines", "no-lang-sft,full-ft", "--split", "valid",
              "--model", tiny_model_dir, "--data-dir", shared_data, "--runs-dir", runs, "--preset", "smoke", "--json"]
    args = [*common, "--seed", "0", "--seed", "1"]
    first = json.loads(run(*args, "--quiet").stdout)
    systems = {(r["system"], r["seed"]) for r in first["records"]}
    assert systems == {(s, seed) for s in ("lt-sft", "deftx", "no-lang-sft", "full-ft") for seed in (0, 1)}
    names = sorted(p.name for p in runs.iterdir() if p.is_dir())
    lang_runs = [n for n in names if n.startswith("xfer-lang-")]
    # language SFTs once (seed 0) for ind and ace, per method; task SFTs per seed
    assert len(lang_runs) == 4 and all("-s0-" in n for n in lang_runs)
    assert len([n for n in names if n.startswith("xfer-task-")]) == 6
    [table] = first["tables"]
    assert list(table["systems"]) == ["lt-sft", "deftx", "no-lang-sft", "full-ft"]
    assert all(row["cells"]["deftx"]["n"] == 2 for row in table["rows"])
    again = run(*args)
    assert "training" not in again.stderr and again.stderr.count("cached") >= 4 + 6 + 8
    assert json.loads(again.stdout)["tables"] == first["tables"]
    assert sorted(p.name for p in runs.iterdir() if p.is_dir()) == names
    # an ablation of the DeFT-X rank rule retrains only DeFT-X; LT-SFT and full FT come from the cache
    ablation = run(*common, "--seed", "0", "--rank-rule", "energy:0.5")
    trained_now = [l for l in ablation.stderr.splitlines() if l.endswith(": training")]
    assert trained_now and all("(DeFT-X)" in l for l in trained_now), ablation.stderr
    assert len(trained_now) == 3  # language SFTs ind and ace, the task SFT
    assert "full FT): cached" in ablation.stderr
    assert "phase 1 shared with LT-SFT" in ablation.stderr
    records = json.loads(ablation.stdout)["records"]
    by_system = {r["system"]: r for r in records}
    assert by_system["deftx"]["settings"]["rank_rule"] == "energy:0.5"
    assert by_system["lt-sft"]["metrics"] == next(r for r in first["records"] if r["system"] == "lt-sft" and r["seed"] == 0)["metrics"]


@pytest.mark.slow
def test_transfer_adds_a_method_to_cached_language_sfts_that_kept_no_phase1_difference(tiny_model_dir, shared_data, tmp_path):
    runs = tmp_path / "runs"
    # the source language as the target: one language SFT per method, the least training that shows it
    common = ["transfer", "--targets", "ind", "--baselines", "", "--split", "valid", "--model", tiny_model_dir,
              "--data-dir", shared_data, "--runs-dir", runs, "--preset", "smoke", "--json"]
    run(*common, "--methods", "lt-sft", "--quiet")  # alone: no phase-1 difference is kept
    both = run(*common, "--methods", "lt-sft,deftx")
    assert {r["system"] for r in json.loads(both.stdout)["records"]} == {"lt-sft", "deftx"}
    assert "language SFT ind (LT-SFT): cached" in both.stderr
    assert "language SFT ind (DeFT-X): training" in both.stderr and "phase 1 shared" not in both.stderr
    assert "step 2 of 6: [seed 0] language SFT ind (DeFT-X) ..." in both.stderr


@pytest.mark.slow
def test_transfer_task_budget_options(tiny_model_dir, shared_data, tmp_path):
    runs = tmp_path / "runs"
    result = run("transfer", "--targets", "ace", "--methods", "lt-sft", "--baselines", "", "--split", "valid",
                 "--preset", "smoke", "--task-preset", "quick", "--task-epochs", "0.02", "--task-max-examples", "0",
                 "--lang-steps", "3",
                 "--model", tiny_model_dir, "--data-dir", shared_data, "--runs-dir", runs, "--json", "--quiet")
    [record] = json.loads(result.stdout)["records"]
    lang_runs = [json.loads((p / "run.json").read_text()) for p in runs.iterdir() if p.name.startswith("xfer-lang-")]
    assert len(lang_runs) == 2  # ind and ace: 3 + 3 masked-LM steps instead of the smoke preset's 4 + 4
    assert all(r["config"]["phase1_steps"] == r["config"]["phase2_steps"] == 3 for r in lang_runs)
    assert record["settings"]["preset"] == "quick" and record["settings"]["lang_preset"] == "smoke"
    assert record["settings"]["task_budget"] == "0.02+0.02 ep" and record["settings"]["task_examples"] == "all"
    [task_run] = [p for p in runs.iterdir() if p.name.startswith("xfer-task-")]
    info = json.loads((task_run / "run.json").read_text())
    config = info["config"]
    # every SmSA training example (no preset cap), 0.02 epochs per phase, the quick preset's batch
    assert config["max_examples"] is None and config["phase1_epochs"] == config["phase2_epochs"] == 0.02
    assert config["phase1_steps"] is None and config["batch_size"] == 16
    rows = len((Path(shared_data) / "smsa" / "train.nusax_filtered.tsv").read_text().splitlines())  # no header line
    assert abs(info["total_steps"]["phase1"] - rows * 0.02 / 16) <= 1, (info["total_steps"], rows)


@pytest.mark.slow
def test_transfer_control_lang_evaluates_each_target_with_another_languages_sft(tiny_model_dir, shared_data, tmp_path):
    runs = tmp_path / "runs"
    result = run("transfer", "--targets", "ace", "--methods", "lt-sft", "--baselines", "no-lang-sft", "--split", "valid",
                 "--control-lang", "ind", "--preset", "smoke", "--model", tiny_model_dir, "--data-dir", shared_data,
                 "--runs-dir", runs, "--json", "--quiet")
    document = json.loads(result.stdout)
    by_system = {r["system"]: r for r in document["records"]}
    assert list(by_system) == ["lt-sft", "no-lang-sft", "other-lang-sft"]
    control, own = by_system["other-lang-sft"], by_system["lt-sft"]
    assert control["settings"]["control_lang"] == "ind" and control["lang_sft_language"] == "ind"
    assert control["task_sft"] == own["task_sft"] and control["lang_sft"] != own["lang_sft"]
    assert own["lang_sft_language"] == "ace" and "control_lang" not in own["settings"]
    assert {r["settings"]["lang_steps"] for r in document["records"]} == {4}
    # the source's SFT is the control: no training beyond ind's and ace's language SFTs
    assert len([p for p in runs.iterdir() if p.name.startswith("xfer-lang-")]) == 2
    [table] = document["tables"]
    assert list(table["systems"]) == ["lt-sft", "deftx", "no-lang-sft", "other-lang-sft"]


def test_task_sft_is_reproducible_from_its_seed_within_one_process(trained, tiny_model_dir, shared_data, tmp_path):
    # The classifier is initialised when the model loads: it must follow --seed, not what ran before.
    import torch
    from safetensors.torch import load_file

    common = ["train-task", "--task", "smsa", "--source-lang", "ind", "--lang-sft", trained["ind"]["sft"],
              "--model", tiny_model_dir, "--data-dir", shared_data, "--runs-dir", tmp_path, *SMOKE, "--seed", "3"]
    heads = []
    for name in ("first", "second"):
        torch.rand(1000)  # move the global generator on, as training before it would
        run(*common, "--run-id", name)
        heads.append(load_file(tmp_path / name / "sft" / "head.safetensors"))
    assert heads[0].keys() == heads[1].keys() and any("classifier" in k for k in heads[0])
    for key in heads[0]:
        assert torch.equal(heads[0][key], heads[1][key]), key


def test_task_examples_are_tokenised_once_and_listed_by_deftx_cache(tiny_model_dir, shared_data, tmp_path):
    common = ["--task", "smsa", "--source-lang", "ind", "--model", tiny_model_dir, "--data-dir", shared_data,
              "--runs-dir", tmp_path / "runs", *SMOKE, "--json"]
    first = json.loads(run("train-task", *common).stdout)
    second = json.loads(run("train-task", *common, "--method", "full-ft").stdout)  # same examples, another method
    stages = []
    for done in (first, second):
        events = [json.loads(l) for l in (Path(done["run"]) / "metrics.jsonl").read_text().splitlines()]
        stages.append([e["stage"] for e in events if e["event"] == "prepare"])
    assert stages == [["done"], ["cached"]]
    data = json.loads((Path(second["run"]) / "run.json").read_text())["data"]
    assert data["examples"] > 0 and data["tokens"] > data["examples"] and data["cache_key"]
    listed = json.loads(run("cache", "--json").stdout)
    kinds = {e["key"]: e for e in listed["entries"]}
    train = kinds[data["cache_key"]]
    assert train["kind"] == "labelled" and train["examples"] == data["examples"] and "smsa" in train["source"]
    assert len(kinds) == 2  # the training examples and the validation set
    table = run("cache").stdout
    assert data["cache_key"] in table and "examples" in table
    run("cache", "--clear", "--key", data["cache_key"])
    assert [e["key"] for e in json.loads(run("cache", "--json").stdout)["entries"]] != [] and \
        data["cache_key"] not in run("cache").stdout
    one_error_line(run("cache", "--clear", "--key", data["cache_key"], ok=False), 2, "no cache entry")


def test_text_from_a_data_set_folder_or_an_unreachable_hub(tiny_model_dir, tmp_path, monkeypatch):
    folder = tmp_path / "ds"
    folder.mkdir()
    rows = [{"content": f"film ini sangat bagus {i} saya suka makanan enak", "id": i} for i in range(120)]
    (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    common = ["train-lang", "--lang", "ace", "--model", tiny_model_dir, "--runs-dir", tmp_path / "runs", *SMOKE]
    one_error_line(run(*common, "--text-dataset", folder, ok=False), 4, "no column 'text' (it has content, id)",
                   "--text-column")
    done = json.loads(run(*common, "--text-dataset", folder, "--text-column", "content", "--json").stdout)
    data = json.loads((Path(done["run"]) / "run.json").read_text())["data"]
    assert data["lines_kept"] == 120 and f"data set folder {folder}" in data["sources"][0]
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    one_error_line(run(*common, "--text-dataset", "wikimedia/wikipedia", "--text-config", "20231101.ace", ok=False),
                   3, "hub data set wikimedia/wikipedia/20231101.ace", "out of reach (offline)")


@pytest.mark.parametrize("flag,fast,expected", [([], True, "bf16"), ([], False, "no"),
                                                (["--mixed-precision", "no"], True, "no")])
def test_the_cpu_presets_train_in_bf16_where_the_cpu_has_it_and_say_so(flag, fast, expected, tiny_model_dir,
                                                                      shared_data, tmp_path, monkeypatch):
    """No --mixed-precision: the preset's auto, bf16 on a CPU with AVX512-BF16/AMX, else float32;
    --mixed-precision no is exact float32 anywhere. The SFT and deftx info say what ran."""
    from deftx.training import distributed

    monkeypatch.setattr(distributed, "cpu_has_fast_bf16", lambda: fast)
    r = run("train-lang", "--lang", "ace", "--method", "lt-sft", "--model", tiny_model_dir, "--data-dir", shared_data,
            "--runs-dir", tmp_path, "--json", *SMOKE, *flag)
    sft, run_dir = json.loads(r.stdout)["sft"], Path(json.loads(r.stdout)["run"])
    assert json.loads((Path(sft) / "sft.json").read_text())["training"]["mixed_precision"] == expected
    record = json.loads((run_dir / "run.json").read_text())
    assert record["config"]["mixed_precision"] == record["resume_settings"]["config"]["mixed_precision"] == expected
    info = run("info", sft).stdout
    assert ("bf16 autocast" in info) == (expected == "bf16")
