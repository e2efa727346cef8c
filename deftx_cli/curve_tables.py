"""The learning curve (``deftx results --curve``) and the paired table (``--paired``) as Markdown, CSV
and JSON. The numbers come from :mod:`deftx.analysis.curve` and :mod:`deftx.analysis.paired`."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from deftx.analysis.curve import CURVE_SYSTEMS, LM_STAGES, OTHER_LANG_SFT, TARGET, Curve, CurveRow, first_helpful_text
from deftx.analysis.paired import Comparison, PairedTable
from deftx.analysis.comparison import DELTA_LABEL, TableKey
from deftx.methods.configs import NO_LANG_SFT, system_label
from deftx.analysis.stats import PairedDifference

from deftx_cli.tables import format_cell, format_value
from deftx_cli.text import DASH, model_label

STAGE_LABELS = {"base": "base", "phase1": "p1", "phase2": "p2"}


def heading(kind: str, key: TableKey) -> str:
    preset = f" · preset {key.preset}" if key.preset else ""
    return f"### {kind} · {key.task} · {model_label(key.base_model)} · {key.split}{preset}"


def table_start(kind: str, key: TableKey, scale: float, legend: str, headers: list[str],
                text_columns: int = 1) -> list[str]:
    """The lines of a Markdown table before its rows: title, what the numbers are (the metric, then
    ``legend``), the header and alignment lines (the first ``text_columns`` left, numbers right)."""
    unit = " ×100" if scale == 100.0 else ""
    return [heading(kind, key), "", f"{key.metric}{unit}: {legend}", "", "| " + " | ".join(headers) + " |",
            "|" + "---|" * text_columns + "---:|" * (len(headers) - text_columns)]


def signed(value: float, scale: float) -> str:
    text = format_value(abs(value), scale)
    if float(text) == 0:
        return text
    return ("+" if value > 0 else "−") + text


def format_interval(interval: PairedDifference | None, scale: float) -> str:
    return "" if interval is None else f" [{signed(interval.low, scale)}, {signed(interval.high, scale)}]"


def format_comparison(comparison: Comparison | None, scale: float) -> str:
    """``+2.1 [−0.4, +4.5] (2)``: Delta, its 95% interval, paired seeds; no interval without predictions."""
    if comparison is None:
        return DASH
    return f"{signed(comparison.delta, scale)}{format_interval(comparison.interval, scale)} ({len(comparison.seeds)})"


def _systems(curve: Curve) -> list[str]:
    present = {s for r in curve.rows for s in r.cells}
    return [s for s in CURVE_SYSTEMS if s in present or s in (CURVE_SYSTEMS[0], NO_LANG_SFT)]


def _lm(row: CurveRow, stage: str, what: str) -> str:
    score = row.lm.get(stage)
    value = getattr(score, what) if score is not None else None
    if value is None:
        return DASH
    return f"{value:.2f}" if what == "loss" else f"{100 * value:.1f}"


def curve_to_markdown(curve: Curve) -> str:
    systems = _systems(curve)
    has_control = any(r.own_minus_control is not None for r in curve.rows) or OTHER_LANG_SFT in systems
    headers = ["Language", "Role", "Steps", *(system_label(s) for s in systems), f"{DELTA_LABEL} own − none"]
    if has_control:
        headers.append(f"{DELTA_LABEL} own − control")
    headers += [f"MLM loss {STAGE_LABELS[s]}" for s in LM_STAGES] + [f"MLM acc % {STAGE_LABELS[s]}" for s in LM_STAGES]
    lines = table_start(
        "Learning curve", curve.key, curve.scale,
        f"mean±std over seeds (n) · {DELTA_LABEL}: mean over the seeds both systems have, "
        f"[95% paired bootstrap interval over sentences] (seeds) · own = the target's LT-SFT language SFT · "
        f"Steps: masked-LM steps per language-SFT phase · MLM: held-out masked-LM loss and accuracy of the LT-SFT "
        f"language SFTs (mean over their seeds): base model, after phase 1 (p1), after phase 2 (p2).",
        headers, 2)
    for row in curve.rows:
        cells = [row.language, row.role, f"{row.steps:,}"]
        if row.role == TARGET:
            cells += [format_cell(row.cells.get(s), curve.scale) for s in systems]
            cells.append(format_comparison(row.own_minus_none, curve.scale))
            if has_control:
                cells.append(format_comparison(row.own_minus_control, curve.scale))
        else:
            cells += [DASH] * (len(systems) + 1 + has_control)
        cells += [_lm(row, s, "loss") for s in LM_STAGES] + [_lm(row, s, "accuracy") for s in LM_STAGES]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines += [f"- {first_helpful_text(curve, language)}" for language in curve.targets()]
    used = {t: c for t, c in curve.control_languages.items() if c}
    if used:
        lines.append("- control: " + "; ".join(f"{t} with the SFT of {', '.join(c)}" for t, c in used.items()))
    for note in curve.notes:
        lines += ["", f"Note: {note}."]
    return "\n".join(lines) + "\n"


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:.6g}"


def _comparison_fields(comparison: Comparison | None) -> list[str]:
    if comparison is None:
        return ["", "", "", ""]
    interval = comparison.interval
    return [_number(comparison.delta), _number(interval.low if interval else None),
            _number(interval.high if interval else None), str(len(comparison.seeds))]


def curves_to_csv(curves: list[Curve]) -> str:
    """One line per curve row; raw values (not scaled)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    header = ["task", "base_model", "split", "metric", "preset", "language", "role", "lang_steps"]
    for system in CURVE_SYSTEMS:
        header += [f"{system}_mean", f"{system}_std", f"{system}_n"]
    for name in ("own_minus_none", "own_minus_control"):
        header += [name, f"{name}_low", f"{name}_high", f"{name}_seeds"]
    for stage in LM_STAGES:
        header += [f"mlm_loss_{stage}", f"mlm_accuracy_{stage}"]
    header.append("lm_runs")
    writer.writerow(header)
    for curve in curves:
        key = curve.key
        for row in curve.rows:
            line = [key.task, key.base_model, key.split, key.metric, key.preset, row.language, row.role, str(row.steps)]
            for system in CURVE_SYSTEMS:
                cell = row.cells.get(system)
                line += [_number(cell.mean), _number(cell.std), str(cell.n)] if cell else ["", "", ""]
            line += _comparison_fields(row.own_minus_none) + _comparison_fields(row.own_minus_control)
            for stage in LM_STAGES:
                score = row.lm.get(stage)
                line += [_number(score.loss), _number(score.accuracy)] if score else ["", ""]
            line.append(str(row.lm_runs))
            writer.writerow(line)
    return out.getvalue()


def _interval_document(interval: PairedDifference | None) -> dict[str, Any] | None:
    if interval is None:
        return None
    return {"delta": interval.delta, "low": interval.low, "high": interval.high, "seeds": interval.seeds,
            "items": interval.items, "resamples": interval.resamples, "languages": interval.languages}


def _comparison_document(comparison: Comparison | None) -> dict[str, Any] | None:
    if comparison is None:
        return None
    return {"delta": comparison.delta, "seeds": list(comparison.seeds), "differences": list(comparison.differences),
            "interval_95": _interval_document(comparison.interval), "no_interval_because": comparison.why_no_interval}


def _key_document(key: TableKey) -> dict[str, Any]:
    return {"task": key.task, "base_model": key.base_model, "split": key.split, "metric": key.metric,
            "preset": key.preset or None}


def curves_to_json(curves: list[Curve]) -> str:
    """Raw values (not scaled); ``first_helpful_steps``: per target, the smallest budget where the
    interval of own − none lies above 0 (null: none of the budgets measured)."""
    document = []
    for curve in curves:
        rows = []
        for row in curve.rows:
            rows.append({
                "language": row.language, "role": row.role, "lang_steps": row.steps,
                "cells": {s: ({"mean": c.mean, "std": c.std, "n": c.n} if (c := row.cells.get(s)) else None)
                          for s in CURVE_SYSTEMS},
                "own_minus_none": _comparison_document(row.own_minus_none),
                "own_minus_control": _comparison_document(row.own_minus_control),
                "mlm": {stage: {"loss": score.loss, "accuracy": score.accuracy, "n": score.n}
                        for stage, score in row.lm.items()},
                "lm_runs": row.lm_runs,
            })
        document.append({**_key_document(curve.key), "results": curve.results, "rows": rows,
                         "first_helpful_steps": curve.first_helpful, "control_languages": curve.control_languages,
                         "notes": curve.notes})
    return json.dumps(document, indent=2) + "\n"


# ----------------------------------------------------------------------------------------------
# the paired table


def pair_label(a: str, b: str, labels: dict[str, str] | None = None) -> str:
    labels = labels or {}
    return f"{labels.get(a) or system_label(a)} − {labels.get(b) or system_label(b)}"


def format_pooled(interval: PairedDifference | None, mean_delta: float | None, scale: float) -> str:
    if interval is not None:
        return f"{signed(interval.delta, scale)}{format_interval(interval, scale)} ({interval.languages})"
    return DASH if mean_delta is None else f"{signed(mean_delta, scale)}"


def paired_to_markdown(table: PairedTable) -> str:
    languages = sorted({language for pair in table.pairs for language, _ in pair.rows})
    lines = table_start(
        "Paired differences", table.key, table.scale,
        f"{DELTA_LABEL} = A − B, mean over the seeds both have, [95% paired bootstrap interval over sentences] "
        f"(seeds) · all languages: mean of the languages' {DELTA_LABEL}, pooled bootstrap (languages) · sign test "
        f"over (language, seed) cells: wins/losses/ties, exact two-sided p.",
        ["Pair", *languages, "All languages", "Sign test"])
    for pair in table.pairs:
        by_language = dict(pair.rows)
        cells = [format_comparison(by_language.get(language), table.scale) for language in languages]
        sign = pair.sign
        sign_text = f"{sign.wins}/{sign.losses}/{sign.ties}, p={sign.p:.3g}" if sign else DASH
        lines.append(f"| {pair_label(pair.a, pair.b, table.labels)} | " + " | ".join(cells)
                     + f" | {format_pooled(pair.pooled, pair.mean_delta, table.scale)} | {sign_text} |")
    for note in table.notes:
        lines += ["", f"Note: {note}."]
    return "\n".join(lines) + "\n"


def paired_to_csv(tables: list[PairedTable]) -> str:
    """One line per (pair, language) and one per pair over all languages (``language`` = ``all``)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["task", "base_model", "split", "metric", "preset", "a", "b", "language", "delta", "low", "high",
                     "seeds", "wins", "losses", "ties", "sign_p"])
    for table in tables:
        key = [table.key.task, table.key.base_model, table.key.split, table.key.metric, table.key.preset]
        for pair in table.pairs:
            for language, comparison in pair.rows:
                writer.writerow([*key, pair.a, pair.b, language, *_comparison_fields(comparison), "", "", "", ""])
            pooled, sign = pair.pooled, pair.sign
            writer.writerow([*key, pair.a, pair.b, "all", _number(pooled.delta if pooled else pair.mean_delta),
                             _number(pooled.low if pooled else None), _number(pooled.high if pooled else None),
                             str(sum(len(c.seeds) for _, c in pair.rows)),
                             *([str(sign.wins), str(sign.losses), str(sign.ties), _number(sign.p)] if sign else [""] * 4)])
    return out.getvalue()


def paired_to_json(tables: list[PairedTable]) -> str:
    document = []
    for table in tables:
        pairs = []
        for pair in table.pairs:
            sign = pair.sign
            pairs.append({
                "a": pair.a, "b": pair.b, "label": pair_label(pair.a, pair.b, table.labels),
                "languages": {language: _comparison_document(c) for language, c in pair.rows},
                "all_languages": {"mean_delta": pair.mean_delta, "interval_95": _interval_document(pair.pooled)},
                "sign_test": None if sign is None else {"wins": sign.wins, "losses": sign.losses, "ties": sign.ties,
                                                        "p": sign.p},
            })
        document.append({**_key_document(table.key), "pairs": pairs, "notes": table.notes})
    return json.dumps(document, indent=2) + "\n"
