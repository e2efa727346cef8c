"""What a multi-source task SFT pays for its per-batch language SFTs: applying one source's language SFT
before a batch and removing it after (``deftx.training.swap.LanguageSwap``), against one training step
of the same model, batch and sequence length.

The model is me5-small-mlm as a sentiment classifier (or ``--model``); the language SFTs are random
ones with the quick preset's K (2.76% of the maskable parameters, as `deftx train-lang` keeps), one
per source, on the model's device. A training step is the classification forward, backward and a
dense AdamW step over every parameter (phase 1; phase 2 updates fewer). Rounds interleave a swap
and a step; medians reported.

    python benchmarks/bench_multisource.py                      # CPU, batch 16 x 128 tokens
    python benchmarks/bench_multisource.py --device cuda --batch-size 32
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import SHARED, machine_header, table  # noqa: E402


def random_language_sft(model, fraction: float, seed: int):
    from deftx.model import base_parameters, fingerprint
    from deftx.sft.diff import SparseDiff

    g = torch.Generator().manual_seed(seed)
    params = base_parameters(model)
    start = {n: p.detach().cpu().clone() for n, p in params.items()}
    masks = {n: torch.rand(t.shape, generator=g) < fraction for n, t in start.items()}
    current = {n: t + 1e-3 * torch.randn(t.shape, generator=g) for n, t in start.items()}
    return SparseDiff.from_difference(current, start, masks, manifest={
        "kind": "language", "language": f"l{seed}", "method": "lt-sft", "base_fingerprint": fingerprint(model)})


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=str(SHARED / "models" / "me5-small-mlm"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--fraction", type=float, default=0.0276, help="K of each language SFT, as a fraction")
    parser.add_argument("--sources", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=8)
    args = parser.parse_args()

    from deftx.model import load_model
    from deftx.training.swap import LanguageSwap

    device = torch.device(args.device)
    model = load_model(args.model, "classification", labels=["negative", "neutral", "positive"])[0]
    sfts = {f"l{i}": random_language_sft(model, args.fraction, i) for i in range(args.sources)}
    model.to(device).train()
    swap = LanguageSwap(model, sfts)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5, foreach=True)
    vocab = model.config.vocab_size
    g = torch.Generator().manual_seed(0)
    batch = {"input_ids": torch.randint(5, vocab, (args.batch_size, args.length), generator=g).to(device),
             "attention_mask": torch.ones(args.batch_size, args.length, dtype=torch.long, device=device),
             "labels": torch.randint(0, 3, (args.batch_size,), generator=g).to(device)}

    def step() -> None:
        optimizer.zero_grad(set_to_none=False)
        model(**batch).loss.backward()
        optimizer.step()

    def swap_once(source: str) -> None:
        with swap.applied(source):
            pass

    for source in sfts:  # warm-up: the SFTs move to the device once, the kernels compile
        swap_once(source)
    step()
    swaps, steps = [], []
    for r in range(args.rounds):
        source = f"l{r % args.sources}"
        sync(device)
        t = time.perf_counter()
        swap_once(source)
        sync(device)
        swaps.append(time.perf_counter() - t)
        t = time.perf_counter()
        step()
        sync(device)
        steps.append(time.perf_counter() - t)
    entries = sum(s.n_entries for s in sfts.values()) // len(sfts)
    print(machine_header("Multi-source task SFTs: the per-batch language SFT against a training step"))
    print()
    swap_s, step_s = statistics.median(swaps), statistics.median(steps)
    print(table(["device", "batch", "entries per language SFT", "apply + remove (ms)", "training step (ms)",
                 "share of a step"],
                [[str(device), f"{args.batch_size} x {args.length}", entries, 1000 * swap_s, 1000 * step_s,
                  f"{100 * swap_s / step_s:.1f}%"]]))


if __name__ == "__main__":
    main()
