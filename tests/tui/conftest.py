"""Fixtures for the dashboard tests: a runs directory with every kind of run, and ``async def`` tests."""

from __future__ import annotations

import asyncio
import inspect
from pathlib import Path

import pytest
import tui_fixtures as F


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """Run ``async def`` tests in a fresh event loop (Textual's ``run_test`` needs one; no plugin needed)."""
    if not inspect.iscoroutinefunction(pyfuncitem.obj):
        return None
    kwargs = {name: pyfuncitem.funcargs[name] for name in pyfuncitem._fixtureinfo.argnames}
    asyncio.run(pyfuncitem.obj(**kwargs))
    return True


@pytest.fixture
def runs_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``runs/`` (relative: the dashboard shows the path as given, so snapshots do not hold tmp paths)."""
    monkeypatch.chdir(tmp_path)
    F.make_runs_dir(tmp_path)
    return Path("runs")


@pytest.fixture
def empty_runs_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return Path("runs")
