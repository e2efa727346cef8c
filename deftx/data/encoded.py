"""Labelled examples tokenised once and kept in the on-disk Arrow cache beside the language SFTs' text.

A task SFT's data (a task's split, a labelled file, a hub table) is tokenised the first time a run
needs it: in batches on all cores (the fast tokenizer's thread pool), written batch by batch into an
Arrow file with a checksum, in a temporary directory renamed into place. The entry's key is a hash of
what determines the tokens: the examples' content (texts, second segments, labels, label names), the
tokenizer and the length they are cut to. Every later run over the same data (each seed, each method,
each step of an experiment, an evaluation) memory-maps it: an MNLI-size source (393k pairs) pays its
tokenisation once and holds its token ids in the page cache, not in Python lists.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from deftx.data.blocks import (
    Progress,
    write_json,
    cache_root,
    building_entry,
    open_or_build,
    read_entry,
    remove_entries,
    scan_entries,
    sealed,
    tokenizer_fingerprint,
)
from deftx.errors import DataFormatError

ENCODED_FORMAT = 1
ENTRIES = "labelled"
ENCODED_FILE = "encoded.arrow"
META_FILE = "meta.json"
BATCH_ROWS = 2000  # examples tokenised per call (and per Arrow record batch)
PROGRESS_EVERY = 2.0


class Ragged:
    """Rows of different lengths over the chunks of (values, offsets) arrays; ``ragged[i]`` is row ``i``
    (a view), ``ragged.lengths`` every row's length."""

    def __init__(self, chunks: list[tuple[np.ndarray, np.ndarray]]) -> None:
        self.chunks = chunks
        self.starts = np.cumsum([0] + [len(offsets) - 1 for _, offsets in chunks])
        self.lengths = np.concatenate([np.diff(offsets) for _, offsets in chunks]) if chunks else np.zeros(0, np.int64)

    @classmethod
    def from_lists(cls, rows: Sequence[Sequence[int]]) -> Ragged:
        offsets = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum([len(r) for r in rows], out=offsets[1:])
        values = np.fromiter((v for row in rows for v in row), dtype=np.int32, count=int(offsets[-1]))
        return cls([(values, offsets)])

    def __len__(self) -> int:
        return int(self.starts[-1])

    def __getitem__(self, row: int) -> np.ndarray:
        row = int(row)
        if not 0 <= row < len(self):
            raise IndexError(row)
        chunk = int(np.searchsorted(self.starts, row, side="right")) - 1
        values, offsets = self.chunks[chunk]
        local = row - int(self.starts[chunk])
        return values[offsets[local] : offsets[local + 1]]


@dataclass
class Encoded:
    """Tokenised labelled examples (not padded): token ids, token types (for models that use them) and
    label ids, row for row."""

    input_ids: Ragged
    token_type_ids: Ragged | None
    labels: np.ndarray
    key: str | None = None  # the cache entry's key (None when not cached)
    cached: bool = False  # found in the cache (not tokenised by this call)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def lengths(self) -> np.ndarray:
        return self.input_ids.lengths

    def with_labels(self, labels: Sequence[int]) -> Encoded:
        return Encoded(self.input_ids, self.token_type_ids, np.asarray(labels, dtype=np.int64), self.key, self.cached)


def data_digest(data: Any) -> str:
    """A hash of a :class:`~deftx.data.LabelledData`'s content: label names, and every row's text,
    second segment and label."""
    digest = hashlib.sha256(json.dumps(list(data.label_names)).encode())
    pairs = data.pairs if data.pairs is not None else None
    for i, (text, label) in enumerate(zip(data.texts, data.labels)):
        pair = "\x00" if pairs is None else pairs[i]
        digest.update(f"{text}\x1f{pair}\x1f{label}\x1e".encode())
    return digest.hexdigest()


def encoded_key(data: Any, tokenizer: Any, max_length: int) -> str:
    spec = {"format": ENCODED_FORMAT, "data": data_digest(data), "tokenizer": tokenizer_fingerprint(tokenizer),
            "max_length": max_length, "pair": data.pairs is not None}
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:24]


def encode_labelled(tokenizer: Any, data: Any, max_length: int, *, cache: bool = True, root: Path | None = None,
                    progress: Progress | None = None) -> Encoded:
    """``data`` (a :class:`~deftx.data.LabelledData`) tokenised, truncated to ``max_length``: from the
    cache when an entry of the same key is there and whole, else tokenised (and cached). ``cache``
    False tokenises in memory (a handful of sentences to predict)."""
    if not len(data):
        raise DataFormatError(f"{data.source} has no examples")
    if not cache:
        return _encode_in_memory(tokenizer, data, max_length)
    root = root or cache_root()
    key = encoded_key(data, tokenizer, max_length)
    entry = root / ENTRIES / key

    def build(problem: str | None) -> None:
        if problem and progress is not None:
            progress({"stage": "rebuild",
                      "message": f"the cached examples at {entry} {problem}: tokenising them again"})
        _write_entry(tokenizer, data, max_length, key, entry, progress)

    encoded = open_or_build(entry, lambda: open_encoded(entry, key), build, "the tokenised examples", progress)
    if encoded.cached and progress is not None:
        progress({"stage": "cached", "examples": len(encoded), "tokens": int(encoded.lengths.sum()),
                  "cache": str(entry)})
    return encoded


def _encode_in_memory(tokenizer: Any, data: Any, max_length: int) -> Encoded:
    encoded = tokenizer(list(data.texts), list(data.pairs) if data.pairs is not None else None,
                        truncation=True, max_length=max_length)
    types = encoded.get("token_type_ids")
    return Encoded(Ragged.from_lists(encoded["input_ids"]), Ragged.from_lists(types) if types is not None else None,
                   np.asarray(data.labels, dtype=np.int64))


def _write_entry(tokenizer: Any, data: Any, max_length: int, key: str, entry: Path,
                 progress: Progress | None) -> None:
    import pyarrow as pa

    started = last = time.monotonic()
    n, tokens, with_types = len(data), 0, None
    with building_entry(entry, lambda e: open_encoded(e, key)[0] is not None) as tmp:
        path = tmp / ENCODED_FILE
        with pa.OSFile(str(path), "wb") as sink:
            writer = None
            for begin in range(0, n, BATCH_ROWS):
                end = min(begin + BATCH_ROWS, n)
                pairs = list(data.pairs[begin:end]) if data.pairs is not None else None
                encoded = tokenizer(list(data.texts[begin:end]), pairs, truncation=True, max_length=max_length)
                if with_types is None:
                    with_types = encoded.get("token_type_ids") is not None
                columns = {"input_ids": _list_array(encoded["input_ids"], pa.int32()),
                           "labels": pa.array(data.labels[begin:end], type=pa.int32())}
                if with_types:
                    columns["token_type_ids"] = _list_array(encoded["token_type_ids"], pa.int8())
                batch = pa.record_batch(list(columns.values()), names=list(columns))
                if writer is None:
                    writer = pa.ipc.new_stream(sink, batch.schema)
                writer.write_batch(batch)
                tokens += sum(len(ids) for ids in encoded["input_ids"])
                now = time.monotonic()
                if progress is not None and now - last >= PROGRESS_EVERY:
                    last = now
                    rate = end / max(now - started, 1e-6)
                    progress({"stage": "tokenising", "examples": end, "examples_total": n, "tokens": tokens,
                              "seconds": round(now - started, 1), "eta_seconds": round((n - end) / rate, 1)})
            if writer is not None:
                writer.close()
        write_json(tmp / META_FILE, {
            "format": ENCODED_FORMAT, "key": key, "source": data.source, "examples": n, "tokens": tokens,
            "max_length": max_length, "pair": data.pairs is not None, "labels": list(data.label_names),
            **sealed(path), "created": time.time(), "seconds": round(time.monotonic() - started, 1)})
    if progress is not None:
        progress({"stage": "done", "examples": n, "tokens": tokens, "cache": str(entry),
                  "seconds": round(time.monotonic() - started, 1)})


def _list_array(rows: Sequence[Sequence[int]], value_type: Any) -> Any:
    import pyarrow as pa

    offsets = np.zeros(len(rows) + 1, dtype=np.int32)
    np.cumsum([len(r) for r in rows], out=offsets[1:])
    values = np.fromiter((v for row in rows for v in row), dtype=value_type.to_pandas_dtype(), count=int(offsets[-1]))
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values, type=value_type))


def open_encoded(entry: Path, key: str, *, verify: bool = True) -> tuple[Encoded | None, str | None]:
    """A cache entry memory-mapped, or ``None`` and why it cannot be used (``None`` and no reason when
    there is no entry)."""
    import pyarrow as pa

    found, problem = read_entry(entry, ENCODED_FILE,
                                lambda meta: meta.get("key") == key and meta.get("format") == ENCODED_FORMAT,
                                "was made from other examples or with other settings", verify=verify)
    if found is None:
        return None, problem
    meta, table = found
    try:
        ids = _ragged(table.column("input_ids"))
        types = _ragged(table.column("token_type_ids")) if "token_type_ids" in table.column_names else None
        labels = table.column("labels").to_numpy().astype(np.int64)
    except (pa.ArrowInvalid, OSError, ValueError, KeyError) as exc:
        return None, f"has an unreadable {ENCODED_FILE} ({exc})"
    if len(ids) != meta.get("examples") or len(labels) != len(ids):
        return None, f"holds {len(ids)} examples where {meta.get('examples')} were written"
    return Encoded(ids, types, labels, key=key, cached=True), None


def _ragged(column: Any) -> Ragged:
    chunks = []
    for chunk in column.chunks:
        if not len(chunk):
            continue
        offsets = chunk.offsets.to_numpy(zero_copy_only=False).astype(np.int64)
        values = chunk.values.to_numpy(zero_copy_only=True)
        chunks.append((values, offsets))
    return Ragged(chunks)


def list_encoded(root: Path | None = None) -> list[dict[str, Any]]:
    """Every entry of tokenised examples: its key, size, source, examples and tokens (unreadable ones
    with a reason)."""
    return scan_entries((root or cache_root()) / ENTRIES, "labelled", "left by a tokenisation that did not finish",
                        lambda meta: {k: meta.get(k) for k in ("source", "examples", "tokens", "max_length", "created")})


def clear_encoded(root: Path | None = None, keys: Sequence[str] = ()) -> int:
    """Remove the entries named by ``keys`` (all when none is named); the bytes freed."""
    return remove_entries((root or cache_root()) / ENTRIES, list_encoded(root), keys)
