"""The two-phase engine's promises, on a tiny BERT built from a config."""

import random

import pytest
import torch

from deftx.config import resolve_config
from deftx.model import base_parameters, head_parameters, is_layer_norm, load_model, load_tokenizer, maskable_parameters, untie_output_embeddings
from deftx.objectives import ClassificationObjective, MaskedLMObjective
from deftx.sft.diff import SparseDiff, compose, load_difference
from deftx.methods import DeftX
from deftx.training import train_sft

WORDS = "film ini sangat bagus jelek tidak saya suka makanan enak".split()


def sentences(n, seed=0):
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 9))) for _ in range(n)]


def config(**overrides):
    values = dict(phase1_steps=3, phase2_steps=3, batch_size=4, max_length=16, lr=1e-2, k=0.05, log_every=1, device="cpu",
                  mixed_precision="no")  # float32 on every CPU; precision tests say so
    values.update(overrides)
    return resolve_config("language", "smoke", **values)


def mlm_setup(model_dir):
    tokenizer = load_tokenizer(model_dir)
    model, _ = load_model(model_dir, "mlm")
    untie_output_embeddings(model)
    objective = MaskedLMObjective(tokenizer, sentences(120), max_length=16)
    return model, objective


@pytest.mark.parametrize("chunk", [None, 97], ids=["whole", "sliced"])
@pytest.mark.parametrize("method", ["lt-sft", "deftx"])
def test_phase2_moves_only_masked_entries(tiny_model_dir, method, chunk, monkeypatch):
    if chunk:  # the in-place gradient, L1 and decay updates work on slices; cut every tensor into many
        monkeypatch.setattr("deftx.training.engine._CHUNK", chunk)
    model, objective = mlm_setup(tiny_model_dir)
    decoder_before = model.get_output_embeddings().weight.detach().clone()
    before = {n: p.detach().clone() for n, p in base_parameters(model).items()}
    events = []
    cfg = config(method=method, weight_decay=0.5, l1=0.1)
    result = train_sft(model, objective, cfg, manifest={"kind": "language"}, callbacks=[lambda e, f: events.append((e, f))])
    maskable = maskable_parameters(model)
    k = result.summary["k"]
    assert k == round(0.05 * sum(p.numel() for p in maskable.values()))
    assert result.sft.n_entries == k
    moved = 0
    for name, p in base_parameters(model).items():
        diff = (p.detach() - before[name]).reshape(-1)
        if name not in maskable:
            assert not diff.any(), f"{name} is not maskable but moved"
            assert is_layer_norm(name)
            continue
        entries = result.sft.entries.get(name)
        inside = torch.zeros(diff.numel(), dtype=torch.bool)
        if entries is not None:
            inside[entries[0]] = True
            assert torch.allclose(diff[entries[0]], entries[1], atol=1e-7)
        assert not diff[~inside].any(), f"{name}: entries outside the mask moved (weight decay leaked?)"
        moved += int(diff[inside].ne(0).sum())
    assert moved > 0.5 * k, "phase 2 trained the masked entries"
    assert torch.equal(model.get_output_embeddings().weight, decoder_before), "the untied decoder stays frozen"
    kinds = [e for e, _ in events]
    assert kinds.count("phase") == 2 and "selection" in kinds and kinds[-1] == "done"
    selection = dict(events)[ "selection"]
    if method == "deftx":
        assert selection["denoise"] and all(d["rank"] >= 1 for d in selection["denoise"])
        assert 0 <= selection["overlap_with_magnitude"] <= 1


def test_sliced_updates_equal_whole_tensor_updates(tiny_model_dir, monkeypatch):
    cfg = config(method="lt-sft", weight_decay=0.5, l1=0.5)
    results = []
    for chunk in (1 << 40, 97):
        monkeypatch.setattr("deftx.training.engine._CHUNK", chunk)
        model, objective = mlm_setup(tiny_model_dir)
        torch.manual_seed(0)
        results.append(train_sft(model, objective, cfg, manifest={"kind": "language"}).sft)
    whole, sliced = results
    assert whole.entries.keys() == sliced.entries.keys()
    for name, (index, values) in whole.entries.items():
        assert torch.equal(index, sliced.entries[name][0])
        assert torch.allclose(values, sliced.entries[name][1], atol=1e-6), name


def test_phase1_difference_reproduces_the_selection(tiny_model_dir, tmp_path):
    model, objective = mlm_setup(tiny_model_dir)
    cfg = config(method="deftx", rank_rule="energy:0.8")
    result = train_sft(model, objective, cfg, manifest={"kind": "language"}, keep_phase1_diff=tmp_path / "d.safetensors")
    diffs, meta = load_difference(tmp_path / "d.safetensors")
    assert meta["base_fingerprint"] == result.sft.base_fingerprint
    again = DeftX(rank_rule="energy:0.8").select(diffs, cfg.k)
    for name, mask in result.selection.masks.items():
        assert torch.equal(again.masks[name], mask)


def test_mask_given_runs_phase_two_only(tiny_model_dir):
    model, objective = mlm_setup(tiny_model_dir)
    maskable = maskable_parameters(model)
    mask = {name: torch.zeros(p.shape, dtype=torch.bool) for name, p in maskable.items()}
    name = next(iter(mask))
    mask[name].view(-1)[:10] = True
    events = []
    result = train_sft(model, objective, config(), manifest={"kind": "language"}, mask=mask,
                       callbacks=[lambda e, f: events.append((e, f))])
    assert [f["phase"] for e, f in events if e == "phase"] == [2]
    assert result.sft.n_entries == 10 and list(result.sft.entries) == [name]


def test_full_fine_tuning_baseline_keeps_every_entry(tiny_model_dir):
    model, objective = mlm_setup(tiny_model_dir)
    result = train_sft(model, objective, config(method="full-ft"), manifest={"kind": "language"})
    assert result.sft.n_entries == sum(p.numel() for p in maskable_parameters(model).values())


def test_task_sft_on_a_language_sft_stores_only_its_own_diff(tiny_model_dir, tmp_path):
    from deftx.data import LabelledData

    model, objective = mlm_setup(tiny_model_dir)
    lang = train_sft(model, objective, config(), manifest={"kind": "language"}).sft
    tokenizer = load_tokenizer(tiny_model_dir)
    texts = sentences(40, seed=1)
    labels = [int("bagus" in t or "enak" in t) for t in texts]
    data = LabelledData(texts=texts, pairs=None, labels=labels, label_names=("negative", "positive"), source="test")
    clf, missing = load_model(tiny_model_dir, "classification", labels=data.label_names)
    # The tiny checkpoint has no pooler: it is newly initialised on each load, so it is trained and stored densely.
    dense = sorted(set(head_parameters(clf)) | set(missing))
    assert "bert.pooler.dense.weight" in dense and "classifier.weight" in dense
    task_objective = ClassificationObjective(tokenizer, data, data, max_length=16)
    task_cfg = resolve_config("task", "smoke", phase1_steps=3, phase2_steps=3, batch_size=8, lr=1e-2, k=0.02, device="cpu")
    task = train_sft(clf, task_objective, task_cfg, manifest={"kind": "task"}, dense_parameters=dense, start_sft=lang).sft
    n_sparse = sum(p.numel() for n, p in maskable_parameters(clf).items() if "bert." + n not in dense)
    assert task.n_entries == round(0.02 * n_sparse)
    assert "bert.pooler.dense.weight" in task.head
    # theta0 + phi_lang + phi_task (with the task head) is exactly the trained model.
    fresh, _ = load_model(tiny_model_dir, "classification", labels=data.label_names)
    compose([lang, task]).apply(fresh)
    trained = dict(clf.named_parameters())
    for name, p in fresh.named_parameters():
        assert torch.allclose(p, trained[name], atol=1e-6), name
    # and the task diff alone does not contain the language SFT
    fresh2, _ = load_model(tiny_model_dir, "classification", labels=data.label_names)
    task.apply(fresh2)
    assert not all(torch.allclose(p, trained[n], atol=1e-6) for n, p in fresh2.named_parameters())
    task.save(tmp_path / "task")
    assert SparseDiff.load(tmp_path / "task").n_entries == task.n_entries


def test_gradient_accumulation_trains_the_sft_of_one_batch(tiny_model_dir):
    """--grad-accum 3 cuts each batch of 8 into micro-batches (3, 2, 3 rows) whose summed losses
    are divided by the whole batch's predicted-token count: the same SFT as one batch, to 1e-6."""
    sfts = []
    for accum in (1, 3):
        model, objective = mlm_setup(tiny_model_dir)
        model.config.hidden_dropout_prob = model.config.attention_probs_dropout_prob = 0.0
        for module in model.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.0
        cfg = config(method="lt-sft", batch_size=8, grad_accum=accum, l1=0.5, weight_decay=0.1)
        sfts.append(train_sft(model, objective, cfg, manifest={"kind": "language"}).sft)
    one, accumulated = sfts
    assert one.entries.keys() == accumulated.entries.keys()
    for name, (index, values) in one.entries.items():
        assert torch.equal(index, accumulated.entries[name][0]), name
        assert torch.allclose(values, accumulated.entries[name][1], rtol=0, atol=1e-6), name


def record_bf16_autocast(objective) -> list[bool]:
    """Whether each training loss of ``objective`` ran under bfloat16 autocast, filled as it trains."""
    autocast = []
    loss = objective.loss

    def recording_loss(*args, **kwargs):
        autocast.append(torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16)
        return loss(*args, **kwargs)

    objective.loss = recording_loss
    return autocast


def test_bf16_autocast_trains_float32_weights_and_sft(tiny_model_dir):
    """--mixed-precision bf16 on the CPU: forward and backward in bfloat16 autocast; the weights,
    the phase-1 difference, the selection and the stored values stay float32."""
    model, objective = mlm_setup(tiny_model_dir)
    autocast = record_bf16_autocast(objective)
    result = train_sft(model, objective, config(method="deftx", mixed_precision="bf16"), manifest={"kind": "language"})
    assert autocast and all(autocast), "every training forward ran under bfloat16 autocast"
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert all(values.dtype == torch.float32 for _, values in result.sft.entries.values())
    assert result.sft.n_entries == result.summary["k"]
    assert result.sft.manifest["training"]["mixed_precision"] == "bf16"
    # and a later training in the same process may go back to float32
    model, objective = mlm_setup(tiny_model_dir)
    assert train_sft(model, objective, config(), manifest={"kind": "language"}).sft.n_entries > 0


def test_gradient_accumulation_of_a_task_sft_trains_the_sft_of_one_batch(tiny_model_dir):
    """The classification objective's summed loss over the batch's example count: micro-batches of
    3, 2 and 3 examples give the task SFT (and its dense head) of one batch of 8, to 1e-6."""
    from deftx.data import LabelledData

    tokenizer = load_tokenizer(tiny_model_dir)
    texts = sentences(40, seed=1)
    data = LabelledData(texts=texts, pairs=None, labels=[int("bagus" in t) for t in texts],
                        label_names=("negative", "positive"), source="test")
    sfts = []
    for accum in (1, 3):
        torch.manual_seed(0)  # the same new classifier for both
        clf, missing = load_model(tiny_model_dir, "classification", labels=data.label_names)
        for module in clf.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.0
        dense = sorted(set(head_parameters(clf)) | set(missing))
        objective = ClassificationObjective(tokenizer, data, None, max_length=16)
        cfg = resolve_config("task", "smoke", mixed_precision="no", phase1_steps=3, phase2_steps=3, batch_size=8, lr=1e-2, k=0.05,
                             device="cpu", grad_accum=accum, weight_decay=0.1)
        sfts.append(train_sft(clf, objective, cfg, manifest={"kind": "task"}, dense_parameters=dense).sft)
    one, accumulated = sfts
    for name, (index, values) in one.entries.items():
        assert torch.equal(index, accumulated.entries[name][0]), name
        assert torch.allclose(values, accumulated.entries[name][1], rtol=0, atol=1e-6), name
    for name, value in one.head.items():
        assert torch.allclose(value, accumulated.head[name], rtol=0, atol=1e-6), name


def test_language_sft_records_the_start_points_held_out_masked_lm(tiny_model_dir):
    """``base_eval``: the held-out masked-LM metrics of the base model, measured before the first step
    (logged as an eval event at step 0), differing from those after training."""
    model, objective = mlm_setup(tiny_model_dir)
    fresh, _ = mlm_setup(tiny_model_dir)
    expected = objective.evaluate(fresh, 32)
    assert expected is not None
    events = []
    result = train_sft(model, objective, config(phase1_steps=6, phase2_steps=6, lr=5e-2), manifest={"kind": "language"},
                       callbacks=[lambda e, f: events.append((e, f))])
    assert result.summary["base_eval"] == expected
    assert result.sft.manifest["metrics"]["base_eval"] == expected
    evals = [f for e, f in events if e == "eval"]
    assert (evals[0]["phase"], evals[0]["step"], evals[0]["metrics"]) == (1, 0, expected)
    assert [e for e, _ in events].index("eval") < [e for e, _ in events].index("train")
    assert result.summary["phase2"]["eval"]["mlm_loss"] != expected["mlm_loss"]


def test_start_point_is_evaluated_when_the_mask_is_given(tiny_model_dir):
    model, objective = mlm_setup(tiny_model_dir)
    fresh, _ = mlm_setup(tiny_model_dir)
    mask = {name: torch.ones(p.shape, dtype=torch.bool) for name, p in maskable_parameters(model).items()}
    events = []
    result = train_sft(model, objective, config(), manifest={"kind": "language"}, mask=mask,
                       callbacks=[lambda e, f: events.append((e, f))])
    assert result.summary["base_eval"] == objective.evaluate(fresh, 32)
    assert [(f["phase"], f["step"]) for e, f in events if e == "eval"][0] == (2, 0)


def test_task_sft_records_no_base_eval(tiny_model_dir):
    from deftx.data import LabelledData

    tokenizer = load_tokenizer(tiny_model_dir)
    texts = sentences(40, seed=1)
    data = LabelledData(texts=texts, pairs=None, labels=[int("enak" in t) for t in texts],
                        label_names=("negative", "positive"), source="test")
    clf, missing = load_model(tiny_model_dir, "classification", labels=data.label_names)
    events = []
    task_cfg = resolve_config("task", "smoke", phase1_steps=2, phase2_steps=2, batch_size=8, k=0.02, device="cpu")
    result = train_sft(clf, ClassificationObjective(tokenizer, data, data, max_length=16), task_cfg,
                       manifest={"kind": "task"}, dense_parameters=sorted(set(head_parameters(clf)) | set(missing)),
                       callbacks=[lambda e, f: events.append((e, f))])
    assert "base_eval" not in result.summary
    assert all(f["step"] > 0 for e, f in events if e == "eval")


@pytest.mark.parametrize("fast", [True, False], ids=["bf16-cpu", "no-bf16-cpu"])
def test_auto_precision_follows_the_cpu_and_is_recorded_resolved(tiny_model_dir, monkeypatch, fast):
    """--mixed-precision auto (the CPU presets' default): bf16 autocast where the CPU multiplies bf16
    in hardware, float32 elsewhere; the SFT and the run summary say which one ran, not "auto"."""
    from deftx.training import distributed

    monkeypatch.setattr(distributed, "cpu_has_fast_bf16", lambda: fast)
    model, objective = mlm_setup(tiny_model_dir)
    autocast = record_bf16_autocast(objective)
    cfg = config(mixed_precision="auto")
    assert cfg.mixed_precision == "auto"
    result = train_sft(model, objective, cfg, manifest={"kind": "language"})
    assert autocast and all(on == fast for on in autocast)
    resolved = "bf16" if fast else "no"
    assert result.sft.manifest["training"]["mixed_precision"] == resolved
    assert result.summary["mixed_precision"] == resolved
