"""Data-parallel training under torchrun (2 CPU processes, gloo) against one process, and its faults.

The 2-process runs start real processes (``python -m torch.distributed.run``) on a tiny BERT with
dropout 0; each takes some seconds on two cores.
"""

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from deftx.errors import UsageError
from deftx.training import distributed

WORDS = "film ini sangat bagus jelek tidak saya suka makanan enak".split()
TRAIN = ["train-lang", "--lang", "ind", "--text", "text.txt", "--model", "model", "--preset", "smoke",
         "--phase1-steps", "4", "--phase2-steps", "4", "--batch-size", "8", "--max-length", "16", "--k", "0.05",
         "--l1", "0.5", "--weight-decay", "0.1", "--device", "cpu", "--mixed-precision", "no", "--quiet", "--json", "--run-id", "r"]
# Values of the SFT trained by 2 processes equal those of 1 process to this (float32 summation order:
# the gradient is summed over two halves of the batch and averaged by the all-reduce).
TOLERANCE = 1e-6

# Run as "python -m torch.distributed.run ... fault.py <mode> <deftx arguments>": process 1 dies
# (or hangs) on its third loss computation, in phase 1. When it dies, process 0 is still computing
# that step (held for 3 s), so the launcher's SIGTERM, sent to the survivors when a worker dies,
# reaches it there and not in a collective.
FAULT = """
import os, sys, time
from deftx.objectives.mlm import MaskedLMObjective
mode = sys.argv.pop(1)
calls = {"n": 0}
original = MaskedLMObjective.loss
def loss(self, *args, **kwargs):
    calls["n"] += 1
    if os.environ.get("RANK") == "1" and calls["n"] == 3:
        if mode == "die":
            os._exit(3)
        time.sleep(600)
    if os.environ.get("RANK") == "0" and calls["n"] == 3 and mode == "die":
        time.sleep(3)
    return original(self, *args, **kwargs)
MaskedLMObjective.loss = loss
from deftx_cli.app import main
sys.argv = ["deftx", *sys.argv[1:]]
main()
"""


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, tiny_model_dir):
    """A tiny BERT without dropout (so both layouts see the same forward pass) and some text."""
    path = tmp_path_factory.mktemp("dp")
    shutil.copytree(tiny_model_dir, path / "model")
    config = json.loads((path / "model" / "config.json").read_text())
    config.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (path / "model" / "config.json").write_text(json.dumps(config))
    rng = random.Random(0)
    (path / "text.txt").write_text("\n".join(" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 9)))
                                             for _ in range(200)))
    (path / "fault.py").write_text(FAULT)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(workdir: Path, target: list[str], args: list[str], processes: int = 2, timeout: float = 300, env=None):
    command = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={processes}",
               f"--master-port={free_port()}", *target, *args]
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run(command, cwd=workdir, capture_output=True, text=True, timeout=timeout, env=full_env)


def single(workdir: Path, args: list[str]):
    command = [sys.executable, "-m", "deftx_cli.app", *args]
    return subprocess.run(command, cwd=workdir, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})


def test_two_processes_train_the_sft_of_one(workdir):
    one = single(workdir, [*TRAIN, "--runs-dir", "one"])
    assert one.returncode == 0, one.stderr
    two = launch(workdir, ["-m", "deftx_cli.app"], [*TRAIN, "--runs-dir", "two"])
    assert two.returncode == 0, two.stderr
    # stdout is the main process's report only
    assert json.loads(two.stdout)["sft"] == "two/r/sft"
    a = load_file(workdir / "one/r/sft/diff.safetensors")
    b = load_file(workdir / "two/r/sft/diff.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        if key.endswith(".indices"):
            assert torch.equal(a[key], b[key]), f"{key}: the processes chose another mask"
    diff = max(float((a[k] - b[k]).abs().max()) for k in a if k.endswith(".values"))
    assert diff <= TOLERANCE, f"max difference {diff:.2e}"
    assert sum(int(a[k].abs().gt(0).sum()) for k in a if k.endswith(".values")) > 0
    # run files written once, by the main process
    assert [p.name for p in (workdir / "two").iterdir()] == ["r"]
    training = ("phase", "train", "eval", "selection", "done")  # one process also logs its checkpoints
    events = {n: [e for e in map(json.loads, (workdir / n / "r/metrics.jsonl").read_text().splitlines())
                  if e["event"] in training] for n in ("one", "two")}
    assert [e["event"] for e in events["two"]] == [e["event"] for e in events["one"]]
    assert sum(e["event"] == "phase" for e in events["two"]) == 2
    # the logged loss is the global batch's mean loss, as one process logs it
    losses = [(e1["loss"], e2["loss"]) for e1, e2 in zip(events["one"], events["two"]) if e1["event"] == "train"]
    assert all(abs(x - y) < 1e-5 for x, y in losses), losses
    record = json.loads((workdir / "two/r/run.json").read_text())
    assert record["status"] == "finished" and record["summary"]["processes"] == 2


@pytest.mark.parametrize("mode", ["die", "hang"])
def test_a_failed_process_fails_the_run_without_an_sft(workdir, mode):
    """Process 1 dies (or stops answering) in phase 1: the main process notices within the
    process-group timeout (5 s here), marks the run failed and writes no SFT."""
    started = time.monotonic()
    out = launch(workdir, ["fault.py", mode], [*TRAIN, "--runs-dir", f"fault-{mode}"], timeout=120,
                 env={distributed.TIMEOUT_ENV: "5"})
    elapsed = time.monotonic() - started
    assert out.returncode != 0
    record = json.loads((workdir / f"fault-{mode}/r/run.json").read_text())
    assert record["status"] == "failed"
    assert "another training process died or stopped answering" in record["error"]
    assert not (workdir / f"fault-{mode}/r/sft").exists()
    errors = [line for line in out.stderr.splitlines() if line.startswith("deftx: error:")]
    assert len(errors) == 1 and "another training process" in errors[0]
    assert elapsed < 60


def test_sigterm_to_the_launch_stops_every_process_at_one_step(workdir):
    """A scheduler cancels the launch (SIGTERM to the launcher, which passes it to the workers): the
    processes agree on a step to stop at, and the run is marked interrupted (not failed, not left
    running), with no SFT."""
    args = [*TRAIN, "--runs-dir", "term", "--phase1-steps", "2000"]
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node=2", f"--master-port={free_port()}",
               "-m", "deftx_cli.app", *args]
    proc = subprocess.Popen(command, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    metrics = workdir / "term" / "r" / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and '"train"' not in (metrics.read_text() if metrics.exists() else ""):
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode != 0
    record = json.loads((workdir / "term/r/run.json").read_text())
    assert record["status"] == "interrupted", record["error"]
    assert "a multi-process launch writes no checkpoints" in record["error"]
    assert not (workdir / "term/r/sft").exists()
    # one line from deftx (the launcher prints its own report of the signal)
    errors = [line for line in stderr.splitlines() if line.startswith("deftx: error:")]
    assert len(errors) == 1 and "terminated (SIGTERM) at phase 1 step" in errors[0], stderr[-2000:]


def test_fp16_on_a_cpu_is_refused_in_one_line(workdir, monkeypatch):
    from deftx_cli.app import app

    monkeypatch.chdir(workdir)
    result = CliRunner().invoke(app, [*TRAIN[:-2], "--run-id", "fp16", "--runs-dir", "fp16", "--mixed-precision", "fp16"])
    assert result.exit_code == UsageError.exit_code
    assert result.stderr.strip().splitlines()[0] == (
        "deftx: error: --mixed-precision fp16 needs a CUDA device; this run trains on the CPU")
    assert "Traceback" not in result.stderr
    assert not (workdir / "fp16").exists()


def test_more_processes_than_gpus_is_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    with pytest.raises(UsageError, match="starts 4 processes on this machine, but it has 2 CUDA device"):
        distributed.check_launch("auto", "bf16")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert distributed.check_launch("auto", "bf16") == "cuda"


@pytest.mark.parametrize("device, message", [("gpu0", "not a device"), ("cuda:1", "no CUDA device is available")])
def test_a_device_that_cannot_train_is_refused(device, message, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(UsageError, match=message):
        distributed.check_launch(device, "no")


def test_micro_batches_cover_the_global_batch_once():
    batch = {"input_ids": torch.arange(10).view(10, 1)}
    for processes, accum in ((1, 1), (2, 1), (2, 3), (4, 4)):
        seen = []
        for rank in range(processes):
            parts = list(distributed.micro_batches(batch, rank, processes, accum))
            assert len(parts) == accum
            seen += [int(x) for part, real in parts if real for x in part["input_ids"].view(-1)]
        assert seen == list(range(10))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message given where no CUDA device is visible")
def test_gpu_check_without_a_gpu_stops_in_one_line():
    script = Path(__file__).resolve().parent.parent / "benchmarks" / "gpu_check.py"
    out = subprocess.run([sys.executable, str(script), "--steps", "2"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert out.stdout == ""
    assert out.stderr.strip().startswith("gpu_check: error: no CUDA device is visible")
    assert len(out.stderr.strip().splitlines()) == 1


def test_resume_is_refused_under_a_multi_process_launch(workdir, monkeypatch):
    from deftx_cli.app import app

    monkeypatch.chdir(workdir)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    result = CliRunner().invoke(app, [*TRAIN[:-2], "--run-id", "resumed", "--runs-dir", "resumed", "--resume"])
    assert result.exit_code == UsageError.exit_code
    assert result.stderr.strip().splitlines()[0] == "deftx: error: --resume is not available under a multi-process launch"
    assert not (workdir / "resumed").exists()
