"""``deftx cache``: the prepared text of language SFTs (tokenised blocks), listed or cleared."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from deftx_cli.options import JsonOpt
from deftx_cli.output import handle_errors, note, print_json, size_text, stdout


@handle_errors
def cache(
    clear: Annotated[bool, typer.Option("--clear", metavar="", help="Remove the entries (all, or those given by --key).")] = False,
    keys: Annotated[Optional[list[str]], typer.Option("--key", metavar="<key>", help="An entry to remove (repeat); with --clear.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """List the text prepared for language SFTs (tokenised once, reused by every later run), or clear it.

    The cache lives in $DEFTX_CACHE, else in deftx/ under the datasets cache ($HF_DATASETS_CACHE,
    by default ~/.cache/huggingface/datasets). An entry is built again when it is needed.

    Example:

        deftx cache
        deftx cache --clear
    """
    from deftx.data.blocks import cache_root, clear_entries, list_entries
    from deftx.errors import UsageError

    root = cache_root()
    if keys and not clear:
        raise UsageError("--key names entries to remove", hint="add --clear")
    if clear:
        known = {e["key"] for e in list_entries(root)}
        unknown = [k for k in keys or [] if k not in known]
        if unknown:
            raise UsageError(f"no cache entry {unknown[0]} in {root}", hint="deftx cache lists the entries")
        freed = clear_entries(root, keys or ())
        note(f"removed {size_text(freed)} of prepared text from {root}")
        return
    entries = list_entries(root)
    if as_json:
        print_json({"root": str(root), "entries": entries})
        return
    if not entries:
        note(f"no prepared text in {root}")
        return
    from rich.table import Table

    table = Table(title=f"prepared text in {root}")
    for column in ("key", "size", "blocks", "tokens", "lines", "length"):
        table.add_column(column, justify="left" if column == "key" else "right", no_wrap=True)
    for e in entries:
        if e.get("problem"):
            table.add_row(e["key"], size_text(e["disk_bytes"]), e["problem"], "", "", "")
            continue
        table.add_row(e["key"], size_text(e["disk_bytes"]), f"{e.get('blocks', 0):,}", f"{e.get('tokens', 0):,}",
                      f"{e.get('lines_kept', 0):,}", str(e.get("max_length") or ""))
    stdout.print(table)
    note("the text of each entry: deftx cache --json")
