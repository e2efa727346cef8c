"""Checkpoints inside each training phase, for exact resumption after an interruption.

A checkpoint is a directory ``<run>/checkpoints/phase<P>-step<S>/`` (zero-padded, so names sort in
training order) holding:

- ``state.safetensors``: the trainable state (phase 1: every trainable parameter whole; phase 2:
  the masked values of each maskable parameter and the dense head whole), the mask (sorted flat
  indices), the optimizer's ``state_dict()`` tensors, and the torch (and CUDA) RNG states;
- ``checkpoint.json``: format and version, phase, step, where the data order stands (epoch, batches
  consumed in it), the loss window not yet logged, the optimizer's and scheduler's non-tensor
  state, the numpy and Python RNG states, the settings the run must be resumed with, the size of
  ``metrics.jsonl`` when it was written, and the sha256 of ``state.safetensors``.

The optimizer is saved through its own ``state_dict()`` (any optimizer works): tensors go to the
safetensors file, the structure to JSON. In phase 2 an optimizer state tensor shaped like a masked
parameter and exactly zero outside the mask (AdamW's moments are) is stored as its masked values
only, so a phase-2 checkpoint grows with K, not with the model.

A checkpoint is written into a temporary directory and renamed into place: a half-written one is
never read; a corrupt one (bad checksum, unreadable JSON or tensors) is reported and skipped.
The data order needs no state of its own: each epoch's batches come from a seeded shuffle and each
step's masked-LM masking from a seed derived from (epoch, step), so (epoch, position) fixes it.
Nothing here unpickles.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from deftx.version import __version__
from deftx.errors import ArtifactError, TrainingTerminated, UsageError
from deftx.records.files import use_umask
from deftx.signals import StopRequest
from deftx.sft.manifest import sha256_file

CHECKPOINTS_DIR = "checkpoints"
STATE_FILE = "state.safetensors"
MANIFEST_FILE = "checkpoint.json"
CHECKPOINT_FORMAT = "deftx-checkpoint"
CHECKPOINT_FORMAT_VERSION = 1
KEEP_LAST = 2

# Settings that do not change the SFT: a run may be resumed with other values of these.
NOT_COMPARED = frozenset({"device", "log_every", "eval_every"})


def checkpoint_name(phase: int, step: int) -> str:
    return f"phase{phase}-step{step:09d}"


# ------------------------------------------------------------------------------- settings


def settings_difference(saved: Mapping[str, Any] | None, current: Mapping[str, Any]) -> str | None:
    """The first setting that differs between a run and the command resuming it, said in one
    phrase (``k was 0.05, now 0.1``), or ``None`` when they match."""
    old, new = _flatten_settings(saved or {}), _flatten_settings(current)
    for key in sorted(set(old) | set(new)):
        if key.split(".")[-1] in NOT_COMPARED:
            continue
        a, b = old.get(key), new.get(key)
        if a != b:
            if key in _DIGESTS:
                return _DIGESTS[key]
            return f"{key.removeprefix('config.')} was {_shown(a)}, now {_shown(b)}"
    return None


_DIGESTS = {
    "data_sha256": "its training data differ",
    "base_fingerprint": "its base model's weights differ",
    "lang_sft_sha256": "its source-language SFT differs",
    "mask_sha256": "its mask differs",
}


def _flatten_settings(obj: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in obj.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_flatten_settings(value, name + "."))
        else:
            out[name] = json.loads(json.dumps(value, default=str))  # tuples and lists compare alike
    return out


def _shown(value: Any) -> str:
    return "unset" if value is None else json.dumps(value) if not isinstance(value, str) else value


# ------------------------------------------------------------------------------- state (de)serialisation


def _int_view(t: torch.Tensor) -> torch.Tensor:
    return t.view({1: torch.int8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[t.element_size()])


def _zero_outside(t: torch.Tensor, mask: torch.Tensor) -> bool:
    """Every entry outside ``mask`` is +0.0 bit for bit."""
    return not bool(_int_view(t).masked_fill(mask, 0).any())


def _index_dtype(numel: int) -> torch.dtype:
    return torch.int32 if numel < 2**31 else torch.int64


@dataclass
class _Packer:
    """Tensors to a flat ``{key: tensor}`` for safetensors, structure to JSON."""

    tensors: dict[str, torch.Tensor] = field(default_factory=dict)

    def tensor(self, key: str, t: torch.Tensor) -> dict[str, str]:
        self.tensors[key] = t.detach().to("cpu").contiguous()
        return {"__tensor__": key}

    def pack(self, obj: Any, key: str, masked: Mapping[int, torch.Tensor] | None = None) -> Any:
        if isinstance(obj, torch.Tensor):
            return self.tensor(key, obj)
        if isinstance(obj, Mapping):
            return {"__dict__": [[k, self.pack(v, f"{key}.{k}")] for k, v in obj.items()]}
        if isinstance(obj, tuple):
            return {"__tuple__": [self.pack(v, f"{key}.{i}") for i, v in enumerate(obj)]}
        if isinstance(obj, list):
            return [self.pack(v, f"{key}.{i}") for i, v in enumerate(obj)]
        if obj is None or isinstance(obj, (bool, int, float, str)):
            return obj
        raise TypeError(f"cannot checkpoint a {type(obj).__name__} in {key}")

    def optimizer(self, state_dict: Mapping[str, Any], masks: Mapping[int, torch.Tensor]) -> Any:
        """An optimizer's ``state_dict()``; per-parameter tensors of a masked parameter that are zero
        outside its mask are kept as their masked values."""
        state = state_dict.get("state")
        if not masks or not isinstance(state, Mapping):
            return self.pack(state_dict, "optimizer")
        packed_state = []
        for index, per_param in state.items():
            mask = masks.get(index) if isinstance(index, int) else None
            entry = []
            for name, value in (per_param.items() if isinstance(per_param, Mapping) else ()):
                key = f"optimizer.state.{index}.{name}"
                if (mask is not None and isinstance(value, torch.Tensor) and value.shape == mask.shape
                        and _zero_outside(value, mask)):
                    self.tensor(key, value[mask])
                    entry.append([name, {"__masked__": key, "shape": list(value.shape), "dtype": str(value.dtype)}])
                else:
                    entry.append([name, self.pack(value, key)])
            packed_state.append([index, {"__dict__": entry}])
        rest = [[k, self.pack(v, f"optimizer.{k}")] for k, v in state_dict.items() if k != "state"]
        return {"__dict__": [["state", {"__dict__": packed_state}], *rest]}


def _unpack(obj: Any, tensors: Mapping[str, torch.Tensor], masks: Mapping[int, torch.Tensor], index: Any = None) -> Any:
    if isinstance(obj, list):
        return [_unpack(v, tensors, masks, index) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if "__tensor__" in obj:
        return _tensor(tensors, obj["__tensor__"])
    if "__masked__" in obj:
        mask = masks.get(index)
        values = _tensor(tensors, obj["__masked__"])
        if mask is None:
            raise ArtifactError(f"the checkpoint's optimizer state names a mask it does not hold ({obj['__masked__']})")
        full = torch.zeros(tuple(obj["shape"]), dtype=values.dtype)
        full[mask.cpu()] = values
        return full
    if "__tuple__" in obj:
        return tuple(_unpack(v, tensors, masks, index) for v in obj["__tuple__"])
    if "__dict__" in obj:
        out = {}
        for k, v in obj["__dict__"]:
            # the optimizer's per-parameter entries are keyed by the parameter's index
            out[k] = _unpack(v, tensors, masks, index=k if isinstance(k, int) else index)
        return out
    return {k: _unpack(v, tensors, masks) for k, v in obj.items()}


def _tensor(tensors: Mapping[str, torch.Tensor], key: str) -> torch.Tensor:
    try:
        return tensors[key]
    except KeyError:
        raise ArtifactError(f"the checkpoint lacks the tensor {key}") from None


def rng_state(packer: _Packer) -> dict[str, Any]:
    """The torch, CUDA, numpy and Python generators' states (tensors into ``packer``)."""
    import numpy as np

    out: dict[str, Any] = {"torch": packer.tensor("rng.torch", torch.get_rng_state())}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["cuda"] = [packer.tensor(f"rng.cuda.{i}", s) for i, s in enumerate(torch.cuda.get_rng_state_all())]
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    out["numpy"] = {"kind": kind, "keys": packer.tensor("rng.numpy", torch.from_numpy(keys.astype(np.int64))),
                    "pos": int(pos), "has_gauss": int(has_gauss), "cached_gaussian": float(cached)}
    version, internal, gauss = random.getstate()
    out["python"] = {"version": version, "state": list(internal), "gauss": gauss}
    return out


def restore_rng(state: Mapping[str, Any], tensors: Mapping[str, torch.Tensor]) -> None:
    import numpy as np

    torch.set_rng_state(_tensor(tensors, state["torch"]["__tensor__"]))
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([_tensor(tensors, s["__tensor__"]) for s in state["cuda"]])
    n = state["numpy"]
    keys = _tensor(tensors, n["keys"]["__tensor__"]).numpy().astype(np.uint32)
    np.random.set_state((n["kind"], keys, n["pos"], n["has_gauss"], n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))


# ------------------------------------------------------------------------------- checkpoints on disk


@dataclass
class Checkpoint:
    """One checkpoint read back from disk (tensors loaded, checksum verified)."""

    path: Path
    manifest: dict[str, Any]
    tensors: dict[str, torch.Tensor]

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def phase(self) -> int:
        return int(self.manifest["phase"])

    @property
    def step(self) -> int:
        return int(self.manifest["step"])

    @property
    def phase_done(self) -> bool:
        """Written at the end of phase 1, before the selection."""
        return bool(self.manifest.get("phase_done"))

    @property
    def metrics_offset(self) -> int:
        return int(self.manifest.get("metrics_offset") or 0)

    @property
    def loop(self) -> dict[str, Any]:
        return _unpack(self.manifest.get("loop") or {}, self.tensors, {})

    @property
    def context(self) -> dict[str, Any]:
        return self.manifest.get("context") or {}

    def masks(self, shapes: Mapping[str, tuple[int, ...]]) -> dict[str, torch.Tensor] | None:
        """The phase-2 mask, by parameter name (``None`` for a phase-1 checkpoint)."""
        names = self.manifest.get("masked")
        if names is None:
            return None
        masks = {}
        for name, shape in shapes.items():
            mask = torch.zeros(_numel(shape), dtype=torch.bool)
            if name in names:
                mask[_tensor(self.tensors, f"mask.{name}").to(torch.int64)] = True
            masks[name] = mask.view(shape)
        return masks

    def restore_parameters(self, maskable: Mapping[str, torch.nn.Parameter], dense: Mapping[str, torch.nn.Parameter],
                           start: Mapping[str, torch.Tensor], masks: Mapping[str, torch.Tensor] | None) -> None:
        """Put the trainable state back: whole tensors (phase 1) or start + masked values (phase 2)."""
        with torch.no_grad():
            for name, p in {**maskable, **dense}.items():
                if f"param.{name}" in self.tensors:
                    p.copy_(self.tensors[f"param.{name}"])
                elif masks is not None and name in maskable:
                    p.copy_(start[name])
                    values = self.tensors.get(f"masked.{name}")
                    if values is not None:
                        p[masks[name].to(p.device)] = values.to(p.device, p.dtype)
                else:
                    raise ArtifactError(f"checkpoint {self.path} holds no state for {name}")

    def restore_optimizer(self, optimizer: Any, scheduler: Any, index_masks: Mapping[int, torch.Tensor]) -> None:
        packed = self.manifest.get("optimizer")
        if packed is None:
            raise ArtifactError(f"checkpoint {self.path} holds no optimizer state")
        optimizer.load_state_dict(_unpack(packed, self.tensors, index_masks))
        scheduler.load_state_dict(_unpack(self.manifest["scheduler"], self.tensors, {}))

    def restore_rng(self) -> None:
        restore_rng(self.manifest["rng"], self.tensors)


def read_checkpoint(path: Path) -> Checkpoint:
    """Read and verify one checkpoint directory; :class:`ArtifactError` says what is wrong."""
    path = Path(path)
    try:
        manifest = json.loads((path / MANIFEST_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ArtifactError(f"{path.name}: {MANIFEST_FILE} is missing") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{path.name}: {MANIFEST_FILE} is unreadable ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != CHECKPOINT_FORMAT:
        raise ArtifactError(f"{path.name}: not a deftx checkpoint")
    if manifest.get("format_version") != CHECKPOINT_FORMAT_VERSION:
        raise ArtifactError(f"{path.name}: checkpoint format version {manifest.get('format_version')}, "
                            f"this deftx reads {CHECKPOINT_FORMAT_VERSION}")
    state = path / STATE_FILE
    if not state.is_file():
        raise ArtifactError(f"{path.name}: {STATE_FILE} is missing")
    if sha256_file(state) != manifest.get("sha256"):
        raise ArtifactError(f"{path.name}: {STATE_FILE} is corrupt or truncated (checksum mismatch)")
    try:
        tensors = load_file(str(state))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ArtifactError(f"{path.name}: {STATE_FILE} is unreadable ({exc})") from None
    return Checkpoint(path, manifest, tensors)


def list_checkpoints(directory: Path) -> list[Path]:
    """Checkpoint directories in training order (oldest first); temporary ones are not listed."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.is_dir() and p.name.startswith("phase"))


def latest_checkpoint(directory: Path) -> tuple[Checkpoint | None, list[str]]:
    """The newest checkpoint that reads back whole, and why each newer one was skipped. Raises
    :class:`ArtifactError` when checkpoints exist but none is usable."""
    problems: list[str] = []
    for path in reversed(list_checkpoints(directory)):
        try:
            return read_checkpoint(path), problems
        except ArtifactError as exc:
            problems.append(str(exc))
    if problems:
        raise ArtifactError(
            f"no usable checkpoint in {directory}: {'; '.join(problems)}",
            hint=f"remove {directory} to start the run again from step 0",
        )
    return None, problems


def _numel(shape: Any) -> int:
    n = 1
    for s in shape:
        n *= int(s)
    return n


# ------------------------------------------------------------------------------- writing


class Checkpointer:
    """Writes a run's checkpoints: every ``save_every`` steps (0: never), at the end of phase 1, and
    when SIGTERM arrives (through ``stop``). Keeps the last ``keep`` checkpoints. With ``directory``
    None (a multi-process launch) it writes none, and SIGTERM still ends training at a step's end.

    ``settings`` (what a resumed run must match) and ``context`` (what earlier stages produced: the
    phase-1 summary, the selection) go into every checkpoint; ``metrics_offset`` reports the size of
    ``metrics.jsonl``; ``on_saved`` hears of each checkpoint written."""

    def __init__(
        self,
        directory: Path | None,
        *,
        save_every: int = 0,
        keep: int = KEEP_LAST,
        settings: Mapping[str, Any] | None = None,
        metrics_offset: Callable[[], int] | None = None,
        stop: StopRequest | None = None,
        on_saved: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        if save_every < 0:
            raise UsageError(f"--save-every must be 0 (off) or a number of steps (got {save_every})")
        self.directory = Path(directory) if directory is not None else None
        self.save_every = save_every
        self.keep = max(1, keep)
        self.settings = dict(settings or {})
        self.context: dict[str, Any] = {}
        self.metrics_offset = metrics_offset
        self.stop = stop
        self.on_saved = on_saved

    # -- policy

    @property
    def writes(self) -> bool:
        return self.directory is not None

    def due(self, step: int, total_steps: int) -> bool:
        return self.writes and bool(self.save_every) and step % self.save_every == 0 and step < total_steps

    def stop_requested(self) -> bool:
        return self.stop is not None and self.stop.requested

    def after_step(self, training: Any, loop: dict[str, Any], agree: Callable[[bool], bool] | None = None) -> None:
        """Called by the engine after each step: save when due or asked to stop, then stop.
        ``agree`` (every process of a multi-process launch calls it at every step) turns this
        process's wish to stop into the launch's, so that all stop at the same step, and a peer
        that died is noticed there as a failure rather than taken for a stop."""
        step, total = loop["step"], training.total_steps
        stopping = self.stop_requested() and step < total
        if agree is not None:
            stopping = agree(stopping)
        if self.due(step, total) or (stopping and self.writes):
            self.save(training, loop)
        if stopping:
            raise self._terminated(f"at phase {training.phase} step {step}")

    def end_of_phase1(self, training: Any, agree: Callable[[bool], bool] | None = None) -> None:
        """The checkpoint at the end of phase 1 (before the selection), then stop if asked to."""
        if self.writes:
            self.save(training, {"step": training.total_steps}, phase_done=True)
        stopping = self.stop_requested()
        if agree is not None:
            stopping = agree(stopping)
        if stopping:
            raise self._terminated("at the end of phase 1")

    def _terminated(self, where: str) -> TrainingTerminated:
        if self.writes:
            return TrainingTerminated(f"terminated (SIGTERM) {where}; checkpoint saved",
                                      hint="rerun the same command with --resume")
        return TrainingTerminated(f"terminated (SIGTERM) {where}; a multi-process launch writes no checkpoints",
                                  hint="start the launch again")

    # -- writing

    def save(self, training: Any, loop: dict[str, Any], *, phase_done: bool = False) -> dict[str, Any]:
        """Write one checkpoint of ``training`` (the engine's phase) atomically, then prune."""
        phase, step = training.phase, loop["step"]
        began = time.perf_counter()
        packer = _Packer()
        masks = training.masks
        for name, p in training.maskable.items():
            if masks is None:
                packer.tensor(f"param.{name}", p)
            else:
                mask = masks[name]
                indices = torch.nonzero(mask.reshape(-1)).flatten()
                if indices.numel():
                    packer.tensor(f"mask.{name}", indices.to(_index_dtype(mask.numel())))
                    packer.tensor(f"masked.{name}", p.detach()[mask])
        for name, p in training.dense.items():
            packer.tensor(f"param.{name}", p)
        manifest: dict[str, Any] = {
            "format": CHECKPOINT_FORMAT,
            "format_version": CHECKPOINT_FORMAT_VERSION,
            "phase": phase,
            "step": step,
            "total_steps": training.total_steps,
            "phase_done": phase_done,
            "loop": packer.pack(dict(loop), "loop"),  # a streamed text's state holds a tensor (its buffer)
            "context": self.context,
            "settings": self.settings,
            "masked": None if masks is None else [n.removeprefix("mask.") for n in packer.tensors if n.startswith("mask.")],
            "rng": rng_state(packer),
            "metrics_offset": self.metrics_offset() if self.metrics_offset is not None else 0,
            "library_version": __version__,
            "created_at": time.time(),
        }
        if not phase_done:  # the optimizer of a finished phase is never needed again
            by_index = index_masks(training.optimizer, training.maskable, masks)
            manifest["optimizer"] = packer.optimizer(training.optimizer.state_dict(), by_index)
            manifest["scheduler"] = packer.pack(training.scheduler.state_dict(), "scheduler")
        path = self._write(checkpoint_name(phase, step), packer.tensors, manifest)
        record = {"name": path.name, "phase": phase, "step": step, "phase_done": phase_done,
                  "bytes": _size(path), "seconds": round(time.perf_counter() - began, 2), "time": round(time.time(), 3)}
        self.prune()
        if self.on_saved is not None:
            self.on_saved(record)
        return record

    def _write(self, name: str, tensors: dict[str, torch.Tensor], manifest: dict[str, Any]) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".tmp", dir=self.directory))
        use_umask(tmp, directory=True)
        final = self.directory / name
        try:
            state = tmp / STATE_FILE
            save_file(tensors, str(state), metadata={"format": CHECKPOINT_FORMAT})
            manifest["sha256"] = sha256_file(state)
            (tmp / MANIFEST_FILE).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
            for file in (state, tmp / MANIFEST_FILE):
                use_umask(file)  # safetensors makes private files (0600)
                with open(file, "rb") as handle:
                    os.fsync(handle.fileno())
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
            _fsync_dir(self.directory)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return final

    # -- housekeeping

    def prune(self) -> None:
        """Keep the newest ``keep`` checkpoints; remove older ones and stray temporary directories."""
        for path in list_checkpoints(self.directory)[: -self.keep]:
            shutil.rmtree(path, ignore_errors=True)

    def discard_after(self, checkpoint: Checkpoint | None) -> list[str]:
        """Remove checkpoints newer than the one resumed from (a skipped corrupt one, or the stopped
        attempt's), and leftover temporary directories. Returns the names removed."""
        removed = []
        for path in list_checkpoints(self.directory):
            if checkpoint is None or path.name > checkpoint.name:
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path.name)
        if self.directory.is_dir():
            for path in self.directory.iterdir():
                if path.name.startswith(".") and path.name.endswith(".tmp"):
                    shutil.rmtree(path, ignore_errors=True)
        return removed

    def remove_all(self) -> None:
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)

    # -- size

    @staticmethod
    def estimate_bytes(maskable: Mapping[str, torch.Tensor], dense: Mapping[str, torch.Tensor], k: int | None) -> dict[str, int]:
        """About how big a checkpoint is in each phase with AdamW: the trainable values and two
        moments each (phase 1: every trainable entry; phase 2: the K masked entries, their index, and
        the dense head)."""
        size = sum(p.numel() * p.element_size() for p in maskable.values())
        dense_bytes = sum(p.numel() * p.element_size() for p in dense.values())
        out = {"phase1": 3 * (size + dense_bytes)}
        if k is not None:
            element = next(iter(maskable.values())).element_size() if maskable else 4
            out["phase2"] = k * (3 * element + 4) + 3 * dense_bytes
        return out


def index_masks(optimizer: Any, maskable: Mapping[str, torch.Tensor], masks: Mapping[str, torch.Tensor] | None) -> dict[int, torch.Tensor]:
    """The mask of each parameter by its index in the optimizer's ``state_dict()`` (parameters
    numbered in group order)."""
    if masks is None or not hasattr(optimizer, "param_groups"):
        return {}
    by_id = {id(p): name for name, p in maskable.items()}
    out, index = {}, 0
    for group in optimizer.param_groups:
        for p in group["params"]:
            name = by_id.get(id(p))
            if name is not None:
                out[index] = masks[name]
            index += 1
    return out


def _size(path: Path) -> int:
    return sum(f.stat().st_size for f in Path(path).iterdir() if f.is_file())


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
