"""Options shared by several commands, declared once."""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from deftx.errors import InputNotFoundError
from deftx.methods import METHODS
from deftx_cli.output import exit_for


Method = Enum("Method", {name.replace("-", "_"): name for name in METHODS}, type=str)  # the --method choices


class Preset(str, Enum):
    smoke = "smoke"
    quick = "quick"
    cpu = "cpu"
    paper = "paper"


def split_list(values: list[str] | None) -> list[str]:
    """Values of a list option given comma-separated, repeated, or both: ``["a,b", "c"]`` -> ``["a", "b", "c"]``."""
    return [v.strip() for value in values or [] for v in value.split(",") if v.strip()]


def path_check(kind: str | None = None, *, exists: bool = True) -> Callable[..., Any]:
    """An option callback that checks a path (or each of a list) as the library checks its inputs:
    a missing path, or a file where a directory is wanted (``kind="dir"``) or the reverse, is
    ``deftx: error: ...`` and exit 3, through the same report as every other error."""

    def check(param: typer.CallbackParam, value: Any) -> Any:
        name = max(param.opts, key=len) if param.param_type_name == "option" else param.name.upper()
        for path in value if isinstance(value, (list, tuple)) else [value]:
            if path is None:
                continue
            path = Path(path)
            if not path.exists():
                if exists:
                    raise exit_for(InputNotFoundError(f"{name}: {path} does not exist"))
            elif kind == "dir" and not path.is_dir():
                raise exit_for(InputNotFoundError(f"{name}: {path} is a file, not a directory"))
            elif kind == "file" and path.is_dir():
                raise exit_for(InputNotFoundError(f"{name}: {path} is a directory, not a file"))
        return value

    return check


existing_file = path_check("file")


def _existing_text(param: typer.CallbackParam, value: Any) -> Any:
    """``--text``: each path must exist (a glob pattern is matched later, by the library)."""
    import glob

    plain = [v for v in value or [] if not glob.has_magic(str(v))]
    path_check()(param, plain)
    return value


existing_text = _existing_text
existing_dir = path_check("dir")
existing_path = path_check()
a_file = path_check("file", exists=False)
a_dir = path_check("dir", exists=False)

TRAINING = "Training"
SELECTION = "Selection (LT-SFT / DeFT-X)"
OUTPUT = "Output"

ModelOpt = Annotated[str, typer.Option("--model", "-m", envvar="DEFTX_MODEL",
                                       help="Base model: a hub id or a local directory.")]
DataDirOpt = Annotated[Optional[Path], typer.Option("--data-dir", envvar="DEFTX_DATA_DIR", callback=a_dir,
                                                    help="Local data root (layout of the shared data folder); default: the hub.")]
RunsDirOpt = Annotated[Path, typer.Option("--runs-dir", envvar="DEFTX_RUNS_DIR", callback=a_dir,
                                          help="Where run directories are written.", rich_help_panel=OUTPUT)]
RunIdOpt = Annotated[Optional[str], typer.Option("--run-id", help="Name of the run directory (default: time, kind, method, language).", rich_help_panel=OUTPUT)]
OutOpt = Annotated[Optional[Path], typer.Option("--out", "-o", help="Also write the SFT to this directory.", rich_help_panel=OUTPUT)]
JsonOpt = Annotated[bool, typer.Option("--json", metavar="", help="Print one JSON document on stdout (for scripts).", rich_help_panel=OUTPUT)]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", metavar="", help="No progress on stderr.", rich_help_panel=OUTPUT)]

MethodOpt = Annotated[Method, typer.Option("--method", help="deftx (SVD-denoised selection), lt-sft (magnitude), or full-ft (dense baseline).", rich_help_panel=SELECTION)]
PresetOpt = Annotated[Preset, typer.Option("--preset", help="Budget and hyper-parameters: smoke (seconds), quick (minutes), cpu (benchmark), paper (XLM-R paper scale).", rich_help_panel=TRAINING)]
KOpt = Annotated[Optional[str], typer.Option("--k", "-k", help="Entries kept: a count (7667712), a fraction (0.05) or a percentage (2.5%).", rich_help_panel=SELECTION)]
RankRuleOpt = Annotated[Optional[str], typer.Option("--rank-rule", help="DeFT-X rank per matrix: energy:F (default energy:0.9) or rank:R.", rich_help_panel=SELECTION)]
TailKeepOpt = Annotated[Optional[float], typer.Option("--tail-keep", min=0.0, max=1.0, help="DeFT-X: fraction of the SVD residual kept (0 = pure truncation).", rich_help_panel=SELECTION)]
MaskOpt = Annotated[Optional[Path], typer.Option("--mask", callback=existing_file, help="A mask from 'deftx denoise': skip phase 1 and run phase 2 only.", rich_help_panel=SELECTION)]
KeepDiffOpt = Annotated[bool, typer.Option("--keep-phase1-diff", metavar="", help="Save the dense phase-1 difference in the run directory (for 'deftx denoise').", rich_help_panel=SELECTION)]

Phase1StepsOpt = Annotated[Optional[int], typer.Option("--phase1-steps", min=1, help="Phase 1 steps (overrides the preset).", rich_help_panel=TRAINING)]
Phase2StepsOpt = Annotated[Optional[int], typer.Option("--phase2-steps", min=1, help="Phase 2 steps (overrides the preset).", rich_help_panel=TRAINING)]
Phase1EpochsOpt = Annotated[Optional[float], typer.Option("--phase1-epochs", min=0.01, help="Phase 1 epochs (instead of steps).", rich_help_panel=TRAINING)]
Phase2EpochsOpt = Annotated[Optional[float], typer.Option("--phase2-epochs", min=0.01, help="Phase 2 epochs (instead of steps).", rich_help_panel=TRAINING)]
BatchOpt = Annotated[Optional[int], typer.Option("--batch-size", min=1, help="Batch size.", rich_help_panel=TRAINING)]
MaxLenOpt = Annotated[Optional[int], typer.Option("--max-length", min=8, max=8192, help="Tokens per sequence.", rich_help_panel=TRAINING)]
LrOpt = Annotated[Optional[float], typer.Option("--lr", min=0.0, help="Peak learning rate.", rich_help_panel=TRAINING)]
L1Opt = Annotated[Optional[float], typer.Option("--l1", min=0.0, help="L1 pull toward the start point (lambda).", rich_help_panel=TRAINING)]
WdOpt = Annotated[Optional[float], typer.Option("--weight-decay", min=0.0, help="Weight decay (masked in phase 2).", rich_help_panel=TRAINING)]
SeedOpt = Annotated[int, typer.Option("--seed", help="Random seed.", rich_help_panel=TRAINING)]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto, cpu, cuda, cuda:1 ...", rich_help_panel=TRAINING)]


class MixedPrecision(str, Enum):
    auto = "auto"
    no = "no"
    bf16 = "bf16"
    fp16 = "fp16"


def option_value(option: Enum | None) -> str | None:
    """An optional enum option's value; None (not given: the preset decides) stays None."""
    return None if option is None else option.value


MixedPrecisionOpt = Annotated[Optional[MixedPrecision], typer.Option("--mixed-precision", help="Autocast precision of forward and backward: no (exact float32), bf16, fp16 (CUDA only), or auto (bf16 where the device runs it fast: a CUDA GPU with bf16, a CPU with AVX512-BF16 or AMX; else no). Weights, the phase-1 difference and the SFT stay float32. Default: the preset's (auto for smoke, quick and cpu; no for paper).", rich_help_panel=TRAINING)]
GradAccumOpt = Annotated[int, typer.Option("--grad-accum", min=1, help="Micro-batches per optimizer step and process: the batch size stays the global batch.", rich_help_panel=TRAINING)]

CHECKPOINTS = "Checkpoints"
SaveEveryOpt = Annotated[Optional[int], typer.Option("--save-every", min=0, help="Checkpoint every N steps (0: only at the end of phase 1 and on SIGTERM). Default from the preset: paper 1000, cpu 50, quick 100, smoke 0.", rich_help_panel=CHECKPOINTS)]
KeepCheckpointsOpt = Annotated[bool, typer.Option("--keep-checkpoints", metavar="", help="Keep the checkpoints when the run finishes (deleted by default).", rich_help_panel=CHECKPOINTS)]
ResumeOpt = Annotated[bool, typer.Option("--resume", metavar="", help="Continue an interrupted run from its last valid checkpoint: the one named by --run-id, else the latest unfinished run of this kind and language in --runs-dir (a new run when there is none). Refused if a setting differs.", rich_help_panel=CHECKPOINTS)]

RevisionOpt = Annotated[Optional[str], typer.Option("--revision", help="Branch, tag or commit of SFTs given as hub ids (default: main).")]

TEXT = "Text (language SFTs)"
TextOpt = Annotated[Optional[list[str]], typer.Option("--text", metavar="<path>", callback=_existing_text, help="Unlabelled text instead of the built-in sources: files (.txt one segment per line, also .gz/.bz2/.xz/.zst; or .csv/.tsv/.jsonl with a text column), directories (every file below) or globs ('wiki/*.txt.gz'); repeat for several.", rich_help_panel=TEXT)]
TextDatasetOpt = Annotated[Optional[str], typer.Option("--text-dataset", help="A text data set of the Hugging Face hub instead (e.g. wikimedia/wikipedia; streamed), or a data set folder on disk.", rich_help_panel=TEXT)]
TextConfigOpt = Annotated[Optional[str], typer.Option("--text-config", help="Its configuration, e.g. 20231101.ace.", rich_help_panel=TEXT)]
TextSplitOpt = Annotated[str, typer.Option("--text-split", help="Its split.", rich_help_panel=TEXT)]
TextColumnOpt = Annotated[str, typer.Option("--text-column", help="Its text column.", rich_help_panel=TEXT)]
class TextMode(str, Enum):
    auto = "auto"
    cache = "cache"
    stream = "stream"


TextModeOpt = Annotated[TextMode, typer.Option("--text-mode", help="cache: tokenise the whole text once into the cache, then train on it (repeated lines dropped, --max-lines subsets); stream: tokenise as training reads it (a text far larger than the run reads); auto: stream when the text is over 1 GiB and over 4 times what the run reads.", rich_help_panel=TEXT)]
WorkersOpt = Annotated[Optional[int], typer.Option("--workers", min=1, help="Threads that tokenise the text when it is prepared (default: every core).", rich_help_panel=TEXT)]


def hub_text(dataset: str | None, config: str | None, split: str, column: str, revision: str | None,
             text: list[str] | None):
    """The hub data set the text options name (``None`` without ``--text-dataset``); ``--text`` beside it,
    or ``--text-config`` / ``--text-revision`` without it, is refused."""
    from deftx.data.text import HubText
    from deftx.errors import UsageError

    if dataset is None:
        if config is not None or revision is not None:
            raise UsageError("--text-config and --text-revision go with --text-dataset")
        return None
    if text:
        raise UsageError("--text and --text-dataset both name the text; give one of them")
    return HubText(dataset, config, split, column, revision)
