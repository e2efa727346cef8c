"""``deftx --help`` and the light library modules must not import torch or transformers."""

import subprocess
import sys

import pytest

HEAVY = ("torch", "transformers", "datasets")


def modules_after(code: str) -> set[str]:
    probe = f"{code}\nimport sys\nprint(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


@pytest.mark.parametrize(
    "code",
    [
        "import deftx_cli.app",
        "import deftx, deftx.records.runs, deftx.errors, deftx.data",
        "import deftx.config, deftx.methods, deftx.sparsity, deftx.analysis.comparison, deftx.experiment.plan, deftx_cli.tables",
        "from deftx import DeftX, LtSft, TrainConfig, resolve_config, TransferPlan, build_pivots, RankRule",
        "import deftx.sft.overlap, deftx.hub, deftx.sft.manifest",
        "from typer.testing import CliRunner\nfrom deftx_cli.app import app\nCliRunner().invoke(app, ['--help'])\n"
        "CliRunner().invoke(app, ['train-lang', '--help'])",
    ],
)
def test_light_paths_do_not_import_heavy_libraries(code):
    loaded = modules_after(code)
    assert not [m for m in HEAVY if m in loaded], sorted(m for m in HEAVY if m in loaded)


def test_deftx_help_runs_as_a_program():
    out = subprocess.run([sys.executable, "-m", "deftx_cli.app", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "train-lang" in out.stdout


def test_every_public_name_loads_on_first_use():
    import deftx

    for name in deftx.__all__:
        assert getattr(deftx, name) is not None, name
    with pytest.raises(AttributeError):
        deftx.no_such_name  # noqa: B018


def test_printing_tables_does_not_load_the_dashboard():
    loaded = modules_after("import deftx_cli.commands.results, deftx_cli.commands.transfer, deftx_cli.tables")
    assert not [m for m in loaded if m.startswith("deftx_cli.tui") or m.startswith("textual")]


def test_the_training_path_needs_no_datasets_textual_or_pydantic():
    """A GPU machine may lack them: the engine, its optimizer and accelerate layer, the objectives and
    the local data readers import with those three blocked (benchmarks/gpu_check.py runs on these)."""
    probe = (
        "import sys, importlib.abc\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path, target=None):\n"
        "        if name.split('.')[0] in ('datasets', 'textual', 'pydantic'):\n"
        "            raise ImportError('blocked ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import deftx.training, deftx.training.distributed, deftx.objectives, deftx.data, deftx.model, deftx.sft\n"
        "print(' '.join(sorted(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    loaded = set(out.stdout.split())
    assert "torch" in loaded
    assert not {"textual", "pydantic", "datasets"} & loaded
