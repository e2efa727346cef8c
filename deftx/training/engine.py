"""The two-phase engine shared by LT-SFT and DeFT-X.

``train_sft`` runs: phase 1 (full fine-tuning of the maskable parameters, optional L1 pull toward the
start point) -> the difference -> scores (|Delta|, or |SVD-denoised Delta| for DeFT-X) -> one global
top-K -> reset to the start point -> phase 2 (only masked entries move: their gradient, and the
optimizer update including weight decay, are zero outside the mask) -> the sparse diff plus the
dense head.

The engine reports progress as events (``phase``, ``train``, ``eval``, ``selection``, ``done``) to
callbacks: the run directory's ``metrics.jsonl`` writer and the CLI's progress display subscribe.
"""

from __future__ import annotations

import math
import time
from contextlib import nullcontext
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from deftx.version import __version__
from deftx.methods import MaskSelection, method_of
from deftx.model import fingerprint, full_name, maskable_parameters
from deftx.objectives.base import Objective
from deftx.sparsity import resolve_k
from deftx.sft.diff import SparseDiff, save_difference
from deftx.training.checkpoint import Checkpoint, Checkpointer, index_masks
from deftx.training.distributed import (
    LossModule,
    all_reduce_sum,
    check_same_masks,
    make_accelerator,
    micro_batches,
    no_sync_unless,
)
from deftx.training.sparse_adamw import SparseAdamW

if TYPE_CHECKING:  # the engine reads settings from any object with TrainConfig's fields (pydantic not needed)
    from deftx.config import TrainConfig

EventCallback = Callable[[str, dict[str, Any]], None]


def select_device(spec: str = "auto") -> torch.device:
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(spec)


# ---------------------------------------------------------------------------------- training


@dataclass
class TrainResult:
    sft: SparseDiff
    summary: dict[str, Any]
    selection: MaskSelection | None


_CHUNK = 1 << 22  # elements per slice of the in-place gradient and decay updates


def _chunks(*tensors: torch.Tensor) -> Iterator[tuple[torch.Tensor, ...]]:
    """Matching flat slices of same-shaped tensors, so elementwise updates allocate at most one
    slice-sized temporary instead of a full-size one. Non-contiguous tensors come whole."""
    if not all(t.is_contiguous() for t in tensors):
        yield tensors
        return
    flat = [t.view(-1) for t in tensors]
    n = flat[0].numel()
    for i in range(0, n, _CHUNK):
        yield tuple(f[i : i + _CHUNK] for f in flat)


def clip_grad_norm(grads: list[torch.Tensor], max_norm: float) -> None:
    """``torch.nn.utils.clip_grad_norm_`` on gradient tensors themselves (phase 2 clips the gathered
    gradients of the selected entries): the same norm and the same scaling."""
    if not grads:
        return
    norms = torch._foreach_norm(grads) if all(g.device == grads[0].device for g in grads) else [
        torch.linalg.vector_norm(g) for g in grads]
    total = torch.linalg.vector_norm(torch.stack([n.to(grads[0].device) for n in norms]))
    coef = torch.clamp(max_norm / (total + 1e-6), max=1.0)
    torch._foreach_mul_(grads, coef)


def dense_adamw(groups: list[dict[str, Any]], lr: float) -> torch.optim.Optimizer:
    """Phase 1's ``torch.optim.AdamW``: the fused kernel where the parameters' device has one (CPU,
    CUDA; one pass over each tensor instead of a dozen, about 4x faster a step on the CPU), else the
    multi-tensor (foreach) form. The same update rule either way."""
    params = [p for group in groups for p in group["params"]]
    fused = bool(params) and all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params)
    return torch.optim.AdamW(groups, lr=lr, fused=True) if fused else torch.optim.AdamW(groups, lr=lr, foreach=True)


class _Phase:
    """One phase of training: optimizer, schedule, optional mask and L1.

    Phase 1 uses ``torch.optim.AdamW`` over every trainable parameter. Phase 2 uses
    :class:`~deftx.training.sparse_adamw.SparseAdamW`: state and update for the masked entries only
    (weight decay included), the dense head trained as AdamW does, with weight decay as in phase 1.
    """

    def __init__(
        self,
        phase: int,
        model: nn.Module,
        objective: Objective,
        config: TrainConfig,
        maskable: dict[str, nn.Parameter],
        dense: dict[str, nn.Parameter],
        start: dict[str, torch.Tensor],
        masks: dict[str, torch.Tensor] | None,
        emit: Callable[..., None],
        checkpoints: Checkpointer | None = None,
        accelerator: Any = None,
        loss_module: nn.Module | None = None,
    ) -> None:
        self.phase = phase
        self.checkpoints = checkpoints
        self.model, self.objective, self.config = model, objective, config
        self.maskable, self.dense, self.start, self.emit = maskable, dense, start, emit
        if accelerator is None:
            accelerator = make_accelerator(config.device, config.mixed_precision)
        self.accelerator = accelerator
        self.loss_module = loss_module if loss_module is not None else accelerator.prepare(LossModule(model, objective))
        self.masks = {n: m.to(next(iter(maskable.values())).device) for n, m in masks.items()} if masks else None
        steps, epochs = config.phase_budget(phase)
        if steps is None and objective.num_examples() is None:
            from deftx.errors import UsageError

            raise UsageError(f"phase {phase} has a budget in epochs, but a streamed text has no known size",
                             hint="give the budget in steps (--phase1-steps, --phase2-steps)")
        self.total_steps = steps if steps is not None else max(
            1, math.ceil((epochs or 1.0) * math.ceil(objective.num_examples() / config.batch_size)))
        decay, no_decay = [], []
        for name, p in list(maskable.items()) + list(dense.items()):
            (no_decay if name.endswith("bias") else decay).append(p)
        groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        if self.masks is None:
            self.optimizer: torch.optim.Optimizer = dense_adamw(groups, config.lr)
        else:
            self.optimizer = SparseAdamW(groups, {p: self.masks[n] for n, p in maskable.items()}, lr=config.lr)
        warmup = int(config.warmup_ratio * self.total_steps)

        def schedule(step: int) -> float:
            if step < warmup:
                return (step + 1) / (warmup + 1)
            return max(0.0, (self.total_steps - step) / max(1, self.total_steps - warmup))

        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, schedule)
        # Under several processes every one asks the others at each step whether to stop (SIGTERM).
        self.agree = (lambda stop: all_reduce_sum(float(stop), accelerator) > 0) if accelerator.num_processes > 1 else None
        self.n_maskable = sum(p.numel() for p in maskable.values())
        self.trainable = list(maskable.values()) + list(dense.values())
        self.names = {id(p): n for n, p in maskable.items()}

    def l1_distance(self) -> float:
        with torch.no_grad():
            return float(sum(float((q - s).abs().sum(dtype=torch.float64))
                             for n, p in self.maskable.items() for q, s in _chunks(p, self.start[n])))

    def backward(self, batch: dict[str, torch.Tensor], step_seed: int) -> float:
        """Forward and backward over this process's share of the global batch; the batch's mean loss."""
        acc, grad_accum = self.accelerator, self.config.grad_accum
        if acc.num_processes == 1 and grad_accum == 1:
            loss = self.loss_module(batch, step_seed, None)
            acc.backward(loss)
            return float(loss.detach())
        batch = self.objective.prepare_batch(batch, step_seed)
        # Each part's summed loss over the global batch's term count (times the processes, since
        # the gradient all-reduce averages): the gradients add up to the global batch's mean loss.
        normalizer = max(1, self.objective.loss_terms(batch)) / acc.num_processes
        parts = list(micro_batches(batch, acc.process_index, acc.num_processes, grad_accum))
        local = 0.0
        for i, (part, real) in enumerate(parts):
            with no_sync_unless(i == len(parts) - 1, acc, self.loss_module):
                loss = self.loss_module(part, step_seed, normalizer)
                if not real:
                    loss = loss * 0.0
                acc.backward(loss)
            local += float(loss.detach())
        return all_reduce_sum(local, acc) / acc.num_processes

    def step(self, batch: dict[str, torch.Tensor], step_seed: int) -> float:
        cfg = self.config
        self.optimizer.zero_grad(set_to_none=False)
        # A multi-source objective applies the batch's source's language SFT around forward and backward.
        source_context = getattr(self.objective, "source_context", None)
        with source_context(batch) if source_context is not None else nullcontext(batch) as batch:
            loss = self.backward(batch, step_seed)
        scaler = self.accelerator.scaler
        with torch.no_grad():
            if scaler is not None:  # fp16: unscale before the L1 term and the clipping
                scaler.unscale_(self.optimizer)
            alpha = cfg.l1 / self.n_maskable
            if isinstance(self.optimizer, SparseAdamW):
                grads = self.optimizer.gather_gradients()
                if cfg.l1 > 0:  # d/dtheta of lambda/N * sum|theta - start|, at the selected entries
                    for p, g, index in grads:
                        if index is not None:
                            start = self.start[self.names[id(p)]].view(-1).index_select(0, index)
                            g.add_(torch.sign(p.view(-1).index_select(0, index) - start), alpha=alpha)
                if cfg.max_grad_norm > 0:
                    clip_grad_norm([g for _, g, _ in grads], cfg.max_grad_norm)
            else:
                if cfg.l1 > 0:
                    # d/dtheta of lambda/N * sum|theta - start|, added to the gradient directly.
                    for name, p in self.maskable.items():
                        if p.grad is not None:
                            for g, q, s in _chunks(p.grad, p, self.start[name]):
                                g.add_(torch.sign(q - s), alpha=alpha)
                if cfg.max_grad_norm > 0:
                    torch.nn.utils.clip_grad_norm_(self.trainable, cfg.max_grad_norm)
        if scaler is not None:
            scaler.step(self.optimizer)
            scaler.update()
        else:
            self.optimizer.step()
        self.scheduler.step()
        return loss

    def run(self, resume: Checkpoint | None = None) -> dict[str, Any]:
        """Train to the end of the phase; from ``resume`` (a checkpoint inside this phase) when given."""
        cfg = self.config
        self.model.train()
        self.loss_module.train()
        step, epoch, skip = 0, 0, 0  # skip: batches of the current epoch already trained on
        # A streamed text continues from where its stream stood (no batches skipped, none tokenised again).
        streams, stream_start = getattr(self.objective, "streams", False), None
        window_loss, window_n, window_examples, window_start = 0.0, 0, 0, time.perf_counter()
        last_loss = float("nan")
        last_eval: dict[str, Any] | None = None
        if resume is None:
            self.emit("phase", phase=self.phase, total_steps=self.total_steps, masked=self.masks is not None)
        else:
            loop = resume.loop
            step, epoch, skip = loop["step"], loop["epoch"], loop["position"]
            stream_start = loop.get("stream") if streams else None
            window_loss, window_n, window_examples = loop["window_loss"], loop["window_n"], loop["window_examples"]
            last_loss, last_eval = loop["last_loss"], loop["last_eval"]
            resume.restore_optimizer(self.optimizer, self.scheduler, index_masks(self.optimizer, self.maskable, self.masks))
            resume.restore_rng()
        while step < self.total_steps:
            position = 0
            order_seed = cfg.seed * 1000 + self.phase * 100 + epoch
            if streams:
                batches = self.objective.batches(cfg.batch_size, seed=order_seed, start=stream_start)
                stream_start, skip = None, 0
            else:
                batches = self.objective.batches(cfg.batch_size, seed=order_seed)
            for batch in batches:
                position += 1
                if position <= skip:
                    continue
                loss = self.step(batch, step_seed=cfg.seed * 1_000_003 + epoch * 100_003 + step)
                if not math.isfinite(loss):
                    from deftx.errors import DeftxError

                    raise DeftxError(
                        f"the loss became {loss} at phase {self.phase} step {step + 1}",
                        hint="lower --lr or check the data",
                    )
                step += 1
                window_loss += loss
                window_n += 1
                window_examples += int(next(iter(batch.values())).shape[0])
                if step % cfg.log_every == 0 or step == self.total_steps:
                    elapsed = time.perf_counter() - window_start
                    fields = dict(
                        phase=self.phase,
                        step=step,
                        total_steps=self.total_steps,
                        epoch=epoch,
                        loss=window_loss / window_n,
                        lr=self.scheduler.get_last_lr()[0],
                        throughput=window_examples / elapsed if elapsed > 0 else None,
                    )
                    if cfg.l1 > 0:
                        fields["l1"] = self.l1_distance() / self.n_maskable
                    if hasattr(self.objective, "train_fields"):
                        fields.update(self.objective.train_fields())
                    self.emit("train", **fields)
                    last_loss = fields["loss"]
                    window_loss, window_n, window_examples, window_start = 0.0, 0, 0, time.perf_counter()
                if cfg.eval_every and step % cfg.eval_every == 0 and step < self.total_steps:
                    last_eval = self.evaluate(step)
                if self.checkpoints is not None:
                    loop = dict(step=step, epoch=epoch, position=position, window_loss=window_loss, window_n=window_n,
                                window_examples=window_examples, last_loss=last_loss, last_eval=last_eval)
                    if streams:
                        loop["stream"] = self.objective.stream_state()
                    self.checkpoints.after_step(self, loop, self.agree)
                if step >= self.total_steps:
                    break
            epoch += 1
            skip = 0
        last_eval = self.evaluate(step) or last_eval
        return {"steps": step, "final_loss": last_loss, "eval": last_eval}

    def evaluate(self, step: int) -> dict[str, Any] | None:
        metrics = self.objective.evaluate(self.model, max(self.config.batch_size, 32))
        if metrics is not None:
            self.emit("eval", phase=self.phase, step=step, metrics=metrics)
        return metrics


def train_sft(
    model: nn.Module,
    objective: Objective,
    config: TrainConfig,
    *,
    manifest: Mapping[str, Any],
    dense_parameters: Iterable[str] = (),
    start_sft: SparseDiff | None = None,
    mask: dict[str, torch.Tensor] | None = None,
    keep_phase1_diff: Path | None = None,
    callbacks: Iterable[EventCallback] = (),
    force: bool = False,
    mask_info: Mapping[str, Any] | None = None,
    checkpoints: Checkpointer | None = None,
    resume: Checkpoint | None = None,
) -> TrainResult:
    """Train one SFT. ``dense_parameters`` are full names of head parameters trained densely (and
    stored whole). ``start_sft`` (the source language's SFT, for a task SFT) is applied first, and the
    diff is measured from there. ``mask`` skips phase 1 and the selection; ``mask_info`` (the settings
    and denoising summary saved with the mask) is recorded as the selection.

    ``checkpoints`` writes checkpoints inside the phases and always one at the end of phase 1;
    ``resume`` continues from one (the model must be loaded as for the first attempt): on CPU the
    SFT is bit for bit the one an uninterrupted run gives."""
    run = _Training(model, objective, config, manifest, dense_parameters, start_sft, callbacks, force, checkpoints)
    if mask is None and run.method.sparse:  # a K that cannot work fails before any training
        run.k = resolve_k(config.k, run.summary["maskable"])
    if checkpoints is not None and checkpoints.writes:
        _announce_checkpoints(checkpoints, config, run.maskable, run.dense, mask, run.summary["maskable"], run.emit)
    run.evaluate_start(resume, first_phase=1 if mask is None else 2)
    selection: MaskSelection | None = None
    resume_phase2 = resume is not None and resume.phase == 2
    if mask is not None:
        masks = run.given_mask(mask, mask_info, resumed=resume is not None)
    elif resume_phase2:  # phase 1 and the selection are behind
        masks = run.masks_of(resume, keep_phase1_diff)
    else:
        run.phase1(resume)
        differences = run.phase1_difference(keep_phase1_diff)
        if not run.method.sparse:  # dense fine-tuning stops after its one phase
            sft = SparseDiff.from_difference({n: p.detach() for n, p in run.maskable.items()}, run.start, None,
                                             head={n: p.detach() for n, p in run.dense.items()})
            run.summary["k"] = sft.n_entries
            return run.finish(sft, None)
        selection = run.select(differences)
        masks = selection.masks
        run.reset()
    run.phase2(masks, resume if resume_phase2 else None)
    current = {name: p.detach() for name, p in run.maskable.items()}
    sft = SparseDiff.from_difference(current, run.start, masks, head={n: p.detach() for n, p in run.dense.items()})
    run.summary["k"] = sum(int(m.sum()) for m in masks.values())
    return run.finish(sft, selection)


class _Training:
    """One SFT's training between its stages: the model at its start point (with the source SFT
    applied), which parameters train sparsely and which densely, and the summary so far."""

    def __init__(self, model: nn.Module, objective: Objective, config: TrainConfig, manifest: Mapping[str, Any],
                 dense_parameters: Iterable[str], start_sft: SparseDiff | None, callbacks: Iterable[EventCallback],
                 force: bool, checkpoints: Checkpointer | None) -> None:
        self.model, self.objective, self.config, self.manifest = model, objective, config, manifest
        self.checkpoints = checkpoints
        self.callbacks = list(callbacks)
        self.accelerator = make_accelerator(config.device, config.mixed_precision)
        torch.manual_seed(config.seed)
        self.base_fp = fingerprint(model)
        if start_sft is not None:
            start_sft.apply(model, force=force, heads=False)
        model.to(self.accelerator.device)
        named = dict(model.named_parameters())
        self.dense = {name: named[name] for name in dense_parameters}
        # Newly initialised encoder parameters (e.g. a pooler missing from the checkpoint) are dense.
        self.maskable = {n: p for n, p in maskable_parameters(model).items() if full_name(model, n) not in self.dense}
        for p in model.parameters():
            p.requires_grad_(False)
        for p in list(self.maskable.values()) + list(self.dense.values()):
            p.requires_grad_(True)
        self.start = {name: p.detach().clone() for name, p in self.maskable.items()}
        self.dense_start = {name: p.detach().clone() for name, p in self.dense.items()}
        self.summary: dict[str, Any] = {"maskable": sum(p.numel() for p in self.maskable.values()),
                                        "processes": self.accelerator.num_processes,
                                        "mixed_precision": str(self.accelerator.mixed_precision)}
        self.method = method_of(config)
        self.k: int | None = None  # resolved before phase 1 when there is a selection to make
        self.started = time.perf_counter()
        # One loss module for both phases: under N processes it is wrapped once for data parallelism.
        self.loss_module = self.accelerator.prepare(LossModule(model, objective))

    def emit(self, event: str, **fields: Any) -> None:
        if self.accelerator.is_main_process:
            for callback in self.callbacks:
                callback(event, fields)

    def _context(self, key: str, value: Any) -> None:
        if self.checkpoints is not None:
            self.checkpoints.context[key] = value

    def _phase(self, phase: int, masks: dict[str, torch.Tensor] | None) -> _Phase:
        return _Phase(phase, self.model, self.objective, self.config, self.maskable, self.dense, self.start, masks,
                      self.emit, self.checkpoints, self.accelerator, self.loss_module)

    def evaluate_start(self, resume: Checkpoint | None, first_phase: int) -> None:
        if getattr(self.objective, "evaluates_start", False):
            self.summary["base_eval"] = _base_eval(self.objective, self.model, self.config, resume,
                                                   first_phase=first_phase, emit=self.emit)
            self._context("base_eval", self.summary["base_eval"])

    def phase1(self, resume: Checkpoint | None) -> None:
        """Phase 1 (or what is left of it), then the checkpoint at its end."""
        if resume is not None and resume.phase_done:
            resume.restore_parameters(self.maskable, self.dense, self.start, None)
            resume.restore_rng()
            self.summary["phase1"] = resume.context.get("phase1")
        else:
            phase1 = self._phase(1, None)
            if resume is not None:
                resume.restore_parameters(self.maskable, self.dense, self.start, None)
            self.summary["phase1"] = phase1.run(resume)
            if self.checkpoints is not None:
                self.checkpoints.context["phase1"] = self.summary["phase1"]
                self.checkpoints.end_of_phase1(phase1, phase1.agree)
        self._context("phase1", self.summary["phase1"])

    def phase1_difference(self, keep: Path | None) -> dict[str, torch.Tensor]:
        """Delta = theta1 - start, saved to ``keep`` when asked (for ``deftx denoise`` and shared phases)."""
        differences = {name: (p.detach() - self.start[name]) for name, p in self.maskable.items()}
        if keep is not None and self.accelerator.is_main_process:
            save_difference(keep, differences, {
                "base_fingerprint": self.base_fp, "base_model": self.manifest.get("base_model"),
                "kind": self.manifest.get("kind"), "language": self.manifest.get("language"), "seed": self.config.seed})
            self.summary["phase1_diff"] = str(keep)
        return differences

    def select(self, differences: dict[str, torch.Tensor]) -> MaskSelection:
        with _anytime(self.checkpoints):  # a SIGTERM here loses nothing: the phase-1 checkpoint holds it all
            selection = self.method.select(differences, self.k, in_place=True)
        check_same_masks(selection.masks, self.accelerator)
        self.emit("selection", **selection.event())
        if selection.denoise:
            self._context("selection_info", selection.recorded())
        return selection

    def reset(self) -> None:
        """Back to the start point for phase 2, the dense head too."""
        with torch.no_grad():
            for name, p in self.maskable.items():
                p.copy_(self.start[name])
            for name, p in self.dense.items():
                p.copy_(self.dense_start[name])

    def masks_of(self, resume: Checkpoint, keep_phase1_diff: Path | None) -> dict[str, torch.Tensor]:
        """A run resumed in phase 2: its mask and what phase 1 and the selection recorded."""
        self.summary["phase1"] = resume.context.get("phase1")
        self.summary["mask_info"] = resume.context.get("selection_info") or {}
        if keep_phase1_diff is not None and keep_phase1_diff.exists():
            self.summary["phase1_diff"] = str(keep_phase1_diff)
        return resume.masks({n: tuple(p.shape) for n, p in self.maskable.items()})

    def given_mask(self, mask: dict[str, torch.Tensor], mask_info: Mapping[str, Any] | None,
                   resumed: bool) -> dict[str, torch.Tensor]:
        """Phase 2 only, from a mask file: the mask checked against the model, and its selection."""
        masks = _check_mask(mask, self.maskable)
        k = sum(int(m.sum()) for m in masks.values())
        info = {key: value for key, value in (mask_info or {}).items() if key in self.method.recorded_keys()}
        if not resumed:
            self.emit("selection", method=self.config.method, k=k, maskable=self.summary["maskable"],
                      density=k / self.summary["maskable"], from_file=True, **info)
        self.summary["mask_info"] = info
        return masks

    def phase2(self, masks: dict[str, torch.Tensor], resume: Checkpoint | None) -> None:
        phase2 = self._phase(2, masks)
        if resume is not None:
            resume.restore_parameters(self.maskable, self.dense, self.start, phase2.masks)
        self.summary["phase2"] = phase2.run(resume)

    def finish(self, sft: SparseDiff, selection: MaskSelection | None) -> TrainResult:
        return _finish(sft, self.summary, selection, self.config, self.manifest, self.base_fp, self.started, self.emit)


def _base_eval(objective: Objective, model: nn.Module, config: TrainConfig, resume: Checkpoint | None, *,
               first_phase: int, emit: Callable[..., None]) -> dict[str, Any] | None:
    """The held-out metrics of the start point (before any training step), logged as an eval event
    at step 0 of the first phase that runs. A resumed run carries them from its checkpoint; one
    whose checkpoint predates them evaluates the start point (the model is still there)."""
    if resume is not None and resume.context.get("base_eval") is not None:
        return resume.context["base_eval"]
    metrics = objective.evaluate(model, max(config.batch_size, 32))
    if metrics is not None:
        emit("eval", phase=first_phase, step=0, metrics=metrics, base=True)
    return metrics


def _anytime(checkpoints: Checkpointer | None):
    if checkpoints is None or checkpoints.stop is None or not checkpoints.writes:
        return nullcontext()  # without a checkpoint to fall back on, a stop waits for the next step
    return checkpoints.stop.anytime()


def _announce_checkpoints(checkpoints: Checkpointer, config: TrainConfig, maskable: dict[str, nn.Parameter],
                          dense: dict[str, nn.Parameter], mask: dict[str, torch.Tensor] | None, n_maskable: int,
                          emit: Callable[..., None]) -> None:
    """The ``checkpointing`` event: how often, where, and about how big each phase's checkpoints are."""
    if mask is not None:
        k = sum(int(m.sum()) for m in mask.values())
    elif not method_of(config).sparse:
        k = None
    else:
        k = resolve_k(config.k, n_maskable)
    sizes = Checkpointer.estimate_bytes(maskable, dense, k)
    if mask is not None:
        sizes.pop("phase1", None)
    emit("checkpointing", save_every=checkpoints.save_every, directory=str(checkpoints.directory),
         keep=checkpoints.keep, **{f"{phase}_bytes": size for phase, size in sizes.items()})


def _check_mask(mask: dict[str, torch.Tensor], maskable: dict[str, nn.Parameter]) -> dict[str, torch.Tensor]:
    from deftx.errors import ArtifactError

    unknown = sorted(set(mask) - set(maskable))
    if unknown:
        raise ArtifactError(f"the mask names a parameter the model cannot train sparsely: {unknown[0]}")
    out = {}
    for name, p in maskable.items():
        m = mask.get(name)
        if m is None:
            m = torch.zeros(p.shape, dtype=torch.bool)
        if tuple(m.shape) != tuple(p.shape):
            raise ArtifactError(f"the mask's shape for {name} is {tuple(m.shape)}, the model's {tuple(p.shape)}")
        out[name] = m.to(torch.bool)
    return out


def _finish(
    sft: SparseDiff,
    summary: dict[str, Any],
    selection: MaskSelection | None,
    config: TrainConfig,
    manifest: Mapping[str, Any],
    base_fp: str,
    started: float,
    emit: Callable[..., None],
) -> TrainResult:
    summary["seconds"] = round(time.perf_counter() - started, 2)
    summary["entries"] = sft.n_entries
    final_eval = (summary.get("phase2") or summary.get("phase1") or {}).get("eval")
    selection_info: dict[str, Any] = {"method": config.method, "k": summary["k"], "maskable": summary["maskable"]}
    selection_info.update(method_of(config).settings())
    if selection is not None:
        selection_info.update(selection.recorded())
    selection_info.update(summary.pop("mask_info", None) or {})
    sft.manifest = {
        **dict(manifest),
        "method": config.method,
        "base_fingerprint": base_fp,
        "k": summary["k"],
        "maskable": summary["maskable"],
        "selection": selection_info,
        # the precision it trained in: "auto" resolved, so the SFT says what this machine ran
        "training": {**config.model_dump(mode="json"), "mixed_precision": summary["mixed_precision"]},
        "metrics": {"final_eval": final_eval, "seconds": summary["seconds"],
                    **({"base_eval": summary["base_eval"]} if summary.get("base_eval") is not None else {})},
        "library_version": __version__,
    }
    emit("done", summary={k: v for k, v in summary.items() if k not in ("phase1_diff",)})
    return TrainResult(sft, summary, selection)
