"""The ``deftx tui`` application: a thin App that holds the runs directory and opens the runs view.

Views live in ``screens/``, their parts in ``widgets/``, the look in ``deftx.tcss``. Files are read
only by worker threads (``watch.py``) that post messages; widgets change only in message handlers.
No torch, no transformers: the dashboard opens in a fraction of a second.
"""

from __future__ import annotations

import time
from pathlib import Path

from textual.app import App
from textual.binding import Binding
from textual.screen import Screen

from deftx_cli.tui.progress import Clock
from deftx_cli.tui.screens.help import HelpScreen
from deftx_cli.tui.screens.runs import RunsScreen


class DeftxDashboard(App[None]):
    """Runs, the live view of a run, and the LT-SFT vs DeFT-X comparison, read from ``runs_dir``.

    ``poll_interval`` is how often (seconds) the runs directory and a followed run are re-read;
    ``clock`` gives the current time for elapsed/ETA (tests pass a constant).
    """

    CSS_PATH = "deftx.tcss"
    TITLE = "deftx"
    ENABLE_COMMAND_PALETTE = False
    BINDINGS = [
        Binding("q", "quit", "Quit"),
        Binding("question_mark", "help", "Help", key_display="?"),
    ]

    def __init__(self, runs_dir: Path, poll_interval: float = 0.5, *, clock: Clock = time.time) -> None:
        super().__init__()
        self.runs_dir = Path(runs_dir)
        self.poll_interval = poll_interval
        self.clock = clock

    def get_default_screen(self) -> Screen:
        return RunsScreen()

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())


def run_dashboard(runs_dir: Path) -> None:
    """Open the dashboard on ``runs_dir`` and return when the user quits."""
    DeftxDashboard(Path(runs_dir)).run()
