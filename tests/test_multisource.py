"""Multi-source task SFTs: each batch trains with its own source's language SFT (applied in place and
removed exactly), the sampling rules, the planner's zero-shot designs, and bad input."""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from deftx.config import resolve_config
from deftx.data import get_task, load_task_split
from deftx.experiment.plan import TransferPlan, plan_steps
from deftx.experiment.task import train_multi_source_task_sft
from deftx.model import base_parameters, fingerprint, load_model, load_tokenizer
from deftx.objectives.multisource import MultiSourceObjective, source_weights
from deftx.sft.diff import SparseDiff
from deftx.training.swap import LanguageSwap
from deftx_cli.app import app
from test_sft import random_sft
from test_transfer_plan import FakeRuns

EMBEDDINGS = "embeddings.word_embeddings.weight"


def marker_sft(model, index: int, value: float, language: str) -> SparseDiff:
    """A language SFT that changes one word-embedding entry by ``value``: its presence is plain to see."""
    params = base_parameters(model)
    start = {n: p.detach().clone() for n, p in params.items()}
    current = {n: t.clone() for n, t in start.items()}
    masks = {n: torch.zeros(t.shape, dtype=torch.bool) for n, t in start.items()}
    current[EMBEDDINGS].view(-1)[index] += value
    masks[EMBEDDINGS].view(-1)[index] = True
    return SparseDiff.from_difference(current, start, masks, manifest={
        "kind": "language", "language": language, "method": "lt-sft", "base_fingerprint": fingerprint(model)})


def run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def one_error(result, code, *needles):
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.startswith("deftx: error:")]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


# ------------------------------------------------------------------------------ the swap itself


def test_a_language_sft_is_applied_for_the_block_and_removed_bit_for_bit(tiny_model_dir):
    model = load_model(tiny_model_dir, "classification", labels=["a", "b", "c"])[0]
    sft = random_sft(model, density=0.3, seed=3)
    for name, (idx, values) in sft.entries.items():  # values whose (x + d) - d is not x in float32
        values.mul_(1e3).add_(0.1)
    before = {n: p.detach().clone() for n, p in base_parameters(model).items()}
    swap = LanguageSwap(model, {"jav": sft, "ind": None})
    with swap.applied("jav"):
        inside = {n: p.detach().clone() for n, p in base_parameters(model).items()}
    with swap.applied("ind"):  # a source without a language SFT changes nothing
        assert all(torch.equal(p, before[n]) for n, p in base_parameters(model).items())
    changed = 0
    for name, p in base_parameters(model).items():
        assert torch.equal(p.detach(), before[name]), name  # bitwise, not approximately
        if name in sft.entries:
            idx, values = sft.entries[name]
            expected = before[name].view(-1).index_add(0, idx, values)
            assert torch.equal(inside[name].view(-1), expected)
            changed += len(idx)
    assert changed == sft.n_entries > 0
    with pytest.raises(ValueError):  # the block's error passes through, and the model is restored
        with swap.applied("jav"):
            raise ValueError("boom")
    assert all(torch.equal(p.detach(), before[n]) for n, p in base_parameters(model).items())


# ------------------------------------------------------------------------------ the batches of an epoch


class _Data:
    """LabelledData-like: n single texts with labels cycling over three classes."""

    def __init__(self, n: int, word: str):
        self.texts = [f"{word} {'a ' * (i % 7)}".strip() for i in range(n)]
        self.pairs = None
        self.labels = [i % 3 for i in range(n)]
        self.label_names = ("negative", "neutral", "positive")
        self.source = f"{word} x{n}"

    def __len__(self):
        return len(self.texts)


def test_proportional_sampling_is_every_batch_of_every_source_once_per_epoch(tiny_model_dir):
    tokenizer = load_tokenizer(tiny_model_dir)
    objective = MultiSourceObjective(tokenizer, {"ind": (_Data(40, "b"), None), "jav": (_Data(12, "c"), None)},
                                     max_length=16)
    schedule = objective.schedule(batch_size=4, seed=5)
    assert len(schedule) == 10 + 3
    for i, n in ((0, 40), (1, 12)):
        rows = sorted(r for s, batch in schedule if s == i for r in batch)
        assert rows == list(range(n))  # each example exactly once
    assert objective.schedule(4, 5) == schedule and objective.schedule(4, 6) != schedule
    assert [s for s, _ in schedule] != sorted(s for s, _ in schedule)  # the sources are mixed, not in turn
    for batch in objective.batches(4, seed=5):
        assert batch["source"].shape == (1,) and batch["input_ids"].shape[0] <= 4


def test_temperature_sampling_flattens_the_sources_shares(tiny_model_dir):
    assert source_weights([100, 25], "proportional") == pytest.approx([0.8, 0.2])
    assert source_weights([100, 25], "temperature:2") == pytest.approx([2 / 3, 1 / 3])
    assert source_weights([100, 25], "uniform") == pytest.approx([0.5, 0.5])
    tokenizer = load_tokenizer(tiny_model_dir)
    objective = MultiSourceObjective(tokenizer, {"ind": (_Data(400, "b"), None), "jav": (_Data(20, "c"), None)},
                                     max_length=16, sampling="uniform")
    counts = objective.steps_per_source(4, [(0, 400)])
    assert counts["jav"] > 150 and counts["ind"] > 150  # uniform: about half each, though jav has 1/20 the data


# ------------------------------------------------------------------------------ training


def test_each_batch_trains_with_its_sources_language_sft_and_the_task_sft_holds_none_of_it(
        tiny_model_dir, shared_data, tmp_path, monkeypatch):
    model = load_model(tiny_model_dir, "classification", labels=list(get_task("nusax-senti").labels))[0]
    marker_sft(model, 0, 10.0, "jav").save(tmp_path / "jav")
    marker_sft(model, 1, 20.0, "sun").save(tmp_path / "sun")
    base = base_parameters(model)[EMBEDDINGS].detach().view(-1)[:2].clone()
    seen: list[tuple[str, float, float]] = []
    original = MultiSourceObjective.source_context

    @contextmanager
    def spy(self, batch):
        with original(self, batch) as stripped:
            w = self.swap.params[EMBEDDINGS].detach().view(-1)
            seen.append((self.current, float(w[0] - base[0]), float(w[1] - base[1])))
            yield stripped

    monkeypatch.setattr(MultiSourceObjective, "source_context", spy)
    config = resolve_config("task", "smoke", method="lt-sft", phase1_steps=12, phase2_steps=12, max_examples=24)
    outcome = train_multi_source_task_sft(
        "nusax-senti", ["ind", "jav", "sun"], config, model=tiny_model_dir,
        lang_sfts={"jav": tmp_path / "jav", "sun": tmp_path / "sun"}, data_dir=shared_data, runs_dir=tmp_path / "runs")
    assert {source for source, _, _ in seen} == {"ind", "jav", "sun"} and len(seen) == 24
    for source, d0, d1 in seen:
        assert (d0 > 5) == (source == "jav") and (d1 > 15) == (source == "sun"), (source, d0, d1)
    # what the optimizer left is the task's difference: no trace of either language SFT
    sft = SparseDiff.load(outcome.sft_dir)
    after = dict(sft.entries)
    if EMBEDDINGS in after:
        idx, values = after[EMBEDDINGS]
        assert all(abs(float(v)) < 1 for i, v in zip(idx.tolist(), values.tolist()) if i in (0, 1))
    manifest = sft.manifest
    assert manifest["sources"] == ["ind", "jav", "sun"] and manifest["language"] == "ind+jav+sun"
    by_source = {s["language"]: s for s in manifest["data"]["sources"]}
    assert by_source["ind"]["task"] == "smsa" and by_source["jav"]["task"] == "nusax-senti"
    assert by_source["ind"]["lang_sft"] is None and by_source["jav"]["lang_sft"] == str((tmp_path / "jav").resolve())
    assert sum(s["steps"] for s in by_source.values()) == 24
    assert [s for s, _, _ in seen].count("jav") == by_source["jav"]["steps"]
    record = json.loads((outcome.run_dir / "run.json").read_text())
    assert [s["language"] for s in record["data"]["sources"]] == ["ind", "jav", "sun"]
    events = [json.loads(line) for line in (outcome.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert {e.get("source") for e in events if e.get("event") == "train"} <= {"ind", "jav", "sun"}
    assert any(e.get("source") for e in events if e.get("event") == "train")


# ------------------------------------------------------------------------------ zero-shot by construction


def multi_plan(**kw):
    kw.setdefault("targets", ["ace", "mad"])
    kw.setdefault("preset", "smoke")
    kw.setdefault("baselines", ["no-lang-sft"])
    return TransferPlan(task="nusax-senti", **kw)


@pytest.mark.parametrize("design", ["non-targets", "leave-one-out"])
def test_a_targets_data_never_trains_the_task_sft_evaluated_on_it(design):
    steps = plan_steps(multi_plan(multi_source=design), model="m", runs_dir=Path("runs"), state=FakeRuns())
    by_id = {s.run_id: s for s in steps}
    language = {(s.language, s.config.method): s.run_id for s in steps if s.kind == "language"}
    evaluations = [s for s in steps if s.kind == "evaluation" and "-multi" in s.system]
    assert {e.system for e in evaluations} == {"lt-sft-multi", "deftx-multi", "no-lang-sft-multi"}
    for e in evaluations:
        task = by_id[e.task_sft]
        assert e.language not in task.sources and not e.target_in_sources
        assert "ind" in task.sources and len(task.sources) >= 9
        if design == "non-targets":
            assert "ace" not in task.sources and "mad" not in task.sources
        else:
            assert ({"ace", "mad"} - {e.language}) <= set(task.sources)
        for lang, run_id in task.source_sfts.items():  # each source's own language SFT, of the same method
            assert run_id == language[(lang, task.config.method)]
        assert set(task.source_sfts) == set(task.sources)
    multi_tasks = {s.run_id for s in steps if s.kind == "task" and s.sources}
    assert len(multi_tasks) == (2 if design == "non-targets" else 4)
    # every language SFT is trained once, sources and targets alike
    assert len(language) == len({s.run_id for s in steps if s.kind == "language"})


def test_sources_that_hold_a_target_are_refused_unless_asked_and_then_marked():
    with pytest.raises(Exception, match="not zero-shot"):
        plan_steps(multi_plan(multi_source="non-targets", sources=["ind", "ace"]), model="m",
                   runs_dir=Path("runs"), state=FakeRuns())
    steps = plan_steps(multi_plan(multi_source="non-targets", sources=["ind", "ace"], allow_target_sources=True),
                       model="m", runs_dir=Path("runs"), state=FakeRuns())
    marked = {(s.language, s.system) for s in steps if s.kind == "evaluation" and s.target_in_sources}
    assert marked == {("ace", "lt-sft-multi+target"), ("ace", "deftx-multi+target"), ("ace", "no-lang-sft-multi+target")}
    assert all("-multi" not in s.system or s.system.endswith("-multi") for s in steps
               if s.kind == "evaluation" and s.language == "mad")


def test_transfer_multi_source_trains_no_target_data_and_tables_the_systems_apart(tiny_model_dir, shared_data, tmp_path):
    runs = tmp_path / "runs"
    r = run("transfer", "--targets", "ace", "--methods", "lt-sft", "--baselines", "", "--multi-source", "non-targets",
            "--sources", "ind,jav", "--preset", "smoke", "--model", tiny_model_dir, "--data-dir", shared_data,
            "--runs-dir", runs, "--jobs", "1", "--json", "--quiet")
    assert r.exit_code == 0, r.stderr
    document = json.loads(r.stdout)
    systems = {rec["system"] for rec in document["records"]}
    assert systems == {"lt-sft", "lt-sft-multi"}
    multi = next(rec for rec in document["records"] if rec["system"] == "lt-sft-multi")
    assert multi["sources"] == ["ind", "jav"] and multi["target_in_sources"] is False
    task_run = json.loads((Path(multi["task_sft"]).parent / "run.json").read_text())
    read = [s["train"] for s in task_run["data"]["sources"]]
    assert len(read) == 2 and not any("acehnese" in path for path in read)
    assert all(s["lang_sft"] for s in task_run["data"]["sources"])
    r = run("results", "--runs-dir", runs)
    assert r.exit_code == 0 and "LT-SFT multi" in r.stdout, r.stdout


# ------------------------------------------------------------------------------ bad input


@pytest.fixture
def jav_sft(tiny_model_dir, tmp_path):
    model = load_model(tiny_model_dir, "mlm")[0]
    random_sft(model, language="jav").save(tmp_path / "jav")
    return tmp_path / "jav"


def test_bad_multi_source_input_is_one_line_before_any_training(tiny_model_dir, other_tiny_model_dir, shared_data,
                                                               jav_sft, tmp_path):
    common = ["--task", "nusax-senti", "--preset", "smoke", "--model", tiny_model_dir, "--data-dir", shared_data,
              "--runs-dir", tmp_path / "runs"]
    one_error(run("train-task", "--sources", "ind,quy", *common), 2, "no labelled training data in quy")
    one_error(run("train-task", "--sources", "ind,jav", "--lang-sft", f"sun={jav_sft}", *common), 2, "not a source")
    one_error(run("train-task", "--sources", "ind,jav", "--lang-sft", f"jav={jav_sft}", "--lang-sft",
                  f"jav={jav_sft}", *common), 2, "two language SFTs for source jav")
    one_error(run("train-task", "--sources", "ind,jav", "--lang-sft", str(jav_sft), *common), 2, "LANG=SFT")
    one_error(run("train-task", "--sources", "ind,ind", *common), 2, "given twice")
    one_error(run("train-task", "--sources", "ind,sun", "--lang-sft", f"sun={jav_sft}", *common), 2,
              "language SFT of jav, not of sun")
    other = random_sft(load_model(other_tiny_model_dir, "mlm")[0], language="jav")
    other.save(tmp_path / "other-jav")
    r = run("train-task", "--sources", "ind,jav", "--lang-sft", f"jav={tmp_path / 'other-jav'}", *common)
    assert r.exit_code != 0
    one_error(r, r.exit_code, "another base model")
    one_error(run("transfer", "--targets", "ace", "--multi-source", "non-targets", "--sources", "ind,ace", *common), 2,
              "not zero-shot")
    one_error(run("transfer", "--targets", "ace", "--multi-source", "everything", *common), 3, "everything")
    one_error(run("transfer", "--targets", "ace", "--sources", "ind,jav", *common), 2, "--multi-source")
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
