"""A ``deftx`` command that signals itself at a chosen training event (for the resume tests).

    python tests/resume_child.py KILL|TERM EVENT[:PHASE:STEP] -- deftx arguments...

The progress display of the command is replaced by one that, after handling the event, sends the
process SIGKILL (``kill -9``: nothing runs after it) or SIGTERM (what a scheduler sends first).
"""

import os
import signal
import sys

import torch

from deftx_cli.commands import train, transfer
from deftx_cli.output import TrainingProgress


def main() -> None:
    how, when, _, *args = sys.argv[1:]
    signum = {"KILL": signal.SIGKILL, "TERM": signal.SIGTERM}[how]
    event, *where = when.split(":")
    target = tuple(int(x) for x in where)
    torch.set_num_threads(int(os.environ.get("DEFTX_TEST_THREADS", torch.get_num_threads())))

    class SignalAt(TrainingProgress):
        def __call__(self, kind, fields):
            super().__call__(kind, fields)
            if kind == event and (not target or (fields.get("phase"), fields.get("step")) == target):
                os.kill(os.getpid(), signum)

    train.TrainingProgress = SignalAt
    transfer.TrainingProgress = SignalAt
    from deftx_cli.app import app

    app(args, prog_name="deftx")


if __name__ == "__main__":
    main()
