"""``deftx evaluate-lm``: held-out masked-LM loss and accuracy of the base model, with and without a
language SFT."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from deftx_cli.options import (
    TEXT, TRAINING, DataDirOpt, JsonOpt, MaxLenOpt, ModelOpt, Preset, PresetOpt, RevisionOpt, SeedOpt, TextColumnOpt,
    TextConfigOpt, TextDatasetOpt, TextOpt, TextSplitOpt, WorkersOpt, TextMode, TextModeOpt, hub_text,
)
from deftx_cli.output import TrainingProgress, handle_errors, note, print_json, stdout

DEFAULT_MODEL = "xlm-roberta-base"  # as deftx train-lang


@handle_errors
def evaluate_lm(
    lang: Annotated[str, typer.Option("--lang", "-l", help="Language whose held-out text is scored (ISO 639-3, e.g. mad, ace) or its name.")],
    sft: Annotated[Optional[str], typer.Option("--sft", metavar="<dir>", help="A language SFT to apply, a directory or a hub id (any language's: another language's SFT on this text is the control).")] = None,
    model: ModelOpt = DEFAULT_MODEL,
    preset: PresetOpt = Preset.cpu,
    text: TextOpt = None,
    text_dataset: TextDatasetOpt = None,
    text_config: TextConfigOpt = None,
    text_split: TextSplitOpt = "train",
    text_column: TextColumnOpt = "text",
    text_revision: Annotated[Optional[str], typer.Option("--text-revision", help="Branch, tag or commit of --text-dataset.", rich_help_panel=TEXT)] = None,
    text_mode: TextModeOpt = TextMode.auto,
    workers: WorkersOpt = None,
    max_lines: Annotated[Optional[int], typer.Option("--max-examples", "--max-lines", min=1, help="Text lines used (a seeded random subset), as the language SFT's --max-lines.", rich_help_panel=TRAINING)] = None,
    max_length: MaxLenOpt = None,
    seed: SeedOpt = 0,
    force: Annotated[bool, typer.Option("--force", metavar="", help="Apply the SFT even if its base-model fingerprint differs.")] = False,
    data_dir: DataDirOpt = None,
    revision: RevisionOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Held-out masked-LM loss and accuracy of the base model, and with a language SFT applied.

    The held-out blocks are those a language SFT of the same settings (--preset, --max-examples,
    --max-length, --seed, text) holds out, so the base-model line equals the base_eval its run
    records. A language SFT also repairs the base model's weak masked-LM head; compare with another
    language's SFT on the same text to separate the two.

    Example (Madurese text: mad's own SFT, then jav's as the control):

        export DEFTX_DATA_DIR=../shared/data
        export DEFTX_MODEL=../shared/models/me5-small-mlm
        deftx evaluate-lm --lang mad --sft runs/<mad-run>/sft
        deftx evaluate-lm --lang mad --sft runs/<jav-run>/sft
    """
    from deftx.config import resolve_config
    from deftx.sft.sources import resolve_sft_source
    from deftx.experiment.language import evaluate_language_model

    folder = resolve_sft_source(sft, revision) if sft is not None else None

    config = resolve_config("language", preset.value, max_examples=max_lines, max_length=max_length, seed=seed)
    dataset = hub_text(text_dataset, text_config, text_split, text_column, text_revision, text)
    progress = TrainingProgress(f"held-out text {lang}")
    result = evaluate_language_model(lang, config, model=model, sft=folder, data_dir=data_dir, text_files=text,
                                     text_dataset=dataset, text_mode=text_mode.value, workers=workers, force=force,
                                     progress=lambda fields: progress("prepare", fields))
    if as_json:
        print_json(result)
        return
    from rich.table import Table

    table = Table(title=f"held-out masked-LM, {result['language']} ({result['held_out_blocks']} blocks of "
                        f"{result['max_length']} tokens)")
    for column in ("model", "loss", "accuracy", "perplexity"):
        table.add_column(column, justify="left" if column == "model" else "right")
    rows = [("base model", result["base"])]
    if result["with_sft"] is not None:
        rows.append((f"+ {result['sft_language']} language SFT", result["with_sft"]))
    for name, metrics in rows:
        table.add_row(name, f"{metrics['mlm_loss']:.4f}", f"{100 * metrics['mlm_accuracy']:.2f}%",
                      f"{metrics['perplexity']:.1f}")
    stdout.print(table)
    note(f"text: {', '.join(result['text_sources'])}")
