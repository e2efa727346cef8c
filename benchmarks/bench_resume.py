"""The time a kill costs: a real language SFT killed with SIGKILL in phase 1 and resumed, against
the same run uninterrupted.

Runs ``deftx train-lang`` (the real ``me5-small-mlm`` and NusaX text from ``../shared``) in fresh
processes taken in turn:

1. uninterrupted, ``--save-every 0`` (only the checkpoint at the end of phase 1);
2. uninterrupted, ``--save-every N``: the cost of the periodic checkpoints;
3. the same, killed (``kill -9``) once the run has logged phase 1 step ``--kill-at``, then rerun
   with ``--resume``: the time lost is (killed + resumed) - run 2, i.e. the steps since the last
   checkpoint redone plus one start-up (loading the model and the data, reading the checkpoint).

Prints wall times, the checkpoint sizes, and whether the three SFTs are bit for bit the same.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from _common import SHARED, machine_header, table


def deftx(*args: str) -> list[str]:
    return [sys.executable, "-m", "deftx_cli.app", *args]


def last_train_step(metrics: Path) -> tuple[int, int] | None:
    try:
        lines = metrics.read_text().splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue
        if event.get("event") == "train":
            return event["phase"], event["step"]
    return None


def step_seconds(metrics: Path) -> float | None:
    """Seconds per phase-1 step between the first and the last logged phase-1 line."""
    points = []
    for line in metrics.read_text().splitlines():
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue
        if event.get("event") == "train" and event.get("phase") == 1:
            points.append((event["step"], event["time"]))
    if len(points) < 2 or points[-1][0] == points[0][0]:
        return None
    return (points[-1][1] - points[0][1]) / (points[-1][0] - points[0][0])


def sft_bytes(run_dir: Path) -> bytes:
    return b"".join((run_dir / "sft" / name).read_bytes() for name in ("diff.safetensors", "head.safetensors")
                    if (run_dir / "sft" / name).exists())


def checkpoint_write_seconds(model_dir: Path, lang: str, data: Path) -> list[list[str]]:
    """Write a phase-1 and a phase-2 checkpoint of the real model (after one training step, so the
    optimizer holds its moments) in this process; time each write and the read back."""
    from deftx.config import resolve_config
    from deftx.data import load_unlabelled_text
    from deftx.model import load_model, load_tokenizer, maskable_parameters, untie_output_embeddings
    from deftx.objectives import MaskedLMObjective
    from deftx.methods.selection import select_top_k
    from deftx.sparsity import resolve_k
    from deftx.training.checkpoint import Checkpointer, read_checkpoint
    from deftx.training.engine import _Phase

    config = resolve_config("language", "cpu", device="cpu")
    lines, _ = load_unlabelled_text(lang, data, None, max_lines=200, seed=0)
    model, _ = load_model(model_dir, "mlm")
    untie_output_embeddings(model)
    objective = MaskedLMObjective(load_tokenizer(model_dir), lines, max_length=config.max_length)
    maskable = maskable_parameters(model)
    start = {n: p.detach().clone() for n, p in maskable.items()}
    k = resolve_k(config.k, sum(p.numel() for p in maskable.values()))
    masks = select_top_k({n: torch.randn(p.shape) for n, p in maskable.items()}, k)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for phase, phase_masks in ((1, None), (2, masks)):
            training = _Phase(phase, model, objective, config, maskable, {}, start, phase_masks, lambda *a, **f: None)
            training.step(next(objective.batches(config.batch_size, seed=0)), step_seed=0)
            checkpoints = Checkpointer(Path(tmp) / f"phase{phase}")
            began = time.perf_counter()
            record = checkpoints.save(training, {"step": 1})
            wrote = time.perf_counter() - began
            began = time.perf_counter()
            read_checkpoint(checkpoints.directory / record["name"])
            rows.append([f"phase {phase}", f"{record['bytes'] / 1e6:.1f}", f"{wrote:.2f}", f"{time.perf_counter() - began:.2f}"])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lang", default="ace")
    parser.add_argument("--preset", default="quick", help="the quick preset logs every 5 steps, so the kill lands on time")
    parser.add_argument("--steps", type=int, default=30, help="steps per phase")
    parser.add_argument("--save-every", type=int, default=10)
    parser.add_argument("--kill-at", type=int, default=25, help="phase-1 step after which the run is killed")
    parser.add_argument("--quick", action="store_true", help="10 steps per phase, checkpoints every 4, kill at 5")
    parser.add_argument("--write-only", action="store_true", help="only time writing and reading one checkpoint per phase")
    args = parser.parse_args()
    if args.quick:
        args.steps, args.save_every, args.kill_at = 10, 4, 5
    model, data = SHARED / "models" / "me5-small-mlm", SHARED / "data"
    print(machine_header("Interrupt and resume: the time a kill costs"))
    print(f"load avg  {os.getloadavg()[0]:.2f}")
    print()
    print(table(["checkpoint (me5-small-mlm, cpu K)", "MB", "write s", "read + verify s"],
                checkpoint_write_seconds(model, args.lang, data)))
    if args.write_only:
        return
    runs = Path(tempfile.mkdtemp(prefix="deftx-bench-resume-"))
    common = ["train-lang", "--lang", args.lang, "--model", str(model), "--data-dir", str(data), "--preset", args.preset,
              "--phase1-steps", str(args.steps), "--phase2-steps", str(args.steps), "--device", "cpu",
              "--runs-dir", str(runs), "--quiet"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}

    def timed(*extra: str) -> float:
        start = time.perf_counter()
        subprocess.run(deftx(*common, *extra), check=True, env=env)
        return time.perf_counter() - start

    plain = timed("--run-id", "plain", "--save-every", "0")
    periodic = timed("--run-id", "periodic", "--save-every", str(args.save_every), "--keep-checkpoints")
    kept = json.loads((runs / "periodic" / "run.json").read_text())["checkpoints"]

    start = time.perf_counter()
    proc = subprocess.Popen(deftx(*common, "--run-id", "killed", "--save-every", str(args.save_every)), env=env)
    metrics = runs / "killed" / "metrics.jsonl"
    while proc.poll() is None:
        where = last_train_step(metrics)
        if where is not None and (where[0] > 1 or where[1] >= args.kill_at):
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)
    proc.wait()
    killed = time.perf_counter() - start
    rate = step_seconds(metrics)
    stopped_at = last_train_step(metrics)
    record = json.loads((runs / "killed" / "run.json").read_text())
    last_checkpoint = record["checkpoints"][-1] if record.get("checkpoints") else None
    kept = [*record.get("checkpoints", []), *kept]  # phase 1 (the killed run's), phase 2 (the periodic run's)
    start = time.time()
    resumed = timed("--run-id", "killed", "--save-every", str(args.save_every), "--resume")
    resume_event = next(json.loads(line) for line in metrics.read_text().splitlines() if '"resume"' in line)
    startup = resume_event["time"] - start
    record = json.loads((runs / "killed" / "run.json").read_text())

    print()
    print(table(
        ["run", "wall s", "note"],
        [
            ["uninterrupted, --save-every 0", f"{plain:.1f}", "checkpoint at the end of phase 1 only"],
            [f"uninterrupted, --save-every {args.save_every}", f"{periodic:.1f}",
             f"checkpoint cost {periodic - plain:+.1f} s ({(periodic - plain) / plain:+.1%})"],
            ["killed (kill -9)", f"{killed:.1f}", f"after phase {stopped_at[0]} step {stopped_at[1]}" if stopped_at else "-"],
            ["resumed (--resume)", f"{resumed:.1f}",
             f"from {record['resumptions'][-1]['checkpoint']}, {record['resumptions'][-1]['dropped_metrics_lines']} metrics lines dropped"],
            ["killed + resumed", f"{killed + resumed:.1f}", f"time lost to the kill: {killed + resumed - periodic:+.1f} s"],
        ],
    ))
    steps_redone = stopped_at[1] - (last_checkpoint["step"] if last_checkpoint else 0) if stopped_at else None
    print()
    print(f"steps redone: {steps_redone} (killed after step {stopped_at[1] if stopped_at else '?'}, "
          f"last checkpoint {last_checkpoint['name'] if last_checkpoint else 'none'})")
    if steps_redone is not None and rate is not None:
        print(f"start-up of the resumed process (until it resumed): {startup:.1f} s; phase-1 step: {rate:.2f} s; "
              f"expected loss = start-up + steps redone x step = {startup + steps_redone * rate:.1f} s")
    for c in kept:
        seconds = f", written in {c['seconds']:.1f} s" if "seconds" in c else ""
        print(f"checkpoint {c['name']}: {c['bytes'] / 1e6:.1f} MB{seconds}")
    same = sft_bytes(runs / "plain") == sft_bytes(runs / "periodic") == sft_bytes(runs / "killed")
    print(f"SFT bytes identical (plain, periodic, killed + resumed): {same}")
    shutil.rmtree(runs, ignore_errors=True)


if __name__ == "__main__":
    main()
