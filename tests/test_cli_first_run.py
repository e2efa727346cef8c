"""What a new user hits on a first run: help at 80 columns, K written as 2.0, compose without --model,
offline hub ids, file modes, portable records, a re-run after Ctrl-C, predict, collapsed classifiers."""

from __future__ import annotations

import inspect
import json
import os
import re
import stat
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from deftx_cli.app import app

runner = CliRunner()
COMMANDS = ("train-lang", "train-task", "denoise", "compose", "evaluate", "transfer", "predict", "info",
            "datasets", "results", "tui")
EXAMPLE = re.compile(r"^\s*(deftx |export |[A-Z]+=)")


def invoke(*args, env=None):
    return runner.invoke(app, [str(a) for a in args], env=env)


def one_error_line(result, code, *needles):
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    lines = [l for l in result.stderr.splitlines() if l.startswith("deftx: error:")]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in result.stderr, result.stderr
    return lines[0]


def _command_function(name):
    info = next(c for c in app.registered_commands if c.name == name)
    return inspect.unwrap(info.callback)


@pytest.mark.parametrize("command", COMMANDS)
def test_help_at_80_columns_has_copyable_examples_and_no_type_noise(command):
    r = invoke(command, "--help", env={"COLUMNS": "80", "TERMINAL_WIDTH": "80"})
    assert r.exit_code == 0, r.stderr
    assert "<bool>" not in r.stdout and "<list[Path]>" not in r.stdout
    assert max(len(line.rstrip()) for line in r.stdout.splitlines()) <= 80
    rendered = {line.strip() for line in r.stdout.splitlines()}
    examples = [line.strip() for line in (_command_function(command).__doc__ or "").splitlines() if EXAMPLE.match(line)]
    assert examples, f"{command} --help has no example"
    for example in examples:  # each example line is whole on one screen line: copy-paste works
        assert example in rendered, f"{example!r} wraps at 80 columns in:\n{r.stdout}"


def test_the_top_level_help_has_no_bool_either():
    r = invoke("--help", env={"COLUMNS": "80"})
    assert r.exit_code == 0 and "<bool>" not in r.stdout and "predict" in r.stdout
