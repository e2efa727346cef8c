"""``deftx overlap``: how much SFTs step on each other when composed."""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Any

import typer

from deftx_cli.options import JsonOpt, RevisionOpt
from deftx_cli.output import handle_errors, print_json, stdout, warn


class GroupBy(str, Enum):
    type = "type"
    layer = "layer"
    both = "both"
    none = "none"


@handle_errors
def overlap(
    sfts: Annotated[list[str], typer.Argument(metavar="<sft>...", help="Two or more SFT directories or hub ids.", show_default=False)],
    by: Annotated[GroupBy, typer.Option("--by", help="Break each pair down per matrix type, per layer, both, or none.")] = GroupBy.both,
    revision: RevisionOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """How much SFTs overlap when composed: shared positions, sign disagreement, norm share.

    For each pair: the positions both change, how often their signs disagree there, and the share of
    the composed update's squared norm on those positions; in total, per matrix type and per layer.

    Example (a language SFT against a task SFT):

        deftx overlap runs/<ace-run>/sft runs/<task-run>/sft --by type
    """
    from deftx.errors import UsageError
    from deftx.sft.sources import resolve_sft_source
    from deftx.sft.overlap import overlap_report, read_sparse_arrays

    if len(sfts) < 2:
        raise UsageError("give at least two SFTs to compare")
    arrays = [read_sparse_arrays(resolve_sft_source(s, revision), label=s) for s in sfts]
    report = overlap_report(arrays)
    if not report["same_base"]:  # on stderr, so that it reaches a user piping the table or the JSON
        warn("note: these SFTs were trained on different base models (their base-model fingerprints differ)")
    if as_json:
        print_json(report)
        return
    for pair in report["pairs"]:
        _print_pair(pair, by)


def _describe(label: str, info: dict[str, Any]) -> str:
    parts = [str(info[k]) for k in ("kind", "method", "language", "task") if info.get(k)]
    return f"{label} ({', '.join(parts)})" if parts else label


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _times(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}x"


def _print_pair(pair: dict[str, Any], by: GroupBy) -> None:
    total = pair["total"]
    stdout.print(f"\n[bold]A[/bold] {_describe(pair['a'], pair['a_sft'])}")
    stdout.print(f"[bold]B[/bold] {_describe(pair['b'], pair['b_sft'])}")
    stdout.print(
        f"shared positions {total['shared']:,} ({_pct(total['shared_of_a'])} of A's {total['a']:,}, "
        f"{_pct(total['shared_of_b'])} of B's {total['b']:,}; Jaccard {total['jaccard']:.4f}; "
        f"{_times(total['over_chance'])} chance); "
        f"sign disagreement {_pct(total['sign_disagreement'])}; "
        f"share of ||A+B||² on shared positions {_pct(total['norm_share'])}"
    )
    groups = {"type": [("matrix type", pair["by_type"])], "layer": [("layer", pair["by_layer"])],
              "both": [("matrix type", pair["by_type"]), ("layer", pair["by_layer"])], "none": []}[by.value]
    for title, rows in groups:
        width = max([len(title)] + [len(key) for key in rows])
        stdout.print(f"\n{title:<{width}} {'A':>9} {'B':>9} {'shared':>9} {'chance':>6} {'Jaccard':>7} {'signs≠':>7} "
                     f"{'norm':>6}", style="bold")
        for key, row in rows.items():
            stdout.print(f"{key:<{width}} {row['a']:>9,} {row['b']:>9,} {row['shared']:>9,} {_times(row['over_chance']):>6} "
                         f"{row['jaccard']:>7.4f} {_pct(row['sign_disagreement']):>7} {_pct(row['norm_share']):>6}")
