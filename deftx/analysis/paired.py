"""Paired differences between systems, from the predictions of the result records.

Torch-free. Two systems evaluated on the same sentences of one language are paired by seed (the
task SFT of seed s under both); their difference is the mean over the paired seeds of the metric's
difference, with a bootstrap interval over the sentences (:mod:`deftx.analysis.stats`) when every paired
record holds its ``predictions`` and the same ``gold``.

:func:`build_paired_tables` makes ``deftx results --paired``: for each pair of :data:`PAIRS`, per
language and over all languages (pooled bootstrap), plus a sign test over the (language, seed) cells.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from statistics import fmean
from typing import Any

from deftx.analysis.comparison import ResultPoint, TableKey, as_results, newest_points, result_point, split_variants
from deftx.methods import MULTI, NO_LANG_SFT, OTHER_LANG_SFT, DeftX, FullFt, LtSft
from deftx.records.schema import ResultRecord
from deftx.analysis.stats import (
    METRICS,
    PairedDifference,
    SignTest,
    paired_bootstrap,
    pooled_paired_bootstrap,
    sign_test,
)

# (A, B): Delta = A - B, in the order of the Part 2 table.
PAIRS = ((DeftX.name, LtSft.name), (LtSft.name, NO_LANG_SFT), (DeftX.name, NO_LANG_SFT),
         (LtSft.name, OTHER_LANG_SFT), (LtSft.name, FullFt.name),
         # multi-source task SFTs: against the single-source ones, and the methods among themselves
         (LtSft.name + MULTI, LtSft.name), (DeftX.name + MULTI, DeftX.name),
         (DeftX.name + MULTI, LtSft.name + MULTI), (LtSft.name + MULTI, NO_LANG_SFT + MULTI))


@dataclass(frozen=True)
class Evaluation:
    """A result and what the paired statistics need from its record."""

    point: ResultPoint
    lang_steps: int | None = None
    control_lang: str | None = None
    source_language: str | None = None
    predictions: tuple[int, ...] | None = None
    gold: tuple[int, ...] | None = None
    n_labels: int | None = None

    @property
    def paired_ready(self) -> bool:
        return self.predictions is not None and self.gold is not None


def evaluation_of(record: ResultRecord) -> Evaluation:
    """A record's :class:`Evaluation`. Predictions that do not match the gold labels (in length, or
    ids beyond the labels) are dropped: the result stays, without a paired interval."""
    predictions, gold = record.predictions, record.gold
    if not predictions or not gold or len(predictions) != len(gold) or min(*predictions, *gold) < 0:
        predictions = gold = None
    labels = record.metrics.get("labels")
    n_labels = len(labels) if isinstance(labels, list) and labels else None
    if n_labels is not None and predictions is not None and max(max(predictions), max(gold)) >= n_labels:
        predictions = gold = None
    return Evaluation(result_point(record), record.settings.lang_steps, record.settings.control_lang,
                      record.source_language, tuple(predictions) if predictions else None,
                      tuple(gold) if gold else None, n_labels)


def collect_evaluations(records: Iterable[ResultRecord | dict[str, Any]]) -> tuple[list[Evaluation], list[str]]:
    results, skipped = as_results(records)
    return [evaluation_of(record) for record in results], skipped


def newest_per_seed(evaluations: Iterable[Evaluation]) -> list[Evaluation]:
    """One evaluation per (language, system, seed), the newest, as the comparison table counts them."""
    evaluations = list(evaluations)
    by_point = {id(e.point): e for e in evaluations}
    return [by_point[id(p)] for p in newest_points([e.point for e in evaluations])]


@dataclass(frozen=True)
class Comparison:
    """A - B over the seeds both have: the mean difference, and the bootstrap interval when the
    predictions allow it."""

    delta: float
    seeds: tuple[int, ...]
    interval: PairedDifference | None = None
    differences: tuple[float, ...] = ()  # per paired seed: A_s - B_s
    why_no_interval: str | None = None


def compare(a: Sequence[Evaluation], b: Sequence[Evaluation], *, resamples: int = 2000,
            bootstrap_seed: int = 0) -> Comparison | None:
    """A - B for one language, pairing the evaluations by seed (``None`` if no seed has both)."""
    a_by_seed = {e.point.seed: e for e in a if e.point.seed is not None}
    b_by_seed = {e.point.seed: e for e in b if e.point.seed is not None}
    seeds = tuple(sorted(set(a_by_seed) & set(b_by_seed)))
    if not seeds:
        return None
    differences = tuple(a_by_seed[s].point.value - b_by_seed[s].point.value for s in seeds)
    pairs = [(a_by_seed[s], b_by_seed[s]) for s in seeds]
    why = _why_not_paired(pairs)
    interval = None
    if why is None:
        first = pairs[0][0]
        interval = paired_bootstrap(first.gold, [x.predictions for x, _ in pairs], [y.predictions for _, y in pairs],
                                    metric=METRICS[first.point.key.metric], n=resamples, seed=bootstrap_seed,
                                    n_labels=first.n_labels)
    return Comparison(fmean(differences), seeds, interval, differences, why)


def _why_not_paired(pairs: Sequence[tuple[Evaluation, Evaluation]]) -> str | None:
    metric = pairs[0][0].point.key.metric
    if metric not in METRICS:
        return f"no bootstrap for metric {metric}"
    members = [e for pair in pairs for e in pair]
    if not all(e.paired_ready for e in members):
        return "predictions missing"
    if len({e.gold for e in members}) > 1:
        return "gold labels differ between the records"
    return None


# ----------------------------------------------------------------------------------------------
# the paired table (deftx results --paired)


@dataclass
class PairResult:
    a: str
    b: str
    rows: list[tuple[str, Comparison]]  # per language
    pooled: PairedDifference | None = None
    mean_delta: float | None = None  # mean over languages of the per-language Delta
    sign: SignTest | None = None  # over the (language, seed) cells


@dataclass
class PairedTable:
    key: TableKey
    pairs: list[PairResult]
    scale: float
    notes: list[str] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)  # headers of the DeFT-X settings' columns


def build_paired_tables(records: Iterable[ResultRecord | dict[str, Any]], *, resamples: int = 2000,
                        bootstrap_seed: int = 0) -> tuple[list[PairedTable], list[str]]:
    """The paired table of every (task, model, split, metric, preset) whose records hold predictions;
    and what was skipped (a line each)."""
    evaluations, skipped = collect_evaluations(records)
    without = [e for e in evaluations if not e.paired_ready]
    if without:
        skipped.append(f"{len(without)} result(s) without predictions (recorded before predictions were kept): "
                       f"left out of the paired statistics")
    ready = [e for e in evaluations if e.paired_ready]
    tables = []
    for key in sorted({e.point.key for e in ready}):
        members = [e for e in ready if e.point.key == key]
        split_points, labels, _ = split_variants([e.point for e in members])
        rekeyed = [replace(e, point=new) for e, new in zip(members, split_points)]
        main = [e for e, orig in zip(rekeyed, members) if e.point.system == orig.point.system]
        # every setting of DeFT-X apart from its main one (an ablation's columns) against LT-SFT and against
        # DeFT-X's main setting too
        variants = sorted({e.point.system for e in rekeyed if e.point.system.startswith(DeftX.name + "[")})
        kept = main + [e for e in rekeyed if e.point.system in variants]
        notes = []
        if len(kept) < len(members):
            notes.append(f"{len(members) - len(kept)} result(s) with other settings than their system's main "
                         f"column left out")
        kept = newest_per_seed(kept)
        pairs = []
        for a, b in (*PAIRS, *((variant, other) for variant in variants for other in (LtSft.name, DeftX.name))):
            pair = _pair(kept, a, b, resamples, bootstrap_seed)
            if pair is not None:
                pairs.append(pair)
        if not pairs:
            continue
        values = [e.point.value for e in kept]
        scale = 100.0 if values and all(0.0 <= v <= 1.0 for v in values) else 1.0
        tables.append(PairedTable(key, pairs, scale, notes, {s: label for s, label in labels.items() if s in variants}))
    return tables, skipped


def _pair(evaluations: list[Evaluation], a: str, b: str, resamples: int, bootstrap_seed: int) -> PairResult | None:
    rows = []
    for language in sorted({e.point.language for e in evaluations}):
        mine = [e for e in evaluations if e.point.language == language]
        comparison = compare([e for e in mine if e.point.system == a], [e for e in mine if e.point.system == b],
                             resamples=resamples, bootstrap_seed=bootstrap_seed)
        if comparison is not None:
            rows.append((language, comparison))
    if not rows:
        return None
    pooled = None
    if all(c.interval is not None for _, c in rows):
        by_language = []
        for language, comparison in rows:
            mine = {(e.point.system, e.point.seed): e for e in evaluations if e.point.language == language}
            seeds = comparison.seeds
            by_language.append((mine[(a, seeds[0])].gold, [mine[(a, s)].predictions for s in seeds],
                                [mine[(b, s)].predictions for s in seeds]))
        first = next(e for e in evaluations if e.point.system == a)
        pooled = pooled_paired_bootstrap(by_language, metric=METRICS[first.point.key.metric], n=resamples,
                                         seed=bootstrap_seed, n_labels=first.n_labels)
    cells = [d for _, c in rows for d in c.differences]
    return PairResult(a, b, rows, pooled, fmean(c.delta for _, c in rows), sign_test(cells))
