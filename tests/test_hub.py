"""SFT arguments given as Hugging Face hub ids: the cache, --revision, and failing at once offline."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from deftx.errors import InputNotFoundError
from deftx.hub import is_hub_id
from deftx.sft.sources import resolve_sft_source

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def deftx(*args, env=None, cwd=None):
    """The CLI in a fresh process, so huggingface_hub reads the environment given here."""
    full = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "deftx_cli.app", *map(str, args)], capture_output=True, text=True,
                          env=full, cwd=cwd, timeout=120)


def error_lines(result):
    return [line for line in result.stderr.splitlines() if line.startswith("deftx: error:")]


def test_paths_and_hub_ids_are_told_apart(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "local").mkdir()
    assert is_hub_id("cambridgeltl/xlmr-task-sft-nusax_senti") and is_hub_id("some-sft")
    assert not is_hub_id("local") and not is_hub_id("./missing") and not is_hub_id("runs/a/sft")
    assert not is_hub_id("/abs/path") and not is_hub_id("~/x") and not is_hub_id("a/../b")
    assert resolve_sft_source("local") == Path("local")
    with pytest.raises(InputNotFoundError, match="does not exist"):
        resolve_sft_source("runs/a/sft")


@pytest.mark.parametrize("command", [["info"], ["compose", "--out", "x", "--sft"]])
def test_offline_a_hub_id_fails_at_once_with_one_line(command, tmp_path):
    env = {"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    r = deftx(*command, "owner/missing-sft", "--revision", "v1", env=env, cwd=tmp_path)
    assert r.returncode == 3, r.stderr
    lines = error_lines(r)
    assert len(lines) == 1 and "Traceback" not in r.stderr
    assert "could not fetch" in lines[0] and "owner/missing-sft" in lines[0] and "offline" in lines[0]
    assert "local" in r.stderr  # the hint: how to pass a local directory instead


def test_without_network_a_hub_id_fails_with_one_line(tmp_path):
    env = {"HF_HUB_OFFLINE": "0", "HF_HOME": str(tmp_path / "hf"), "HF_ENDPOINT": "http://127.0.0.1:9",
           "HF_HUB_ETAG_TIMEOUT": "5", "HF_HUB_DOWNLOAD_TIMEOUT": "5"}
    r = deftx("info", "owner/missing-sft", env=env, cwd=tmp_path)
    assert r.returncode == 3, r.stderr
    lines = error_lines(r)
    assert len(lines) == 1 and "could not fetch" in lines[0] and "Traceback" not in r.stderr
    assert "local" in r.stderr


def cache_snapshot(cache: Path, repo_id: str, files: dict[str, Path], commit: str = COMMIT, ref: str = "main") -> Path:
    """A hub repository in huggingface_hub's cache layout, as a download leaves it."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for name, source in files.items():
        (snapshot / name).write_bytes(source.read_bytes())
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / ref).write_text(commit)
    return snapshot


def test_a_cached_hub_sft_is_used_offline_by_every_command(tiny_model_dir, tmp_path, monkeypatch):
    import torch
    from huggingface_hub import constants
    from typer.testing import CliRunner

    from deftx.model import base_parameters, fingerprint, load_model
    from deftx.sft.diff import SparseDiff
    from deftx_cli.app import app

    model, _ = load_model(tiny_model_dir, "mlm")
    params = base_parameters(model)
    g = torch.Generator().manual_seed(0)
    current = {n: p.detach() + torch.randn(p.shape, generator=g) for n, p in params.items()}
    masks = {n: torch.rand(p.shape, generator=g) < 0.1 for n, p in params.items()}
    diff = SparseDiff.from_difference(current, {n: p.detach() for n, p in params.items()}, masks, manifest={
        "kind": "language", "method": "deftx", "language": "ace", "base_model": str(tiny_model_dir),
        "base_fingerprint": fingerprint(model)})
    diff.save(tmp_path / "sft")
    cache = tmp_path / "hf" / "hub"
    files = {name: tmp_path / "sft" / name for name in ("sft.json", "diff.safetensors")}
    cache_snapshot(cache, "owner/ace-sft", files)
    cache_snapshot(cache, "owner/ace-sft", files, commit="f" * 40, ref="v2")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.chdir(tmp_path)

    def run(*args):
        return CliRunner().invoke(app, [str(a) for a in args])

    r = run("info", "owner/ace-sft", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["manifest"]["language"] == "ace"
    r = run("info", "owner/ace-sft", "--revision", "v2")
    assert r.exit_code == 0 and "ace" in r.stdout, r.output
    r = run("overlap", "owner/ace-sft", tmp_path / "sft", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["pairs"][0]["total"]["jaccard"] == 1.0
    r = run("compose", "--sft", "owner/ace-sft", "--model", tiny_model_dir, "--out", tmp_path / "composed")
    assert r.exit_code == 0 and (tmp_path / "composed" / "config.json").is_file(), r.output
    r = run("info", "owner/ace-sft", "--revision", "v3")
    assert r.exit_code == 3 and "could not fetch" in r.stderr and "v3" in r.stderr
