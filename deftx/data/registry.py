"""The built-in tasks: labels, metric, languages, splits, and where each split lives locally and on the hub.

The local layout is that of the reference data root (``../shared/data``)::

    nusax/sentiment/<language dir>/{train,valid,test}.csv         NusaX-Senti
    smsa/{split}.nusax_filtered.tsv, smsa/{split}.tsv              SmSA (filtered / original)
    americasnli/{dev,test}/<lang>.tsv                              AmericasNLI
    english_nli/sick2014/SICK_{train,trial,test_annotated}.txt     SICK
    english_nli/xnli_en/{dev,test}.tsv                             XNLI English

This module imports neither ``datasets`` nor torch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from deftx.data.languages import (
    AMERICAS_FILE_CODES, AMERICASNLI_LANGUAGES, NUSAX_DIRS, NUSAX_LANGUAGES, canonical_language,
)
from deftx.errors import InputNotFoundError, UnknownNameError, UsageError

DATA_DIR_ENV = "DEFTX_DATA_DIR"

SENTIMENT_LABELS = ("negative", "neutral", "positive")
NLI_LABELS = ("entailment", "neutral", "contradiction")


def resolve_data_dir(data_dir: Path | str | None) -> Path | None:
    """The local data root: ``data_dir`` if given, else ``$DEFTX_DATA_DIR``, else None (load from the hub)."""
    if data_dir is not None and str(data_dir) != "":
        origin = "data directory"
    elif os.environ.get(DATA_DIR_ENV):
        data_dir, origin = os.environ[DATA_DIR_ENV], f"data directory ${DATA_DIR_ENV}"
    else:
        return None
    path = Path(data_dir).expanduser()
    if not path.is_dir():
        what = "does not exist" if not path.exists() else "is not a directory"
        raise InputNotFoundError(
            f"{origin} {path} {what}", hint="give a data root laid out like ../shared/data with --data-dir"
        )
    return path


@dataclass(frozen=True)
class TaskSpec:
    """A labelled task: its label set (in canonical order), headline metric, languages and splits."""

    name: str
    labels: tuple[str, ...]
    metric: str
    pair: bool
    languages: tuple[str, ...]
    splits: tuple[str, ...]
    description: str
    hub_id: str | None = None
    variants: tuple[str, ...] = ()


TASKS: dict[str, TaskSpec] = {
    spec.name: spec
    for spec in (
        TaskSpec(
            name="nusax-senti",
            labels=SENTIMENT_LABELS,
            metric="macro_f1",
            pair=False,
            languages=NUSAX_LANGUAGES,
            splits=("train", "valid", "test"),
            description="NusaX-Senti: sentiment in 10 local languages of Indonesia plus Indonesian and English, "
            "500/100/400 parallel items per language",
            hub_id="indonlp/NusaX-senti",
        ),
        TaskSpec(
            name="smsa",
            labels=SENTIMENT_LABELS,
            metric="macro_f1",
            pair=False,
            languages=("ind",),
            splits=("train", "valid", "test"),
            description="SmSA (IndoNLU) Indonesian sentiment, the source task data for NusaX; variant "
            "'nusax-filtered' (default) drops the items that copy NusaX sentences, 'original' keeps them "
            "(leaks NusaX test items); the hub copy is the original",
            hub_id="indonlp/indonlu",
            variants=("nusax-filtered", "original"),
        ),
        TaskSpec(
            name="americasnli",
            labels=NLI_LABELS,
            metric="accuracy",
            pair=True,
            languages=AMERICASNLI_LANGUAGES,
            splits=("valid", "test"),
            description="AmericasNLI: NLI in 10 indigenous languages of the Americas, translations of XNLI; "
            "evaluation only (dev/test), train the task on English NLI",
            hub_id="nala-cub/americas_nli",
        ),
        TaskSpec(
            name="sick",
            labels=NLI_LABELS,
            metric="accuracy",
            pair=True,
            languages=("eng",),
            splits=("train", "valid", "test"),
            description="SICK 2014 English NLI (4,500 train pairs): the offline stand-in for MultiNLI as source "
            "task data for AmericasNLI (small caption domain: expect weaker transfer)",
        ),
        TaskSpec(
            name="xnli-en",
            labels=NLI_LABELS,
            metric="accuracy",
            pair=True,
            languages=("eng",),
            splits=("valid", "test"),
            description="XNLI English dev/test: the English source of AmericasNLI, so validation only; "
            "training on it contaminates AmericasNLI evaluation",
            hub_id="facebook/xnli",
        ),
        TaskSpec(
            name="multinli",
            labels=NLI_LABELS,
            metric="accuracy",
            pair=True,
            languages=("eng",),
            splits=("train", "valid"),
            description="MultiNLI (hub only; valid = validation_matched): the English source task data of "
            "AmericasNLI in the papers; offline use 'sick'",
            hub_id="nyu-mll/multi_nli",
        ),
    )
}

# Evaluation task -> (training task, source language) of the standard recipes: the source language's
# labelled data is the training task's (SmSA for Indonesian in NusaX, English NLI for AmericasNLI).
RECIPES = {"nusax-senti": ("smsa", "ind"), "americasnli": ("sick", "eng")}

_TASK_ALIASES = {
    "nusax": "nusax-senti",
    "anli": "americasnli",
    "americas-nli": "americasnli",
    "mnli": "multinli",
    "multi-nli": "multinli",
    "xnli": "xnli-en",
    "sick2014": "sick",
    "sick-2014": "sick",
    "indonlu-smsa": "smsa",
}

_SPLIT_ALIASES = {"train": "train", "valid": "valid", "validation": "valid", "dev": "valid", "val": "valid",
                  "test": "test"}


def get_task(name: str) -> TaskSpec:
    """The task called ``name`` (or an alias: ``nusax``, ``anli``, ``mnli``, ``xnli`` ...)."""
    key = name.strip().casefold().replace("_", "-")
    key = _TASK_ALIASES.get(key, key)
    if key in TASKS:
        return TASKS[key]
    raise UnknownNameError("task", name, [*TASKS, *_TASK_ALIASES], hint=f"known tasks: {', '.join(TASKS)}")


def as_task(task: str | TaskSpec) -> TaskSpec:
    """A :class:`TaskSpec` as is, or the task of that name."""
    return task if isinstance(task, TaskSpec) else get_task(task)


def task_language(spec: TaskSpec, lang: str | None) -> str:
    """The canonical code of ``lang`` if ``spec`` covers it; a one-language task may leave it out."""
    if lang is None:
        if len(spec.languages) == 1:
            return spec.languages[0]
        raise UsageError(f"{spec.name} needs a language", hint=f"one of {', '.join(spec.languages)}")
    code = canonical_language(lang)
    if code not in spec.languages:
        raise UnknownNameError(
            f"{spec.name} language", code, spec.languages, hint=f"{spec.name} covers {', '.join(spec.languages)}"
        )
    return code


def canonical_split(spec: TaskSpec, split: str) -> str:
    """``train``, ``valid`` or ``test`` (``dev`` and ``validation`` mean ``valid``), checked against ``spec``."""
    key = _SPLIT_ALIASES.get(split.strip().casefold(), split)
    if key in spec.splits:
        return key
    if key == "train" and spec.name in ("americasnli", "xnli-en"):
        hint = f"{spec.name} is for evaluation only: train the task on English NLI (multinli online, sick offline)"
    else:
        hint = f"{spec.name} has splits {', '.join(spec.splits)}"
    raise UnknownNameError(f"{spec.name} split", split, spec.splits, hint=hint)


def task_variant(spec: TaskSpec, variant: str | None) -> str | None:
    """The variant to read (the task's default when None); tasks without variants take none."""
    if variant is None:
        return spec.variants[0] if spec.variants else None
    if not spec.variants:
        raise UsageError(f"{spec.name} has no variants (got '{variant}')")
    if variant not in spec.variants:
        raise UnknownNameError(f"{spec.name} variant", variant, spec.variants)
    return variant


@dataclass(frozen=True)
class LocalSplit:
    """Where one split of a task lies under a data root, and how to read it."""

    path: Path
    format: str  # "csv" or "tsv"
    text_column: str
    pair_column: str | None
    label_column: str
    fieldnames: tuple[str, ...] | None = None  # column names of a file without a header row


def local_split(spec: TaskSpec, lang: str, split: str, root: Path, variant: str | None) -> LocalSplit | None:
    """The file holding ``spec``/``lang``/``split`` in the reference layout; None when the task is hub-only."""
    if spec.name == "nusax-senti":
        path = root / "nusax" / "sentiment" / NUSAX_DIRS[lang] / f"{split}.csv"
        return LocalSplit(path, "csv", "text", None, "label")
    if spec.name == "smsa":
        suffix = ".nusax_filtered.tsv" if variant == "nusax-filtered" else ".tsv"
        return LocalSplit(root / "smsa" / f"{split}{suffix}", "tsv", "text", None, "label", ("text", "label"))
    if spec.name == "americasnli":
        folder = "dev" if split == "valid" else split
        stem = AMERICAS_FILE_CODES.get(lang, lang)
        return LocalSplit(root / "americasnli" / folder / f"{stem}.tsv", "tsv", "premise", "hypothesis", "label")
    if spec.name == "sick":
        name = {"train": "SICK_train.txt", "valid": "SICK_trial.txt", "test": "SICK_test_annotated.txt"}[split]
        return LocalSplit(root / "english_nli" / "sick2014" / name, "tsv", "sentence_A", "sentence_B",
                          "entailment_judgment")
    if spec.name == "xnli-en":
        folder = "dev" if split == "valid" else split
        return LocalSplit(root / "english_nli" / "xnli_en" / f"{folder}.tsv", "tsv", "premise", "hypothesis", "label")
    return None


@dataclass(frozen=True)
class HubSplit:
    """Where one split of a task lies on the Hugging Face hub, and its columns."""

    repo: str
    split: str
    text_column: str
    pair_column: str | None
    label_column: str = "label"
    config: str | None = None
    data_dir: str | None = None
    revision: str | None = None
    label_order: tuple[str, ...] | None = None  # meaning of integer labels if the hub gives no ClassLabel names

    def describe(self) -> str:
        """``hub:<repo> (<config>, <split>)``, the data's source."""
        parts = [p for p in (self.config, self.data_dir, self.split) if p]
        return f"hub:{self.repo} ({', '.join(parts)})"


# Script-based repos (NusaX-senti, IndoNLU) load through their parquet export: current `datasets` runs no scripts.
_PARQUET_EXPORT = "refs/convert/parquet"


def hub_split(spec: TaskSpec, lang: str, split: str) -> HubSplit | None:
    """The hub location of ``spec``/``lang``/``split``; None when the task has no hub copy."""
    hub = {"train": "train", "valid": "validation", "test": "test"}[split]
    if spec.name == "nusax-senti":
        return HubSplit(spec.hub_id, hub, "text", None, data_dir=lang, revision=_PARQUET_EXPORT,
                        label_order=SENTIMENT_LABELS)
    if spec.name == "smsa":
        return HubSplit(spec.hub_id, hub, "text", None, data_dir="smsa", revision=_PARQUET_EXPORT,
                        label_order=("positive", "neutral", "negative"))
    if spec.name == "americasnli":
        return HubSplit(spec.hub_id, hub, "premise", "hypothesis", config=AMERICAS_FILE_CODES.get(lang, lang),
                        label_order=NLI_LABELS)
    if spec.name == "xnli-en":
        return HubSplit(spec.hub_id, hub, "premise", "hypothesis", config="en", label_order=NLI_LABELS)
    if spec.name == "multinli":
        hub = "validation_matched" if split == "valid" else hub
        return HubSplit(spec.hub_id, hub, "premise", "hypothesis", label_order=NLI_LABELS)
    return None
