"""``deftx results``: the dashboard's comparison tables, printed (Markdown, CSV or JSON)."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from deftx_cli.options import split_list
from deftx_cli.output import handle_errors, note


class TableFormat(str, Enum):
    markdown = "markdown"
    csv = "csv"
    json = "json"


@handle_errors
def results(
    runs_dir: Annotated[Path, typer.Option("--runs-dir", envvar="DEFTX_RUNS_DIR", file_okay=False, help="The runs directory to read.")] = Path("runs"),
    fmt: Annotated[TableFormat, typer.Option("--format", "-f", help="markdown (one table per task, split, metric and preset), csv or json.")] = TableFormat.markdown,
    task: Annotated[Optional[str], typer.Option("--task", "-t", help="Only tables of this task (e.g. nusax-senti).")] = None,
    split: Annotated[Optional[str], typer.Option("--split", help="Only tables of this evaluation split (valid, test).")] = None,
    languages: Annotated[Optional[list[str]], typer.Option("--languages", "-l", metavar="<str>", help="Only these languages, comma-separated or repeated; the average row is then over them (e.g. the paper's five).")] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", dir_okay=False, help="Write to this file (atomically) instead of stdout.")] = None,
) -> None:
    """Print the LT-SFT vs DeFT-X comparison: languages x systems, mean ± std over seeds.

    The dashboard's compare view, from every results.json under the runs directory.
    Results made with other settings (rank rule, tail, K) get columns of their own.

    Example:

        deftx results --runs-dir runs/nusax --split valid
        deftx results --runs-dir runs/nusax --languages ace,ban,bjn,mad,min
    """
    from deftx.errors import InputNotFoundError
    from deftx.runs import atomic_write_bytes, read_results

    from deftx_cli.tui.compare import build_pivots, tables_to_csv, to_json, to_markdown

    if not runs_dir.is_dir():
        raise InputNotFoundError(f"no runs directory {runs_dir}", "pass --runs-dir (where 'deftx transfer' wrote its runs)")
    records = read_results(runs_dir)
    wanted_languages = split_list(languages)
    if wanted_languages:
        records = [r for r in records if r.get("language") in wanted_languages]
    pivots, skipped = build_pivots(records)
    if task is not None:
        pivots = [p for p in pivots if p.key.task == task]
    if split is not None:
        pivots = [p for p in pivots if p.key.split == split]
    if not pivots:
        wanted = ", ".join(f"{name} {value}" for name, value in (
            ("task", task), ("split", split), ("languages", ",".join(wanted_languages))) if value)
        raise InputNotFoundError(
            f"no evaluation results{' for ' + wanted if wanted else ''} under {runs_dir}",
            "results come from 'deftx evaluate' and 'deftx transfer'",
        )
    for reason in skipped:
        note(f"skipped {reason}")

    if fmt is TableFormat.json:
        text = to_json(pivots)
    elif fmt is TableFormat.csv:
        text = tables_to_csv(pivots)
    else:
        text = "\n".join(to_markdown(p) for p in pivots)
    if output is None:
        typer.echo(text, nl=False)
    else:
        atomic_write_bytes(output, text.encode())
        note(f"wrote {len(pivots)} table(s) to {output}")
