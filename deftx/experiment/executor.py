"""Running a planned experiment: the uncached steps in order, or several at once in worker processes
(:mod:`deftx.experiment.scheduler`), each once the steps it needs have finished. Finished steps are
reused, and an interrupted training continues from its last checkpoint, so a second call resumes
where the first stopped.
"""

from __future__ import annotations

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

import torch

from deftx.errors import (
    ProcessFailedError,
    TrainingInterrupted,
    TrainingTerminated,
    UsageError,
)
from deftx.experiment.evaluation import evaluate_transfer
from deftx.experiment.language import train_language_sft
from deftx.experiment.lifecycle import Checkpointing, total_steps
from deftx.experiment.plan import Step, TransferPlan, plan_steps
from deftx.experiment.scheduler import (
    StepError,
    StepOutcome,
    StepSchedule,
    WorkerPool,
    default_jobs,
    default_threads,
    limit_threads,
)
from deftx.experiment.task import train_multi_source_task_sft, train_task_sft
from deftx.methods import method_of
from deftx.model import check_max_length
from deftx.records.files import PHASE1_DIFF, RESULTS_JSON, format_duration
from deftx.records.reading import read_run
from deftx.records.runs import ExperimentLog
from deftx.sft.diff import load_difference, save_mask

Notify = Callable[[str], None]


class StepProgress(Protocol):
    """Told when each step starts: its index (from 1), the number of steps, the step, and the
    seconds the steps still to run will take by the pace so far (None before one has run)."""

    def __call__(self, index: int, total: int, step: Step, eta: float | None) -> None: ...


def _mask_file(runs_dir: Path, run_id: str) -> Path:
    return runs_dir / f".mask-{run_id}.safetensors"


def _resumable(run_dir: Path) -> bool:
    """Whether an unfinished training step continues in its run directory (from its last checkpoint)."""
    info = read_run(run_dir)
    return bool(info.record is not None and info.record.status != "finished" and info.record.resume_settings)


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
    needs have finished (see :mod:`deftx.experiment.scheduler`), with ``threads`` torch threads per worker
    (default: the CPUs shared by the jobs). Then ``on_step`` is not called: each start and end is a
    ``notify`` line, and a training's events reach ``callbacks_for(label)`` in this process. With one
    job, ``threads`` (when given) limits this process's torch threads."""
    plan = plan.resolved()
    runs_dir = Path(runs_dir)
    if jobs < 1 or (threads is not None and threads < 1):
        raise UsageError(f"jobs and threads must be at least 1 (got jobs {jobs}, threads {threads})")
    if run_step is None:
        _check_lengths(steps, model)
    run_step = run_step or _run_step
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
    except TrainingInterrupted as exc:  # a training's hint names train-lang's --resume: transfer resumes by itself
        experiment.finish("interrupted")
        exc.hint = RESUME_HINT
        raise
    except BaseException as exc:
        experiment.finish("interrupted" if isinstance(exc, KeyboardInterrupt) else "failed")
        raise
    experiment.finish("finished")
    return results


RESUME_HINT = ("run the same deftx transfer command again: finished steps are reused and an interrupted training "
               "continues from its last checkpoint")


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
    for step in steps:
        if step.cached:
            notify(f"{step.label}: cached ({runs_dir / step.run_id})")
    options = dict(model=model, data_dir=data_dir, runs_dir=runs_dir, save_every=save_every)
    run = _ParallelRun(plan, steps, experiment, run_step, options, notify, callbacks_for, jobs)
    pool = WorkerPool(jobs, threads)
    try:
        with _sigterm_sets(stop := []):
            while not run.schedule.done:
                try:
                    if stop and run.stopping is None:
                        raise _Terminated
                    run.start_ready(pool)
                    run.handle(pool.messages(0.2))
                    run.collect_done()
                except (KeyboardInterrupt, _Terminated) as exc:
                    if run.stopping is not None:  # a second Ctrl-C: stop waiting
                        raise
                    run.stop(KeyboardInterrupt if isinstance(exc, KeyboardInterrupt) else TrainingTerminated, pool)
    finally:
        pool.close()
    if run.stopping is KeyboardInterrupt:
        raise KeyboardInterrupt
    if run.stopping is not None:
        raise TrainingTerminated("terminated (SIGTERM); the steps that were running stopped at their last checkpoint")
    if run.failure is not None:
        index, error = run.failure
        raise error.to_exception(steps[index].label)
    return [run.records[s.run_id] if s.run_id in run.records
            else json.loads((runs_dir / s.run_id / RESULTS_JSON).read_text())
            for s in steps if s.kind == "evaluation" and (s.cached or s.run_id in run.records)]


class _ParallelRun:
    """The state of an experiment run side by side: the schedule, the steps in flight and their
    listeners, the records so far, the pace, and how it ends (a failure, or a stop asked for)."""

    def __init__(self, plan: TransferPlan, steps: list[Step], experiment: ExperimentLog, run_step: Callable[..., Any],
                 options: dict[str, Any], notify: Notify, callbacks_for: Callable[[str], Iterable[Any]],
                 jobs: int) -> None:
        self.plan, self.steps, self.experiment, self.run_step = plan, steps, experiment, run_step
        self.options, self.notify, self.callbacks_for, self.jobs = options, notify, callbacks_for, jobs
        self.schedule = StepSchedule(steps)
        self.records: dict[str, dict[str, Any]] = {}
        self.listeners: dict[str, list[Any]] = {}
        self.futures: dict[Future, int] = {}
        self.pace = _Pace()
        self.failure: tuple[int, StepError] | None = None
        self.stopping: type[BaseException] | None = None

    def progress(self) -> str:
        """``(2 running; about 6m10s left in all)``, and the experiment record brought up to date."""
        eta = self.pace.eta([self.steps[i] for i in [*self.schedule.running, *self.schedule.waiting]], 0)
        eta = eta / self.jobs if eta is not None else None
        indices = sorted(self.schedule.running)
        self.experiment.running([i + 1 for i in indices], [self.steps[i].label for i in indices],
                                len(self.schedule.finished), eta)
        left = f"; about {format_duration(eta)} left in all" if eta is not None else ""
        return f"({len(indices)} running{left})"

    def start_ready(self, pool: WorkerPool) -> None:
        """Start the steps that may start, while nothing failed and no stop was asked for."""
        if self.stopping is not None or self.failure is not None:
            return
        runs_dir = self.options["runs_dir"]
        for index in self.schedule.next(self.jobs - len(self.schedule.running)):
            step = self.steps[index]
            self.listeners[step.run_id] = list(self.callbacks_for(step.label))
            options = {**self.options, "resume": _clear(runs_dir, step)}
            self.futures[pool.submit(self.run_step, self.plan, step, options)] = index
            self.notify(f"step {index + 1} of {len(self.steps)} started: {step.label} {self.progress()}")

    def handle(self, messages: list[tuple[Any, ...]]) -> None:
        """The workers' lines for people and training events, to their listeners."""
        for message in messages:
            if message[0] == "notify":
                self.notify(message[2])
            elif message[0] == "event":
                for listener in self.listeners.get(message[1], ()):
                    listener(message[2], message[3])

    def collect_done(self) -> None:
        for future in [f for f in self.futures if f.done()]:
            self._collect(future)

    def _collect(self, future: Future) -> None:
        index = self.futures.pop(future)
        step = self.steps[index]
        try:
            outcome = future.result()
        except BrokenProcessPool:
            outcome = StepOutcome(None, StepError("BrokenProcessPool", "its worker process died (killed, or out of "
                                                  "memory)", None, ProcessFailedError.exit_code, ""), 0.0)
        self.listeners.pop(step.run_id, None)
        total = len(self.steps)
        if outcome.error is None:
            self.schedule.finish(index)
            self.pace.add(step, outcome.seconds)
            if step.kind == "evaluation" and outcome.record is not None:
                self.records[step.run_id] = outcome.record
                self.notify(f"{step.label}: {outcome.record['metric']} {outcome.record['metrics'][outcome.record['metric']]:.4f}")
            self.notify(f"step {index + 1} of {total} finished in {format_duration(outcome.seconds)}: {step.label} "
                        f"{self.progress()}")
            return
        self.schedule.fail(index)
        self.failure = self.failure or (index, outcome.error)
        what = "stopped" if outcome.error.stopped else "failed"
        n = len(self.schedule.running)
        waiting = f"; waiting for the {n} running step{'s' if n > 1 else ''} to finish" if n and not self.stopping else ""
        self.notify(f"step {index + 1} of {total} {what}: {step.label}{waiting}")

    def stop(self, how: type[BaseException], pool: WorkerPool) -> None:
        """SIGTERM or Ctrl-C: start nothing more and send the running steps SIGTERM."""
        self.stopping = how
        self.schedule.waiting.clear()
        self.notify(f"stopping the {len(self.schedule.running)} running step(s) (SIGTERM: a training saves a "
                    "checkpoint first)")
        self.handle(pool.terminate(self.steps[i].run_id for i in self.schedule.running))


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
        if step.kind == "task" and step.sources is not None:
            train_multi_source_task_sft(
                plan.task, step.sources, step.config, model=model,
                lang_sfts={lang: sft(run_id) for lang, run_id in (step.source_sfts or {}).items()},
                data_dir=data_dir, runs_dir=runs_dir, run_id=step.run_id, callbacks=callbacks,
                keep_phase1_diff=step.keep_phase1_diff, mask_file=mask_file, checkpointing=checkpointing,
                sampling=plan.source_sampling)
        elif step.kind == "task":
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

    differences, meta = load_difference(runs_dir / step.mask_from / PHASE1_DIFF)
    selection = method_of(step.config).select(differences, step.config.k, in_place=True)
    del differences
    mask_file = _mask_file(runs_dir, step.run_id)
    save_mask(mask_file, selection.masks, {"base_fingerprint": meta.get("base_fingerprint"), **selection.event()})
    return mask_file


def _check_lengths(steps: list[Step], model: str | Path) -> None:
    """Every training's sequence length must fit the model, before the first step starts."""
    lengths = {(s.kind, s.config.max_length) for s in steps if s.config is not None and not s.cached}
    for kind, length in sorted(lengths):
        check_max_length(model, length, option=f"{'--lang-set' if kind == 'language' else '--task-set'} max_length=")


def choose_jobs(steps: list[Step], threads: int | None = None) -> tuple[int, int]:
    """``--jobs`` and ``--threads`` when ``--jobs`` is not given: as many single-thread jobs as the
    cores, the plan's parallel steps and the memory allow on a CPU, one job on a GPU
    (:func:`~deftx.experiment.scheduler.default_jobs`); one job for a plan of ``smoke`` trainings only."""
    training = [s for s in steps if s.config is not None and not s.cached]
    if training and all(s.config.preset == "smoke" for s in training):
        jobs = 1  # steps of seconds: a worker's start (importing torch, loading the model) costs more than it saves
    else:
        jobs = default_jobs(steps, cuda=torch.cuda.is_available())
    return jobs, threads or default_threads(jobs)


def run_transfer(plan: TransferPlan, *, model: str | Path, runs_dir: Path, **options: Any) -> list[dict[str, Any]]:
    """Plan and run (or resume) the experiment; returns every result record. ``options``: those of
    :func:`execute` (``data_dir``, ``notify``, ``callbacks_for``, ``on_step``, ``save_every``, ``jobs``,
    ``threads``); ``jobs=None`` chooses them (:func:`choose_jobs`)."""
    steps = plan_steps(plan, model=model, runs_dir=Path(runs_dir))
    if options.get("jobs", 1) is None:
        options["jobs"], options["threads"] = choose_jobs(steps, options.get("threads"))
    return execute(plan, steps, model=model, runs_dir=Path(runs_dir), **options)
