"""Where a run ran: the deftx version and git commit, library versions, device and processor model,
thread count. Written into every ``run.json``. Torch-free: torch is asked only when the process has
already imported it (every training and evaluation has), never imported for this."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

from deftx.version import __version__
_SOURCE = Path(__file__).resolve().parents[2]  # the repository holding deftx/records/


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


@lru_cache(maxsize=1)
def git_commit() -> str | None:
    """The commit of the deftx source tree, when it is a git checkout (``+dirty`` with local changes)."""
    if not (_SOURCE / ".git").exists():
        return None
    try:
        def git(*args: str) -> str:
            return subprocess.run(["git", "-C", str(_SOURCE), *args], capture_output=True, text=True,
                                  timeout=5, check=True).stdout.strip()

        commit = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+dirty" if dirty else "") if commit else None


@lru_cache(maxsize=1)
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(device: str | None = None) -> dict[str, Any]:
    """The provenance record of a run; ``device`` is the configured one (``auto`` resolved here)."""
    torch = sys.modules.get("torch")
    out: dict[str, Any] = {
        "deftx": __version__,
        "git_commit": git_commit(),
        "python": platform.python_version(),
        "torch": _version("torch"),
        "transformers": _version("transformers"),
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads() if torch is not None else None,
        "device": device,
        "gpu": None,
    }
    if torch is not None:
        cuda = torch.cuda.is_available()
        if device in (None, "auto"):
            out["device"] = "cuda" if cuda else "cpu"
        if cuda and str(out["device"]).startswith("cuda"):
            out["gpu"] = torch.cuda.get_device_name(torch.device(out["device"]))
    return out
