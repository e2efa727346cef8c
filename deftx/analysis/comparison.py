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

import os
import re
from pathlib import Path

from pydantic import ValidationError

from deftx.methods import PAIR, SYSTEMS, system_label
from deftx.records.files import parse_iso
from deftx.records.reading import ResultsRead, read_results
from deftx.records.schema import ResultRecord, problem

DELTA_LABEL = "Δ"
COLLAPSE_MARK = "†"

# Metrics where higher is better, in the order one is picked as "the" metric of a run.
PRIMARY_METRICS = ("macro_f1", "f1", "accuracy", "acc")
LOWER_IS_BETTER = re.compile(r"loss|perplexity|ppl|error", re.IGNORECASE)


def higher_is_better(metric: str) -> bool:
    return not LOWER_IS_BETTER.search(metric)


def pick_metric(names: Iterable[str]) -> str | None:
    """The metric to show for a run: macro-F1, then F1, then accuracy, then the first one."""
    names = list(names)
    for name in PRIMARY_METRICS:
        if name in names:
            return name
    return names[0] if names else None


def read_records(runs_dir: Path | Iterable[Path], languages: Iterable[str] = ()) -> ResultsRead:
    """The result records under a runs directory (or several, read together), and those that could not
    be read (each named with its path and reason); with ``languages``, the records of these targets
    only."""
    runs_dirs = [runs_dir] if isinstance(runs_dir, (str, os.PathLike)) else list(runs_dir)
    out = ResultsRead()
    for path in runs_dirs:
        out.extend(read_results(Path(path)))
    wanted = set(languages)
    if wanted:
        out.records = [r for r in out.records if r.language in wanted]
    return out


def as_results(records: Iterable[ResultRecord | dict[str, Any]]) -> tuple[list[ResultRecord], list[str]]:
    """Records as their model (those of an experiment just run come as dicts), and why each one that
    does not fit it cannot be used."""
    out, skipped = [], []
    for record in records:
        if isinstance(record, ResultRecord):
            out.append(record)
            continue
        try:
            out.append(ResultRecord.model_validate(record))
        except ValidationError as exc:
            name = record.get("run_id") if isinstance(record, dict) else None
            skipped.append(f"{name or 'a result record'}: {problem(exc)}")
    return out, skipped


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


def latest_evaluations(records: Iterable[ResultRecord]) -> list[ResultRecord]:
    """The records less those that a newer record of the same evaluation replaces: the same task SFT,
    language SFT, target, split, system and seed, evaluated again by a version that records more
    settings (the older record's settings are a part of the newer's), so that old and new never stand
    in two columns."""

    def ident(record: ResultRecord) -> tuple[Any, ...] | None:
        if not record.task_sft:
            return None
        return record.task, record.task_sft, record.lang_sft, record.language, record.split, record.system, record.seed

    def when(record: ResultRecord) -> tuple[float, str]:
        return parse_iso(record.created_at) or 0.0, record.run_id or ""

    def replaces(newer: ResultRecord, older: ResultRecord) -> bool:
        new, old = recorded_settings(newer), recorded_settings(older)
        return when(newer) > when(older) and len(new) > len(old) and all(new.get(k) == v for k, v in old.items())

    records = list(records)
    same: dict[tuple[Any, ...], list[ResultRecord]] = {}
    for record in records:
        if (key := ident(record)) is not None:
            same.setdefault(key, []).append(record)
    return [r for r in records if (key := ident(r)) is None or not any(replaces(o, r) for o in same[key])]


def recorded_settings(record: ResultRecord) -> dict[str, Any]:
    """The settings the record states (those its version wrote, null or not)."""
    return record.settings.model_dump(exclude_unset=True)


def collect(records: Iterable[ResultRecord]) -> list[ResultPoint]:
    return [result_point(record) for record in records]


def result_point(record: ResultRecord) -> ResultPoint:
    """One record's result as a point of the tables."""
    settings = recorded_settings(record)
    key = TableKey(task=record.task, base_model=record.base_model or "?", split=record.split, metric=record.metric,
                   preset=_setting_text(settings.get("preset")))
    variant = tuple(sorted((name, _setting_text(v)) for name, v in settings.items()
                           if name != "preset" and _setting_text(v)))
    collapsed = record.metrics.get("collapsed_classes")
    collapsed = tuple(str(c) for c in collapsed) if isinstance(collapsed, list) else ()
    return ResultPoint(key, record.language, record.system, record.seed, record.value, record.run_id or "?",
                       parse_iso(record.created_at) or 0.0, variant, collapsed)


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


def split_variants(points: list[ResultPoint]) -> tuple[list[ResultPoint], dict[str, str], dict[str, Variant]]:
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


def newest_points(points: list[ResultPoint]) -> list[ResultPoint]:
    """One point per (language, system, seed): the newest. Points without a seed are all kept."""
    newest: dict[tuple[Any, ...], ResultPoint] = {}
    for point in points:
        ident = (point.language, point.system, point.seed if point.seed is not None else ("run", point.run_id))
        old = newest.get(ident)
        if old is None or (point.created, point.run_id) > (old.created, old.run_id):
            newest[ident] = point
    return list(newest.values())


def order_systems(present: set[str]) -> list[str]:
    """The known systems in their order (the pair always), each followed by its variant columns."""
    base = {s: s.split("[", 1)[0] for s in present}
    out = []
    for system in SYSTEMS:  # the single-source systems, then the multi-source ones
        if system in present or system in PAIR:
            out.append(system)
        out += sorted((s for s in present if s != system and base[s] == system), key=lambda s: s.rstrip("]"))
    return out + sorted(s for s in present if base[s] not in SYSTEMS)


def cell_of(points: list[ResultPoint]) -> Cell:
    values = [p.value for p in points]
    return Cell(fmean(values), stdev(values) if len(values) > 1 else None, len(values),
                sum(bool(p.collapsed) for p in points))


def _better(delta: float | None, higher: bool) -> str | None:
    if delta is None or delta == 0:
        return None
    lt_sft, deftx = PAIR
    return (deftx if delta > 0 else lt_sft) if higher else (lt_sft if delta > 0 else deftx)


def build_pivot(key: TableKey, points: Iterable[ResultPoint]) -> Pivot:
    points, labels, main = split_variants([p for p in points if p.key == key])
    points = newest_points(points)
    higher = higher_is_better(key.metric)
    systems = order_systems({p.system for p in points})
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
                cells[system] = cell_of(sorted(members, key=lambda p: (p.seed is None, p.seed or 0)))
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


def build_pivots(records: Iterable[ResultRecord | dict[str, Any]]) -> tuple[list[Pivot], list[str]]:
    """Every comparison table the records hold: the one with the most results first, then by key. An
    evaluation made again with more settings counts once (:func:`latest_evaluations`). Also returns
    why each record that could not be used was left out."""
    results, skipped = as_results(records)
    points = collect(latest_evaluations(results))
    pivots = [build_pivot(key, points) for key in sorted({p.key for p in points})]
    pivots.sort(key=lambda pivot: -pivot.results)  # stable: ties stay in key order
    return pivots, skipped
