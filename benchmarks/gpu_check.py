"""GPU check: a short phase 1, the DeFT-X selection and a short phase 2 on one CUDA device in bf16.

Masked-LM on the NusaX/NusaWrites text of one language (from a data root laid out as
``../shared/data``) with the given model (default ``../shared/models/me5-small-mlm``), through the
engine's own phases (accelerate, ``--mixed-precision bf16``, SparseAdamW in phase 2). Prints the
throughput of each phase in tokens per second, the peak GPU memory of each phase, the selection's
time, and the phase-2/phase-1 ratios. Sized to finish in well under 4 minutes on one GPU.

Needs torch, transformers, accelerate and safetensors; not ``datasets``, ``textual`` or ``pydantic``
(without pydantic the settings are passed as a plain namespace).

    python benchmarks/gpu_check.py --model ../shared/models/me5-small-mlm --data-dir ../shared/data
    python benchmarks/gpu_check.py --device cpu --steps 4 --batch-size 4 --max-length 32   # a CPU try-out

Without a CUDA device (and without ``--device cpu``) it stops with one line and exit code 2.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent))
REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("DEFTX_SHARED_DIR", REPO.parent / "shared"))


def settings(args: argparse.Namespace):
    """The phases' settings: deftx's TrainConfig when pydantic is installed, else a namespace with
    the same fields (every value the engine reads is set here)."""
    values = dict(
        method="deftx", k=args.k, rank_rule="energy:0.9", tail_keep=0.0, denoise_include=["*"], denoise_exclude=[],
        svd="auto", phase1_steps=args.steps, phase2_steps=args.steps, batch_size=args.batch_size,
        max_length=args.max_length, lr=5e-5, weight_decay=0.0, warmup_ratio=0.0, l1=0.1, max_grad_norm=1.0,
        mlm_probability=0.15, eval_every=None, log_every=max(1, args.steps // 4), seed=0, device=args.device,
        mixed_precision=args.mixed_precision, grad_accum=1,
    )
    try:
        from deftx.config import resolve_config

        return resolve_config("language", "paper", **values), "TrainConfig"
    except ImportError:
        return SimpleNamespace(**values, phase_budget=lambda phase: (args.steps, None)), "namespace (no pydantic)"


class PhaseMeter:
    """Tokens per second and peak device memory of one phase, from the engine's events."""

    def __init__(self, device, tokens_per_step: int, warmup: int) -> None:
        self.device, self.tokens_per_step, self.warmup = device, tokens_per_step, warmup
        self.started = None
        self.steps = 0
        self.last_loss = None

    def sync(self) -> None:
        import torch

        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def reset(self) -> None:
        import torch

        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            from _common import reset_peak

            reset_peak()

    def peak_mib(self) -> float:
        import torch

        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device) / (1 << 20)
        from _common import peak_rss_bytes

        return peak_rss_bytes() / (1 << 20)  # on a CPU: the process's peak resident set


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(SHARED / "models" / "me5-small-mlm"))
    parser.add_argument("--data-dir", default=str(SHARED / "data"))
    parser.add_argument("--lang", default="jav", help="language of the text (default jav: NusaX-MT + NusaWrites)")
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:N, or cpu for a try-out")
    parser.add_argument("--mixed-precision", default="bf16", choices=["no", "bf16", "fp16"])
    parser.add_argument("--steps", type=int, default=200, help="steps per phase (default 200)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--k", default="0.0276", help="entries kept (default the paper's language K as a fraction)")
    args = parser.parse_args()

    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(f"gpu_check: error: no CUDA device is visible to torch {torch.__version__} "
              f"(torch.cuda.is_available() is False); use --device cpu for a try-out", file=sys.stderr)
        return 2

    from deftx.data import load_unlabelled_text
    from deftx.errors import DeftxError
    from deftx.model import load_model, load_tokenizer, untie_output_embeddings
    from deftx.objectives import MaskedLMObjective
    from deftx.training.distributed import LossModule, make_accelerator
    from deftx.methods import DeftX
    from deftx.training.engine import _Phase
    from deftx.training.sparse_adamw import moment_bytes

    try:
        config, config_kind = settings(args)
        accelerator = make_accelerator(args.device, args.mixed_precision)
        lines, sources = load_unlabelled_text(args.lang, args.data_dir)
        tokenizer = load_tokenizer(args.model)
        model, _ = load_model(args.model, "mlm")
    except DeftxError as exc:
        print(f"gpu_check: error: {exc}", file=sys.stderr)
        return 2
    device = accelerator.device
    untie_output_embeddings(model)
    model.to(device)
    from _common import trainable_maskable

    maskable, start = trainable_maskable(model)
    objective = MaskedLMObjective(tokenizer, lines, max_length=args.max_length, seed=0)
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "none (cpu try-out)"
    import accelerate
    import transformers

    print(f"# deftx GPU check\ndevice    {device} ({gpu}); torch {torch.__version__}, transformers "
          f"{transformers.__version__}, accelerate {accelerate.__version__}; settings as {config_kind}")
    print(f"model     {args.model}: {sum(p.numel() for p in maskable.values()):,} maskable parameters; "
          f"precision {args.mixed_precision} autocast, float32 weights")
    print(f"data      {len(lines):,} lines of {args.lang} ({'; '.join(s.split(' (')[0] for s in sources)}), "
          f"{objective.num_examples():,} blocks of {args.max_length} tokens; batch {args.batch_size}, "
          f"{args.steps} steps per phase", flush=True)

    loss_module = accelerator.prepare(LossModule(model, objective))
    tokens_per_step = args.batch_size * args.max_length
    warmup = min(5, max(1, args.steps // 5))
    results = {}

    def run_phase(phase: int, masks):
        meter = PhaseMeter(device, tokens_per_step, warmup)
        meter.sync()
        meter.reset()
        losses = []

        def on_event(event, **fields):
            if event == "train":
                losses.append(fields["loss"])

        runner = _Phase(phase, model, objective, config, maskable, {}, start, masks, on_event, None, accelerator,
                        loss_module)
        model.train()
        step, timed_from = 0, None
        epoch = 0
        while step < args.steps:
            for batch in objective.batches(args.batch_size, seed=phase * 100 + epoch):
                runner.step(batch, step_seed=epoch * 100_003 + step)
                step += 1
                if step == warmup:
                    meter.sync()
                    timed_from = time.perf_counter()
                if step >= args.steps:
                    break
            epoch += 1
        meter.sync()
        seconds = time.perf_counter() - timed_from
        timed_steps = args.steps - warmup
        with torch.no_grad():
            last = float(objective.loss(model, next(objective.batches(args.batch_size, seed=7)), 7))
        state = moment_bytes(runner.optimizer)
        return {"tokens_per_s": timed_steps * tokens_per_step / seconds, "step_s": seconds / timed_steps,
                "peak_mib": meter.peak_mib(), "loss": last, "moments_mib": state["moments"] / (1 << 20),
                "indices_mib": state["indices"] / (1 << 20)}

    results[1] = run_phase(1, None)
    print(f"phase 1   {results[1]['tokens_per_s']:,.0f} tokens/s ({results[1]['step_s'] * 1000:.1f} ms/step), "
          f"peak memory {results[1]['peak_mib']:,.0f} MiB, optimizer moments {results[1]['moments_mib']:,.1f} MiB, "
          f"loss {results[1]['loss']:.3f}", flush=True)
    meter = PhaseMeter(device, tokens_per_step, warmup)
    meter.sync()
    t0 = time.perf_counter()
    differences = {n: (p.detach() - start[n]).float() for n, p in maskable.items()}
    selection = DeftX(rank_rule=config.rank_rule).select(differences, config.k, in_place=True)
    del differences
    meter.sync()
    print(f"selection {time.perf_counter() - t0:.2f} s: K = {selection.k:,} of {selection.maskable:,} "
          f"({len(selection.denoise)} matrices denoised, overlap with magnitude {selection.overlap_with_magnitude:.3f})",
          flush=True)
    with torch.no_grad():
        for n, p in maskable.items():
            p.copy_(start[n])
    results[2] = run_phase(2, selection.masks)
    print(f"phase 2   {results[2]['tokens_per_s']:,.0f} tokens/s ({results[2]['step_s'] * 1000:.1f} ms/step), "
          f"peak memory {results[2]['peak_mib']:,.0f} MiB, optimizer moments {results[2]['moments_mib']:,.1f} MiB "
          f"+ indices {results[2]['indices_mib']:,.1f} MiB, loss {results[2]['loss']:.3f}")
    print(f"ratios    phase 2 / phase 1: step time {results[2]['step_s'] / results[1]['step_s']:.3f}, "
          f"throughput {results[2]['tokens_per_s'] / results[1]['tokens_per_s']:.3f}, "
          f"peak memory {results[2]['peak_mib'] / results[1]['peak_mib']:.3f}")
    moved = sum(int((p != start[n]).sum()) for n, p in maskable.items())
    outside = sum(int(((p != start[n]) & ~selection.masks[n].to(p.device)).sum()) for n, p in maskable.items())
    print(f"check     phase 2 moved {moved:,} entries, {outside} outside the mask "
          f"({'OK' if outside == 0 and moved > 0 else 'FAILED'})")
    return 0 if outside == 0 and moved > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
