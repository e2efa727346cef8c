"""A training run's life around the engine: its run directory (new, or an interrupted one resumed),
SIGTERM caught and turned into a checkpoint, the checkpoints written and deleted, the SFT saved.

The two trainers (:mod:`deftx.experiment.language`, :mod:`deftx.experiment.task`) prepare their model
and data, then hand both to :func:`train_in_run`, the one skeleton they share.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deftx.config import TrainConfig, default_save_every
from deftx.errors import FingerprintMismatchError, TrainingTerminated, UsageError
from deftx.methods import method_of
from deftx.model import fingerprint, model_reference
from deftx.records.files import PHASE1_DIFF, SFT_SUBDIR
from deftx.records.reading import find_resumable
from deftx.records.runs import Run
from deftx.sft.diff import load_mask
from deftx.signals import StopRequest
from deftx.training import train_sft
from deftx.training.checkpoint import (
    CHECKPOINTS_DIR,
    Checkpointer,
    latest_checkpoint,
    list_checkpoints,
    settings_difference,
)
from deftx.training.distributed import (
    check_launch,
    is_main_process,
    launched_processes,
    peer_failures,
    with_resolved_precision,
)

EventCallback = Callable[[str, dict[str, Any]], None]






@dataclass
class TrainOutcome:
    sft_dir: Path | None  # None (and run_dir None) in the non-main processes of a multi-process launch
    run_dir: Path | None
    summary: dict[str, Any]


class _NoRunFiles:
    """The run directory as seen from a process other than the main one of a multi-process launch:
    only the main process writes run files and the SFT."""

    path = None

    def log(self, *_: Any, **__: Any) -> None:
        pass

    def update(self, **_: Any) -> None:
        pass


def _record_sft(run: Run, result, out: Path | None) -> Path | None:
    """Save the SFT into the run directory (and a copy to ``out`` when asked)."""
    if run.path is None:
        return None
    result.sft.save(run.path / SFT_SUBDIR)
    outputs = {"sft": SFT_SUBDIR}
    if out is not None:
        result.sft.save(Path(out))
        outputs["copy"] = str(Path(out).resolve())
    run.update(outputs=outputs, summary=_summary_for_run(result.summary))
    return Path(out) if out is not None else run.path / SFT_SUBDIR


def _summary_for_run(summary: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in summary.items() if k in ("k", "maskable", "entries", "seconds", "processes", "mixed_precision", "base_eval")}
    for phase in ("phase1", "phase2"):
        if phase in summary:
            out[phase] = {k: summary[phase].get(k) for k in ("steps", "final_loss", "eval")}
    return out


def prepare_outputs(out: Path | None, mask_file: Path | None, config: TrainConfig):
    """Refuse an ``--out`` that already holds files, and load a phase-2 mask (whose method then
    applies). Returns ``(mask, mask_meta, config)``."""

    check_launch(config.device, config.mixed_precision)  # before any data or model is loaded
    if out is not None and Path(out).exists() and any(Path(out).iterdir()):
        raise UsageError(f"{out} already exists and is not empty", hint="choose another --out")
    if mask_file is None:
        return None, None, config
    mask, mask_meta = load_mask(Path(mask_file))
    return mask, mask_meta, config.model_copy(update={"method": mask_meta.get("method", config.method)})


def check_mask_base(mask_meta: dict[str, Any] | None, model) -> None:

    expected = (mask_meta or {}).get("base_fingerprint")
    if expected and expected != fingerprint(model):
        raise FingerprintMismatchError(
            "the mask was computed for another base model", hint=f"it records {mask_meta.get('base_model') or expected}"
        )


def total_steps(config: TrainConfig, n_examples: int | None, mask_given: bool) -> dict[str, int]:
    """The optimizer steps of each phase a training runs (``phase1`` absent when a mask is given,
    ``phase2`` for sparse methods only) on ``n_examples`` training examples."""
    totals = {}
    for phase in (1, 2):
        if phase == 1 and mask_given:
            continue
        if phase == 2 and not method_of(config).sparse:
            continue
        steps, epochs = config.phase_budget(phase)
        if steps is None and n_examples is None:
            raise UsageError(f"phase {phase} has a budget in epochs, but a streamed text has no known size",
                             hint="give the budget in steps (--phase1-steps, --phase2-steps)")
        totals[f"phase{phase}"] = steps if steps is not None else max(
            1, math.ceil((epochs or 1.0) * math.ceil(n_examples / config.batch_size))
        )
    return totals


@dataclass
class Checkpointing:
    """How a training run checkpoints and whether it continues an interrupted one.

    ``save_every``: steps between checkpoints (``None``: the preset's default; 0: only the one at the
    end of phase 1 and on SIGTERM). ``keep``: keep the checkpoints when the run finishes (they are
    deleted otherwise). ``resume``: continue the run named by ``run_id``, or else the latest
    unfinished run of the same kind and languages, from its last valid checkpoint."""

    save_every: int | None = None
    keep: bool = False
    resume: bool = False


def content_digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def mask_digest(mask: dict[str, Any] | None) -> str | None:
    if mask is None:
        return None
    digest = hashlib.sha256()
    for name in sorted(mask):
        digest.update(name.encode())
        digest.update(mask[name].reshape(-1).nonzero().flatten().numpy().tobytes())
    return digest.hexdigest()


def _emit(callbacks: Iterable[EventCallback], event: str, **fields: Any) -> None:
    for callback in callbacks:
        callback(event, fields)


@contextmanager
def _training_run(
    runs_dir: Path,
    kind: str,
    train_config: TrainConfig,
    checkpointing: Checkpointing,
    settings: dict[str, Any],
    callbacks: list[EventCallback],
    *,
    run_id: str | None,
    languages: dict[str, str],
    task: str | None = None,
    **run_fields: Any,
) -> Iterator[tuple[Run, Any, Any, list[EventCallback]]]:
    """A new run directory, or the interrupted one resumed (``metrics.jsonl`` cut back to its last
    valid checkpoint), with SIGTERM caught and a :class:`Checkpointer` writing into it. Yields
    ``(run, checkpointer, checkpoint to resume from or None, callbacks with the run's log)``. When
    the body finishes, the checkpoints are deleted unless asked to keep them."""

    if launched_processes()[0] > 1:
        # Data-parallel: the main process alone writes the run; no checkpoints (a resume would have to
        # restore every process), and a dead or silent peer fails the run in one line. SIGTERM (a
        # scheduler's, or the launcher's when a peer died) stops every process at the same step.
        if checkpointing.resume:
            raise UsageError("--resume is not available under a multi-process launch",
                             hint="resume in one process, or start the launch again")
        with StopRequest() as stop:
            stopper = Checkpointer(None, stop=stop)
            if not is_main_process(train_config.device):
                try:
                    with peer_failures():
                        yield _NoRunFiles(), stopper, None, []
                except TrainingTerminated as exc:
                    exc.reported_elsewhere = True  # the main process stopped at the same step and says so
                    raise
                return
            with Run.start(runs_dir, kind, run_id=run_id, languages=languages, task=task, **run_fields) as run, \
                    peer_failures():
                yield run, stopper, None, [lambda e, f: run.log(e, **f), *callbacks]
        return

    found = checkpoint = None
    if checkpointing.resume:
        found, elsewhere = find_resumable(runs_dir, kind, languages=languages, task=task, run_id=run_id)
        if found is None:
            also = (f" (marked running on another machine: {', '.join(elsewhere)}; give --run-id to continue one here)"
                    if elsewhere else "")
            if run_id is not None:  # a first start of a requeued job, or a mistyped id: say which
                message = f"no run {run_id} in {runs_dir} to resume: starting it as a new run"
            else:
                message = f"no interrupted run to resume in {runs_dir}: starting a new run{also}"
            _emit(callbacks, "notice", message=message)
        else:
            difference = settings_difference(found.record.resume_settings, settings)
            if difference:
                raise UsageError(f"cannot resume run {found.run_id}: {difference}",
                                 hint="run with the same settings, or without --resume to start a new run")
            checkpoint, skipped = latest_checkpoint(found.path / CHECKPOINTS_DIR)
            for problem in skipped:
                _emit(callbacks, "notice", message=f"skipped checkpoint {problem}")
    save_every = default_save_every(train_config.preset) if checkpointing.save_every is None else checkpointing.save_every
    if found is None:
        context = Run.start(runs_dir, kind, run_id=run_id, languages=languages, task=task, **run_fields)
    else:
        where = ({"phase": checkpoint.phase, "step": checkpoint.step, "checkpoint": checkpoint.name}
                 if checkpoint is not None else {"phase": None, "step": 0, "checkpoint": None})
        context = Run.resume(found.path, metrics_offset=checkpoint.metrics_offset if checkpoint else 0, resumption=where)
    with StopRequest() as stop:
        if stop.requested:  # SIGTERM came while the data and model loaded (a worker of deftx transfer)
            raise TrainingTerminated("terminated (SIGTERM) before training started", hint="run the same command again")
        with context as run:
            yield from _checkpointed(run, stop, save_every, settings, checkpointing, found, checkpoint, callbacks)


def _checkpointed(run: Run, stop: Any, save_every: int, settings: dict[str, Any], checkpointing: Checkpointing,
                  found: Any, checkpoint: Any, callbacks: list[EventCallback]) -> Iterator[tuple[Run, Any, Any, list[EventCallback]]]:
    """The body of :func:`_training_run` inside its run: a :class:`Checkpointer` writing into the run,
    the resumption recorded, and the checkpoints deleted at the end unless kept."""

    checkpoints_dir = run.path / CHECKPOINTS_DIR

    def saved(record: dict[str, Any]) -> None:
        present = {p.name for p in list_checkpoints(checkpoints_dir)}
        kept = [c for c in run.record.get("checkpoints") or [] if c.get("name") in present and c.get("name") != record["name"]]
        run.update(checkpoints=[*kept, record], checkpoints_written=int(run.record.get("checkpoints_written") or 0) + 1)

    checkpointer = Checkpointer(checkpoints_dir, save_every=save_every, settings=settings,
                                metrics_offset=run.metrics_offset, stop=stop, on_saved=saved)
    logged = [lambda e, f: run.log(e, **f), *callbacks]
    if found is None:
        run.update(resume_settings=settings, checkpointing={"save_every": save_every, "keep": checkpointing.keep})
    else:
        checkpointer.discard_after(checkpoint)
        present = {p.name for p in list_checkpoints(checkpoints_dir)}
        run.update(checkpoints=[c for c in run.record.get("checkpoints") or [] if c.get("name") in present],
                   checkpointing={"save_every": save_every, "keep": checkpointing.keep})
        resumption = run.record["resumptions"][-1]
        _emit(logged, "resume", run_id=run.run_id, attempt=len(run.record["resumptions"]) + 1,
              phase=resumption["phase"], step=resumption["step"], checkpoint=resumption["checkpoint"],
              total_steps=(run.record.get("total_steps") or {}).get(f"phase{resumption['phase']}"),
              phase_done=bool(checkpoint is not None and checkpoint.phase_done),
              dropped_metrics_lines=resumption["dropped_metrics_lines"])
    yield run, checkpointer, checkpoint, logged
    if not checkpointing.keep:
        checkpointer.remove_all()
        run.update(checkpoints=[])


def seed_new_weights(seed: int) -> None:
    """Seed the weights that loading initialises (a classifier, a missing MLM head or pooler), so that
    they follow the run's seed and not whatever ran before in this process."""
    import torch

    torch.manual_seed(seed)


@dataclass
class Prepared:
    """What a trainer prepared for :func:`train_in_run`: the model and objective, and what the run and
    the SFT record of them."""

    kind: str  # "language" or "task"
    model: Any  # the model, loaded (and seeded) as every attempt of the run loads it
    # the objective, or a function that makes it inside the run (given the run's event callback), so
    # that a long data preparation shows in the run's metrics
    objective: Any
    dense: list[str]  # full names of the parameters trained and stored densely (a new head)
    manifest: dict[str, Any]  # the SFT's manifest, before what training adds
    languages: dict[str, str]
    run_config: dict[str, Any]  # the settings run.json records
    resume_settings: dict[str, Any]  # what a resumed run must match, beside the config and the base model
    task: str | None = None
    start_sft: Any = None  # the source language's SFT a task SFT is trained with
    start_sft_path: Path | None = None
    data: Callable[[], dict[str, Any]] | None = None  # what run.json records of the data, once made


def train_in_run(prepared: Prepared, config: TrainConfig, *, model: str | Path, mask: dict[str, Any] | None,
                 mask_meta: dict[str, Any] | None, runs_dir: Path, run_id: str | None, out: Path | None,
                 keep_phase1_diff: bool, callbacks: Iterable[EventCallback], command: list[str] | None,
                 checkpointing: Checkpointing | None, force: bool = False) -> TrainOutcome:
    """The skeleton both trainers share: a run directory (new or resumed), the two-phase engine inside
    it, the SFT saved into it (and to ``out``)."""

    config = with_resolved_precision(config)  # run.json and a resume see the precision that runs
    reference = model_reference(model)
    settings = {"config": config.model_dump(mode="json"), "base_model": reference,
                "base_fingerprint": fingerprint(prepared.model), **prepared.resume_settings,
                "mask_sha256": mask_digest(mask)}
    made_later = callable(prepared.objective)
    with _training_run(
        runs_dir, prepared.kind, config, checkpointing or Checkpointing(), settings, list(callbacks),
        run_id=run_id, languages=prepared.languages, task=prepared.task,
        config={**prepared.run_config, "mixed_precision": config.mixed_precision},
        method=config.method, base_model=reference, seed=config.seed, command=command,
        total_steps={} if made_later else total_steps(config, prepared.objective.num_examples(), mask is not None),
    ) as (run, checkpointer, checkpoint, logged):
        objective = prepared.objective
        if made_later:
            objective = objective(lambda event, fields: _emit(logged, event, **fields))
            run.update(total_steps=total_steps(config, objective.num_examples(), mask is not None))
        if prepared.data is not None:
            run.update(data=prepared.data())
        if prepared.start_sft_path is not None:
            run.update(config={"lang_sft": str(Path(prepared.start_sft_path).resolve())})
        result = train_sft(
            prepared.model, objective, config, manifest=prepared.manifest, dense_parameters=prepared.dense,
            start_sft=prepared.start_sft, mask=mask,
            keep_phase1_diff=run.path / PHASE1_DIFF if keep_phase1_diff and run.path else None,
            callbacks=logged, force=force, mask_info=mask_meta, checkpoints=checkpointer, resume=checkpoint,
        )
        final = _record_sft(run, result, out)
    return TrainOutcome(final, run.path, result.summary)
