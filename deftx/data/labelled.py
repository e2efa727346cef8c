"""Labelled examples of a task, checked against the task's label set, and read from CSV/TSV/JSONL files."""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deftx.data.registry import LocalSplit, TaskSpec, as_task
from deftx.data.tables import Table, read_table, table_format
from deftx.errors import DataFormatError, UsageError

# Column names tried, in order, when a file's columns are not named explicitly (case-insensitive).
TEXT_COLUMNS = ("text", "sentence", "premise", "sentence_A", "sentence1", "content", "review", "tweet")
PAIR_COLUMNS = ("hypothesis", "sentence_B", "sentence2")
LABEL_COLUMNS = ("label", "labels", "gold_label", "entailment_judgment", "sentiment", "class")


@dataclass
class LabelledData:
    """Texts (and second segments for pair tasks) with label ids indexing ``label_names``."""

    texts: list[str]
    pairs: list[str] | None
    labels: list[int]
    label_names: tuple[str, ...]
    source: str

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, n: int, seed: int) -> LabelledData:
        """``n`` rows drawn at random (the same for the same ``seed``), in their original order; all if ``n >= len``."""
        if n < 1:
            raise UsageError(f"a subset needs at least one example (got {n})")
        if n >= len(self):
            return self
        rows = sorted(random.Random(seed).sample(range(len(self)), n))
        return LabelledData(
            texts=[self.texts[i] for i in rows],
            pairs=[self.pairs[i] for i in rows] if self.pairs is not None else None,
            labels=[self.labels[i] for i in rows],
            label_names=self.label_names,
            source=f"{self.source} (random {n} of {len(self)}, seed {seed})",
        )


def labelled_data(rows: Iterable[tuple[str, Any, Any, Any]], spec: TaskSpec, source: str) -> LabelledData:
    """Check and index ``(where, text, pair, label)`` rows; ``where`` ("line 3") places a row in messages.

    A label is a name from ``spec.labels`` (any case) or an integer id into it. Segments are stripped.
    """
    ids = {name.casefold(): i for i, name in enumerate(spec.labels)} | {str(i): i for i in range(len(spec.labels))}
    data = LabelledData([], [] if spec.pair else None, [], spec.labels, source)
    bad: list[tuple[str, Any]] = []
    for where, text, pair, label in rows:
        label_id = None if label is None or isinstance(label, bool) else ids.get(str(label).strip().casefold())
        if label_id is None:
            bad.append((where, label))
            continue
        text, pair = _segment(text), _segment(pair)
        # A pair may have one empty side (three AmericasNLI nah test premises are blank); a row needs some text.
        if not (text or pair):
            raise DataFormatError(f"{source}, {where}: empty text")
        if data.pairs is not None:
            data.pairs.append(pair)
        data.texts.append(text)
        data.labels.append(label_id)
    if bad:
        raise _label_error(bad, spec, source)
    if not data.labels:
        raise DataFormatError(f"{source} has no examples")
    return data


def _segment(value: Any) -> str:
    return "" if value is None else str(value).strip()


def _label_error(bad: list[tuple[str, Any]], spec: TaskSpec, source: str) -> DataFormatError:
    where, value = bad[0]
    shown = "no label" if value is None else f"label {value!r}"
    message = f"{source}, {where}: {shown} is not a {spec.name} label ({', '.join(spec.labels)})"
    if len(bad) > 1:
        others = sorted({repr(v) for _, v in bad[1:]})
        message += f"; {len(bad) - 1} more rows have labels outside the set: {', '.join(others[:5])}"
        message += " ..." if len(others) > 5 else ""
    return DataFormatError(
        message, hint=f"labels are names ({', '.join(spec.labels)}) or ids 0-{len(spec.labels) - 1} in that order"
    )


def load_labelled_file(
    path: Path | str,
    task: str | TaskSpec,
    *,
    text_column: str | None = None,
    pair_column: str | None = None,
    label_column: str | None = None,
) -> LabelledData:
    """Labelled data for ``task`` from a .csv, .tsv or .jsonl (.json: JSON Lines) file.

    Columns not named are guessed (``text``/``sentence``/``premise``..., ``hypothesis``/``sentence_B``...,
    ``label``/``gold_label``...). A CSV/TSV file without a header row is read as ``text, label``
    (``text, hypothesis, label`` for pair tasks) when its first row ends in a valid label. TSV is read
    without quote processing.
    """
    spec = as_task(task)
    path = Path(path)
    if pair_column is not None and not spec.pair:
        raise UsageError(f"{spec.name} classifies single texts: it takes no second-segment column")
    fmt = table_format(path)
    table = read_table(path, fmt)
    named = any(c is not None for c in (text_column, pair_column, label_column))
    if fmt != "jsonl" and not named and _headerless(table, spec):
        names = ("text", "hypothesis", "label") if spec.pair else ("text", "label")
        table = read_table(path, fmt, fieldnames=names)
    text = _column(table, text_column, TEXT_COLUMNS, "text", "name the column with text_column")
    pair = _column(table, pair_column, PAIR_COLUMNS, "pair", "name the column with pair_column") if spec.pair else None
    label = _column(table, label_column, LABEL_COLUMNS, "label", "name the column with label_column")
    return _from_table(table, spec, text, pair, label)


def read_local_split(local: LocalSplit, spec: TaskSpec) -> LabelledData:
    """One split of a built-in task from its file in a data root."""
    table = read_table(local.path, local.format, fieldnames=local.fieldnames)
    hint = "is the data root laid out like ../shared/data?"
    text = _column(table, local.text_column, (), "text", hint)
    pair = _column(table, local.pair_column, (), "pair", hint) if local.pair_column else None
    label = _column(table, local.label_column, (), "label", hint)
    return _from_table(table, spec, text, pair, label)


def _headerless(table: Table, spec: TaskSpec) -> bool:
    """Whether the "header" is really a first example: no known column name, and a label in the last cell."""
    known = (*TEXT_COLUMNS, *PAIR_COLUMNS, *LABEL_COLUMNS)
    if any(table.column(name) for name in known) or len(table.columns) != (3 if spec.pair else 2):
        return False
    return table.columns[-1].casefold() in {name.casefold() for name in spec.labels}


def _column(table: Table, given: str | None, candidates: tuple[str, ...], role: str, hint: str) -> str:
    """The file's name for a column: ``given`` (checked), else the first candidate present."""
    found = table.column(given) if given else next(filter(None, map(table.column, candidates)), None)
    if found is not None:
        return found
    looked_for = f"'{given}'" if given else ", ".join(candidates)
    raise DataFormatError(
        f"{table.path}: no {role} column (looked for {looked_for}; the file has {', '.join(table.columns)})",
        hint=hint,
    )


def _from_table(table: Table, spec: TaskSpec, text: str, pair: str | None, label: str) -> LabelledData:
    rows = ((f"line {n}", rec.get(text), rec.get(pair) if pair else None, rec.get(label)) for n, rec in table.rows)
    return labelled_data(rows, spec, str(table.path))
