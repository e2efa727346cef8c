"""Unlabelled text of one language, the training data of a language SFT.

Sources per language in a data root (only what exists is used):

- NusaX-MT ``nusax/mt/train.csv``, the language's column (NusaX languages). Only *train*: the MT
  valid/test files are the NusaX-Senti evaluation sentences and are never read.
- SmSA ``smsa/train.nusax_filtered.tsv``, text column (Indonesian).
- NusaWrites ``nusawrites_unlabeled/<code>.{nusaparagraph,nusatranslation}.txt`` (``btk`` for Toba Batak).
- AmericasNLP ``americasnlp_unlabeled/train/<lang>.txt`` and ``americasnlp_unlabeled/extra/<lang>.*.txt``.

There is no hub corpus: without a data root, text comes from files given explicitly.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from deftx.data.languages import (
    AMERICAS_FILE_CODES, AMERICASNLI_LANGUAGES, NUSAWRITES_CODES, NUSAX_DIRS, canonical_language,
)
from deftx.data.registry import DATA_DIR_ENV, resolve_data_dir
from deftx.data.tables import TABLE_FORMATS, read_table, text_lines
from deftx.errors import DataFormatError, InputNotFoundError, UsageError

TEXT_HINT = f"give text files with --text, or a data root with --data-dir (or ${DATA_DIR_ENV})"


@dataclass(frozen=True)
class TextSource:
    """A file of unlabelled text: plain lines, or one ``column`` of a CSV/TSV/JSONL table."""

    path: Path
    column: str | None
    description: str
    fieldnames: tuple[str, ...] | None = None  # column names of a table without a header row

    def read(self) -> list[str]:
        """The stripped, non-empty segments of this source, in file order."""
        if self.column is None:
            segments = text_lines(self.path)
        else:
            table = read_table(self.path, fieldnames=self.fieldnames)
            column = table.column(self.column)
            if column is None:
                raise DataFormatError(
                    f"{self.path} has no '{self.column}' column (it has {', '.join(table.columns)})",
                    hint="a table of text needs a 'text' column; plain .txt files hold one segment per line",
                )
            segments = [s for _, row in table.rows if (s := str(row.get(column) or "").strip())]
        if not segments:
            raise DataFormatError(f"{self.path} holds no text", hint=TEXT_HINT)
        return segments


def text_sources(lang: str, data_dir: Path | str | None) -> list[TextSource]:
    """The files of unlabelled ``lang`` text in the data root that a language SFT uses by default."""
    code = canonical_language(lang)
    root = resolve_data_dir(data_dir)
    if root is None:
        raise InputNotFoundError(
            f"no unlabelled text for {code}: it comes from a local data root or from text files", hint=TEXT_HINT
        )
    candidates: list[TextSource] = []
    if code in NUSAX_DIRS:
        column = NUSAX_DIRS[code]
        candidates.append(TextSource(root / "nusax" / "mt" / "train.csv", column, f"NusaX-MT train, {column} column"))
    if code == "ind":
        candidates.append(TextSource(root / "smsa" / "train.nusax_filtered.tsv", "text",
                                     "SmSA train (NusaX-filtered), text column", fieldnames=("text", "label")))
    if code in NUSAWRITES_CODES:
        folder, prefix = root / "nusawrites_unlabeled", NUSAWRITES_CODES[code]
        candidates.append(TextSource(folder / f"{prefix}.nusaparagraph.txt", None, "NusaWrites NusaParagraph"))
        candidates.append(TextSource(folder / f"{prefix}.nusatranslation.txt", None, "NusaWrites NusaTranslation"))
    if code in AMERICASNLI_LANGUAGES:
        folder, stem = root / "americasnlp_unlabeled", AMERICAS_FILE_CODES.get(code, code)
        candidates.append(TextSource(folder / "train" / f"{stem}.txt", None, "AmericasNLP 2021 train, target side"))
        candidates.extend(
            TextSource(path, None, f"AmericasNLP extra, {path.name.split('.')[1]}")
            for path in sorted((folder / "extra").glob(f"{stem}.*.txt"))
        )
    return [source for source in candidates if source.path.is_file()]


def _file_source(path: Path | str) -> TextSource:
    path = Path(path)
    if path.suffix.lower() in TABLE_FORMATS:
        return TextSource(path, "text", "given file, text column")
    return TextSource(path, None, "given file")


def load_unlabelled_text(
    lang: str | None = None,
    data_dir: Path | str | None = None,
    files: list[Path | str] | None = None,
    max_lines: int | None = None,
    seed: int = 0,
) -> tuple[list[str], list[str]]:
    """Unlabelled segments and a description of each source used.

    ``files`` replaces the data-root sources of ``lang``: ``.txt`` (or any non-table file) holds one
    segment per line; ``.csv``/``.tsv``/``.jsonl`` a ``text`` column. Segments are stripped, empty
    ones dropped and repeats removed (first kept). ``max_lines`` keeps a random subset of that size
    (the same for the same ``seed``), in order.
    """
    if max_lines is not None and max_lines < 1:
        raise UsageError(f"max_lines must be at least 1 (got {max_lines})")
    if files:
        sources = [_file_source(path) for path in files]
    elif lang is None:
        raise UsageError("unlabelled text needs a language or text files", hint=TEXT_HINT)
    else:
        sources = text_sources(lang, data_dir)
        if not sources:
            code = canonical_language(lang)
            raise InputNotFoundError(f"the data root has no unlabelled text for {code}", hint=TEXT_HINT)
    lines: list[str] = []
    seen: set[str] = set()
    descriptions: list[str] = []
    for source in sources:
        segments = source.read()
        descriptions.append(f"{source.description} ({source.path}): {len(segments)} lines")
        for segment in segments:
            if segment not in seen:
                seen.add(segment)
                lines.append(segment)
    if max_lines is not None and len(lines) > max_lines:
        keep = sorted(random.Random(seed).sample(range(len(lines)), max_lines))
        lines = [lines[i] for i in keep]
    return lines, descriptions
