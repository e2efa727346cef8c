"""The ``deftx`` command line: one Typer app, one module per command under ``commands/``.

Importing this module must not import torch or transformers: commands import the library inside
their bodies, so ``deftx --help`` and ``deftx tui`` stay fast.
"""

from __future__ import annotations

import typer

from deftx import __version__
from deftx_cli.commands import compose, denoise, evaluate, info, interop, overlap, results, train, transfer, tui

app = typer.Typer(
    name="deftx",
    help="Zero-shot cross-lingual transfer with composable sparse fine-tuning (LT-SFT and DeFT-X).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        print(f"deftx {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version and exit."),
) -> None:
    """deftx: train language and task SFTs, compose them, evaluate transfer, watch it all in a dashboard."""


app.command("train-lang", no_args_is_help=True)(train.train_lang)
app.command("train-task", no_args_is_help=True)(train.train_task)
app.command("denoise", no_args_is_help=True)(denoise.denoise)
app.command("compose", no_args_is_help=True)(compose.compose)
app.command("evaluate", no_args_is_help=True)(evaluate.evaluate)
app.command("transfer", no_args_is_help=True)(transfer.transfer)
app.command("info", no_args_is_help=True)(info.info)
app.command("import", no_args_is_help=True)(interop.import_sft)
app.command("export", no_args_is_help=True)(interop.export_sft)
app.command("overlap", no_args_is_help=True)(overlap.overlap)
app.command("datasets")(info.datasets)
app.command("results")(results.results)
app.command("tui")(tui.tui)


def main() -> None:
    app(prog_name="deftx")


if __name__ == "__main__":
    main()
