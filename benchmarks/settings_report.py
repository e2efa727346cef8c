"""What each DeFT-X setting of an ablation kept, and how much its language and task SFTs overlap.

Reads the evaluation results of a runs directory (each ``results.json`` names the task SFT and the
language SFT it composed) and, for each system evaluated on the split (LT-SFT, DeFT-X, each of DeFT-X's
settings: the columns of ``deftx results``, labelled the same way), prints:

- what its selections kept (from each SFT's manifest, as ``deftx info`` shows it): the median rank per
  matrix, the median energy kept and the share of the plain magnitude mask, for the language SFTs (the
  source's: the one its task SFT was trained with) and the task SFT;
- for each target: its language SFT against its task SFT (``deftx overlap``: shared positions as a share of
  the language SFT, over chance, sign disagreement, norm share), and its language SFT against LT-SFT's
  (Jaccard).

No training and no evaluation: the figures of the SFTs the experiment trained and evaluated.

    python benchmarks/settings_report.py runs/abl --split valid --targets mad,min --seed 0
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine_header, table  # noqa: E402

SPARSE_SYSTEMS = ("lt-sft", "deftx")  # the systems whose SFTs the report reads (not the baselines)


def systems_of(runs_dir: Path, split: str, seed: int, source: str,
               targets: list[str]) -> tuple[dict[tuple[str, str], Path], dict[str, Path]]:
    """(system label, language) -> language SFT directory; system label -> task SFT directory. The
    labels are those of ``deftx results``'s columns (``LT-SFT``, ``DeFT-X``, ``DeFT-X lang rank rule
    rank:8``...), in its order."""
    from deftx.analysis.comparison import order_systems, collect, read_records, split_variants
    from deftx.methods import system_label

    read = read_records(runs_dir, [source, *targets])
    for problem in read.problems:
        print(f"cannot read {problem}", file=sys.stderr)
    records = [r for r in read.records if r.split == split and r.seed == seed and r.system in SPARSE_SYSTEMS
               and r.task_sft and r.lang_sft]
    points, labels, _ = split_variants(collect(records))
    by_run = {r.run_id: r for r in records}
    lang_sfts: dict[tuple[str, str], Path] = {}
    task_sfts: dict[str, Path] = {}
    order = order_systems({p.system for p in points})
    for point in sorted(points, key=lambda p: (order.index(p.system), -p.created)):
        record, label = by_run[point.run_id], labels.get(point.system, system_label(point.system))
        lang_sfts.setdefault((label, record.language), Path(record.lang_sft))
        task_sfts.setdefault(label, Path(record.task_sft))
    for label, task in task_sfts.items():  # the source's SFT: the one the task SFT was trained with
        if (label, source) not in lang_sfts and (task / "sft.json").is_file():
            trained_with = json.loads((task / "sft.json").read_text()).get("trained_with") or []
            if trained_with and isinstance(trained_with[0], dict) and trained_with[0].get("path"):
                lang_sfts[(label, source)] = Path(trained_with[0]["path"])
    return lang_sfts, task_sfts


def kept(sft: Path) -> tuple[str, str, str]:
    """Median rank (and the tail kept), median energy kept, share of the magnitude mask (``-`` for a
    plain selection): the summary ``deftx info`` shows."""
    from deftx.analysis.denoise_summary import selection_kept

    summary = selection_kept(json.loads((sft / "sft.json").read_text()).get("selection"))
    if summary is None:
        return "-", "-", "-"
    tail = f" (+{summary.tail_kept / 1e3:.0f}k tail)" if summary.tail_kept else ""
    share = summary.overlap_with_magnitude
    return (f"{summary.rank_median:g}{tail}", f"{summary.energy_median:.3f}" if summary.energy_median is not None else "-",
            f"{share:.1%}" if share is not None else "-")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs_dir", type=Path)
    parser.add_argument("--targets", default="mad,min", help="target languages (comma-separated)")
    parser.add_argument("--source", default="ind")
    parser.add_argument("--seed", type=int, default=0, help="the task seed whose evaluations are read")
    parser.add_argument("--split", default="valid", help="the evaluation split whose results are read")
    args = parser.parse_args()
    from deftx.sft.overlap import overlap_report, read_sparse_arrays

    targets = [t for t in args.targets.split(",") if t]
    lang_sfts, task_sfts = systems_of(args.runs_dir, args.split, args.seed, args.source, targets)
    systems = [s for s in task_sfts if (s, args.source) in lang_sfts]
    if not systems:
        sys.exit(f"{args.runs_dir}: no {args.split} results of seed {args.seed} for LT-SFT or DeFT-X whose task SFT "
                 f"names its {args.source} language SFT")
    print(machine_header("DeFT-X settings: what each selection kept, and the overlap of its SFTs"))
    print(f"runs dir  {args.runs_dir}  ({args.split}, seed {args.seed}; source {args.source}; "
          f"targets {', '.join(targets)})\n")

    rows = []
    for system in systems:
        row = [system]
        for lang in (args.source, *targets):
            sft = lang_sfts.get((system, lang))
            row.append(" / ".join(kept(sft)) if sft is not None and sft.is_dir() else "missing")
        task = task_sfts[system]
        row.append(" / ".join(kept(task)) if task.is_dir() else "missing")
        rows.append(row)
    print("What the selections kept: median rank per matrix / median energy kept / share of the magnitude mask\n")
    print(table(["system", *[f"lang {l}" for l in (args.source, *targets)], "task"], rows))

    cache: dict[Path, object] = {}

    def arrays(sft: Path):
        if sft not in cache:
            cache[sft] = read_sparse_arrays(sft)
        return cache[sft]

    rows = []
    reference = next((s for s in systems if s == "LT-SFT"), None)
    for system in systems:
        for lang in targets:
            sft = lang_sfts.get((system, lang))
            if sft is None or not sft.is_dir() or not task_sfts[system].is_dir():
                continue
            pair = overlap_report([arrays(sft), arrays(task_sfts[system])])["pairs"][0]["total"]
            vs_lt = "-"
            if reference is not None and system != reference and lang_sfts.get((reference, lang), Path("-")).is_dir():
                vs = overlap_report([arrays(sft), arrays(lang_sfts[(reference, lang)])])["pairs"][0]["total"]
                vs_lt = f"{vs['jaccard']:.3f}"
            rows.append([system, lang, f"{pair['shared']:,} ({pair['shared_of_a']:.1%})", f"{pair['over_chance']:.2f}",
                         f"{pair['sign_disagreement']:.1%}", f"{pair['norm_share']:.1%}", vs_lt])
    print("\nLanguage SFT x task SFT (deftx overlap), and the language SFT against LT-SFT's (Jaccard)\n")
    print(table(["system", "target", "shared (of lang)", "x chance", "signs differ", "norm share", "Jaccard vs LT-SFT lang"],
                rows))


if __name__ == "__main__":
    main()
