"""Task SFTs: a classifier trained on labelled source-language data with the source language's SFT
applied."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from deftx.config import TrainConfig
from deftx.data import canonical_language, get_task, load_labelled_file, load_task_split
from deftx.errors import ArtifactError, UsageError
from deftx.experiment.lifecycle import (
    Checkpointing,
    EventCallback,
    Prepared,
    TrainOutcome,
    check_mask_base,
    content_digest,
    prepare_outputs,
    seed_new_weights,
    total_steps,
    train_in_run,
)
from deftx.experiment.plan import source_task
from deftx.model import check_max_length, head_parameters, load_model, load_tokenizer, model_reference
from deftx.objectives import ClassificationObjective
from deftx.objectives.multisource import MultiSourceObjective, normal_sampling
from deftx.sft.diff import SparseDiff
from deftx.training.swap import LanguageSwap


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
    check_max_length(model, config.max_length)
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
        manifest["trained_with"] = [_trained_with(Path(lang_sft), start_sft)]
    made: list[ClassificationObjective] = []

    def objective(emit: EventCallback) -> ClassificationObjective:
        made.append(ClassificationObjective(tokenizer, train, validation, max_length=config.max_length,
                                            group_by_length=config.group_by_length,
                                            progress=lambda fields: emit("prepare", fields)))
        return made[0]

    def data_record() -> dict[str, Any]:
        encoded = made[0].train
        return {"train": train.source, "examples": len(encoded), "tokens": int(encoded.lengths.sum()),
                "cache_key": encoded.key,
                "validation": validation.source if validation is not None else None}

    prepared = Prepared(
        kind="task", model=clf, objective=objective,
        dense=sorted(set(head_parameters(clf)) | {n for n in missing if n in named}),
        manifest=manifest, languages={"source": source_lang}, task=spec.name,
        run_config=config.model_dump(mode="json"),
        resume_settings={
            "lang_sft_sha256": (start_sft.manifest.get("files") or {}).get("diff.safetensors") if start_sft else None,
            "data_sha256": content_digest([train.texts, train.pairs, train.labels])},
        start_sft=start_sft, start_sft_path=Path(lang_sft) if lang_sft is not None else None,
        data=data_record,
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


# ------------------------------------------------------------------------------ multi-source task SFTs


def check_multi_source(task: str, sources: list[str],
                       lang_sfts: Iterable[tuple[str, str | Path]]) -> tuple[list[str], dict[str, Path]]:
    """The sources (canonical, once each, each with training data) and the language SFTs by source, from
    ``(language, SFT)`` pairs as given (each a source's, at most one each): one clear error before any
    training."""
    canonical = [canonical_language(s) for s in sources]
    if not canonical:
        raise UsageError("--sources names no language", hint="e.g. --sources ind,jav,sun")
    twice = sorted({s for s in canonical if canonical.count(s) > 1})
    if twice:
        raise UsageError(f"source {twice[0]} is given twice in --sources")
    for lang in canonical:
        source_task(task, lang)
    by_source: dict[str, Path] = {}
    for lang, path in lang_sfts:
        code = canonical_language(lang)
        if code not in canonical:
            raise UsageError(f"--lang-sft {lang}=... names a language that is not a source",
                             hint=f"the sources are {', '.join(canonical)}")
        if code in by_source:
            raise UsageError(f"two language SFTs for source {code}", hint="give one --lang-sft per source")
        by_source[code] = Path(path)
    return canonical, by_source


def train_multi_source_task_sft(
    task: str,
    sources: list[str],
    config: TrainConfig,
    *,
    model: str | Path,
    lang_sfts: dict[str, Path] | None = None,
    data_dir: str | Path | None = None,
    runs_dir: Path,
    run_id: str | None = None,
    out: Path | None = None,
    keep_phase1_diff: bool = False,
    mask_file: Path | None = None,
    callbacks: Iterable[EventCallback] = (),
    command: list[str] | None = None,
    force: bool = False,
    checkpointing: Checkpointing | None = None,
    sampling: str = "proportional",
) -> TrainOutcome:
    """A task SFT learnt from the labelled data of several source languages: each batch from one source
    (drawn by ``sampling``: see :mod:`deftx.objectives.multisource`), trained with that source's language SFT (``lang_sfts``) applied
    for the batch and removed after it; a source without a language SFT trains without one. The task SFT
    is the difference from the base model, as a single-source one is from its source's SFT."""

    spec = get_task(task)
    sampling = normal_sampling(sampling)
    sources, by_source = check_multi_source(spec.name, sources, (lang_sfts or {}).items())
    check_max_length(model, config.max_length)
    mask, mask_meta, config = prepare_outputs(out, mask_file, config)
    sfts: dict[str, SparseDiff | None] = {}
    for lang in sources:
        path = by_source.get(lang)
        if path is None:
            sfts[lang] = None
            continue
        sft = SparseDiff.load(path)
        if sft.kind != "language":
            raise ArtifactError(f"{path} is a {sft.kind} SFT, not a language SFT")
        recorded = canonical_language(str(sft.manifest.get("language") or lang))
        if recorded != lang:
            raise UsageError(f"--lang-sft {lang}={path} is a language SFT of {recorded}, not of {lang}",
                             hint="give each source its own language's SFT")
        sfts[lang] = sft
    data: dict[str, tuple[Any, Any]] = {}
    tasks: dict[str, str] = {}
    for lang in sources:
        tasks[lang] = source_task(spec.name, lang)
        source_spec = get_task(tasks[lang])
        train = load_task_split(source_spec, lang, "train", data_dir)
        if config.max_examples:
            train = train.subset(config.max_examples, seed=config.seed)
        validation = load_task_split(source_spec, lang, "valid", data_dir) if "valid" in source_spec.splits else None
        if tuple(train.label_names) != tuple(spec.labels):
            raise UsageError(f"{source_spec.name} ({lang}) has labels {list(train.label_names)}, "
                             f"{spec.name} has {list(spec.labels)}")
        data[lang] = (train, validation)
    tokenizer = load_tokenizer(model)
    seed_new_weights(config.seed)
    clf, missing = load_model(model, "classification", labels=spec.labels)
    check_mask_base(mask_meta, clf)
    swap = LanguageSwap(clf, sfts, force=force)  # checks each SFT's base model
    named = dict(clf.named_parameters())
    manifest: dict[str, Any] = {
        "kind": "task",
        "task": spec.name,
        "labels": list(spec.labels),
        "language": "+".join(sources),
        "sources": sources,
        "base_model": model_reference(model),
        "trained_with": [_trained_with(by_source[lang], sft) for lang, sft in sfts.items() if sft is not None],
    }
    made: list[MultiSourceObjective] = []

    def objective(emit: EventCallback) -> MultiSourceObjective:
        made.append(MultiSourceObjective(tokenizer, data, max_length=config.max_length,
                                         group_by_length=config.group_by_length, sampling=sampling,
                                         swap=swap, progress=lambda fields: emit("prepare", fields)))
        return made[0]

    def data_record() -> dict[str, Any]:
        made_objective = made[0]
        totals = total_steps(config, made_objective.num_examples(), mask is not None)
        phases = [(config.seed * 1000 + 100 * int(name[-1]), steps) for name, steps in totals.items()]
        steps = made_objective.steps_per_source(config.batch_size, phases)
        per_source = []
        for lang, part in zip(made_objective.names, made_objective.parts):
            train, validation = data[lang]
            per_source.append({
                "language": lang, "task": tasks[lang], "train": train.source, "examples": len(part.train),
                "tokens": int(part.train.lengths.sum()), "cache_key": part.train.key, "steps": steps[lang],
                "validation": validation.source if validation is not None else None,
                "lang_sft": str(by_source[lang].resolve()) if lang in by_source else None,
            })
        manifest["data"] = {"sources": [{k: v for k, v in s.items() if k not in ("cache_key",)} for s in per_source],
                            "sampling": sampling, "examples": made_objective.num_examples()}
        return {"sources": per_source, "sampling": sampling,
                "examples": made_objective.num_examples()}

    prepared = Prepared(
        kind="task", model=clf, objective=objective,
        dense=sorted(set(head_parameters(clf)) | {n for n in missing if n in named}),
        manifest=manifest, languages={"source": "+".join(sources)}, task=spec.name,
        run_config={**config.model_dump(mode="json"), "sources": sources, "source_sampling": sampling,
                    "lang_sfts": {lang: str(path.resolve()) for lang, path in by_source.items()}},
        resume_settings={
            "lang_sft_sha256": {lang: (sft.manifest.get("files") or {}).get("diff.safetensors")
                                for lang, sft in sfts.items() if sft is not None},
            "data_sha256": content_digest([[d.texts, d.pairs, d.labels] for d, _ in data.values()]),
            "source_sampling": sampling},
        data=data_record,
    )
    return train_in_run(prepared, config, model=model, mask=mask, mask_meta=mask_meta, runs_dir=runs_dir,
                        run_id=run_id, out=out, keep_phase1_diff=keep_phase1_diff, callbacks=callbacks,
                        command=command, checkpointing=checkpointing, force=force)


def _trained_with(path: Path, sft: SparseDiff) -> dict[str, Any]:
    return {"path": str(Path(path).resolve()), "language": sft.manifest.get("language"),
            "method": sft.manifest.get("method"),
            "diff_sha256": (sft.manifest.get("files") or {}).get("diff.safetensors"),
            "phase1_steps": sft.training.get("phase1_steps")}
