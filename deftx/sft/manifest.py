"""An SFT directory's file names and its ``sft.json`` manifest, readable without torch.

:mod:`deftx.sft` (tensors, torch) and the light readers (the interference report in the dashboard)
share these, so the dashboard can read an SFT's manifest without importing torch.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from deftx.errors import ArtifactError, InputNotFoundError

SFT_FORMAT = "deftx-sft"
SFT_FORMAT_VERSION = 1
DIFF_FILE = "diff.safetensors"
HEAD_FILE = "head.safetensors"
MANIFEST_FILE = "sft.json"
COMPOSABLE_SFT_FILE = "pytorch_diff.bin"  # composable-sft's single-file format (see deftx.sft.interop)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_file(directory: Path, manifest: dict[str, Any], name: str, *, checksum: bool = True) -> Path:
    """``directory / name``, which must exist, checked against the sha256 the manifest records for it
    (unless ``checksum`` is false)."""
    path = Path(directory) / name
    expected = (manifest.get("files") or {}).get(name)
    if not path.is_file():
        raise ArtifactError(f"{path} is missing", hint="the SFT directory is incomplete")
    if checksum and expected and sha256_file(path) != expected:
        raise ArtifactError(f"{path} is corrupt or truncated (checksum mismatch)", hint="copy or download the SFT again")
    return path


def read_manifest(directory: Path) -> dict[str, Any]:
    """Read and check an SFT directory's ``sft.json`` (format and version)."""
    directory = Path(directory)
    if not directory.exists():
        raise InputNotFoundError(f"SFT directory {directory} does not exist")
    if not directory.is_dir():
        raise InputNotFoundError(f"{directory} is not an SFT directory")
    path = directory / MANIFEST_FILE
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        if (directory / COMPOSABLE_SFT_FILE).is_file():
            raise ArtifactError(
                f"{directory} holds a composable-sft SFT ({COMPOSABLE_SFT_FILE}), not a deftx SFT",
                hint=f"convert it first: deftx import {directory} --model BASE --out SFT_DIR",
            ) from None
        raise ArtifactError(f"{directory} holds no {MANIFEST_FILE}", hint="is this an SFT directory?") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputNotFoundError(f"cannot read {path}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"{path} is not valid JSON (line {exc.lineno}): corrupt or truncated") from None
    if not isinstance(manifest, dict) or manifest.get("format") != SFT_FORMAT:
        raise ArtifactError(f"{path} is not a deftx SFT manifest")
    version = manifest.get("format_version")
    if version != SFT_FORMAT_VERSION:
        raise ArtifactError(
            f"{path} has format version {version}; this deftx reads version {SFT_FORMAT_VERSION}",
            hint="upgrade deftx" if isinstance(version, int) and version > SFT_FORMAT_VERSION else None,
        )
    return manifest
