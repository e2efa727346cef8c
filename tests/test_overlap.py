"""The interference report: hand-computed pairs, grouping, the CLI, and no torch on its path."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from deftx.sft.overlap import SparseArrays, overlap_report, pair_overlap, parameter_group, read_sparse_arrays
from deftx.sft.diff import SparseDiff
from deftx_cli.app import app

Q = "encoder.layer.0.attention.self.query.weight"
V = "encoder.layer.1.attention.self.value.weight"
E = "embeddings.word_embeddings.weight"


def arrays(label, entries, shapes=None):
    return SparseArrays(label, {n: (np.array(i, dtype=np.int64), np.array(v, dtype=np.float64))
                                for n, (i, v) in entries.items()}, {"shapes": shapes or {}})


def test_a_pair_by_hand():
    a = arrays("a", {Q: ([0, 2, 5, 9], [1.0, -2.0, 3.0, 1.0]), E: ([4], [2.0])}, {Q: [4, 4], E: [8, 2]})
    b = arrays("b", {Q: ([2, 5, 7], [1.0, 1.0, -1.0]), V: ([1], [3.0])}, {Q: [4, 4], V: [4, 4]})
    report = pair_overlap(a, b)
    total = report["total"]
    assert (total["a"], total["b"], total["shared"]) == (5, 4, 2)  # positions 2 and 5 of Q
    assert total["jaccard"] == pytest.approx(2 / 7)
    assert total["sign_disagreement"] == pytest.approx(1 / 2)  # -2 vs +1 disagree, 3 vs 1 agree
    # composed: Q {0: 1, 2: -1, 5: 4, 9: 1, 7: -1}, E {4: 2}, V {1: 3}
    shared_sq, total_sq = 1 + 16, 1 + 1 + 16 + 1 + 1 + 4 + 9
    assert total["norm_share"] == pytest.approx(shared_sq / total_sq)
    assert total["chance"] == pytest.approx(4 * 3 / 16)  # only Q is changed by both
    assert total["over_chance"] == pytest.approx(2 / (12 / 16))
    assert report["by_type"]["attention.self.query"]["shared"] == 2
    assert report["by_type"]["attention.self.value"]["a"] == 0
    assert report["by_layer"]["0"]["sign_disagreement"] == pytest.approx(0.5)
    assert report["by_layer"]["1"]["sign_disagreement"] is None  # nothing shared there
    assert list(report["by_layer"]) == ["-", "0", "1"]


def test_disjoint_and_identical_sfts():
    a = arrays("a", {Q: ([0, 1], [1.0, 1.0])})
    b = arrays("b", {Q: ([2, 3], [1.0, 1.0])})
    assert pair_overlap(a, b)["total"]["shared"] == 0 and pair_overlap(a, b)["total"]["norm_share"] == 0
    same = pair_overlap(a, a)["total"]
    assert same["jaccard"] == 1 and same["sign_disagreement"] == 0 and same["norm_share"] == 1
    flipped = arrays("c", {Q: ([0, 1], [-1.0, -1.0])})
    opposite = pair_overlap(a, flipped)["total"]
    assert opposite["sign_disagreement"] == 1 and opposite["norm_share"] == 0  # they cancel exactly


def test_every_pair_of_three():
    sfts = [arrays(x, {Q: ([i], [1.0])}) for i, x in enumerate("abc")]
    report = overlap_report(sfts)
    assert [(p["a"], p["b"]) for p in report["pairs"]] == [("a", "b"), ("a", "c"), ("b", "c")]


def test_parameter_groups():
    assert parameter_group(Q) == ("attention.self.query", "0")
    assert parameter_group("encoder.layer.11.output.dense.bias") == ("output.dense", "11")
    assert parameter_group(E) == ("embeddings.word_embeddings", "-")


def save_sft(path, entries, shapes, **manifest):
    entries = {n: (torch.tensor(i, dtype=torch.int64), torch.tensor(v, dtype=torch.float32)) for n, (i, v) in entries.items()}
    SparseDiff(entries, shapes, {}, {"kind": "language", "method": "lt-sft", **manifest}).save(path)


def test_cli_report_and_json(tmp_path):
    shapes = {Q: (4, 4)}
    save_sft(tmp_path / "lang", {Q: ([0, 2, 5], [1.0, -2.0, 3.0])}, shapes, language="ace")
    save_sft(tmp_path / "task", {Q: ([2, 5, 7], [1.0, 1.0, -1.0])}, shapes, kind="task", task="nusax-senti")
    read = read_sparse_arrays(tmp_path / "lang")
    assert read.entries[Q][0].tolist() == [0, 2, 5] and read.manifest["language"] == "ace"

    r = CliRunner().invoke(app, ["overlap", str(tmp_path / "lang"), str(tmp_path / "task"), "--json"])
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)
    pair = report["pairs"][0]
    assert pair["total"]["shared"] == 2 and pair["total"]["sign_disagreement"] == 0.5
    assert pair["a_sft"]["language"] == "ace" and pair["b_sft"]["task"] == "nusax-senti"
    r = CliRunner().invoke(app, ["overlap", str(tmp_path / "lang"), str(tmp_path / "task"), "--by", "type"])
    assert r.exit_code == 0 and "attention.self.query" in r.stdout and "50.0%" in r.stdout
    r = CliRunner().invoke(app, ["overlap", str(tmp_path / "lang")])
    assert r.exit_code == 2 and "at least two" in r.stderr
    r = CliRunner().invoke(app, ["overlap", str(tmp_path / "lang"), str(tmp_path / "nope")])
    assert r.exit_code == 3 and "does not exist" in r.stderr


def test_a_corrupt_sft_is_refused(tmp_path):
    save_sft(tmp_path / "a", {Q: ([0, 2], [1.0, 2.0])}, {Q: (4, 4)})
    save_sft(tmp_path / "b", {Q: ([2], [1.0])}, {Q: (4, 4)})
    data = bytearray((tmp_path / "b" / "diff.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (tmp_path / "b" / "diff.safetensors").write_bytes(bytes(data))
    r = CliRunner().invoke(app, ["overlap", str(tmp_path / "a"), str(tmp_path / "b")])
    assert r.exit_code == 5 and "checksum mismatch" in r.stderr and "Traceback" not in r.stderr
