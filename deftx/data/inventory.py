"""What a data root holds, for a ``deftx datasets`` listing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from deftx.data.labelled import read_local_split
from deftx.data.languages import LANGUAGES
from deftx.data.registry import TASKS, local_split, resolve_data_dir, task_variant
from deftx.data.text import text_sources
from deftx.errors import DeftxError


def describe_data(data_dir: Path | str | None) -> list[dict[str, Any]]:
    """One entry per task and language, then one per language's unlabelled text.

    Task entries (``kind: "task"``): task, language, language_name, metric, hub (id or None), variant,
    ``splits`` {split: rows} and ``paths`` {split: file} for the splits found in the data root, and
    ``errors`` {split: message} for files that do not read. Text entries (``kind: "text"``): language,
    language_name, ``sources`` [{path, description, lines}] and ``lines`` (their sum, repeats included).
    Without a data root (``data_dir`` None and no ``$DEFTX_DATA_DIR``) nothing is local and every
    ``splits``/``sources`` is empty.
    """
    root = resolve_data_dir(data_dir)
    entries: list[dict[str, Any]] = []
    for spec in TASKS.values():
        variant = task_variant(spec, None)
        for lang in spec.languages:
            entry: dict[str, Any] = {
                "kind": "task", "task": spec.name, "language": lang, "language_name": LANGUAGES[lang],
                "metric": spec.metric, "hub": spec.hub_id, "variant": variant, "splits": {}, "paths": {}, "errors": {},
            }
            for split in spec.splits if root is not None else ():
                local = local_split(spec, lang, split, root, variant)
                if local is None or not local.path.is_file():
                    continue
                entry["paths"][split] = str(local.path)
                try:
                    entry["splits"][split] = len(read_local_split(local, spec))
                except DeftxError as exc:
                    entry["errors"][split] = str(exc)
            entries.append(entry)
    for lang, name in LANGUAGES.items():
        entry = {"kind": "text", "language": lang, "language_name": name, "sources": [], "lines": 0, "errors": {}}
        for source in text_sources(lang, root) if root is not None else ():
            try:
                lines = sum(1 for _ in source.lines())
            except DeftxError as exc:
                entry["errors"][str(source.path)] = str(exc)
                continue
            entry["sources"].append({"path": str(source.path), "description": source.description, "lines": lines})
            entry["lines"] += lines
        entries.append(entry)
    return entries
