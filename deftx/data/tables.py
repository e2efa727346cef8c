"""Reading local files: UTF-8 text, CSV, TSV and JSON Lines, with errors that name the file and line.

TSV is read without quote processing (``csv.QUOTE_NONE``), as the AmericasNLI, XNLI and SICK files
need: their fields contain literal ``"`` characters. CSV follows the usual quoting rules.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deftx.errors import DataFormatError, InputNotFoundError

TABLE_FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "jsonl"}


def unopenable(path: Path, exc: OSError) -> InputNotFoundError:
    """The one-line error for a file that could not be opened, by why."""
    if isinstance(exc, FileNotFoundError):
        return InputNotFoundError(f"{path} not found")
    if isinstance(exc, IsADirectoryError):
        return InputNotFoundError(f"{path} is a directory, not a file")
    if isinstance(exc, PermissionError):
        return InputNotFoundError(f"{path} cannot be read: permission denied")
    return InputNotFoundError(f"{path} cannot be read: {exc.strerror or exc}")


def read_file_text(path: Path, *, universal_newlines: bool = True) -> str:
    """The whole file decoded as UTF-8 (a byte-order mark is dropped).

    ``universal_newlines=False`` keeps ``\\r\\n`` inside quoted CSV fields, as the csv module wants.
    """
    try:
        with open(path, encoding="utf-8-sig", newline=None if universal_newlines else "") as handle:
            return handle.read()
    except (FileNotFoundError, IsADirectoryError, PermissionError) as exc:
        raise unopenable(path, exc) from None
    except UnicodeDecodeError as exc:
        line = exc.object[: exc.start].count(b"\n") + 1
        raise DataFormatError(
            f"{path} is not UTF-8 text (byte {exc.object[exc.start]:#04x} on line {line})",
            hint="convert the file to UTF-8",
        ) from None
    except OSError as exc:
        raise InputNotFoundError(f"{path} cannot be read: {exc.strerror or exc}") from None


def text_lines(path: Path) -> list[str]:
    """The stripped, non-empty lines of a plain-text file."""
    return [line.strip() for line in read_file_text(path).split("\n") if line.strip()]


def table_format(path: Path) -> str:
    """``csv``, ``tsv`` or ``jsonl`` from the file extension."""
    fmt = TABLE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise DataFormatError(
            f"{path}: unknown table format '{path.suffix}'", hint="use a .csv, .tsv or .jsonl (JSON Lines) file"
        )
    return fmt


@dataclass
class Table:
    """The rows of a file as ``(line number, record)`` pairs, with the column names in file order."""

    path: Path
    columns: list[str]
    rows: list[tuple[int, dict[str, Any]]] = field(default_factory=list)

    def column(self, name: str) -> str | None:
        """The file's spelling of column ``name`` (case-insensitive), or None."""
        wanted = name.casefold()
        return next((c for c in self.columns if c.casefold() == wanted), None)


def read_table(path: Path, fmt: str | None = None, *, fieldnames: tuple[str, ...] | None = None) -> Table:
    """Read a CSV, TSV or JSON Lines file (``fmt`` from the extension when None).

    ``fieldnames`` names the columns of a CSV/TSV file that has no header row. Blank rows are skipped;
    a file without rows is a :class:`DataFormatError`.
    """
    path = Path(path)
    fmt = fmt or table_format(path)
    table = _read_jsonl(path) if fmt == "jsonl" else _read_delimited(path, fmt, fieldnames)
    if not table.rows:
        what = "is empty" if not table.columns or fieldnames else "has a header but no rows"
        raise DataFormatError(f"{path} {what}")
    return table


def _read_delimited(path: Path, fmt: str, fieldnames: tuple[str, ...] | None) -> Table:
    text = read_file_text(path, universal_newlines=False)
    if fmt == "tsv":
        reader = csv.reader(io.StringIO(text, newline=""), delimiter="\t", quoting=csv.QUOTE_NONE)
    else:
        reader = csv.reader(io.StringIO(text, newline=""))
    table = Table(path, list(fieldnames) if fieldnames else [])
    try:
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue
            if not table.columns:
                table.columns = [cell.strip() for cell in row]
                continue
            if len(row) != len(table.columns):
                hint = "a TSV field may not contain a tab" if fmt == "tsv" else "quote fields that contain commas"
                raise DataFormatError(
                    f"{path}, line {reader.line_num}: {len(row)} fields where the header has {len(table.columns)}",
                    hint=hint,
                )
            table.rows.append((reader.line_num, dict(zip(table.columns, row))))
    except csv.Error as exc:
        raise DataFormatError(f"{path}, line {reader.line_num}: {exc}") from None
    return table


def _read_jsonl(path: Path) -> Table:
    table = Table(path, [])
    for number, line in enumerate(read_file_text(path).split("\n"), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            hint = "write one JSON object per line (JSON Lines)" if line.lstrip().startswith("[") else None
            raise DataFormatError(f"{path}, line {number}: not valid JSON ({exc.msg})", hint=hint) from None
        if not isinstance(record, dict):
            raise DataFormatError(f"{path}, line {number}: expected a JSON object, got {type(record).__name__}")
        for key in record:
            if key not in table.columns:
                table.columns.append(key)
        table.rows.append((number, record))
    return table
