"""``deftx compose``: base model + SFTs -> a ready Hugging Face model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from deftx_cli.options import JsonOpt, RevisionOpt
from deftx_cli.output import handle_errors, note, print_json


@handle_errors
def compose(
    sft: Annotated[list[str], typer.Option("--sft", metavar="<dir>", help="An SFT directory or hub id (repeat: language SFT, task SFT, ...).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Directory for the composed model (save_pretrained).")],
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="Base model: a hub id or a local directory (default: the one the SFTs record).")] = None,
    force: Annotated[bool, typer.Option("--force", metavar="", help="Compose and apply SFTs even if their base-model fingerprints differ (from each other or from --model).")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", metavar="", help="Replace --out if it exists.")] = False,
    revision: RevisionOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Compose SFTs by addition onto the base model and save a ready model (with the task head).

    Example (Acehnese sentiment model from a language SFT and an Indonesian task SFT):

        deftx compose --sft runs/<ace-run>/sft --sft runs/<task-run>/sft -o ace-senti
    """
    from deftx.sft.sources import resolve_sft_source

    folders = [resolve_sft_source(s, revision) for s in sft]
    from deftx.experiment.inference import compose_model

    result = compose_model(model, folders, out, force=force, overwrite=overwrite)
    if as_json:
        print_json(result)
    else:
        kind = "sequence-classification" if result["kind"] == "classification" else "masked-LM"
        note(f"composed {len(sft)} SFT(s), {result['entries']:,} entries, into a {kind} model")
        note(f"model written to {result['out']} (load it with from_pretrained)")
