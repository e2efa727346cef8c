"""Unlabelled text of one language, the training data of a language SFT: where it comes from, read as
a stream of lines.

Sources per language in a data root (only what exists is used):

- NusaX-MT ``nusax/mt/train.csv``, the language's column (NusaX languages). Only *train*: the MT
  valid/test files are the NusaX-Senti evaluation sentences and are never read.
- SmSA ``smsa/train.nusax_filtered.tsv``, text column (Indonesian).
- NusaWrites ``nusawrites_unlabeled/<code>.{nusaparagraph,nusatranslation}.txt`` (``btk`` for Toba Batak).
- AmericasNLP ``americasnlp_unlabeled/train/<lang>.txt`` and ``americasnlp_unlabeled/extra/<lang>.*.txt``.

Or given explicitly: files, directories (every text file below, in name order) and globs, plain or
compressed (``.gz``, ``.bz2``, ``.xz``, ``.zst``), one segment per line; tables (``.csv``, ``.tsv``,
``.jsonl``) with a ``text`` column; and a text data set of the Hugging Face hub (:class:`HubText`).

A source is read as a stream (:meth:`TextSource.lines`): nothing holds the whole text in memory. A source
knows its content fingerprint (:meth:`TextSource.fingerprint`), which names the prepared blocks in the
cache (:mod:`deftx.data.blocks`).
"""

from __future__ import annotations

import bz2
import glob
import gzip
import hashlib
import io
import lzma
import os
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from deftx.data.languages import (
    AMERICAS_FILE_CODES, AMERICASNLI_LANGUAGES, NUSAWRITES_CODES, NUSAX_DIRS, canonical_language,
)
from deftx.data.registry import DATA_DIR_ENV, resolve_data_dir
from deftx.data.tables import TABLE_FORMATS, read_table, unopenable
from deftx.errors import DataFormatError, InputNotFoundError, UsageError

TEXT_HINT = f"give text files with --text, or a data root with --data-dir (or ${DATA_DIR_ENV})"
COMPRESSED = (".gz", ".bz2", ".xz", ".zst")
_SNIFF = 64 * 1024  # bytes looked at to tell a text file from a binary one


@dataclass(frozen=True)
class HubText:
    """A text data set of the Hugging Face hub, e.g. ``wikimedia/wikipedia`` with config
    ``20231101.ace`` and column ``text``."""

    dataset: str
    config: str | None = None
    split: str = "train"
    column: str = "text"
    revision: str | None = None

    @property
    def local(self) -> Path | None:
        """The folder, when ``dataset`` names a data set on disk rather than on the hub."""
        path = Path(self.dataset).expanduser()
        return path if path.is_dir() else None

    def describe(self) -> str:
        parts = [self.dataset, *(p for p in (self.config,) if p)]
        at = f"@{self.revision}" if self.revision else ""
        what = "data set folder" if self.local is not None else "hub data set"
        return f"{what} {'/'.join(parts)}{at} ({self.split}, column {self.column})"


@dataclass(frozen=True)
class TextSource:
    """Unlabelled text: a file of lines (plain or compressed), one ``column`` of a CSV/TSV/JSONL table,
    or a hub data set."""

    path: Path | None
    column: str | None
    description: str
    fieldnames: tuple[str, ...] | None = None  # column names of a table without a header row
    hub: HubText | None = None

    @property
    def name(self) -> str:
        return str(self.path) if self.path is not None else self.hub.describe()

    def size(self) -> int | None:
        """Bytes on disk (of the compressed file), for progress; ``None`` for a hub data set."""
        return self.path.stat().st_size if self.path is not None else None

    def lines(self) -> Iterator[str]:
        """The stripped, non-empty segments of this source, in order."""
        for _, segment in self.lines_read():
            yield segment

    def lines_read(self) -> Iterator[tuple[int, str]]:
        """The segments with the bytes of the source read so far (of the compressed file, for a
        compressed one; 0 for a hub data set), for progress."""
        if self.hub is not None:
            for segment in _hub_lines(self.hub):
                yield 0, segment
            return
        if self.column is not None:
            table = read_table(self.path, fieldnames=self.fieldnames)
            column = table.column(self.column)
            if column is None:
                raise DataFormatError(
                    f"{self.path} has no '{self.column}' column (it has {', '.join(table.columns)})",
                    hint="a table of text needs a 'text' column; plain .txt files hold one segment per line",
                )
            size = self.size() or 0
            for _, row in table.rows:
                segment = str(row.get(column) or "").strip()
                if segment:
                    yield size, segment
            return
        handle, raw = open_text(self.path)
        with handle:
            number = 0
            try:
                for number, line in enumerate(handle, start=1):
                    segment = line.strip()
                    if segment:
                        yield raw.tell(), segment
            except UnicodeDecodeError:
                raise DataFormatError(f"{self.path} is not UTF-8 text (line {number + 1})",
                                      hint="convert the file to UTF-8") from None
            except (OSError, EOFError, lzma.LZMAError) as exc:
                raise DataFormatError(f"{self.path} cannot be read to its end: {exc}",
                                      hint="a compressed file may be truncated") from None

    def fingerprint(self, memo: dict[str, Any] | None = None) -> str:
        """What the text is: the sha256 of the file's bytes (``memo`` remembers it by path, size, inode
        and modification time, so an unchanged file is not read again), or the hub data set's identity
        at its revision."""
        if self.hub is not None and self.hub.local is not None:  # a data set folder: its files' content
            files = sorted(p for p in self.hub.local.rglob("*") if p.is_file() and ".cache" not in p.parts)
            parts = [(str(p.relative_to(self.hub.local)), _file_sha256(p, memo)) for p in files]
            return "local:" + hashlib.sha256(repr((self.hub, parts)).encode()).hexdigest()
        if self.hub is not None:
            return "hub:" + hashlib.sha256(repr((self.hub, _hub_commit(self.hub))).encode()).hexdigest()
        return _file_sha256(self.path, memo)


def _file_sha256(path: Path, memo: dict[str, Any] | None) -> str:
    """A file's sha256, remembered in ``memo`` by its path, size, modification time and inode."""
    stat = path.stat()
    key = str(path.resolve())
    signature = [stat.st_size, stat.st_mtime_ns, stat.st_ino]
    if memo is not None and memo.get(key, {}).get("signature") == signature:
        return memo[key]["sha256"]
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 22), b""):
            digest.update(chunk)
    value = digest.hexdigest()
    if memo is not None:
        memo[key] = {"signature": signature, "sha256": value}
    return value


def open_text(path: Path) -> tuple[IO[str], IO[bytes]]:
    """A text file for reading as UTF-8 lines, decompressed by its suffix, and the file on disk under it
    (whose position says how much was read). A binary file, an empty one or one that cannot be opened
    is refused in one line."""
    suffix = path.suffix.lower()
    try:
        raw: IO[bytes] = open(path, "rb")
    except OSError as exc:
        raise unopenable(path, exc) from None
    try:
        if suffix == ".gz":
            stream: IO[bytes] = gzip.GzipFile(fileobj=raw, mode="rb")
        elif suffix == ".bz2":
            stream = bz2.BZ2File(raw, "rb")
        elif suffix == ".xz":
            stream = lzma.LZMAFile(raw, "rb")
        elif suffix == ".zst":
            import zstandard

            stream = zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)
        else:
            stream = raw
        buffered = io.BufferedReader(stream) if not isinstance(stream, io.BufferedReader) else stream
        head = buffered.peek(_SNIFF)[:_SNIFF]
    except (OSError, EOFError, lzma.LZMAError) as exc:
        raw.close()
        raise DataFormatError(f"{path} cannot be read: {exc}", hint="a compressed file may be damaged") from None
    except Exception as exc:  # zstandard's ZstdError
        raw.close()
        raise DataFormatError(f"{path} cannot be read: {exc}", hint="a compressed file may be damaged") from None
    if not head:
        raw.close()
        raise DataFormatError(f"{path} is empty", hint=TEXT_HINT)
    if b"\x00" in head:
        raw.close()
        raise DataFormatError(f"{path} is not a text file (it holds NUL bytes: binary data?)",
                              hint="give UTF-8 text, one segment per line")
    return io.TextIOWrapper(buffered, encoding="utf-8-sig", newline=None), raw


def _hub_lines(hub: HubText) -> Iterator[str]:
    """The column of a hub text data set, streamed (nothing downloaded beyond what is read)."""
    for row in hub_dataset(hub, streaming=True):
        value = row.get(hub.column)
        if value is None:
            raise DataFormatError(f"{hub.describe()}: no column {hub.column!r} (it has {', '.join(row)})",
                                  hint="choose the column with --text-column")
        for segment in str(value).split("\n"):
            segment = segment.strip()
            if segment:
                yield segment


def hub_dataset(hub: HubText, *, streaming: bool):
    """``datasets.load_dataset`` for a hub text data set, its failures turned into one line (offline,
    no such data set, config or split)."""
    from deftx.hub import hub_offline

    if hub.local is None and hub_offline():
        raise InputNotFoundError(f"cannot read {hub.describe()}: the Hugging Face hub is out of reach (offline)",
                                 hint="give local text files with --text")
    import datasets

    datasets.disable_progress_bars()
    try:
        return datasets.load_dataset(hub.dataset, hub.config, split=hub.split, revision=hub.revision,
                                     streaming=streaming)
    except (FileNotFoundError, ValueError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise InputNotFoundError(f"cannot read {hub.describe()}: {first[:200]}",
                                 hint="check the data set id, --text-config, --text-split and --revision") from None
    except OSError as exc:
        raise InputNotFoundError(f"cannot read {hub.describe()}: {exc}", hint="give local text files with --text") from None


def _hub_commit(hub: HubText) -> str | None:
    """The commit a hub data set's revision resolves to (``None`` when it cannot be told)."""
    try:
        from huggingface_hub import HfApi

        return HfApi().dataset_info(hub.dataset, revision=hub.revision).sha
    except Exception:  # offline, a private data set: the revision as given names it
        return hub.revision


TEXT_MODES = ("auto", "cache", "stream")
STREAM_FLOOR = 1 << 30  # auto streams only texts larger than this (1 GiB) ...
STREAM_FACTOR = 4  # ... and larger than this many times what the run reads
BYTES_PER_TOKEN = 4  # about, for a multilingual tokenizer: to compare a text's size with a run's reading


def choose_text_mode(mode: str, sources: list[TextSource], *, tokens_read: int, max_lines: int | None) -> str:
    """``cache`` or ``stream``: as asked, or (``auto``) streaming a text much larger than what the run
    reads (more than 1 GiB and more than 4 times the run's tokens; compressed files count 4 times their
    size, a hub data set its size on the hub). A random line subset (``max_lines``) needs the whole
    text: cached (a stream asked for reads the first ``max_lines`` lines instead)."""
    if mode not in TEXT_MODES:
        raise UsageError(f"--text-mode {mode}: choose one of {', '.join(TEXT_MODES)}")
    if mode != "auto":
        return mode
    if max_lines is not None:
        return "cache"
    size = 0
    for source in sources:
        if source.hub is not None:
            known = _hub_size(source.hub)
            if known is None:
                return "stream"  # a hub data set of unknown size: never downloaded whole
            size += known
        else:
            size += source.size() * (BYTES_PER_TOKEN if source.path.suffix.lower() in COMPRESSED else 1)
    return "stream" if size > max(STREAM_FLOOR, STREAM_FACTOR * tokens_read * BYTES_PER_TOKEN) else "cache"


def _hub_size(hub: HubText) -> int | None:
    """The bytes of a hub data set's split as its card says (``None`` when it does not)."""
    try:
        import datasets

        info = datasets.load_dataset_builder(hub.dataset, hub.config, revision=hub.revision).info
        split = (info.splits or {}).get(hub.split)
        return int(split.num_bytes) if split is not None and split.num_bytes else None
    except Exception:  # offline, no card: unknown
        return None


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


def _file_source(path: Path) -> TextSource:
    name = path.name.lower()
    stem_suffix = Path(name[: -len(Path(name).suffix)]).suffix if name.endswith(COMPRESSED) else path.suffix.lower()
    if path.suffix.lower() in TABLE_FORMATS:
        return TextSource(path, "text", "given file, text column")
    if stem_suffix in TABLE_FORMATS:
        raise UsageError(f"{path}: a compressed table is not read", hint="decompress it, or give plain text lines")
    return TextSource(path, None, "given file")


def expand_text_paths(given: list[Path | str]) -> list[Path]:
    """Files, directories (every file below them, in name order, hidden ones left out) and glob patterns,
    as the files they name, in the order given. A path that does not exist, an empty directory and a
    glob that matches nothing are each one error."""
    out: list[Path] = []
    for item in given:
        text = str(item)
        path = Path(text).expanduser()
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and not any(part.startswith(".")
                                                                                   for part in p.relative_to(path).parts))
            if not files:
                raise InputNotFoundError(f"{path} is a directory without files", hint=TEXT_HINT)
            out.extend(files)
        elif path.exists():
            out.append(path)
        elif glob.has_magic(text):
            matches = sorted(Path(p) for p in glob.glob(os.path.expanduser(text), recursive=True) if Path(p).is_file())
            if not matches:
                raise InputNotFoundError(f"--text {text}: the pattern matches no file", hint=TEXT_HINT)
            out.extend(matches)
        else:
            raise InputNotFoundError(f"--text {text}: not found", hint=TEXT_HINT)
    return out


def resolve_text_sources(lang: str | None, data_dir: Path | str | None = None, files: list[Path | str] | None = None,
                         hub: HubText | None = None) -> list[TextSource]:
    """The sources of a language SFT's text: the hub data set, else the given files (directories and
    globs expanded), else the data root's text of ``lang``."""
    if hub is not None:
        return [TextSource(None, hub.column, hub.describe(), hub=hub)]
    if files:
        return [_file_source(path) for path in expand_text_paths(list(files))]
    if lang is None:
        raise UsageError("unlabelled text needs a language or text files", hint=TEXT_HINT)
    sources = text_sources(lang, data_dir)
    if not sources:
        raise InputNotFoundError(f"the data root has no unlabelled text for {canonical_language(lang)}", hint=TEXT_HINT)
    return sources


def load_unlabelled_text(
    lang: str | None = None,
    data_dir: Path | str | None = None,
    files: list[Path | str] | None = None,
    max_lines: int | None = None,
    seed: int = 0,
) -> tuple[list[str], list[str]]:
    """Unlabelled segments in memory, and a description of each source used (small text: a test, a
    benchmark; training prepares its blocks in :mod:`deftx.data.blocks` without holding the text).

    Segments are stripped, empty ones dropped and repeats removed (first kept). ``max_lines`` keeps a
    random subset of that size (the same for the same ``seed``), in order.
    """
    if max_lines is not None and max_lines < 1:
        raise UsageError(f"max_lines must be at least 1 (got {max_lines})")
    lines: list[str] = []
    seen: set[str] = set()
    descriptions: list[str] = []
    for source in resolve_text_sources(lang, data_dir, files):
        count = 0
        for segment in source.lines():
            count += 1
            if segment not in seen:
                seen.add(segment)
                lines.append(segment)
        if not count:
            raise DataFormatError(f"{source.name} holds no text", hint=TEXT_HINT)
        descriptions.append(f"{source.description} ({source.name}): {count} lines")
    if max_lines is not None and len(lines) > max_lines:
        keep = sorted(random.Random(seed).sample(range(len(lines)), max_lines))
        lines = [lines[i] for i in keep]
    return lines, descriptions
