"""Task splits from the Hugging Face hub, used when no local data root is given.

``datasets`` is imported here, inside the loading function, never at module import.
"""

from __future__ import annotations

import warnings
from typing import Any

from deftx.data.labelled import LabelledData, labelled_data
from deftx.data.registry import DATA_DIR_ENV, HubSplit, TaskSpec, hub_split
from deftx.errors import DataFormatError, InputNotFoundError

_LOCAL_HINT = f"give a local data root with --data-dir or ${DATA_DIR_ENV}"


def load_hub_split(spec: TaskSpec, lang: str, split: str, variant: str | None = None) -> LabelledData:
    """``spec``/``lang``/``split`` from the hub, labels mapped to ``spec.labels`` by name.

    SmSA on the hub (``indonlp/indonlu``, config ``smsa``) is the original, unfiltered set, which holds
    near-copies of NusaX test sentences: only a local data root has the NusaX-filtered files, and
    asking the hub for ``variant="nusax-filtered"`` is an error (no variant warns and loads the original).
    """
    location = hub_split(spec, lang, split)
    if location is None:
        raise InputNotFoundError(f"{spec.name} has no hub copy: it loads only from a local data root", hint=_LOCAL_HINT)
    if spec.variants and variant not in (None, "original"):
        raise InputNotFoundError(f"{spec.name} variant '{variant}' exists only in a local data root", hint=_LOCAL_HINT)
    try:
        import datasets
    except ImportError as exc:
        raise InputNotFoundError("loading from the hub needs the 'datasets' package", hint=_LOCAL_HINT) from exc
    try:
        table = datasets.load_dataset(
            location.repo,
            location.config,
            split=location.split,
            data_dir=location.data_dir,
            revision=location.revision,
        )
    except Exception as exc:  # datasets raises many kinds (connection, not found, offline mode, bad config)
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputNotFoundError(f"could not load {location.describe()}: {reason}", hint=_LOCAL_HINT) from exc
    if spec.name == "smsa" and variant is None:
        warnings.warn(
            "SmSA from the hub is unfiltered: it contains near-copies of NusaX test sentences "
            "(a local data root has the NusaX-filtered files)",
            stacklevel=3,
        )
    return labelled_from_dataset(table, location, spec)


def labelled_from_dataset(table: Any, location: HubSplit, spec: TaskSpec) -> LabelledData:
    """A loaded ``datasets.Dataset`` as labelled data: integer labels are named by the dataset's
    ``ClassLabel`` (else ``location.label_order``), then indexed in ``spec.labels``; -1 (no gold label) is dropped."""
    missing = [c for c in (location.text_column, location.pair_column, location.label_column)
               if c and c not in table.column_names]
    if missing:
        raise DataFormatError(
            f"{location.describe()} has no column {', '.join(missing)} (it has {', '.join(table.column_names)})"
        )
    feature = table.features[location.label_column]
    names = tuple(getattr(feature, "names", None) or location.label_order or ())
    texts = table[location.text_column]
    pairs = table[location.pair_column] if location.pair_column else [None] * len(table)
    rows = (
        (f"row {i}", text, pair, _label_name(label, names))
        for i, (text, pair, label) in enumerate(zip(texts, pairs, table[location.label_column]))
        if label != -1
    )
    return labelled_data(rows, spec, location.describe())


def _label_name(label: Any, names: tuple[str, ...]) -> Any:
    """An integer class id as its name in the hub's own order; names pass through."""
    if isinstance(label, int) and not isinstance(label, bool) and 0 <= label < len(names):
        return names[label]
    return label
