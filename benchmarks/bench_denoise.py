"""Denoising every 2-D maskable matrix of XLM-R base: the library's default path (``svd="auto"``: the
exact spectrum and singular vectors from the float64 Gram matrix, the dense SVD for small matrices)
against the full SVD (``svd="full"``), with the same rank rule. Reports the time of each per matrix type, the
speed-up, whether both chose the same rank for every matrix, and the peak extra memory of each.

The difference matrices have a realistic spectrum (see ``_common.realistic_difference``): a rank-32
part plus dense noise with a power-law spectrum. Two spectra are measured (the cost of a randomized
SVD, which earlier versions took for small ranks, grew with the rank it must find): ``steep`` (the rank-32 part holds 88-96% of the energy,
``energy:0.9`` keeps ranks of about 10-30) and ``heavy`` (55-85%: ranks of about 30-200 of 768).

The modes run interleaved, matrix by matrix in one process (the order alternating), so that a load
spike from other processes hits both alike. Run it on an otherwise idle machine: two processes that
both use every core slow each other's LAPACK calls far more than their share.

    python benchmarks/bench_denoise.py            # XLM-R base, 76 matrices, both spectra: 2.5 min on 2 cores (more under load)
    python benchmarks/bench_denoise.py --quick    # 2 layers, a 25,000-row embedding: ~40 s
    python benchmarks/bench_denoise.py --spectrum heavy
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    PeakMemory,
    machine_header,
    mib,
    realistic_difference,
    table,
    timer,
    xlmr_base_shapes,
)


def matrices(layers: int, vocab: int) -> dict[str, tuple[int, int]]:
    return {n: s for n, s in xlmr_base_shapes(layers, vocab).items() if len(s) == 2}


def group(name: str, shape: tuple[int, int]) -> str:
    if "word_embeddings" in name:
        return f"word embeddings {shape[0]}x{shape[1]}"
    if name.startswith(("embeddings.", "pooler.")):
        return "position, token type, pooler"
    if "intermediate" in name or (".output.dense" in name and "attention" not in name):
        return "FFN 3072x768, 768x3072"
    return "attention q, k, v, o 768x768"


def measure(shapes: dict[str, tuple[int, int]], spectrum: str, fraction: float) -> None:
    from deftx.methods.denoise import denoise_difference

    rule = f"energy:{fraction:g}"
    modes = ["auto", "full"]
    runs: dict[str, dict[str, dict]] = {m: {} for m in modes}
    for i, (name, shape) in enumerate(shapes.items()):
        delta = realistic_difference(shape, seed=1000 + i, spectrum=spectrum)
        order = modes if i % 2 == 0 else modes[::-1]
        for mode in order:
            with PeakMemory() as mem, timer() as elapsed:
                out, info = denoise_difference(delta, rule, svd=mode, name=name)
                rank, which = info.rank, info.svd
                del out
            runs[mode][name] = {"rank": rank, "svd": which, "seconds": elapsed(), "peak": mem.extra}
        matrix_bytes = delta.numel() * 4
        del delta
        if "word_embeddings" in name:
            embed_bytes = matrix_bytes
        print(f"  {name} {shape}: " + ", ".join(
            f"{m} r={runs[m][name]['rank']} {runs[m][name]['seconds']:.2f}s" for m in modes), file=sys.stderr, flush=True)
    auto, full = runs["auto"], runs["full"]

    groups: dict[str, list[str]] = {}
    for name, shape in shapes.items():
        groups.setdefault(group(name, shape), []).append(name)
    groups["all"] = list(shapes)
    rows = []
    for label, names in groups.items():
        t = {m: sum(runs[m][n]["seconds"] for n in names) for m in modes}
        ranks = [full[n]["rank"] for n in names]
        row = [label, len(names), f"{min(ranks)}-{max(ranks)}",
               f"{sum(auto[n]['rank'] == full[n]['rank'] for n in names)}/{len(names)}",
               "/".join(str(sum(auto[n]["svd"] == k for n in names)) for k in ("gram", "full")),
               t["auto"], t["full"], t["full"] / t["auto"],
               mib(max(auto[n]["peak"] for n in names)), mib(max(full[n]["peak"] for n in names))]
        rows.append(row)
    headers = ["matrices", "n", "rank (full)", "auto = full rank", "auto path gram/full", "auto s", "full s",
               "full / auto", "auto peak MiB", "full peak MiB"]
    print(f"## spectrum {spectrum}\n")
    print(table(headers, rows))

    print()
    differ = [(n, auto[n]["rank"], full[n]["rank"]) for n in shapes if auto[n]["rank"] != full[n]["rank"]]
    for n, a, f in differ:
        print(f"rank differs: {n}: auto {a}, full {f}")
    embed = next(n for n in shapes if "word_embeddings" in n)
    print(f"word embeddings ({mib(embed_bytes):.0f} MiB in float32): peak extra memory auto "
          f"{mib(auto[embed]['peak']):.0f} MiB ({auto[embed]['peak'] / embed_bytes:.1f}x the matrix), full "
          f"{mib(full[embed]['peak']):.0f} MiB ({full[embed]['peak'] / embed_bytes:.1f}x)")
    same = sum(auto[n]["rank"] == full[n]["rank"] for n in shapes)
    speedup = sum(r["seconds"] for r in full.values()) / sum(r["seconds"] for r in auto.values())
    met = speedup >= 5 and same == len(shapes)
    print(f"target ({spectrum}): auto >= 5x faster than full with identical ranks: {'MET' if met else 'NOT MET'} "
          f"({speedup:.1f}x, {same}/{len(shapes)} identical)\n", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 layers and a 25,000-row embedding (a fast check)")
    parser.add_argument("--layers", type=int, default=None, help="transformer layers (default 12; 2 with --quick)")
    parser.add_argument("--vocab", type=int, default=None, help="embedding rows (default 250002; 25000 with --quick)")
    parser.add_argument("--fraction", type=float, default=0.9, help="the energy:F rule's F (default 0.9)")
    parser.add_argument("--spectrum", choices=["steep", "heavy", "both"], default="both",
                        help="which spectrum of difference matrices (default both)")
    args = parser.parse_args()
    layers = args.layers if args.layers is not None else (2 if args.quick else 12)
    vocab = args.vocab if args.vocab is not None else (25_000 if args.quick else 250_002)
    rule = f"energy:{args.fraction:g}"

    print(machine_header("Denoising: Gram path vs full SVD"))
    shapes = matrices(layers, vocab)
    print(f"setup     {len(shapes)} matrices ({layers} layers, embedding {vocab}x768), rule {rule}, a rank-32 part "
          f"+ power-law noise; modes interleaved per matrix in one process")
    print(f"load      {os.getloadavg()[0]:.2f} (1-min load average at the start)\n", flush=True)

    for spectrum in (["steep", "heavy"] if args.spectrum == "both" else [args.spectrum]):
        measure(shapes, spectrum, args.fraction)
    print(f"load      {os.getloadavg()[0]:.2f} (1-min load average at the end)")


if __name__ == "__main__":
    main()
