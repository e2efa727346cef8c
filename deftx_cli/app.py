"""The ``deftx`` command line: one Typer app, one module per command under ``commands/``.

Importing this module must not import torch or transformers: commands import the library inside
their bodies, so ``deftx --help`` and ``deftx tui`` stay fast.
"""

from __future__ import annotations

import functools
import inspect
import sys
import typing
from collections.abc import Callable
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

try:  # the click that typer uses: its own copy (recent typer) or the click package
    from typer._click.exceptions import UsageError
except ImportError:  # pragma: no cover - an older typer
    from click.exceptions import UsageError

from deftx.version import __version__
from deftx_cli.commands import (
    cache,
    compose,
    denoise,
    evaluate,
    evaluate_lm,
    info,
    interop,
    overlap,
    predict,
    results,
    train,
    transfer,
    tui,
)
from deftx_cli.output import fail


class _OneLineErrors(TyperGroup):
    """A usage error (a bad option value, an unknown option, a missing one) is one ``deftx: error:``
    line and exit 2, as every other error of the CLI, not a framed box."""

    def main(self, args: Any = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except UsageError as exc:
            if type(exc).__name__ == "NoArgsIsHelpError":  # a command given no arguments: its help
                exc.show()
                sys.exit(exc.exit_code)
            message = exc.format_message()
            command = exc.ctx.command_path if exc.ctx is not None else "deftx"
            fail(message[:1].lower() + message[1:], f"{command} --help lists the options", 2)
            sys.exit(2)
        except typer.Abort:
            fail("interrupted", None, 130)
            sys.exit(130)
        sys.exit(code if isinstance(code, int) else 0)


app = typer.Typer(
    cls=_OneLineErrors,
    name="deftx",
    help="Zero-shot cross-lingual transfer with composable sparse fine-tuning (LT-SFT and DeFT-X).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": []},  # each command gets HelpOpt (a flag without a <bool> type)
    add_completion=False,
)


def _show_help(ctx: typer.Context, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        typer.echo(ctx.get_help(), color=ctx.color)
        raise typer.Exit()


HelpOpt = Annotated[bool, typer.Option("--help", "-h", metavar="", is_eager=True, callback=_show_help,
                                       help="Show this message and exit.")]


def with_help(command: Callable[..., Any]) -> Callable[..., Any]:
    """The command with a ``--help``/``-h`` flag added to its parameters (shown without a type)."""
    hints = typing.get_type_hints(command, include_extras=True)  # the modules' annotations are strings
    parameters = [p.replace(annotation=hints.get(p.name, p.annotation))
                  for p in inspect.signature(command).parameters.values()]
    parameters.append(inspect.Parameter("show_help", inspect.Parameter.KEYWORD_ONLY, default=False, annotation=HelpOpt))

    @functools.wraps(command)
    def wrapper(*args: Any, show_help: bool = False, **kwargs: Any) -> Any:
        return command(*args, **kwargs)

    wrapper.__signature__ = inspect.Signature(parameters)
    wrapper.__annotations__ = {**hints, "show_help": HelpOpt}
    return wrapper


def _version(value: bool) -> None:
    if value:
        print(f"deftx {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    show_help: HelpOpt = False,
    version: bool = typer.Option(False, "--version", metavar="", callback=_version, is_eager=True, help="Show the version and exit."),
) -> None:
    """deftx: train language and task SFTs, compose them, evaluate transfer, watch it all in a dashboard."""


app.command("train-lang", no_args_is_help=True)(with_help(train.train_lang))
app.command("train-task", no_args_is_help=True)(with_help(train.train_task))
app.command("denoise", no_args_is_help=True)(with_help(denoise.denoise))
app.command("compose", no_args_is_help=True)(with_help(compose.compose))
app.command("evaluate", no_args_is_help=True)(with_help(evaluate.evaluate))
app.command("evaluate-lm", no_args_is_help=True)(with_help(evaluate_lm.evaluate_lm))
app.command("transfer", no_args_is_help=True)(with_help(transfer.transfer))
app.command("predict", no_args_is_help=True)(with_help(predict.predict))
app.command("info", no_args_is_help=True)(with_help(info.info))
app.command("import", no_args_is_help=True)(with_help(interop.import_sft))
app.command("export", no_args_is_help=True)(with_help(interop.export_sft))
app.command("overlap", no_args_is_help=True)(with_help(overlap.overlap))
app.command("datasets")(with_help(info.datasets))
app.command("results")(with_help(results.results))
app.command("tui")(with_help(tui.tui))
app.command("cache")(with_help(cache.cache))


def main() -> None:
    app(prog_name="deftx")


if __name__ == "__main__":
    main()
