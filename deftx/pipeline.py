"""End-to-end operations: train a language or task SFT into a run directory, evaluate transfer,
compose SFTs into a ready model. The CLI commands are thin wrappers around these functions, and a
notebook can call them directly.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deftx import __version__
from deftx.config import TrainConfig, default_save_every
from deftx.data import canonical_language, get_task, load_labelled_file, load_task_split, load_unlabelled_text
from deftx.errors import ArtifactError, DataFormatError, FingerprintMismatchError, TrainingTerminated, UsageError
from deftx.methods import is_sparse, method_of, method_settings
from deftx.results import NO_LANG_SFT
from deftx.runs import Run, atomic_write_json, find_resumable, now_iso, use_umask, write_results

EventCallback = Callable[[str, dict[str, Any]], None]
SFT_SUBDIR = "sft"
PHASE1_DIFF = "phase1_diff.safetensors"


@dataclass
class TrainOutcome:
    sft_dir: Path | None  # None (and run_dir None) in the non-main processes of a multi-process launch
    run_dir: Path | None
    summary: dict[str, Any]


def _mlm_head_mode(config: TrainConfig, model_id: str | Path, missing: Iterable[str], head_names: Iterable[str]) -> str:
    """``train`` when the MLM head is not pretrained (newly initialised by from_pretrained, or a
    local model marked by a ``head_warmup.json``), else ``freeze`` (as LT-SFT does)."""
    if config.mlm_head != "auto":
        return config.mlm_head
    missing = set(missing)
    if any(name in missing for name in head_names):
        return "train"
    path = Path(str(model_id))
    if path.is_dir() and (path / "head_warmup.json").is_file():
        return "train"
    return "freeze"


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
    out = {k: v for k, v in summary.items() if k in ("k", "maskable", "entries", "seconds", "processes", "base_eval")}
    for phase in ("phase1", "phase2"):
        if phase in summary:
            out[phase] = {k: summary[phase].get(k) for k in ("steps", "final_loss", "eval")}
    return out


def _prepare_outputs(out: Path | None, mask_file: Path | None, config: TrainConfig):
    """Refuse an ``--out`` that already holds files, and load a phase-2 mask (whose method then
    applies). Returns ``(mask, mask_meta, config)``."""
    from deftx.sft import load_mask
    from deftx.training.distributed import check_launch

    check_launch(config.device, config.mixed_precision)  # before any data or model is loaded
    if out is not None and Path(out).exists() and any(Path(out).iterdir()):
        raise UsageError(f"{out} already exists and is not empty", hint="choose another --out")
    if mask_file is None:
        return None, None, config
    mask, mask_meta = load_mask(Path(mask_file))
    return mask, mask_meta, config.model_copy(update={"method": mask_meta.get("method", config.method)})


def _check_mask_base(mask_meta: dict[str, Any] | None, model) -> None:
    from deftx.model import fingerprint

    expected = (mask_meta or {}).get("base_fingerprint")
    if expected and expected != fingerprint(model):
        raise FingerprintMismatchError(
            "the mask was computed for another base model", hint=f"it records {mask_meta.get('base_model') or expected}"
        )


def total_steps(config: TrainConfig, n_examples: int, mask_given: bool) -> dict[str, int]:
    """The optimizer steps of each phase a training runs (``phase1`` absent when a mask is given,
    ``phase2`` for sparse methods only) on ``n_examples`` training examples."""
    totals = {}
    for phase in (1, 2):
        if phase == 1 and mask_given:
            continue
        if phase == 2 and not method_of(config).sparse:
            continue
        steps, epochs = config.phase_budget(phase)
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


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def _mask_digest(mask: dict[str, Any] | None) -> str | None:
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
    from deftx.signals import StopRequest
    from deftx.training.checkpoint import CHECKPOINTS_DIR, Checkpointer, latest_checkpoint, settings_difference
    from deftx.training.distributed import is_main_process, launched_processes, peer_failures

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
            _emit(callbacks, "notice", message=f"no interrupted run to resume in {runs_dir}: starting a new run{also}")
        else:
            difference = settings_difference(found.get("resume_settings"), settings)
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
    from deftx.training.checkpoint import CHECKPOINTS_DIR, Checkpointer, list_checkpoints

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


def train_language_sft(
    lang: str,
    config: TrainConfig,
    *,
    model: str | Path,
    data_dir: str | Path | None = None,
    text_files: Sequence[str | Path] | None = None,
    runs_dir: Path,
    run_id: str | None = None,
    out: Path | None = None,
    keep_phase1_diff: bool = False,
    mask_file: Path | None = None,
    callbacks: Iterable[EventCallback] = (),
    command: list[str] | None = None,
    checkpointing: Checkpointing | None = None,
) -> TrainOutcome:
    """A language SFT by masked-LM on unlabelled ``lang`` text. ``checkpointing``: how often to
    checkpoint, and whether to resume an interrupted run (see :class:`Checkpointing`)."""
    from deftx.model import fingerprint, head_parameters, model_reference
    from deftx.training import train_sft

    lang = canonical_language(lang)
    mask, mask_meta, config = _prepare_outputs(out, mask_file, config)
    lines, sources, mlm, missing, decoder, objective = _masked_lm_setup(lang, config, model, data_dir, text_files)
    head = {n: p for n, p in head_parameters(mlm).items() if p is not decoder}
    mode = _mlm_head_mode(config, model, missing, head)
    named = dict(mlm.named_parameters())
    base_missing = [n for n in missing if n in named and named[n] is not decoder and n not in head]
    dense = sorted(set(head if mode == "train" else []) | set(base_missing))
    _check_mask_base(mask_meta, mlm)
    manifest = {
        "kind": "language",
        "language": lang,
        "base_model": model_reference(model),
        "data": {"sources": sources, "lines": len(lines), "blocks": objective.num_examples()},
        "mlm_head": mode,
    }
    resolved = {**config.model_dump(mode="json"), "mlm_head_resolved": mode, "text_sources": sources}
    settings = {"config": config.model_dump(mode="json"), "base_model": model_reference(model), "base_fingerprint": fingerprint(mlm),
                "mlm_head": mode, "text_sources": sources, "data_sha256": _digest(list(lines)),
                "mask_sha256": _mask_digest(mask)}
    with _training_run(
        runs_dir, "language", config, checkpointing or Checkpointing(), settings, list(callbacks),
        run_id=run_id, languages={"target": lang}, config=resolved, method=config.method, base_model=model_reference(model),
        seed=config.seed, command=command, total_steps=total_steps(config, objective.num_examples(), mask is not None),
    ) as (run, checkpointer, checkpoint, logged):
        result = train_sft(
            mlm, objective, config, manifest=manifest, dense_parameters=dense, mask=mask,
            keep_phase1_diff=run.path / PHASE1_DIFF if keep_phase1_diff and run.path else None,
            callbacks=logged, mask_info=mask_meta, checkpoints=checkpointer, resume=checkpoint,
        )
        final = _record_sft(run, result, out)
    return TrainOutcome(final, run.path, result.summary)


def _masked_lm_setup(lang: str, config: TrainConfig, model: str | Path, data_dir: str | Path | None,
                     text_files: Sequence[str | Path] | None):
    """What a language SFT trains on and from: ``(lines, sources, model, missing, decoder, objective)``,
    the text and its training and held-out blocks, and the masked-LM model with its decoder untied."""
    from deftx.model import load_model, load_tokenizer, untie_output_embeddings
    from deftx.objectives import MaskedLMObjective

    lines, sources = load_unlabelled_text(lang, data_dir, text_files, max_lines=config.max_examples, seed=config.seed)
    tokenizer = load_tokenizer(model)
    _seed_new_weights(config.seed)  # a head that loading initialises follows the seed
    mlm, missing = load_model(model, "mlm")
    decoder = untie_output_embeddings(mlm)
    objective = MaskedLMObjective(
        tokenizer, lines, max_length=config.max_length, mlm_probability=config.mlm_probability, seed=config.seed
    )
    return lines, sources, mlm, missing, decoder, objective


def evaluate_language_model(
    lang: str,
    config: TrainConfig,
    *,
    model: str | Path,
    sft: Path | None = None,
    data_dir: str | Path | None = None,
    text_files: Sequence[str | Path] | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Held-out masked-LM loss, accuracy and perplexity of the base model, and with the language SFT
    ``sft`` applied, on ``lang``'s held-out blocks built exactly as a language SFT trained with
    ``config`` builds them (text, line subset, block length, seed, masking): the ``base`` numbers equal
    the ``base_eval`` such a training records.

    A language SFT also repairs a weak masked-LM head; another language's SFT measured on the same
    text tells that part apart from what the SFT knows of the language."""
    from deftx.model import model_reference
    from deftx.sft import SparseDiff

    lang = canonical_language(lang)
    lang_sft = None
    if sft is not None:
        lang_sft = SparseDiff.load(sft)
        if lang_sft.manifest.get("kind") != "language":
            raise ArtifactError(f"{sft} is a {lang_sft.manifest.get('kind')} SFT, not a language SFT")
    lines, sources, mlm, _, _, objective = _masked_lm_setup(lang, config, model, data_dir, text_files)
    if objective.validation is None:
        raise DataFormatError(f"too little {lang} text for held-out blocks ({objective.blocks.shape[0]} blocks; 50 needed)",
                         hint="give more text, or a smaller --max-length")
    batch_size = max(config.batch_size, 32)  # as the training's evaluations (the masking follows the batches)
    base = objective.evaluate(mlm, batch_size)
    with_sft = None
    if lang_sft is not None:
        lang_sft.apply(mlm, force=force)
        with_sft = objective.evaluate(mlm, batch_size)
    return {
        "language": lang,
        "base_model": model_reference(model),
        "text_sources": sources,
        "lines": len(lines),
        "held_out_blocks": int(objective.validation.shape[0]),
        "max_length": config.max_length,
        "seed": config.seed,
        "base": base,
        "sft": str(Path(sft).resolve()) if sft is not None else None,
        "sft_language": lang_sft.manifest.get("language") if lang_sft is not None else None,
        "sft_phase1_steps": (lang_sft.manifest.get("training") or {}).get("phase1_steps") if lang_sft is not None else None,
        "with_sft": with_sft,
    }


def train_task_sft(
    task: str,
    source_lang: str,
    config: TrainConfig,
    *,
    model: str | Path,
    lang_sft: Path | None = None,
    data_dir: str | Path | None = None,
    train_file: Path | None = None,
    validation_file: Path | None = None,
    runs_dir: Path,
    run_id: str | None = None,
    out: Path | None = None,
    keep_phase1_diff: bool = False,
    mask_file: Path | None = None,
    callbacks: Iterable[EventCallback] = (),
    command: list[str] | None = None,
    force: bool = False,
    checkpointing: Checkpointing | None = None,
) -> TrainOutcome:
    """A task SFT on labelled source-language data, trained with the source language's SFT applied.
    ``checkpointing``: how often to checkpoint, and whether to resume (see :class:`Checkpointing`)."""
    from deftx.model import fingerprint, head_parameters, load_model, load_tokenizer, model_reference
    from deftx.objectives import ClassificationObjective
    from deftx.sft import SparseDiff
    from deftx.training import train_sft

    spec = get_task(task)
    source_lang = canonical_language(source_lang)
    mask, mask_meta, config = _prepare_outputs(out, mask_file, config)
    start_sft = None
    if lang_sft is not None:
        start_sft = SparseDiff.load(lang_sft)
        if start_sft.manifest.get("kind") != "language":
            raise ArtifactError(f"{lang_sft} is a {start_sft.manifest.get('kind')} SFT, not a language SFT")
    if train_file is not None:
        train = load_labelled_file(train_file, spec)
    else:
        train = load_task_split(spec, source_lang, "train", data_dir)
    if config.max_examples:
        train = train.subset(config.max_examples, seed=config.seed)
    validation = None
    if validation_file is not None:
        validation = load_labelled_file(validation_file, spec)
    elif train_file is None and "valid" in spec.splits:
        validation = load_task_split(spec, source_lang, "valid", data_dir)
    tokenizer = load_tokenizer(model)
    _seed_new_weights(config.seed)
    clf, missing = load_model(model, "classification", labels=spec.labels)
    _check_mask_base(mask_meta, clf)
    named = dict(clf.named_parameters())
    dense = sorted(set(head_parameters(clf)) | {n for n in missing if n in named})
    objective = ClassificationObjective(
        tokenizer, train, validation, max_length=config.max_length, group_by_length=config.group_by_length
    )
    manifest: dict[str, Any] = {
        "kind": "task",
        "task": spec.name,
        "labels": list(spec.labels),
        "language": source_lang,
        "base_model": model_reference(model),
        "data": {"train": train.source, "examples": len(train),
                 "validation": validation.source if validation is not None else None},
    }
    if start_sft is not None:
        manifest["trained_with"] = [{
            "path": str(Path(lang_sft).resolve()), "language": start_sft.manifest.get("language"),
            "method": start_sft.manifest.get("method"),
            "diff_sha256": start_sft.manifest.get("files", {}).get("diff.safetensors"),
            "phase1_steps": (start_sft.manifest.get("training") or {}).get("phase1_steps"),
        }]
    settings = {"config": config.model_dump(mode="json"), "base_model": model_reference(model), "base_fingerprint": fingerprint(clf),
                "lang_sft_sha256": (start_sft.manifest.get("files") or {}).get("diff.safetensors") if start_sft else None,
                "data_sha256": _digest([train.texts, train.pairs, train.labels]), "mask_sha256": _mask_digest(mask)}
    with _training_run(
        runs_dir, "task", config, checkpointing or Checkpointing(), settings, list(callbacks),
        run_id=run_id, languages={"source": source_lang}, task=spec.name, config=config.model_dump(mode="json"),
        method=config.method, base_model=model_reference(model), seed=config.seed, command=command,
        total_steps=total_steps(config, objective.num_examples(), mask is not None),
    ) as (run, checkpointer, checkpoint, logged):
        if start_sft is not None:
            run.update(config={"lang_sft": str(Path(lang_sft).resolve())})
        result = train_sft(
            clf, objective, config, manifest=manifest, dense_parameters=dense, start_sft=start_sft, mask=mask,
            keep_phase1_diff=run.path / PHASE1_DIFF if keep_phase1_diff and run.path else None,
            callbacks=logged, force=force, mask_info=mask_meta, checkpoints=checkpointer, resume=checkpoint,
        )
        final = _record_sft(run, result, out)
    return TrainOutcome(final, run.path, result.summary)


def _seed_new_weights(seed: int) -> None:
    """Seed the weights that loading initialises (a classifier, a missing MLM head or pooler), so that
    they follow the run's seed and not whatever ran before in this process."""
    import torch

    torch.manual_seed(seed)


def budget_text(training: dict[str, Any]) -> str | None:
    """The training budget of an SFT's phases, e.g. ``1+1 ep`` or ``60+60 steps`` (dense: one phase)."""
    budget: list[tuple[str, str]] = []  # (amount, unit) per phase
    for phase in (1, 2) if is_sparse(training.get("method")) else (1,):
        steps, epochs = training.get(f"phase{phase}_steps"), training.get(f"phase{phase}_epochs")
        if steps:
            budget.append((str(steps), "steps"))
        elif epochs:
            budget.append((f"{epochs:g}", "ep"))
        else:
            return None
    units = {unit for _, unit in budget}
    if len(units) == 1:
        return "+".join(amount for amount, _ in budget) + " " + units.pop()
    return " + ".join(f"{amount} {unit}" for amount, unit in budget)


def system_of(task_manifest: dict[str, Any], with_lang_sft: bool) -> str:
    """Which system an evaluation measures: the method, or a baseline."""
    if not is_sparse(task_manifest.get("method")):  # a dense task fine-tuning is its own baseline
        return str(task_manifest.get("method"))
    if not with_lang_sft:
        return NO_LANG_SFT
    return str(task_manifest.get("method"))


def lang_steps_of(task_manifest: dict[str, Any], lang_manifest: dict[str, Any] | None) -> int | None:
    """The phase-1 steps of the language-SFT budget an evaluation belongs to: the applied language
    SFT's; without one, those of the language SFT the task SFT was trained with (recorded in its
    ``trained_with``, or read from that SFT's manifest for task SFTs trained before it was recorded);
    ``None`` for a task SFT trained without a language SFT (dense fine-tuning)."""
    if lang_manifest is not None:
        return (lang_manifest.get("training") or {}).get("phase1_steps")
    trained_with = task_manifest.get("trained_with") or []
    if not trained_with or not isinstance(trained_with[0], dict):
        return None
    first = trained_with[0]
    if "phase1_steps" in first:
        return first["phase1_steps"]
    manifest = Path(str(first.get("path") or "")) / "sft.json"
    try:
        return (json.loads(manifest.read_text()).get("training") or {}).get("phase1_steps")
    except (OSError, ValueError, AttributeError):
        return None


def evaluate_transfer(
    task: str,
    lang: str,
    task_sft: Path,
    *,
    lang_sft: Path | None = None,
    model: str | Path | None = None,
    split: str = "test",
    data_dir: str | Path | None = None,
    eval_file: Path | None = None,
    runs_dir: Path,
    run_id: str | None = None,
    batch_size: int = 64,
    max_length: int | None = None,
    force: bool = False,
    command: list[str] | None = None,
    system: str | None = None,
    control_lang: str | None = None,
) -> tuple[dict[str, Any], Path]:
    """Evaluate theta0 + phi_lang + phi_task on ``task`` in ``lang``; writes a results record with
    the scores, and the predicted and gold label ids in data order (``predictions``, ``gold``:
    indices into ``metrics["labels"]``). ``control_lang``: the language SFT applied is another
    language's, in place of the target's (recorded as ``settings.control_lang``)."""
    from deftx.evaluation import check_labels, classify_labelled, classification_metrics

    spec = get_task(task)
    lang = canonical_language(lang)
    task_diff, lang_diff = load_transfer_sfts(task_sft, lang_sft)
    labels = check_labels(task_diff.manifest.get("labels"), spec.labels)
    data = load_labelled_file(eval_file, spec) if eval_file else load_task_split(spec, lang, split, data_dir)
    clf, tokenizer = composed_classifier(task_diff, lang_diff, model=model, labels=labels, force=force)
    if max_length is None:
        max_length = int((task_diff.manifest.get("training") or {}).get("max_length") or 128)
    system = system or system_of(task_diff.manifest, lang_diff is not None)
    training = task_diff.manifest.get("training") or {}
    lang_training = (lang_diff.manifest.get("training") or {}) if lang_diff is not None else {}
    own = method_settings(training)
    lang_own = method_settings(lang_training) if lang_diff is not None else {}
    record = {
        "task": spec.name,
        "language": lang,
        "source_language": task_diff.manifest.get("language"),
        "split": split if eval_file is None else str(eval_file),
        "system": system,
        "method": task_diff.manifest.get("method"),
        "base_model": str(task_diff.manifest.get("base_model")),
        "seed": training.get("seed"),
        "settings": {
            "k_task": task_diff.manifest.get("k"),
            "k_lang": lang_diff.manifest.get("k") if lang_diff is not None else None,
            "rank_rule": own.get("rank_rule"),
            "tail_keep": own.get("tail_keep"),
            "lang_rank_rule": lang_own.get("rank_rule"),
            "lang_tail_keep": lang_own.get("tail_keep"),
            "preset": training.get("preset"),
            "lang_preset": lang_training.get("preset"),
            "task_budget": budget_text(training),
            "task_examples": (training.get("max_examples") or "all") if training else None,
            "lang_steps": lang_steps_of(task_diff.manifest, lang_diff.manifest if lang_diff is not None else None),
        },
        "lang_sft_language": lang_diff.manifest.get("language") if lang_diff is not None else None,
        "metric": spec.metric,
        "task_sft": str(Path(task_sft).resolve()),
        "lang_sft": str(Path(lang_sft).resolve()) if lang_sft is not None else None,
        "created_at": now_iso(),
    }
    if control_lang is not None:
        record["settings"]["control_lang"] = canonical_language(control_lang)
    with Run.start(
        runs_dir, "evaluation", config={"task_sft": record["task_sft"], "lang_sft": record["lang_sft"],
                                        "split": split, "batch_size": batch_size, "max_length": max_length},
        run_id=run_id, method=system, languages={"target": lang, "source": str(record["source_language"])},
        task=spec.name, base_model=record["base_model"], seed=record["seed"], command=command,
    ) as run:
        predictions, gold, model_labels = classify_labelled(clf, tokenizer, data, batch_size=batch_size,
                                                            max_length=max_length)
        metrics = classification_metrics(predictions, gold, model_labels)
        record["metrics"] = metrics
        record["predictions"], record["gold"] = predictions, gold
        record["run_id"] = run.run_id
        write_results(run.path, record)
        headline = {k: metrics[k] for k in ("accuracy", "macro_f1", "prediction_shares", "collapsed_classes")}
        run.log("eval", phase=None, step=None, metrics=headline)
        run.update(summary={**headline, "n": metrics["n"]}, outputs={"results": "results.json"})
    return record, run.path


def load_transfer_sfts(task_sft: Path, lang_sft: Path | None = None):
    """The task SFT and (optionally) a language SFT, each checked to be of its kind."""
    from deftx.sft import SparseDiff

    task_diff = SparseDiff.load(task_sft)
    if task_diff.manifest.get("kind") != "task":
        raise ArtifactError(f"{task_sft} is a {task_diff.manifest.get('kind')} SFT, not a task SFT")
    lang_diff = SparseDiff.load(lang_sft) if lang_sft is not None else None
    if lang_diff is not None and lang_diff.manifest.get("kind") != "language":
        raise ArtifactError(f"{lang_sft} is a {lang_diff.manifest.get('kind')} SFT, not a language SFT")
    return task_diff, lang_diff


def recorded_base_model(sfts: Sequence[Any]) -> str:
    """The base model the SFTs record (the first that records one)."""
    for sft in sfts:
        if sft is not None and sft.manifest.get("base_model"):
            return str(sft.manifest["base_model"])
    raise UsageError("the SFTs record no base model", hint="give --model")


def composed_classifier(task_diff, lang_diff=None, *, model: str | Path | None = None,
                        labels: Sequence[str] | None = None, force: bool = False):
    """theta0 + phi_lang + phi_task as a sequence classifier, and its tokenizer. The base model is the
    one the SFTs record unless ``model`` is given; ``labels`` default to the task SFT's."""
    from deftx.errors import LabelMismatchError
    from deftx.model import load_model, load_tokenizer
    from deftx.sft import compose

    model = model or recorded_base_model([task_diff, lang_diff])
    labels = list(labels or task_diff.manifest.get("labels") or [])
    if not labels:
        raise LabelMismatchError("the task SFT records no label names", hint="was it trained with deftx train-task?")
    tokenizer = load_tokenizer(model)
    clf, _ = load_model(model, "classification", labels=labels)
    combined = compose([lang_diff, task_diff], force=force) if lang_diff is not None else task_diff
    combined.apply(clf, force=force)
    return clf, tokenizer


def predict_texts(
    task_sft: Path,
    texts: Sequence[str],
    *,
    lang_sft: Path | None = None,
    model: str | Path | None = None,
    batch_size: int = 32,
    max_length: int | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """The label and the class probabilities of each text under theta0 + phi_lang + phi_task.

    For a sentence-pair task (NLI) a text holds the two sentences separated by a tab."""
    from deftx.objectives.classification import class_probabilities

    texts = [str(t) for t in texts]
    if not texts:
        raise UsageError("nothing to predict", hint="give sentences as arguments or --file")
    task_diff, lang_diff = load_transfer_sfts(task_sft, lang_sft)
    clf, tokenizer = composed_classifier(task_diff, lang_diff, model=model, force=force)
    labels = [clf.config.id2label[i] for i in range(clf.config.num_labels)]
    if max_length is None:
        max_length = int((task_diff.manifest.get("training") or {}).get("max_length") or 128)
    paired = any("\t" in t for t in texts)
    if paired and not all("\t" in t for t in texts):
        raise UsageError("some texts hold a tab (a sentence pair) and others do not",
                         hint="for a sentence-pair task give every text as 'premise<TAB>hypothesis'")
    firsts = [t.split("\t", 1)[0] for t in texts] if paired else texts
    seconds = [t.split("\t", 1)[1] for t in texts] if paired else None
    encoded = tokenizer(firsts, seconds, truncation=True, max_length=max_length)
    encoded = {"input_ids": encoded["input_ids"], "token_type_ids": encoded.get("token_type_ids"),
               "labels": [0] * len(texts)}
    probabilities = class_probabilities(clf, tokenizer, encoded, batch_size)
    predictions = []
    for text, probs in zip(texts, probabilities):
        best = max(range(len(labels)), key=lambda i: probs[i])
        predictions.append({"text": text, "label": labels[best],
                            "probabilities": {name: p for name, p in zip(labels, probs)}})
    return {
        "task": task_diff.manifest.get("task"),
        "labels": labels,
        "base_model": str(model or recorded_base_model([task_diff, lang_diff])),
        "task_sft": str(Path(task_sft).resolve()),
        "lang_sft": str(Path(lang_sft).resolve()) if lang_sft is not None else None,
        "language": lang_diff.manifest.get("language") if lang_diff is not None else None,
        "predictions": predictions,
    }


def compose_model(
    model: str | Path | None,
    sft_dirs: Sequence[Path],
    out: Path,
    *,
    force: bool = False,
    overwrite: bool = False,
) -> dict[str, Any]:
    """theta0 + sum of SFTs, saved with ``save_pretrained`` (and the tokenizer) into ``out``, with
    the task head when a task SFT is among them. Written to a temporary directory, then renamed.
    ``model`` None: the base model the SFTs record. ``force`` composes and applies SFTs whose base
    fingerprints differ (from each other or from the model)."""
    from deftx.model import load_model, load_tokenizer, model_reference, untie_output_embeddings
    from deftx.sft import SparseDiff, compose

    out = Path(out)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise UsageError(f"{out} already exists and is not empty", hint="choose another --out")
    if not sft_dirs:
        raise UsageError("give at least one --sft")
    sfts = [SparseDiff.load(p) for p in sft_dirs]
    model = model or recorded_base_model(sfts)
    combined = compose(sfts, force=force)
    labels = combined.manifest.get("labels")
    kind = "classification" if labels else "mlm"
    tokenizer = load_tokenizer(model)
    target, _ = load_model(model, kind, labels=labels)
    if kind == "mlm":  # as language SFTs are trained: the decoder untied and frozen at theta0
        untie_output_embeddings(target)
    combined.apply(target, force=force)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    use_umask(tmp, directory=True)
    try:
        target.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        provenance = {
            "composed_by": f"deftx {__version__}",
            "base_model": model_reference(model),
            "sfts": [{"path": str(Path(p).resolve()), **{k: s.manifest.get(k) for k in ("kind", "method", "language", "task")}}
                     for p, s in zip(sft_dirs, sfts)],
            "entries": combined.n_entries,
            "created_at": now_iso(),
        }
        atomic_write_json(tmp / "deftx_compose.json", provenance)
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {"out": str(out), "kind": kind, "labels": labels, **provenance}
