"""What each DeFT-X setting of an ablation kept, and how much its language and task SFTs overlap.

Reads the last ``deftx transfer`` of a runs directory (its ``experiment.json``: every step's label and run
id) and, for each system of that plan (LT-SFT, DeFT-X, each ``deftx@...`` setting), prints:

- what its selections kept (from each SFT's manifest, as ``deftx info`` shows it): the median rank per
  matrix, the median energy kept and the share of the plain magnitude mask, for the language SFTs and the
  task SFT;
- for each target: its language SFT against its task SFT (``deftx overlap``: shared positions as a share of
  the language SFT, over chance, sign disagreement, norm share), and its language SFT against LT-SFT's
  (Jaccard).

No training and no evaluation: the figures of the SFTs the experiment trained. Run it after the
experiment, before another ``deftx transfer`` in the same runs directory replaces ``experiment.json``
(running the same command again, all cached, writes it back).

    python benchmarks/settings_report.py runs/abl --targets mad,min --seed 0
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from statistics import median

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine_header, table  # noqa: E402

LANG = re.compile(r"^\[seed (\d+)\] language SFT (\S+) \((.+)\)$")
TASK = re.compile(r"^\[seed (\d+)\] task SFT (\S+)/(\S+) \((.+)\)$")


def steps(runs_dir: Path, seed: int, experiment: Path | None = None) -> tuple[dict[tuple[str, str], Path], dict[str, Path]]:
    """(system label, language) -> language SFT directory; system label -> task SFT directory."""
    plan = json.loads((experiment or runs_dir / "experiment.json").read_text())
    lang_sfts: dict[tuple[str, str], Path] = {}
    task_sfts: dict[str, Path] = {}
    for step in plan["steps"]:
        label, run_id = step.get("label", ""), step.get("run_id")
        if run_id is None:
            continue
        sft = runs_dir / run_id / "sft"
        if (m := LANG.match(label)) and int(m.group(1)) == seed:
            lang_sfts[(m.group(3), m.group(2))] = sft
        elif (m := TASK.match(label)) and int(m.group(1)) == seed:
            task_sfts[m.group(4)] = sft
    # a task-only setting ("DeFT-X task rank:16") is composed with DeFT-X's language SFTs
    for system in task_sfts:
        if system.startswith("DeFT-X task "):
            for (other, lang), sft in list(lang_sfts.items()):
                if other == "DeFT-X":
                    lang_sfts.setdefault((system, lang), sft)
    return lang_sfts, task_sfts


def kept(sft: Path) -> tuple[str, str, str]:
    """Median rank, median energy kept, share of the magnitude mask (``-`` for a plain selection)."""
    selection = json.loads((sft / "sft.json").read_text()).get("selection") or {}
    matrices = selection.get("denoise") or []
    if not matrices:
        return "-", "-", "-"
    ranks = [d["rank"] for d in matrices]
    energy = [d["energy_kept"] for d in matrices if d.get("energy_kept") is not None]
    tail = sum(d.get("tail_kept") or 0 for d in matrices)
    share = selection.get("overlap_with_magnitude")
    return (f"{median(ranks):g}" + (f" (+{tail / 1e3:.0f}k tail)" if tail else ""),
            f"{median(energy):.3f}" if energy else "-", f"{share:.1%}" if share is not None else "-")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs_dir", type=Path)
    parser.add_argument("--targets", default="mad,min", help="target languages (comma-separated)")
    parser.add_argument("--source", default="ind")
    parser.add_argument("--seed", type=int, default=0, help="the seed whose task SFTs are read")
    parser.add_argument("--experiment", type=Path, default=None,
                        help="the experiment.json to read (default: the runs directory's; a copy saved after the "
                             "ablation, when another transfer has run there since)")
    args = parser.parse_args()
    from deftx.sft.overlap import overlap_report, read_sparse_arrays

    targets = [t for t in args.targets.split(",") if t]
    lang_sfts, task_sfts = steps(args.runs_dir, args.seed, args.experiment)
    systems = [s for s in task_sfts if (s, args.source) in lang_sfts]
    if not systems:
        sys.exit(f"{args.experiment or args.runs_dir / 'experiment.json'} has no task SFT of seed {args.seed} with a {args.source} language SFT")
    print(machine_header("DeFT-X settings: what each selection kept, and the overlap of its SFTs"))
    print(f"runs dir  {args.runs_dir}  (seed {args.seed}; source {args.source}; targets {', '.join(targets)})\n")

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
