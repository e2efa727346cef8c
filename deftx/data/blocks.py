"""The masked-LM blocks of a language SFT's text, tokenised once and kept in an on-disk Arrow cache.

A text (its sources' content, the tokenizer, the block length, the line subset and the removal of
repeated lines) names an entry of the cache (:func:`text_key`). The first run that needs it reads the
sources as a stream, drops repeated lines, keeps the seeded subset, tokenises the lines in batches on
all cores (the fast tokenizer's thread pool; ``workers`` threads) and cuts the concatenated token
stream into blocks of ``max_length`` tokens, each between the model's start and end tokens, the way
``run_mlm``'s ``group_texts`` does (the remainder is carried from one batch to the next, so only the
text's last partial block is dropped). The blocks are written, with a checksum, into a temporary
directory that is renamed into place: a half-written entry is never read, and a damaged one is
reported and built again. Later runs (a resume, the DeFT-X run beside an LT-SFT run, every step of an
experiment) memory-map the entry and start at once.

Nothing here holds the text or its tokens in memory: the sources are read twice as streams (once to
find repeated lines by a 64-bit hash of each, once to tokenise the lines kept), and the blocks go to
disk batch by batch, so memory stays flat in the text's size. Preparation reports its progress (lines
and tokens per second, bytes read, the time left) through a callback.

Where the cache lives: ``$DEFTX_CACHE``, else ``deftx/`` under the datasets cache
(``$HF_DATASETS_CACHE``, by default ``~/.cache/huggingface/datasets``). ``deftx cache`` lists and
clears it.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import random
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deftx.data.text import TEXT_HINT, TextSource
from deftx.errors import DataFormatError
from deftx.records.files import atomic_write_json

BLOCKS_FORMAT = 1
ENTRIES = "text-blocks"
BLOCKS_FILE = "blocks.arrow"
META_FILE = "meta.json"
FINGERPRINTS_FILE = "fingerprints.json"
BATCH_LINES = 1000  # lines tokenised per call
ROWS_PER_BATCH = 8192  # blocks per Arrow record batch
PROGRESS_EVERY = 2.0  # seconds between progress reports

Progress = Callable[[dict[str, Any]], None]


def cache_root() -> Path:
    """Where prepared text lives: ``$DEFTX_CACHE``, else ``deftx`` under the datasets cache."""
    explicit = os.environ.get("DEFTX_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    datasets_cache = os.environ.get("HF_DATASETS_CACHE")
    if datasets_cache:
        return Path(datasets_cache).expanduser() / "deftx"
    home = Path(os.environ.get("HF_HOME", "~/.cache/huggingface")).expanduser()
    return home / "datasets" / "deftx"


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """What a tokenizer turns text into: its serialised model and special tokens."""
    digest = hashlib.sha256()
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        # Without the truncation and padding state, which every call with other settings changes.
        state = {k: v for k, v in json.loads(backend.to_str()).items() if k not in ("truncation", "padding")}
        digest.update(json.dumps(state, sort_keys=True).encode())
    else:
        digest.update(json.dumps(sorted(tokenizer.get_vocab().items())).encode())
    specials = [tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id,
                tokenizer.pad_token_id, tokenizer.mask_token_id]
    digest.update(json.dumps(specials).encode())
    return digest.hexdigest()


def token_ids(tokenizer: Any, lines: list[str]) -> list[list[int]]:
    """The token ids of each line, without special tokens: the fast tokenizer's batch encoding on its
    thread pool, without the character offsets a plain call computes (a seventh faster), else a call."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return tokenizer(lines, add_special_tokens=False)["input_ids"]
    if backend.truncation is not None:  # left by an earlier call with truncation=True
        backend.no_truncation()
    if backend.padding is not None:
        backend.no_padding()
    encode = getattr(backend, "encode_batch_fast", backend.encode_batch)
    return [encoding.ids for encoding in encode(lines, add_special_tokens=False)]


@dataclass
class TextSpec:
    """What determines a text's blocks: the cache key is a hash of it."""

    sources: list[dict[str, str]]  # per source: its description and content fingerprint
    tokenizer: str
    max_length: int
    max_lines: int | None
    seed: int | None  # the subset's seed (None without a subset)
    dedup: bool = True
    format: int = BLOCKS_FORMAT

    @property
    def key(self) -> str:
        payload = json.dumps(self.__dict__, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:24]


def text_spec(sources: Sequence[TextSource], tokenizer: Any, *, max_length: int, max_lines: int | None, seed: int,
              root: Path | None = None) -> TextSpec:
    """The spec (and so the cache key) of a text: the sources' fingerprints (files are hashed once and
    remembered by their size, inode and modification time)."""
    root = root or cache_root()
    memo_path = root / ENTRIES / FINGERPRINTS_FILE
    memo = read_json(memo_path) or {}
    before = json.dumps(memo, sort_keys=True)
    fingerprints = [{"source": s.name, "sha256": s.fingerprint(memo)} for s in sources]
    if json.dumps(memo, sort_keys=True) != before:
        write_json(memo_path, memo)
    return TextSpec(fingerprints, tokenizer_fingerprint(tokenizer), max_length, max_lines,
                    seed if max_lines is not None else None)


@dataclass
class TextBlocks:
    """A text's blocks, memory-mapped from the cache, and what they were made of."""

    blocks: BlockArray
    spec: TextSpec
    path: Path
    stats: dict[str, Any] = field(default_factory=dict)  # lines read and kept, tokens, blocks, bytes, sources
    cached: bool = False  # found in the cache (not built by this call)

    def record(self) -> dict[str, Any]:
        """What ``run.json`` records of the text (``data``): enough to tell two runs' data apart."""
        return {"cache_key": self.spec.key, "cache": str(self.path), **self.stats}


class BlockArray:
    """Rows of ``max_length`` token ids over the record batches of a memory-mapped Arrow file;
    ``blocks[indices]`` gathers rows (an index array in, an int64 array out)."""

    def __init__(self, chunks: list[np.ndarray]) -> None:
        self.chunks = chunks
        self.starts = np.cumsum([0] + [len(c) for c in chunks])
        self.width = chunks[0].shape[1] if chunks else 0

    def __len__(self) -> int:
        return int(self.starts[-1])

    @property
    def shape(self) -> tuple[int, int]:
        return len(self), self.width

    def __getitem__(self, indices: Any) -> np.ndarray:
        rows = np.asarray(indices, dtype=np.int64).reshape(-1)
        out = np.empty((len(rows), self.width), dtype=np.int64)
        which = np.searchsorted(self.starts, rows, side="right") - 1
        for chunk in np.unique(which):
            picked = which == chunk
            out[picked] = self.chunks[chunk][rows[picked] - self.starts[chunk]]
        return out


def prepare_blocks(sources: Sequence[TextSource], tokenizer: Any, *, max_length: int, max_lines: int | None = None,
                   seed: int = 0, workers: int | None = None, root: Path | None = None,
                   progress: Progress | None = None, spec: TextSpec | None = None) -> TextBlocks:
    """The blocks of the text of ``sources``: from the cache when an entry of the same key is there
    and whole, else built (and cached). ``progress`` hears of every stage (see :func:`_Preparation`)."""
    root = root or cache_root()
    spec = spec or text_spec(sources, tokenizer, max_length=max_length, max_lines=max_lines, seed=seed, root=root)
    entry = root / ENTRIES / spec.key

    def build(problem: str | None) -> None:
        if problem and progress is not None:
            progress({"stage": "rebuild", "message": f"the cached text at {entry} {problem}: building it again"})
        if workers:
            os.environ["RAYON_NUM_THREADS"] = str(workers)  # the tokenizer's thread pool, before its first use
        _Preparation(sources, tokenizer, spec, entry, progress).run()

    blocks = open_or_build(entry, lambda: open_entry(entry, spec), build, "the prepared text", progress)
    if blocks.cached and progress is not None:
        progress({"stage": "cached", "blocks": len(blocks.blocks), "tokens": blocks.stats.get("tokens"),
                  "lines": blocks.stats.get("lines_kept"), "cache": str(entry)})
    return blocks


def open_or_build(entry: Path, open_: Callable[[], tuple[Any, str | None]], build: Callable[[str | None], None],
                  what: str, progress: Progress | None) -> Any:
    """The cache entry ``entry`` opened (``open_`` gives it, with ``cached`` True, or why not), else built
    (``build`` is told why the entry there cannot be used) and opened (``cached`` False). One process
    builds an entry at a time (:func:`entry_lock`): another one that needs it meanwhile (the other
    processes of a launch, a second job of an experiment) waits and opens what the first built."""
    found, problem = open_()
    if found is not None:
        return found
    waiting = None
    if progress is not None:
        waiting = lambda: progress({"stage": "waiting", "message": f"another process is preparing {what} "
                                                                 f"at {entry}: waiting for it"})  # noqa: E731
    with entry_lock(entry, waiting):
        found, again = open_()  # built by another process while this one waited
        if found is not None:
            return found
        build(problem or again)
        built, problem = open_()
    if built is None:  # pragma: no cover - what was just written cannot be read back
        raise DataFormatError(f"{what} at {entry} cannot be read back: {problem}")
    built.cached = False
    return built


@contextmanager
def entry_lock(entry: Path, waiting: Callable[[], None] | None = None) -> Iterator[None]:
    """Hold the build lock of a cache entry (an advisory lock on a file beside it, released by the
    system if the process dies; the file is removed when the lock is let go); ``waiting`` is called
    first when another process holds it. Without advisory locks (Windows) processes may build an entry
    at once: :func:`building_entry` keeps the first whole one."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - no fcntl on this system
        yield
        return
    entry.parent.mkdir(parents=True, exist_ok=True)
    path = entry.parent / f".{entry.name}.lock"
    told = False
    while True:
        handle = open(path, "a")
        try:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if waiting is not None and not told:
                    waiting()
                    told = True
                fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                if os.stat(path).st_ino == os.fstat(handle.fileno()).st_ino:
                    break
            except FileNotFoundError:
                pass
        except BaseException:  # interrupted while waiting
            handle.close()
            raise
        handle.close()  # its holder removed that lock file when done: lock the one there now
    try:
        yield
    finally:
        path.unlink(missing_ok=True)  # before unlocking: a process waiting on this file then locks a new one
        handle.close()


@dataclass(frozen=True)
class BlockEnds:
    """The special tokens around every block (the tokenizer's CLS/BOS before, SEP/EOS after, as
    ``run_mlm``'s blocks have them) and the text tokens a block of ``width`` holds between them."""

    start: int | None
    end: int | None
    inner: int

    @classmethod
    def of(cls, tokenizer: Any, width: int) -> BlockEnds:
        start = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id
        end = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
        return cls(start, end, width - (start is not None) - (end is not None))

    def wrap(self, body: np.ndarray) -> np.ndarray:
        """Rows of ``inner`` text tokens as blocks: the start and end tokens put around each (same dtype)."""
        parts = []
        if self.start is not None:
            parts.append(np.full((len(body), 1), self.start, dtype=body.dtype))
        parts.append(body)
        if self.end is not None:
            parts.append(np.full((len(body), 1), self.end, dtype=body.dtype))
        return np.concatenate(parts, axis=1)


def open_entry(entry: Path, spec: TextSpec, *, verify: bool = True) -> tuple[TextBlocks | None, str | None]:
    """A cache entry memory-mapped, or ``None`` and why it cannot be used (``None`` and no reason when
    there is no entry). An entry whose recorded spec is not ``spec``, or whose blocks do not match
    their checksum, is not used."""
    import pyarrow as pa

    found, problem = read_entry(entry, BLOCKS_FILE, lambda meta: meta.get("spec") == spec.__dict__,
                                "was made from another text or with other settings", verify=verify)
    if found is None:
        return None, problem
    meta, table = found
    try:
        width = spec.max_length
        chunks = [c.values.to_numpy(zero_copy_only=True).reshape(-1, width)
                  for c in table.column("input_ids").chunks if len(c)]
    except (pa.ArrowInvalid, OSError, ValueError, KeyError) as exc:
        return None, f"has an unreadable {BLOCKS_FILE} ({exc})"
    blocks = BlockArray(chunks)
    if len(blocks) != meta.get("stats", {}).get("blocks"):
        return None, f"holds {len(blocks)} blocks where {meta.get('stats', {}).get('blocks')} were written"
    return TextBlocks(blocks, spec, entry, meta.get("stats", {}), cached=True), None


@contextmanager
def building_entry(entry: Path, whole: Callable[[Path], bool]) -> Iterator[Path]:
    """A temporary sibling folder of ``entry`` to build it in, renamed into place when the block ends, and
    removed if the block fails or is interrupted: a half-written entry is never read. When ``entry`` is
    there by then and ``whole`` (another process, say the other ranks of a launch, finished it first),
    it is kept and what was built here is dropped: a process reading it is never disturbed. A damaged
    entry is first renamed aside (one atomic step), then removed."""
    entry.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{entry.name}.", suffix=".tmp", dir=entry.parent))
    try:
        yield tmp
        if entry.exists() and whole(entry):
            shutil.rmtree(tmp, ignore_errors=True)
            return
        if entry.exists():
            aside = Path(tempfile.mkdtemp(prefix=f".{entry.name}.", suffix=".old", dir=entry.parent))
            try:
                os.replace(entry, aside)  # over the empty folder just made
            except OSError:  # another process moved or replaced it meanwhile
                pass
            shutil.rmtree(aside, ignore_errors=True)
        try:
            os.replace(tmp, entry)
        except OSError:  # another process renamed its entry into place meanwhile: keep that one
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def sealed(path: Path) -> dict[str, Any]:
    """What ``meta.json`` records of an entry's data file so that :func:`read_entry` can check it: its
    size and checksum."""
    return {"bytes": path.stat().st_size, "blake2b": file_checksum(path)}


def read_entry(entry: Path, file_name: str, matches: Callable[[dict[str, Any]], bool], mismatch: str, *,
               verify: bool = True) -> tuple[tuple[dict[str, Any], Any] | None, str | None]:
    """An entry's ``meta.json`` and its Arrow file ``file_name`` memory-mapped as a table, or ``None`` and
    why they cannot be used (``None`` and no reason when there is no entry): no readable meta, a meta
    for which ``matches`` is false (``mismatch`` says so), a missing file, a size or (``verify``) a
    checksum other than the meta records, bytes Arrow cannot read."""
    import pyarrow as pa

    meta = read_json(entry / META_FILE)
    if meta is None:
        return None, ("has no readable meta.json" if entry.exists() else None)
    if not matches(meta):
        return None, mismatch
    path = entry / file_name
    article = "an" if file_name[:1] in "aeiou" else "a"
    try:
        size = path.stat().st_size
    except OSError:
        return None, f"lacks {file_name}"
    if size != meta.get("bytes"):
        return None, f"has {article} {file_name} of {size} bytes where {meta.get('bytes')} were written"
    if verify and file_checksum(path) != meta.get("blake2b"):
        return None, f"has a damaged {file_name} (checksum mismatch)"
    try:
        table = pa.ipc.open_stream(pa.memory_map(str(path), "r")).read_all()
    except (pa.ArrowInvalid, OSError, ValueError) as exc:
        return None, f"has an unreadable {file_name} ({exc})"
    return (meta, table), None


class _Preparation:
    """One build of a cache entry: two streamed passes over the sources, blocks written as they come.

    Progress reports (``stage``: ``reading`` while repeated lines are found, ``tokenising`` while the
    blocks are made; with ``lines``, ``tokens``, ``blocks``, ``bytes_read`` of ``bytes_total``,
    ``seconds`` and ``eta_seconds``), then ``done``."""

    def __init__(self, sources: Sequence[TextSource], tokenizer: Any, spec: TextSpec, entry: Path,
                 progress: Progress | None) -> None:
        self.sources, self.tokenizer, self.spec, self.entry = list(sources), tokenizer, spec, entry
        self.progress = progress
        self.started = time.monotonic()
        self._last = 0.0
        sizes = [s.size() for s in self.sources]
        self.bytes_total = sum(sizes) if all(size is not None for size in sizes) else None

    def report(self, stage: str, force: bool = False, **fields: Any) -> None:
        now = time.monotonic()
        if self.progress is None or (not force and now - self._last < PROGRESS_EVERY):
            return
        self._last = now
        seconds = now - self.started
        done, total = fields.get("bytes_read"), self.bytes_total
        eta = None
        if stage == "tokenising" and done and total:
            rate = done / max(seconds - self.read_seconds, 1e-6)
            eta = max(total - done, 0) / rate if rate > 0 else None
        self.progress({"stage": stage, "seconds": round(seconds, 1), "bytes_total": total,
                       "eta_seconds": None if eta is None else round(eta, 1), **fields})

    def run(self) -> None:
        keep = self.first_occurrences()
        self.read_seconds = time.monotonic() - self.started
        with building_entry(self.entry, lambda e: open_entry(e, self.spec)[0] is not None) as tmp:
            stats = self.write_blocks(keep, tmp / BLOCKS_FILE)
            write_json(tmp / META_FILE, {"format": BLOCKS_FORMAT, "spec": self.spec.__dict__, "key": self.spec.key,
                                         "stats": stats, **sealed(tmp / BLOCKS_FILE), "created": time.time()})
        self.report("done", force=True, lines=stats["lines_kept"], tokens=stats["tokens"], blocks=stats["blocks"],
                    bytes_read=stats["bytes"], cache=str(self.entry))

    def _lines(self) -> Iterator[tuple[int, str]]:
        """Every line of every source, with the bytes read so far of all of them."""
        done = 0
        for source in self.sources:
            count = 0
            for position, line in source.lines_read():
                count += 1
                yield done + position, line
            if not count:
                raise DataFormatError(f"{source.name} holds no text", hint=TEXT_HINT)
            done += source.size() or 0

    def first_occurrences(self) -> np.ndarray:
        """Pass 1: the indices of the lines kept, in order: the first of every repeated line (by a 64-bit
        hash), then the seeded subset of ``max_lines``."""
        hashes: list[np.ndarray] = []
        current: list[int] = []
        n = 0
        for done, line in self._lines():
            current.append(int.from_bytes(hashlib.blake2b(line.encode(), digest_size=8).digest(), "little"))
            n += 1
            if len(current) >= 65536:
                hashes.append(np.array(current, dtype=np.uint64))
                current = []
                self.report("reading", lines=n, bytes_read=done)
        hashes.append(np.array(current, dtype=np.uint64))
        every = np.concatenate(hashes)
        if self.spec.dedup:
            _, first = np.unique(every, return_index=True)
            keep = np.sort(first)
        else:
            keep = np.arange(len(every))
        self.lines_read = len(every)
        if self.spec.max_lines is not None and len(keep) > self.spec.max_lines:
            chosen = sorted(random.Random(self.spec.seed).sample(range(len(keep)), self.spec.max_lines))
            keep = keep[np.array(chosen, dtype=np.int64)]
        return keep

    def write_blocks(self, keep: np.ndarray, path: Path) -> dict[str, Any]:
        """Pass 2: tokenise the lines kept in batches and write their blocks as they fill."""
        import pyarrow as pa

        tokenizer, width = self.tokenizer, self.spec.max_length
        ends = BlockEnds.of(tokenizer, width)
        inner = ends.inner
        schema = pa.schema([("input_ids", pa.list_(pa.int32(), width))])
        carry = np.empty(0, dtype=np.int32)
        pending: list[np.ndarray] = []  # full blocks not yet written
        cursor = 0  # position in keep (a numpy cursor: a list of every kept index costs 36 bytes a line)
        next_line = int(keep[0]) if len(keep) else -1
        batch: list[str] = []
        tokens = blocks = kept = 0
        bytes_read = 0
        with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, schema) as writer:

            def flush(final: bool = False) -> None:
                nonlocal carry, tokens, blocks, pending
                if batch:
                    ids = token_ids(tokenizer, batch)
                    batch.clear()
                    flat = np.array(list(itertools.chain.from_iterable(ids)), dtype=np.int32)
                    tokens += len(flat)
                    carry = np.concatenate([carry, flat])
                n_full = len(carry) // inner
                if n_full:
                    body = carry[: n_full * inner].reshape(n_full, inner)
                    carry = carry[n_full * inner:]
                    pending.append(ends.wrap(body))
                rows = sum(len(p) for p in pending)
                if rows >= ROWS_PER_BATCH or (final and rows):
                    full = np.concatenate(pending)
                    pending = []
                    writer.write_batch(pa.record_batch(
                        [pa.FixedSizeListArray.from_arrays(pa.array(full.reshape(-1), type=pa.int32()), width)],
                        schema=schema))
                    blocks += len(full)

            for index, (done, line) in enumerate(self._lines()):
                bytes_read = done
                if index != next_line:
                    continue
                cursor += 1
                next_line = int(keep[cursor]) if cursor < len(keep) else -1
                batch.append(line)
                kept += 1
                if len(batch) >= BATCH_LINES:
                    flush()
                    self.report("tokenising", lines=kept, tokens=tokens, blocks=blocks, bytes_read=bytes_read)
            flush()
            if blocks == 0 and not pending and len(carry):  # less text than one block: one padded block
                pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
                carry = np.concatenate([carry, np.full(inner - len(carry), pad, dtype=np.int32)])
            flush(final=True)
        if blocks == 0:
            raise DataFormatError("the text holds no tokens", hint=TEXT_HINT)
        return {"sources": [s.description + f" ({s.name})" for s in self.sources], "bytes": self.bytes_total,
                "lines_read": self.lines_read, "lines_kept": kept, "tokens": tokens, "blocks": blocks,
                "seconds": round(time.monotonic() - self.started, 1)}


def list_entries(root: Path | None = None) -> list[dict[str, Any]]:
    """Every entry of the cache: its key, size, what it holds and when it was made (unreadable ones
    with a reason)."""
    return scan_entries((root or cache_root()) / ENTRIES, "text", "left by a preparation that did not finish",
                        lambda meta: {**meta.get("stats", {}), "created": meta.get("created"),
                                      "max_length": meta.get("spec", {}).get("max_length")})


def scan_entries(folder: Path, kind: str, unfinished: str,
                 fields: Callable[[dict[str, Any]], dict[str, Any]]) -> list[dict[str, Any]]:
    """The entries of one of the cache's folders: key, kind, size on disk and ``fields`` of its
    ``meta.json``, or the problem (a temporary folder left by a process that died, no readable meta)."""
    if not folder.is_dir():
        return []
    out = []
    for entry in sorted(p for p in folder.iterdir() if p.is_dir()):
        size = sum(f.stat().st_size for f in entry.iterdir() if f.is_file())
        meta = read_json(entry / META_FILE)
        base = {"kind": kind, "key": entry.name, "disk_bytes": size}
        if entry.name.startswith("."):
            out.append({**base, "problem": unfinished})
        elif meta is None:
            out.append({**base, "problem": "no readable meta.json"})
        else:
            out.append({**fields(meta), **base})
    return out


def clear_entries(root: Path | None = None, keys: Sequence[str] = ()) -> int:
    """Remove the entries named by ``keys`` (all when none is named); the bytes freed."""
    return remove_entries((root or cache_root()) / ENTRIES, list_entries(root), keys)


def remove_entries(folder: Path, entries: Sequence[dict[str, Any]], keys: Sequence[str] = ()) -> int:
    """Remove those of ``entries`` (listed from ``folder``) named by ``keys``, all when none is named."""
    freed = 0
    for item in entries:
        if keys and item["key"] not in keys:
            continue
        freed += item["disk_bytes"]
        shutil.rmtree(folder / item["key"], ignore_errors=True)
    return freed


def file_checksum(path: Path) -> str:
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def write_json(path: Path, obj: Any) -> None:
    atomic_write_json(path, obj)
