"""The one comparison table of deftx.analysis.comparison, as transfer, results and the compare view read it."""

import json

from deftx.analysis.comparison import build_pivots, read_records


def record(system, language, seed, value, run_id=None):
    return {"task": "nusax-senti", "base_model": "m", "split": "test", "metric": "macro_f1", "system": system,
            "language": language, "seed": seed, "metrics": {"macro_f1": value}, "run_id": run_id or f"{system}-{language}-{seed}"}


def test_one_seed_has_no_spread_and_the_average_row_is_over_language_means():
    records = [record("lt-sft", "ace", 0, 0.5), record("deftx", "ace", 0, 0.6),
               record("lt-sft", "ban", 0, 0.3), record("lt-sft", "ban", 1, 0.4), record("deftx", "ban", 0, 0.2)]
    [pivot], skipped = build_pivots(records)
    assert not skipped
    rows = {row.label: row for row in pivot.rows}
    assert rows["ace"].cells["lt-sft"].std is None and rows["ace"].cells["lt-sft"].n == 1
    assert abs(rows["ban"].cells["lt-sft"].mean - 0.35) < 1e-12 and rows["ban"].cells["lt-sft"].std > 0
    assert abs(pivot.average.cells["lt-sft"].mean - (0.5 + 0.35) / 2) < 1e-12
    assert abs(rows["ace"].delta - 0.1) < 1e-12 and rows["ace"].better == "deftx"
    assert abs(pivot.average.delta - (0.1 + (0.2 - 0.35)) / 2) < 1e-12


def test_read_records_keeps_the_languages_asked_for(tmp_path):
    for r in (record("lt-sft", "ace", 0, 0.5), record("lt-sft", "ban", 0, 0.3)):
        (tmp_path / r["run_id"]).mkdir()
        (tmp_path / r["run_id"] / "results.json").write_text(json.dumps(r))
    assert {r.language for r in read_records(tmp_path)} == {"ace", "ban"}
    assert [r.language for r in read_records(tmp_path, ["ban"])] == ["ban"]


def test_the_control_comes_after_no_lang_sft_and_language_sft_budgets_get_columns_of_their_own():
    def at(system, steps, value, **settings):
        r = record(system, "mad", 0, value, run_id=f"{system}-{steps}")
        r["settings"] = {"lang_steps": steps, **settings}
        return r

    records = [at("other-lang-sft", 60, 0.42, control_lang="jav"), at("lt-sft", 60, 0.5), at("lt-sft", 300, 0.6),
               at("lt-sft", 60, 0.51) | {"language": "min", "run_id": "min"}, at("no-lang-sft", 60, 0.4)]
    [pivot], _ = build_pivots(records)
    assert pivot.systems[:4] == ["lt-sft", "lt-sft[lang_steps=300]", "deftx", "no-lang-sft"]
    assert pivot.systems[4] == "other-lang-sft"
    assert pivot.labels["lt-sft[lang_steps=300]"] == "LT-SFT lang steps 300"
    mad = next(row for row in pivot.rows if row.label == "mad")
    assert mad.cells["lt-sft"].mean == 0.5 and mad.cells["lt-sft[lang_steps=300]"].mean == 0.6
    assert mad.cells["other-lang-sft"].mean == 0.42


def test_an_evaluation_made_again_replaces_the_older_record_in_tables():
    """A transfer run again evaluates its cached task and language SFTs once more (the new record has
    lang_steps, the old one not): the table keeps the new record alone, in the system's one column."""
    old = record("lt-sft", "mad", 0, 0.5, run_id="old") | {"task_sft": "/r/task/sft", "lang_sft": "/r/mad/sft",
                                                           "created_at": "2026-12-01T10:00:00Z"}
    new = old | {"run_id": "new", "settings": {"lang_steps": 300}, "metrics": {"macro_f1": 0.52},
                 "created_at": "2026-12-02T10:00:00Z"}
    other = old | {"run_id": "other", "lang_sft": "/r/jav/sft", "system": "other-lang-sft"}
    [pivot], _ = build_pivots([new, old, other])
    assert pivot.systems == ["lt-sft", "deftx", "other-lang-sft"]
    [mad] = pivot.rows
    assert mad.cells["lt-sft"].mean == 0.52 and mad.cells["lt-sft"].n == 1
    assert mad.cells["other-lang-sft"].mean == 0.5
