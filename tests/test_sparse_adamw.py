"""Phase 2's optimizer: AdamW state for the selected entries only, equal to a dense masked AdamW."""

import copy
import random

import pytest
import torch

from deftx.config import resolve_config
from deftx.model import full_name, head_parameters, load_model, load_tokenizer, maskable_parameters, untie_output_embeddings
from deftx.objectives import MaskedLMObjective
from deftx.training.engine import _Phase
from deftx.training.sparse_adamw import SparseAdamW, moment_bytes

WORDS = "film ini sangat bagus jelek tidak saya suka makanan enak".split()
STEPS = 6
TOTAL = 1000  # the phase's budget: the linear schedule decays the rate a little every step


def lines(n=120, seed=0):
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 9))) for _ in range(n)]


def setup(model_dir):
    tokenizer = load_tokenizer(model_dir)
    model, _ = load_model(model_dir, "mlm")
    decoder = untie_output_embeddings(model)
    model.eval()  # no dropout: both sides must see the same forward pass
    objective = MaskedLMObjective(tokenizer, lines(), max_length=16)
    head = {n: p for n, p in head_parameters(model).items() if p is not decoder}
    maskable = {n: p for n, p in maskable_parameters(model).items() if full_name(model, n) not in head}
    for p in model.parameters():
        p.requires_grad_(False)
    for p in list(maskable.values()) + list(head.values()):
        p.requires_grad_(True)
    generator = torch.Generator().manual_seed(1)
    masks = {n: torch.rand(p.shape, generator=generator) < 0.05 for n, p in maskable.items()}
    return model, objective, maskable, head, masks


def dense_masked_adamw(model, objective, maskable, head, masks, start, cfg, batches):
    """The engine's phase 2 before SparseAdamW: dense AdamW moments for every trainable entry, the
    gradient zeroed outside the mask after the L1 term, clipping over all gradients, the masks'
    weight decay applied by hand; the dense head decayed by AdamW itself."""
    decay = [p for n, p in maskable.items() if not n.endswith("bias")]
    no_decay = [p for n, p in maskable.items() if n.endswith("bias")]
    head_decay = [p for n, p in head.items() if not n.endswith("bias")]
    head_no_decay = [p for n, p in head.items() if n.endswith("bias")]
    optimizer = torch.optim.AdamW(
        [{"params": decay + no_decay + head_no_decay, "weight_decay": 0.0},
         {"params": head_decay, "weight_decay": cfg.weight_decay}], lr=cfg.lr, foreach=True)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: (TOTAL - s) / TOTAL)
    trainable = list(maskable.values()) + list(head.values())
    n = sum(p.numel() for p in maskable.values())
    for seed, batch in batches:
        loss = objective.loss(model, batch, seed)
        optimizer.zero_grad(set_to_none=False)
        loss.backward()
        with torch.no_grad():
            for name, p in maskable.items():
                p.grad.add_(torch.sign(p - start[name]), alpha=cfg.l1 / n)
                p.grad.mul_(masks[name])
            torch.nn.utils.clip_grad_norm_(trainable, cfg.max_grad_norm)
            lr = optimizer.param_groups[0]["lr"]
            for name, p in maskable.items():
                if not name.endswith("bias"):
                    p.sub_(p * masks[name], alpha=lr * cfg.weight_decay)
        optimizer.step()
        scheduler.step()


def test_phase2_equals_dense_masked_adamw(tiny_model_dir):
    """Six steps with weight decay, L1 and clipping: every entry within 1e-6 (float32 rounding; the
    decay is computed as p * (1 - lr wd) here and p - lr wd p there); untouched entries bit-equal."""
    model, objective, maskable, head, masks = setup(tiny_model_dir)
    reference = copy.deepcopy(model)
    ref_named = dict(reference.named_parameters())
    named = {id(p): n for n, p in model.named_parameters()}
    ref_maskable = {n: ref_named[named[id(p)]] for n, p in maskable.items()}
    ref_head = {n: ref_named[n] for n in head}
    start = {n: p.detach().clone() for n, p in maskable.items()}
    head_start = {n: p.detach().clone() for n, p in head.items()}
    cfg = resolve_config("language", "smoke", mixed_precision="no", phase2_steps=TOTAL, lr=5e-3, weight_decay=0.3, l1=50.0,
                         max_grad_norm=0.5, batch_size=8, device="cpu")
    batches = [(100 + i, b) for i, b in zip(range(STEPS), objective.batches(8, seed=3))]

    phase = _Phase(2, model, objective, cfg, maskable, head, start, masks, lambda *a, **k: None)
    assert isinstance(phase.optimizer, SparseAdamW)
    for seed, batch in batches:
        phase.step(batch, seed)
    dense_masked_adamw(reference, objective, ref_maskable, ref_head, masks, start, cfg, batches)

    moved = 0
    for name, p in maskable.items():
        ref = ref_maskable[name]
        assert torch.equal(p[~masks[name]], start[name][~masks[name]]), f"{name}: an unselected entry moved"
        assert torch.allclose(p, ref, rtol=0, atol=1e-6), f"{name}: max diff {(p - ref).abs().max():.2e}"
        moved += int((p != start[name]).sum())
    assert moved > 0.9 * sum(int(m.sum()) for m in masks.values())
    for name, p in head.items():
        assert not torch.equal(p, head_start[name]), f"{name}: the dense head did not train"
        assert torch.allclose(p, ref_head[name], rtol=0, atol=1e-6), name


def test_state_holds_the_selected_entries_only(tiny_model_dir):
    model, objective, maskable, head, masks = setup(tiny_model_dir)
    k = sum(int(m.sum()) for m in masks.values())
    params = list(maskable.values()) + list(head.values())
    optimizer = SparseAdamW(params, {p: masks[n] for n, p in maskable.items()}, lr=1e-3)
    batch = next(objective.batches(8, seed=0))
    objective.loss(model, batch, 0).backward()
    optimizer.step()
    for name, p in maskable.items():
        state = optimizer.state[p]
        assert state["exp_avg"].shape == (int(masks[name].sum()),)
        assert torch.equal(state["index"], torch.nonzero(masks[name].reshape(-1)).reshape(-1))
    n_head = sum(p.numel() for p in head.values())
    assert moment_bytes(optimizer) == {"moments": 2 * 4 * (k + n_head), "indices": 8 * k}


def test_state_dict_round_trip_resumes_exactly(tiny_model_dir):
    model, objective, maskable, head, masks = setup(tiny_model_dir)
    twin = copy.deepcopy(model)
    twin_named = dict(twin.named_parameters())
    names = {id(p): n for n, p in model.named_parameters()}

    def make(m_params):
        decay = [p for n, p in m_params if not n.endswith("bias")]
        rest = [p for n, p in m_params if n.endswith("bias")]
        by_name = {n: p for n, p in m_params}
        mask_of = {by_name[names[id(p)]]: masks[n] for n, p in maskable.items()}
        return SparseAdamW([{"params": decay, "weight_decay": 0.1}, {"params": rest, "weight_decay": 0.0}],
                           mask_of, lr=1e-3)

    trained = [(names[id(p)], p) for p in list(maskable.values()) + list(head.values())]
    first = make(trained)
    batches = list(objective.batches(8, seed=0))[:4]
    for i, batch in enumerate(batches[:2]):
        first.zero_grad()
        objective.loss(model, batch, i).backward()
        first.step()
    saved = copy.deepcopy(first.state_dict())
    with torch.no_grad():
        for n, p in model.named_parameters():
            twin_named[n].copy_(p)
    second = make([(n, twin_named[n]) for n, _ in trained])
    second.load_state_dict(saved)
    for i, batch in enumerate(batches[2:], start=2):
        for opt, m in ((first, model), (second, twin)):
            opt.zero_grad()
            objective.loss(m, batch, i).backward()
            opt.step()
    for n, p in model.named_parameters():
        assert torch.equal(p, twin_named[n]), n
    assert second.state_dict()["state"].keys() == first.state_dict()["state"].keys()


def test_indices_beyond_float32_integers_load_back_exactly():
    # A word-embedding matrix has more than 2**24 entries (float32 holds integers exactly up to 2**24):
    # torch's load_state_dict casts state tensors to the parameter's dtype, which moved such indices by
    # one, so a run resumed in phase 2 trained other entries than the uninterrupted one.
    n = 2**24 + 64
    p = torch.nn.Parameter(torch.zeros(n))
    mask = torch.zeros(n, dtype=torch.bool)
    picked = torch.tensor([3, 2**24 + 1, 2**24 + 3, n - 1])
    mask[picked] = True
    first = SparseAdamW([p], {p: mask}, lr=1e-2, weight_decay=0.0)
    p.grad = torch.ones(n)
    first.step()
    second = SparseAdamW([p], {p: mask}, lr=1e-2, weight_decay=0.0)
    second.load_state_dict(copy.deepcopy(first.state_dict()))
    loaded = second.state[p]["index"]
    assert loaded.dtype == torch.int64 and torch.equal(loaded, picked)
    assert torch.equal(second.state[p]["exp_avg"], first.state[p]["exp_avg"])


def test_a_mask_must_fit_its_parameter():
    p = torch.nn.Parameter(torch.zeros(3, 4))
    with pytest.raises(ValueError, match="shape"):
        SparseAdamW([p], {p: torch.ones(4, 3, dtype=torch.bool)})
    q = torch.nn.Parameter(torch.zeros(2))
    with pytest.raises(ValueError, match="does not train"):
        SparseAdamW([p], {q: torch.ones(2, dtype=torch.bool)})
