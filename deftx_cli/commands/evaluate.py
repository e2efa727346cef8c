"""``deftx evaluate``: zero-shot transfer of a task SFT (plus a language SFT) to a language."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from deftx_cli.options import DataDirOpt, JsonOpt, RevisionOpt, RunIdOpt, RunsDirOpt, existing_file
from deftx_cli.output import handle_errors, note, print_json, stdout, warn


@handle_errors
def evaluate(
    task: Annotated[str, typer.Option("--task", "-t", help="Evaluation task: nusax-senti, americasnli, ...")],
    lang: Annotated[str, typer.Option("--lang", "-l", help="Target language (ISO 639-3).")],
    task_sft: Annotated[str, typer.Option("--task-sft", help="The task SFT: a directory or a hub id.")],
    lang_sft: Annotated[Optional[str], typer.Option("--lang-sft", help="The target language's SFT, a directory or a hub id (omit for the no-language-SFT baseline).")] = None,
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="Base model (default: the one the task SFT records).")] = None,
    split: Annotated[str, typer.Option("--split", help="test, valid (dev) ...")] = "test",
    eval_file: Annotated[Optional[Path], typer.Option("--eval-file", callback=existing_file, help="A labelled file instead of the task's split.")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Batch size.")] = 64,
    force: Annotated[bool, typer.Option("--force", metavar="", help="Apply SFTs even if their base-model fingerprint differs.")] = False,
    data_dir: DataDirOpt = None,
    runs_dir: RunsDirOpt = Path("runs"),
    run_id: RunIdOpt = None,
    revision: RevisionOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Evaluate theta0 + language SFT + task SFT on a task in a target language.

    Prints accuracy, macro-F1 and per-class scores, and writes a results record into a run
    directory (the dashboard's compare view reads it).

    Example:

        export DEFTX_DATA_DIR=../shared/data
        TASK=runs/<task-run>/sft ACE=runs/<ace-run>/sft
        deftx evaluate -t nusax-senti -l ace --task-sft $TASK --lang-sft $ACE
    """
    from deftx.sft.sources import resolve_sft_source

    task_folder = resolve_sft_source(task_sft, revision)
    lang_folder = resolve_sft_source(lang_sft, revision) if lang_sft is not None else None
    from deftx.metrics import collapse_warning
    from deftx.experiment.evaluation import evaluate_transfer

    record, run_path = evaluate_transfer(
        task, lang, task_folder,
        lang_sft=lang_folder, model=model, split=split, data_dir=data_dir, eval_file=eval_file,
        runs_dir=runs_dir, run_id=run_id, batch_size=batch_size, force=force,
    )
    warning = collapse_warning(record["metrics"], f"{record['language']} {record['split']} ({record['system']})")
    if as_json:
        print_json(record)
        warn(warning)
        return
    from rich.table import Table

    metrics = record["metrics"]
    table = Table(title=f"{record['task']} / {record['language']} ({record['split']}, {record['system']}, n={metrics['n']})")
    for column in ("class", "precision", "recall", "f1", "support", "predicted"):
        table.add_column(column, justify="left" if column == "class" else "right")
    shares = metrics.get("prediction_shares") or {}
    for name, scores in metrics["per_class"].items():
        share = f"{100 * shares[name]:.1f}%" if name in shares else "-"
        table.add_row(name, f"{scores['precision']:.4f}", f"{scores['recall']:.4f}", f"{scores['f1']:.4f}",
                      str(scores["support"]), share)
    stdout.print(table)
    stdout.print(f"accuracy {metrics['accuracy']:.4f}   macro-F1 {metrics['macro_f1']:.4f}")
    warn(warning)
    note(f"results written to {run_path / 'results.json'}")
