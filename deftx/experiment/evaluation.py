"""Zero-shot transfer evaluated: theta0 + phi_lang + phi_task on a target language's labelled data,
written as a results record (scores, predictions, and what was evaluated)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from deftx.data import canonical_language, get_task, load_labelled_file, load_task_split
from deftx.errors import ArtifactError, LabelMismatchError, UsageError
from deftx.methods import MULTI, NO_LANG_SFT, TARGET_IN_SOURCES, VARIANT_SETTINGS, is_sparse, method_settings
from deftx.metrics import classification_metrics
from deftx.model import load_model, load_tokenizer
from deftx.objectives.classification import check_labels, classify_labelled
from deftx.records.files import now_iso
from deftx.records.runs import Run, write_results
from deftx.sft.diff import SparseDiff, compose


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


def system_of(task_manifest: dict[str, Any], with_lang_sft: bool, target: str | None = None) -> str:
    """Which system an evaluation measures: the method, or a baseline; ``-multi`` after it for a
    multi-source task SFT, and ``+target`` after that when its sources hold the ``target``."""
    sources = task_manifest.get("sources") or []
    suffix = (MULTI + (TARGET_IN_SOURCES if target in sources else "")) if sources else ""
    if not is_sparse(task_manifest.get("method")):  # a dense task fine-tuning is its own baseline
        return str(task_manifest.get("method")) + suffix
    if not with_lang_sft:
        return NO_LANG_SFT + suffix
    return str(task_manifest.get("method")) + suffix


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
    spec = get_task(task)
    lang = canonical_language(lang)
    task_diff, lang_diff = load_transfer_sfts(task_sft, lang_sft)
    labels = check_labels(task_diff.manifest.get("labels"), spec.labels)
    data = load_labelled_file(eval_file, spec) if eval_file else load_task_split(spec, lang, split, data_dir)
    clf, tokenizer = composed_classifier(task_diff, lang_diff, model=model, labels=labels, force=force)
    if max_length is None:
        max_length = int(task_diff.training.get("max_length") or 128)
    system = system or system_of(task_diff.manifest, lang_diff is not None, lang)
    sources = list(task_diff.manifest.get("sources") or [])
    record = {
        "task": spec.name,
        "language": lang,
        "source_language": task_diff.manifest.get("language"),
        "split": split if eval_file is None else str(eval_file),
        "system": system,
        "method": task_diff.manifest.get("method"),
        "base_model": str(task_diff.manifest.get("base_model")),
        "seed": task_diff.training.get("seed"),
        "settings": result_settings(task_diff, lang_diff, control_lang),
        "lang_sft_language": lang_diff.manifest.get("language") if lang_diff is not None else None,
        "metric": spec.metric,
        "task_sft": str(Path(task_sft).resolve()),
        "lang_sft": str(Path(lang_sft).resolve()) if lang_sft is not None else None,
        "created_at": now_iso(),
    }
    if sources:  # a multi-source task SFT: its sources, and whether the target's own data trained it
        record["sources"] = sources
        record["target_in_sources"] = lang in sources
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


def result_settings(task_diff: Any, lang_diff: Any | None, control_lang: str | None = None) -> dict[str, Any]:
    """What the SFTs of an evaluation were made with (a results record's ``settings``): the columns of a
    table are told apart by these. A method's own settings (DeFT-X's rank rule and tail) come for the
    task SFT as they are, and for the language SFT with ``lang_`` before them."""
    training = task_diff.training
    lang_training = lang_diff.training if lang_diff is not None else {}
    own = method_settings(training)
    lang_own = method_settings(lang_training) if lang_diff is not None else {}
    settings = {
        "k_task": task_diff.manifest.get("k"),
        "k_lang": lang_diff.manifest.get("k") if lang_diff is not None else None,
        **{name: own.get(name) for name in VARIANT_SETTINGS},
        **{f"lang_{name}": lang_own.get(name) for name in VARIANT_SETTINGS},
        "preset": training.get("preset"),
        "lang_preset": lang_training.get("preset"),
        "task_budget": budget_text(training),
        "task_examples": (training.get("max_examples") or "all") if training else None,
        "lang_steps": lang_steps_of(task_diff.manifest, lang_diff.manifest if lang_diff is not None else None),
    }
    if control_lang is not None:
        settings["control_lang"] = canonical_language(control_lang)
    return settings


def load_transfer_sfts(task_sft: Path, lang_sft: Path | None = None):
    """The task SFT and (optionally) a language SFT, each checked to be of its kind."""

    task_diff = SparseDiff.load(task_sft)
    if task_diff.kind != "task":
        raise ArtifactError(f"{task_sft} is a {task_diff.manifest.get('kind')} SFT, not a task SFT")
    lang_diff = SparseDiff.load(lang_sft) if lang_sft is not None else None
    if lang_diff is not None and lang_diff.kind != "language":
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


    model = model or recorded_base_model([task_diff, lang_diff])
    labels = list(labels or task_diff.manifest.get("labels") or [])
    if not labels:
        raise LabelMismatchError("the task SFT records no label names", hint="was it trained with deftx train-task?")
    tokenizer = load_tokenizer(model)
    clf, _ = load_model(model, "classification", labels=labels)
    combined = compose([lang_diff, task_diff], force=force) if lang_diff is not None else task_diff
    combined.apply(clf, force=force)
    return clf, tokenizer
