"""A text streamed as training reads it: blocks made on the fly, a held-out set apart, and a stream
continued from a checkpoint's state that gives the same blocks as one never stopped."""

from __future__ import annotations

import json
import random
import shutil

import numpy as np
import pytest
from test_resume import child, cli, sft_bytes, train_steps

from deftx.data.stream import BlockStream, StreamState, is_held_out
from deftx.data.text import choose_text_mode, resolve_text_sources
from deftx.errors import UsageError
from deftx.model import load_tokenizer

WORDS = "film ini sangat bagus jelek tidak saya suka makanan enak".split()


def write_text(path, n=600, seed=0):
    rng = random.Random(seed)
    path.write_text("\n".join(" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 12))) + f" {i}"
                              for i in range(n)) + "\n")
    return path


@pytest.fixture
def stream(tiny_model_dir, tmp_path):
    text = write_text(tmp_path / "t.txt")
    return BlockStream(resolve_text_sources(None, files=[text]), load_tokenizer(tiny_model_dir), max_length=16,
                       buffer_blocks=32)


def test_a_stream_continued_from_any_state_gives_the_blocks_of_one_never_stopped(stream):
    whole = [block.copy() for block, _ in stream.blocks(seed=7)]
    assert len(whole) > 100
    for stop in (1, 40, 95, len(whole) - 3):
        blocks = stream.blocks(seed=7)
        for _ in range(stop):
            _, state = next(blocks)
        saved = json.loads(json.dumps({k: v for k, v in state.to_dict().items() if k != "buffer"}))
        saved["buffer"] = state.to_dict()["buffer"]  # a tensor in the checkpoint, JSON for the rest
        rest = [block for block, _ in stream.blocks(seed=7, state=StreamState.from_dict(saved))]
        assert np.array_equal(np.stack(whole[stop:]), np.stack(rest)), stop


def test_held_out_lines_are_never_trained_on(stream, tiny_model_dir):
    tok = load_tokenizer(tiny_model_dir)
    held = stream.held_out(max_blocks=1000)
    assert len(held) > 0
    trained = {tuple(b) for b, _ in stream.blocks(seed=0)}
    assert not trained & {tuple(b) for b in held}
    lines = [line for line in (stream.sources[0].lines())]
    held_lines = [line for line in lines if is_held_out(line)]
    assert 0 < len(held_lines) < len(lines) / 10
    ids = tok(held_lines[0], add_special_tokens=False)["input_ids"]
    assert list(held[0][1 : 1 + min(len(ids), 14)]) == ids[:14]  # the held-out blocks start with the first held-out line


def test_auto_streams_only_a_text_much_larger_than_the_run_reads(tmp_path, monkeypatch):
    text = write_text(tmp_path / "t.txt")
    sources = resolve_text_sources(None, files=[text])
    assert choose_text_mode("auto", sources, tokens_read=1000, max_lines=None) == "cache"  # small: cached
    monkeypatch.setattr("deftx.data.text.STREAM_FLOOR", 0)
    assert choose_text_mode("auto", sources, tokens_read=10, max_lines=None) == "stream"
    assert choose_text_mode("auto", sources, tokens_read=10**9, max_lines=None) == "cache"
    assert choose_text_mode("auto", sources, tokens_read=10, max_lines=100) == "cache"  # a subset needs it whole
    assert choose_text_mode("stream", sources, tokens_read=10, max_lines=100) == "stream"  # the first lines then
    with pytest.raises(UsageError, match="--text-mode fast: choose one of auto, cache, stream"):
        choose_text_mode("fast", sources, tokens_read=10, max_lines=None)


def test_a_streamed_language_sft_killed_in_both_phases_resumes_to_the_same_sft(tiny_model_dir, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    (model / "head_warmup.json").write_text("{}")
    text = write_text(tmp_path / "text.txt", n=1500)
    args = ["train-lang", "--lang", "ind", "--text", text, "--text-mode", "stream", "--model", model, "--preset",
            "smoke", "--phase1-steps", 6, "--phase2-steps", 6, "--k", "0.05", "--batch-size", 4, "--max-length", 16,
            "--lr", "0.01", "--weight-decay", "0.1", "--device", "cpu"]
    cli(*args, "--runs-dir", tmp_path / "reference", "--run-id", "ref", "--quiet")
    expected = sft_bytes(tmp_path / "reference" / "ref" / "sft")
    record = json.loads((tmp_path / "reference" / "ref" / "run.json").read_text())
    assert record["data"]["mode"] == "stream" and record["resume_settings"]["text_key"].startswith("stream-")
    runs = tmp_path / "runs"
    resumed = [*args, "--runs-dir", runs, "--run-id", "r", "--save-every", "2"]
    child("KILL", "train:1:3", *resumed, code=-9)
    child("KILL", "train:2:5", *resumed, "--resume", code=-9)
    cli(*resumed, "--resume")
    assert sft_bytes(runs / "r" / "sft") == expected
    assert train_steps(runs / "r") == [(1, s) for s in range(1, 7)] + [(2, s) for s in range(1, 7)]
