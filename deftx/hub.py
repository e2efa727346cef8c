"""The Hugging Face hub as deftx reaches it: whether it is reachable, what names a hub repository
rather than a local path, and fetching a repository's files once into huggingface_hub's cache (read
from there afterwards, also offline). Offline (``HF_HUB_OFFLINE=1``) or when the hub does not answer a
quick connection attempt, only the cache is read, and a miss fails at once with one line saying how to
pass a local directory instead.

``huggingface_hub`` is imported only when a repository is actually fetched.
"""

from __future__ import annotations

import functools
import os
import re
import socket
from pathlib import Path

from deftx.errors import InputNotFoundError, UsageError
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")


def hub_offline() -> bool:
    """Whether the Hugging Face hub is out of reach: ``HF_HUB_OFFLINE`` set, or no connection to it."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return True
    return not _hub_reachable(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))


@functools.lru_cache(maxsize=4)
def _hub_reachable(endpoint: str) -> bool:
    """One quick connection attempt (a few seconds at most), instead of the hub client's retries."""
    from urllib.parse import urlparse

    url = urlparse(endpoint)
    port = url.port or (80 if url.scheme == "http" else 443)
    try:
        with socket.create_connection((url.hostname or "huggingface.co", port), timeout=3):
            return True
    except OSError:
        return False


def looks_like_path(text: str) -> bool:
    return text.startswith((".", "/", "~")) or text.count("/") > 1 or text.endswith("/") or "\\" in text


def is_hub_id(source: str | Path) -> bool:
    """True when ``source`` names a hub repository rather than a local directory."""
    if isinstance(source, Path):
        text = str(source)
    else:
        text = source
    if Path(text).expanduser().exists() or looks_like_path(text):
        return False
    return bool(_HUB_ID.match(text)) and ".." not in text


def fetch_hub_repo(repo_id: str, revision: str | None = None, *, what: str, files: tuple[str, ...]) -> Path:
    """Download (or find in the cache) the ``files`` (names or patterns) of ``repo_id`` at ``revision``;
    the local snapshot directory. ``what`` names the thing in errors ("SFT")."""
    local_hint = f"pass a local {what} directory instead (a path such as ./{repo_id.split('/')[-1]})"
    if "/" not in repo_id:
        local_hint = f"there is no local directory {repo_id} either; {local_hint}"
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import (
            GatedRepoError,
            HFValidationError,
            LocalEntryNotFoundError,
            RepositoryNotFoundError,
            RevisionNotFoundError,
        )
    except ImportError:  # pragma: no cover - huggingface_hub comes with transformers
        raise InputNotFoundError(f"{repo_id} is not a local directory, and fetching hub ids needs huggingface_hub",
                                 hint=local_hint) from None
    at = f" at revision {revision}" if revision else ""
    offline = hub_offline()  # then only the cache: failing at once, not after the client's retries
    try:
        folder = snapshot_download(repo_id=repo_id, revision=revision, allow_patterns=list(files),
                                   local_files_only=offline)
    except HFValidationError as exc:
        raise UsageError(f"{repo_id!r} is neither a local directory nor a valid hub id: {_first_line(exc)}") from None
    except LocalEntryNotFoundError:
        reason = "the hub is out of reach (offline) and it is not in the local cache" if offline else \
            "the hub could not be reached and it is not in the local cache"
        raise InputNotFoundError(f"could not fetch {what} {repo_id}{at} from the Hugging Face hub: {reason}",
                                 hint=local_hint) from None
    except RevisionNotFoundError:
        raise InputNotFoundError(f"{repo_id} has no revision {revision!r} on the Hugging Face hub",
                                 hint="give a branch, tag or commit that exists with --revision") from None
    except (RepositoryNotFoundError, GatedRepoError):
        raise InputNotFoundError(f"could not fetch {what} {repo_id}{at}: no such repository on the Hugging Face "
                                 "hub (or it is private or gated)", hint=local_hint) from None
    except OSError as exc:  # connection errors, a full disk, an unwritable cache
        raise InputNotFoundError(f"could not fetch {what} {repo_id}{at} from the Hugging Face hub: {_first_line(exc)}",
                                 hint=local_hint) from None
    except Exception as exc:  # huggingface_hub raises httpx errors on broken connections
        raise InputNotFoundError(
            f"could not fetch {what} {repo_id}{at} from the Hugging Face hub: {type(exc).__name__}: {_first_line(exc)}",
            hint=local_hint,
        ) from None
    return Path(folder)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
