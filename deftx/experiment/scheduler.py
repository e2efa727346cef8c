"""Running the independent steps of an experiment side by side, in worker processes.

:class:`StepSchedule` is the pure part: from the plan's steps and those finished, which may start now.
A step waits for every step whose run it names (:func:`dependencies`: the run whose phase-1
difference gives its mask, the language SFT it applies, the task SFT it evaluates). Of the steps
ready, those that more later steps wait for (directly or through others) start first, then plan order:
a task SFT that a dozen evaluations need does not wait behind language SFTs that one evaluation needs.

:class:`WorkerPool` runs steps in up to ``jobs`` "spawn" worker processes, each limited to
``threads`` torch threads. A worker sends what happens as plain messages on one queue (the step
started in process ``pid``, a line for people, a training event), returns a :class:`StepOutcome`
and never raises: an exception travels back as a :class:`StepError` (plain data: not every library
error survives pickling) that the parent turns into one error with the step's exit code. Workers
ignore Ctrl-C; the parent stops them with SIGTERM, on which a training checkpoints and stops (a step
that has not started training yet stops before its first step; an evaluation finishes).

This module imports no torch at import time: a worker sets its thread limits before torch loads.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import queue
import signal
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

from deftx.errors import DeftxError, TrainingInterrupted, TrainingTerminated
from deftx.signals import note_sigterm

# The variables the math libraries read for their thread pools, set in each worker before torch loads.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


class Schedulable(Protocol):
    """What the scheduler asks of a step: its run id, whether it is already done, a label for people,
    and the run ids that must be finished before it starts (``after``)."""

    run_id: str
    cached: bool
    label: str

    @property
    def after(self) -> set[str]: ...


def dependencies(step: Schedulable) -> set[str]:
    """The run ids a step needs finished before it starts."""
    return set(step.after)


def _descendants(steps: Sequence[Schedulable], needs: Sequence[set[str]]) -> list[int]:
    """For each step, how many steps wait for it, directly or through other steps."""
    index = {s.run_id: i for i, s in enumerate(steps)}
    children: list[set[int]] = [set() for _ in steps]
    for i, wanted in enumerate(needs):
        for run_id in wanted:
            children[index[run_id]].add(i)
    memo: dict[int, set[int]] = {}

    def below(i: int) -> set[int]:
        if i not in memo:
            memo[i] = set()
            for child in children[i]:
                memo[i] |= {child} | below(child)
        return memo[i]

    return [len(below(i)) for i in range(len(steps))]


class StepSchedule:
    """Which steps may start, given those finished and running. Cached steps count as finished;
    a dependency that is no step of the plan is taken as already there."""

    def __init__(self, steps: Sequence[Schedulable]) -> None:
        self.steps = list(steps)
        ids = {s.run_id for s in self.steps}
        self.needs = [dependencies(s) & ids for s in self.steps]
        self.finished = {s.run_id for s in self.steps if s.cached}
        self.waiting = [i for i, s in enumerate(self.steps) if not s.cached]
        self.running: list[int] = []
        self.unblocks = _descendants(self.steps, self.needs)

    def ready(self) -> list[int]:
        """Indices of the waiting steps whose dependencies all finished: those that more steps wait
        for first, then in plan order."""
        ready = [i for i in self.waiting if self.needs[i] <= self.finished]
        return sorted(ready, key=lambda i: (-self.unblocks[i], i))

    def next(self, slots: int) -> list[int]:
        """The steps to start now with ``slots`` free workers (marked running)."""
        chosen = self.ready()[:max(0, slots)]
        for i in chosen:
            self.waiting.remove(i)
            self.running.append(i)
        if not chosen and not self.running and self.waiting:
            raise RuntimeError("steps wait for each other: " + ", ".join(self.steps[i].label for i in self.waiting))
        return chosen

    def finish(self, index: int) -> None:
        self.running.remove(index)
        self.finished.add(self.steps[index].run_id)

    def fail(self, index: int) -> None:
        """The step ended without its result: nothing new starts after it."""
        self.running.remove(index)
        self.waiting.clear()

    @property
    def done(self) -> bool:
        return not self.waiting and not self.running


# What one training job may hold in memory (a base-size encoder, its optimizer state and phase-1
# difference, the data): the default number of jobs keeps within the memory available.
MIN_JOB_THREADS = 1  # cores each job keeps when --jobs is not given (see default_jobs)
JOB_MEMORY = 3 << 30


def available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def available_memory() -> int | None:
    """Bytes of memory available now (``None`` when the system does not say)."""
    try:
        with open("/proc/meminfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def plan_width(steps: Sequence[Schedulable]) -> int:
    """The most steps still to run that could run at the same time: of the steps not cached, the
    largest number at one depth of their dependencies."""
    todo = {s.run_id: s for s in steps if not s.cached}
    depth: dict[str, int] = {}

    def level(run_id: str, seen: frozenset[str] = frozenset()) -> int:
        if run_id not in depth:
            before = [level(r, seen | {run_id}) + 1 for r in dependencies(todo[run_id]) if r in todo and r not in seen]
            depth[run_id] = max(before, default=0)
        return depth[run_id]

    counts: dict[int, int] = {}
    for run_id in todo:
        counts[level(run_id)] = counts.get(level(run_id), 0) + 1
    return max(counts.values(), default=0)


def default_jobs(steps: Sequence[Schedulable], *, cuda: bool) -> int:
    """Jobs side by side when ``--jobs`` is not given. On a CPU, processes of one thread each do more
    per core than one process of many threads (on 2 cores, the README's first run took 19 min 48 s as
    two single-thread jobs against about 28 min as one two-thread job: masked-LM steps at 1.24x, task
    steps at about 1.3x; docs/benchmarks.md), so: as many jobs as the cores (``MIN_JOB_THREADS`` each),
    as the plan has steps that can run at once, and as the memory holds (``JOB_MEMORY`` each). On a
    GPU: one job (the device is shared, not its cores)."""
    if cuda:
        return 1
    memory = available_memory()
    by_memory = max(1, memory // JOB_MEMORY) if memory is not None else 1
    return max(1, min(available_cpus() // MIN_JOB_THREADS, plan_width(steps), by_memory))


def default_threads(jobs: int) -> int:
    """Torch threads per job when not given: the CPUs this process may use, shared by the jobs."""
    return max(1, available_cpus() // max(1, jobs))


def limit_threads(threads: int) -> None:
    """At most ``threads`` threads for torch's math in this process (the environment variables for a
    torch not loaded yet, ``torch.set_num_threads`` for one that is)."""
    for variable in THREAD_VARIABLES:
        os.environ[variable] = str(threads)
    import torch

    torch.set_num_threads(threads)


@dataclass
class StepError:
    """An exception of a step in a worker, as plain data."""

    type: str
    message: str
    hint: str | None
    exit_code: int
    traceback: str

    @classmethod
    def of(cls, exc: BaseException) -> StepError:
        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        if isinstance(exc, DeftxError):
            return cls(type(exc).__name__, exc.message, exc.hint, exc.exit_code, tb)
        if isinstance(exc, KeyboardInterrupt):
            return cls("TrainingInterrupted", "interrupted", None, TrainingInterrupted.exit_code, tb)
        if isinstance(exc, OSError):
            where = f": {exc.filename}" if getattr(exc, "filename", None) else ""
            return cls(type(exc).__name__, f"{exc.strerror or exc}{where}", None, 3, tb)
        text = " ".join(str(exc).split())  # one line
        return cls(type(exc).__name__, f"internal error: {type(exc).__name__}: {text}",
                   "run again with DEFTX_DEBUG=1 for the traceback, and please report it", 1, tb)

    @property
    def stopped(self) -> bool:
        """Whether the step was stopped (SIGTERM, Ctrl-C) rather than failed."""
        return self.exit_code in (TrainingInterrupted.exit_code, TrainingTerminated.exit_code)

    def to_exception(self, label: str) -> DeftxError:
        """The error to raise in the parent: the step's label, its message, its exit code."""
        message = f"{label}: {self.message}"
        if self.exit_code == TrainingTerminated.exit_code:
            return TrainingTerminated(message, self.hint or "rerun the same command to resume")
        if self.exit_code == TrainingInterrupted.exit_code:
            return TrainingInterrupted(message, self.hint or "rerun the same command to resume")
        error = StepFailedError(message, self.hint, self.exit_code)
        error.worker_traceback = self.traceback
        return error


class StepFailedError(DeftxError):
    """A step failed in a worker process; carries that error's exit code and message."""

    def __init__(self, message: str, hint: str | None, exit_code: int) -> None:
        super().__init__(message, hint)
        self.exit_code = exit_code
        self.worker_traceback = ""

    def __reduce__(self) -> Any:
        return (type(self), (self.message, self.hint, self.exit_code))


@dataclass
class StepOutcome:
    """What a worker returns for one step: the result record (evaluations) or the error."""

    record: dict[str, Any] | None
    error: StepError | None
    seconds: float


# ---------------------------------------------------------------------------------- in a worker

_events: Any = None  # the queue to the parent, set when the worker starts
_threads = 1


def _start_worker(threads: int, events: Any) -> None:
    global _events, _threads
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the parent, which stops the workers
    # Noted only: a training replaces this while it runs (it checkpoints first), and one that starts
    # after a SIGTERM stops before its first step. Raising here, at whatever line the worker is on
    # (an import, the executor's loop), would be swallowed or leave a traceback on the screen.
    signal.signal(signal.SIGTERM, note_sigterm)
    _events, _threads = events, threads
    for variable in THREAD_VARIABLES:
        os.environ[variable] = str(threads)


def _send(message: tuple[Any, ...]) -> None:
    try:
        data = pickle.dumps(message)
    except Exception:  # an event that cannot travel is left out, not the step
        return
    _events.put(data)


def _work(run_step: Callable[..., dict[str, Any] | None], plan: Any, step: Schedulable, options: dict[str, Any]) -> StepOutcome:
    """Run one step in this worker; never raises."""
    started = time.monotonic()
    _send(("started", step.run_id, os.getpid()))
    try:
        limit_threads(_threads)
        record = run_step(plan, step, notify=lambda message: _send(("notify", step.run_id, message)),
                          callbacks=[lambda event, fields: _send(("event", step.run_id, event, fields))], **options)
        return StepOutcome(record, None, time.monotonic() - started)
    except BaseException as exc:  # noqa: BLE001 - everything goes back to the parent as data
        return StepOutcome(None, StepError.of(exc), time.monotonic() - started)


# ---------------------------------------------------------------------------------- in the parent


class WorkerPool:
    """Up to ``jobs`` spawn workers with ``threads`` torch threads each, and their messages."""

    def __init__(self, jobs: int, threads: int) -> None:
        context = multiprocessing.get_context("spawn")
        self.events = context.Queue()
        self.executor = ProcessPoolExecutor(jobs, mp_context=context, initializer=_start_worker,
                                            initargs=(threads, self.events))
        self.pids: dict[str, int] = {}  # run id -> the worker process running it

    def submit(self, run_step: Callable[..., Any], plan: Any, step: Schedulable, options: dict[str, Any]) -> Future:
        return self.executor.submit(_work, run_step, plan, step, options)

    def messages(self, timeout: float) -> list[tuple[Any, ...]]:
        """The workers' messages so far (waiting up to ``timeout`` seconds for the first one)."""
        out = []
        try:
            while True:
                message = pickle.loads(self.events.get(timeout=timeout if not out else 0))
                if message[0] == "started":
                    self.pids[message[1]] = message[2]
                out.append(message)
        except queue.Empty:
            pass
        return out

    def terminate(self, run_ids: Iterable[str], grace: float = 10.0) -> list[tuple[Any, ...]]:
        """SIGTERM to the workers running ``run_ids`` (waiting up to ``grace`` seconds for a worker
        still starting to say which process it is); returns the messages read meanwhile."""
        run_ids = list(run_ids)
        seen = self.messages(0)
        deadline = time.monotonic() + grace
        while any(r not in self.pids for r in run_ids) and time.monotonic() < deadline:
            seen += self.messages(0.1)
        for run_id in run_ids:
            pid = self.pids.get(run_id)
            if pid is not None:
                try:
                    os.kill(pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        return seen

    def close(self) -> None:
        self.executor.shutdown(wait=True, cancel_futures=True)
        self.events.close()
        self.events.join_thread()
