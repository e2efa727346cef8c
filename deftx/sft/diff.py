"""Sparse fine-tunings as artifacts: :class:`SparseDiff` and the mask / phase-1 difference files.

An SFT directory holds:

- ``diff.safetensors``: per parameter with entries, ``<name>.indices`` (sorted flat indices, int32
  when the tensor has fewer than 2^31 entries, else int64) and ``<name>.values``;
- ``head.safetensors``: dense parameters that are not in the base model (a classifier), if any;
- ``sft.json``: the manifest (format version, kind, method and its settings, language, task and
  labels, base model id and fingerprint, training settings, metrics, library version, sha256 of
  each file).

Nothing here unpickles: tensors are read with safetensors, manifests with json.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from deftx.version import __version__
from deftx.errors import (
    ArtifactError,
    FingerprintMismatchError,
    InputNotFoundError,
    UsageError,
)
from deftx.model import base_parameters, fingerprint
from deftx.records.files import use_umask
from deftx.sft.manifest import (
    DIFF_FILE,
    HEAD_FILE,
    MANIFEST_FILE,
    SFT_FORMAT,
    SFT_FORMAT_VERSION,
    read_manifest,
    sha256_file,
    verify_file,
)

MASK_FORMAT = "deftx-mask"
DIFF_FORMAT = "deftx-phase1-diff"
INT32_LIMIT = 2**31


def _index_dtype(numel: int) -> torch.dtype:
    return torch.int32 if numel < INT32_LIMIT else torch.int64


@dataclass
class SparseDiff:
    """A sparse difference ``phi`` over base-model parameters, plus dense head parameters.

    ``entries[name] = (indices, values)``: sorted, unique flat indices (int64 in memory) and their
    values. ``shapes[name]`` is the parameter's shape. ``head`` holds dense parameters by full name.
    """

    entries: dict[str, tuple[torch.Tensor, torch.Tensor]]
    shapes: dict[str, tuple[int, ...]]
    head: dict[str, torch.Tensor] = field(default_factory=dict)
    manifest: dict[str, Any] = field(default_factory=dict)
    _head_backup: dict[int, dict[str, torch.Tensor]] = field(default_factory=dict, repr=False)

    @property
    def kind(self) -> str | None:
        """``language`` or ``task``, as the manifest says."""
        return self.manifest.get("kind")

    @property
    def training(self) -> dict[str, Any]:
        """The training settings the SFT was made with (``{}`` when the manifest has none)."""
        training = self.manifest.get("training")
        return training if isinstance(training, dict) else {}

    # ------------------------------------------------------------------ building

    @classmethod
    def from_difference(
        cls,
        current: Mapping[str, torch.Tensor],
        start: Mapping[str, torch.Tensor],
        masks: Mapping[str, torch.Tensor] | None = None,
        head: Mapping[str, torch.Tensor] | None = None,
        manifest: dict[str, Any] | None = None,
    ) -> SparseDiff:
        """``current - start`` on the masked entries (all entries where ``masks`` is None)."""
        entries, shapes = {}, {}
        for name, start_value in start.items():
            delta = (current[name].detach().to(torch.float32) - start_value.to(torch.float32)).reshape(-1)
            if masks is None:
                indices = torch.arange(delta.numel())
            else:
                indices = torch.nonzero(masks[name].reshape(-1)).flatten()
            if indices.numel() == 0:
                continue
            entries[name] = (indices.cpu(), delta[indices].cpu())
            shapes[name] = tuple(start_value.shape)
        head = {k: v.detach().cpu().clone() for k, v in (head or {}).items()}
        return cls(entries, shapes, head, dict(manifest or {}))

    # ------------------------------------------------------------------ facts

    @property
    def n_entries(self) -> int:
        return sum(int(idx.numel()) for idx, _ in self.entries.values())

    @property
    def base_fingerprint(self) -> str | None:
        return self.manifest.get("base_fingerprint")

    def stats(self) -> dict[str, Any]:
        """Entries per parameter and in total, and density against the covered parameters."""
        per_param = {
            name: {"entries": int(idx.numel()), "numel": _numel(self.shapes[name])}
            for name, (idx, _) in self.entries.items()
        }
        covered = sum(v["numel"] for v in per_param.values())
        return {
            "entries": self.n_entries,
            "parameters": len(self.entries),
            "density_in_touched": self.n_entries / covered if covered else 0.0,
            "head_parameters": sum(int(t.numel()) for t in self.head.values()),
            "per_parameter": per_param,
        }

    def overlap(self, other: SparseDiff) -> dict[str, float | int]:
        """How many entries two SFTs share (positions, not values)."""
        shared = 0
        for name, (idx, _) in self.entries.items():
            if name in other.entries:
                other_idx = other.entries[name][0]
                shared += int(torch.isin(idx, other_idx, assume_unique=True).sum())
        n_self, n_other = self.n_entries, other.n_entries
        return {
            "shared": shared,
            "a": n_self,
            "b": n_other,
            "jaccard": shared / (n_self + n_other - shared) if (n_self + n_other) else 0.0,
        }

    # ------------------------------------------------------------------ composition

    def __add__(self, other: SparseDiff) -> SparseDiff:
        return compose([self, other])

    # ------------------------------------------------------------------ applying

    def check_base(self, model: nn.Module, force: bool = False) -> None:
        expected = self.base_fingerprint
        if not expected:
            return
        actual = fingerprint(model)
        if actual != expected and not force:
            name = self.manifest.get("base_model") or "another model"
            raise FingerprintMismatchError(
                f"this SFT was trained on {name} ({expected}), not on the model it is applied to ({actual})",
                hint="use the SFT's base model, or pass --force to apply it anyway",
            )

    def apply(self, model: nn.Module, *, scale: float = 1.0, force: bool = False, heads: bool = True) -> nn.Module:
        """Add the diff to the model's parameters in place (and set the dense head parameters the
        model has). Checks the base fingerprint first."""
        self.check_base(model, force=force)
        params = base_parameters(model)
        missing = [name for name in self.entries if name not in params]
        if missing:
            raise ArtifactError(
                f"the model has no parameter {missing[0]} that this SFT changes",
                hint="the SFT belongs to another architecture",
            )
        with torch.no_grad():
            for name, (idx, values) in self.entries.items():
                p = params[name]
                if tuple(p.shape) != tuple(self.shapes[name]):
                    raise ArtifactError(f"shape mismatch for {name}: SFT {self.shapes[name]}, model {tuple(p.shape)}")
                flat = p.view(-1)
                flat.index_add_(0, idx.to(p.device), values.to(device=p.device, dtype=p.dtype), alpha=scale)
            if heads and self.head:
                named = dict(model.named_parameters())
                backup = {}
                for name, tensor in self.head.items():
                    target = named.get(name)
                    if target is None or tuple(target.shape) != tuple(tensor.shape):
                        continue
                    backup[name] = target.detach().clone()
                    target.copy_(tensor.to(device=target.device, dtype=target.dtype))
                self._head_backup[id(model)] = backup
        return model

    def revert(self, model: nn.Module) -> nn.Module:
        """Undo :meth:`apply`: subtract the diff and restore the head parameters it replaced."""
        params = base_parameters(model)
        with torch.no_grad():
            for name, (idx, values) in self.entries.items():
                p = params[name]
                p.view(-1).index_add_(0, idx.to(p.device), values.to(device=p.device, dtype=p.dtype), alpha=-1.0)
            named = dict(model.named_parameters())
            for name, tensor in self._head_backup.pop(id(model), {}).items():
                named[name].copy_(tensor)
        return model

    # ------------------------------------------------------------------ saving and loading

    def save(self, directory: Path, *, overwrite: bool = False) -> Path:
        """Write the SFT directory atomically: into a temporary sibling, then renamed into place."""
        directory = Path(directory)
        if directory.exists() and any(directory.iterdir()) and not overwrite:
            raise UsageError(f"{directory} already exists and is not empty", hint="choose another --out or remove it")
        directory.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", suffix=".tmp", dir=directory.parent))
        use_umask(tmp, directory=True)
        try:
            tensors: dict[str, torch.Tensor] = {}
            for name, (idx, values) in self.entries.items():
                tensors[f"{name}.indices"] = idx.to(_index_dtype(_numel(self.shapes[name]))).contiguous()
                tensors[f"{name}.values"] = values.contiguous()
            save_file(tensors, str(tmp / DIFF_FILE), metadata={"format": SFT_FORMAT})
            files = [DIFF_FILE]
            if self.head:
                save_file(
                    {k: v.contiguous() for k, v in self.head.items()},
                    str(tmp / HEAD_FILE),
                    metadata={"format": SFT_FORMAT},
                )
                files.append(HEAD_FILE)
            manifest = {
                **self.manifest,
                "format": SFT_FORMAT,
                "format_version": SFT_FORMAT_VERSION,
                "n_entries": self.n_entries,
                "shapes": {name: list(shape) for name, shape in self.shapes.items()},
                "head": sorted(self.head),
                "library_version": self.manifest.get("library_version", __version__),
                "created_at": self.manifest.get("created_at") or _now(),
                "files": {name: sha256_file(tmp / name) for name in files},
            }
            (tmp / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
            for name in files:  # safetensors writes private files (0600)
                use_umask(tmp / name)
            _replace_directory(tmp, directory)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self.manifest = manifest
        return directory

    @classmethod
    def load(cls, directory: Path | str, *, verify: bool = True) -> SparseDiff:
        directory = Path(directory)
        manifest = read_manifest(directory)
        files = manifest.get("files") or {}
        if DIFF_FILE not in files:
            raise ArtifactError(f"{directory / MANIFEST_FILE} lists no {DIFF_FILE}")
        for name in files:
            verify_file(directory, manifest, name, checksum=verify)
        tensors = _load_safetensors(directory / DIFF_FILE)
        shapes = {name: tuple(shape) for name, shape in (manifest.get("shapes") or {}).items()}
        entries = {}
        for name in shapes:
            try:
                idx, values = tensors[f"{name}.indices"], tensors[f"{name}.values"]
            except KeyError:
                raise ArtifactError(f"{directory / DIFF_FILE} has no entries for {name}") from None
            entries[name] = (idx.to(torch.int64), values)
        head = _load_safetensors(directory / HEAD_FILE) if HEAD_FILE in files else {}
        return cls(entries, shapes, head, manifest)


def compose(sfts: Iterable[SparseDiff], *, force: bool = False) -> SparseDiff:
    """Sum of SFTs: entries at the same position add. All must share one base model (``force``
    composes them anyway: the sum keeps the first SFT's base); at most one may carry each head
    parameter."""
    sfts = list(sfts)
    if not sfts:
        raise UsageError("nothing to compose")
    fingerprints = {s.base_fingerprint for s in sfts if s.base_fingerprint}
    if len(fingerprints) > 1 and not force:
        raise FingerprintMismatchError(
            "the SFTs were trained on different base models",
            hint=f"{', '.join(sorted(fingerprints))}; --force composes them anyway",
        )
    names: dict[str, tuple[int, ...]] = {}
    for s in sfts:
        for name, shape in s.shapes.items():
            if names.setdefault(name, shape) != shape:
                raise ArtifactError(f"the SFTs disagree on the shape of {name}")
    entries = {}
    for name, shape in names.items():
        parts = [s.entries[name] for s in sfts if name in s.entries]
        if len(parts) == 1:
            entries[name] = (parts[0][0].clone(), parts[0][1].clone())
            continue
        idx = torch.cat([p[0] for p in parts])
        values = torch.cat([p[1].to(torch.float32) for p in parts])
        unique, inverse = torch.unique(idx, sorted=True, return_inverse=True)
        summed = torch.zeros(unique.numel(), dtype=torch.float32).index_add_(0, inverse, values)
        entries[name] = (unique, summed)
    head: dict[str, torch.Tensor] = {}
    for s in sfts:
        for name, tensor in s.head.items():
            if name in head:
                raise UsageError(f"two SFTs carry the head parameter {name}; compose at most one task SFT")
            head[name] = tensor
    components = [
        {k: s.manifest.get(k) for k in ("kind", "method", "language", "task", "source")} for s in sfts
    ]
    first = sfts[0].manifest
    labels = next((s.manifest.get("labels") for s in sfts if s.manifest.get("labels")), None)
    manifest = {
        "kind": "composed",
        "method": "+".join(sorted({str(s.manifest.get("method")) for s in sfts})),
        "base_model": first.get("base_model"),
        "base_fingerprint": first.get("base_fingerprint"),
        "labels": labels,
        "task": next((s.manifest.get("task") for s in sfts if s.manifest.get("task")), None),
        "components": components,
    }
    return SparseDiff(entries, dict(names), head, manifest)


# ---------------------------------------------------------------------- masks and phase-1 diffs


def save_mask(path: Path, masks: Mapping[str, torch.Tensor], metadata: Mapping[str, Any]) -> Path:
    """A selection mask as sorted indices per parameter, with its settings in the metadata."""
    tensors, shapes = {}, {}
    for name, mask in masks.items():
        idx = torch.nonzero(mask.reshape(-1)).flatten()
        tensors[f"{name}.indices"] = idx.to(_index_dtype(mask.numel())).contiguous()
        shapes[name] = list(mask.shape)
    meta = {"format": MASK_FORMAT, "format_version": "1", "shapes": json.dumps(shapes)}
    meta.update({k: json.dumps(v) for k, v in metadata.items()})
    _atomic_save(tensors, Path(path), meta)
    return Path(path)


def load_mask(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Boolean masks by parameter name and the metadata saved with them."""
    tensors, meta = _load_with_metadata(Path(path), MASK_FORMAT)
    shapes = json.loads(meta.pop("shapes"))
    masks = {}
    for name, shape in shapes.items():
        mask = torch.zeros(_numel(shape), dtype=torch.bool)
        idx = tensors.get(f"{name}.indices")
        if idx is None:
            raise ArtifactError(f"{path} has no indices for {name}")
        mask[idx.to(torch.int64)] = True
        masks[name] = mask.view(shape)
    return masks, meta


def save_difference(path: Path, diffs: Mapping[str, torch.Tensor], metadata: Mapping[str, Any]) -> Path:
    """The dense phase-1 difference (every maskable parameter), for ``deftx denoise``."""
    tensors = {name: d.detach().to(torch.float32).contiguous().cpu() for name, d in diffs.items()}
    meta = {"format": DIFF_FORMAT, "format_version": "1"}
    meta.update({k: json.dumps(v) for k, v in metadata.items()})
    _atomic_save(tensors, Path(path), meta)
    return Path(path)


def load_difference(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    return _load_with_metadata(Path(path), DIFF_FORMAT)


# ---------------------------------------------------------------------- helpers


def _numel(shape: Iterable[int]) -> int:
    n = 1
    for s in shape:
        n *= int(s)
    return n


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


SFT_FILES = (DIFF_FILE, HEAD_FILE, MANIFEST_FILE)


def _replace_directory(tmp: Path, directory: Path) -> None:
    """Move a finished temporary directory into place; an old one is removed only afterwards. A
    directory that holds other files than an SFT's keeps them: only the SFT's files are replaced
    (each by a rename, the manifest last), and an old SFT file the new one lacks is removed."""
    if directory.is_dir() and any(p.name not in SFT_FILES for p in directory.iterdir()):
        written = [name for name in SFT_FILES if (tmp / name).exists()]
        for name in sorted(written, key=lambda n: n == MANIFEST_FILE):
            os.replace(tmp / name, directory / name)
        for name in set(SFT_FILES) - set(written):
            (directory / name).unlink(missing_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        return
    old = None
    if directory.exists():
        old = directory.with_name(f".{directory.name}.old-{os.getpid()}")
        os.replace(directory, old)
    os.replace(tmp, directory)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _atomic_save(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=metadata)
        use_umask(tmp)  # both mkstemp and safetensors make private files (0600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except FileNotFoundError:
        raise InputNotFoundError(f"{path} does not exist") from None
    except (SafetensorError, OSError, ValueError) as exc:
        raise ArtifactError(f"{path} is not a readable safetensors file ({exc}): corrupt or truncated") from None


def _load_with_metadata(path: Path, expected_format: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    from safetensors import safe_open

    if not path.exists():
        raise InputNotFoundError(f"{path} does not exist")
    try:
        with safe_open(str(path), framework="pt") as handle:
            raw_meta = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise ArtifactError(f"{path} is not a readable safetensors file ({exc}): corrupt or truncated") from None
    if raw_meta.get("format") != expected_format:
        raise ArtifactError(f"{path} is not a {expected_format} file (format: {raw_meta.get('format')!r})")
    meta: dict[str, Any] = {}
    for key, value in raw_meta.items():
        if key in ("format", "format_version", "shapes"):
            meta[key] = value
            continue
        try:
            meta[key] = json.loads(value)
        except json.JSONDecodeError:
            meta[key] = value
    return tensors, meta

