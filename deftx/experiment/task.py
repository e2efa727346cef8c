"""Task SFTs: a classifier trained on labelled source-language data with the source language's SFT
applied."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from deftx.config import TrainConfig
from deftx.data import canonical_language, get_task, load_labelled_file, load_task_split
from deftx.errors import ArtifactError
from deftx.experiment.lifecycle import (PHASE1_DIFF, Checkpointing, EventCallback, TrainOutcome, _check_mask_base,
                                        _digest, _mask_digest, _prepare_outputs, _record_sft, _seed_new_weights,
                                        _training_run, total_steps)


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
    from deftx.sft.diff import SparseDiff
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
