"""The README's library example runs as written, on the tiny model and the smoke budget."""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"


@pytest.mark.slow
def test_the_library_example_runs(tiny_model_dir, shared_data, tmp_path, monkeypatch, capsys):
    section = README.read_text().split("## As a library", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert '"../shared/models/me5-small-mlm"' in code and '"quick"' in code
    code = (code.replace('"../shared/models/me5-small-mlm"', repr(str(tiny_model_dir)))
                .replace('"../shared/data"', repr(str(shared_data))).replace('"quick"', '"smoke"'))
    monkeypatch.chdir(tmp_path)
    exec(compile(code, str(README), "exec"), {})
    out = capsys.readouterr().out
    assert "macro-F1 " in out and "of the LT-SFT mask" in out
    assert (tmp_path / "runs" / "ace-senti-model" / "config.json").is_file()
