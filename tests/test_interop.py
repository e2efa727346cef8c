"""composable-sft SFTs in and out: index order, the fixture written by composable-sft, round trips,
and refusing files that would run code."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest

import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from deftx.errors import ArtifactError
from deftx.sft.interop import (
    first_fastest_to_row_major,
    import_composable_sft,
    load_composable_file,
    row_major_to_first_fastest,
)
from deftx.model import base_parameters, head_parameters, load_model
from deftx.sft.diff import SparseDiff
from deftx_cli.app import app


def cli(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def reference_encode(dense_diff: torch.Tensor) -> dict:
    """composable-sft's encoding of one difference, written out from its description: coordinates
    times cumprod([1] + size[:-1]), sorted, delta-encoded, the first step a numpy int64."""
    sparse = dense_diff.to_sparse().coalesce()
    multipliers = np.cumprod([1] + list(dense_diff.shape)[:-1], dtype=np.int64)
    flat = multipliers @ sparse.indices().numpy().astype(np.int64)
    order = np.argsort(flat, kind="stable")
    flat = flat[order]
    steps = [flat[0]] + (flat[1:] - flat[:-1]).tolist()
    return {"size": dense_diff.shape, "index_steps": steps, "values": sparse.values()[torch.from_numpy(order)]}


# ------------------------------------------------------------------ index order


@pytest.mark.parametrize("shape", [(7,), (5, 3), (4, 3, 2)])
def test_index_conversion_matches_numpy_ravel_orders(shape):
    numel = int(np.prod(shape))
    coords = np.unravel_index(np.arange(numel), shape)
    first_fastest = torch.from_numpy(np.ravel_multi_index(coords, shape, order="F"))
    row_major = torch.from_numpy(np.ravel_multi_index(coords, shape, order="C"))
    assert torch.equal(first_fastest_to_row_major(first_fastest, shape), row_major)
    assert torch.equal(row_major_to_first_fastest(row_major, shape), first_fastest)
    if len(shape) > 1:  # the two orders really differ: a missing conversion would be caught
        assert not torch.equal(first_fastest, row_major)


# ------------------------------------------------------------------ the fixture composable-sft wrote


def test_import_reproduces_composable_sfts_own_decoding(composable_fixture, shared_model):
    diff = import_composable_sft(composable_fixture, shared_model)
    expected = load_file(str(composable_fixture / "expected.safetensors"))
    diffs = {k[len("diff.bert."):-len(".indices")] for k in expected if k.endswith(".indices")}
    assert set(diff.entries) == diffs and len(diffs) == 26
    for name, (idx, values) in diff.entries.items():
        assert torch.equal(idx, expected[f"diff.bert.{name}.indices"]), name
        assert torch.equal(values, expected[f"diff.bert.{name}.values"]), name
    heads = {k[len("abs."):] for k in expected if k.startswith("abs.")}
    assert set(diff.head) == heads and len(heads) == 5
    for name, tensor in diff.head.items():
        assert torch.equal(tensor, expected[f"abs.{name}"]), name
    assert diff.manifest["kind"] == "language" and diff.manifest["imported_from"]["name_prefix"] == "bert"
    # the base model as a path that resolves from any working directory, as trained SFTs record it
    assert diff.manifest["base_model"] == str(Path(shared_model).resolve())


def test_export_reproduces_the_fixture_and_round_trips(composable_fixture, shared_model, tmp_path):
    r = cli("import", composable_fixture, "--model", shared_model, "--out", tmp_path / "sft")
    assert r.exit_code == 0, r.output
    r = cli("export", tmp_path / "sft", "--to", "composable-sft", "--out", tmp_path / "out")
    assert r.exit_code == 0, r.output
    (tmp_path / "plain").write_bytes(b"")  # what the umask gives a file opened plainly
    for written in (tmp_path / "out").iterdir():  # not mkstemp's private 0600
        assert written.stat().st_mode & 0o777 == (tmp_path / "plain").stat().st_mode & 0o777, written
    original = load_composable_file(composable_fixture / "pytorch_diff.bin")
    exported = load_composable_file(tmp_path / "out" / "pytorch_diff.bin")
    assert list(exported["diffs"]) == list(original["diffs"])
    for name, enc in original["diffs"].items():
        out = exported["diffs"][name]
        assert out["size"] == enc["size"] and isinstance(out["size"], torch.Size)
        assert out["index_steps"] == enc["index_steps"], name
        assert [type(s) for s in out["index_steps"][:2]] == [type(s) for s in enc["index_steps"][:2]]
        assert torch.equal(out["values"], enc["values"]), name
    assert list(exported["abs"]) == list(original["abs"])
    assert all(torch.equal(exported["abs"][k], v) for k, v in original["abs"].items())

    r = cli("import", tmp_path / "out", "--model", shared_model, "--out", tmp_path / "again")
    assert r.exit_code == 0, r.output
    first, again = SparseDiff.load(tmp_path / "sft"), SparseDiff.load(tmp_path / "again")
    assert first.shapes == again.shapes and set(first.head) == set(again.head)
    for name, (idx, values) in first.entries.items():
        assert torch.equal(idx, again.entries[name][0]) and torch.equal(values, again.entries[name][1])
    assert all(torch.equal(t, again.head[k]) for k, t in first.head.items())


# ------------------------------------------------------------------ tiny models


def composable_task_sft(model, directory, labels, layer_norm=True, seed=0):
    """A task SFT in composable-sft's format for a tiny classifier: sparse differences (LayerNorm
    included), the classifier as 'abs', and a config.json naming the labels."""
    g = torch.Generator().manual_seed(seed)
    diffs, dense = {}, {}
    for name, p in model.named_parameters():
        if name.startswith("bert.") and ("LayerNorm" not in name or layer_norm):
            mask = torch.rand(p.shape, generator=g) < 0.2
            diffs[name] = reference_encode(torch.randn(p.shape, generator=g) * mask)
        elif not name.startswith("bert."):
            dense[name] = torch.randn(p.shape, generator=g)
    directory.mkdir(parents=True, exist_ok=True)
    torch.save({"diffs": diffs, "abs": dense}, directory / "pytorch_diff.bin")
    (directory / "config.json").write_text(json.dumps({"id2label": {str(i): l for i, l in enumerate(labels)}}))
    return diffs, dense


def test_task_sft_import_applies_like_composable_sft(tiny_model_dir, tmp_path):
    labels = ["negative", "neutral", "positive"]
    model, _ = load_model(tiny_model_dir, "classification", labels=labels)
    diffs, dense = composable_task_sft(model, tmp_path / "src", labels)
    fresh, _ = load_model(tiny_model_dir, "classification", labels=labels)  # its own pooler: not pretrained
    expected = {n: p.detach().clone() for n, p in fresh.named_parameters()}
    for name, enc in diffs.items():  # composable-sft's own decoding, as its README describes it
        steps = np.cumsum(np.array(enc["index_steps"], dtype=np.int64))
        divisors = np.concatenate([[1], np.cumprod(list(enc["size"]))[:-1]])
        coords = (steps[None, :] // divisors[:, None]) % np.array(list(enc["size"]))[:, None]
        expected[name] += torch.sparse_coo_tensor(torch.from_numpy(coords), enc["values"], enc["size"],
                                                  check_invariants=True).to_dense()
    expected.update(dense)

    r = cli("import", tmp_path / "src", "--model", tiny_model_dir, "--out", tmp_path / "sft", "--task", "nusax-senti")
    assert r.exit_code == 0, r.output
    assert "LayerNorm" in r.stderr
    diff = SparseDiff.load(tmp_path / "sft")
    assert diff.manifest["kind"] == "task" and diff.manifest["labels"] == labels
    assert diff.manifest["layer_norm"]["parameters"] > 0
    diff.apply(fresh)
    for name, p in fresh.named_parameters():
        assert torch.allclose(p, expected[name], atol=1e-6), name

    r = cli("info", tmp_path / "sft")
    assert r.exit_code == 0 and "layer norm" in r.stdout and "LayerNorm parameters" in r.stdout
    assert "composable-sft" in r.stdout


def test_task_sft_without_labels_asks_for_them(tiny_model_dir, tmp_path):
    model, _ = load_model(tiny_model_dir, "classification", labels=["a", "b"])
    composable_task_sft(model, tmp_path / "src", ["a", "b"])
    (tmp_path / "src" / "config.json").unlink()
    r = cli("import", tmp_path / "src", "--model", tiny_model_dir, "--out", tmp_path / "sft")
    assert r.exit_code == 5 and "--labels" in r.stderr and not (tmp_path / "sft").exists()
    r = cli("import", tmp_path / "src", "--model", tiny_model_dir, "--out", tmp_path / "sft", "--labels", "a,b,c")
    assert r.exit_code == 5 and "classifier" in r.stderr and "Traceback" not in r.stderr
    r = cli("import", tmp_path / "src", "--model", tiny_model_dir, "--out", tmp_path / "sft", "--labels", "a,b")
    assert r.exit_code == 0, r.output
    before = (tmp_path / "sft" / "sft.json").read_bytes()
    r = cli("import", tmp_path / "src", "--model", tiny_model_dir, "--out", tmp_path / "sft", "--labels", "b,a")
    assert r.exit_code == 2 and "--overwrite" in r.stderr
    assert (tmp_path / "sft" / "sft.json").read_bytes() == before  # nothing already written is lost


def test_names_and_shapes_are_checked_against_the_base_model(tiny_model_dir, tmp_path):
    model, _ = load_model(tiny_model_dir, "mlm")
    p = base_parameters(model)["encoder.layer.0.attention.self.query.weight"]
    bad_shape = {"bert.encoder.layer.0.attention.self.query.weight": reference_encode(torch.ones(p.shape[0] + 1, p.shape[1]))}
    unknown = {"roberta.encoder.layer.0.attention.self.query.weight": reference_encode(torch.ones(p.shape))}
    for i, diffs in enumerate((bad_shape, unknown)):
        src = tmp_path / f"src{i}"
        src.mkdir()
        torch.save({"diffs": diffs, "abs": {}}, src / "pytorch_diff.bin")
        r = cli("import", src, "--model", tiny_model_dir, "--out", tmp_path / f"sft{i}")
        assert r.exit_code == 5 and "Traceback" not in r.stderr, r.output
        assert "query.weight" in r.stderr
        assert not (tmp_path / f"sft{i}").exists()


def test_language_sft_round_trip_from_deftx(tiny_model_dir, tmp_path):
    model, _ = load_model(tiny_model_dir, "mlm")
    g = torch.Generator().manual_seed(3)
    params = base_parameters(model)
    current = {n: p.detach() + torch.randn(p.shape, generator=g) for n, p in params.items()}
    masks = {n: torch.rand(p.shape, generator=g) < 0.1 for n, p in params.items()}
    head = {n: p.detach() + 1 for n, p in head_parameters(model).items()}
    diff = SparseDiff.from_difference(current, {n: p.detach() for n, p in params.items()}, masks, head=head,
                                      manifest={"kind": "language", "method": "deftx", "base_model": str(tiny_model_dir)})
    diff.save(tmp_path / "sft")
    assert cli("export", tmp_path / "sft", "--to", "composable-sft", "--out", tmp_path / "out").exit_code == 0
    raw = load_composable_file(tmp_path / "out" / "pytorch_diff.bin")
    assert all(name.startswith("bert.") for name in raw["diffs"])
    back = import_composable_sft(tmp_path / "out", tiny_model_dir)
    assert set(back.entries) == set(diff.entries)
    for name, (idx, values) in diff.entries.items():
        assert torch.equal(back.entries[name][0], idx) and torch.equal(back.entries[name][1], values)
    assert all(torch.equal(back.head[k], v) for k, v in head.items())
    r = cli("export", tmp_path / "sft", "--to", "composable-sft", "--out", tmp_path / "out")
    assert r.exit_code == 2 and "--overwrite" in r.stderr


def test_the_earlier_body_and_head_layout_is_read(tiny_model_dir, tmp_path):
    model, _ = load_model(tiny_model_dir, "mlm")
    p = base_parameters(model)["encoder.layer.1.output.dense.weight"]
    dense = torch.zeros(p.shape)
    dense[0, 3], dense[2, 1], dense[5, 0] = 1.5, -2.0, 0.25
    bias = torch.zeros(p.shape[0])
    bias[4] = 3.0
    head = {n: torch.ones(t.shape) for n, t in head_parameters(model).items()}
    src = tmp_path / "src"
    src.mkdir()
    torch.save({"body": {"bert.encoder.layer.1.output.dense.weight": dense.to_sparse(),
                         "bert.encoder.layer.1.output.dense.bias": reference_encode(bias)}, "head": head},
               src / "pytorch_diff.bin")
    diff = import_composable_sft(src, tiny_model_dir)
    idx, values = diff.entries["encoder.layer.1.output.dense.weight"]
    assert torch.equal(idx, torch.nonzero(dense.reshape(-1)).flatten()) and values.tolist() == [1.5, -2.0, 0.25]
    assert diff.entries["encoder.layer.1.output.dense.bias"][0].tolist() == [4]
    assert set(diff.head) == set(head)


# ------------------------------------------------------------------ nothing in the file runs


class CreatesAFile:
    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.mark.parametrize("writer", ["torch.save", "pickle"])
def test_a_pickle_that_would_run_code_is_refused(writer, tiny_model_dir, tmp_path):
    target = tmp_path / "created-by-the-payload"
    src = tmp_path / "src"
    src.mkdir()
    payload = {"diffs": {}, "abs": {"cls.predictions.bias": CreatesAFile(target)}}
    if writer == "torch.save":
        torch.save(payload, src / "pytorch_diff.bin")
    else:
        (src / "pytorch_diff.bin").write_bytes(pickle.dumps(payload, protocol=2))
    assert not target.exists()
    with pytest.raises(ArtifactError, match="refused"):
        load_composable_file(src / "pytorch_diff.bin")
    r = cli("import", src, "--model", tiny_model_dir, "--out", tmp_path / "sft")
    assert r.exit_code == 5, r.output
    lines = [line for line in r.stderr.splitlines() if line.startswith("deftx: error:")]
    assert len(lines) == 1 and "refused" in lines[0] and "open" in lines[0] and "Traceback" not in r.stderr
    assert not target.exists() and not (tmp_path / "sft").exists()


@pytest.mark.parametrize("junk", [b"hi\n", bytes(range(256)) * 4, b"PK\x03\x04junk"])
def test_junk_bytes_are_one_clear_error(junk, tiny_model_dir, tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "pytorch_diff.bin").write_bytes(junk)
    r = cli("import", tmp_path / "d", "--model", tiny_model_dir, "--out", tmp_path / "o")
    lines = [line for line in r.stderr.splitlines() if line.startswith("deftx: error:")]
    assert r.exit_code == 5 and len(lines) == 1 and "not a readable composable-sft file" in lines[0], r.stderr
    assert "internal error" not in r.stderr and not (tmp_path / "o").exists()


def test_a_truncated_file_is_one_clear_error(composable_fixture, tmp_path):
    data = (composable_fixture / "pytorch_diff.bin").read_bytes()
    (tmp_path / "pytorch_diff.bin").write_bytes(data[: len(data) // 2])
    with pytest.raises(ArtifactError, match="not a readable composable-sft file"):
        load_composable_file(tmp_path / "pytorch_diff.bin")
