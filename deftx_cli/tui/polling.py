"""Reading run files off the event loop, for every view: one read at a time on a thread worker, at an
interval and on demand, only while the view is on top. The read returns the messages to post; a read
that fails posts :class:`ReadFailed` instead (once while the same failure repeats), and the dashboard
carries on."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from textual.message import Message
from textual.screen import Screen

from deftx_cli.tui.messages import ReadFailed


class FilePoller:
    """Runs ``read`` (which only reads files) on a thread worker of ``screen`` and posts what it
    returns. ``what`` names the source in a failure message; ``group`` is the worker group."""

    def __init__(self, screen: Screen, read: Callable[[], Iterable[Message]], *, what: str, group: str) -> None:
        self.screen = screen
        self.read = read
        self.what = what
        self.group = group
        self.reading = False
        self.last_failure: str | None = None  # since the last read that worked

    def start(self, interval: float) -> None:
        """Poll every ``interval`` seconds, and now."""
        self.screen.set_interval(interval, self.poll)
        self.poll()

    def poll(self) -> None:
        """Start a read unless one is under way or another view is on top."""
        if self.reading or not self.screen.is_current:
            return
        self.reading = True
        self.screen.run_worker(self._work, thread=True, group=self.group, exit_on_error=False)

    def _work(self) -> None:
        try:
            messages = list(self.read())
        except Exception as exc:  # never let a strange file system take the dashboard down
            self.reading = False
            failure = f"{type(exc).__name__}: {exc}"
            if failure != self.last_failure:
                self.last_failure = failure
                self.screen.post_message(ReadFailed(self.what, failure))
            return
        self.reading = False  # before posting, so a handler may start the next read
        self.last_failure = None
        for message in messages:
            self.screen.post_message(message)
