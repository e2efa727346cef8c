"""Task SFTs: a classifier trained on labelled source-language data with the source language's SFT
applied."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from deftx.config import TrainConfig
from deftx.data import canonical_language, get_task, load_labelled_file, load_task_split
from deftx.errors import ArtifactError
from deftx.experiment.lifecycle import (
    Checkpointing,
    EventCallback,
    Prepared,
    TrainOutcome,
    check_mask_base,
    content_digest,
    prepare_outputs,
    seed_new_weights,
    train_in_run,
)
from deftx.model import head_parameters, load_model, load_tokenizer, model_reference
from deftx.objectives import ClassificationObjective
from deftx.sft.diff import SparseDiff


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

    spec = get_task(task)
    source_lang = canonical_language(source_lang)
    mask, mask_meta, config = prepare_outputs(out, mask_file, config)
    start_sft = None
    if lang_sft is not None:
        start_sft = SparseDiff.load(lang_sft)
        if start_sft.kind != "language":
            raise ArtifactError(f"{lang_sft} is a {start_sft.kind} SFT, not a language SFT")
    train, validation = _task_data(spec, source_lang, config, data_dir, train_file, validation_file)
    tokenizer = load_tokenizer(model)
    seed_new_weights(config.seed)
    clf, missing = load_model(model, "classification", labels=spec.labels)
    check_mask_base(mask_meta, clf)
    named = dict(clf.named_parameters())
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
            "phase1_steps": start_sft.training.get("phase1_steps"),
        }]
    prepared = Prepared(
        kind="task", model=clf,
        objective=ClassificationObjective(tokenizer, train, validation, max_length=config.max_length,
                                          group_by_length=config.group_by_length),
        dense=sorted(set(head_parameters(clf)) | {n for n in missing if n in named}),
        manifest=manifest, languages={"source": source_lang}, task=spec.name,
        run_config=config.model_dump(mode="json"),
        resume_settings={
            "lang_sft_sha256": (start_sft.manifest.get("files") or {}).get("diff.safetensors") if start_sft else None,
            "data_sha256": content_digest([train.texts, train.pairs, train.labels])},
        start_sft=start_sft, start_sft_path=Path(lang_sft) if lang_sft is not None else None,
    )
    return train_in_run(prepared, config, model=model, mask=mask, mask_meta=mask_meta, runs_dir=runs_dir,
                        run_id=run_id, out=out, keep_phase1_diff=keep_phase1_diff, callbacks=callbacks,
                        command=command, checkpointing=checkpointing, force=force)


def _task_data(spec, source_lang: str, config: TrainConfig, data_dir: str | Path | None, train_file: Path | None,
               validation_file: Path | None):
    """The training examples (the seeded subset of ``max_examples``) and the validation set: the given
    files, else the task's splits in the source language."""
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
    return train, validation
