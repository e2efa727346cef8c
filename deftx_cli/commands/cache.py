"""``deftx cache``: the prepared data (language SFTs' text blocks, task SFTs' tokenised examples), listed or cleared."""

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
    """List the data prepared for training (language SFTs' text and task SFTs' examples, tokenised once and
    reused by every later run), or clear it.

    The cache lives in $DEFTX_CACHE, else in deftx/ under the datasets cache ($HF_DATASETS_CACHE,
    by default ~/.cache/huggingface/datasets). An entry is built again when it is needed.

    Example:

        deftx cache
        deftx cache --clear
    """
    from deftx.data.blocks import cache_root, clear_entries, list_entries
    from deftx.data.encoded import clear_encoded, list_encoded
    from deftx.errors import UsageError

    root = cache_root()
    if keys and not clear:
        raise UsageError("--key names entries to remove", hint="add --clear")
    entries = [*list_entries(root), *list_encoded(root)]
    if clear:
        unknown = [k for k in keys or [] if k not in {e["key"] for e in entries}]
        if unknown:
            raise UsageError(f"no cache entry {unknown[0]} in {root}", hint="deftx cache lists the entries")
        freed = clear_entries(root, keys or ()) + clear_encoded(root, keys or ())
        note(f"removed {size_text(freed)} of prepared data from {root}")
        return
    if as_json:
        print_json({"root": str(root), "entries": entries})
        return
    if not entries:
        note(f"no prepared data in {root}")
        return
    from rich.table import Table

    table = Table(title=f"prepared data in {root}")
    for column in ("key", "kind", "size", "rows", "tokens", "length"):
        table.add_column(column, justify="left" if column in ("key", "kind") else "right", no_wrap=True)
    for e in entries:
        kind = "text" if e["kind"] == "text" else "examples"
        if e.get("problem"):
            table.add_row(e["key"], kind, size_text(e["disk_bytes"]), e["problem"], "", "")
            continue
        rows = f"{e.get('blocks') or 0:,} blocks" if e["kind"] == "text" else f"{e.get('examples') or 0:,}"
        table.add_row(e["key"], kind, size_text(e["disk_bytes"]), rows, f"{e.get('tokens') or 0:,}",
                      str(e.get("max_length") or ""))
    stdout.print(table)
    note("what each entry was made from: deftx cache --json")
