"""The learning curve over language-SFT budgets (deftx.analysis.curve), the paired table (deftx.analysis.paired) and
``deftx results --curve / --paired / --plot``, from synthetic result records and run.json files."""

import csv
import io
import json

import pytest
from typer.testing import CliRunner

from deftx.analysis.curve import build_curves, read_runs
from deftx.metrics import classification_metrics
from deftx.analysis.paired import build_paired_tables
from deftx_cli.app import app

runner = CliRunner()
LABELS = ["negative", "neutral", "positive"]
GOLD = [0, 1, 2] * 10  # 30 sentences


def predictions(right: int, shift: int = 0) -> list[int]:
    """Right on the first ``right`` sentences (after a rotation by ``shift``), wrong on the others."""
    order = [(i + shift) % len(GOLD) for i in range(len(GOLD))]
    out = [(g + 1) % 3 for g in GOLD]
    for i in order[:right]:
        out[i] = GOLD[i]
    return out


def write_record(runs, system, language, seed, preds, *, steps=None, split="valid", control=None, k_task=0.05,
                 with_predictions=True, rank_rule=None):
    run_id = f"eval-{system}-{language}-{split}-{steps}-k{k_task}-s{seed}" + (f"-{rank_rule}" if rank_rule else "")
    metrics = classification_metrics(preds, GOLD, LABELS)
    settings = {"k_task": k_task, "preset": "cpu", "task_budget": "3000 examples"}
    if rank_rule is not None:
        settings["lang_rank_rule"] = rank_rule
    if steps is not None:
        settings["lang_steps"] = steps
    if control is not None:
        settings["control_lang"] = control
    record = {"run_id": run_id, "task": "nusax-senti", "language": language, "source_language": "ind",
              "split": split, "system": system, "base_model": "/models/me5-small-mlm", "seed": seed,
              "metric": "macro_f1", "metrics": metrics, "settings": settings,
              "created_at": "2026-12-01T10:00:00+00:00"}
    if with_predictions:
        record.update(predictions=preds, gold=GOLD)
    (runs / run_id).mkdir(parents=True)
    (runs / run_id / "results.json").write_text(json.dumps(record))
    return metrics["macro_f1"]


def write_language_run(runs, language, steps, seed, losses, accuracies, *, status="finished", method="lt-sft"):
    run_id = f"lang-{language}-{method}-{steps}-s{seed}-{status}"
    evals = [{"mlm_loss": loss, "mlm_accuracy": acc, "perplexity": 2.0 ** loss} for loss, acc in zip(losses, accuracies)]
    record = {"format_version": 1, "run_id": run_id, "kind": "language", "method": method,
              "languages": {"target": language}, "seed": seed, "status": status,
              "started_at": "2026-12-01T09:00:00+00:00", "config": {"phase1_steps": steps, "phase2_steps": steps},
              "summary": {"base_eval": evals[0], "phase1": {"steps": steps, "eval": evals[1]},
                          "phase2": {"steps": steps, "eval": evals[2]}, "seconds": 10.0}}
    (runs / run_id).mkdir(parents=True)
    (runs / run_id / "run.json").write_text(json.dumps(record))


def fill_curve(runs, lang_runs=None):
    """mad: at 60 steps its own SFT equals no SFT; at 300 it is right far more often (and the control
    sits between). min: own = none at 60 only."""
    lang_runs = lang_runs or runs
    for seed in (0, 1):
        none = predictions(12, shift=seed)
        write_record(runs, "no-lang-sft", "mad", seed, none, steps=60)
        write_record(runs, "lt-sft", "mad", seed, none, steps=60)
        write_record(runs, "no-lang-sft", "mad", seed, predictions(12, shift=seed), steps=300)
        write_record(runs, "lt-sft", "mad", seed, predictions(28, shift=seed), steps=300)
        write_record(runs, "other-lang-sft", "mad", seed, predictions(16, shift=seed), steps=300, control="jav")
        write_record(runs, "lt-sft", "min", seed, predictions(15), steps=60)
        write_record(runs, "no-lang-sft", "min", seed, predictions(15), steps=60)
    write_record(runs, "lt-sft", "mad", 0, predictions(5), steps=300, k_task=0.5)  # other settings: left out
    write_record(runs, "lt-sft", "mad", 0, predictions(5))  # no budget: not on the curve
    # masked-LM scores of the language SFTs (base, phase 1, phase 2)
    write_language_run(lang_runs, "mad", 60, 0, [8.0, 7.0, 7.2], [0.05, 0.10, 0.09])
    write_language_run(lang_runs, "mad", 60, 1, [8.0, 6.0, 6.2], [0.05, 0.12, 0.11])
    write_language_run(lang_runs, "mad", 300, 0, [8.0, 5.0, 5.5], [0.05, 0.20, 0.18])
    write_language_run(lang_runs, "mad", 300, 1, [8.0, 1.0, 1.0], [0.05, 0.9, 0.9], status="failed")  # not counted
    write_language_run(lang_runs, "ind", 60, 0, [7.0, 6.5, 6.6], [0.06, 0.13, 0.12])
    write_language_run(lang_runs, "jav", 300, 0, [7.5, 5.9, 6.0], [0.04, 0.15, 0.14])
    write_language_run(lang_runs, "mad", 300, 2, [8.0, 1.0, 1.0], [0.05, 0.9, 0.9], method="deftx")  # not LT-SFT


def invoke(*args):
    return runner.invoke(app, ["results", *[str(a) for a in args]])


def test_curve_values_per_language_and_budget(tmp_path):
    fill_curve(tmp_path)
    from deftx.analysis.comparison import read_records

    [curve], skipped = build_curves(read_records(tmp_path), read_runs(tmp_path), resamples=500)
    assert any("without a language-SFT budget" in s for s in skipped)
    assert any("other settings" in n for n in curve.notes)
    rows = {(r.language, r.steps, r.role): r for r in curve.rows}
    assert set(rows) == {("mad", 60, "target"), ("mad", 300, "target"), ("min", 60, "target"),
                         ("ind", 60, "source"), ("jav", 300, "control")}
    flat = rows[("mad", 60, "target")]
    assert flat.own_minus_none.delta == 0 and flat.own_minus_none.seeds == (0, 1)
    assert (flat.own_minus_none.interval.low, flat.own_minus_none.interval.high) == (0.0, 0.0)
    assert flat.lm["phase2"].loss == pytest.approx(6.7) and flat.lm["phase1"].accuracy == pytest.approx(0.11)
    assert flat.lm["base"].loss == pytest.approx(8.0) and flat.lm_runs == 2

    grown = rows[("mad", 300, "target")]
    own = classification_metrics(predictions(28), GOLD, LABELS)["macro_f1"]
    none = classification_metrics(predictions(12), GOLD, LABELS)["macro_f1"]
    assert grown.cells["lt-sft"].n == 2  # the k_task 0.5 record is not averaged in
    assert grown.own_minus_none.interval.above_zero
    assert grown.own_minus_none.delta == pytest.approx(own - none, abs=0.02)
    assert grown.own_minus_control.interval.above_zero and grown.own_minus_control.delta < grown.own_minus_none.delta
    assert grown.lm["phase2"].loss == 5.5 and grown.lm_runs == 1  # the failed run and the DeFT-X run are not counted
    assert curve.first_helpful == {"mad": 300, "min": None}
    assert curve.control_languages == {"mad": ["jav"], "min": []}
    assert rows[("ind", 60, "source")].lm["phase2"].loss == 6.6 and not rows[("ind", 60, "source")].cells


def test_curve_markdown_csv_json_and_several_runs_dirs(tmp_path):
    results, lang = tmp_path / "results", tmp_path / "lang"
    fill_curve(results, lang)
    result = invoke("--runs-dir", results, "--runs-dir", lang, "--curve")
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    assert "### Learning curve · nusax-senti · me5-small-mlm · valid · preset cpu" in out
    mad60 = next(line for line in out.splitlines() if line.startswith("| mad | target | 60 |"))
    assert "| 0.0 [0.0, 0.0] (2) |" in mad60 and "| 8.00 | 6.50 | 6.70 | 5.0 | 11.0 | 10.0 |" in mad60
    assert "- mad: smallest budget where own SFT − no lang SFT has its 95% interval above 0: 300 steps" in out
    assert "- min: smallest budget where own SFT − no lang SFT has its 95% interval above 0: none of the budgets measured" in out
    assert next(l for l in out.splitlines() if l.startswith("| ind | source | 60 |")).count("—") >= 4
    assert "skipped 1 result(s) without a language-SFT budget" in result.stderr

    # the language-SFT runs are found only in the second directory: without it, no masked-LM columns
    alone = invoke("--runs-dir", results, "--curve", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(alone.stdout)))
    assert {r["language"] for r in rows} == {"mad", "min"} and all(r["mlm_loss_phase2"] == "" for r in rows)

    both = invoke("--runs-dir", results, "--runs-dir", lang, "--curve", "--format", "csv")
    rows = {(r["language"], r["lang_steps"]): r for r in csv.DictReader(io.StringIO(both.stdout))}
    assert float(rows[("mad", "60")]["mlm_loss_phase2"]) == pytest.approx(6.7)
    assert float(rows[("mad", "300")]["own_minus_none_low"]) > 0 and rows[("mad", "300")]["own_minus_none_seeds"] == "2"
    document = json.loads(invoke("--runs-dir", results, "--runs-dir", lang, "--curve", "--format", "json").stdout)
    assert document[0]["first_helpful_steps"] == {"mad": 300, "min": None}


def test_plot_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib", reason="the plot extra (deftx[plot]) is not installed")
    fill_curve(tmp_path)
    target = tmp_path / "figures" / "curve.png"
    result = invoke("--runs-dir", tmp_path, "--curve", "--plot", target, "-o", tmp_path / "curve.md")
    assert result.exit_code == 0, result.stderr
    data = target.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    width = int.from_bytes(data[16:20], "big")
    assert 1000 <= width <= 2000
    assert sorted(p.name for p in target.parent.iterdir()) == ["curve.png"]  # no temporary left behind
    assert "wrote the plot of nusax-senti valid" in result.stderr


def test_plot_and_curve_misuse_are_one_error_line(tmp_path):
    fill_curve(tmp_path)
    for args, needle in [(["--plot", tmp_path / "c.png"], "add --curve"),
                         (["--curve", "--paired"], "two different tables"),
                         (["--curve", "--plot", tmp_path / "c.jpg"], "does not end in .png"),
                         (["--curve", "--split", "test"], "no learning-curve results (records with settings.lang_steps) for split test")]:
        result = invoke("--runs-dir", tmp_path, *args)
        assert result.exit_code in (2, 3), result.stderr
        lines = [l for l in result.stderr.splitlines() if l.startswith("deftx: error:")]
        assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
        assert needle in result.stderr


def test_plot_without_matplotlib_says_how_to_install(tmp_path, monkeypatch):
    import sys

    fill_curve(tmp_path)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    result = invoke("--runs-dir", tmp_path, "--curve", "--plot", tmp_path / "c.png")
    assert result.exit_code == 2
    assert "deftx: error: plotting needs matplotlib" in result.stderr and "deftx[plot]" in result.stderr
    assert not (tmp_path / "c.png").exists()


def fill_paired(runs):
    """ace: DeFT-X right on 2 more sentences than LT-SFT for each seed; ban: the same predictions."""
    for seed in range(3):
        write_record(runs, "lt-sft", "ace", seed, predictions(15, shift=seed), split="test")
        write_record(runs, "deftx", "ace", seed, predictions(17, shift=seed), split="test")
        write_record(runs, "no-lang-sft", "ace", seed, predictions(15, shift=seed), split="test")
        write_record(runs, "lt-sft", "ban", seed, predictions(20, shift=seed), split="test")
        write_record(runs, "deftx", "ban", seed, predictions(20, shift=seed), split="test")
    write_record(runs, "full-ft", "ban", 0, predictions(10), split="test", with_predictions=False)


def test_paired_table_values(tmp_path):
    fill_paired(tmp_path)
    from deftx.analysis.comparison import read_records

    [table], skipped = build_paired_tables(read_records(tmp_path), resamples=500)
    assert any("1 result(s) without predictions" in s for s in skipped)
    pairs = {(p.a, p.b): p for p in table.pairs}
    assert set(pairs) == {("deftx", "lt-sft"), ("lt-sft", "no-lang-sft"), ("deftx", "no-lang-sft")}
    dx = pairs[("deftx", "lt-sft")]
    rows = dict(dx.rows)
    assert rows["ban"].delta == 0 and rows["ban"].interval.high == 0.0
    assert rows["ace"].delta > 0 and rows["ace"].seeds == (0, 1, 2)
    assert dx.pooled.delta == pytest.approx(rows["ace"].delta / 2) and dx.pooled.languages == 2
    assert (dx.sign.wins, dx.sign.losses, dx.sign.ties) == (3, 0, 3) and dx.sign.p == pytest.approx(0.25)
    assert [lang for lang, _ in pairs[("lt-sft", "no-lang-sft")].rows] == ["ace"]


def test_paired_table_sets_each_deftx_setting_against_lt_sft_and_deftx(tmp_path):
    """An ablation's DeFT-X setting (a column of its own) is paired with LT-SFT and with DeFT-X's main setting."""
    from deftx.analysis.comparison import read_records

    for seed in range(2):
        write_record(tmp_path, "lt-sft", "ace", seed, predictions(15, shift=seed), split="test")
        write_record(tmp_path, "deftx", "ace", seed, predictions(17, shift=seed), split="test", rank_rule="energy:0.9")
    variant_f1 = write_record(tmp_path, "deftx", "ace", 0, predictions(19), split="test", rank_rule="rank:8")
    [table], _ = build_paired_tables(read_records(tmp_path), resamples=200)
    pairs = {(p.a, p.b): p for p in table.pairs}
    variant = "deftx[lang_rank_rule=rank:8]"
    assert (variant, "lt-sft") in pairs and (variant, "deftx") in pairs
    (language, against_deftx), = pairs[(variant, "deftx")].rows
    main_f1 = classification_metrics(predictions(17), GOLD, LABELS)["macro_f1"]
    assert language == "ace" and against_deftx.seeds == (0,)  # only the seed both have
    assert against_deftx.delta == pytest.approx(variant_f1 - main_f1) and against_deftx.delta > 0
    assert table.labels[variant] == "DeFT-X lang rank:8"


def test_paired_cli_markdown_and_csv(tmp_path):
    fill_paired(tmp_path)
    result = invoke("--runs-dir", tmp_path, "--paired")
    assert result.exit_code == 0, result.stderr
    line = next(l for l in result.stdout.splitlines() if l.startswith("| DeFT-X − LT-SFT"))
    assert line.endswith("| 3/0/3, p=0.25 |") and "| 0.0 [0.0, 0.0] (3) |" in line
    assert "skipped 1 result(s) without predictions" in result.stderr
    rows = list(csv.DictReader(io.StringIO(invoke("--runs-dir", tmp_path, "--paired", "-f", "csv").stdout)))
    overall = next(r for r in rows if r["a"] == "deftx" and r["b"] == "lt-sft" and r["language"] == "all")
    assert overall["wins"] == "3" and float(overall["low"]) <= float(overall["delta"]) <= float(overall["high"])
    none = invoke("--runs-dir", tmp_path, "--paired", "--split", "valid")
    assert none.exit_code == 3 and "no paired results (records with predictions) for split valid" in none.stderr
