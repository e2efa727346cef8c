"""``deftx transfer``: a whole LT-SFT vs DeFT-X transfer experiment, ending with a results table."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from deftx_cli.options import (
    TRAINING, DataDirOpt, JsonOpt, MixedPrecisionOpt, ModelOpt, Preset, PresetOpt, QuietOpt, RankRuleOpt, RunsDirOpt,
    SaveEveryOpt, TailKeepOpt, option_value, split_list,
)
from deftx_cli.output import TrainingProgress, handle_errors, note, print_json, stdout, warn
from deftx_cli.text import format_duration


def _show_step(index: int, total: int, step, eta: float | None) -> None:
    """``step 3 of 9: [seed 0] language SFT ace (DeFT-X) ...`` and the time left, on stderr."""
    if step.cached:
        return
    left = f" (about {format_duration(eta)} left in all)" if eta is not None else ""
    note(f"step {index} of {total}: {step.label} ...{left}")


PARALLEL = "Parallel steps"

# The explicit options that set a training setting, per kind: --lang-set / --task-set may not set it too.
LANG_OPTIONS = {"k": "--k-lang", "rank_rule": "--rank-rule", "tail_keep": "--tail-keep", "phase1_steps": "--lang-steps",
                "phase2_steps": "--lang-steps", "mixed_precision": "--mixed-precision"}
TASK_OPTIONS = {"k": "--k-task", "rank_rule": "--rank-rule", "tail_keep": "--tail-keep", "phase1_epochs": "--task-epochs",
                "phase2_epochs": "--task-epochs", "max_examples": "--task-max-examples",
                "mixed_precision": "--mixed-precision"}


def _with_settings(explicit: dict[str, Any], pairs: list[str] | None, option: str,
                   options: dict[str, str]) -> dict[str, Any]:
    """The explicit options' settings plus those of ``--lang-set`` / ``--task-set``; a key set both
    ways is refused (which should win would be a guess)."""
    from deftx.config import parse_settings
    from deftx.errors import UsageError

    explicit = {key: value for key, value in explicit.items() if value is not None}
    settings = parse_settings(pairs or [], option)
    both = sorted(key for key in settings if key in explicit)
    if both:
        key = both[0]
        raise UsageError(f"{option} {key} and {options.get(key, key)} both set {key}; give one of them")
    return {**explicit, **settings}


@handle_errors
def transfer(
    targets: Annotated[list[str], typer.Option("--target", "--targets", metavar="<str>", help="Target language(s), comma-separated or repeated.")],
    task: Annotated[str, typer.Option("--task", "-t", help="Evaluation task: nusax-senti (source ind, trained on SmSA) or americasnli (source eng, trained on SICK offline).")] = "nusax-senti",
    methods: Annotated[list[str], typer.Option("--methods", metavar="<str>", help="lt-sft and/or deftx, comma-separated; a DeFT-X setting as a method of its own (sharing phase 1): deftx@rank:16 (language and task SFTs), deftx@lang=energy:0.8, deftx@task=energy:0.9+tail:0.01.")] = ["lt-sft,deftx"],
    baselines: Annotated[list[str], typer.Option("--baselines", metavar="<str>", help="no-lang-sft and/or full-ft, comma-separated ('' for none).")] = ["no-lang-sft"],
    seeds: Annotated[list[int], typer.Option("--seed", metavar="<int>", help="Seed(s); repeat for several.")] = [0],
    lang_seed: Annotated[Optional[int], typer.Option("--lang-seed", help="Train the language SFTs once with this seed and share them across --seed runs (default: one per seed).")] = None,
    control_lang: Annotated[Optional[str], typer.Option("--control-lang", help="--control-lang jav: also evaluate each target with jav's language SFT in place of its own: if that helps as much, the gain is masked-LM repair, not the target language.")] = None,
    multi_source: Annotated[Optional[str], typer.Option("--multi-source", help="Also train multi-source task SFTs (each source's batches with its language SFT) and evaluate them beside the single-source ones: non-targets (one task SFT on every source that is not a target) or leave-one-out (one per target, on every other language). A target's data never trains the task SFT evaluated on it.")] = None,
    sources: Annotated[Optional[str], typer.Option("--sources", help="With --multi-source: the source languages (comma-separated; default: every language with labelled training data, ind on SmSA).")] = None,
    allow_target_sources: Annotated[bool, typer.Option("--allow-target-sources", metavar="", help="With --multi-source non-targets: let --sources hold targets; their results are marked 'target in sources' (not zero-shot).")] = False,
    source_sampling: Annotated[str, typer.Option("--source-sampling", help="With --multi-source: proportional (default), uniform or temperature:T.")] = "proportional",
    train_task: Annotated[Optional[str], typer.Option("--train-task", help="Task of the source training data (default from the recipe).")] = None,
    source_lang: Annotated[Optional[str], typer.Option("--source-lang", help="Source language (default from the recipe).")] = None,
    split: Annotated[str, typer.Option("--split", help="Evaluation split (choose settings on valid, report test).")] = "test",
    k_lang: Annotated[Optional[str], typer.Option("--k-lang", help="K of the language SFTs (count, fraction, percentage).")] = None,
    k_task: Annotated[Optional[str], typer.Option("--k-task", help="K of the task SFTs.")] = None,
    rank_rule: RankRuleOpt = None,
    tail_keep: TailKeepOpt = None,
    model: ModelOpt = "xlm-roberta-base",
    preset: PresetOpt = Preset.quick,
    task_preset: Annotated[Optional[Preset], typer.Option("--task-preset", help="Preset of the task SFTs (default: --preset).")] = None,
    lang_steps: Annotated[Optional[int], typer.Option("--lang-steps", min=1, help="Masked-LM steps of each language-SFT phase (overrides the preset).")] = None,
    task_epochs: Annotated[Optional[float], typer.Option("--task-epochs", min=0.01, help="Epochs of each task-SFT phase (overrides the preset).")] = None,
    task_max_examples: Annotated[Optional[int], typer.Option("--task-max-examples", min=0, help="Training examples of the task SFTs (0 = all; overrides the preset).")] = None,
    data_dir: DataDirOpt = None,
    runs_dir: RunsDirOpt = Path("runs"),
    mixed_precision: MixedPrecisionOpt = None,
    lang_set: Annotated[Optional[list[str]], typer.Option("--lang-set", metavar="KEY=VALUE", help="Any training setting of the language SFTs on top of the preset (repeat), e.g. batch_size=64, max_examples=0 (all).", rich_help_panel=TRAINING)] = None,
    task_set: Annotated[Optional[list[str]], typer.Option("--task-set", metavar="KEY=VALUE", help="Any training setting of the task SFTs on top of the preset (repeat), e.g. batch_size=32.", rich_help_panel=TRAINING)] = None,
    jobs: Annotated[Optional[int], typer.Option("--jobs", "-j", min=1, help="Steps run side by side in worker processes (each once the steps it needs have finished). Default: on a CPU, as many single-thread jobs as the cores, the plan's independent steps and the memory (3 GB each) allow; on a GPU, 1.", rich_help_panel=PARALLEL)] = None,
    threads: Annotated[Optional[int], typer.Option("--threads", min=1, help="Torch threads per job (default: the CPU cores shared by the jobs).", rich_help_panel=PARALLEL)] = None,
    save_every: SaveEveryOpt = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Run LT-SFT vs DeFT-X zero-shot transfer end to end and print a results table.

    Trains the source and target language SFTs (phase 1 shared between the two methods), a task SFT
    per method on the source language, and evaluates every target. Finished steps are reused, and an
    interrupted training step continues from its last checkpoint: rerun the same command to resume.

    Example (about 15-20 minutes on 2 CPU cores with the quick preset):

        export DEFTX_DATA_DIR=../shared/data
        export DEFTX_MODEL=../shared/models/me5-small-mlm
        deftx transfer --targets ace --preset quick

    Two steps at a time with one thread each (2 cores), language-SFT batches of 32:

        deftx transfer --targets ace,mad --jobs 2 --threads 1
        deftx transfer --targets ace,mad --lang-set batch_size=32

    DeFT-X settings as methods of their own (phase 1 trained once; choose on
    --split valid):

        deftx transfer --targets mad --methods lt-sft,deftx,deftx@lang=rank:16

    Multi-source task SFTs (every other NusaX language and SmSA, each with its
    language SFT) beside the single-source ones:

        deftx transfer --targets ace,mad --multi-source non-targets
    """
    from deftx.experiment.executor import choose_jobs, execute
    from deftx.experiment.plan import TransferPlan, plan_steps

    precision = option_value(mixed_precision)
    lang = {"k": k_lang, "rank_rule": rank_rule, "tail_keep": tail_keep, "phase1_steps": lang_steps,
            "phase2_steps": lang_steps, "mixed_precision": precision}
    task_settings = {"k": k_task, "rank_rule": rank_rule, "tail_keep": tail_keep, "phase1_epochs": task_epochs,
                     "phase2_epochs": task_epochs, "max_examples": task_max_examples, "mixed_precision": precision}
    plan = TransferPlan(task=task, targets=split_list(targets), methods=split_list(methods), seeds=list(seeds),
                        train_task=train_task, source_lang=source_lang, preset=preset.value,
                        task_preset=option_value(task_preset),
                        lang_overrides=_with_settings(lang, lang_set, "--lang-set", LANG_OPTIONS),
                        task_overrides=_with_settings(task_settings, task_set, "--task-set", TASK_OPTIONS),
                        baselines=split_list(baselines), split=split, lang_seed=lang_seed, control_lang=control_lang,
                        multi_source=multi_source, sources=split_list([sources]) if sources is not None else None,
                        allow_target_sources=allow_target_sources, source_sampling=source_sampling)
    steps = plan_steps(plan, model=model, runs_dir=runs_dir)
    from deftx.training.distributed import check_launch

    for launch in sorted({(s.config.device, s.config.mixed_precision) for s in steps if s.config}):
        check_launch(*launch)  # e.g. fp16 on a CPU: refused before any step runs
    if jobs is None:
        jobs, threads = choose_jobs(steps, threads)
        if jobs > 1 and not quiet:
            note(f"{jobs} steps side by side, {threads} thread{'s' if threads > 1 else ''} each (--jobs {jobs} "
                 f"--threads {threads}; --jobs 1 runs one step at a time)")
    records = execute(
        plan, steps, model=model, data_dir=data_dir, runs_dir=runs_dir,
        notify=(lambda m: None) if quiet else note,
        callbacks_for=lambda label: [TrainingProgress(label, quiet=quiet, bars=jobs == 1)], save_every=save_every,
        on_step=None if quiet else _show_step, jobs=jobs, threads=threads,
    )
    _print_results(records, runs_dir, as_json)


def _print_results(records: list[dict[str, Any]], runs_dir: Path, as_json: bool) -> None:
    """The comparison table (or the JSON document), and a warning per classifier that did not learn
    every class."""
    from deftx.analysis.comparison import build_pivots
    from deftx.metrics import collapse_warning, phase2_drop_warning
    from deftx.records.reading import read_run

    from deftx_cli.tables import to_document, to_rich

    pivots, _ = build_pivots(records)
    for r in records:
        line = collapse_warning(r.get("metrics"), f"{r['language']} {r['split']} ({r['system']}, seed {r.get('seed')})")
        if line:
            warn(line)
    for task_sft in dict.fromkeys(r.get("task_sft") for r in records if r.get("task_sft")):
        run = read_run(Path(task_sft).parent)
        if run.record is not None:
            warn(phase2_drop_warning(run.record.summary.model_dump(), f"task SFT {run.path.name}"))
    if as_json:
        print_json({"tables": to_document(pivots), "records": records})
        return
    for pivot in pivots:
        stdout.print(to_rich(pivot))
    note(f"runs and results in {runs_dir} (open the dashboard: deftx tui --runs-dir {runs_dir})")
