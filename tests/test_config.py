"""Settings: presets merged with explicit values, K and the rank rule checked at once, method configs."""

import warnings

import pytest

from deftx.config import PRESETS, resolve_config
from deftx.errors import UnknownNameError, UsageError
from deftx.methods import DeftX, FullFt, LtSft, cache_settings, ignored_settings, method_of, method_settings


def test_a_preset_gives_its_values_and_explicit_values_win():
    cfg = resolve_config("task", "cpu", lr=3e-4, batch_size=None)
    assert cfg.preset == "cpu" and cfg.lr == 3e-4 and cfg.batch_size == PRESETS["cpu"]["task"]["batch_size"]
    assert cfg.phase1_epochs == 1 and cfg.phase1_steps is None


def test_steps_replace_the_presets_epochs_and_the_other_way_round():
    cfg = resolve_config("task", "cpu", phase1_steps=7)
    assert cfg.phase_budget(1) == (7, None) and cfg.phase_budget(2) == (None, 1)
    cfg = resolve_config("language", "cpu", phase2_epochs=0.5)
    assert cfg.phase_budget(1) == (60, None) and cfg.phase_budget(2) == (None, 0.5)


def test_max_examples_zero_means_every_example():
    assert resolve_config("task", "cpu").max_examples == 1200
    assert resolve_config("task", "cpu", max_examples=0).max_examples is None


def test_unknown_preset_and_unknown_settings():
    with pytest.raises(UnknownNameError):
        resolve_config("task", "fast")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        resolve_config("task", "cpu", future_setting=1)
    assert any("future_setting" in str(w.message) for w in caught)


@pytest.mark.parametrize("k", [0, -5, "lots", "0%", "150%", 2.5])
def test_k_that_cannot_work_is_refused_by_the_settings(k):
    with pytest.raises(UsageError, match="K"):
        resolve_config("language", "cpu", k=k)


@pytest.mark.parametrize("k", [7_667_712, "7667712", 0.05, "2.5%", "1e12"])
def test_k_whose_fit_depends_on_the_model_is_accepted_until_it_loads(k):
    assert resolve_config("language", "cpu", k=k).k == k


def test_rank_rule_is_checked_and_written_one_way():
    assert resolve_config("language", "cpu", rank_rule=" energy = 0.80 ").rank_rule == "energy:0.8"
    with pytest.raises(UsageError, match="rank rule"):
        resolve_config("language", "cpu", rank_rule="rank:0")


def test_method_configs_read_their_own_settings():
    cfg = resolve_config("language", "cpu", method="deftx", rank_rule="rank:16", tail_keep=0.01, svd="full")
    assert method_of(cfg) == DeftX(rank_rule="rank:16", tail_keep=0.01, svd="full")
    assert method_of(cfg.model_copy(update={"method": "lt-sft"})) == LtSft()
    assert not method_of(cfg.model_copy(update={"method": "full-ft"})).sparse
    recorded = cfg.model_dump(mode="json")
    assert method_settings(recorded)["rank_rule"] == "rank:16" and method_settings({"method": "lt-sft"}) == {}
    with pytest.raises(UsageError):
        DeftX(svd="randomized")


def test_cache_settings_ignore_what_a_method_does_not_read():
    assert set(ignored_settings("lt-sft")) == {"rank_rule", "tail_keep", "denoise_include", "denoise_exclude", "svd"}
    assert "k" in ignored_settings(FullFt.name) and "k" not in ignored_settings("deftx")
    a = resolve_config("task", "cpu", method="lt-sft")
    b = resolve_config("task", "cpu", method="lt-sft", rank_rule="rank:8", tail_keep=0.1)
    assert cache_settings(a) == cache_settings(b)
    c, d = (resolve_config("task", "cpu", method="deftx", rank_rule=r) for r in ("rank:8", "rank:9"))
    assert cache_settings(c) != cache_settings(d)
    e, f = (resolve_config("task", "cpu", method="full-ft", k=k) for k in (0.01, 0.02))
    assert cache_settings(e) == cache_settings(f)


@pytest.mark.parametrize("kind", ["language", "task"])
def test_cpu_presets_train_in_bf16_where_the_cpu_has_it_and_paper_in_float32(kind):
    for preset in ("smoke", "quick", "cpu"):
        assert resolve_config(kind, preset).mixed_precision == "auto", preset
    assert resolve_config(kind, "paper").mixed_precision == "no"
    assert resolve_config(kind, "quick", mixed_precision="no").mixed_precision == "no"  # exact float32 on request
