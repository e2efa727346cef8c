"""``deftx predict``: a transferred classifier's label and class probabilities for raw text."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from deftx_cli.options import JsonOpt, RevisionOpt, a_file
from deftx_cli.output import handle_errors, print_json, stdout


def read_texts(texts: list[str] | None, file: Path | None) -> list[str]:
    """The sentences of the arguments, then those of ``file`` (one per line, blank lines skipped;
    ``-`` reads standard input)."""
    from deftx.errors import DataFormatError, UsageError

    empty = [i for i, t in enumerate(texts or [], start=1) if not t.strip()]
    if empty:  # skipping it would shift every later prediction against its sentence
        raise UsageError(f"sentence {empty[0]} of the arguments is empty", hint="give each sentence as one non-empty argument")
    out = list(texts or [])
    if file is not None:
        try:
            content = sys.stdin.read() if str(file) == "-" else file.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise DataFormatError(f"{file} is not UTF-8 text") from None
        lines = [line.rstrip("\r") for line in content.split("\n") if line.strip()]
        if not lines:
            raise DataFormatError(f"{file} holds no text (one sentence per line expected)")
        out += lines
    if not out:
        raise UsageError("nothing to predict", hint='give sentences as arguments (deftx predict ... "a sentence") or --file')
    return out


@handle_errors
def predict(
    texts: Annotated[Optional[list[str]], typer.Argument(help="Sentences to classify (quote each one).", metavar="TEXT", show_default=False)] = None,
    task_sft: Annotated[str, typer.Option("--task-sft", metavar="<dir>", help="The task SFT: a directory or a hub id.")] = ...,
    lang_sft: Annotated[Optional[str], typer.Option("--lang-sft", metavar="<dir>", help="The text's language SFT, a directory or a hub id (omit: the task SFT alone).")] = None,
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="Base model (default: the one the SFTs record).")] = None,
    file: Annotated[Optional[Path], typer.Option("--file", "-f", callback=a_file, help="A text file, one sentence per line ('-': standard input).", metavar="FILE")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Batch size.")] = 32,
    force: Annotated[bool, typer.Option("--force", metavar="", help="Apply SFTs even if their base-model fingerprint differs.")] = False,
    revision: RevisionOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Classify your own sentences with a task SFT (plus a language SFT): the label and the class
    probabilities, one line per sentence.

    For a sentence-pair task (NLI) give each text as premise<TAB>hypothesis.

    Examples (Indonesian sentences with the task SFT alone; Acehnese ones with the
    Acehnese language SFT):

        TASK=runs/<task-run>/sft ACE=runs/<ace-run>/sft
        deftx predict --task-sft $TASK "Film ini sangat bagus!" "Jelek sekali."
        deftx predict --task-sft $TASK --lang-sft $ACE --file ace-sentences.txt
    """
    from deftx.sft.sources import resolve_sft_source

    task_folder = resolve_sft_source(task_sft, revision)
    lang_folder = resolve_sft_source(lang_sft, revision) if lang_sft is not None else None
    from deftx.experiment.inference import predict_texts

    if file is not None and str(file) != "-" and not file.is_file():
        from deftx.errors import InputNotFoundError

        raise InputNotFoundError(f"{file} does not exist or is not a file")
    result = predict_texts(task_folder, read_texts(texts, file), lang_sft=lang_folder, model=model,
                           batch_size=batch_size, force=force)
    if as_json:
        print_json(result)
        return
    width = max(len(label) for label in result["labels"])
    for p in result["predictions"]:
        probs = "  ".join(f"{name} {value:.3f}" for name, value in p["probabilities"].items())
        text = p["text"].replace("\t", " | ")
        stdout.print(f"{p['label']:<{width}}  {probs}  {text}", markup=False)
