"""``deftx denoise``: DeFT-X scores and mask from a saved phase-1 difference, without retraining."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from deftx.methods import SPARSE_METHODS

from deftx_cli.options import JsonOpt, a_file, existing_path
from deftx_cli.output import handle_errors, note, print_json, stdout


class Svd(str, Enum):
    auto = "auto"
    full = "full"


SelectMethod = Enum("SelectMethod", {name.replace("-", "_"): name for name in SPARSE_METHODS}, type=str)


@handle_errors
def denoise(
    diff: Annotated[Path, typer.Option("--diff", "-d", callback=existing_path, help="A phase1_diff.safetensors (from --keep-phase1-diff), or the run directory holding it.")],
    k: Annotated[str, typer.Option("--k", "-k", help="Entries kept: a count, a fraction (0.05) or a percentage (2.5%).")],
    rank_rule: Annotated[str, typer.Option("--rank-rule", help="energy:F or rank:R.")] = "energy:0.9",
    tail_keep: Annotated[float, typer.Option("--tail-keep", min=0.0, max=1.0, help="Fraction of the SVD residual kept.")] = 0.0,
    method: Annotated[SelectMethod, typer.Option("--method", help="deftx (denoised scores) or lt-sft (plain magnitude).")] = SelectMethod.deftx,
    include: Annotated[Optional[list[str]], typer.Option("--include", metavar="<str>", help="Denoise only matrices whose name matches (glob; repeatable).")] = None,
    exclude: Annotated[Optional[list[str]], typer.Option("--exclude", metavar="<str>", help="Do not denoise matrices whose name matches (glob; repeatable).")] = None,
    svd: Annotated[Svd, typer.Option("--svd", help="auto (the exact spectrum from the Gram matrix for large matrices) or full (dense SVD everywhere); both truncate exactly.")] = Svd.auto,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", callback=a_file, help="Write the mask here (a .safetensors file) for 'train-lang/train-task --mask'.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Compute DeFT-X scores and the top-K mask from a saved phase-1 difference.

    Prints, per matrix, the rank chosen and the energy kept, and how much the DeFT-X mask overlaps
    the plain magnitude (LT-SFT) mask. The mask written with --out lets the training commands run
    phase 2 only.

    Example:

        deftx denoise --diff runs/<run> --k 0.03 --rank-rule energy:0.8
        deftx denoise --diff runs/<run> --k 0.03 --out mask.safetensors
    """
    from deftx.methods import get_method
    from deftx.sft.diff import load_difference, save_mask

    config = get_method(method.value).from_config({
        "rank_rule": rank_rule, "tail_keep": tail_keep, "denoise_include": include or ["*"],
        "denoise_exclude": exclude or [], "svd": svd.value})
    path = diff / "phase1_diff.safetensors" if diff.is_dir() else diff
    differences, meta = load_difference(path)
    note(f"loaded {len(differences)} parameters from {path}")
    selection = config.select(differences, k, in_place=True)
    settings = selection.settings
    result = {
        "diff": str(path),
        "method": config.name,
        "k": selection.k,
        "maskable": selection.maskable,
        "density": selection.k / selection.maskable,
        "rank_rule": settings.get("rank_rule"),
        "tail_keep": settings.get("tail_keep"),
        "overlap_with_magnitude": selection.overlap_with_magnitude,
        "matrices": [info.to_json() for info in selection.denoise or []],
        "mask": str(out) if out else None,
    }
    if out is not None:
        save_mask(out, selection.masks, {
            **selection.event(),
            "base_fingerprint": meta.get("base_fingerprint"), "base_model": meta.get("base_model"),
            "source_diff": str(path),
        })
    if as_json:
        print_json(result)
        return
    if selection.denoise:
        from rich.table import Table

        from deftx.analysis.denoise_summary import layer_order, parse_denoise

        svd_of = {info.name: info.svd for info in selection.denoise}
        table = Table(title=f"DeFT-X denoising ({rank_rule}, tail_keep {tail_keep:g})")
        for column in ("matrix", "shape", "rank", "energy kept", "svd"):
            table.add_column(column, justify="left" if column == "matrix" else "right", no_wrap=True)
        for m in sorted(parse_denoise([info.to_json() for info in selection.denoise]), key=layer_order):
            table.add_row(m.short_name, f"{m.rows}x{m.cols}", str(m.rank),
                          f"{m.energy_kept:.3f}" if m.energy_kept is not None else "-", svd_of.get(m.name, ""))
        stdout.print(table)
        stdout.print("matrix: L<layer> and the type (attn.query = attention.self.query, ffn.in = "
                     "intermediate.dense ...); --json has the full names")
    stdout.print(f"K = {selection.k:,} of {selection.maskable:,} maskable ({result['density']:.3%})")
    if selection.overlap_with_magnitude is not None:
        stdout.print(f"overlap with the magnitude (LT-SFT) mask: {selection.overlap_with_magnitude:.1%} of K")
    if out is not None:
        note(f"mask written to {out}")
