"""``deftx tui``: the dashboard."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from deftx_cli.options import a_dir
from deftx_cli.output import handle_errors


@handle_errors
def tui(
    runs_dir: Annotated[Path, typer.Option("--runs-dir", envvar="DEFTX_RUNS_DIR", callback=a_dir, help="The runs directory to watch.")] = Path("runs"),
) -> None:
    """Open the dashboard: live training monitor and LT-SFT vs DeFT-X comparison.

    Example (in a second terminal while training runs):

        deftx tui --runs-dir runs
    """
    from deftx.errors import InputNotFoundError

    from deftx_cli.tui.app import run_dashboard

    if not runs_dir.is_dir():  # as deftx results: a path mistyped is not an empty dashboard
        raise InputNotFoundError(f"no runs directory {runs_dir}",
                                 "give the --runs-dir that training writes into (created by its first run)")
    run_dashboard(runs_dir)
