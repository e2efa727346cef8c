"""DeFT-X's denoising summary: rank chosen and energy kept by matrix type, layer and matrix."""

from __future__ import annotations

from statistics import fmean

import pytest
import tui_fixtures as F

from deftx.analysis.denoise_summary import overall, parse_denoise, selection_kept, summarize
from deftx.records.schema import MaskSelected


def test_group_by_matrix_type():
    matrices = parse_denoise(F.denoise_list(layers=2))
    groups = {g.label: g for g in summarize(matrices, "type")}
    assert set(groups) == {"attn.query", "attn.key", "attn.value", "attn.out", "ffn.in", "ffn.out", "emb.word"}
    query = groups["attn.query"]
    assert (query.matrices, query.rank_min, query.rank_max, query.rank_mean) == (2, 40, 45, 42.5)
    assert query.energy_mean == pytest.approx(fmean([0.90, 0.902]))
    assert query.rank_fraction_mean == pytest.approx(fmean([40 / 384, 45 / 384]))


def test_group_by_layer_puts_the_rest_last():
    groups = summarize(parse_denoise(F.denoise_list(layers=3)), "layer")
    assert [g.label for g in groups] == ["layer 0", "layer 1", "layer 2", "other"]
    assert groups[1].rank_mean == pytest.approx(fmean(40 + 10 * i + 5 for i in range(6)))
    assert groups[-1].matrices == 1 and groups[-1].rank_mean == 120


def test_per_matrix_keeps_the_model_order_with_short_names():
    groups = summarize(parse_denoise(F.denoise_list(layers=1)), "matrix")
    assert [g.label for g in groups] == ["emb.word", "L0 attn.query", "L0 attn.key", "L0 attn.value",
                                        "L0 attn.out", "L0 ffn.in", "L0 ffn.out"]


def test_unknown_names_keep_their_type_and_xlmr_prefix_is_dropped():
    (m,) = parse_denoise([{"name": "roberta.encoder.layer.11.attention.self.query.weight", "shape": [768, 768], "rank": 9}])
    assert (m.layer, m.short_type, m.short_name) == (11, "attn.query", "L11 attn.query")
    (m,) = parse_denoise([{"name": "roberta.pooler.dense.weight", "shape": [768, 768], "rank": 9}])
    assert (m.layer, m.matrix_type) == (None, "pooler.dense")


def test_malformed_entries_are_skipped():
    entries = [None, "x", {"name": "a"}, {"rank": 3}, {"name": "b", "rank": "3"}, {"name": "c", "rank": 3, "shape": "?"},
               {"name": "ok", "rank": 3}]
    (m,) = parse_denoise(entries)
    assert m.name == "ok" and m.rank_fraction is None and m.energy_kept is None
    assert parse_denoise("nope") == [] and overall([]) is None
    with pytest.raises(ValueError):
        summarize([m], "columns")


def test_selection_kept_condenses_a_selection_record():
    entries = F.denoise_list(layers=2)  # ranks 40-95 in the layers, 120 for the embeddings
    entries[1]["tail_kept"], entries[2]["tail_kept"] = 1_000, 234
    record = {"event": "selection", "k": 10, "denoise": entries, "overlap_with_magnitude": 0.738}
    kept = selection_kept(record)
    assert (kept.matrices, kept.rank_min, kept.rank_max, kept.rank_median) == (13, 40, 120, 70)
    assert kept.energy_median == pytest.approx(0.903) and kept.tail_kept == 1_234
    assert kept.text() == ("rank 40-120 (median 70) over 13 matrices, energy kept 0.903 (median), "
                           "1,234 residual entries kept; 73.8% of the magnitude mask kept")
    assert selection_kept(MaskSelected.model_validate(record)) == kept  # the model reads the same
    # LT-SFT's selection, a mask read from a file, or no record: nothing was denoised
    assert selection_kept({"k": 10, "overlap_with_magnitude": 0.5}) is None
    assert selection_kept({"k": 10, "denoise": []}) is None and selection_kept(None) is None
