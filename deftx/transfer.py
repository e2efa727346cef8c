"""A whole zero-shot transfer experiment: language SFTs, task SFTs, evaluations, a results table.

For each seed: the source and every target language get a language SFT per method. LT-SFT and
DeFT-X share phase 1 exactly (same data, same seed), so phase 1 runs once per language: the first
method keeps its phase-1 difference, the other selects its mask from it and runs phase 2 only. Then a
task SFT per method is trained on the source language (with that method's source SFT applied) and
evaluated in every target with that method's target SFT. Baselines: ``no-lang-sft`` (the LT-SFT task
SFT without a target language SFT) and ``full-ft`` (dense task fine-tuning, no language SFTs).
With ``control_lang`` set, that language's SFT (first method, trained as the targets' are) is also
applied in place of each target's own: the ``other-lang-sft`` control, which tells masked-LM repair
from knowledge of the target language.
With ``lang_seed`` set, the language SFTs are trained once with that seed and shared by every seed's
task SFTs (a cheaper protocol: the spread over seeds then covers task training only).

The experiment is planned, then executed. :func:`plan_steps` is pure: from the plan and what the
runs directory already holds it lists every step (language SFT, task SFT, evaluation) with a
deterministic run id (the settings that matter to the step hashed in, by :func:`step_key`) and says
which are cached. :func:`execute` runs the others in order (or several at once in worker processes,
each once the steps it needs have finished: :mod:`deftx.scheduler`), so a second call reuses finished
steps and an interrupted experiment resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from deftx.config import TrainConfig, resolve_config
from deftx.data import canonical_language, get_task
from deftx.errors import ProcessFailedError, TrainingInterrupted, TrainingTerminated, UnknownNameError, UsageError
from deftx.methods import METHODS, SPARSE_METHODS, FullFt, MethodVariant, cache_settings, get_method, method_of
from deftx.pipeline import PHASE1_DIFF, total_steps
from deftx.results import NO_LANG_SFT, OTHER_LANG_SFT
from deftx.runs import RESULTS_JSON, ExperimentLog, format_duration, read_run, slug
from deftx.scheduler import StepError, StepOutcome, StepSchedule, WorkerPool, default_threads, limit_threads

# Evaluation task -> (training task, source language) of the standard recipes.
RECIPES = {"nusax-senti": ("smsa", "ind"), "americasnli": ("sick", "eng")}

BASELINES = (NO_LANG_SFT, FullFt.name)
SFT_MANIFEST = "sft/sft.json"
# In every evaluation step's key: raised when results records gain fields, so that an experiment run
# again evaluates once more (evaluations are cheap) instead of reusing records without them.
EVALUATION_RECORD_VERSION = 3

Notify = Callable[[str], None]


@dataclass
class TransferPlan:
    task: str
    targets: list[str]
    methods: list[str] = field(default_factory=lambda: ["lt-sft", "deftx"])
    seeds: list[int] = field(default_factory=lambda: [0])
    train_task: str | None = None
    source_lang: str | None = None
    preset: str = "quick"
    task_preset: str | None = None  # the task SFTs' preset (None: the same as the language SFTs')
    lang_overrides: dict[str, Any] = field(default_factory=dict)
    task_overrides: dict[str, Any] = field(default_factory=dict)
    baselines: list[str] = field(default_factory=lambda: ["no-lang-sft"])
    split: str = "test"
    lang_seed: int | None = None  # one seed for every language SFT (None: each seed trains its own)
    control_lang: str | None = None  # also evaluate every other target with this language's SFT

    def resolved(self) -> TransferPlan:
        spec = get_task(self.task)
        train_task, source = RECIPES.get(spec.name, (spec.name, None))
        self.task = spec.name
        self.train_task = get_task(self.train_task or train_task).name
        self.source_lang = canonical_language(self.source_lang or source or "")
        self.targets = [canonical_language(t) for t in self.targets]
        if self.control_lang is not None:
            self.control_lang = canonical_language(self.control_lang)
        try:
            variants = [MethodVariant.parse(m) for m in self.methods]
        except UnknownNameError as exc:
            raise UnknownNameError("method of --methods", exc.name, SPARSE_METHODS) from None
        bad = [v.method for v in variants if v.method not in SPARSE_METHODS]
        if bad or not variants:
            raise UsageError(f"methods must be {' and/or '.join(SPARSE_METHODS)} (got {', '.join(self.methods) or 'none'})",
                             hint="a DeFT-X setting of its own: deftx@rank:16, deftx@lang=energy:0.8, deftx@task=tail:0.01")
        names = [v.name for v in variants]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise UsageError(f"method {twice[0]} is given twice")
        self.methods = names
        bad = [b for b in self.baselines if b not in BASELINES]
        if bad:
            raise UnknownNameError("baseline", bad[0], BASELINES)
        if self.split not in spec.splits:
            raise UnknownNameError(f"split of {spec.name}", self.split, spec.splits)
        return self


def step_key(*parts: Any) -> str:
    """The hash that names a step's run directory: of every setting that changes its result."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:10]


@dataclass
class Step:
    """One step of the experiment: a run directory to produce (or reuse)."""

    kind: str  # "language", "task" or "evaluation"
    run_id: str
    label: str  # for people: "language SFT ace (DeFT-X)"
    seed: int
    cached: bool
    config: TrainConfig | None = None  # a training's settings
    language: str | None = None  # the SFT's language, or the evaluation's target
    system: str | None = None  # an evaluation's system; a task SFT's name in the plan
    lang_sft: str | None = None  # run id of the language SFT applied (task SFT, evaluation)
    task_sft: str | None = None  # run id of the evaluated task SFT
    keep_phase1_diff: bool = False
    mask_from: str | None = None  # run id whose phase-1 difference gives this step's mask
    mask_from_label: str | None = None  # for people: whose phase 1 that is ("LT-SFT")
    control_lang: str | None = None  # an other-lang-sft evaluation: the language of the SFT applied

    @property
    def needs(self) -> str:
        """The file that marks the step finished."""
        return RESULTS_JSON if self.kind == "evaluation" else SFT_MANIFEST


class RunsState(Protocol):
    """What the planner asks of the runs directory."""

    def finished(self, run_id: str, needs: str) -> bool: ...

    def has_phase1_diff(self, run_id: str) -> bool: ...


@dataclass
class DiskState:
    """The runs directory as it is on disk."""

    runs_dir: Path

    def finished(self, run_id: str, needs: str) -> bool:
        run_dir = self.runs_dir / run_id
        info = read_run(run_dir)
        return info.readable and info.get("status") == "finished" and (run_dir / needs).exists()

    def has_phase1_diff(self, run_id: str) -> bool:
        return (self.runs_dir / run_id / PHASE1_DIFF).is_file()


def _label(seed: int, text: str) -> str:
    return f"[seed {seed}] {text}"


def plan_steps(plan: TransferPlan, *, model: str | Path, runs_dir: Path, state: RunsState | None = None) -> list[Step]:
    """Every step of the experiment in the order it runs, each marked cached or not. Pure: the
    runs directory is read only through ``state`` (by default, from disk)."""
    plan = plan.resolved()
    runs_dir = Path(runs_dir)
    state = state or DiskState(runs_dir)

    def sft_path(run_id: str | None) -> str | None:  # as run ids of earlier versions hashed it
        return str(runs_dir / run_id / "sft") if run_id is not None else None

    steps: list[Step] = []
    by_id: dict[str, Step] = {}
    evaluated: set[tuple[int, str, str, str]] = set()  # (seed, target, system, key) of the evaluations planned
    lang_runs: dict[tuple[int, str, str], str] = {}  # (lang seed, language, method variant) -> run id
    variants = [MethodVariant.parse(m) for m in plan.methods]
    first = variants[0]

    def add(step: Step) -> Step:
        """The step, or the planned one with its run id (two variants that train the same SFT)."""
        if step.run_id not in by_id:
            by_id[step.run_id] = step
            steps.append(step)
        return by_id[step.run_id]

    for seed in plan.seeds:
        lang_seed = seed if plan.lang_seed is None else plan.lang_seed
        lang_cfg = resolve_config("language", plan.preset, seed=lang_seed, **plan.lang_overrides)
        task_cfg = resolve_config("task", plan.task_preset or plan.preset, seed=seed, **plan.task_overrides)
        languages = [plan.source_lang, *[t for t in plan.targets if t != plan.source_lang]]
        control = plan.control_lang if plan.control_lang not in languages else None
        for lang in languages + ([control] if control else []):
            for variant in variants if lang != control else [first]:  # the control: the first method only
                if (lang_seed, lang, variant.name) in lang_runs:
                    continue  # shared with an earlier seed (lang_seed)
                cfg = lang_cfg.model_copy(update=variant.settings_for("language"))
                own = get_method(variant.method).from_config(cfg).settings()
                key = step_key("lang", str(model), lang, cfg.model_dump(exclude={"method", "rank_rule", "tail_keep"}),
                               variant.method, own.get("rank_rule"), own.get("tail_keep"))
                run_id = f"xfer-lang-{lang}-{variant.method}-s{lang_seed}-{key}"
                step = Step("language", run_id, _label(lang_seed, f"language SFT {lang} ({variant.label})"),
                            lang_seed, state.finished(run_id, SFT_MANIFEST), cfg, language=lang)
                if lang == control:
                    step.label += " (control)"
                elif variant is first:
                    step.keep_phase1_diff = len(variants) > 1
                elif run_id != lang_runs[(lang_seed, lang, first.name)]:
                    # phase 1 is shared with the first method when its difference is (or will be) kept
                    shared = lang_runs[(lang_seed, lang, first.name)]
                    if not by_id[shared].cached or state.has_phase1_diff(shared):
                        step.mask_from, step.mask_from_label = shared, first.label
                lang_runs[(lang_seed, lang, variant.name)] = add(step).run_id
        task_runs: dict[str, str] = {}
        trainings = [(v.name, v, lang_runs[(lang_seed, plan.source_lang, v.name)]) for v in variants]
        if FullFt.name in plan.baselines:
            trainings.append((FullFt.name, MethodVariant(FullFt.name), None))
        phase1_holders: dict[str, str] = {}  # a task SFT's phase-1 identity -> the run that keeps that phase 1
        for name, variant, src in trainings:
            cfg = task_cfg.model_copy(update=variant.settings_for("task"))
            key = step_key("task", str(model), plan.train_task, plan.source_lang, cache_settings(cfg), sft_path(src))
            run_id = f"xfer-task-{plan.train_task}-{plan.source_lang}-{variant.method}-s{seed}-{key}"
            label = _label(seed, f"task SFT {plan.train_task}/{plan.source_lang} ({variant.label})")
            step = add(Step("task", run_id, label, seed, state.finished(run_id, SFT_MANIFEST), cfg,
                            language=plan.source_lang, system=variant.method, lang_sft=src))
            task_runs[name] = step.run_id
            if get_method(variant.method).sparse and step.run_id == run_id and not step.keep_phase1_diff:
                # task SFTs that start from the same point with the same settings but their method's
                # share phase 1: the first keeps its difference, the others select from it
                identity = step_key(sft_path(src), phase1_settings(cfg))
                holder = phase1_holders.setdefault(identity, run_id)
                if holder != run_id:
                    by_id[holder].keep_phase1_diff = True
                    if not by_id[holder].cached or state.has_phase1_diff(holder):
                        step.mask_from = holder
                        step.mask_from_label = f"the task SFT of {next(v for v in variants if task_runs.get(v.name) == holder).label}"
        for target in plan.targets:
            evaluations = [(v.method, task_runs[v.name], lang_runs[(lang_seed, target, v.name)], v) for v in variants]
            if NO_LANG_SFT in plan.baselines:
                evaluations.append((NO_LANG_SFT, task_runs[first.name], None, None))
            if plan.control_lang is not None and target != plan.control_lang:
                evaluations.append((OTHER_LANG_SFT, task_runs[first.name],
                                    lang_runs[(lang_seed, plan.control_lang, first.name)], None))
            if FullFt.name in plan.baselines:
                evaluations.append((FullFt.name, task_runs[FullFt.name], None, None))
            for system, task_run, lang_run, variant in evaluations:
                key = step_key(sft_path(task_run), sft_path(lang_run), plan.split, EVALUATION_RECORD_VERSION)
                name = slug(variant.name) if variant is not None else system
                run_id = f"xfer-eval-{plan.task}-{target}-{name}-s{seed}-{key}"
                if (seed, target, system, key) in evaluated:
                    continue  # the same SFTs evaluated under another variant's name
                evaluated.add((seed, target, system, key))
                control_lang = plan.control_lang if system == OTHER_LANG_SFT else None
                shown = variant.label if variant is not None and not variant.plain else system
                label = f"{plan.task}/{target} {shown}" + (f" ({control_lang} SFT)" if control_lang else "")
                add(Step("evaluation", run_id, _label(seed, label), seed,
                         state.finished(run_id, RESULTS_JSON), language=target, system=system,
                         lang_sft=lang_run, task_sft=task_run, control_lang=control_lang))
    return steps


def phase1_settings(config: TrainConfig) -> dict[str, Any]:
    """The settings phase 1 depends on: all but the method's and K (which only the selection reads)."""
    method_only = {f for m in METHODS.values() for f in m.own_settings} | {"method", "k"}
    return config.model_dump(exclude=method_only)


class StepProgress(Protocol):
    """Told when each step starts: its index (from 1), the number of steps, the step, and the
    seconds the steps still to run will take by the pace so far (None before one has run)."""

    def __call__(self, index: int, total: int, step: Step, eta: float | None) -> None: ...


def _mask_file(runs_dir: Path, run_id: str) -> Path:
    return runs_dir / f".mask-{run_id}.safetensors"


def _resumable(run_dir: Path) -> bool:
    """Whether an unfinished training step continues in its run directory (from its last checkpoint)."""
    info = read_run(run_dir)
    return bool(info.readable and info.get("status") != "finished" and info.get("resume_settings"))


def _clear(runs_dir: Path, step: Step) -> bool:
    """Remove what a failed or interrupted try of the step left that cannot be continued: a training
    that checkpointed is resumed (returns True), anything else runs again from scratch. A
    ``.mask-*`` file of the step is always removed (it is selected again)."""
    _mask_file(runs_dir, step.run_id).unlink(missing_ok=True)
    run_dir = runs_dir / step.run_id
    if step.kind != "evaluation" and _resumable(run_dir):
        return True
    if run_dir.exists():
        shutil.rmtree(run_dir)
    return False


# An evaluation costs about as much as this many training steps (a forward pass over a few hundred
# sentences); used for the time left until an evaluation has run.
EVALUATION_AS_TRAIN_STEPS = 5


def train_steps(step: Step) -> int | None:
    """The optimizer steps a training step will run (phase 2 only when its mask comes from another
    run), or ``None`` when that depends on a data set's size (an epoch budget over every example)."""
    config = step.config
    if config is None:
        return None
    if not config.max_examples and any(config.phase_budget(phase)[0] is None for phase in (1, 2)):
        return None
    return sum(total_steps(config, config.max_examples or 0, step.mask_from is not None).values())


@dataclass
class _Pace:
    """How long the steps run so far took: per kind, and per optimizer step of the trainings."""

    seconds: dict[str, list[float]] = field(default_factory=dict)
    training: list[tuple[float, int]] = field(default_factory=list)  # (seconds, optimizer steps)

    def add(self, step: Step, took: float) -> None:
        self.seconds.setdefault(step.kind, []).append(took)
        n = train_steps(step)
        if n:
            self.training.append((took, n))

    def eta(self, steps: list[Step], index: int) -> float | None:
        """Seconds left for the uncached steps from ``index`` on. Trainings: the seconds per optimizer
        step so far times their planned steps; evaluations: their mean so far (before one has run, as
        ``EVALUATION_AS_TRAIN_STEPS`` training steps); a step of unknown size: the mean of its kind."""
        done = [t for times in self.seconds.values() for t in times]
        if not done:
            return None
        overall = sum(done) / len(done)
        mean = {kind: sum(times) / len(times) for kind, times in self.seconds.items()}
        per_step = (sum(t for t, _ in self.training) / sum(n for _, n in self.training)) if self.training else None
        left = 0.0
        for step in steps[index:]:
            if step.cached:
                continue
            n = train_steps(step)
            if step.kind == "evaluation":
                left += mean.get("evaluation", per_step * EVALUATION_AS_TRAIN_STEPS if per_step else overall)
            elif n is not None and per_step is not None:
                left += per_step * n
            else:
                left += mean.get(step.kind, overall)
        return left


def execute(
    plan: TransferPlan,
    steps: list[Step],
    *,
    model: str | Path,
    data_dir: str | Path | None,
    runs_dir: Path,
    notify: Notify = lambda message: None,
    callbacks_for: Callable[[str], Iterable[Any]] = lambda label: (),
    on_step: StepProgress | None = None,
    save_every: int | None = None,
    run_step: Callable[..., dict[str, Any] | None] | None = None,
    jobs: int = 1,
    threads: int | None = None,
) -> list[dict[str, Any]]:
    """Run the uncached steps; returns every evaluation's result record, in plan order. A training
    step that was interrupted continues from its last checkpoint (every ``save_every`` steps;
    ``None``: the preset's default). ``run_step`` (for tests) replaces the training and evaluation
    of one step (run in a worker when ``jobs`` > 1: a module-level function).

    ``jobs`` > 1 runs up to that many steps at once in worker processes, each step once the steps it
    needs have finished (see :mod:`deftx.scheduler`), with ``threads`` torch threads per worker
    (default: the CPUs shared by the jobs). Then ``on_step`` is not called: each start and end is a
    ``notify`` line, and a training's events reach ``callbacks_for(label)`` in this process. With one
    job, ``threads`` (when given) limits this process's torch threads."""
    plan = plan.resolved()
    runs_dir = Path(runs_dir)
    run_step = run_step or _run_step
    if jobs < 1 or (threads is not None and threads < 1):
        raise UsageError(f"jobs and threads must be at least 1 (got jobs {jobs}, threads {threads})")
    experiment = ExperimentLog(runs_dir, [{"label": s.label, "kind": s.kind, "run_id": s.run_id, "cached": s.cached}
                                          for s in steps])
    try:
        if jobs > 1:
            results = _execute_parallel(plan, steps, experiment, run_step, model=model, data_dir=data_dir,
                                        runs_dir=runs_dir, notify=notify, callbacks_for=callbacks_for,
                                        save_every=save_every, jobs=jobs, threads=threads or default_threads(jobs))
        else:
            if threads is not None:
                limit_threads(threads)
            results = _execute(plan, steps, experiment, run_step, model=model, data_dir=data_dir, runs_dir=runs_dir,
                               notify=notify, callbacks_for=callbacks_for, on_step=on_step, save_every=save_every)
    except BaseException as exc:
        experiment.finish("interrupted" if isinstance(exc, (KeyboardInterrupt, TrainingInterrupted)) else "failed")
        raise
    experiment.finish("finished")
    return results


def _execute(plan: TransferPlan, steps: list[Step], experiment: ExperimentLog, run_step: Callable[..., Any], *,
             model: str | Path, data_dir: str | Path | None, runs_dir: Path, notify: Notify,
             callbacks_for: Callable[[str], Iterable[Any]], on_step: StepProgress | None,
             save_every: int | None) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    pace = _Pace()
    for index, step in enumerate(steps):
        eta = pace.eta(steps, index)
        if not step.cached:
            experiment.step(index + 1, step.label, eta)
        if on_step is not None:
            on_step(index + 1, len(steps), step, eta)
        run_dir = runs_dir / step.run_id
        if step.cached:
            notify(f"{step.label}: cached ({run_dir})")
            if step.kind == "evaluation":
                results.append(json.loads((run_dir / RESULTS_JSON).read_text()))
            continue
        resume = _clear(runs_dir, step)
        started = time.monotonic()
        record = run_step(plan, step, model=model, data_dir=data_dir, runs_dir=runs_dir, notify=notify,
                          callbacks=callbacks_for(step.label), save_every=save_every, resume=resume)
        pace.add(step, time.monotonic() - started)
        if step.kind == "evaluation" and record is not None:
            notify(f"{step.label}: {record['metric']} {record['metrics'][record['metric']]:.4f}")
            results.append(record)
    return results


def _execute_parallel(plan: TransferPlan, steps: list[Step], experiment: ExperimentLog, run_step: Callable[..., Any],
                      *, model: str | Path, data_dir: str | Path | None, runs_dir: Path, notify: Notify,
                      callbacks_for: Callable[[str], Iterable[Any]], save_every: int | None, jobs: int,
                      threads: int) -> list[dict[str, Any]]:
    """:func:`_execute` with up to ``jobs`` steps at once in worker processes. A failed step lets the
    running ones finish and starts no other; SIGTERM or Ctrl-C sends the running ones SIGTERM (a
    training checkpoints) and waits for them."""
    schedule = StepSchedule(steps)
    total = len(steps)
    for step in steps:
        if step.cached:
            notify(f"{step.label}: cached ({runs_dir / step.run_id})")
    records: dict[str, dict[str, Any]] = {}
    listeners: dict[str, list[Any]] = {}
    futures: dict[Future, int] = {}
    pace = _Pace()
    failure: tuple[int, StepError] | None = None
    stopping: type[BaseException] | None = None

    def progress() -> str:
        eta = pace.eta([steps[i] for i in [*schedule.running, *schedule.waiting]], 0)
        eta = eta / jobs if eta is not None else None
        indices = sorted(schedule.running)
        experiment.running([i + 1 for i in indices], [steps[i].label for i in indices], len(schedule.finished), eta)
        left = f"; about {format_duration(eta)} left in all" if eta is not None else ""
        return f"({len(indices)} running{left})"

    def handle(messages: list[tuple[Any, ...]]) -> None:
        for message in messages:
            if message[0] == "notify":
                notify(message[2])
            elif message[0] == "event":
                for listener in listeners.get(message[1], ()):
                    listener(message[2], message[3])

    def collect(future: Future) -> None:
        nonlocal failure
        index = futures.pop(future)
        step = steps[index]
        try:
            outcome = future.result()
        except BrokenProcessPool:
            outcome = StepOutcome(None, StepError("BrokenProcessPool", "its worker process died (killed, or out of "
                                                  "memory)", None, ProcessFailedError.exit_code, ""), 0.0)
        listeners.pop(step.run_id, None)
        if outcome.error is None:
            schedule.finish(index)
            pace.add(step, outcome.seconds)
            if step.kind == "evaluation" and outcome.record is not None:
                records[step.run_id] = outcome.record
                notify(f"{step.label}: {outcome.record['metric']} {outcome.record['metrics'][outcome.record['metric']]:.4f}")
            notify(f"step {index + 1} of {total} finished in {format_duration(outcome.seconds)}: {step.label} {progress()}")
            return
        schedule.fail(index)
        failure = failure or (index, outcome.error)
        what = "stopped" if outcome.error.stopped else "failed"
        n = len(schedule.running)
        waiting = f"; waiting for the {n} running step{'s' if n > 1 else ''} to finish" if n and not stopping else ""
        notify(f"step {index + 1} of {total} {what}: {step.label}{waiting}")

    pool = WorkerPool(jobs, threads)
    try:
        with _sigterm_sets(stop := []):
            while not schedule.done:
                try:
                    if stop and stopping is None:
                        raise _Terminated
                    if stopping is None and failure is None:
                        for index in schedule.next(jobs - len(schedule.running)):
                            step = steps[index]
                            options = dict(model=model, data_dir=data_dir, runs_dir=runs_dir, save_every=save_every,
                                           resume=_clear(runs_dir, step))
                            listeners[step.run_id] = list(callbacks_for(step.label))
                            futures[pool.submit(run_step, plan, step, options)] = index
                            notify(f"step {index + 1} of {total} started: {step.label} {progress()}")
                    handle(pool.messages(0.2))
                    for future in [f for f in futures if f.done()]:
                        collect(future)
                except (KeyboardInterrupt, _Terminated) as exc:
                    if stopping is not None:  # a second Ctrl-C: stop waiting
                        raise
                    stopping = KeyboardInterrupt if isinstance(exc, KeyboardInterrupt) else TrainingTerminated
                    schedule.waiting.clear()
                    notify(f"stopping the {len(schedule.running)} running step(s) (SIGTERM: a training saves a "
                           "checkpoint first)")
                    handle(pool.terminate(steps[i].run_id for i in schedule.running))
    finally:
        pool.close()
    if stopping is KeyboardInterrupt:
        raise KeyboardInterrupt
    if stopping is not None:
        raise TrainingTerminated("terminated (SIGTERM); the steps that were running stopped at their last checkpoint",
                                 hint="rerun the same command to resume")
    if failure is not None:
        index, error = failure
        raise error.to_exception(steps[index].label)
    return [records[s.run_id] if s.run_id in records else json.loads((runs_dir / s.run_id / RESULTS_JSON).read_text())
            for s in steps if s.kind == "evaluation" and (s.cached or s.run_id in records)]


class _Terminated(Exception):
    """SIGTERM reached the parent of the workers."""


@contextmanager
def _sigterm_sets(flag: list[bool]) -> Iterator[None]:
    """While inside, SIGTERM appends to ``flag`` instead of ending the process (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: flag.append(True))
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run_step(plan: TransferPlan, step: Step, *, model, data_dir, runs_dir: Path, notify: Notify,
              callbacks: Iterable[Any], save_every: int | None = None, resume: bool = False) -> dict[str, Any] | None:
    """Train or evaluate one step into ``runs_dir / step.run_id`` (a training continues from its
    last checkpoint with ``resume``)."""
    from deftx.pipeline import Checkpointing, evaluate_transfer, train_language_sft, train_task_sft

    def sft(run_id: str | None) -> Path | None:
        return runs_dir / run_id / "sft" if run_id is not None else None

    if step.kind == "evaluation":
        record, _ = evaluate_transfer(plan.task, step.language, sft(step.task_sft), lang_sft=sft(step.lang_sft),
                                      model=model, split=plan.split, data_dir=data_dir, runs_dir=runs_dir,
                                      run_id=step.run_id, system=step.system, control_lang=step.control_lang)
        return record
    checkpointing = Checkpointing(save_every=save_every, resume=resume)
    doing = "resuming" if resume else "training"
    mask_file = None
    if step.mask_from is not None:
        mask_file = _select_shared_mask(step, runs_dir)
        notify(f"{step.label}: phase 1 shared with {step.mask_from_label or step.mask_from}; mask selected from its difference")
    notify(f"{step.label}: {doing}")
    try:
        if step.kind == "task":
            train_task_sft(plan.train_task, plan.source_lang, step.config, model=model, lang_sft=sft(step.lang_sft),
                           data_dir=data_dir, runs_dir=runs_dir, run_id=step.run_id, callbacks=callbacks,
                           keep_phase1_diff=step.keep_phase1_diff, mask_file=mask_file, checkpointing=checkpointing)
        else:
            train_language_sft(step.language, step.config, model=model, data_dir=data_dir, runs_dir=runs_dir,
                               run_id=step.run_id, keep_phase1_diff=step.keep_phase1_diff, mask_file=mask_file,
                               callbacks=callbacks, checkpointing=checkpointing)
    finally:
        if mask_file is not None:
            mask_file.unlink(missing_ok=True)
    return None


def _select_shared_mask(step: Step, runs_dir: Path) -> Path:
    """The step's mask, selected by its method from the phase-1 difference of ``step.mask_from``."""
    from deftx.sft import load_difference, save_mask

    differences, meta = load_difference(runs_dir / step.mask_from / PHASE1_DIFF)
    selection = method_of(step.config).select(differences, step.config.k, in_place=True)
    del differences
    mask_file = _mask_file(runs_dir, step.run_id)
    save_mask(mask_file, selection.masks, {"base_fingerprint": meta.get("base_fingerprint"), **selection.event()})
    return mask_file


def run_transfer(plan: TransferPlan, *, model: str | Path, runs_dir: Path, **options: Any) -> list[dict[str, Any]]:
    """Plan and run (or resume) the experiment; returns every result record. ``options``: those of
    :func:`execute` (``data_dir``, ``notify``, ``callbacks_for``, ``on_step``, ``save_every``, ``jobs``,
    ``threads``)."""
    steps = plan_steps(plan, model=model, runs_dir=Path(runs_dir))
    return execute(plan, steps, model=model, runs_dir=Path(runs_dir), **options)
