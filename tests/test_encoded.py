"""Labelled examples tokenised once into the cache: the same token ids as tokenising in memory, read
back memory-mapped, keyed by everything that determines them, rebuilt when damaged."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from deftx.data import encoded as E
from deftx.data.labelled import LabelledData
from deftx.model import load_tokenizer
from deftx.objectives import ClassificationObjective

WORDS = "film ini sangat bagus jelek tidak saya suka makanan enak".split()


def data(n=300, seed=0, pairs=False, labels=("negative", "neutral", "positive")):
    rng = random.Random(seed)
    sentence = lambda: " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 30)))  # noqa: E731
    return LabelledData([sentence() for _ in range(n)], [sentence() for _ in range(n)] if pairs else None,
                        [rng.randrange(len(labels)) for _ in range(n)], tuple(labels), "generated")


@pytest.fixture
def tok(tiny_model_dir):
    return load_tokenizer(tiny_model_dir)


@pytest.mark.parametrize("pairs", [False, True])
def test_cached_examples_are_the_tokenizers_ids_row_for_row(tok, tmp_path, monkeypatch, pairs):
    monkeypatch.setattr(E, "BATCH_ROWS", 64)  # several record batches, so rows cross chunk boundaries
    d = data(pairs=pairs)
    expected = tok(d.texts, d.pairs, truncation=True, max_length=12)
    root = tmp_path / "cache"
    made = E.encode_labelled(tok, d, 12, root=root)
    again = E.encode_labelled(tok, d, 12, root=root)
    assert not made.cached and again.cached and made.key == again.key
    for got in (made, again):
        assert len(got) == 300 and len(got.input_ids.chunks) == 5
        assert [got.input_ids[i].tolist() for i in range(300)] == expected["input_ids"]
        assert [got.token_type_ids[i].tolist() for i in range(300)] == expected["token_type_ids"]
        assert got.labels.tolist() == d.labels
        assert got.lengths.tolist() == [len(r) for r in expected["input_ids"]]
    assert max(got.lengths) == 12  # truncated
    memory = E.encode_labelled(tok, d, 12, cache=False)
    assert [memory.input_ids[i].tolist() for i in range(300)] == expected["input_ids"]


def test_the_key_follows_content_labels_tokenizer_and_length(tok, tiny_model_dir, tmp_path):
    d = data()
    key = E.encoded_key(d, tok, 16)
    assert E.encoded_key(data(), tok, 16) == key
    assert E.encoded_key(d, tok, 32) != key
    changed = data()
    changed.texts[7] += " film"
    assert E.encoded_key(changed, tok, 16) != key
    relabelled = data()
    relabelled.labels[0] = (relabelled.labels[0] + 1) % 3
    assert E.encoded_key(relabelled, tok, 16) != key
    assert E.encoded_key(data(pairs=True), tok, 16) != E.encoded_key(data(), tok, 16)
    other = load_tokenizer(tiny_model_dir)
    other.add_tokens(["neuword"])
    assert E.encoded_key(d, other, 16) != key


def test_a_damaged_or_half_written_entry_is_never_read(tok, tmp_path):
    root = tmp_path / "cache"
    d = data()
    made = E.encode_labelled(tok, d, 16, root=root)
    expected = [made.input_ids[i].tolist() for i in range(len(d))]
    path = root / E.ENTRIES / made.key / E.ENCODED_FILE
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))
    events = []
    rebuilt = E.encode_labelled(tok, d, 16, root=root, progress=events.append)
    assert not rebuilt.cached and "checksum mismatch" in events[0]["message"]
    assert [rebuilt.input_ids[i].tolist() for i in range(len(d))] == expected
    # A tokenisation killed before its rename leaves a hidden directory: listed, never read.
    (root / E.ENTRIES / f".{made.key}.abc.tmp").mkdir()
    listed = {e["key"]: e for e in E.list_encoded(root)}
    assert listed[made.key]["examples"] == 300 and "did not finish" in listed[f".{made.key}.abc.tmp"]["problem"]
    meta = json.loads((root / E.ENTRIES / made.key / E.META_FILE).read_text())
    meta["examples"] = 299  # a meta.json that does not describe its file
    (root / E.ENTRIES / made.key / E.META_FILE).write_text(json.dumps(meta))
    found, problem = E.open_encoded(root / E.ENTRIES / made.key, made.key)
    assert found is None and "299" in problem
    assert E.clear_encoded(root) > 0 and E.list_encoded(root) == []


def test_the_task_objective_tokenises_once_and_batches_from_the_cache(tok, tmp_path):
    d = data(n=200)
    events = []
    first = ClassificationObjective(tok, d, d, max_length=16, group_by_length=True, progress=events.append)
    second = ClassificationObjective(tok, d, d, max_length=16, group_by_length=True, progress=events.append)
    assert [e["stage"] for e in events] == ["done", "cached"] and events[0]["examples"] == 200
    assert not first.train.cached and second.train.cached
    for a, b in zip(first.batches(16, 3), second.batches(16, 3)):
        assert all(np.array_equal(a[k], b[k]) for k in a)
    batch = next(iter(second.batches(16, 3)))
    width = batch["input_ids"].shape[1]
    assert int(batch["attention_mask"].sum(1).max()) == width  # padded to its longest row, not max_length


def test_the_key_does_not_depend_on_how_the_tokenizer_was_last_called(tok):
    d = data()
    key = E.encoded_key(d, tok, 16)
    tok(["film ini"], truncation=True, max_length=5, padding="max_length")
    assert E.encoded_key(d, tok, 16) == key
