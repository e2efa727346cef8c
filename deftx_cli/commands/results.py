"""``deftx results``: the dashboard's comparison tables, printed (Markdown, CSV or JSON)."""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from deftx_cli.options import a_dir, a_file, split_list
from deftx_cli.output import handle_errors, note


class TableFormat(str, Enum):
    markdown = "markdown"
    csv = "csv"
    json = "json"


@handle_errors
def results(
    runs_dirs: Annotated[Optional[list[Path]], typer.Option("--runs-dir", envvar="DEFTX_RUNS_DIR", metavar="<path>", callback=a_dir, help="A runs directory to read; repeat it to read several together (default: runs).")] = None,
    fmt: Annotated[TableFormat, typer.Option("--format", "-f", help="markdown (one table per task, split, metric and preset), csv or json.")] = TableFormat.markdown,
    task: Annotated[Optional[str], typer.Option("--task", "-t", help="Only tables of this task (e.g. nusax-senti).")] = None,
    split: Annotated[Optional[str], typer.Option("--split", help="Only tables of this evaluation split (valid, test).")] = None,
    languages: Annotated[Optional[list[str]], typer.Option("--languages", "-l", metavar="<str>", help="Only these languages, comma-separated or repeated; the average row is then over them (e.g. the paper's five).")] = None,
    curve: Annotated[bool, typer.Option("--curve", metavar="", help="The learning curve over language-SFT budgets (settings.lang_steps): task scores per budget with and without the language SFT, paired bootstrap intervals, and the language SFTs' masked-LM scores.")] = False,
    paired: Annotated[bool, typer.Option("--paired", metavar="", help="Paired differences (DeFT-X − LT-SFT, LT-SFT − no lang SFT, ...) per language and over all, with 95% bootstrap intervals and a sign test; from results that hold predictions.")] = False,
    plot: Annotated[Optional[Path], typer.Option("--plot", callback=a_file, help="With --curve: also draw the curve as a PNG here (needs matplotlib: pip install 'deftx\\[plot]').")] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", callback=a_file, help="Write to this file (atomically) instead of stdout.")] = None,
    strict: Annotated[bool, typer.Option("--strict", metavar="", help="Fail (exit 4) when a record cannot be read, instead of printing the table marked incomplete.")] = False,
) -> None:
    """Print the LT-SFT vs DeFT-X comparison: languages x systems, mean ± std over seeds.

    The dashboard's compare view, from every results.json under the runs directory.
    Results made with other settings (rank rule, tail, K) get columns of their own.
    --curve: the learning curve over language-SFT budgets; --paired: paired differences.
    A record that cannot be read (truncated, another shape) is named on stderr and
    the table says it is incomplete; --strict fails instead.

    Example:

        deftx results --runs-dir runs/nusax --split valid
        deftx results --runs-dir runs/nusax --languages ace,ban,bjn,mad,min
        deftx results --runs-dir runs/lc --curve --plot curve.png
        deftx results --runs-dir runs/lc --runs-dir runs/lc2 --curve
        deftx results --runs-dir runs/nusax --paired --split test
    """
    from deftx.analysis.comparison import read_records
    from deftx.errors import DataFormatError, InputNotFoundError, UsageError

    if curve and paired:
        raise UsageError("--curve and --paired are two different tables", "ask for one at a time")
    if plot is not None and not curve:
        raise UsageError("--plot draws the learning curve", "add --curve")
    if plot is not None and plot.suffix.lower() != ".png":
        raise UsageError(f"--plot: {plot} does not end in .png", "the plot is a PNG image: name it curve.png")
    runs_dirs = runs_dirs or [Path("runs")]
    for runs_dir in runs_dirs:
        if not runs_dir.is_dir():
            raise InputNotFoundError(f"no runs directory {runs_dir}", "pass --runs-dir (where 'deftx transfer' wrote its runs)")
    where = " and ".join(str(d) for d in runs_dirs)
    wanted_languages = split_list(languages)
    read = read_records(runs_dirs, wanted_languages)
    records, problems = read.records, list(read.problems)
    runs = None
    if curve:  # the masked-LM columns come from the language SFTs' run.json
        from deftx.analysis.curve import read_runs

        runs = read_runs(runs_dirs)
        problems += [f"{info.path / 'run.json'}: {info.error}" for info in runs if not info.readable]
    for problem in problems:
        note(f"cannot read {problem}")
    if problems and strict:
        raise DataFormatError(f"{len(problems)} record(s) under {where} cannot be read (named above)",
                              "remove or repair them, or run without --strict to see the table marked incomplete")
    incomplete = [f"incomplete: {len(problems)} record(s) under {where} could not be read (named on stderr)"] if problems else []
    if curve:
        text, count, tables = _curve(records, runs, task, split, plot, fmt, incomplete)
    elif paired:
        text, count, tables = _paired(records, task, split, fmt, incomplete)
    else:
        text, count, tables = _comparison(records, task, split, fmt, incomplete)
    if not count:
        wanted = ", ".join(f"{name} {value}" for name, value in (
            ("task", task), ("split", split), ("languages", ",".join(wanted_languages))) if value)
        what = ("learning-curve results (records with settings.lang_steps)" if curve
                else "paired results (records with predictions)" if paired else "evaluation results")
        unread = f" ({len(problems)} record(s) could not be read: named above)" if problems else ""
        raise InputNotFoundError(
            f"no {what}{' for ' + wanted if wanted else ''} under {where}{unread}",
            "the curve's records come from 'deftx transfer --lang-steps'" if curve
            else "results come from 'deftx evaluate' and 'deftx transfer'",
        )
    if output is None:
        typer.echo(text, nl=False)
    else:
        from deftx.records.files import atomic_write_bytes

        atomic_write_bytes(output, text.encode())
        note(f"wrote {count} {tables} to {output}")


def _keep(items: list, task: str | None, split: str | None) -> list:
    return [i for i in items if (task is None or i.key.task == task) and (split is None or i.key.split == split)]


def _render(items: list, fmt: TableFormat, markdown: Callable[[Any], str], csv: Callable[[list], str],
            json: Callable[[list], str]) -> str:
    """The tables in the format asked for: Markdown one after the other; CSV and JSON as one document."""
    if fmt is TableFormat.json:
        return json(items)
    if fmt is TableFormat.csv:
        return csv(items)
    return "\n".join(markdown(item) for item in items)


def _skipped(skipped: list[str]) -> None:
    for reason in skipped:
        note(f"skipped {reason}")


def _mark(items: list, incomplete: list[str]) -> list:
    for item in items:
        item.notes[:0] = incomplete
    return items


def _comparison(records: list, task: str | None, split: str | None, fmt: TableFormat,
                incomplete: list[str]) -> tuple[str, int, str]:
    from deftx.analysis.comparison import build_pivots

    from deftx_cli.tables import tables_to_csv, to_json, to_markdown

    pivots, skipped = build_pivots(records)
    pivots = _mark(_keep(pivots, task, split), incomplete)
    if pivots:
        _skipped(skipped)
    return _render(pivots, fmt, to_markdown, tables_to_csv, to_json), len(pivots), "table(s)"


def _curve(records: list, runs: list, task: str | None, split: str | None, plot: Path | None,
           fmt: TableFormat, incomplete: list[str]) -> tuple[str, int, str]:
    from deftx.analysis.curve import build_curves, plot_curve

    from deftx_cli.curve_tables import curve_to_markdown, curves_to_csv, curves_to_json
    from deftx_cli.tables import table_title

    curves, skipped = build_curves(records, runs)
    curves = _mark(_keep(curves, task, split), incomplete)
    if not curves:
        return "", 0, ""
    _skipped(skipped)
    if plot is not None:
        first = curves[0]
        size = plot_curve(first, plot, title=f"Learning curve · {table_title(first.key)}")
        more = f" (the first of {len(curves)} curves: choose with --task / --split)" if len(curves) > 1 else ""
        note(f"wrote the plot of {first.key.task} {first.key.split} to {plot} ({size / 1024:.0f} KB){more}")
    return _render(curves, fmt, curve_to_markdown, curves_to_csv, curves_to_json), len(curves), "curve(s)"


def _paired(records: list, task: str | None, split: str | None, fmt: TableFormat,
            incomplete: list[str]) -> tuple[str, int, str]:
    from deftx.analysis.paired import build_paired_tables

    from deftx_cli.curve_tables import paired_to_csv, paired_to_json, paired_to_markdown

    tables, skipped = build_paired_tables(records)
    tables = _mark(_keep(tables, task, split), incomplete)
    if not tables:
        return "", 0, ""
    _skipped(skipped)
    return _render(tables, fmt, paired_to_markdown, paired_to_csv, paired_to_json), len(tables), "table(s)"
