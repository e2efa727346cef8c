"""The learning curve over language-SFT budgets: task scores and masked-LM scores against steps.

Torch-free. Input: the result records (``settings.lang_steps`` = the phase-1 steps of the
language-SFT budget of the experiment; only records that have it count) and the runs' ``run.json``
(language-SFT runs: kind ``language``, status ``finished``, method ``lt-sft``; their
``config.phase1_steps`` and the held-out masked-LM scores in ``summary``: ``base_eval``,
``phase1.eval``, ``phase2.eval``).

One curve per (task, base model, split, metric, preset). A row is one (language, steps):

* a target language: the mean over seeds of LT-SFT (own language SFT), no language SFT, another
  language's SFT (the control) and DeFT-X where present; Delta own - none and own - control over the
  seeds both have, with the 95% paired bootstrap interval (:mod:`deftx.analysis.paired`); and the masked-LM
  scores of that language's SFTs at that budget (mean over their seeds);
* the source language and the control languages: the masked-LM scores only.

Per target, the smallest budget where the interval of own - none lies above 0 (or none).

Results of one system under other settings (K, the task budget...) than its most frequent ones are
left out, with a note: a curve varies the language-SFT budget alone.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from statistics import fmean
from typing import Any

from deftx.methods import DeftX, LtSft
from deftx.analysis.paired import Comparison, Evaluation, collect_evaluations, compare, newest_per_seed
from deftx.methods.configs import NO_LANG_SFT, OTHER_LANG_SFT
from deftx.analysis.comparison import Cell, TableKey, cell_of, split_variants
from deftx.records.reading import RunInfo, list_runs
from deftx.records.schema import ResultRecord

OWN = LtSft.name
CURVE_SYSTEMS = (LtSft.name, NO_LANG_SFT, OTHER_LANG_SFT, DeftX.name)  # column order
LM_STAGES = ("base", "phase1", "phase2")  # the base model, after phase 1, after phase 2
BUDGET_SETTINGS = ("lang_steps", "control_lang")  # settings a curve varies (not a variant of a system)
TARGET, SOURCE, CONTROL = "target", "source", "control"


@dataclass(frozen=True)
class LmScore:
    """Held-out masked-LM scores at one stage: mean over the language-SFT runs (seeds) that have it."""

    loss: float | None
    accuracy: float | None
    n: int


@dataclass
class CurveRow:
    language: str
    steps: int
    role: str  # target | source | control
    cells: dict[str, Cell] = field(default_factory=dict)  # system -> task score over seeds
    own_minus_none: Comparison | None = None
    own_minus_control: Comparison | None = None
    lm: dict[str, LmScore] = field(default_factory=dict)  # stage -> scores
    lm_runs: int = 0  # language-SFT runs the masked-LM scores come from


@dataclass
class Curve:
    key: TableKey
    rows: list[CurveRow]
    scale: float  # 100 when every task score is a fraction (shown as points)
    results: int
    first_helpful: dict[str, int | None]  # target -> smallest steps where own - none is above 0
    control_languages: dict[str, list[str]] = field(default_factory=dict)  # target -> control languages used
    notes: list[str] = field(default_factory=list)

    def targets(self) -> list[str]:
        return list(self.first_helpful)

    def target_rows(self) -> list[CurveRow]:
        return [r for r in self.rows if r.role == TARGET]


@dataclass(frozen=True)
class LanguageRun:
    """A finished LT-SFT language SFT: its language, phase-1 steps, seed and masked-LM scores."""

    language: str
    steps: int
    seed: int | None
    started: float
    run_id: str
    lm: dict[str, tuple[float | None, float | None]]  # stage -> (loss, accuracy)


def language_runs(runs: Iterable[RunInfo], method: str = OWN) -> list[LanguageRun]:
    """The finished language-SFT runs of ``method``, one per (language, steps, seed): the newest."""
    newest: dict[tuple[Any, ...], LanguageRun] = {}
    for info in runs:
        record = info.record
        if record is None or record.kind != "language" or record.status != "finished" or record.method != method:
            continue
        language = record.languages.get("target")
        steps = record.config.get("phase1_steps")
        if not language or not isinstance(steps, int):
            continue
        summary = record.summary
        evals = {"base": summary.base_eval or {},
                 "phase1": (summary.phase1.eval if summary.phase1 else None) or {},
                 "phase2": (summary.phase2.eval if summary.phase2 else None) or {}}
        lm = {stage: (_number(e.get("mlm_loss")), _number(e.get("mlm_accuracy"))) for stage, e in evals.items()}
        run = LanguageRun(language, steps, record.seed, info.started or 0.0, info.run_id, lm)
        ident = (language, steps, run.seed if run.seed is not None else run.run_id)
        old = newest.get(ident)
        if old is None or (run.started, run.run_id) > (old.started, old.run_id):
            newest[ident] = run
    return list(newest.values())


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def read_runs(runs_dirs: Path | Iterable[Path]) -> list[RunInfo]:
    """The runs of one or several runs directories."""
    dirs = [runs_dirs] if isinstance(runs_dirs, (str, os.PathLike)) else list(runs_dirs)
    return [info for path in dirs for info in list_runs(Path(path))]


def lm_scores(runs: Iterable[LanguageRun]) -> dict[str, LmScore]:
    runs = list(runs)
    out = {}
    for stage in LM_STAGES:
        losses = [r.lm[stage][0] for r in runs if r.lm[stage][0] is not None]
        accuracies = [r.lm[stage][1] for r in runs if r.lm[stage][1] is not None]
        if losses or accuracies:
            out[stage] = LmScore(fmean(losses) if losses else None, fmean(accuracies) if accuracies else None,
                                 max(len(losses), len(accuracies)))
    return out


def _main_settings(evaluations: list[Evaluation]) -> tuple[list[Evaluation], int]:
    """The evaluations made with their system's most frequent settings, the budget aside; and how many
    were left out."""
    def without_budget(e: Evaluation) -> Evaluation:
        variant = tuple((n, v) for n, v in e.point.variant if n not in BUDGET_SETTINGS)
        return replace(e, point=replace(e.point, variant=variant))

    stripped = [without_budget(e) for e in evaluations]
    split, _, _ = split_variants([e.point for e in stripped])
    kept = [orig for orig, s, new in zip(evaluations, stripped, split) if new.system == s.point.system]
    return kept, len(evaluations) - len(kept)


def build_curves(records: Iterable[ResultRecord | dict[str, Any]], runs: Iterable[RunInfo], *, resamples: int = 2000,
                 bootstrap_seed: int = 0) -> tuple[list[Curve], list[str]]:
    """Every learning curve the records hold, the one with the most results first; and one line per
    record (or group of records) left out."""
    evaluations, skipped = collect_evaluations(records)
    budgeted = [e for e in evaluations if e.lang_steps is not None and e.point.system in CURVE_SYSTEMS]
    if len(budgeted) < len(evaluations):
        skipped.append(f"{len(evaluations) - len(budgeted)} result(s) without a language-SFT budget "
                       f"(settings.lang_steps) or of another system: not on the curve")
    lm_runs = language_runs(runs)
    curves = [_build_curve(key, [e for e in budgeted if e.point.key == key], lm_runs, resamples, bootstrap_seed)
              for key in sorted({e.point.key for e in budgeted})]
    curves.sort(key=lambda c: -c.results)
    return curves, skipped


def _build_curve(key: TableKey, evaluations: list[Evaluation], lm_runs: list[LanguageRun], resamples: int,
                 bootstrap_seed: int) -> Curve:
    kept, left_out = _main_settings(evaluations)
    notes = []
    if left_out:
        notes.append(f"{left_out} result(s) with other settings than their system's most frequent ones "
                     f"(besides the language-SFT budget) left out")
    # one evaluation per (language, system, steps, seed): the newest
    by_steps: dict[int, list[Evaluation]] = {}
    for e in kept:
        by_steps.setdefault(e.lang_steps, []).append(e)  # type: ignore[arg-type]
    kept = [e for group in by_steps.values() for e in newest_per_seed(group)]

    def runs_of(language: str, steps: int) -> list[LanguageRun]:
        return [r for r in lm_runs if r.language == language and r.steps == steps]

    rows = []
    first_helpful: dict[str, int | None] = {}
    controls: dict[str, list[str]] = {}
    sources: set[str] = set()
    for language in sorted({e.point.language for e in kept}):
        mine = [e for e in kept if e.point.language == language]
        sources |= {e.source_language for e in mine if e.source_language}
        controls[language] = sorted({e.control_lang for e in mine if e.point.system == OTHER_LANG_SFT and e.control_lang})
        first_helpful[language] = None
        for steps in sorted({e.lang_steps for e in mine}):  # type: ignore[type-var]
            at = [e for e in mine if e.lang_steps == steps]
            of = {s: [e for e in at if e.point.system == s] for s in CURVE_SYSTEMS}
            row = CurveRow(language, steps, TARGET, {s: cell_of([e.point for e in v]) for s, v in of.items() if v})
            row.own_minus_none = compare(of[OWN], of[NO_LANG_SFT], resamples=resamples, bootstrap_seed=bootstrap_seed)
            row.own_minus_control = compare(of[OWN], of[OTHER_LANG_SFT], resamples=resamples,
                                            bootstrap_seed=bootstrap_seed)
            lm = runs_of(language, steps)
            row.lm, row.lm_runs = lm_scores(lm), len(lm)
            rows.append(row)
            interval = row.own_minus_none.interval if row.own_minus_none else None
            if first_helpful[language] is None and interval is not None and interval.above_zero:
                first_helpful[language] = steps
    steps_measured = sorted({e.lang_steps for e in kept})  # type: ignore[type-var]
    extra = [(lang, SOURCE) for lang in sorted(sources - set(first_helpful))]
    extra += [(lang, CONTROL) for lang in sorted({c for cs in controls.values() for c in cs} - set(first_helpful) - sources)]
    for language, role in extra:
        for steps in steps_measured:
            lm = runs_of(language, steps)
            if lm:
                rows.append(CurveRow(language, steps, role, lm=lm_scores(lm), lm_runs=len(lm)))
    if any(row.role == TARGET and not row.lm for row in rows):
        notes.append("masked-LM columns are empty where no finished LT-SFT language-SFT run of that language and "
                     "budget was found in the runs directories")
    values = [e.point.value for e in kept]
    scale = 100.0 if values and all(0.0 <= v <= 1.0 for v in values) else 1.0
    return Curve(key, rows, scale, len(kept), first_helpful, controls, notes)


def first_helpful_text(curve: Curve, language: str) -> str:
    """``mad: own SFT > no lang SFT (95% interval above 0) from 300 steps`` or ``... none of the budgets measured``."""
    steps = curve.first_helpful.get(language)
    rows = [r for r in curve.target_rows() if r.language == language]
    measured = ", ".join(f"{r.steps:,}" for r in rows)
    lead = f"{language}: smallest budget where own SFT − no lang SFT has its 95% interval above 0: "
    if steps is not None:
        return lead + f"{steps:,} steps (measured: {measured})"
    if not any(r.own_minus_none is not None and r.own_minus_none.interval is not None for r in rows):
        return lead + f"no paired interval (measured: {measured}; predictions or seeds of both systems missing)"
    return lead + f"none of the budgets measured ({measured})"


# ----------------------------------------------------------------------------------------------
# the plot (matplotlib: the optional extra ``plot``)

SYSTEM_STYLES = {OWN: ("-", "o", "own language SFT"), NO_LANG_SFT: ("--", "s", "no language SFT"),
                 OTHER_LANG_SFT: (":", "^", "other language's SFT")}
STAGE_STYLES = {"phase2": ("-", "after phase 2"), "phase1": ("--", "after phase 1")}


def plot_curve(curve: Curve, path: Path, *, title: str | None = None, dpi: int = 110) -> int:
    """Draw the curve as a PNG at ``path`` (written atomically): (a) task score against language-SFT
    steps, one colour per target, line style per system, error bars = std over seeds; (b) held-out
    masked-LM loss against steps per language, after phase 2 and phase 1, the base model as a thin
    horizontal line. Returns the bytes written."""
    import io

    from deftx.errors import UsageError
    from deftx.records.files import atomic_write_bytes

    try:
        import matplotlib
    except ImportError:
        raise UsageError("plotting needs matplotlib, which is not installed",
                         hint="pip install 'deftx[plot]'") from None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    languages = curve.targets() + sorted({r.language for r in curve.rows if r.role != TARGET})
    colours = {lang: plt.get_cmap("tab10")(i % 10) for i, lang in enumerate(languages)}
    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 5), dpi=dpi)
    try:
        for language in curve.targets():
            rows = [r for r in curve.target_rows() if r.language == language]
            for system, (style, marker, _) in SYSTEM_STYLES.items():
                points = [(r.steps, r.cells[system]) for r in rows if system in r.cells]
                if not points:
                    continue
                xs = [s for s, _ in points]
                ys = [c.mean * curve.scale for _, c in points]
                errors = [(c.std or 0.0) * curve.scale for _, c in points]
                left.errorbar(xs, ys, yerr=errors if any(errors) else None, linestyle=style, marker=marker,
                              markersize=4, capsize=3, color=colours[language], linewidth=1.6)
        left.set_xscale("log")
        left.set_xlabel("language-SFT steps per phase (log)")
        unit = " ×100" if curve.scale == 100.0 else ""
        left.set_ylabel(f"{curve.key.metric}{unit} on {curve.key.split}")
        left.set_title(f"(a) {curve.key.task} {curve.key.metric} vs language-SFT budget", fontsize=11)
        handles = [Line2D([], [], color=colours[lang], marker="o", label=lang) for lang in curve.targets()]
        handles += [Line2D([], [], color="black", linestyle=style, marker=marker, label=label)
                    for style, marker, label in SYSTEM_STYLES.values()]
        left.legend(handles=handles, fontsize=8, loc="best")
        left.grid(True, which="both", alpha=0.3)

        drawn = []
        for language in languages:
            rows = sorted((r for r in curve.rows if r.language == language and r.lm), key=lambda r: r.steps)
            if not rows:
                continue
            drawn.append(language)
            for stage, (style, _) in STAGE_STYLES.items():
                points = [(r.steps, r.lm[stage].loss) for r in rows if stage in r.lm and r.lm[stage].loss is not None]
                if points:
                    right.plot([s for s, _ in points], [v for _, v in points], linestyle=style, marker="o",
                               markersize=4, color=colours[language], linewidth=1.6)
            base = [r.lm["base"].loss for r in rows if "base" in r.lm and r.lm["base"].loss is not None]
            if base:
                right.axhline(fmean(base), color=colours[language], linewidth=0.8, alpha=0.7)
        right.set_xscale("log")
        right.set_xlabel("language-SFT steps per phase (log)")
        right.set_ylabel("held-out masked-LM loss")
        right.set_title("(b) masked-LM loss of the language SFTs (LT-SFT)", fontsize=11)
        handles = [Line2D([], [], color=colours[lang], marker="o", label=lang) for lang in drawn]
        handles += [Line2D([], [], color="black", linestyle=style, label=label) for style, label in STAGE_STYLES.values()]
        handles.append(Line2D([], [], color="black", linewidth=0.8, label="base model"))
        right.legend(handles=handles, fontsize=8, loc="best")
        right.grid(True, which="both", alpha=0.3)
        if not drawn:
            right.text(0.5, 0.5, "no language-SFT runs found", ha="center", va="center", transform=right.transAxes)
        steps = sorted({r.steps for r in curve.rows})
        for axes in (left, right):
            axes.set_xticks(steps, [f"{s:,}" for s in steps])
            axes.minorticks_off()
            if len(steps) == 1:
                axes.set_xlim(steps[0] / 2, steps[0] * 2)
        if title:
            figure.suptitle(title, fontsize=12)
        figure.tight_layout()
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=dpi)
    finally:
        plt.close(figure)
    data = buffer.getvalue()
    atomic_write_bytes(Path(path), data)
    return len(data)
