"""Hugging Face accelerate as the engine's device, precision and process layer.

One process (the default) trains on one device as deftx always has. Under ``accelerate launch`` or
``torchrun`` with N processes, training is data-parallel: every optimizer step takes one global batch
of ``batch_size`` examples, its randomness drawn once over the whole batch (the masked-LM masking),
and each process takes its 1/N slice of it, cut further into ``grad_accum`` micro-batches. Every
micro-batch's summed loss is divided by the term count of the whole global batch, so the averaged
gradient is the one a single process would compute on the whole batch.

The phase-1 difference, the denoising and the global top-K are computed on every process, identically:
data-parallel training keeps the weights equal on all of them, and the selection is deterministic
(seeded SVD, deterministic ties). That costs no wall time (the processes work side by side), needs no
transfer of a mask of one byte per maskable parameter, and keeps every process busy so that none waits
in a collective longer than the process-group timeout. A checksum of the masks is compared across
processes; a difference stops the run with an error rather than training on diverged masks.

Only the main process writes run files and the SFT.
"""

from __future__ import annotations

import os
from pathlib import Path
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from datetime import timedelta
from typing import Any

import torch
from torch import nn

from deftx.errors import ProcessFailedError, UsageError

PRECISIONS = ("auto", "no", "bf16", "fp16")
TIMEOUT_ENV = "DEFTX_DIST_TIMEOUT"
DEFAULT_TIMEOUT_S = 60.0  # a process that died is noticed by the others within this time


# What gloo and NCCL say when a peer died or a collective timed out (they raise plain RuntimeErrors).
_PEER_FAILURE_SIGNS = ("connection closed by peer", "connection reset", "timed out", "timeout", "gloo", "nccl",
                       "broken pipe")


def launched_processes() -> tuple[int, int]:
    """(processes in the launch, processes on this machine), from the launcher's environment."""
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    local = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)) or world)
    return world, local


def training_device_type(device: str) -> str:
    """``cuda`` or ``cpu``: where training with the ``device`` setting runs; refuses a CUDA device
    that is not there."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        kind = torch.device(device).type
    except RuntimeError:
        raise UsageError(f"--device {device}: not a device", hint="auto, cpu, cuda or cuda:N") from None
    if kind == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device {device}: no CUDA device is available", hint="use --device cpu (or auto)")
    return kind


def check_launch(device: str, mixed_precision: str) -> str:
    """Refuse what cannot run here, each with one line: fp16 without a CUDA device, more processes on
    this machine than CUDA devices. Returns the device type."""
    kind = training_device_type(device)
    if mixed_precision not in PRECISIONS:
        raise UsageError(f"--mixed-precision {mixed_precision}: choose one of {', '.join(PRECISIONS)}")
    if mixed_precision == "fp16" and kind != "cuda":
        raise UsageError("--mixed-precision fp16 needs a CUDA device; this run trains on the CPU",
                         hint="use --mixed-precision bf16 or no on a CPU")
    _, local = launched_processes()
    if kind == "cuda" and local > torch.cuda.device_count():
        raise UsageError(
            f"the launch starts {local} processes on this machine, but it has {torch.cuda.device_count()} CUDA device(s)",
            hint="launch at most one process per GPU (accelerate launch --num_processes, torchrun --nproc-per-node)",
        )
    if kind != "cuda" and device not in ("auto", "cpu"):
        raise UsageError(f"--device {device}: deftx trains on cuda or cpu")
    return kind


def process_timeout() -> timedelta:
    raw = os.environ.get(TIMEOUT_ENV)
    try:
        seconds = float(raw) if raw else DEFAULT_TIMEOUT_S
    except ValueError:
        raise UsageError(f"{TIMEOUT_ENV}={raw!r} is not a number of seconds") from None
    return timedelta(seconds=seconds)


def process_state(device: str = "auto"):
    """accelerate's process state (set up once per process, with deftx's process-group timeout)."""
    from accelerate import PartialState

    kind = training_device_type(device)
    if PartialState._shared_state:  # already set up in this process
        return PartialState()
    return PartialState(cpu=kind == "cpu", timeout=process_timeout())


def is_main_process(device: str = "auto") -> bool:
    """True in the process that writes run files: the only one, or rank 0 of a launch."""
    if launched_processes()[0] == 1:
        return True
    return process_state(device).is_main_process


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU multiplies bf16 matrices in hardware (AVX512-BF16 or AMX-BF16): there bf16
    autocast speeds a step up; elsewhere it is emulated and many times slower than float32."""
    cpu = getattr(torch._C, "_cpu", None)
    checks = [getattr(cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    if any(check is not None for check in checks):
        return any(bool(check()) for check in checks if check is not None)
    try:  # a torch without the checks: the kernel's flags
        flags = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def resolve_precision(mixed_precision: str, device: str = "auto") -> str:
    """``auto``: bf16 where the device runs it fast (a CUDA device with bf16 support; a CPU with
    AVX512-BF16 or AMX), else ``no``; any other value as given."""
    if mixed_precision != "auto":
        return mixed_precision
    kind = training_device_type(device)
    if kind == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "no"
    return "bf16" if cpu_has_fast_bf16() else "no"


def with_resolved_precision(config: Any) -> Any:
    """A ``TrainConfig`` with ``auto`` precision resolved on this machine (:func:`resolve_precision`),
    so that the run records, and a resume compares, the precision that runs."""
    if config.mixed_precision != "auto":
        return config
    return config.model_copy(update={"mixed_precision": resolve_precision("auto", config.device)})


def make_accelerator(device: str, mixed_precision: str):
    """An ``Accelerator`` for one training; fp16 on a CPU and more processes than GPUs are refused;
    ``auto`` precision resolved (:func:`resolve_precision`)."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    mixed_precision = resolve_precision(mixed_precision, device)
    kind = check_launch(device, mixed_precision)
    if kind == "cuda" and device != "auto" and torch.device(device).index is not None and launched_processes()[0] == 1:
        torch.cuda.set_device(torch.device(device))  # one process on a chosen GPU (--device cuda:1)
    process_state(device)
    state = AcceleratorState._shared_state
    if state and state.get("_mixed_precision") != mixed_precision:
        # accelerate keeps one precision per process; a later training in the same process (a
        # notebook, the test suite) may ask for another.
        AcceleratorState._reset_state()
    return Accelerator(cpu=kind == "cpu", mixed_precision=mixed_precision, device_placement=True)


class LossModule(nn.Module):
    """The objective's loss as a module's forward, so that a data-parallel wrapper (DDP) sees the
    forward pass it must prepare the gradient reduction for, and autocast covers it."""

    def __init__(self, model: nn.Module, objective: Any) -> None:
        super().__init__()
        self.model = model
        self.objective = objective

    def forward(self, batch: dict[str, torch.Tensor], step_seed: int, normalizer: float | None) -> torch.Tensor:
        return self.objective.loss(self.model, batch, step_seed, normalizer)


def micro_batches(batch: dict[str, torch.Tensor], rank: int, processes: int,
                  grad_accum: int) -> Iterator[tuple[dict[str, torch.Tensor], bool]]:
    """This process's micro-batches of a global batch: ``(rows, real)``. The rows are cut into
    ``processes x grad_accum`` contiguous parts in order (process-major). A part left empty by a
    small last batch is replaced by the batch's first row with ``real`` False (its loss is weighted
    by zero), so every process still runs as many forward/backward passes as the others."""
    n = int(next(iter(batch.values())).shape[0])
    bounds = torch.linspace(0, n, processes * grad_accum + 1).round().long().tolist()
    for part in range(rank * grad_accum, (rank + 1) * grad_accum):
        lo, hi = bounds[part], bounds[part + 1]
        if hi > lo:
            yield {k: v[lo:hi] for k, v in batch.items()}, True
        else:
            yield {k: v[:1] for k, v in batch.items()}, False


def no_sync_unless(last: bool, accelerator, module: nn.Module):
    """Skip the gradient all-reduce on all but the last micro-batch of a step."""
    return nullcontext() if last or accelerator.num_processes == 1 else accelerator.no_sync(module)


def all_reduce_sum(value: float, accelerator) -> float:
    if accelerator.num_processes == 1:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=accelerator.device)
    torch.distributed.all_reduce(t)
    return float(t.item())


def check_same_masks(masks: dict[str, torch.Tensor], accelerator) -> None:
    """Every process selected the same entries: compare a checksum of the masks across processes."""
    if accelerator.num_processes == 1:
        return
    from deftx.errors import DeftxError

    count, weighted = 0, 0
    for i, mask in enumerate(masks.values()):  # integer arithmetic: exact on every process
        index = torch.nonzero(mask.reshape(-1)).reshape(-1).cpu()
        count += index.numel() * (i + 1)
        weighted = (weighted + int((index * ((index % 7919) + 1)).sum()) * (i + 1)) % (1 << 61)
    checksum = torch.tensor([count, weighted], dtype=torch.int64)
    gathered = [torch.zeros_like(checksum) for _ in range(accelerator.num_processes)]
    t = checksum.to(accelerator.device)
    out = [g.to(accelerator.device) for g in gathered]
    torch.distributed.all_gather(out, t)
    if any(not torch.equal(o.cpu(), checksum) for o in out):
        raise DeftxError("the processes selected different masks after phase 1",
                         hint="their phase-1 weights diverged; rerun with one process to check")


@contextmanager
def peer_failures() -> Iterator[None]:
    """In a multi-process launch, turn the process group's error about a dead or silent peer (after
    at most the process-group timeout, ``DEFTX_DIST_TIMEOUT`` seconds, default 60) into one line."""
    try:
        yield
    except RuntimeError as exc:
        text = str(exc)
        if launched_processes()[0] == 1 or not (
            isinstance(exc, torch.distributed.DistError) or any(s in text.lower() for s in _PEER_FAILURE_SIGNS)
        ):
            raise
        first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
        raise ProcessFailedError(
            f"another training process died or stopped answering ({first[:200]})",
            hint="the run is marked failed and no SFT was written; see the launcher's log for the process that failed",
        ) from exc
