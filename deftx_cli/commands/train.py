"""``deftx train-lang`` and ``deftx train-task``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from deftx_cli.options import (
    BatchOpt, DataDirOpt, DeviceOpt, GradAccumOpt, JsonOpt, KeepCheckpointsOpt, KeepDiffOpt, KOpt, L1Opt, LrOpt,
    MaskOpt, MaxLenOpt, Method, MethodOpt, MixedPrecisionOpt, ModelOpt, OutOpt, Phase1EpochsOpt,
    Phase1StepsOpt, Phase2EpochsOpt, Phase2StepsOpt, Preset, PresetOpt, QuietOpt, RankRuleOpt, ResumeOpt, RunIdOpt,
    RunsDirOpt, SaveEveryOpt, SeedOpt, TailKeepOpt, TEXT, TRAINING, TextColumnOpt, TextConfigOpt, TextDatasetOpt, TextOpt,
    TextSplitOpt, WdOpt, WorkersOpt, TextMode, TextModeOpt, existing_file, hub_text, option_value,
)
from deftx_cli.output import TrainingProgress, handle_errors, note, print_json

DEFAULT_MODEL = "xlm-roberta-base"


def _config(kind: str, preset: Preset, method: Method, **overrides: Any):
    from deftx.config import resolve_config

    return resolve_config(kind, preset.value, method=method.value, **overrides)


def _note_restart(runs_dir: Path, run_id: str | None, kind: str, method: str, languages: dict[str, str],
                  resume: bool) -> None:
    """Say so when the same training was interrupted last time and this one starts over from scratch
    (not when it resumes: it then says which run it continues)."""
    from deftx.records.reading import latest_run

    if resume:
        return
    last = latest_run(runs_dir, kind, method, languages)
    if last is not None and last.status == "interrupted" and run_id != last.run_id:
        note(f"note: the last run of this training ({last.path}) was interrupted; this one starts over "
             f"in a new run directory")


def _report(outcome, as_json: bool, label: str) -> None:
    if outcome.run_dir is None:  # not the main process of a multi-process launch: it reports nothing
        return
    summary = outcome.summary
    result = {
        "sft": str(outcome.sft_dir),
        "run": str(outcome.run_dir),
        "k": summary.get("k"),
        "maskable": summary.get("maskable"),
        "entries": summary.get("entries"),
        "seconds": summary.get("seconds"),
        "final_eval": (summary.get("phase2") or summary.get("phase1") or {}).get("eval"),
    }
    if as_json:
        print_json(result)
    else:
        note(f"{label}: {result['entries']:,} entries of {result['maskable']:,} maskable parameters "
             f"in {result['seconds']:.0f} s")
        note(f"SFT written to {outcome.sft_dir}")
        note(f"run directory: {outcome.run_dir}")


@handle_errors
def train_lang(
    lang: Annotated[str, typer.Option("--lang", "-l", help="Target language (ISO 639-3, e.g. quy, ace) or its name.")],
    model: ModelOpt = DEFAULT_MODEL,
    method: MethodOpt = Method.deftx,
    preset: PresetOpt = Preset.cpu,
    k: KOpt = None,
    rank_rule: RankRuleOpt = None,
    tail_keep: TailKeepOpt = None,
    text: TextOpt = None,
    text_dataset: TextDatasetOpt = None,
    text_config: TextConfigOpt = None,
    text_split: TextSplitOpt = "train",
    text_column: TextColumnOpt = "text",
    text_revision: Annotated[Optional[str], typer.Option("--revision", "--text-revision", help="Branch, tag or commit of --text-dataset.", rich_help_panel=TEXT)] = None,
    text_mode: TextModeOpt = TextMode.auto,
    workers: WorkersOpt = None,
    max_lines: Annotated[Optional[int], typer.Option("--max-lines", min=1, help="Use at most this many text lines (a seeded random subset).", rich_help_panel=TEXT)] = None,
    phase1_steps: Phase1StepsOpt = None,
    phase2_steps: Phase2StepsOpt = None,
    batch_size: BatchOpt = None,
    max_length: MaxLenOpt = None,
    lr: LrOpt = None,
    l1: L1Opt = None,
    weight_decay: WdOpt = None,
    seed: SeedOpt = 0,
    device: DeviceOpt = "auto",
    mixed_precision: MixedPrecisionOpt = None,
    grad_accum: GradAccumOpt = 1,
    mask: MaskOpt = None,
    keep_phase1_diff: KeepDiffOpt = False,
    data_dir: DataDirOpt = None,
    runs_dir: RunsDirOpt = Path("runs"),
    run_id: RunIdOpt = None,
    out: OutOpt = None,
    save_every: SaveEveryOpt = None,
    keep_checkpoints: KeepCheckpointsOpt = False,
    resume: ResumeOpt = False,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Train a language SFT by masked-LM on unlabelled text of one language.

    With a data root set (--data-dir or DEFTX_DATA_DIR), the text is found by language code:
    NusaX-MT train, NusaWrites, AmericasNLP train text; or give --text or --text-dataset. The
    text is tokenised once into a cache (deftx cache shows it). Interrupted (SIGTERM, a crash, a
    kill)? Run the same command again with --resume.

    Example:

        export DEFTX_DATA_DIR=../shared/data
        export DEFTX_MODEL=../shared/models/me5-small-mlm
        deftx train-lang --lang quy --method deftx --preset cpu
        deftx train-lang --lang ind --text 'idwiki/*.txt.gz' --preset paper
    """
    from deftx.experiment.lifecycle import Checkpointing
    from deftx.experiment.language import train_language_sft

    config = _config("language", preset, method, k=k, rank_rule=rank_rule, tail_keep=tail_keep,
                     max_examples=max_lines, phase1_steps=phase1_steps, phase2_steps=phase2_steps,
                     batch_size=batch_size, max_length=max_length, lr=lr, l1=l1, weight_decay=weight_decay,
                     seed=seed, device=device, mixed_precision=option_value(mixed_precision), grad_accum=grad_accum)
    label = f"language SFT {lang} ({config.method})"
    from deftx.data import canonical_language

    _note_restart(runs_dir, run_id, "language", config.method, {"target": canonical_language(lang)}, resume)
    dataset = hub_text(text_dataset, text_config, text_split, text_column, text_revision, text)
    outcome = train_language_sft(
        lang, config, model=model, data_dir=data_dir, text_files=text, text_dataset=dataset, text_mode=text_mode.value, workers=workers,
        runs_dir=runs_dir, run_id=run_id, out=out,
        keep_phase1_diff=keep_phase1_diff, mask_file=mask, callbacks=[TrainingProgress(label, quiet=quiet)],
        command=["deftx", *sys.argv[1:]],
        checkpointing=Checkpointing(save_every=save_every, keep=keep_checkpoints, resume=resume),
    )
    _report(outcome, as_json, label)


@handle_errors
def train_task(
    task: Annotated[str, typer.Option("--task", "-t", help="Task: nusax-senti, smsa, americasnli, sick, multinli, xnli-en.")],
    source_lang: Annotated[Optional[str], typer.Option("--source-lang", "-s", help="Language of the labelled training data (ISO 639-3).")] = None,
    lang_sft: Annotated[Optional[list[str]], typer.Option("--lang-sft", help="The source language's SFT (a directory or a hub id), applied while training (recommended). With --sources: LANG=SFT, once per source that has one.")] = None,
    sources: Annotated[Optional[str], typer.Option("--sources", help="Multi-source: the labelled data of these languages (comma-separated), each batch from one source with that source's --lang-sft applied. ind in NusaX trains on SmSA.")] = None,
    source_sampling: Annotated[str, typer.Option("--source-sampling", help="With --sources: how batches are drawn across sources: proportional (every example once per epoch; default), uniform, or temperature:T (p ~ n^(1/T)).")] = "proportional",
    revision: Annotated[Optional[str], typer.Option("--revision", help="Branch, tag or commit of --lang-sft when it is a hub id.")] = None,
    model: ModelOpt = DEFAULT_MODEL,
    method: MethodOpt = Method.deftx,
    preset: PresetOpt = Preset.cpu,
    k: KOpt = None,
    rank_rule: RankRuleOpt = None,
    tail_keep: TailKeepOpt = None,
    train_file: Annotated[Optional[Path], typer.Option("--train-file", callback=existing_file, help="Labelled CSV/TSV/JSONL instead of the task's train split.", rich_help_panel=TRAINING)] = None,
    validation_file: Annotated[Optional[Path], typer.Option("--validation-file", callback=existing_file, help="Labelled validation file.", rich_help_panel=TRAINING)] = None,
    max_examples: Annotated[Optional[int], typer.Option("--max-examples", min=1, help="Train on at most this many examples (a seeded random subset).", rich_help_panel=TRAINING)] = None,
    phase1_epochs: Phase1EpochsOpt = None,
    phase2_epochs: Phase2EpochsOpt = None,
    phase1_steps: Phase1StepsOpt = None,
    phase2_steps: Phase2StepsOpt = None,
    batch_size: BatchOpt = None,
    max_length: MaxLenOpt = None,
    lr: LrOpt = None,
    l1: L1Opt = None,
    weight_decay: WdOpt = None,
    seed: SeedOpt = 0,
    device: DeviceOpt = "auto",
    mixed_precision: MixedPrecisionOpt = None,
    grad_accum: GradAccumOpt = 1,
    mask: MaskOpt = None,
    keep_phase1_diff: KeepDiffOpt = False,
    force: Annotated[bool, typer.Option("--force", metavar="", help="Apply a language SFT even if its base-model fingerprint differs.")] = False,
    data_dir: DataDirOpt = None,
    runs_dir: RunsDirOpt = Path("runs"),
    run_id: RunIdOpt = None,
    out: OutOpt = None,
    save_every: SaveEveryOpt = None,
    keep_checkpoints: KeepCheckpointsOpt = False,
    resume: ResumeOpt = False,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Train a task SFT on labelled source-language data, with the source language's SFT applied.

    Example (Indonesian sentiment, for zero-shot transfer to NusaX languages):

        export DEFTX_DATA_DIR=../shared/data
        export DEFTX_MODEL=../shared/models/me5-small-mlm
        deftx train-task --task smsa --source-lang ind --lang-sft runs/<ind-run>/sft
    """
    from deftx.errors import UsageError
    from deftx.sft.sources import resolve_sft_source

    if (source_lang is None) == (sources is None):
        raise UsageError("give either --source-lang (one source) or --sources (several)",
                         hint="e.g. --source-lang ind, or --sources ind,jav,sun --lang-sft jav=runs/<jav-run>/sft")
    if sources is not None:
        if train_file is not None or validation_file is not None:
            raise UsageError("--train-file and --validation-file are for one source; --sources reads each "
                             "source's split of the task")
        return _train_multi_source(task, sources, lang_sft or [], revision, source_sampling, model=model,
                                   method=method, preset=preset, k=k, rank_rule=rank_rule, tail_keep=tail_keep,
                                   max_examples=max_examples, phase1_epochs=phase1_epochs,
                                   phase2_epochs=phase2_epochs, phase1_steps=phase1_steps,
                                   phase2_steps=phase2_steps, batch_size=batch_size, max_length=max_length, lr=lr,
                                   l1=l1, weight_decay=weight_decay, seed=seed, device=device,
                                   mixed_precision=mixed_precision, grad_accum=grad_accum, mask=mask,
                                   keep_phase1_diff=keep_phase1_diff, force=force, data_dir=data_dir,
                                   runs_dir=runs_dir, run_id=run_id, out=out, save_every=save_every,
                                   keep_checkpoints=keep_checkpoints, resume=resume, as_json=as_json, quiet=quiet)
    if source_sampling != "proportional":
        raise UsageError("--source-sampling is for a multi-source task SFT (--sources)")
    if lang_sft and len(lang_sft) > 1:
        raise UsageError("--lang-sft is given twice for one source", hint="several sources: --sources with LANG=SFT")
    lang_sft = resolve_sft_source(lang_sft[0], revision) if lang_sft else None
    from deftx.experiment.lifecycle import Checkpointing
    from deftx.experiment.task import train_task_sft

    config = _config("task", preset, method, k=k, rank_rule=rank_rule, tail_keep=tail_keep,
                     max_examples=max_examples, phase1_epochs=phase1_epochs, phase2_epochs=phase2_epochs,
                     phase1_steps=phase1_steps, phase2_steps=phase2_steps, batch_size=batch_size,
                     max_length=max_length, lr=lr, l1=l1, weight_decay=weight_decay, seed=seed, device=device,
                     mixed_precision=option_value(mixed_precision), grad_accum=grad_accum)
    label = f"task SFT {task}/{source_lang} ({config.method})"
    from deftx.data import canonical_language

    _note_restart(runs_dir, run_id, "task", config.method, {"source": canonical_language(source_lang)}, resume)
    outcome = train_task_sft(
        task, source_lang, config, model=model, lang_sft=lang_sft, data_dir=data_dir, train_file=train_file,
        validation_file=validation_file, runs_dir=runs_dir, run_id=run_id, out=out,
        keep_phase1_diff=keep_phase1_diff, mask_file=mask, callbacks=[TrainingProgress(label, quiet=quiet)],
        command=["deftx", *sys.argv[1:]], force=force,
        checkpointing=Checkpointing(save_every=save_every, keep=keep_checkpoints, resume=resume),
    )
    _report(outcome, as_json, label)


def _train_multi_source(task: str, sources: str, lang_sfts: list[str], revision: str | None, sampling: str, *,
                        model, method, preset, mixed_precision, mask, keep_phase1_diff, force, data_dir, runs_dir,
                        run_id, out, save_every, keep_checkpoints, resume, as_json, quiet, **settings: Any) -> None:
    """``train-task --sources``: one task SFT from several sources, each batch with its source's language SFT."""
    from deftx.errors import UsageError
    from deftx.experiment.lifecycle import Checkpointing
    from deftx.experiment.task import check_multi_source, train_multi_source_task_sft
    from deftx.objectives.multisource import normal_sampling
    from deftx.sft.sources import resolve_sft_source

    names = [s.strip() for s in sources.split(",") if s.strip()]
    pairs = []
    for value in lang_sfts:
        lang, sep, path = value.partition("=")
        if not sep or not lang.strip() or not path.strip():
            raise UsageError(f"--lang-sft {value!r}: with --sources, give LANG=SFT", hint="e.g. --lang-sft jav=runs/<jav-run>/sft")
        pairs.append((lang.strip(), path.strip()))
    names, checked = check_multi_source(task, names, pairs)
    resolved = {lang: resolve_sft_source(str(path), revision) for lang, path in checked.items()}
    sampling = normal_sampling(sampling)
    config = _config("task", preset, method, mixed_precision=option_value(mixed_precision), **settings)
    label = f"task SFT {task}/{'+'.join(names)} ({config.method} multi)"
    _note_restart(runs_dir, run_id, "task", config.method, {"source": "+".join(names)}, resume)
    outcome = train_multi_source_task_sft(
        task, names, config, model=model, lang_sfts=resolved, data_dir=data_dir, runs_dir=runs_dir, run_id=run_id,
        out=out, keep_phase1_diff=keep_phase1_diff, mask_file=mask, callbacks=[TrainingProgress(label, quiet=quiet)],
        command=["deftx", *sys.argv[1:]], force=force, sampling=sampling,
        checkpointing=Checkpointing(save_every=save_every, keep=keep_checkpoints, resume=resume),
    )
    _report(outcome, as_json, label)
