"""Evaluation results pivoted as languages x systems, over seeds: the comparison table.

Pure and torch-free: ``deftx transfer``, ``deftx results`` and the dashboard's compare view all
build their tables here, and only format them differently (``deftx_cli.tables``). Input is the list
of ``results.json`` records that :func:`read_records` returns.

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

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from statistics import fmean, stdev
from typing import Any

import math
import os
import re
from pathlib import Path

from deftx.methods import METHODS, SPARSE_METHODS, DeftX, FullFt, LtSft
from deftx.runs import parse_iso, read_results

PAIR = (LtSft.name, DeftX.name)  # the two methods compared head to head: Delta = DeFT-X - LT-SFT
NO_LANG_SFT = "no-lang-sft"  # the baseline of a task SFT evaluated without a target language SFT
OTHER_LANG_SFT = "other-lang-sft"  # the control: another language's SFT in place of the target's
BASELINE_LABELS = {NO_LANG_SFT: "no lang SFT", OTHER_LANG_SFT: "other lang SFT", FullFt.name: FullFt.label}
SYSTEM_LABELS = {**{name: METHODS[name].label for name in SPARSE_METHODS}, **BASELINE_LABELS}
SYSTEMS = tuple(SYSTEM_LABELS)  # the known systems, in column order
DELTA_LABEL = "Δ"
COLLAPSE_MARK = "†"

# Metrics where higher is better, in the order one is picked as "the" metric of a run.
PRIMARY_METRICS = ("macro_f1", "f1", "accuracy", "acc")
LOWER_IS_BETTER = re.compile(r"loss|perplexity|ppl|error", re.IGNORECASE)


def system_label(system: str) -> str:
    return SYSTEM_LABELS.get(system, system)


def higher_is_better(metric: str) -> bool:
    return not LOWER_IS_BETTER.search(metric)


def pick_metric(names: Iterable[str]) -> str | None:
    """The metric to show for a run: macro-F1, then F1, then accuracy, then the first one."""
    names = list(names)
    for name in PRIMARY_METRICS:
        if name in names:
            return name
    return names[0] if names else None


# Tolerant reading: whatever a JSON file held (strings where numbers belong, null, NaN) becomes a
# value of the wanted type or None, never an exception.


def as_float(value: Any) -> float | None:
    """A finite float, or ``None`` (booleans, strings, NaN and infinities are not numbers here)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    out = float(value)
    return out if math.isfinite(out) else None


def as_int(value: Any) -> int | None:
    """An int (a float with an integral value counts), or ``None``."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    return None


def as_str(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return None


def as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def read_records(runs_dir: Path | Iterable[Path], languages: Iterable[str] = ()) -> list[dict[str, Any]]:
    """The result records under a runs directory (or several, read together); with ``languages``,
    those of these targets only."""
    runs_dirs = [runs_dir] if isinstance(runs_dir, (str, os.PathLike)) else list(runs_dir)
    records = [record for path in runs_dirs for record in read_results(Path(path))]
    wanted = set(languages)
    return [r for r in records if r.get("language") in wanted] if wanted else records


@dataclass(frozen=True, order=True)
class TableKey:
    """What one comparison table is about."""

    task: str
    base_model: str
    split: str
    metric: str
    preset: str = ""  # the task SFTs' training preset ("" when the records do not say)


Variant = tuple[tuple[str, str], ...]  # sorted (setting, value) pairs of one result's settings

# How a differing setting is named in a column header; the value follows.
SETTING_LABELS = {"k_lang": "K lang", "k_task": "K task", "rank_rule": "task", "tail_keep": "task tail",
                  "lang_rank_rule": "lang", "lang_tail_keep": "lang tail",
                  "lang_preset": "lang preset", "task_budget": "task", "task_examples": "task examples",
                  "lang_steps": "lang steps", "control_lang": "control"}


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


def latest_evaluations(records: Iterable[Any]) -> list[Any]:
    """The records less those that a newer record of the same evaluation replaces: the same task SFT,
    language SFT, target, split, system and seed, evaluated again by a version that records more
    settings (the older record's settings are a part of the newer's), so that old and new never stand
    in two columns."""

    def ident(record: Any) -> tuple[Any, ...] | None:
        if not isinstance(record, dict) or not as_str(record.get("task_sft")):
            return None
        return (*(as_str(record.get(k)) for k in ("task", "task_sft", "lang_sft", "language", "split", "system")),
                as_int(record.get("seed")))

    def when(record: dict[str, Any]) -> tuple[float, str]:
        return parse_iso(as_str(record.get("created_at"))) or 0.0, as_str(record.get("run_id")) or ""

    def replaces(newer: dict[str, Any], older: dict[str, Any]) -> bool:
        new, old = as_dict(newer.get("settings")), as_dict(older.get("settings"))
        return when(newer) > when(older) and len(new) > len(old) and all(new.get(k) == v for k, v in old.items())

    records = list(records)
    same: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for record in records:
        if (key := ident(record)) is not None:
            same.setdefault(key, []).append(record)
    return [r for r in records if (key := ident(r)) is None or not any(replaces(o, r) for o in same[key])]


def collect(records: Iterable[dict[str, Any]]) -> tuple[list[ResultPoint], list[str]]:
    """The usable results, and one reason per record that was skipped."""
    points: list[ResultPoint] = []
    skipped: list[str] = []
    for record in records:
        point = result_point(record)
        if isinstance(point, str):
            skipped.append(point)
        else:
            points.append(point)
    return points, skipped


def result_point(record: Any) -> ResultPoint | str:
    """One record's result, or why it cannot be used."""
    if not isinstance(record, dict):
        return "a results.json that is not a JSON object"
    run_id = as_str(record.get("run_id")) or "?"
    language = as_str(record.get("language"))
    system = as_str(record.get("system")) or as_str(record.get("method"))
    metrics = as_dict(record.get("metrics"))
    metric = as_str(record.get("metric")) or pick_metric(k for k, v in metrics.items() if as_float(v) is not None)
    value = as_float(metrics.get(metric)) if metric else None
    if not language or not system:
        return f"{run_id}: no {'language' if not language else 'system'}"
    if metric is None or value is None:
        return f"{run_id}: no numeric value for metric {metric or '?'}"
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
    return ResultPoint(key, language, system, as_int(record.get("seed")), value, run_id, created, variant, collapsed)


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
    lt_sft, deftx = PAIR
    return (deftx if delta > 0 else lt_sft) if higher else (lt_sft if delta > 0 else deftx)


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
        delta = cells[PAIR[1]].mean - cells[PAIR[0]].mean if set(PAIR) <= set(cells) else None
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


def collapse_note(collapsed: int, results: int) -> str:
    return (f"{collapsed} of {results} results come from a classifier that (almost) never predicts one of its "
            f"classes (under 2% of its predictions): it has not learned the task")


def build_pivots(records: Iterable[dict[str, Any]]) -> tuple[list[Pivot], list[str]]:
    """Every comparison table the records hold: the one with the most results first, then by key. An
    evaluation made again with more settings counts once (:func:`latest_evaluations`)."""
    points, skipped = collect(latest_evaluations(records))
    pivots = [build_pivot(key, points) for key in sorted({p.key for p in points})]
    pivots.sort(key=lambda pivot: -pivot.results)  # stable: ties stay in key order
    return pivots, skipped
