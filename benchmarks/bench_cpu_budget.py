"""How far a CPU budget goes: tokens per second of a masked-LM step and of a task step, under thread
settings, batch layouts and sequence lengths.

Phase-1 training steps (forward, backward, AdamW over every weight) of the base model, timed after two
warm-up steps, each configuration in fresh worker processes:

* masked-LM (the language SFTs): 16 blocks of 64 tokens of Indonesian text (the ``quick``/``cpu`` settings);
  one process with 1 thread, one with 2 threads, and two processes side by side with 1 thread each (two
  experiments at once: the sum of their rates is what the machine gets done);
* task (sentiment on SmSA, the task SFTs): batches of 16 cut at 128, 96 or 64 tokens, random or grouped by
  length (as ``group_by_length``), with the same thread settings.

Tokens per second counts the tokens a step computes (padding included) and the real ones apart. Run it
on an otherwise idle machine:

    python benchmarks/bench_cpu_budget.py                 # about 4 minutes on 2 cores
    python benchmarks/bench_cpu_budget.py --steps 3 --quick   # a try-out
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import SHARED, machine_header, table  # noqa: E402


def worker(spec: dict, queue) -> None:
    """Time ``spec["steps"]`` training steps of one configuration; put the rates on ``queue``."""
    threads = spec["threads"]
    os.environ["OMP_NUM_THREADS"] = str(threads)
    import torch

    torch.set_num_threads(threads)
    from deftx.data import get_task, load_task_split
    from deftx.data.text import load_unlabelled_text
    from deftx.model import load_model, load_tokenizer
    from deftx.objectives import ClassificationObjective, MaskedLMObjective

    tokenizer = load_tokenizer(spec["model"])
    if spec["kind"] == "mlm":
        model, _ = load_model(spec["model"], "mlm")
        lines, _ = load_unlabelled_text("ind", spec["data_dir"], max_lines=2000, seed=0)
        objective = MaskedLMObjective(tokenizer, lines, max_length=spec["max_length"], seed=0)
    else:
        task = get_task("smsa")
        train = load_task_split(task, "ind", "train", spec["data_dir"])
        model, _ = load_model(spec["model"], "classification", labels=list(task.labels))
        objective = ClassificationObjective(tokenizer, train, max_length=spec["max_length"],
                                            group_by_length=spec["grouped"])
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    batches = objective.batches(16, seed=0)
    pad = tokenizer.pad_token_id
    computed = real = 0
    started = None
    for step in range(spec["steps"] + 2):
        if step == 2:
            computed = real = 0
            started = time.perf_counter()
        batch = next(batches)
        ids = batch["input_ids"]
        computed += ids.numel()
        real += int((ids != pad).sum()) if pad is not None else ids.numel()
        loss = objective.loss(model, batch, step_seed=step)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    seconds = time.perf_counter() - started
    queue.put({"seconds_per_step": seconds / spec["steps"], "tokens_per_s": computed / seconds,
               "real_tokens_per_s": real / seconds})


def measure(spec: dict, processes: int) -> dict:
    """Run ``processes`` copies of one configuration side by side; their summed rates."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=worker, args=(spec, queue)) for _ in range(processes)]
    for proc in procs:
        proc.start()
    results = [queue.get(timeout=1800) for _ in procs]
    for proc in procs:
        proc.join()
    return {
        "seconds_per_step": sum(r["seconds_per_step"] for r in results) / len(results),
        "tokens_per_s": sum(r["tokens_per_s"] for r in results),
        "real_tokens_per_s": sum(r["real_tokens_per_s"] for r in results),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(SHARED / "models" / "me5-small-mlm"))
    parser.add_argument("--data-dir", default=str(SHARED / "data"))
    parser.add_argument("--steps", type=int, default=12, help="timed steps per configuration (default 12)")
    parser.add_argument("--quick", action="store_true", help="only the masked-LM step and two task layouts")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    layouts = [("mlm", 64, False)]
    layouts += [("task", 128, True), ("task", 128, False)] if args.quick else [
        ("task", 128, True), ("task", 128, False), ("task", 96, False), ("task", 64, True)]
    threadings = [(1, 1), (cores, 1), (1, cores)] if cores > 1 else [(1, 1)]  # (threads, processes)
    rows = []
    for kind, length, grouped in layouts:
        for threads, processes in threadings:
            spec = dict(kind=kind, max_length=length, grouped=grouped, threads=threads, steps=args.steps,
                        model=args.model, data_dir=args.data_dir)
            r = measure(spec, processes)
            what = "masked-LM 16 x 64" if kind == "mlm" else f"task 16 x <={length}, {'grouped' if grouped else 'random'}"
            rows.append([what, f"{processes} x {threads}", f"{r['seconds_per_step']:.2f}", f"{r['tokens_per_s']:,.0f}",
                         f"{r['real_tokens_per_s']:,.0f}"])
            print(f"  {rows[-1]}", file=sys.stderr, flush=True)
    print(machine_header("CPU budget: training-step throughput", ["python", *sys.argv]))
    print()
    print(table(["step", "processes x threads", "s/step (each)", "tokens/s (all)", "real tokens/s (all)"], rows))


if __name__ == "__main__":
    main()
