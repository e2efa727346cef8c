"""An SFT argument: a local SFT directory, or a Hugging Face hub id (``owner/name``, with a revision:
a branch, tag or commit) fetched once into huggingface_hub's cache.

A path that exists is used as it is; something that looks like a path (``./x``, ``/x``, ``~/x``,
``a/b/c``) and does not exist is an error; anything else is a hub id.
"""

from __future__ import annotations

from pathlib import Path

from deftx.errors import InputNotFoundError
from deftx.hub import fetch_hub_repo, is_hub_id
from deftx.sft.manifest import COMPOSABLE_SFT_FILE, DIFF_FILE, HEAD_FILE, MANIFEST_FILE

# The files an SFT repository may hold: a deftx SFT, or composable-sft's file and its config.
SFT_REPO_FILES = (MANIFEST_FILE, DIFF_FILE, HEAD_FILE, COMPOSABLE_SFT_FILE, "config.json")


def resolve_sft_source(source: str | Path, revision: str | None = None, *, what: str = "SFT") -> Path:
    """A local directory for ``source``: the directory itself, or the hub repository's snapshot in
    the huggingface_hub cache (downloaded when online and not yet cached)."""
    text = str(source)
    path = Path(text).expanduser()
    if path.exists():
        if not path.is_dir():
            raise InputNotFoundError(f"{text} is a file, not an {what} directory")
        return path
    if not is_hub_id(text):
        raise InputNotFoundError(f"{what} directory {text} does not exist")
    folder = fetch_hub_repo(text, revision, what=what, files=SFT_REPO_FILES)
    if not any((folder / name).is_file() for name in (MANIFEST_FILE, COMPOSABLE_SFT_FILE)):
        at = f" at revision {revision}" if revision else ""
        raise InputNotFoundError(
            f"hub repository {text}{at} holds no SFT (neither {MANIFEST_FILE} nor {COMPOSABLE_SFT_FILE})"
        )
    return folder
