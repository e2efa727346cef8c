"""What DeFT-X's denoising does to the mask, from real phase-1 differences: for each rank rule,
``tail_keep`` and K, the ranks chosen per matrix, the energy they keep, and how far the DeFT-X mask
is from the LT-SFT (magnitude) mask at the same K. No training: it reads the ``phase1_diff.safetensors``
that ``deftx transfer`` keeps for each language SFT (and ``deftx train-* --keep-phase1-diff`` writes).

    python benchmarks/analyze_masks.py runs/nusax/xfer-lang-*-lt-sft-*/phase1_diff.safetensors
    python benchmarks/analyze_masks.py DIFF... --rule energy:0.8 --rule rank:16 --tail-keep 0 --tail-keep 0.01 --k 0.0276 --k 0.01
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine_header, table  # noqa: E402


def where(name: str) -> str:
    if "embeddings" in name:
        return "embeddings"
    if "attention" in name:
        return "attention"
    if "intermediate" in name or ".output." in name:
        return "ffn"
    return "other"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("diffs", nargs="+", type=Path, help="phase1_diff.safetensors files")
    parser.add_argument("--rule", action="append", help="rank rules (default energy:0.8, 0.9, 0.95, rank:16)")
    parser.add_argument("--tail-keep", action="append", type=float, help="tail_keep values (default 0 and 0.01)")
    parser.add_argument("--k", action="append", help="K values (default 0.0276 and 0.01)")
    args = parser.parse_args()
    rules = args.rule or ["energy:0.8", "energy:0.9", "energy:0.95", "rank:16"]
    tails = args.tail_keep if args.tail_keep is not None else [0.0, 0.01]
    ks = args.k or ["0.0276", "0.01"]

    import torch

    from deftx.methods import DeftX, LtSft
    from deftx.sft.diff import load_difference
    from deftx.sparsity import resolve_k

    torch.manual_seed(0)
    print(machine_header("DeFT-X masks against LT-SFT masks, from real phase-1 differences"))
    print(f"setup     {len(args.diffs)} phase-1 differences; rules {', '.join(rules)}; tail_keep "
          f"{', '.join(map(str, tails))}; K {', '.join(ks)}\n", flush=True)
    rows = []
    for path in args.diffs:
        differences, meta = load_difference(path)
        label = path.parent.name.split("-")[2] if path.parent.name.startswith("xfer-") else path.parent.name
        maskable = sum(d.numel() for d in differences.values())
        for k in ks:
            k_count = resolve_k(k, maskable)
            magnitude = LtSft().select(differences, k_count).masks
            mag_share = {w: 0 for w in ("embeddings", "attention", "ffn", "other")}
            for name, m in magnitude.items():
                mag_share[where(name)] += int(m.sum())
            for rule in rules:
                for tail in tails:
                    sel = DeftX(rank_rule=rule, tail_keep=tail).select(
                        {n: d.clone() for n, d in differences.items()}, k_count, in_place=True)
                    share = {w: 0 for w in mag_share}
                    for name, m in sel.masks.items():
                        share[where(name)] += int(m.sum())
                    ranks = [i.rank for i in sel.denoise]
                    full = [i.rank / min(i.shape) for i in sel.denoise]
                    energy = [i.energy_kept for i in sel.denoise]
                    rows.append([label, f"{k_count / maskable:.2%}", rule, tail, f"{min(ranks)}/{int(statistics.median(ranks))}/{max(ranks)}",
                                 f"{statistics.median(full):.0%}", f"{statistics.mean(energy):.3f}", f"{sel.overlap_with_magnitude:.1%}",
                                 f"{share['embeddings'] / k_count:.0%} ({mag_share['embeddings'] / k_count:.0%})",
                                 f"{share['attention'] / k_count:.0%} ({mag_share['attention'] / k_count:.0%})",
                                 f"{share['ffn'] / k_count:.0%} ({mag_share['ffn'] / k_count:.0%})"])
                    print("  " + " | ".join(map(str, rows[-1])), file=sys.stderr, flush=True)
        del differences
    print(table(["language", "K", "rule", "tail_keep", "rank min/median/max", "median rank / full",
                 "mean energy kept", "shared with LT-SFT mask", "K in embeddings (LT-SFT)",
                 "K in attention (LT-SFT)", "K in FFN (LT-SFT)"], rows))


if __name__ == "__main__":
    main()
