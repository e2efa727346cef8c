"""The SFTs of one experiment and how much they overlap, for the compare view.

An experiment's results records name the SFTs each evaluation composed (``lang_sft``, ``task_sft``).
For a comparison table, :func:`experiment_sfts` picks one target language and seed that both LT-SFT and
DeFT-X evaluated, and :func:`overlap_rows` reports four pairs: each method's language SFT against
its task SFT, and the two methods' language SFTs and task SFTs against each other. Torch-free.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deftx.sft.overlap import pair_overlap, read_sparse_arrays
from deftx.methods.configs import PAIR, system_label
from deftx.analysis.comparison import TableKey, as_results, collect
from deftx.records.schema import ResultRecord
from deftx.sft.manifest import MANIFEST_FILE



@dataclass(frozen=True)
class ExperimentSfts:
    """The language and task SFTs of LT-SFT and DeFT-X for one target language and seed."""

    language: str
    seed: int | None
    paths: dict[tuple[str, str], Path]  # (method, "lang" | "task") -> SFT directory

    def signature(self) -> tuple[Any, ...]:
        """Changes when an SFT is rewritten, so a stale report is recomputed."""
        return tuple(sorted((k, str(p), _mtime(p / MANIFEST_FILE)) for k, p in self.paths.items()))


@dataclass(frozen=True)
class OverlapRow:
    label: str
    total: dict[str, Any]  # deftx.sft.overlap counts: shared, jaccard, sign_disagreement, norm_share ...


def locate_sft(text: str | None, runs_dir: Path) -> Path | None:
    """An SFT path as a results record gives it (as typed, often relative to where the experiment
    ran), found on disk: as it is, or under the runs directory or its parent."""
    if not text:
        return None
    path = Path(text)
    candidates = [path] if path.is_absolute() else [path, runs_dir.parent / path, runs_dir / path]
    if not path.is_absolute():
        parts = path.parts
        for i in range(len(parts) - 1):  # "<anything>/<run-id>/sft" -> runs_dir/<run-id>/sft
            candidates.append(runs_dir.joinpath(*parts[i:]))
    return next((c for c in candidates if (c / MANIFEST_FILE).is_file()), None)


def experiment_sfts(records: Iterable[ResultRecord | dict[str, Any]], key: TableKey, runs_dir: Path) -> ExperimentSfts | None:
    """The SFTs behind ``key``'s table: the first language (then the lowest seed) with every one of
    LT-SFT's and DeFT-X's language and task SFTs on disk; None when there is none."""
    records, _ = as_results(records)
    by_run = {r.run_id: r for r in records}
    points = collect(records)
    found: dict[tuple[str, int | None], dict[tuple[str, str], Path]] = {}
    for point in points:
        if point.key != key or point.system not in PAIR or point.variant != _main_variant(points, key, point.system):
            continue
        record = by_run.get(point.run_id)
        if record is None:
            continue
        slot = found.setdefault((point.language, point.seed), {})
        for role in ("lang", "task"):
            path = locate_sft(getattr(record, f"{role}_sft"), runs_dir)
            if path is not None:
                slot[(point.system, role)] = path
    complete = [(lang, seed) for (lang, seed), paths in found.items() if len(paths) == 4]
    if not complete:
        return None
    language, seed = min(complete, key=lambda ls: (ls[0], ls[1] is None, ls[1] or 0))
    return ExperimentSfts(language, seed, found[(language, seed)])


def _main_variant(points, key: TableKey, system: str):
    """The settings with the most results for ``system`` (the table's main column)."""
    counts: dict[Any, int] = {}
    for point in points:
        if point.key == key and point.system == system:
            counts[point.variant] = counts.get(point.variant, 0) + 1
    return max(counts, key=lambda v: (counts[v], v)) if counts else ()


def overlap_rows(sfts: ExperimentSfts) -> list[OverlapRow]:
    """Four pairs: language vs task SFT per method, then LT-SFT vs DeFT-X per kind."""
    arrays = {k: read_sparse_arrays(p, verify=False) for k, p in sfts.paths.items()}  # SFTs are written atomically
    first, second = PAIR
    lt, dx = system_label(first), system_label(second)
    pairs = [
        (f"{lt}: lang {sfts.language} × task", (first, "lang"), (first, "task")),
        (f"{dx}: lang {sfts.language} × task", (second, "lang"), (second, "task")),
        (f"lang {sfts.language}: {lt} × {dx}", (first, "lang"), (second, "lang")),
        (f"task: {lt} × {dx}", (first, "task"), (second, "task")),
    ]
    return [OverlapRow(label, pair_overlap(arrays[a], arrays[b])["total"]) for label, a, b in pairs]


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0
