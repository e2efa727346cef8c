"""Under the comparison table: how much the experiment's SFTs overlap (hidden when none is on disk)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.table import Table
from rich.text import Text
from textual.message import Message
from textual.widgets import Static

from deftx.analysis.comparison import TableKey
from deftx_cli.tui.overlap import ExperimentSfts, OverlapRow, experiment_sfts, overlap_rows


class OverlapComputed(Message):
    """The overlap of one experiment's SFTs was computed (or failed with ``error``)."""

    def __init__(self, signature: Any, sfts: ExperimentSfts | None, rows: list[OverlapRow], error: str | None = None) -> None:
        super().__init__()
        self.signature = signature
        self.sfts = sfts
        self.rows = rows
        self.error = error


class OverlapPanel(Static):
    """``deftx overlap`` for the SFTs behind the current table, computed in a thread worker."""

    def __init__(self, **kwargs) -> None:
        super().__init__("", **kwargs)
        self.display = False
        self.computed = 0  # finished computations (tests wait on it)
        self._signature: Any = None

    def show_for(self, records: list[dict[str, Any]], key: TableKey | None, runs_dir: Path) -> None:
        """Find the SFTs of ``key``'s experiment and (re)compute their overlap when they changed."""
        if key is None:
            self.display = False
            return
        self.run_worker(lambda: self._compute(records, key, runs_dir), thread=True, group="overlap",
                        exclusive=True, exit_on_error=False)

    def _compute(self, records: list[dict[str, Any]], key: TableKey, runs_dir: Path) -> None:
        """Worker thread: reads the SFTs (numpy only) and posts the report."""
        sfts = experiment_sfts(records, key, runs_dir)
        signature = (key, sfts.signature() if sfts else None)
        if signature == self._signature:
            self.post_message(OverlapComputed(signature, sfts, [], error="unchanged"))
            return
        try:
            rows = overlap_rows(sfts) if sfts else []
        except Exception as exc:  # an unreadable SFT: say so, keep the dashboard going
            self.post_message(OverlapComputed(signature, sfts, [], error=f"{type(exc).__name__}: {exc}"))
        else:
            self.post_message(OverlapComputed(signature, sfts, rows))

    def on_overlap_computed(self, message: OverlapComputed) -> None:
        self.computed += 1
        if message.error == "unchanged":
            return
        self._signature = message.signature
        if message.sfts is None:
            self.display = False
            return
        self.display = True
        if message.error:
            self.update(Text(f"SFT overlap: could not read the SFTs ({message.error})", style="yellow"))
            return
        seed = f", seed {message.sfts.seed}" if message.sfts.seed is not None else ""
        table = Table(box=None, pad_edge=False, show_edge=False, header_style="dim", padding=(0, 1),
                      title=f"SFT overlap ({message.sfts.language}{seed})", title_justify="left", title_style="bold")
        table.add_column("pair", no_wrap=True)
        for column in ("shared", "× chance", "Jaccard", "signs ≠", "norm share"):
            table.add_column(column, justify="right", no_wrap=True)
        for row in message.rows:
            t = row.total
            disagree = "–" if t["sign_disagreement"] is None else f"{100 * t['sign_disagreement']:.1f}%"
            chance = "–" if t.get("over_chance") is None else f"{t['over_chance']:.1f}"
            table.add_row(row.label, f"{t['shared']:,}", chance, f"{t['jaccard']:.3f}", disagree,
                          f"{100 * t['norm_share']:.1f}%")
        self.update(table)
