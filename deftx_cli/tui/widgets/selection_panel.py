"""The selection step of a run: K, density, and for DeFT-X the denoising summary."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import DataTable, Static

from deftx.analysis.denoise_summary import overall, parse_denoise, selection_kept, summarize
from deftx.methods import METHODS, get_method
from deftx.records.schema import MaskSelected

from deftx_cli.tui.format import DASH, format_count, format_number, format_percent, method_label

GROUPING_HEADERS = {"type": "Type", "layer": "Layer", "matrix": "Matrix"}


def selection_text(selection: MaskSelected | None) -> Text:
    if selection is None:
        return Text("Selection: not yet (it follows phase 1)", style="dim")
    k, maskable, density = selection.k, selection.maskable, selection.density
    if density is None and maskable:
        density = k / maskable
    method = get_method(selection.method) if selection.method in METHODS else None
    text = Text()
    text.append(f"Selection ({method_label(selection.method)})\n", style="bold")
    text.append(f"K {format_count(k)} of {format_count(maskable)}\n")
    text.append(f"density {format_percent(density)}")
    if (method is not None and method.own_settings) or selection.rank_rule:  # a method with settings of its own
        tail = selection.tail_keep
        text.append(f"\nrank rule {selection.rank_rule or DASH} · tail {format_number(tail) if tail is not None else DASH}")
    kept = selection_kept(selection)
    if kept is not None:
        text.append(f"\nmedian rank {kept.rank_median:g}")
        if kept.energy_median is not None:
            text.append(f" · energy kept {kept.energy_median:.3f}")
        if kept.tail_kept:
            text.append(f" · tail {format_count(kept.tail_kept)} entries")
    if selection.overlap_with_magnitude is not None:
        text.append(f"\noverlap with |Δ| top-K {format_percent(selection.overlap_with_magnitude, 1)}")
    return text


class SelectionPanel(Vertical):
    """K and density; the rank chosen and energy kept per matrix type, layer or matrix."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._selection: MaskSelected | None = None
        self._grouping = "type"

    def compose(self) -> ComposeResult:
        yield Static(selection_text(None), id="selection-summary")
        table: DataTable = DataTable(id="denoise-table", show_cursor=False, zebra_stripes=True)
        table.display = False
        yield table

    def show(self, selection: MaskSelected | None, grouping: str | None = None) -> None:
        if selection is not None:
            self._selection = selection
        if grouping is not None:
            self._grouping = grouping
        self.query_one("#selection-summary", Static).update(selection_text(self._selection))
        matrices = parse_denoise(self._selection.denoise) if self._selection else []
        table = self.query_one("#denoise-table", DataTable)
        table.display = bool(matrices)
        if not matrices:
            return
        table.clear(columns=True)
        per_matrix = self._grouping == "matrix"  # one matrix per row: no count column
        table.add_column(GROUPING_HEADERS[self._grouping], key="group")
        if not per_matrix:
            table.add_column(Text("n", justify="right"), key="n")
        table.add_column(Text("rank", justify="right"), key="rank")
        table.add_column(Text("kept", justify="right"), key="energy")
        rows = summarize(matrices, self._grouping)
        total = overall(matrices)
        if total is not None and len(rows) > 1:
            rows.append(total)
        for group in rows:
            rank = f"{group.rank_mean:.0f}"
            if group.rank_min != group.rank_max:
                rank += f" {group.rank_min}–{group.rank_max}"
            energy = f"{group.energy_mean:.3f}" if group.energy_mean is not None else DASH
            style = "bold" if group.label == "all" else ""
            cells = [Text(group.label, style=style)]
            if not per_matrix:
                cells.append(Text(str(group.matrices), justify="right", style=style))
            cells += [Text(rank, justify="right", style=style), Text(energy, justify="right", style=style)]
            table.add_row(*cells)
