"""``deftx info`` (an SFT's manifest and statistics) and ``deftx datasets`` (what data is there)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from deftx_cli.options import DataDirOpt, JsonOpt, RevisionOpt
from deftx_cli.output import handle_errors, print_json, stdout, warn


@handle_errors
def info(
    sft: Annotated[str, typer.Argument(metavar="<dir>", help="An SFT directory or a hub id (owner/name).", show_default=False)],
    verify: Annotated[bool, typer.Option("--verify/--no-verify", metavar="", help="Check the files' checksums.")] = True,
    revision: RevisionOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show an SFT: kind, method, language, K and density, base model, final metrics, and its entries
    per parameter type.

    Example:

        deftx info runs/<run>/sft
    """
    from deftx.sft.sources import resolve_sft_source

    folder = resolve_sft_source(sft, revision)  # before torch is imported: a hub failure is immediate
    from deftx.metrics import collapse_warning, phase2_drop_warning
    from deftx.sft.diff import SparseDiff

    diff = SparseDiff.load(folder, verify=verify)
    m = diff.manifest
    stats = diff.stats()
    if as_json:
        print_json({"manifest": {k: v for k, v in m.items() if k != "shapes"}, "stats": stats})
        return
    rows = [
        ("kind", m.get("kind")), ("method", m.get("method")), ("language", m.get("language")),
        ("task", m.get("task")), ("labels", ", ".join(m.get("labels") or []) or None),
        ("base model", m.get("base_model")), ("base fingerprint", m.get("base_fingerprint")),
        ("entries", f"{stats['entries']:,}"), ("maskable", f"{m.get('maskable', 0):,}"),
        ("head parameters", f"{stats['head_parameters']:,}"),
        ("rank rule", (m.get("selection") or {}).get("rank_rule")),
        ("denoised", _denoised_text(m.get("selection"))),
        ("layer norm", _layer_norm_text(diff)),
        ("imported from", _imported_text(m.get("imported_from"))),
        ("trained with", ", ".join(str(t.get("path")) for t in m.get("trained_with") or []) or None),
        ("deftx version", m.get("library_version")), ("created", m.get("created_at")),
    ]
    maskable = m.get("maskable")
    if maskable:
        rows.insert(9, ("density", f"{stats['entries'] / maskable:.3%} of the maskable parameters"))
    final = (m.get("metrics") or {}).get("final_eval")
    if isinstance(final, dict):
        shown = ", ".join(f"{k} {v:.4f}" for k, v in final.items() if isinstance(v, float))
        rows.append(("final metrics", f"{shown} (validation after training)" if shown else None))
    run = _training_run(folder.parent)
    rows.append(("training run", _run_text(run)))
    summary = run.record.summary.model_dump() if run is not None and run.record is not None else None
    rows += _phase_rows(summary)
    for key, value in rows:
        if value not in (None, ""):
            stdout.print(f"{key:>17}: {value}", markup=False)
    warn(collapse_warning(final, "validation after training"))
    warn(phase2_drop_warning(summary, "this SFT"))
    if stats["per_parameter"]:
        stdout.print(_per_type_table(stats["per_parameter"]))


def _denoised_text(selection: dict | None) -> str | None:
    """What DeFT-X's denoising kept, from the SFT's ``selection`` record; ``None`` for a selection
    without denoising."""
    from deftx.analysis.denoise_summary import selection_kept

    kept = selection_kept(selection)
    return kept.text() if kept is not None else None


def _training_run(run_dir: Path):
    """The run that trained an SFT kept in its run directory (its ``run.json`` read), or ``None``."""
    from deftx.records.files import RUN_JSON
    from deftx.records.reading import read_run

    return read_run(run_dir) if (run_dir / RUN_JSON).is_file() else None


def _run_text(run) -> str | None:
    """The run that trained an SFT: ``<run id> (finished, 12m05s)``, with the autocast precision it
    trained in when not float32 (``, bf16 autocast``)."""
    from deftx.records.files import format_duration, parse_iso

    if run is None:
        return None
    if run.record is None:
        return f"{run.path.name} (run.json unreadable: {run.error})"
    record = run.record
    start, end = parse_iso(record.started_at), parse_iso(record.ended_at)
    took = f", {format_duration(end - start)}" if start is not None and end is not None else ""
    resumed = f", resumed {len(record.resumptions)}x" if record.resumptions else ""
    precision = record.summary.mixed_precision if record.summary is not None else None
    autocast = f", {precision} autocast" if precision not in (None, "no") else ""
    return f"{run.run_id} ({record.status}{took}{resumed}{autocast})"


def _phase_rows(summary: dict | None) -> list[tuple[str, str | None]]:
    """A task SFT's validation after each phase (macro-F1, the share of each class predicted) and,
    trained on several sources, after phase 2 per source."""
    rows: list[tuple[str, str | None]] = []
    for phase, name in (("phase1", "after phase 1"), ("phase2", "after phase 2")):
        scores = ((summary or {}).get(phase) or {}).get("eval")
        if not isinstance(scores, dict) or not isinstance(scores.get("macro_f1"), float):
            continue
        shares = scores.get("prediction_shares") or {}
        predicted = ", ".join(f"{label} {100 * share:.1f}%" for label, share in shares.items()
                              if isinstance(share, (int, float)))
        rows.append((name, f"macro_f1 {scores['macro_f1']:.4f}" + (f" (predicted: {predicted})" if predicted else "")))
        by_source = scores.get("macro_f1_by_source")
        if phase == "phase2" and isinstance(by_source, dict) and by_source:
            rows.append(("per source", ", ".join(f"{lang} {value:.4f}" for lang, value in by_source.items())))
    return rows


def _per_type_table(per_parameter: dict[str, dict[str, int]]):
    """Entries per parameter type (summed over layers), in the order the types first appear."""
    from rich.table import Table

    from deftx.analysis.denoise_summary import parameter_type

    groups: dict[str, list[int]] = {}  # type -> [parameters, entries, numel]
    for name, s in per_parameter.items():
        group = groups.setdefault(parameter_type(name), [0, 0, 0])
        group[0] += 1
        group[1] += s["entries"]
        group[2] += s["numel"]
    table = Table(title="entries per parameter type (all layers; --json lists each parameter)")
    for column in ("type", "parameters", "entries", "density"):
        table.add_column(column, justify="left" if column == "type" else "right")
    for kind, (n, entries, numel) in groups.items():
        table.add_row(kind, str(n), f"{entries:,}", f"{entries / numel:.2%}" if numel else "-")
    return table


def _layer_norm_text(diff) -> str | None:
    """LayerNorm entries, which deftx itself never trains sparsely but imported SFTs may hold."""
    from deftx.model import is_layer_norm

    names = [name for name in diff.entries if is_layer_norm(name)]
    if not names:
        return None
    entries = sum(int(diff.entries[name][0].numel()) for name in names)
    return f"{entries:,} entries in {len(names)} LayerNorm parameters (applied with the rest)"


def _imported_text(origin) -> str | None:
    if not isinstance(origin, dict):
        return None
    revision = f"@{origin['revision']}" if origin.get("revision") else ""
    return f"{origin.get('format')}: {origin.get('source')}{revision}"


@handle_errors
def datasets(
    data_dir: DataDirOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List the built-in tasks and, for a local data root, what each language has.

    Example:

        deftx datasets --data-dir ../shared/data
    """
    from deftx.data import TASKS, describe_data, resolve_data_dir

    root = resolve_data_dir(data_dir)
    listing = describe_data(root) if root is not None else []
    if as_json:
        print_json({"tasks": {name: {"labels": list(t.labels), "metric": t.metric, "languages": list(t.languages)}
                              for name, t in TASKS.items()}, "local": listing})
        return
    from rich.table import Table

    table = Table(title="tasks")
    for column in ("task", "metric", "labels", "languages"):
        table.add_column(column)
    for name, t in TASKS.items():
        table.add_row(name, t.metric, "/".join(t.labels), " ".join(t.languages))
    stdout.print(table)
    if root is None:
        stdout.print("no local data root (give --data-dir or set DEFTX_DATA_DIR): data come from the hub")
        return
    labelled = Table(title=f"labelled data in {root}")
    for column in ("task", "language", "splits", "problems"):
        labelled.add_column(column)
    text = Table(title=f"unlabelled text in {root}")
    for column in ("language", "name", "lines", "sources"):
        text.add_column(column, justify="right" if column == "lines" else "left")
    for entry in listing:
        problems = "; ".join(f"{k}: {v}" for k, v in (entry.get("errors") or {}).items())
        if entry.get("kind") == "task":
            splits = " ".join(f"{k} {v}" for k, v in (entry.get("splits") or {}).items())
            labelled.add_row(str(entry.get("task")), str(entry.get("language") or ""), splits, problems)
        else:
            sources = ", ".join(Path(str(src.get("path"))).name for src in entry.get("sources") or [])
            text.add_row(str(entry.get("language")), str(entry.get("language_name") or ""),
                         f"{entry.get('lines') or 0:,}", sources or problems)
    stdout.print(labelled)
    stdout.print(text)
