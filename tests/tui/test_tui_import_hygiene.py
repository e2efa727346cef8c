"""The dashboard opens fast: importing every dashboard module and building the App loads no torch or transformers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

PROBE = """
import importlib, json, pkgutil, sys, time
start = time.perf_counter()
import deftx_cli.tui
for module in pkgutil.walk_packages(deftx_cli.tui.__path__, "deftx_cli.tui."):
    importlib.import_module(module.name)
from pathlib import Path
from deftx_cli.tui.app import DeftxDashboard, run_dashboard
DeftxDashboard(Path("runs"))
seconds = time.perf_counter() - start
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "transformers", "datasets"))
print(json.dumps({"heavy": heavy, "seconds": seconds}))
"""


def test_dashboard_imports_neither_torch_nor_transformers():
    done = subprocess.run([sys.executable, "-c", PROBE], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["heavy"] == []
    assert report["seconds"] < 3.0  # typically ~0.3 s; generous for a busy CI machine
