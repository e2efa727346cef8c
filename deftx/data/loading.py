"""One split of a built-in task, from the local data root when there is one, else from the hub."""

from __future__ import annotations

from pathlib import Path

from deftx.data.hub_splits import load_hub_split
from deftx.data.labelled import LabelledData, read_local_split
from deftx.data.registry import (
    DATA_DIR_ENV,
    TaskSpec,
    as_task,
    canonical_split,
    local_split,
    resolve_data_dir,
    task_language,
    task_variant,
)
from deftx.errors import InputNotFoundError


def load_task_split(
    task: str | TaskSpec,
    lang: str | None,
    split: str,
    data_dir: Path | str | None = None,
    *,
    variant: str | None = None,
) -> LabelledData:
    """Labelled data of ``task`` in language ``lang`` (a code, alias or name), split ``train``/``valid``/``test``.

    The data root is ``data_dir``, else ``$DEFTX_DATA_DIR``; with neither, the split comes from the hub.
    ``lang`` may be None for one-language tasks (smsa, sick, xnli-en, multinli). ``variant`` picks a
    task variant: for ``smsa``, ``"nusax-filtered"`` (default: drops the items that copy NusaX sentences,
    use it when evaluating on NusaX) or ``"original"`` (the full SmSA, which leaks NusaX test items).
    """
    spec = as_task(task)
    code = task_language(spec, lang)
    split = canonical_split(spec, split)
    root = resolve_data_dir(data_dir)
    if root is None:
        task_variant(spec, variant)  # refuses unknown variant names before going online
        return load_hub_split(spec, code, split, variant)
    local = local_split(spec, code, split, root, task_variant(spec, variant))
    if local is None:
        hint = f"run without --data-dir and ${DATA_DIR_ENV} to load {spec.hub_id} from the hub"
        if spec.name == "multinli":
            hint += "; offline, train on the 'sick' task (English NLI) instead"
        raise InputNotFoundError(f"{spec.name} is not part of a local data root", hint=hint)
    if not local.path.is_file():
        raise InputNotFoundError(
            f"{spec.name} {code} {split}: {local.path} not found", hint=f"is {root} laid out like ../shared/data?"
        )
    return read_local_split(local, spec)
