"""The version of deftx, read once from the installed package's metadata (``pyproject.toml`` holds it).

Any module may import it: it imports nothing of deftx.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("deftx")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"
