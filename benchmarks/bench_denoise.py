"""Denoising every 2-D maskable matrix of XLM-R base: randomized SVD (``svd="auto"``) against the full
SVD (``svd="full"``), with the same rank rule. Reports the time of each per matrix type, the speed-up,
whether both chose the same rank for every matrix, and the peak extra memory of each.

The difference matrices have a realistic spectrum (see ``_common.realistic_difference``): a rank-32
part plus dense noise with a power-law spectrum. Two spectra are measured, because the randomized
SVD's cost grows with the rank it must find: ``steep`` (the rank-32 part holds 88-96% of the energy,
``energy:0.9`` keeps ranks of about 10-30) and ``heavy`` (55-85%: ranks of about 30-200 of 768).

The modes run interleaved, matrix by matrix in one process (the order alternating), so that a load
spike from other processes hits both alike. A third column times a candidate implementation that is
NOT in the library (``gram_denoise`` below: the exact spectrum from the eigenvalues of the n x n Gram
matrix, then L_r = A V_r V_r^T), as evidence for a proposed change; ``--no-candidate`` leaves it out.

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


def gram_denoise(delta, fraction: float):
    """Candidate (not in the library): truncation to the smallest rank holding ``fraction`` of the
    energy, from the eigen-decomposition of the n x n Gram matrix (n = the short side). Its
    eigenvalues are the exact squared singular values, so the rank is the full SVD's; it costs one
    m n^2 product instead of an SVD of the m x n matrix."""
    import torch

    from deftx.denoise import rank_from_energy

    tall = delta if delta.shape[0] >= delta.shape[1] else delta.T
    total = sum(float(torch.linalg.vector_norm(c, dtype=torch.float64)) ** 2 for c in delta.reshape(-1).split(1 << 22))
    gram = torch.zeros(tall.shape[1], tall.shape[1])
    for rows in tall.split(1 << 15):
        gram.addmm_(rows.T, rows)
    evals, evecs = torch.linalg.eigh(gram.double())
    s = evals.flip(0).clamp_min(0).sqrt()
    r = rank_from_energy(s, total, fraction) or len(s)
    v = evecs.flip(1)[:, :r].to(delta.dtype)
    low = (tall @ v) @ v.T
    return (low if tall is delta else low.T), r


def measure(shapes: dict[str, tuple[int, int]], spectrum: str, fraction: float, candidate: bool) -> None:
    from deftx.denoise import denoise_difference

    rule = f"energy:{fraction:g}"
    modes = ["auto", "full"] + (["gram"] if candidate else [])
    runs: dict[str, dict[str, dict]] = {m: {} for m in modes}
    for i, (name, shape) in enumerate(shapes.items()):
        delta = realistic_difference(shape, seed=1000 + i, spectrum=spectrum)
        order = modes if i % 2 == 0 else modes[::-1]
        for mode in order:
            with PeakMemory() as mem, timer() as elapsed:
                if mode == "gram":
                    out, rank = gram_denoise(delta, fraction)
                    which = "gram"
                else:
                    out, info = denoise_difference(delta, rule, svd=mode, name=name, seed=0)
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
    gram = runs.get("gram")

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
               f"{sum(auto[n]['svd'] == 'randomized' for n in names)}/{len(names)}",
               t["auto"], t["full"], t["full"] / t["auto"],
               mib(max(auto[n]["peak"] for n in names)), mib(max(full[n]["peak"] for n in names))]
        if gram:
            row += [f"{sum(gram[n]['rank'] == full[n]['rank'] for n in names)}/{len(names)}", t["gram"],
                    t["full"] / t["gram"], mib(max(gram[n]["peak"] for n in names))]
        rows.append(row)
    headers = ["matrices", "n", "rank (full)", "auto = full rank", "randomized used", "auto s", "full s",
               "full / auto", "auto peak MiB", "full peak MiB"]
    if gram:
        headers += ["gram = full rank", "gram s", "full / gram", "gram peak MiB"]
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
    print(f"target ({spectrum}): randomized (auto) >= 5x faster than full with identical ranks: {'MET' if met else 'NOT MET'} "
          f"({speedup:.1f}x, {same}/{len(shapes)} identical)\n", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 layers and a 25,000-row embedding (a fast check)")
    parser.add_argument("--layers", type=int, default=None, help="transformer layers (default 12; 2 with --quick)")
    parser.add_argument("--vocab", type=int, default=None, help="embedding rows (default 250002; 25000 with --quick)")
    parser.add_argument("--fraction", type=float, default=0.9, help="the energy:F rule's F (default 0.9)")
    parser.add_argument("--spectrum", choices=["steep", "heavy", "both"], default="both",
                        help="which spectrum of difference matrices (default both)")
    parser.add_argument("--no-candidate", action="store_true", help="leave out the Gram-matrix candidate")
    args = parser.parse_args()
    layers = args.layers if args.layers is not None else (2 if args.quick else 12)
    vocab = args.vocab if args.vocab is not None else (25_000 if args.quick else 250_002)
    rule = f"energy:{args.fraction:g}"

    print(machine_header("Denoising: randomized vs full SVD"))
    shapes = matrices(layers, vocab)
    print(f"setup     {len(shapes)} matrices ({layers} layers, embedding {vocab}x768), rule {rule}, a rank-32 part "
          f"+ power-law noise; modes interleaved per matrix in one process")
    print(f"load      {os.getloadavg()[0]:.2f} (1-min load average at the start)\n", flush=True)

    for spectrum in (["steep", "heavy"] if args.spectrum == "both" else [args.spectrum]):
        measure(shapes, spectrum, args.fraction, not args.no_candidate)
    print(f"load      {os.getloadavg()[0]:.2f} (1-min load average at the end)")


if __name__ == "__main__":
    main()
