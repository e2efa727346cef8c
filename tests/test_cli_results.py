"""``deftx results``: the comparison tables from results.json files, printed and written."""

import csv
import io
import json

from typer.testing import CliRunner

from deftx_cli.app import app

runner = CliRunner()


def write_result(runs, system, lang, seed, value, *, split="test", rank_rule="energy:0.9", task="nusax-senti"):
    run_id = f"eval-{system}-{lang}-{split}-{rank_rule.replace(':', '')}-s{seed}"
    path = runs / run_id
    path.mkdir(parents=True)
    record = {
        "run_id": run_id, "task": task, "language": lang, "split": split, "system": system,
        "base_model": "/models/me5-small-mlm", "seed": seed, "metric": "macro_f1",
        "metrics": {"macro_f1": value, "accuracy": value + 0.1},
        "settings": {"k_lang": 0.0276, "k_task": 0.051, "rank_rule": rank_rule, "tail_keep": 0.0, "preset": "cpu"},
        "created_at": "2026-11-25T10:00:00+00:00",
    }
    (path / "results.json").write_text(json.dumps(record))


def fill(runs):
    # LT-SFT: ace 0.40/0.44 -> 42.0 ± 2.8; DeFT-X: ace 0.45/0.47 -> 46.0 ± 1.4
    for seed, (lt, dx) in enumerate([(0.40, 0.45), (0.44, 0.47)]):
        write_result(runs, "lt-sft", "ace", seed, lt)
        write_result(runs, "deftx", "ace", seed, dx)
        write_result(runs, "lt-sft", "ban", seed, 0.50)
        write_result(runs, "deftx", "ban", seed, 0.48)
    write_result(runs, "deftx", "ace", 0, 0.30, rank_rule="energy:0.8")
    write_result(runs, "lt-sft", "ace", 0, 0.61, split="valid")


def invoke(*args):
    return runner.invoke(app, ["results", *[str(a) for a in args]])


def test_markdown_tables_per_split_with_a_column_per_rank_rule(tmp_path):
    fill(tmp_path)
    result = invoke("--runs-dir", tmp_path)
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    # the test table (more results) first, then valid
    assert out.index("· test") < out.index("· valid")
    test_table = out[: out.index("· valid")]
    header = next(l for l in test_table.splitlines() if l.startswith("| Language"))
    assert header == "| Language | LT-SFT | DeFT-X | Δ | DeFT-X task energy:0.8 |"
    ace = next(l for l in test_table.splitlines() if l.startswith("| ace"))
    assert ace == "| ace | 42.0±2.8 (2) | **46.0±1.4 (2)** | +4.0 | 30.0 (1) |"
    ban = next(l for l in test_table.splitlines() if l.startswith("| ban"))
    assert ban == "| ban | **50.0±0.0 (2)** | 48.0±0.0 (2) | −2.0 | — |"
    average = next(l for l in test_table.splitlines() if l.startswith("| **Average"))
    assert "46.0" in average and "47.0" in average and "+1.0" in average


def test_split_filter_and_csv_holds_every_column(tmp_path):
    fill(tmp_path)
    result = invoke("--runs-dir", tmp_path, "--split", "test", "--format", "csv")
    assert result.exit_code == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [r["language"] for r in rows] == ["ace", "ban", "average"]
    ace = rows[0]
    assert float(ace["lt-sft_mean"]) == 0.42 and ace["lt-sft_n"] == "2"
    assert float(ace["deftx[rank_rule=energy:0.8]_mean"]) == 0.3
    assert ace["better"] == "deftx" and abs(float(ace["delta_deftx_minus_lt-sft"]) - 0.04) < 1e-9
    assert {r["split"] for r in rows} == {"test"}


def test_json_to_a_file(tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    fill(runs)
    out = tmp_path / "tables.json"
    result = invoke("--runs-dir", runs, "--format", "json", "--split", "valid", "-o", out)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""
    [table] = json.loads(out.read_text())
    assert table["split"] == "valid" and table["results"] == 1
    assert table["rows"][0] == {"language": "ace", "cells": {"lt-sft": {"mean": 0.61, "std": None, "n": 1, "collapsed": 0}, "deftx": None},
                                "delta_deftx_minus_lt_sft": None, "better": None}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs", "tables.json"]  # no temporary left behind


def test_no_results_is_one_error_line(tmp_path):
    for args, needle in [(["--runs-dir", tmp_path / "nope"], "no runs directory"),
                         (["--runs-dir", tmp_path], "no evaluation results under")]:
        result = invoke(*args)
        assert result.exit_code != 0
        lines = [l for l in result.stderr.splitlines() if l.startswith("deftx: error:")]
        assert len(lines) == 1 and needle in lines[0], result.stderr
        assert "Traceback" not in result.stderr
    fill(tmp_path)
    result = invoke("--runs-dir", tmp_path, "--task", "americasnli")
    assert result.exit_code != 0 and "no evaluation results for task americasnli" in result.stderr


def test_languages_filter_sets_the_rows_and_the_average(tmp_path):
    fill(tmp_path)
    result = invoke("--runs-dir", tmp_path, "--split", "test", "--languages", "ban", "--format", "csv")
    assert result.exit_code == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [r["language"] for r in rows] == ["ban", "average"]
    # the average is over ban alone now (with ace it would be 46.0 for LT-SFT)
    assert float(rows[1]["lt-sft_mean"]) == 0.5 and float(rows[1]["deftx_mean"]) == 0.48
    both = invoke("--runs-dir", tmp_path, "--split", "test", "-l", "ace", "-l", "ban,xyz", "--format", "csv")
    assert [r["language"] for r in csv.DictReader(io.StringIO(both.stdout))] == ["ace", "ban", "average"]
    none = invoke("--runs-dir", tmp_path, "--languages", "xyz")
    assert none.exit_code != 0 and "no evaluation results for languages xyz" in none.stderr


def test_a_record_that_cannot_be_read_is_named_and_the_table_marked_incomplete(tmp_path):
    fill(tmp_path)
    broken = tmp_path / "eval-deftx-ace-test-energy0.9-s1" / "results.json"
    broken.write_bytes(broken.read_bytes()[:200])  # a truncated record
    shaped = tmp_path / "eval-other" / "results.json"
    shaped.parent.mkdir()
    shaped.write_text(json.dumps({"run_id": "x", "metrics": {"macro_f1": 0.5}}))  # another structure
    result = invoke("--runs-dir", tmp_path, "--split", "test")
    assert result.exit_code == 0, result.stderr
    assert f"cannot read {broken.parent}: results.json is not valid JSON" in result.stderr
    assert f"cannot read {shaped.parent}: results.json: task: field required" in result.stderr
    assert "Note: incomplete: 2 record(s) under" in result.stdout  # the table says so itself
    # DeFT-X ace has one seed left (the truncated seed 1 is not read as a gap without a word)
    assert "| ace | 42.0±2.8 (2) | **45.0 (1)** |" in result.stdout
    strict = invoke("--runs-dir", tmp_path, "--split", "test", "--strict")
    assert strict.exit_code == 4 and strict.stdout == ""
    assert "deftx: error: 2 record(s) under" in strict.stderr and "cannot be read" in strict.stderr
    # a results directory holding only unreadable records: named, then no table
    only = tmp_path / "only"
    (only / "a").mkdir(parents=True)
    (only / "a" / "results.json").write_text("[1, 2]")
    empty = invoke("--runs-dir", only)
    assert empty.exit_code == 3 and "results.json does not hold a JSON object" in empty.stderr
    assert "1 record(s) could not be read: named above" in empty.stderr


def test_the_curve_names_a_run_json_it_cannot_read(tmp_path):
    fill(tmp_path)
    run = tmp_path / "lang-run"
    run.mkdir()
    (run / "run.json").write_text('{"run_id": "lang-run", "kind": "language", "status": "fini')
    result = invoke("--runs-dir", tmp_path, "--curve")
    assert f"cannot read {run / 'run.json'}: run.json is not valid JSON" in result.stderr
