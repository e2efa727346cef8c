"""A phase-2 (masked) training step against a phase-1 (full) step on the same batch: the cost of the
mask, and bf16 autocast against float32 on this CPU. Uses the engine's own
``deftx.training.engine._Phase`` with the ``paper`` language preset (L1 0.1, AdamW, gradient clipping at
1.0) at batch 8 x 128 tokens, masked-LM. Phase 2 uses ``SparseAdamW`` (moments for the K selected
entries only); phase 1 ``torch.optim.AdamW`` over every maskable parameter.

The model is XLM-R base built from its config (random weights: timing does not depend on them), with
the MLM decoder untied and frozen as the language pipeline does; the mask keeps K = 7,667,712 of the
277,414,656 maskable parameters (chosen by ``select_top_k`` over random scores). Text: the first lines
of ``../shared/data/nusawrites_unlabeled/mad.nusaparagraph.txt``, tokenised by the XLM-R tokenizer of
``../shared/models/me5-small-mlm`` (set ``DEFTX_SHARED_DIR`` to move ``../shared``).

Three step kinds live in one process and alternate round by round (phase 1, phase 2, phase 1 in bf16
autocast; the order rotates every round) on the same batch after one warm-up step each, so that load
from other processes hits all alike; the table gives the median and the minimum of each over the
rounds (default 8). Memory: the whole step's peak resident set (the process's peak during the step),
the peak extra over the resident set before the step, and the state each phase holds between steps:
optimizer moments, and apart from them the masks and the selected entries' indices. The bf16 step
shares phase 1's optimizer (its state is not counted twice).

    python benchmarks/bench_phase_step.py            # XLM-R base, 8 rounds: ~4 minutes on 2 cores
    python benchmarks/bench_phase_step.py --quick    # 4 layers, hidden 256: ~1 minute
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    K_LANG,
    SHARED,
    PeakMemory,
    machine_header,
    mib,
    rss_bytes,
    run_worker,
    table,
    timer,
    trainable_maskable,
    xlmr_base_config,
)


def tensor_bytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def build(config, args, model_dir, text_file):
    """The model, its maskable parameters and start copy, a random top-K mask, one batch, the preset."""
    import torch

    from deftx.config import resolve_config
    from deftx.model import load_tokenizer, model_from_config, untie_output_embeddings
    from deftx.objectives import MaskedLMObjective
    from deftx.methods.selection import select_top_k

    model = model_from_config(config, "mlm", seed=0)
    untie_output_embeddings(model)
    maskable, start = trainable_maskable(model)
    n_maskable = sum(p.numel() for p in maskable.values())
    k = round(K_LANG / 277_414_656 * n_maskable)
    generator = torch.Generator().manual_seed(0)
    scores = {name: torch.empty(p.shape).normal_(generator=generator) for name, p in maskable.items()}
    masks = select_top_k(scores, k)
    del scores

    tokenizer = load_tokenizer(model_dir)
    lines = text_file.read_text(encoding="utf-8").splitlines()[:400]
    objective = MaskedLMObjective(tokenizer, lines, max_length=args.max_length, seed=0)
    batch = next(objective.batches(args.batch_size, seed=0))
    cfg = resolve_config("language", "paper", batch_size=args.batch_size, max_length=args.max_length, device="cpu",
                         phase1_steps=1000, phase2_steps=1000)
    return model, maskable, start, masks, k, n_maskable, objective, batch, cfg



def worker(args, config, model_dir, text_file) -> None:
    """One phase alone in this process: its whole step's peak resident set (everything the process
    holds: model, start copy, gradients, optimizer state, masks, activations)."""
    import json

    from _common import peak_rss_bytes, reset_peak
    from deftx.training.distributed import LossModule, make_accelerator
    from deftx.training.engine import _Phase

    model, maskable, start, masks, k, n_maskable, objective, batch, cfg = build(config, args, model_dir, text_file)
    phase = 1 if args.worker == "phase 1" else 2
    if phase == 1:
        masks = None
    accelerator = make_accelerator("cpu", "no")
    step = _Phase(phase, model, objective, cfg, maskable, {}, start, masks, lambda *a, **kw: None, None, accelerator,
                  LossModule(model, objective))
    model.train()
    peaks = []
    for _ in range(3):
        reset_peak()
        step.step(batch, step_seed=1234)
        peaks.append(peak_rss_bytes())
    print(json.dumps({"peak": max(peaks), "after": rss_bytes()}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4 layers, hidden size 256 (a fast check)")
    parser.add_argument("--rounds", type=int, default=8,
                        help="measured rounds; each times one step of every kind (default 8; 0: the whole-step peaks only)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--no-bf16", action="store_true", help="leave out the bf16 autocast step")
    parser.add_argument("--no-alone", action="store_true", help="leave out each phase's whole step alone (fresh processes)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()

    from deftx.training.distributed import LossModule, make_accelerator
    from deftx.training.engine import _Phase
    from deftx.training.sparse_adamw import moment_bytes

    model_dir = SHARED / "models" / "me5-small-mlm"
    text_file = SHARED / "data" / "nusawrites_unlabeled" / "mad.nusaparagraph.txt"
    if not model_dir.is_dir() or not text_file.is_file():
        sys.exit(f"bench_phase_step: needs {model_dir} and {text_file} (set DEFTX_SHARED_DIR)")

    overrides = dict(num_hidden_layers=4, hidden_size=256, intermediate_size=1024, num_attention_heads=4) if args.quick else {}
    config = xlmr_base_config(**overrides)
    if args.worker:
        worker(args, config, model_dir, text_file)
        return
    print(machine_header("Phase-2 (masked, SparseAdamW) vs phase-1 (full, AdamW) training step; bf16 vs fp32"))
    print(f"model     XLM-R {'(quick: 4 layers, hidden 256)' if args.quick else 'base'} from config: "
          f"{config.num_hidden_layers} layers, hidden {config.hidden_size}, vocab {config.vocab_size:,}; "
          f"masked-LM, batch {args.batch_size} x {args.max_length}")
    print(f"load      {os.getloadavg()[0]:.2f} (1-min load average at the start)", flush=True)

    if not args.no_alone:  # each phase alone first, in fresh processes, while this one holds no model yet
        flags = [f"--batch-size={args.batch_size}", f"--max-length={args.max_length}"] + (["--quick"] if args.quick else [])
        alone = {kind: run_worker(Path(__file__), [kind, *flags])["peak"] for kind in ("phase 1", "phase 2")}
        print("whole step alone: each phase in a fresh process (model, start copy, gradients, its optimizer state, "
              "masks, activations), peak resident set over 3 steps")
        for kind, peak in alone.items():
            print(f"  {kind}: {mib(peak):,.0f} MiB")
        print(f"  phase 2 / phase 1: {alone['phase 2'] / alone['phase 1']:.3f}\n", flush=True)
    if args.rounds == 0:
        return

    model, maskable, start, masks, k, n_maskable, objective, batch, cfg = build(config, args, model_dir, text_file)
    print(f"setup     {n_maskable:,} maskable parameters, K = {k:,}; preset paper: lr {cfg.lr}, L1 {cfg.l1}, "
          f"weight decay {cfg.weight_decay}, max grad norm {cfg.max_grad_norm}\n", flush=True)

    def noop(*_, **__):
        pass

    accelerator = make_accelerator("cpu", "no")
    loss_module = LossModule(model, objective)
    phases = {
        "phase 1": _Phase(1, model, objective, cfg, maskable, {}, start, None, noop, None, accelerator, loss_module),
        "phase 2": _Phase(2, model, objective, cfg, maskable, {}, start, masks, noop, None, accelerator, loss_module),
    }
    if not args.no_bf16:
        bf16 = _Phase(1, model, objective, cfg, maskable, {}, start, None, noop, None, accelerator,
                      Bf16Autocast(loss_module))
        bf16.optimizer, bf16.scheduler = phases["phase 1"].optimizer, phases["phase 1"].scheduler
        phases["phase 1 bf16"] = bf16
    kinds = list(phases)
    model.train()
    times: dict[str, list[float]] = {kind: [] for kind in kinds}
    step_peak: dict[str, list[int]] = {kind: [] for kind in kinds}
    step_extra: dict[str, list[int]] = {kind: [] for kind in kinds}
    first_growth = {}
    for i in range(args.rounds + 1):
        order = kinds[i % len(kinds):] + kinds[: i % len(kinds)]
        for kind in order:
            before = rss_bytes()
            with PeakMemory() as mem, timer() as elapsed:
                phases[kind].step(batch, step_seed=1234)
            if i == 0:  # warm-up: allocates the optimizer state and the gradients
                first_growth[kind] = rss_bytes() - before
                continue
            times[kind].append(elapsed())
            step_extra[kind].append(mem.extra)
            step_peak[kind].append(mem.base + mem.extra)
        if i:
            print(f"  round {i}: " + ", ".join(f"{kind} {times[kind][-1]:.2f}s" for kind in kinds), file=sys.stderr, flush=True)

    moments = {kind: moment_bytes(phases[kind].optimizer) for kind in ("phase 1", "phase 2")}
    mask_bytes = tensor_bytes(phases["phase 2"].masks.values())
    held = {"phase 1": moments["phase 1"]["moments"],
            "phase 2": moments["phase 2"]["moments"] + moments["phase 2"]["indices"] + mask_bytes}
    base = statistics.median(times["phase 1"])
    rows = []
    for kind in kinds:
        rows.append([kind, statistics.median(times[kind]), min(times[kind]), statistics.median(times[kind]) / base,
                     min(times[kind]) / min(times["phase 1"]), mib(max(step_peak[kind])), mib(max(step_extra[kind])),
                     mib(held.get(kind, 0)), mib(first_growth[kind])])
    print(table(["step", "median s", "min s", "median / phase 1", "min / phase 1", "step peak RSS MiB",
                 "step peak extra MiB", "state held MiB", "first step growth MiB"], rows))
    shared = tensor_bytes(list(start.values()) + [p.grad for p in maskable.values() if p.grad is not None]) + tensor_bytes(
        p for p in model.parameters())
    print(f"\nshared by all: parameters + start copy + gradients = {mib(shared):,.0f} MiB")
    print(f"optimizer moments: phase 1 {mib(moments['phase 1']['moments']):,.1f} MiB (2 x {n_maskable:,} x 4 bytes); "
          f"phase 2 {mib(moments['phase 2']['moments']):,.1f} MiB (2 x K x 4 bytes = {mib(2 * k * 4):,.1f} MiB; "
          f"no dense head here)")
    print(f"phase 2 also holds: indices of the selected entries {mib(moments['phase 2']['indices']):,.1f} MiB (int64), "
          f"masks {mib(mask_bytes):,.1f} MiB (1 byte per maskable parameter, kept for writing the SFT)")
    ratio = statistics.median(times["phase 2"]) / base
    print(f"load      {os.getloadavg()[0]:.2f} (1-min load average at the end)")
    print(f"target    phase-2 step <= 0.95 x phase 1 (median of {args.rounds} rounds): "
          f"{'MET' if ratio <= 0.95 else 'NOT MET'} (median ratio {ratio:.3f}, "
          f"min ratio {min(times['phase 2']) / min(times['phase 1']):.3f})")
    target_bytes = 2 * k * 4
    print(f"target    phase-2 moments <= 2 x K x 4 bytes + dense head: "
          f"{'MET' if moments['phase 2']['moments'] <= target_bytes else 'NOT MET'} "
          f"({moments['phase 2']['moments']:,} <= {target_bytes:,} bytes)")
    if "phase 1 bf16" in times:
        print(f"bf16      autocast phase-1 step / fp32 phase-1 step: "
              f"{statistics.median(times['phase 1 bf16']) / base:.3f} (median)")


class Bf16Autocast:
    """The loss module under bfloat16 autocast on the CPU, as accelerate's ``mixed_precision="bf16"``
    wraps a prepared module's forward."""

    def __init__(self, module) -> None:
        self.module = module

    def __call__(self, *args, **kwargs):
        import torch

        with torch.autocast("cpu", dtype=torch.bfloat16):
            return self.module(*args, **kwargs)

    def train(self, mode: bool = True):
        return self.module.train(mode)


if __name__ == "__main__":
    main()
