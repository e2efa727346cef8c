"""What the CLI prints: errors and progress on stderr, data (tables, ``--json``) on stdout.

One error handler (:func:`handle_errors`) turns every :class:`deftx.errors.DeftxError` into
``deftx: error: <what>`` plus a hint on stderr and the error's exit code; a traceback only with
``DEFTX_DEBUG=1``. Ctrl-C exits 130.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import typer
from rich.console import Console

from deftx.analysis.denoise_summary import selection_kept
from deftx.errors import DeftxError
from deftx.metrics import collapse_warning, phase2_drop_warning

from deftx_cli.text import prepare_rates, prepare_text, size_text  # noqa: F401 - size_text: shared here

stdout = Console(highlight=False, soft_wrap=True)
stderr = Console(stderr=True, highlight=False)


def debug_enabled() -> bool:
    return os.environ.get("DEFTX_DEBUG", "") not in ("", "0", "false")


def fail(message: str, hint: str | None, code: int) -> typer.Exit:
    print(f"deftx: error: {message}", file=sys.stderr)
    if hint:
        print(f"  hint: {hint}", file=sys.stderr)
    return typer.Exit(code)


def exit_for(exc: DeftxError) -> typer.Exit:
    """Report a library error on stderr (unless the main process of a launch reports it); the exit
    to raise, with the error's code."""
    if exc.reported_elsewhere:
        return typer.Exit(exc.exit_code)
    return fail(exc.message, exc.hint, exc.exit_code)


def handle_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """The CLI's one error handler, wrapped around every command."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except typer.Exit:
            raise
        except DeftxError as exc:
            if debug_enabled():
                raise
            raise exit_for(exc) from None
        except KeyboardInterrupt:
            if debug_enabled():
                raise
            raise fail("interrupted", None, 130) from None
        except OSError as exc:
            if debug_enabled():
                raise
            where = f": {exc.filename}" if getattr(exc, "filename", None) else ""
            raise fail(f"{exc.strerror or exc}{where}", None, 3) from None
        except Exception as exc:  # a bug: say so plainly, keep the traceback for DEFTX_DEBUG=1
            if debug_enabled():
                raise
            raise fail(
                f"internal error: {type(exc).__name__}: {exc}",
                "run again with DEFTX_DEBUG=1 for the traceback, and please report it",
                1,
            ) from None

    return wrapper


def checkpointing_text(fields: dict[str, Any]) -> str:
    """The ``checkpointing`` event in one line: how often, how big per phase."""
    every = fields.get("save_every")
    when = f"checkpoints every {every} steps" if every else "checkpoints at the end of phase 1 and on SIGTERM only"
    sizes = [f"{size_text(fields[key])} each in phase {key[5]}" for key in ("phase1_bytes", "phase2_bytes") if fields.get(key)]
    return f"{when}, about {', '.join(sizes)} (the last {fields.get('keep', 2)} kept)" if sizes else when


def print_json(obj: Any) -> None:
    """One JSON document on stdout."""
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")
    sys.stdout.flush()


def note(message: str) -> None:
    """A line for people, on stderr."""
    stderr.print(message, markup=False, soft_wrap=True)  # one line per note, also in logs


def warn(message: str | None) -> None:
    """A warning line on stderr (nothing for ``None``)."""
    if message:
        print(message, file=sys.stderr, flush=True)


class TrainingProgress:
    """Engine events -> a Rich progress bar on a terminal, plain periodic lines otherwise."""

    def __init__(self, label: str, interval: float = 10.0, quiet: bool = False, bars: bool = True) -> None:
        self.label = label
        self.interval = interval
        self.quiet = quiet
        self.interactive = stderr.is_terminal and not quiet and bars  # bars=False: plain lines only
        self._progress = None
        self._task = None
        self._last_print = 0.0
        self._last: dict[str, Any] = {}

    def __call__(self, event: str, fields: dict[str, Any]) -> None:
        if event == "done":  # the end: a warning about the result shows even with --quiet
            self._stop()
            final = fields.get("summary") or {}
            final_eval = (final.get("phase2") or final.get("phase1") or {}).get("eval")
            warn(collapse_warning(final_eval, f"{self.label}, validation after training"))
            warn(phase2_drop_warning(final, self.label))
            return
        if self.quiet:
            return
        if event == "phase":
            self._start_phase(fields)
        elif event == "train":
            self._train(fields)
        elif event == "eval":
            metrics = ", ".join(f"{k} {v:.4f}" for k, v in fields["metrics"].items() if isinstance(v, float))
            when = "base model (before training)" if fields.get("base") else f"phase {fields.get('phase')}"
            self._line(f"{self.label}: {when} eval: {metrics}")
        elif event == "selection":
            line = f"{self.label}: selected K = {fields['k']:,} of {fields['maskable']:,} ({fields['density']:.2%})"
            kept = selection_kept(fields)
            if kept is not None:
                line += f"; denoised: {kept.text()}"
            self._line(line)
        elif event == "checkpointing":
            self._line(f"{self.label}: {checkpointing_text(fields)}")
        elif event == "notice":
            self._line(f"{self.label}: {fields['message']}")
        elif event == "resume":
            self._resume(fields)
        elif event == "prepare":
            self._prepare(fields)

    def _prepare(self, fields: dict[str, Any]) -> None:
        """Text preparation: a bar over the bytes read on a terminal, a line every few seconds otherwise."""
        stage = fields.get("stage")
        if stage in ("cached", "done", "rebuild", "streaming", "waiting"):
            self._stop()
            self._line(f"{self.label}: {prepare_text(fields)}")
            return
        examples = fields.get("examples_total") is not None
        total = fields.get("examples_total") if examples else fields.get("bytes_total")
        done = (fields.get("examples") if examples else fields.get("bytes_read")) or 0
        if self.interactive and total:
            if self._progress is None or self._last.get("stage") != stage:
                from rich.markup import escape
                from rich.progress import (
                    BarColumn,
                    DownloadColumn,
                    MofNCompleteColumn,
                    Progress,
                    TextColumn,
                    TimeRemainingColumn,
                )

                self._stop()
                what = "examples" if examples else "text"
                self._progress = Progress(TextColumn(escape(f"{self.label} {what} ({stage})")), BarColumn(),
                                          MofNCompleteColumn() if examples else DownloadColumn(),
                                          TextColumn("{task.fields[status]}"), TimeRemainingColumn(),
                                          console=stderr, transient=True)
                self._progress.start()
                self._task = self._progress.add_task("prepare", total=total, status="")
                self._last = {"stage": stage}
            self._progress.update(self._task, completed=done, status=prepare_rates(fields))
            return
        now = time.monotonic()
        if now - self._last_print >= self.interval:
            self._line(f"{self.label}: {prepare_text(fields)}")
            self._last_print = now

    def _resume(self, fields: dict[str, Any]) -> None:
        phase, step, total = fields.get("phase"), fields.get("step") or 0, fields.get("total_steps")
        if phase is None:
            self._line(f"{self.label}: restarting run {fields['run_id']} from step 0 (it had no checkpoint yet)")
            return
        where = "the end of phase 1" if fields.get("phase_done") else f"phase {phase} step {step}"
        self._line(f"{self.label}: resuming run {fields['run_id']} at {where} (checkpoint {fields['checkpoint']})")
        if not fields.get("phase_done") and total:
            self._start_phase({"phase": phase, "total_steps": total})
            if self._progress is not None:
                self._progress.update(self._task, completed=step)

    def _start_phase(self, fields: dict[str, Any]) -> None:
        self._stop()
        phase, total = fields["phase"], fields["total_steps"]
        what = "full fine-tuning" if phase == 1 else "sparse fine-tuning"
        if self.interactive:
            from rich.markup import escape
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._progress = Progress(
                TextColumn(escape(f"{self.label} phase {phase} ({what})")), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[status]}"), TimeRemainingColumn(), console=stderr, transient=False,
            )
            self._progress.start()
            self._task = self._progress.add_task("train", total=total, status="")
        else:
            self._line(f"{self.label}: phase {phase} ({what}), {total} steps")
        self._last_print = time.monotonic()

    def _train(self, fields: dict[str, Any]) -> None:
        status = f"loss {fields['loss']:.4f}"
        if fields.get("throughput"):
            status += f"  {fields['throughput']:.1f} ex/s"
        if self._progress is not None:
            self._progress.update(self._task, completed=fields["step"], status=status)
            return
        now = time.monotonic()
        if now - self._last_print >= self.interval or fields["step"] == fields["total_steps"]:
            self._line(f"{self.label}: phase {fields['phase']} step {fields['step']}/{fields['total_steps']} {status}")
            self._last_print = now

    def _line(self, text: str) -> None:
        if self._progress is not None:
            self._progress.console.print(text, markup=False)
        else:
            print(text, file=sys.stderr, flush=True)

    def _stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
