"""composable-sft's SFT format, in and out.

composable-sft (the LT-SFT reference code) stores an SFT as one torch pickle, ``pytorch_diff.bin``
(earlier versions name the two parts ``body`` and ``head``, and may hold torch sparse tensors)::

    {"diffs": {name: {"size": torch.Size, "index_steps": [np.int64, int, int, ...], "values": Tensor}},
     "abs":   {name: Tensor}}

``diffs`` are sparse differences. Their flat indices count with the **first** dimension varying
fastest (coordinates times ``cumprod([1] + size[:-1])``), sorted, and delta-encoded: the first step is
the first index (a numpy int64), every later step the gap to the previous one (python ints). ``abs``
are dense tensors that replace the model's (the heads). Names are the full model's (``bert.``,
``roberta.`` prefixes).

Reading such a file never runs code from it: it is loaded with ``torch.load(weights_only=True)``,
allowing only the globals the format needs beyond tensors (numpy's int64 scalar and dtype); a file
that asks for anything else is refused before anything in it runs.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deftx.errors import ArtifactError, InputNotFoundError, UsageError
from deftx.model import (
    base_parameters,
    base_prefix,
    fingerprint,
    is_layer_norm,
    load_model,
    model_reference,
)
from deftx.records.files import use_umask
from deftx.sft.diff import SparseDiff
from deftx.sft.manifest import COMPOSABLE_SFT_FILE, sha256_file

FORMAT_NAME = "composable-sft"


def _numpy_int64_globals() -> list[Any]:
    """The non-tensor globals of the format: numpy's scalar constructor (under its numpy 1 and 2
    module names) and the int64 dtype it is given."""
    scalar = np._core.multiarray.scalar if hasattr(np, "_core") else np.core.multiarray.scalar
    return [
        (scalar, "numpy._core.multiarray.scalar"),
        (scalar, "numpy.core.multiarray.scalar"),
        np.dtype,
        type(np.dtype(np.int64)),
    ]


# ---------------------------------------------------------------------- index orders


def _row_major_strides(shape: tuple[int, ...]) -> list[int]:
    strides, step = [], 1
    for size in reversed(shape):
        strides.append(step)
        step *= int(size)
    return strides[::-1]


def _first_fastest_strides(shape: tuple[int, ...]) -> list[int]:
    strides, step = [], 1
    for size in shape:
        strides.append(step)
        step *= int(size)
    return strides


def _reorder(flat: torch.Tensor, shape: tuple[int, ...], source: list[int], target: list[int]) -> torch.Tensor:
    out = torch.zeros_like(flat)
    for size, s_stride, t_stride in zip(shape, source, target):
        out += (flat // s_stride) % int(size) * t_stride
    return out


def first_fastest_to_row_major(flat: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """composable-sft's flat indices (first dimension fastest) as torch's row-major flat indices."""
    return _reorder(flat.to(torch.int64), shape, _first_fastest_strides(shape), _row_major_strides(shape))


def row_major_to_first_fastest(flat: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """The inverse of :func:`first_fastest_to_row_major`."""
    return _reorder(flat.to(torch.int64), shape, _row_major_strides(shape), _first_fastest_strides(shape))


# ---------------------------------------------------------------------- reading


def load_composable_file(path: Path) -> dict[str, Any]:
    """Unpickle ``pytorch_diff.bin`` allowing only tensors, sizes, numbers and numpy int64 scalars."""
    path = Path(path)
    if not path.is_file():
        raise InputNotFoundError(f"{path} does not exist")
    try:
        with torch.serialization.safe_globals(_numpy_int64_globals()):
            data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        operand = re.search(r"Unsupported operand \d+", str(exc))
        if operand and "GLOBAL" not in str(exc):  # not a pickle at all: random bytes start with any opcode
            raise ArtifactError(f"{path} is not a readable composable-sft file: its bytes are not a saved torch "
                                f"object ({operand.group(0)})", hint="corrupt or truncated? download it again") from None
        raise ArtifactError(f"refused to load {path}: {_refusal(str(exc))}",
                            hint="only composable-sft SFT files (tensors, sizes, numbers) are read") from None
    except Exception as exc:  # noqa: BLE001 - junk bytes fail in the unpickler in any way (KeyError: 105 for "hi")
        torch_said = isinstance(exc, (RuntimeError, EOFError, OSError)) and str(exc).strip()
        reason = _first_line(str(exc)) if torch_said else "its bytes are not a saved torch object"
        raise ArtifactError(f"{path} is not a readable composable-sft file: {reason}",
                            hint="corrupt or truncated? download it again") from None
    return data


def _refusal(message: str) -> str:
    """The one line of torch's weights-only refusal that says what the file asked for."""
    match = re.search(r"Unsupported global: GLOBAL ([\w.]+)", message)
    if match:
        return f"it asks to run {match.group(1)}, which an SFT file never needs"
    match = re.search(r"(Unsupported operand \d+|Can only build [^\n]*?but got [^\n]+)", message)
    if match:
        return f"it holds something other than tensors and numbers ({match.group(1).strip()})"
    lines = [line.strip() for line in message.splitlines() if "WeightsUnpickler error" in line]
    return lines[0] if lines else "it holds something other than tensors and numbers"


def _first_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[0] if lines else "unknown error"


def decode_composable(data: Any, where: str = "the file") -> tuple[dict[str, tuple[torch.Tensor, torch.Tensor, tuple[int, ...]]], dict[str, torch.Tensor]]:
    """``{name: (row-major sorted indices, values, shape)}`` and the dense ``abs`` tensors, with every
    field checked (types, lengths, indices inside the tensor)."""
    if not isinstance(data, dict) or not (set(_KEYS) & set(data)):
        raise ArtifactError(f"{where} is not a composable-sft SFT (expected a dict with 'diffs' and 'abs')")
    unknown = sorted(set(data) - set(_KEYS))
    if unknown:
        raise ArtifactError(f"{where} has an unexpected top-level entry {unknown[0]!r}")
    diffs = data.get("diffs") or data.get("body") or {}
    dense = data.get("abs") or data.get("head") or {}
    if not isinstance(diffs, dict) or not isinstance(dense, dict):
        raise ArtifactError(f"{where}: 'diffs' and 'abs' must be dicts")
    entries = {}
    for name, encoding in diffs.items():
        entries[str(name)] = _decode_one(str(name), encoding, where)
    heads = {}
    for name, tensor in dense.items():
        if not isinstance(tensor, torch.Tensor):
            raise ArtifactError(f"{where}: abs[{name!r}] is not a tensor")
        heads[str(name)] = tensor.detach().clone()
    return entries, heads


# Earlier composable-sft versions saved the same two parts as "body" (encoded or torch sparse tensors)
# and "head".
_KEYS = ("diffs", "abs", "body", "head")


def _decode_one(name: str, encoding: Any, where: str) -> tuple[torch.Tensor, torch.Tensor, tuple[int, ...]]:
    if isinstance(encoding, torch.Tensor) and encoding.is_sparse:
        sparse = encoding.coalesce()  # indices sorted row-major, repeated positions summed
        shape = tuple(sparse.shape)
        rows = (sparse.indices().T.to(torch.int64) * torch.tensor(_row_major_strides(shape))).sum(1)
        return rows, sparse.values().detach().clone(), shape
    if not isinstance(encoding, dict) or not {"size", "index_steps", "values"} <= set(encoding):
        raise ArtifactError(f"{where}: diffs[{name!r}] lacks size, index_steps or values")
    try:
        shape = tuple(int(s) for s in encoding["size"])
        steps = torch.tensor([int(s) for s in encoding["index_steps"]], dtype=torch.int64)
    except (TypeError, ValueError, OverflowError):
        raise ArtifactError(f"{where}: diffs[{name!r}] has a malformed size or index_steps") from None
    values = encoding["values"]
    if not isinstance(values, torch.Tensor) or values.dim() != 1 or values.numel() != steps.numel():
        raise ArtifactError(f"{where}: diffs[{name!r}] has {steps.numel()} index steps but values of shape "
                            f"{tuple(getattr(values, 'shape', ()))}")
    numel = int(np.prod(shape)) if shape else 1
    flat = torch.cumsum(steps, 0)
    if flat.numel() and (int(flat.min()) < 0 or int(flat.max()) >= numel):
        raise ArtifactError(f"{where}: diffs[{name!r}] has indices outside its size {shape}")
    rows = first_fastest_to_row_major(flat, shape)
    order = torch.argsort(rows, stable=True)
    rows, values = rows[order], values.detach()[order].clone()
    unique, inverse = torch.unique_consecutive(rows, return_inverse=True)
    if unique.numel() != rows.numel():  # repeated positions add, as composable-sft's coalesce does
        values = torch.zeros(unique.numel(), dtype=values.dtype).index_add_(0, inverse, values)
    return unique, values, shape


def read_labels(config_path: Path) -> list[str] | None:
    """The label names of a task SFT from the ``config.json`` beside it (``id2label``), if it names them."""
    try:
        config = json.loads(Path(config_path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    id2label = config.get("id2label") if isinstance(config, dict) else None
    if not isinstance(id2label, dict) or not id2label:
        return None
    try:
        labels = [str(label) for _, label in sorted((int(k), v) for k, v in id2label.items())]
    except (TypeError, ValueError):
        return None
    if all(re.fullmatch(r"LABEL_\d+", label) for label in labels):
        return None  # transformers' placeholders: the config does not name the labels
    return labels


# ---------------------------------------------------------------------- import


def import_composable_sft(
    source: Path,
    model_id: str | Path,
    *,
    labels: Iterable[str] | None = None,
    language: str | None = None,
    task: str | None = None,
    origin: str | None = None,
    revision: str | None = None,
) -> SparseDiff:
    """A composable-sft SFT (a directory holding ``pytorch_diff.bin``) as a deftx :class:`SparseDiff`
    for the base model ``model_id``: names mapped and checked against it, indices row-major, the
    ``abs`` tensors as the dense head. A task SFT (labels from ``labels`` or the ``config.json``
    beside the file) is checked against a sequence-classification model, else a masked-LM model."""
    source = Path(source)
    path = source / COMPOSABLE_SFT_FILE if source.is_dir() else source
    if not path.is_file():
        raise InputNotFoundError(f"{source} holds no {COMPOSABLE_SFT_FILE}", hint="is this a composable-sft SFT?")
    entries_raw, dense = decode_composable(load_composable_file(path), str(path))
    labels = list(labels or []) or read_labels(path.parent / "config.json")
    kind = "task" if labels else "language"
    model, _ = load_model(model_id, "classification" if labels else "mlm", labels=labels)
    prefix = base_prefix(model)
    params = base_parameters(model)
    named = {name: p for name, p in model.named_parameters()}

    entries, shapes = {}, {}
    for name, (idx, values, shape) in entries_raw.items():
        relative = name[len(prefix) + 1:] if prefix and name.startswith(prefix + ".") else name
        target = params.get(relative)
        if target is None:
            hint = "is it an SFT of another architecture? check --model"
            if name in named:
                hint = "composable-sft differences of head parameters are not supported"
            elif kind == "language":
                hint = "a task SFT? give its labels with --labels (in the classifier's order); else check --model"
            what = "masked-LM model" if kind == "language" else "classification model"
            raise ArtifactError(f"{path}: {model_id}'s {what} has no encoder parameter {name}", hint=hint)
        if tuple(target.shape) != shape:
            raise ArtifactError(f"{path}: {name} has size {shape}, but {model_id} has {tuple(target.shape)}",
                                hint="the SFT belongs to another model size or vocabulary; check --model")
        if idx.numel():
            entries[relative] = (idx, values)
            shapes[relative] = shape

    head = {}
    for name, tensor in dense.items():
        target = named.get(name)
        if target is None:
            if kind == "language" and not name.startswith(prefix + "."):
                raise ArtifactError(f"{path}: {model_id}'s masked-LM model has no parameter {name}",
                                    hint="a task SFT? give its labels with --labels (in the classifier's order)")
            raise ArtifactError(f"{path}: {model_id} has no parameter {name}", hint="check --model")
        if tuple(target.shape) != tuple(tensor.shape):
            hint = "check --labels: their number must match the classifier" if kind == "task" else "check --model"
            raise ArtifactError(f"{path}: {name} has shape {tuple(tensor.shape)}, but {model_id} has "
                                f"{tuple(target.shape)}", hint=hint)
        if prefix and name.startswith(prefix + "."):
            raise ArtifactError(f"{path}: a dense replacement of the encoder parameter {name} is not supported")
        head[name] = tensor

    layer_norm = {name: int(entries[name][0].numel()) for name in entries if is_layer_norm(name)}
    manifest: dict[str, Any] = {
        "kind": kind,
        "method": "lt-sft",
        "language": language,
        "task": task,
        "labels": labels or None,
        "base_model": model_reference(model_id),
        "base_fingerprint": fingerprint(model),
        "maskable": sum(p.numel() for n, p in params.items() if not is_layer_norm(n)),
        "layer_norm": {"parameters": len(layer_norm), "entries": sum(layer_norm.values())},
        "imported_from": {
            "format": FORMAT_NAME,
            "source": origin or str(source),
            "revision": revision,
            "sha256": sha256_file(path),
            "name_prefix": prefix,
        },
    }
    return SparseDiff(entries, shapes, head, manifest)


# ---------------------------------------------------------------------- export


def encode_composable(
    diff: SparseDiff, prefix: str
) -> dict[str, dict[str, Any]]:
    """The ``{"diffs": ..., "abs": ...}`` dict composable-sft saves, for ``diff`` with encoder names
    prefixed by ``prefix`` (``bert``, ``roberta``)."""
    diffs: dict[str, Any] = {}
    for name, (idx, values) in diff.entries.items():
        shape = tuple(diff.shapes[name])
        flat = row_major_to_first_fastest(idx, shape)
        order = torch.argsort(flat)
        flat = flat[order]
        steps = torch.diff(flat, prepend=torch.zeros(1, dtype=torch.int64))
        full = f"{prefix}.{name}" if prefix else name
        diffs[full] = {
            "size": torch.Size(shape),
            "index_steps": [np.int64(int(steps[0]))] + steps[1:].tolist() if steps.numel() else [],
            "values": values[order].clone(),
        }
    dense = {name: tensor.detach().clone() for name, tensor in diff.head.items()}
    return {"diffs": diffs, "abs": dense}


def export_composable_sft(diff: SparseDiff, out: Path, *, prefix: str, overwrite: bool = False) -> Path:
    """Write ``diff`` as ``out/pytorch_diff.bin`` (and, for a task SFT, a ``config.json`` naming its
    labels), each file to a temporary name first, then renamed."""
    out = Path(out)
    target = out / COMPOSABLE_SFT_FILE
    if target.exists() and not overwrite:
        raise UsageError(f"{target} already exists", hint="choose another --out or pass --overwrite")
    out.mkdir(parents=True, exist_ok=True)
    files = {COMPOSABLE_SFT_FILE: lambda handle: torch.save(encode_composable(diff, prefix), handle)}
    labels = diff.manifest.get("labels")
    if labels:
        config = {"id2label": {str(i): label for i, label in enumerate(labels)},
                  "label2id": {label: i for i, label in enumerate(labels)}}
        files["config.json"] = lambda handle: handle.write((json.dumps(config, indent=2) + "\n").encode())
    for name, write in files.items():
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=out)
        try:
            use_umask(tmp)  # as every artifact: the user's umask, not mkstemp's 0600
            with os.fdopen(fd, "wb") as handle:
                write(handle)
            os.replace(tmp, out / name)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return target


def export_prefix(diff: SparseDiff, model_id: str | Path | None = None) -> str:
    """The model prefix of the encoder's names (``bert``): the one recorded at import, else the base
    model's (read from its config; no weights are loaded)."""
    recorded = (diff.manifest.get("imported_from") or {}).get("name_prefix")
    if model_id is None and isinstance(recorded, str):
        return recorded
    model_id = model_id or diff.manifest.get("base_model")
    if not model_id:
        raise UsageError("the SFT records no base model, so the parameter names' prefix is unknown",
                         hint="give the base model with --model")
    from transformers import AutoConfig, AutoModel

    from deftx.model import check_model_source

    try:
        config = AutoConfig.from_pretrained(check_model_source(model_id))
    except OSError as exc:
        raise InputNotFoundError(f"could not read the config of {model_id}: {_first_line(str(exc))}",
                                 hint="give a reachable base model with --model") from None
    with torch.device("meta"):
        model = AutoModel.from_config(config)
    return getattr(model, "base_model_prefix", "") or ""
