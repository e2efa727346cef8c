"""One error hierarchy for the library; each error carries the exit code the CLI uses.

Exit codes:
    1   unexpected internal error (a bug: please report it)
    2   bad usage or settings (K out of range, malformed rank rule, conflicting options)
    3   input not found or unreadable (a path, a model, a data set)
    4   bad data (missing columns, labels outside the task's label set, empty file)
    5   bad or mismatched artifact (checksum, format version, base-model fingerprint, label set)
    6   another process of a multi-process training failed or stopped answering
    130 interrupted (Ctrl-C)
    143 terminated (SIGTERM); a checkpoint was saved first, rerun with --resume
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class DeftxError(Exception):
    """Base class: a problem the user can fix. ``hint`` says how."""

    exit_code = 1
    # True when another process reports the same error (a stop all processes of a launch agreed on):
    # the CLI then exits with the code and prints nothing.
    reported_elsewhere = False

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class UsageError(DeftxError):
    """A setting has a value that cannot work (K <= 0, malformed rank rule, ...)."""

    exit_code = 2


class InputNotFoundError(DeftxError):
    """A path, model or data set could not be found or read."""

    exit_code = 3


class UnknownNameError(InputNotFoundError):
    """A language, task or preset name is not known; suggests the close ones."""

    def __init__(self, what: str, name: str, known: Iterable[str], hint: str | None = None) -> None:
        known = sorted(set(known))
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
        if close:
            message = f"unknown {what} '{name}'; did you mean {', '.join(repr(c) for c in close)}?"
        else:
            message = f"unknown {what} '{name}'"
        if hint is None:
            shown = ", ".join(known[:24]) + (" ..." if len(known) > 24 else "")
            hint = f"known {what}s: {shown}"
        super().__init__(message, hint)
        self.name = name
        self.suggestions = close


class DataFormatError(DeftxError):
    """A data file does not have the expected shape or content."""

    exit_code = 4


class ArtifactError(DeftxError):
    """An SFT, mask or difference file is corrupt, truncated or of an unknown format."""

    exit_code = 5


class FingerprintMismatchError(ArtifactError):
    """An SFT was trained on other base weights than the model it is applied to."""


class LabelMismatchError(ArtifactError):
    """A task SFT's labels do not match the evaluation set's labels."""


class ProcessFailedError(DeftxError):
    """A process of a multi-process (data-parallel) training died or stopped answering; the run is
    marked failed and no SFT is written."""

    exit_code = 6


class TrainingInterrupted(DeftxError):
    """Training was stopped with Ctrl-C; the run is marked interrupted."""

    exit_code = 130


class TrainingTerminated(TrainingInterrupted):
    """Training received SIGTERM (a scheduler's notice before it kills the job): a checkpoint was
    saved and the run is marked interrupted."""

    exit_code = 143
