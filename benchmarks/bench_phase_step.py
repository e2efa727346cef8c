"""A phase-2 (masked) training step against a phase-1 (full) step on the same batch: the cost of the
mask. Uses the engine's own ``deftx.training.engine._Phase`` with the ``paper`` language preset (L1
0.1, AdamW, gradient clipping at 1.0) at batch 8 x 128 tokens, masked-LM.

The model is XLM-R base built from its config (random weights: timing does not depend on them), with
the MLM decoder untied and frozen as the language pipeline does; the mask keeps K = 7,667,712 of the
277,414,656 maskable parameters (chosen by ``select_top_k`` over random scores). Text: the first lines
of ``../shared/data/nusawrites_unlabeled/mad.nusaparagraph.txt``, tokenised by the XLM-R tokenizer of
``../shared/models/me5-small-mlm`` (set ``DEFTX_SHARED_DIR`` to move ``../shared``).

Both phases live in one process and their steps alternate (1, 2, 1, 2, ...) on the same batch after
one warm-up step each, so that load from other processes hits both alike; the table gives the median
and the minimum of each. Memory: the peak extra resident set of one step (activations, gradients'
temporaries) and the state each phase holds between steps (optimizer state, masks).

    python benchmarks/bench_phase_step.py            # XLM-R base, 4 steps per phase: ~2 minutes on 2 cores
    python benchmarks/bench_phase_step.py --quick    # 4 layers, hidden 256: ~40 s
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
    table,
    timer,
    xlmr_base_config,
)


def tensor_bytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4 layers, hidden size 256 (a fast check)")
    parser.add_argument("--steps", type=int, default=4, help="measured steps per phase (default 4)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=128)
    args = parser.parse_args()

    import torch

    from deftx.config import resolve_config
    from deftx.model import load_tokenizer, maskable_parameters, model_from_config, untie_output_embeddings
    from deftx.objectives import MaskedLMObjective
    from deftx.selection import select_top_k
    from deftx.training.engine import _Phase

    model_dir = SHARED / "models" / "me5-small-mlm"
    text_file = SHARED / "data" / "nusawrites_unlabeled" / "mad.nusaparagraph.txt"
    if not model_dir.is_dir() or not text_file.is_file():
        sys.exit(f"bench_phase_step: needs {model_dir} and {text_file} (set DEFTX_SHARED_DIR)")

    overrides = dict(num_hidden_layers=4, hidden_size=256, intermediate_size=1024, num_attention_heads=4) if args.quick else {}
    config = xlmr_base_config(**overrides)
    print(machine_header("Phase-2 (masked) vs phase-1 (full) training step"))
    print(f"model     XLM-R {'(quick: 4 layers, hidden 256)' if args.quick else 'base'} from config: "
          f"{config.num_hidden_layers} layers, hidden {config.hidden_size}, vocab {config.vocab_size:,}; "
          f"masked-LM, batch {args.batch_size} x {args.max_length}")
    print(f"load      {os.getloadavg()[0]:.2f} (1-min load average at the start)", flush=True)

    model = model_from_config(config, "mlm", seed=0)
    untie_output_embeddings(model)
    maskable = maskable_parameters(model)
    for p in model.parameters():
        p.requires_grad_(False)
    for p in maskable.values():
        p.requires_grad_(True)
    start = {name: p.detach().clone() for name, p in maskable.items()}
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
    print(f"setup     {n_maskable:,} maskable parameters, K = {k:,}; preset paper: lr {cfg.lr}, L1 {cfg.l1}, "
          f"weight decay {cfg.weight_decay}, max grad norm {cfg.max_grad_norm}\n", flush=True)

    def noop(*_, **__):
        pass

    phases = {
        1: _Phase(1, model, objective, cfg, maskable, {}, start, None, noop),
        2: _Phase(2, model, objective, cfg, maskable, {}, start, masks, noop),
    }
    model.train()
    times: dict[int, list[float]] = {1: [], 2: []}
    step_peak: dict[int, list[int]] = {1: [], 2: []}
    first_growth = {}
    for i in range(args.steps + 1):
        for phase in (1, 2) if i % 2 == 0 else (2, 1):
            before = rss_bytes()
            with PeakMemory() as mem, timer() as elapsed:
                phases[phase].step(batch, step_seed=1234)
            if i == 0:  # warm-up: allocates the optimizer state and the gradients
                first_growth[phase] = rss_bytes() - before
                continue
            times[phase].append(elapsed())
            step_peak[phase].append(mem.extra)
        print(f"  round {i}: " + ", ".join(f"phase {p} {times[p][-1]:.2f}s" for p in (1, 2) if i and times[p]),
              file=sys.stderr, flush=True)

    # what the masking adds, timed alone: the gradient multiply of every step
    grads = [p.grad for p in maskable.values()]
    with timer() as mask_time:
        with torch.no_grad():
            for name, p in maskable.items():
                p.grad.mul_(phases[2].masks[name])
    opt_state = {ph: tensor_bytes(t for s in phases[ph].optimizer.state.values() for t in s.values()
                                  if torch.is_tensor(t)) for ph in (1, 2)}
    held = {1: opt_state[1], 2: opt_state[2] + tensor_bytes(phases[2].masks.values())}
    rows = []
    for ph in (1, 2):
        rows.append([f"phase {ph} ({'full' if ph == 1 else 'masked'})", statistics.median(times[ph]), min(times[ph]),
                     statistics.median(times[ph]) / statistics.median(times[1]), min(times[ph]) / min(times[1]),
                     mib(max(step_peak[ph])), mib(held[ph]), mib(first_growth[ph])])
    print(table(["step", "median s", "min s", "median / phase 1", "min / phase 1", "step peak extra MiB",
                 "state held MiB", "first step growth MiB"], rows))
    shared = tensor_bytes(list(start.values()) + [g for g in grads if g is not None]) + tensor_bytes(
        p for p in model.parameters())
    print(f"\nshared by both: parameters + start copy + gradients = {mib(shared):,.0f} MiB; "
          f"the masks: {mib(tensor_bytes(masks.values())):,.0f} MiB (1 byte per maskable parameter)")
    print(f"gradient masking alone (p.grad.mul_(mask) over all maskable tensors): {mask_time():.3f} s")
    ratio = statistics.median(times[2]) / statistics.median(times[1])
    print(f"load      {os.getloadavg()[0]:.2f} (1-min load average at the end)")
    print(f"target    phase-2 step no more than 10% slower than phase 1: {'MET' if ratio <= 1.10 else 'NOT MET'} "
          f"(median ratio {ratio:.3f}, min ratio {min(times[2]) / min(times[1]):.3f})")


if __name__ == "__main__":
    main()
