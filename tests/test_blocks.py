"""The text of language SFTs tokenised once into a cache: the same blocks as tokenising in memory,
read back memory-mapped, rebuilt when damaged, from every kind of source."""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
import random
import re

import numpy as np
import pytest
import torch

from deftx.data import blocks as B
from deftx.data.text import TextSource, expand_text_paths, load_unlabelled_text, resolve_text_sources
from deftx.errors import DataFormatError, InputNotFoundError
from deftx.model import load_tokenizer
from deftx.objectives import MaskedLMObjective

WORDS = "film ini sangat bagus jelek tidak saya suka makanan enak".split()


def write_text(path, n=400, seed=0, repeat_every=7):
    rng = random.Random(seed)
    lines = []
    for i in range(n):
        if i % repeat_every == 3 and lines:
            lines.append(lines[0])  # a repeated line
        else:
            lines.append(" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 12))))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def tok(tiny_model_dir):
    return load_tokenizer(tiny_model_dir)


def test_the_cached_blocks_are_those_tokenising_in_memory_gives(tok, tmp_path):
    text = write_text(tmp_path / "t.txt")
    for max_lines in (None, 150):
        lines, _ = load_unlabelled_text(files=[text], max_lines=max_lines, seed=3)
        expected = MaskedLMObjective(tok, lines, max_length=16, seed=5)
        made = B.prepare_blocks(resolve_text_sources(None, files=[text]), tok, max_length=16, max_lines=max_lines,
                                seed=3, root=tmp_path / "cache")
        got = MaskedLMObjective(tok, made.blocks, max_length=16, seed=5)
        assert torch.equal(got.train, expected.train) and torch.equal(got.validation, expected.validation)
        for a, b in zip(got.batches(8, 1), expected.batches(8, 1)):
            assert torch.equal(a["input_ids"], b["input_ids"])
        assert made.stats["lines_read"] == 400 and made.stats["lines_kept"] == (max_lines or len(lines))
        assert made.stats["blocks"] == len(made.blocks) and not made.cached


@pytest.mark.shared
def test_the_same_blocks_as_before_on_the_real_text(shared_data, shared_model, tmp_path):
    tok = load_tokenizer(shared_model)
    lines, _ = load_unlabelled_text("mad", shared_data, max_lines=2000, seed=0)
    expected = MaskedLMObjective(tok, lines, max_length=64, seed=0)
    made = B.prepare_blocks(resolve_text_sources("mad", shared_data), tok, max_length=64, max_lines=2000, seed=0,
                            root=tmp_path)
    got = MaskedLMObjective(tok, made.blocks, max_length=64, seed=0)
    assert torch.equal(got.train, expected.train) and torch.equal(got.validation, expected.validation)


def test_a_second_run_reads_the_cache_and_a_changed_text_or_setting_is_another_entry(tok, tmp_path):
    text = write_text(tmp_path / "t.txt")
    sources = resolve_text_sources(None, files=[text])
    root = tmp_path / "cache"
    events = []
    first = B.prepare_blocks(sources, tok, max_length=16, root=root, progress=events.append)
    again = B.prepare_blocks(sources, tok, max_length=16, root=root, progress=events.append)
    assert again.cached and again.spec.key == first.spec.key and np.array_equal(again.blocks[range(5)], first.blocks[range(5)])
    assert [e["stage"] for e in events][-2:] == ["done", "cached"]
    assert B.text_spec(sources, tok, max_length=32, max_lines=None, seed=0, root=root).key != first.spec.key
    write_text(text, seed=1)  # the same file, other text
    assert B.text_spec(sources, tok, max_length=16, max_lines=None, seed=0, root=root).key != first.spec.key
    assert len(B.list_entries(root)) == 1
    assert B.clear_entries(root) > 0 and B.list_entries(root) == []


def test_a_damaged_or_half_written_entry_is_never_read(tok, tmp_path):
    text = write_text(tmp_path / "t.txt")
    sources = resolve_text_sources(None, files=[text])
    root = tmp_path / "cache"
    good = B.prepare_blocks(sources, tok, max_length=16, root=root)
    expected = good.blocks[np.arange(len(good.blocks))]
    blocks = good.path / B.BLOCKS_FILE
    data = bytearray(blocks.read_bytes())
    data[len(data) // 2] ^= 0x01  # one flipped bit in a token id
    blocks.write_bytes(bytes(data))
    events = []
    rebuilt = B.prepare_blocks(sources, tok, max_length=16, root=root, progress=events.append)
    assert events[0]["stage"] == "rebuild" and "checksum mismatch" in events[0]["message"]
    assert np.array_equal(rebuilt.blocks[np.arange(len(rebuilt.blocks))], expected)
    blocks.write_bytes(blocks.read_bytes()[:100])  # truncated
    entry, problem = B.open_entry(good.path, good.spec)
    assert entry is None and "bytes where" in problem
    # a preparation killed while writing leaves a temporary directory: listed, never read
    (root / B.ENTRIES / f".{good.spec.key}.abc.tmp").mkdir()
    assert any(e.get("problem") == "left by a preparation that did not finish" for e in B.list_entries(root))
    # an entry whose recorded spec is another text's is not used
    meta = json.loads((good.path / B.META_FILE).read_text())
    meta["spec"]["max_length"] = 17
    (good.path / B.META_FILE).write_text(json.dumps(meta))
    assert B.open_entry(good.path, good.spec) == (None, "was made from another text or with other settings")


@pytest.mark.parametrize("suffix", [".gz", ".bz2", ".xz", ".zst"])
def test_compressed_text_gives_the_blocks_of_the_plain_text(tok, tmp_path, suffix):
    plain = write_text(tmp_path / "t.txt")
    data = plain.read_bytes()
    if suffix == ".zst":
        import zstandard

        packed = zstandard.ZstdCompressor().compress(data)
    else:
        packed = {".gz": gzip.compress, ".bz2": bz2.compress, ".xz": lzma.compress}[suffix](data)
    compressed = tmp_path / f"t.txt{suffix}"
    compressed.write_bytes(packed)
    a = B.prepare_blocks(resolve_text_sources(None, files=[plain]), tok, max_length=16, root=tmp_path / "a")
    b = B.prepare_blocks(resolve_text_sources(None, files=[compressed]), tok, max_length=16, root=tmp_path / "b")
    assert np.array_equal(a.blocks[np.arange(len(a.blocks))], b.blocks[np.arange(len(b.blocks))])


def test_directories_and_globs_name_their_files_in_order(tmp_path):
    corpus = tmp_path / "corpus"
    (corpus / "b").mkdir(parents=True)
    for name in ("a.txt", "b/c.txt", "b/d.txt.gz"):
        (corpus / name).write_text("x\n")
    (corpus / ".hidden").write_text("x\n")
    assert [p.relative_to(corpus).as_posix() for p in expand_text_paths([corpus])] == ["a.txt", "b/c.txt", "b/d.txt.gz"]
    assert [p.name for p in expand_text_paths([str(corpus / "**" / "*.txt")])] == ["a.txt", "c.txt"]
    with pytest.raises(InputNotFoundError, match="the pattern matches no file"):
        expand_text_paths([str(corpus / "*.parquet")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputNotFoundError, match="a directory without files"):
        expand_text_paths([tmp_path / "empty"])


@pytest.mark.parametrize("content, message", [
    (b"", "is empty"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00", "not a text file (it holds NUL bytes"),
    (b"caf\xe9 au lait\n", "is not UTF-8 text (line 1)"),
    (b"\n  \n\n", "holds no text"),
])
def test_a_file_that_is_not_text_is_one_clear_error(tok, tmp_path, content, message):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(content)
    with pytest.raises(DataFormatError, match=re.escape(message)):
        B.prepare_blocks([TextSource(bad, None, "given file")], tok, max_length=16, root=tmp_path / "cache")
    assert not [p for p in (tmp_path / "cache" / B.ENTRIES).glob("*") if not p.name.endswith(".json")]


def test_a_truncated_compressed_file_is_one_clear_error(tok, tmp_path):
    plain = write_text(tmp_path / "t.txt", n=3000)
    cut = tmp_path / "t.txt.gz"
    cut.write_bytes(gzip.compress(plain.read_bytes())[:2000])
    with pytest.raises(DataFormatError, match="cannot be read to its end"):
        B.prepare_blocks(resolve_text_sources(None, files=[cut]), tok, max_length=16, root=tmp_path / "cache")


def test_progress_says_how_far_and_how_fast(tok, tmp_path, monkeypatch):
    monkeypatch.setattr(B, "PROGRESS_EVERY", 0.0)
    monkeypatch.setattr(B, "BATCH_LINES", 50)
    text = write_text(tmp_path / "t.txt", n=2000)
    events = []
    B.prepare_blocks(resolve_text_sources(None, files=[text]), tok, max_length=16, root=tmp_path / "c",
                     progress=events.append)
    tokenising = [e for e in events if e["stage"] == "tokenising"]
    assert tokenising and all(e["bytes_total"] == text.stat().st_size for e in tokenising)
    assert [e["lines"] for e in tokenising] == sorted(e["lines"] for e in tokenising)
    assert tokenising[-1]["bytes_read"] > 0 and tokenising[-1]["eta_seconds"] is not None
    done = events[-1]
    assert done["stage"] == "done" and done["tokens"] > 0 and done["cache"]


WAIT_AND_OPEN = """
import json, sys
from deftx.data import blocks as B
from deftx.data.text import resolve_text_sources
from deftx.model import load_tokenizer
text, model, root = sys.argv[1:4]
sources = resolve_text_sources(None, files=[text])
report = lambda fields: print(json.dumps(fields), flush=True)
found = B.prepare_blocks(sources, load_tokenizer(model), max_length=16, root=__import__("pathlib").Path(root),
                         progress=report)
print(json.dumps({"stage": "result", "cached": found.cached, "blocks": len(found.blocks)}), flush=True)
"""


def test_a_process_that_needs_an_entry_another_is_building_waits_and_opens_it(tok, tmp_path, tiny_model_dir):
    """The processes of a launch (or two jobs of an experiment) that need the same text: one builds it,
    the others wait for it and open what it built instead of building it too, or removing it."""
    import subprocess
    import sys

    text = write_text(tmp_path / "t.txt")
    sources = resolve_text_sources(None, files=[text])
    root = tmp_path / "cache"
    spec = B.text_spec(sources, tok, max_length=16, max_lines=None, seed=0, root=root)
    entry = root / B.ENTRIES / spec.key
    with B.entry_lock(entry):  # this process is building the entry
        other = subprocess.Popen([sys.executable, "-c", WAIT_AND_OPEN, str(text), str(tiny_model_dir), str(root)],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        first = json.loads(other.stdout.readline())
        assert first["stage"] == "waiting" and str(entry) in first["message"]
        B._Preparation(sources, tok, spec, entry, None).run()
        created = json.loads((entry / B.META_FILE).read_text())["created"]
    out, err = other.communicate(timeout=120)
    assert other.returncode == 0, err
    events = [json.loads(line) for line in out.splitlines()]
    assert [e["stage"] for e in events] == ["cached", "result"]
    assert events[-1]["cached"] is True
    assert json.loads((entry / B.META_FILE).read_text())["created"] == created  # not built again


def test_an_entry_finished_meanwhile_is_kept_and_a_damaged_one_replaced(tmp_path):
    entry = tmp_path / "entries" / "k"
    with B.building_entry(entry, whole=lambda e: True) as tmp:
        (tmp / "mine").write_text("built here")
        entry.mkdir()
        (entry / "theirs").write_text("built by another process")  # finished first, whole
    assert [p.name for p in entry.iterdir()] == ["theirs"]
    with B.building_entry(entry, whole=lambda e: False) as tmp:  # the entry there is damaged
        (tmp / "mine").write_text("built here")
    assert [p.name for p in entry.iterdir()] == ["mine"]
    assert [p.name for p in entry.parent.iterdir()] == ["k"]  # no temporary folder left
    with pytest.raises(RuntimeError):
        with B.building_entry(entry, whole=lambda e: False) as tmp:
            (tmp / "half").write_text("half-written")
            raise RuntimeError("interrupted")
    assert [p.name for p in entry.iterdir()] == ["mine"]
    assert [p.name for p in entry.parent.iterdir()] == ["k"]
