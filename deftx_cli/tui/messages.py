"""Messages the reader threads post to the screens, named after what happened.

Messages that carry a whole snapshot (``RunsRefreshed``, ``RunUpdated``, ``ResultsLoaded``) replace
an older one of their kind still waiting in the queue, so a slow frame never works through stale
updates. ``MetricsAppended`` carries only new lines and is never dropped.
"""

from __future__ import annotations

from pathlib import Path

from textual.message import Message

from deftx.records.reading import RunInfo
from deftx.records.schema import ResultRecord

from deftx_cli.tui.progress import RunRow
from deftx_cli.tui.series import RunSeries


class RunsRefreshed(Message):
    """The runs directory was read again; ``rows`` is every run, newest first.

    ``behind``: some big metrics file is still being read; another scan should follow at once.
    """

    def __init__(self, rows: list[RunRow], behind: bool = False, experiment: str | None = None) -> None:
        super().__init__()
        self.rows = rows
        self.behind = behind
        self.experiment = experiment  # the line on the directory's last deftx transfer, if any

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, RunsRefreshed)


class RunUpdated(Message):
    """The followed run was polled; ``row`` is where it stands now (``behind``: more lines wait)."""

    def __init__(self, row: RunRow, behind: bool = False) -> None:
        super().__init__()
        self.row = row
        self.behind = behind

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, RunUpdated)


class RunRecordChanged(Message):
    """The followed run's ``run.json`` changed (or was read for the first time)."""

    def __init__(self, info: RunInfo) -> None:
        super().__init__()
        self.info = info


class MetricsAppended(Message):
    """Complete new lines were appended to the followed run's ``metrics.jsonl``."""

    def __init__(self, batch: RunSeries, bad_lines: int, restarted: bool = False) -> None:
        super().__init__()
        self.batch = batch
        self.bad_lines = bad_lines
        self.restarted = restarted  # the file was rewritten (a resumed run): the batch is the whole series


class ResultLoaded(Message):
    """The followed run's ``results.json`` appeared or changed."""

    def __init__(self, record: ResultRecord) -> None:
        super().__init__()
        self.record = record


class ResultsLoaded(Message):
    """Every ``results.json`` under the runs directory was read (``unreadable``: why some were not)."""

    def __init__(self, records: list[ResultRecord], unreadable: list[str] | None = None) -> None:
        super().__init__()
        self.records = records
        self.unreadable = unreadable or []

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, ResultsLoaded)


class ComparisonExported(Message):
    """The comparison table was written to ``paths`` (or failed with ``error``)."""

    def __init__(self, paths: list[Path], error: str | None = None) -> None:
        super().__init__()
        self.paths = paths
        self.error = error


class ReadFailed(Message):
    """A reader thread hit an unexpected error; the dashboard keeps going and says so."""

    def __init__(self, what: str, error: str) -> None:
        super().__init__()
        self.what = what
        self.error = error
