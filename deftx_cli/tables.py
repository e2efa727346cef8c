"""The comparison tables as text: Markdown, CSV, JSON and a Rich table, and their titles.

The tables themselves come from :mod:`deftx.analysis.comparison`; ``deftx transfer``, ``deftx results`` and the
dashboard's compare view format them here.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from typing import Any

from deftx.methods import PAIR
from deftx.analysis.comparison import COLLAPSE_MARK, DELTA_LABEL, Cell, Pivot, TableKey
from deftx.methods.configs import system_label
from deftx.records.files import slug

from deftx_cli.text import DASH, model_label


def table_title(key: TableKey) -> str:
    preset = f" · preset {key.preset}" if key.preset else ""
    return f"{key.task} · {model_label(key.base_model)} · {key.split} · {key.metric}{preset}"


def format_value(value: float | None, scale: float) -> str:
    if value is None:
        return DASH
    return f"{value * scale:.1f}" if scale != 1.0 else f"{value:.4g}"


def format_cell(cell: Cell | None, scale: float) -> str:
    """``69.1±1.2 (3)``; a single seed has no spread: ``69.1 (1)``; a collapsed classifier: ``18.3 (1)†``."""
    if cell is None:
        return DASH
    text = format_value(cell.mean, scale)
    if cell.std is not None:
        text += f"±{format_value(cell.std, scale)}"
    return f"{text} ({cell.n})" + (COLLAPSE_MARK if cell.collapsed else "")


def format_delta(delta: float | None, scale: float) -> str:
    if delta is None:
        return DASH
    text = format_value(abs(delta), scale)
    if float(text) == 0:
        return text
    return ("+" if delta > 0 else "−") + text


def column_labels(pivot: Pivot) -> list[tuple[str, str]]:
    """``(column key, header)`` for every column after the language column."""
    out = []
    for system in pivot.systems:
        out.append((system, pivot.labels.get(system) or system_label(system)))
        if system == PAIR[1]:  # Delta = second - first of the pair, after the second
            out.append(("delta", DELTA_LABEL))
    return out


def caption(pivot: Pivot) -> str:
    scale = " ×100" if pivot.scale == 100.0 else ""
    direction = "" if pivot.higher_is_better else " (lower is better)"
    return f"{pivot.key.metric}{scale}{direction} · mean±std over seeds (n) · {DELTA_LABEL} = DeFT-X − LT-SFT"


def to_markdown(pivot: Pivot) -> str:
    """A GitHub Markdown table; the better of LT-SFT and DeFT-X in bold."""
    columns = column_labels(pivot)
    lines = [
        f"### {pivot.key.task} · {model_label(pivot.key.base_model)} · {pivot.key.split}"
        + (f" · preset {pivot.key.preset}" if pivot.key.preset else ""),
        "",
        f"{caption(pivot)} · **bold** = better of LT-SFT and DeFT-X.",
        "",
        "| Language | " + " | ".join(header for _, header in columns) + " |",
        "|---|" + "---:|" * len(columns),
    ]
    for row in pivot.all_rows():
        label = f"**{row.label}**" if row.is_average else row.label
        cells = []
        for column, _ in columns:
            if column == "delta":
                cells.append(format_delta(row.delta, pivot.scale))
                continue
            text = format_cell(row.cells.get(column), pivot.scale)
            cells.append(f"**{text}**" if row.better == column else text)
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    for note in pivot.notes:
        lines += ["", f"Note: {note}."]
    return "\n".join(lines) + "\n"


def to_rich(pivot: Pivot):
    """A Rich table for the terminal: the better of LT-SFT and DeFT-X in bold, notes as its caption."""
    from rich.table import Table

    columns = column_labels(pivot)
    table = Table(title=table_title(pivot.key), caption="\n".join([caption(pivot), *pivot.notes]))
    table.add_column("language")
    for _, header in columns:
        table.add_column(header, justify="right")
    for row in pivot.all_rows():
        cells = []
        for column, _ in columns:
            if column == "delta":
                cells.append(format_delta(row.delta, pivot.scale))
            else:
                text = format_cell(row.cells.get(column), pivot.scale)
                cells.append(f"[bold]{text}[/bold]" if row.better == column else text)
        table.add_row(row.label, *cells, end_section=row is pivot.rows[-1])
    return table


def to_json(pivots: list[Pivot]) -> str:
    """The tables as a JSON document: raw values (not scaled), mean/std/n per system and language."""
    return json.dumps(to_document(pivots), indent=2) + "\n"


def to_document(pivots: list[Pivot]) -> list[dict[str, Any]]:
    """The tables as JSON-ready objects (see :func:`to_json`)."""

    def cell(c: Cell | None) -> dict[str, Any] | None:
        return None if c is None else {"mean": c.mean, "std": c.std, "n": c.n, "collapsed": c.collapsed}

    document = [
        {
            "task": pivot.key.task, "base_model": pivot.key.base_model, "split": pivot.key.split,
            "metric": pivot.key.metric, "preset": pivot.key.preset or None, "results": pivot.results,
            "systems": {s: pivot.labels.get(s) or system_label(s) for s in pivot.systems},
            "columns": [header for _, header in column_labels(pivot)],
            "rows": [
                {"language": "average" if row.is_average else row.label,
                 "cells": {s: cell(row.cells.get(s)) for s in pivot.systems},
                 "delta_deftx_minus_lt_sft": row.delta, "better": row.better}
                for row in pivot.all_rows()
            ],
            "notes": pivot.notes,
        }
        for pivot in pivots
    ]
    return document


def to_csv(pivot: Pivot) -> str:
    """One row per language plus ``average``; raw values (not scaled), mean/std/n per system."""
    return tables_to_csv([pivot])


def tables_to_csv(pivots: list[Pivot]) -> str:
    """Several tables in one CSV: the union of their systems as columns (empty where a table has none)."""
    systems: list[str] = []
    for pivot in pivots:
        systems += [s for s in pivot.systems if s not in systems]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    header = ["task", "base_model", "split", "metric", "preset", "language"]
    for system in systems:
        header += [f"{system}_mean", f"{system}_std", f"{system}_n"]
    header += ["delta_deftx_minus_lt-sft", "better"]
    writer.writerow(header)

    def number(value: float | None) -> str:
        return "" if value is None else f"{value:.6g}"

    for pivot in pivots:
        for row in pivot.all_rows():
            line = [pivot.key.task, pivot.key.base_model, pivot.key.split, pivot.key.metric, pivot.key.preset]
            line.append("average" if row.is_average else row.label)
            for system in systems:
                cell = row.cells.get(system)
                line += [number(cell.mean), number(cell.std), str(cell.n)] if cell else ["", "", ""]
            line += [number(row.delta), row.better or ""]
            writer.writerow(line)
    return out.getvalue()


def export_stem(key: TableKey, keys: Iterable[TableKey]) -> str:
    """``compare-<task>``, with the model, split and metric added only when needed to tell tables apart."""
    others = [k for k in keys if k != key and k.task == key.task]
    parts = ["compare", key.task]
    if any(k.base_model != key.base_model for k in others):
        parts.append(model_label(key.base_model))
    if any(k.split != key.split for k in others):
        parts.append(key.split)
    if any(k.metric != key.metric for k in others):
        parts.append(key.metric)
    if key.preset and any(k.preset != key.preset for k in others):
        parts.append(key.preset)
    return slug(*parts)
