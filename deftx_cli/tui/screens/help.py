"""The help overlay: what each view shows and its keys."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

KEYS = (
    ("Everywhere", "?", "this help (esc closes it)"),
    ("", "q", "quit"),
    ("Runs", "↑ ↓ PgUp PgDn", "move between runs"),
    ("", "enter", "open the live view of the run"),
    ("", "c", "compare evaluation results"),
    ("", "r", "read the runs directory now"),
    ("Live", "d", "denoise ranks by type / layer / matrix"),
    ("", "esc", "back to the runs"),
    ("Compare", "t", "next table (task · base model · split)"),
    ("", "e", "export CSV + Markdown to the runs dir"),
    ("", "r", "reload results"),
    ("", "esc", "back to the runs"),
)

ABOUT = (
    "Runs refresh by themselves; the live view follows metrics.jsonl as training writes it "
    "(complete lines only). Compare: mean±std over seeds (n), Δ = DeFT-X − LT-SFT, "
    "* = the better of the two."
)


def help_table() -> Table:
    table = Table(box=None, show_header=False, padding=(0, 1), expand=False)
    table.add_column(style="bold", no_wrap=True)
    table.add_column(style="bold cyan", no_wrap=True)
    table.add_column()
    for view, key, what in KEYS:
        table.add_row(view, key, what)
    return table


class HelpScreen(ModalScreen[None]):
    BINDINGS = [
        Binding("escape", "dismiss", "Close"),
        Binding("question_mark", "dismiss", "Close", show=False),
    ]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-box"):
            yield Static(help_table(), id="help-keys")
            yield Static(Text(ABOUT, style="dim"), id="help-about")
