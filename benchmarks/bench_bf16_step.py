"""bf16 autocast against float32: the time of a training step on this CPU.

A phase-1 training step as deftx runs it (the objective's loss under ``torch.autocast("cpu",
torch.bfloat16)`` or without, backward, gradient clipping, the fused AdamW step over every weight) of
me5-small-mlm at the ``quick`` presets' shapes:

* masked-LM: 16 blocks of 64 tokens of Madurese text (the language SFTs);
* task: SmSA sentences in batches of 16 cut at 128 tokens, grouped by length (the task SFTs).

Both precisions step the same batches in interleaved rounds (the order alternates every round), so
that load from other processes hits both alike; the figure is the median over the rounds. The AdamW
step alone is timed too, in its fused form (what phase 1 runs) and in the multi-tensor (foreach) form.

    python benchmarks/bench_bf16_step.py                 # about 4 minutes on 2 cores
    python benchmarks/bench_bf16_step.py --quick         # a try-out
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from contextlib import nullcontext
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import SHARED, machine_header, table  # noqa: E402


def setups(model_dir: str, data_dir: str, quick: bool):
    """(name, model, objective, batches) of the masked-LM and the task step."""
    from deftx.data import get_task, load_task_split
    from deftx.data.text import load_unlabelled_text
    from deftx.model import load_model, load_tokenizer
    from deftx.objectives import ClassificationObjective, MaskedLMObjective

    tokenizer = load_tokenizer(model_dir)
    model, _ = load_model(model_dir, "mlm")
    lines, _ = load_unlabelled_text("mad", data_dir, max_lines=2000, seed=0)
    mlm = MaskedLMObjective(tokenizer, lines, max_length=64, seed=0)
    yield "masked-LM 16 x 64", model, mlm, mlm.batches(16, seed=0)
    if quick:
        return
    task = get_task("smsa")
    train = load_task_split(task, "ind", "train", data_dir)
    model, _ = load_model(model_dir, "classification", labels=list(task.labels))
    cls = ClassificationObjective(tokenizer, train, max_length=128, group_by_length=True)
    yield "task 16 x <=128, grouped", model, cls, cls.batches(16, seed=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(SHARED / "models" / "me5-small-mlm"))
    parser.add_argument("--data-dir", default=str(SHARED / "data"))
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--threads", default="1,2", help="torch threads, comma-separated")
    parser.add_argument("--quick", action="store_true", help="masked-LM only, 3 rounds")
    args = parser.parse_args()
    import torch
    from torch import nn

    from deftx.training.distributed import cpu_has_fast_bf16
    from deftx.training.engine import dense_adamw

    rounds = 3 if args.quick else args.rounds
    print(machine_header("bf16 autocast against float32: training-step time"))
    print(f"cpu bf16  {'AVX512-BF16 or AMX (bf16 matrix products in hardware)' if cpu_has_fast_bf16() else 'none: bf16 is emulated here'}")
    print(f"rounds    {rounds} interleaved rounds per setting, medians\n", flush=True)
    rows, opt_rows = [], []
    for name, model, objective, batches in setups(args.model, args.data_dir, args.quick):
        model.train()
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = dense_adamw([{"params": params, "weight_decay": 0.0}], 1e-5)
        fixed = [next(batches) for _ in range(4)]

        def step(bf16: bool, batch) -> float:
            start = time.perf_counter()
            with torch.autocast("cpu", torch.bfloat16) if bf16 else nullcontext():
                loss = objective.loss(model, batch, step_seed=0)
            loss.backward()
            nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            return time.perf_counter() - start

        for threads in [int(t) for t in args.threads.split(",")]:
            torch.set_num_threads(threads)
            for bf16 in (False, True):  # warm-up
                step(bf16, fixed[0])
            times = {False: [], True: []}
            for r in range(rounds):
                for bf16 in ((False, True) if r % 2 == 0 else (True, False)):
                    times[bf16].append(step(bf16, fixed[r % len(fixed)]))
            fp32, bf16 = statistics.median(times[False]), statistics.median(times[True])
            rows.append([name, threads, f"{fp32:.3f}", f"{bf16:.3f}", f"{bf16 / fp32:.2f}",
                         f"{min(times[True]) / min(times[False]):.2f}"])
            print(f"  {rows[-1]}", file=sys.stderr, flush=True)
            # the optimizer step alone, fused (phase 1's) against foreach
            for p in params:
                p.grad = torch.randn_like(p) * 1e-3
            foreach = torch.optim.AdamW([{"params": params, "weight_decay": 0.0}], lr=1e-5, foreach=True)
            opt_times = {"fused": [], "foreach": []}
            for opt, key in ((optimizer, "fused"), (foreach, "foreach")):
                opt.step()
            for _ in range(rounds):
                for opt, key in ((optimizer, "fused"), (foreach, "foreach")):
                    start = time.perf_counter()
                    opt.step()
                    opt_times[key].append(time.perf_counter() - start)
            for p in params:
                p.grad = None
            del foreach
            fused_s, foreach_s = statistics.median(opt_times["fused"]), statistics.median(opt_times["foreach"])
            opt_rows.append([name, threads, f"{sum(p.numel() for p in params):,}", f"{foreach_s:.3f}",
                             f"{fused_s:.3f}", f"{fused_s / foreach_s:.2f}"])
    print(table(["step", "threads", "float32 s (median)", "bf16 s (median)", "bf16 / float32 (median)",
                 "bf16 / float32 (fastest)"], rows))
    print()
    print("AdamW step alone (part of the step above):")
    print(table(["model", "threads", "weights", "foreach s", "fused s", "fused / foreach"], opt_rows))


if __name__ == "__main__":
    main()
