"""The comparison table: evaluation results pivoted as languages x systems, over seeds.

Pure and torch-free (the compare view draws it; tests check the arithmetic against hand-computed
values). Input is the list of ``results.json`` records that :func:`deftx.runs.read_results` returns.

* One table per (task, base model, split, metric, training preset).
* A cell is one (target language, system): the mean over seeds, the sample standard deviation
  (n - 1; none for a single seed) and n. A seed evaluated twice counts once, the newest record.
* Results of one system under other settings (``settings`` of the record: K, the DeFT-X rank rule
  and tail, the language SFTs' preset) never share a cell: the settings with the most results are
  the system's column (on a tie, the settings run first), every other setting gets a column of its
  own, labelled by what differs (``DeFT-X energy:0.8``), after the system's column. Delta and the
  average Delta use the main columns.
* Delta = DeFT-X - LT-SFT (difference of the two means); the better of the two is marked.
* A cell where a classifier (almost) never predicts one of its classes (``collapsed_classes`` in a
  record's metrics, for any of its seeds) carries :data:`COLLAPSE_MARK`, and the table a footnote.
* The average row: each system's mean over its languages' means; its spread is the standard
  deviation over seeds of the per-seed language average, using the seeds that cover all of that
  system's languages (n = how many such seeds). The average Delta is the mean of the per-language
  Deltas, over the languages that have both systems.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from statistics import fmean, stdev
from typing import Any

from deftx.runs import SYSTEMS, parse_iso, slug

from deftx_cli.tui.format import DASH, METHOD_LABELS, as_dict, as_float, as_int, as_str, model_label
from deftx_cli.tui.progress import higher_is_better, pick_metric

PAIR = ("lt-sft", "deftx")  # the two methods compared head to head
BASELINES = ("no-lang-sft", "full-ft")
DELTA_LABEL = "Δ"
COLLAPSE_MARK = "†"


def system_label(system: str) -> str:
    return METHOD_LABELS.get(system, system)


@dataclass(frozen=True, order=True)
class TableKey:
    """What one comparison table is about."""

    task: str
    base_model: str
    split: str
    metric: str
    preset: str = ""  # the task SFTs' training preset ("" when the records do not say)

    @property
    def label(self) -> str:
        preset = f" · preset {self.preset}" if self.preset else ""
        return f"{self.task} · {model_label(self.base_model)} · {self.split} · {self.metric}{preset}"


Variant = tuple[tuple[str, str], ...]  # sorted (setting, value) pairs of one result's settings

# How a differing setting is named in a column header; the value follows.
SETTING_LABELS = {"k_lang": "K lang", "k_task": "K task", "rank_rule": "", "tail_keep": "tail",
                  "lang_preset": "lang preset", "task_budget": "task", "task_examples": "task examples"}


@dataclass(frozen=True)
class ResultPoint:
    """One evaluation result: one system, one target language, one seed."""

    key: TableKey
    language: str
    system: str
    seed: int | None
    value: float
    run_id: str
    created: float  # seconds since the epoch; 0 when unknown
    variant: Variant = ()  # the settings the result was made with, except the preset
    collapsed: tuple[str, ...] = ()  # classes (almost) never predicted


@dataclass(frozen=True)
class Cell:
    mean: float
    std: float | None
    n: int
    collapsed: int = 0  # results (seeds) whose classifier (almost) never predicts a class


@dataclass
class PivotRow:
    label: str  # a language code, or "Average"
    cells: dict[str, Cell]  # system -> cell (absent: no result)
    delta: float | None = None  # DeFT-X - LT-SFT
    better: str | None = None  # "lt-sft", "deftx" or None (tie or one missing)
    is_average: bool = False


@dataclass
class Pivot:
    key: TableKey
    systems: list[str]  # value columns in display order; the Delta column follows "deftx"
    rows: list[PivotRow]
    average: PivotRow | None
    scale: float  # 100 when every value is a fraction in [0, 1] (shown as points), else 1
    higher_is_better: bool
    results: int  # result records used (after de-duplicating seeds)
    notes: list[str] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)  # column headers of the variant columns

    def all_rows(self) -> list[PivotRow]:
        return self.rows + ([self.average] if self.average is not None else [])


# ----------------------------------------------------------------------------------------------
# collecting


def collect(records: Iterable[dict[str, Any]]) -> tuple[list[ResultPoint], list[str]]:
    """The usable results, and one reason per record that was skipped."""
    points: list[ResultPoint] = []
    skipped: list[str] = []
    for record in records:
        if not isinstance(record, dict):
            skipped.append("a results.json that is not a JSON object")
            continue
        run_id = as_str(record.get("run_id")) or "?"
        language = as_str(record.get("language"))
        system = as_str(record.get("system")) or as_str(record.get("method"))
        metrics = as_dict(record.get("metrics"))
        metric = as_str(record.get("metric")) or pick_metric(k for k, v in metrics.items() if as_float(v) is not None)
        value = as_float(metrics.get(metric)) if metric else None
        if not language or not system:
            skipped.append(f"{run_id}: no {'language' if not language else 'system'}")
            continue
        if metric is None or value is None:
            skipped.append(f"{run_id}: no numeric value for metric {metric or '?'}")
            continue
        settings = as_dict(record.get("settings"))
        key = TableKey(
            task=as_str(record.get("task")) or "?",
            base_model=as_str(record.get("base_model")) or "?",
            split=as_str(record.get("split")) or "?",
            metric=metric,
            preset=_setting_text(settings.get("preset")),
        )
        variant = tuple(sorted((name, _setting_text(v)) for name, v in settings.items()
                               if name != "preset" and _setting_text(v)))
        created = parse_iso(as_str(record.get("created_at"))) or 0.0
        collapsed = metrics.get("collapsed_classes")
        collapsed = tuple(str(c) for c in collapsed) if isinstance(collapsed, list) else ()
        points.append(ResultPoint(key, language, system, as_int(record.get("seed")), value, run_id, created, variant,
                                  collapsed))
    return points, skipped


def _setting_text(value: Any) -> str:
    if value is None or isinstance(value, (dict, list)):
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def variant_label(variant: Variant, main: Variant) -> str:
    """What sets ``variant`` apart from the main settings ``main``: ``energy:0.8 · tail 0.01``."""
    ref = dict(main)
    parts = []
    for name, value in variant:
        if ref.get(name) != value:
            prefix = SETTING_LABELS.get(name, name.replace("_", " "))
            parts.append(f"{prefix} {value}".strip())
    parts += [f"no {SETTING_LABELS.get(name) or name.replace('_', ' ')}" for name in ref if name not in dict(variant)]
    return " · ".join(parts)


def _split_variants(points: list[ResultPoint]) -> tuple[list[ResultPoint], dict[str, str], dict[str, Variant]]:
    """Give every non-main setting of a system a system key of its own (``deftx[rank_rule=energy:0.8]``).

    The main setting of a system is the one with the most results; on a tie, the one whose first result
    is the oldest (the reference runs usually come before their ablations), then the first in sorted
    order. Returns the re-keyed points, the headers of the new columns and each system's main setting."""
    counts: dict[str, dict[Variant, int]] = {}
    first: dict[tuple[str, Variant], float] = {}
    for point in points:
        per = counts.setdefault(point.system, {})
        per[point.variant] = per.get(point.variant, 0) + 1
        ident = (point.system, point.variant)
        first[ident] = min(first.get(ident, point.created), point.created)
    main = {system: min(per, key=lambda v: (-per[v], first[(system, v)], v)) for system, per in counts.items()}
    labels: dict[str, str] = {}
    out = []
    for point in points:
        ref = main[point.system]
        if point.variant == ref:
            out.append(point)
            continue
        ref_map, own = dict(ref), dict(point.variant)
        changed = [f"{n}={own.get(n, '')}" for n in sorted(set(ref_map) | set(own)) if ref_map.get(n) != own.get(n)]
        system = f"{point.system}[{','.join(changed)}]"
        labels[system] = f"{system_label(point.system)} {variant_label(point.variant, ref)}"
        out.append(replace(point, system=system))
    return out, labels, main


def _dedupe(points: list[ResultPoint]) -> list[ResultPoint]:
    """One point per (language, system, seed): the newest. Points without a seed are all kept."""
    newest: dict[tuple[Any, ...], ResultPoint] = {}
    for point in points:
        ident = (point.language, point.system, point.seed if point.seed is not None else ("run", point.run_id))
        old = newest.get(ident)
        if old is None or (point.created, point.run_id) > (old.created, old.run_id):
            newest[ident] = point
    return list(newest.values())


def _order_systems(present: set[str]) -> list[str]:
    """The known systems in their order (the pair always), each followed by its variant columns."""
    base = {s: s.split("[", 1)[0] for s in present}
    out = []
    for system in SYSTEMS:
        if system in present or system in PAIR:
            out.append(system)
        out += sorted((s for s in present if s != system and base[s] == system), key=lambda s: s.rstrip("]"))
    return out + sorted(s for s in present if base[s] not in SYSTEMS)


def _cell(points: list[ResultPoint]) -> Cell:
    values = [p.value for p in points]
    return Cell(fmean(values), stdev(values) if len(values) > 1 else None, len(values),
                sum(bool(p.collapsed) for p in points))


def _better(delta: float | None, higher: bool) -> str | None:
    if delta is None or delta == 0:
        return None
    return ("deftx" if delta > 0 else "lt-sft") if higher else ("lt-sft" if delta > 0 else "deftx")


def build_pivot(key: TableKey, points: Iterable[ResultPoint]) -> Pivot:
    points, labels, main = _split_variants([p for p in points if p.key == key])
    points = _dedupe(points)
    higher = higher_is_better(key.metric)
    systems = _order_systems({p.system for p in points})
    by_cell: dict[tuple[str, str], list[ResultPoint]] = {}
    for point in points:
        by_cell.setdefault((point.language, point.system), []).append(point)
    languages = sorted({p.language for p in points})

    rows = []
    for language in languages:
        cells = {}
        for system in systems:
            members = by_cell.get((language, system))
            if members:
                cells[system] = _cell(sorted(members, key=lambda p: (p.seed is None, p.seed or 0)))
        delta = cells["deftx"].mean - cells["lt-sft"].mean if "deftx" in cells and "lt-sft" in cells else None
        rows.append(PivotRow(language, cells, delta, _better(delta, higher)))

    average = None
    notes = []
    if rows:
        cells = {}
        for system in systems:
            have = [r for r in rows if system in r.cells]
            if not have:
                continue
            mean = fmean(r.cells[system].mean for r in have)
            langs = {r.label for r in have}
            per_seed: dict[int, dict[str, float]] = {}
            for point in points:
                if point.system == system and point.seed is not None:
                    per_seed.setdefault(point.seed, {})[point.language] = point.value
            complete = [fmean(v.values()) for v in per_seed.values() if set(v) == langs]
            cells[system] = Cell(mean, stdev(complete) if len(complete) > 1 else None, len(complete))
        deltas = [r.delta for r in rows if r.delta is not None]
        delta = fmean(deltas) if deltas else None
        average = PivotRow("Average", cells, delta, _better(delta, higher), is_average=True)
        both = len(deltas)
        if deltas and both < len(rows):
            notes.append(f"average {DELTA_LABEL} over the {both} languages with both LT-SFT and DeFT-X")

    for system in systems:
        if any(other.startswith(system + "[") for other in systems) and main.get(system):
            notes.append(f"{system_label(system)}: " + " · ".join(
                f"{SETTING_LABELS.get(n, n.replace('_', ' ')) or n.replace('_', ' ')} {v}" for n, v in main[system]))

    collapsed = sum(bool(p.collapsed) for p in points)
    if collapsed:
        notes.append(f"{COLLAPSE_MARK} {collapse_note(collapsed, len(points))}")

    values = [p.value for p in points]
    scale = 100.0 if values and all(0.0 <= v <= 1.0 for v in values) else 1.0
    return Pivot(key, systems, rows, average, scale, higher, len(points), notes, labels)


def build_pivots(records: Iterable[dict[str, Any]]) -> tuple[list[Pivot], list[str]]:
    """Every comparison table the records hold: the one with the most results first, then by key."""
    points, skipped = collect(records)
    pivots = [build_pivot(key, points) for key in sorted({p.key for p in points})]
    pivots.sort(key=lambda pivot: -pivot.results)  # stable: ties stay in key order
    return pivots, skipped


# ----------------------------------------------------------------------------------------------
# formatting


def format_value(value: float | None, scale: float) -> str:
    if value is None:
        return DASH
    return f"{value * scale:.1f}" if scale != 1.0 else f"{value:.4g}"


def collapse_note(collapsed: int, results: int) -> str:
    return (f"{collapsed} of {results} results come from a classifier that (almost) never predicts one of its "
            f"classes (under 2% of its predictions): it has not learned the task")


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
        if system == "deftx":
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


def to_json(pivots: list[Pivot]) -> str:
    """The tables as a JSON document: raw values (not scaled), mean/std/n per system and language."""

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
    return json.dumps(document, indent=2) + "\n"


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
