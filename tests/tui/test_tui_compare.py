"""The comparison pivot: means, spreads and n over seeds, Delta, the better cell, the average row, exports."""

from __future__ import annotations

import csv
import io
from statistics import fmean, stdev

import pytest
import tui_fixtures as F

from deftx.analysis.comparison import TableKey, as_results, build_pivots, collect
from deftx_cli.tables import column_labels, export_stem, format_cell, format_delta, to_csv, to_markdown


def rec(system, lang, seed, value, **kw):
    return F.result_record(system, lang, seed, value, run_id=f"{system}-{lang}-{seed}", **kw)


def nusax_records():
    out = []
    for system, seeds in F.SEEDS.items():
        for lang, base in F.SCORES[system].items():
            for seed in seeds:
                out.append(rec(system, lang, seed, round(base + F.SEED_OFFSET[seed], 4)))
    return out


def expected(system, lang):
    return [round(F.SCORES[system][lang] + F.SEED_OFFSET[s], 4) for s in F.SEEDS[system]]


def test_cells_are_mean_std_and_n_over_seeds():
    (pivot,), skipped = build_pivots(nusax_records())
    assert skipped == []
    assert pivot.key == TableKey("nusax-senti", F.MODEL, "test", "macro_f1", "cpu")
    assert pivot.systems == ["lt-sft", "deftx", "no-lang-sft", "full-ft"]
    assert [r.label for r in pivot.rows] == ["ace", "ban", "bjn"]
    for row in pivot.rows:
        for system in pivot.systems:
            values = expected(system, row.label)
            cell = row.cells[system]
            assert cell.n == len(values)
            assert cell.mean == pytest.approx(fmean(values))
            if len(values) > 1:
                assert cell.std == pytest.approx(stdev(values))
            else:
                assert cell.std is None


def test_delta_and_better_cell():
    (pivot,), _ = build_pivots(nusax_records())
    by_lang = {r.label: r for r in pivot.rows}
    ace, ban = by_lang["ace"], by_lang["ban"]
    assert ace.delta == pytest.approx(fmean(expected("deftx", "ace")) - fmean(expected("lt-sft", "ace")))
    assert ace.better == "deftx"
    assert ban.delta < 0 and ban.better == "lt-sft"


def test_average_row_over_languages_and_seeds():
    (pivot,), _ = build_pivots(nusax_records())
    avg = pivot.average
    assert avg is not None and avg.is_average
    for system in pivot.systems:
        langs = sorted(F.SCORES[system])
        assert avg.cells[system].mean == pytest.approx(fmean(fmean(expected(system, l)) for l in langs))
        per_seed = [fmean(round(F.SCORES[system][l] + F.SEED_OFFSET[s], 4) for l in langs) for s in F.SEEDS[system]]
        assert avg.cells[system].n == len(per_seed)
        if len(per_seed) > 1:
            assert avg.cells[system].std == pytest.approx(stdev(per_seed))
    assert avg.delta == pytest.approx(fmean(r.delta for r in pivot.rows))
    assert avg.better == "deftx"


def test_average_uses_only_seeds_that_cover_every_language():
    records = [rec("lt-sft", "ace", 0, 0.5), rec("lt-sft", "ban", 0, 0.7), rec("lt-sft", "ace", 1, 0.6)]
    pivot = build_pivots(records)[0][0]
    avg = pivot.average.cells["lt-sft"]
    assert avg.mean == pytest.approx(fmean([0.55, 0.7]))  # mean of the language means
    assert avg.n == 1 and avg.std is None  # seed 1 lacks ban


def test_average_delta_over_languages_with_both_and_note():
    records = [rec("lt-sft", "ace", 0, 0.5), rec("deftx", "ace", 0, 0.6), rec("lt-sft", "ban", 0, 0.4)]
    pivot = build_pivots(records)[0][0]
    assert pivot.average.delta == pytest.approx(0.1)
    assert pivot.rows[1].delta is None and pivot.rows[1].better is None
    assert pivot.notes and "1 languages" in pivot.notes[0]


def test_duplicate_seed_keeps_the_newest_record():
    old = rec("deftx", "ace", 0, 0.5, created="2026-11-24T10:00:00+00:00")
    new = rec("deftx", "ace", 0, 0.7, created="2026-11-24T11:00:00+00:00")
    pivot = build_pivots([new, old])[0][0]
    cell = pivot.rows[0].cells["deftx"]
    assert cell.n == 1 and cell.mean == pytest.approx(0.7)


def test_baseline_columns_only_when_present_and_pair_always():
    pivot = build_pivots([rec("deftx", "ace", 0, 0.6)])[0][0]
    assert pivot.systems == ["lt-sft", "deftx"]
    assert [k for k, _ in column_labels(pivot)] == ["lt-sft", "deftx", "delta"]
    assert "lt-sft" not in pivot.rows[0].cells


def test_tables_per_task_model_split_metric_most_results_first():
    records = nusax_records() + [
        rec("lt-sft", "quy", 0, 0.41, task="americasnli", model="xlm-roberta-base", metric="accuracy"),
    ]
    pivots, _ = build_pivots(records)
    assert [p.key.task for p in pivots] == ["nusax-senti", "americasnli"]
    assert pivots[1].key.metric == "accuracy"


def test_broken_records_are_skipped_with_a_reason():
    good = rec("deftx", "ace", 0, 0.6)
    bad = [
        "not a dict",
        {"run_id": "r1", "system": "deftx", "metrics": {"macro_f1": 0.5}},  # no language
        {"run_id": "r2", "language": "ace", "metrics": {"macro_f1": 0.5}},  # no system
        {"run_id": "r3", "task": "nusax-senti", "split": "test", "language": "ace", "system": "deftx",
         "metric": "macro_f1", "metrics": {"macro_f1": "high"}},  # every field but a number for its metric
        {"run_id": "r4", "language": "ace", "system": "deftx", "metrics": None},
    ]
    records, skipped = as_results([good, *bad])
    assert len(collect(records)) == 1 and len(skipped) == 5
    assert any("r3" in s and "macro_f1" in s for s in skipped)


def test_formatting_in_points():
    (pivot,), _ = build_pivots(nusax_records())
    assert pivot.scale == 100.0
    ace = pivot.rows[0]
    assert format_cell(ace.cells["lt-sft"], pivot.scale) == "65.3±1.1 (3)"
    assert format_cell(ace.cells["full-ft"], pivot.scale) == "60.1 (1)"
    assert format_delta(ace.delta, pivot.scale) == "+1.9"
    assert format_delta(pivot.rows[1].delta, pivot.scale) == "−0.6"
    assert format_cell(None, 100.0) == "—"


def test_values_outside_0_1_are_not_scaled_and_lower_is_better_metrics():
    records = [rec("lt-sft", "ace", 0, 3.2, metric="eval_loss"), rec("deftx", "ace", 0, 3.0, metric="eval_loss")]
    for r in records:
        r["metrics"]["eval_loss"] = r["metrics"]["macro_f1"]
    pivot = build_pivots(records)[0][0]
    assert pivot.scale == 1.0 and not pivot.higher_is_better
    assert pivot.rows[0].better == "deftx"  # lower loss


def test_csv_round_trip():
    (pivot,), _ = build_pivots(nusax_records())
    rows = list(csv.DictReader(io.StringIO(to_csv(pivot))))
    assert [r["language"] for r in rows] == ["ace", "ban", "bjn", "average"]
    ace = rows[0]
    assert float(ace["lt-sft_mean"]) == pytest.approx(fmean(expected("lt-sft", "ace")), abs=1e-6)
    assert ace["deftx_n"] == "3" and ace["full-ft_std"] == "" and ace["better"] == "deftx"
    assert float(ace["delta_deftx_minus_lt-sft"]) == pytest.approx(pivot.rows[0].delta, abs=1e-6)
    assert ace["task"] == "nusax-senti" and ace["metric"] == "macro_f1"


def test_markdown_table():
    (pivot,), _ = build_pivots(nusax_records())
    md = to_markdown(pivot)
    lines = md.splitlines()
    assert lines[0] == "### nusax-senti · me5-small-mlm · test · preset cpu"
    assert "| Language | LT-SFT | DeFT-X | Δ | no lang SFT | full FT |" in lines
    assert "| ace | 65.3±1.1 (3) | **67.2±1.1 (3)** | +1.9 | 58.6±0.8 (2) | 60.1 (1) |" in lines
    assert "| ban | **61.9±1.1 (3)** | 61.3±1.1 (3) | −0.6 | 56.7±0.8 (2) | 57.0 (1) |" in lines
    assert lines[-1].startswith("| **Average** |")


def test_export_stem_adds_only_what_tells_tables_apart():
    a = TableKey("nusax-senti", "../m/me5-small-mlm", "test", "macro_f1")
    b = TableKey("nusax-senti", "xlm-roberta-base", "test", "macro_f1")
    c = TableKey("americasnli", "xlm-roberta-base", "test", "accuracy")
    assert export_stem(c, [a, b, c]) == "compare-americasnli"
    assert export_stem(a, [a, b, c]) == "compare-nusax-senti-me5-small-mlm"
    assert export_stem(TableKey("a/b", "m", "s", "x"), []) == "compare-a_b"
    d = TableKey("americasnli", "xlm-roberta-base", "test", "accuracy", "quick")
    assert export_stem(d, [a, b, c, d]) == "compare-americasnli-quick"


def with_settings(record, **settings):
    record["settings"] = {**record["settings"], **settings}
    return record


def test_other_settings_of_a_system_get_their_own_column():
    # An ablation (DeFT-X with energy:0.8, one seed) must not be averaged into, or replace, the DeFT-X results.
    records = nusax_records() + [
        with_settings(rec("deftx", "ace", 0, 0.10, created="2026-11-25T12:00:00+00:00"), rank_rule="energy:0.8"),
        with_settings(rec("deftx", "ban", 0, 0.20, created="2026-11-25T12:00:00+00:00"), rank_rule="energy:0.8"),
        with_settings(rec("deftx", "ace", 0, 0.30), rank_rule="energy:0.8", tail_keep=0.01),
        with_settings(rec("lt-sft", "ace", 0, 0.40), k_lang=3_000_000),
    ]
    (pivot,), _ = build_pivots(records)
    assert pivot.systems == ["lt-sft", "lt-sft[k_lang=3,000,000]", "deftx", "deftx[rank_rule=energy:0.8]",
                             "deftx[rank_rule=energy:0.8,tail_keep=0.01]", "no-lang-sft", "full-ft"]
    ace = pivot.rows[0]
    assert ace.cells["deftx"].mean == pytest.approx(fmean(expected("deftx", "ace")))  # untouched by the ablation
    assert ace.cells["deftx"].n == 3
    assert ace.cells["deftx[rank_rule=energy:0.8]"].mean == pytest.approx(0.10)
    assert ace.cells["lt-sft"].n == 3 and ace.cells["lt-sft[k_lang=3,000,000]"].mean == pytest.approx(0.40)
    assert ace.delta == pytest.approx(fmean(expected("deftx", "ace")) - fmean(expected("lt-sft", "ace")))
    headers = dict(column_labels(pivot))
    assert headers["deftx[rank_rule=energy:0.8]"] == "DeFT-X task energy:0.8"
    assert headers["deftx[rank_rule=energy:0.8,tail_keep=0.01]"] == "DeFT-X task energy:0.8 · task tail 0.01"
    assert headers["lt-sft[k_lang=3,000,000]"] == "LT-SFT K lang 3,000,000"
    assert [k for k, _ in column_labels(pivot)][:5] == [
        "lt-sft", "lt-sft[k_lang=3,000,000]", "deftx", "delta", "deftx[rank_rule=energy:0.8]"]
    assert any(n.startswith("DeFT-X: ") and "energy:0.9" in n for n in pivot.notes)
    assert "| Language | LT-SFT | LT-SFT K lang 3,000,000 | DeFT-X | Δ | DeFT-X task energy:0.8 |" in to_markdown(pivot)


def test_main_setting_is_the_one_with_most_results():
    records = [with_settings(rec("deftx", lang, 0, 0.5), rank_rule="rank:16") for lang in ("ace", "ban")]
    records.append(rec("deftx", "ace", 1, 0.9))
    (pivot,), _ = build_pivots(records)
    assert pivot.systems == ["lt-sft", "deftx", "deftx[rank_rule=energy:0.9]"]
    assert pivot.rows[0].cells["deftx"].mean == pytest.approx(0.5)


def test_on_a_tie_the_setting_run_first_is_the_main_column():
    # the reference (energy:0.9) ran first, the ablation (energy:0.8, which sorts first) later: same count
    reference = [rec("deftx", lang, 0, 0.5, created="2026-11-25T10:00:00+00:00") for lang in ("ace", "ban")]
    ablation = [with_settings(rec("deftx", lang, 0, 0.3, created="2026-11-25T11:00:00+00:00"), rank_rule="energy:0.8")
                for lang in ("ace", "ban")]
    for records in (reference + ablation, ablation + reference):
        (pivot,), _ = build_pivots(records)
        assert pivot.systems == ["lt-sft", "deftx", "deftx[rank_rule=energy:0.8]"]
        assert pivot.rows[0].cells["deftx"].mean == pytest.approx(0.5)


def test_task_budgets_are_not_mixed():
    records = [with_settings(rec("lt-sft", "ace", 0, 0.5), task_budget="1+1 ep", task_examples=600),
               with_settings(rec("lt-sft", "ban", 0, 0.5), task_budget="1+1 ep", task_examples=600),
               with_settings(rec("lt-sft", "ace", 0, 0.7, created="2026-11-26T12:00:00+00:00"),
                             task_budget="1+1 ep", task_examples="all")]
    (pivot,), _ = build_pivots(records)
    ace = pivot.rows[0]
    assert ace.cells["lt-sft"].mean == pytest.approx(0.5)  # not replaced by the newer run of another budget
    assert dict(column_labels(pivot))["lt-sft[task_examples=all]"] == "LT-SFT task examples all"


def test_presets_make_separate_tables():
    records = [rec("deftx", "ace", 0, 0.5), with_settings(rec("deftx", "ace", 0, 0.7), preset="quick")]
    pivots, _ = build_pivots(records)
    assert sorted(p.key.preset for p in pivots) == ["cpu", "quick"]
    assert all(p.rows[0].cells["deftx"].n == 1 for p in pivots)
