"""``deftx import`` and ``deftx export``: SFTs in composable-sft's format, in and out."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from deftx_cli.options import JsonOpt, ModelOpt, RevisionOpt, a_dir, split_list
from deftx_cli.output import handle_errors, note, print_json


class ExportFormat(str, Enum):
    composable_sft = "composable-sft"


@handle_errors
def import_sft(
    source: Annotated[str, typer.Argument(metavar="<src>", help="A composable-sft SFT: pytorch_diff.bin, a directory holding it, or a hub id.", show_default=False)],
    out: Annotated[Path, typer.Option("--out", "-o", metavar="<dir>", callback=a_dir, help="Directory for the deftx SFT.")],
    model: ModelOpt = "xlm-roberta-base",
    labels: Annotated[Optional[list[str]], typer.Option("--labels", metavar="<names>", help="A task SFT's label names in the classifier's order, comma-separated (default: from the config.json beside the file).")] = None,
    language: Annotated[Optional[str], typer.Option("--language", help="The language of a language SFT (recorded in sft.json).")] = None,
    task: Annotated[Optional[str], typer.Option("--task", help="The task of a task SFT (recorded in sft.json).")] = None,
    revision: RevisionOpt = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", metavar="", help="Replace --out if it exists.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Convert an SFT made with composable-sft (pytorch_diff.bin) into a deftx SFT for BASE.

    Nothing in the file runs: only tensors, sizes and numbers are read. Names and shapes are
    checked against the base model; dense 'abs' tensors become the head; LayerNorm differences are
    kept (deftx info says so).

    Example (a released task SFT, labels from its config.json):

        deftx import cambridgeltl/xlmr-task-sft-nusax_senti -o nusax-task
    """
    from deftx.errors import UsageError
    from deftx.sft.sources import resolve_sft_source

    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise UsageError(f"{out} already exists and is not empty", hint="choose another --out or pass --overwrite")
    given = Path(source).expanduser()
    folder = given if given.is_file() else resolve_sft_source(source, revision, what="composable-sft SFT")
    from deftx.sft.interop import import_composable_sft

    diff = import_composable_sft(
        folder, model, labels=split_list(labels), language=language, task=task,
        origin=source, revision=revision,
    )
    diff.save(out, overwrite=overwrite)
    summary = {"out": str(out), "kind": diff.manifest["kind"], "entries": diff.n_entries,
               "parameters": len(diff.entries), "head": sorted(diff.head), "labels": diff.manifest.get("labels"),
               "layer_norm": diff.manifest["layer_norm"], "base_fingerprint": diff.manifest["base_fingerprint"]}
    if as_json:
        print_json(summary)
        return
    note(f"imported a {summary['kind']} SFT: {summary['entries']:,} entries in {summary['parameters']} parameters, "
         f"{len(summary['head'])} dense head tensors")
    if summary["layer_norm"]["entries"]:
        note(f"it changes LayerNorm: {summary['layer_norm']['entries']:,} entries in "
             f"{summary['layer_norm']['parameters']} parameters (kept and applied)")
    note(f"SFT written to {out}")


@handle_errors
def export_sft(
    sft: Annotated[str, typer.Argument(metavar="<sft>", help="A deftx SFT directory or hub id.", show_default=False)],
    out: Annotated[Path, typer.Option("--out", "-o", metavar="<dir>", callback=a_dir, help="Directory for pytorch_diff.bin.")],
    to: Annotated[ExportFormat, typer.Option("--to", help="The format to write.")] = ExportFormat.composable_sft,
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="Base model whose parameter names to use (default: the one the SFT records).")] = None,
    revision: RevisionOpt = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", metavar="", help="Replace an existing pytorch_diff.bin in --out.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Write a deftx SFT in composable-sft's format (pytorch_diff.bin, plus config.json for labels).

    Example:

        deftx export runs/<run>/sft --to composable-sft -o exported/ace
    """
    from deftx.sft.sources import resolve_sft_source

    folder = resolve_sft_source(sft, revision)
    from deftx.sft.interop import export_composable_sft, export_prefix
    from deftx.sft.diff import SparseDiff

    diff = SparseDiff.load(folder)
    path = export_composable_sft(diff, out, prefix=export_prefix(diff, model), overwrite=overwrite)
    summary = {"out": str(path), "format": to.value, "entries": diff.n_entries, "diffs": len(diff.entries),
               "abs": len(diff.head)}
    if as_json:
        print_json(summary)
        return
    note(f"exported {summary['entries']:,} entries in {summary['diffs']} differences and {summary['abs']} dense "
         f"tensors to {path}")
