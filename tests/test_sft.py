"""SparseDiff: round trips, apply/revert, composition, integrity checks."""

import json

import pytest
import torch

from deftx.errors import ArtifactError, FingerprintMismatchError, InputNotFoundError, UsageError
from deftx.model import base_parameters, fingerprint, load_model
from deftx.sft.diff import SparseDiff, compose, load_mask, save_mask


def random_sft(model, density=0.05, seed=0, head=None, **manifest):
    g = torch.Generator().manual_seed(seed)
    masks, current, start = {}, {}, {}
    for name, p in base_parameters(model).items():
        masks[name] = torch.rand(p.shape, generator=g) < density
        start[name] = p.detach().clone()
        current[name] = start[name] + torch.randn(p.shape, generator=g)
    return SparseDiff.from_difference(
        current, start, masks, head=head,
        manifest={"kind": "language", "method": "lt-sft", "base_fingerprint": fingerprint(model), **manifest},
    )


@pytest.fixture
def model(tiny_model_dir):
    return load_model(tiny_model_dir, "mlm")[0]


def snapshot(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def test_round_trip_is_exact(model, tmp_path):
    sft = random_sft(model, head={"classifier.weight": torch.randn(3, 32)})
    sft.save(tmp_path / "sft")
    loaded = SparseDiff.load(tmp_path / "sft")
    assert loaded.n_entries == sft.n_entries > 0
    for name, (idx, values) in sft.entries.items():
        assert torch.equal(loaded.entries[name][0], idx)
        assert torch.equal(loaded.entries[name][1], values)
        assert bool((idx[1:] > idx[:-1]).all()), "indices are sorted and unique"
    assert torch.equal(loaded.head["classifier.weight"], sft.head["classifier.weight"])
    manifest = json.loads((tmp_path / "sft" / "sft.json").read_text())
    assert manifest["format_version"] == 1 and set(manifest["files"]) == {"diff.safetensors", "head.safetensors"}


def test_indices_are_stored_as_int32(model, tmp_path):
    from safetensors.torch import load_file

    random_sft(model).save(tmp_path / "sft")
    tensors = load_file(str(tmp_path / "sft" / "diff.safetensors"))
    assert {t.dtype for k, t in tensors.items() if k.endswith(".indices")} == {torch.int32}


def test_apply_then_revert_restores_the_model(model):
    before = snapshot(model)
    sft = random_sft(model)
    sft.apply(model)
    changed = sum(int((p != before[n]).sum()) for n, p in model.named_parameters())
    assert changed > 0
    sft.revert(model)
    for name, p in model.named_parameters():
        assert torch.allclose(p, before[name], atol=1e-6), name


def test_apply_touches_only_the_entries(model):
    before = snapshot(model)
    sft = random_sft(model, density=0.01)
    sft.apply(model)
    params = base_parameters(model)
    for name, (idx, values) in sft.entries.items():
        full = "bert." + name
        diff = (params[name].detach() - before[full]).reshape(-1)
        assert torch.allclose(diff[idx], values, atol=1e-6)
        outside = torch.ones(diff.numel(), dtype=torch.bool)
        outside[idx] = False
        assert not diff[outside].any()


def test_compose_equals_applying_one_after_the_other(model):
    a, b = random_sft(model, seed=1), random_sft(model, seed=2)
    assert a.overlap(b)["shared"] > 0  # the test needs overlapping entries
    before = snapshot(model)
    a.apply(model)
    b.apply(model)
    sequential = snapshot(model)
    b.revert(model)
    a.revert(model)
    composed = compose([a, b])
    assert composed.n_entries == a.n_entries + b.n_entries - a.overlap(b)["shared"]
    composed.apply(model)
    for name, p in model.named_parameters():
        assert torch.allclose(p, sequential[name], atol=1e-6), name
    composed.revert(model)
    for name, p in model.named_parameters():
        assert torch.allclose(p, before[name], atol=1e-6)


def test_fingerprint_mismatch_is_refused(model, other_tiny_model_dir):
    other = load_model(other_tiny_model_dir, "mlm")[0]
    sft = random_sft(model, base_model="tiny-a")
    with pytest.raises(FingerprintMismatchError, match="tiny-a"):
        sft.apply(other)
    sft.apply(other, force=True)


def test_fingerprint_is_stable_across_dtypes_and_heads(tiny_model_dir):
    mlm = load_model(tiny_model_dir, "mlm")[0]
    clf = load_model(tiny_model_dir, "classification", labels=["a", "b"])[0]
    half = load_model(tiny_model_dir, "mlm", dtype=torch.bfloat16)[0]
    assert fingerprint(mlm) == fingerprint(clf) == fingerprint(half)


def test_checksum_catches_corruption_and_truncation(model, tmp_path):
    random_sft(model).save(tmp_path / "sft")
    path = tmp_path / "sft" / "diff.safetensors"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ArtifactError, match="corrupt or truncated"):
        SparseDiff.load(tmp_path / "sft")
    flipped = bytearray(data)
    flipped[-5] ^= 0xFF
    path.write_bytes(bytes(flipped))
    with pytest.raises(ArtifactError, match="checksum"):
        SparseDiff.load(tmp_path / "sft")


def test_bad_manifests(model, tmp_path):
    with pytest.raises(InputNotFoundError):
        SparseDiff.load(tmp_path / "nothing")
    random_sft(model).save(tmp_path / "sft")
    manifest_path = tmp_path / "sft" / "sft.json"
    manifest = json.loads(manifest_path.read_text())
    manifest_path.write_text(json.dumps({**manifest, "format_version": 99}))
    with pytest.raises(ArtifactError, match="format version 99"):
        SparseDiff.load(tmp_path / "sft")
    manifest_path.write_text("{not json")
    with pytest.raises(ArtifactError, match="not valid JSON"):
        SparseDiff.load(tmp_path / "sft")


def test_save_refuses_to_overwrite_and_leaves_no_temporary(model, tmp_path):
    sft = random_sft(model)
    sft.save(tmp_path / "sft")
    with pytest.raises(UsageError):
        sft.save(tmp_path / "sft")
    sft.save(tmp_path / "sft", overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sft"]


def test_compose_refuses_two_heads_and_different_bases(model):
    head = {"classifier.weight": torch.zeros(2, 32)}
    with pytest.raises(UsageError, match="head"):
        compose([random_sft(model, head=head), random_sft(model, seed=3, head=head)])
    other = random_sft(model, seed=4)
    other.manifest["base_fingerprint"] = "sha256:other"
    with pytest.raises(FingerprintMismatchError):
        compose([random_sft(model), other])


def test_mask_file_round_trip(tmp_path):
    masks = {"a": torch.rand(5, 7) < 0.3, "b": torch.rand(11) < 0.5}
    save_mask(tmp_path / "m.safetensors", masks, {"k": 9, "rank_rule": "energy:0.9"})
    loaded, meta = load_mask(tmp_path / "m.safetensors")
    assert meta["k"] == 9 and meta["rank_rule"] == "energy:0.9"
    for name in masks:
        assert torch.equal(loaded[name], masks[name])
