"""The paired bootstrap of ``deftx results --curve / --paired``: ``deftx.analysis.stats.paired_bootstrap`` (every
resample's confusion matrices in one ``numpy.bincount``) against a plain loop that scores each resample
with ``deftx.metrics.classification_metrics``, on the same resamples (the intervals must agree exactly),
and the whole ``--paired`` table (``deftx.analysis.paired.build_paired_tables``) of the Part 2 shape: five
languages x three seeds x four systems, NusaX test size (400 sentences), 2,000 resamples.

    python benchmarks/bench_bootstrap.py           # ~1 minute on 2 cores
    python benchmarks/bench_bootstrap.py --quick   # 100 sentences, 200 resamples
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine_header, table, timer  # noqa: E402

from deftx.metrics import classification_metrics  # noqa: E402
from deftx.analysis.paired import build_paired_tables  # noqa: E402
from deftx.analysis.stats import paired_bootstrap  # noqa: E402

LABELS = ["negative", "neutral", "positive"]
CHUNK = 500  # deftx.analysis.stats draws its resamples in chunks of this many rows


def noisy(gold: np.ndarray, right: float, rng: np.random.Generator) -> np.ndarray:
    return np.where(rng.random(gold.size) < right, gold, rng.integers(0, 3, gold.size))


def loop_bootstrap(gold, a, b, n, seed=0):
    """The reference: one resample at a time, each seed's macro-F1 from classification_metrics."""
    rng = np.random.default_rng(seed)
    replicates = []
    for start in range(0, n, CHUNK):
        for idx in rng.integers(0, gold.size, size=(min(CHUNK, n - start), gold.size)):
            g = gold[idx].tolist()
            diffs = [classification_metrics(pa[idx].tolist(), g, LABELS)["macro_f1"]
                     - classification_metrics(pb[idx].tolist(), g, LABELS)["macro_f1"] for pa, pb in zip(a, b)]
            replicates.append(sum(diffs) / len(diffs))
    return tuple(float(x) for x in np.percentile(replicates, [2.5, 97.5]))


def records(sentences: int, rng: np.random.Generator) -> list[dict]:
    out = []
    for language in ("ace", "ban", "bjn", "mad", "min"):
        gold = rng.integers(0, 3, sentences)
        for system, right in (("lt-sft", 0.55), ("deftx", 0.57), ("no-lang-sft", 0.5), ("full-ft", 0.45)):
            for seed in range(3):
                preds = noisy(gold, right, rng)
                out.append({"run_id": f"{system}-{language}-{seed}", "task": "nusax-senti", "language": language,
                            "split": "test", "system": system, "base_model": "m", "seed": seed, "metric": "macro_f1",
                            "metrics": classification_metrics(preds.tolist(), gold.tolist(), LABELS),
                            "predictions": preds.tolist(), "gold": gold.tolist()})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100 sentences, 200 resamples")
    args = parser.parse_args()
    sentences, resamples = (100, 200) if args.quick else (400, 2000)
    print(machine_header("Paired bootstrap: vectorised against a per-resample loop"))
    print(f"sentences {sentences}, seeds 3, resamples {resamples}\n")

    rng = np.random.default_rng(0)
    gold = rng.integers(0, 3, sentences)
    a = [noisy(gold, 0.6, rng) for _ in range(3)]
    b = [noisy(gold, 0.55, rng) for _ in range(3)]
    with timer() as fast_time:
        fast = paired_bootstrap(gold, a, b, n=resamples, n_labels=3)
    with timer() as loop_time:
        low, high = loop_bootstrap(gold, a, b, resamples)
    same = abs(low - fast.low) < 1e-12 and abs(high - fast.high) < 1e-12
    print(table(["way", "seconds", "interval", "same interval"], [
        ["deftx.analysis.stats.paired_bootstrap", fast_time(), f"[{fast.low:.4f}, {fast.high:.4f}]", "-"],
        ["loop over resamples (classification_metrics)", loop_time(), f"[{low:.4f}, {high:.4f}]", str(same)],
    ]))
    print(f"\nspeed-up: {loop_time() / fast_time():.0f}x\n")

    data = records(sentences, rng)
    with timer() as table_time:
        [paired], _ = build_paired_tables(data, resamples=resamples)
    print(table(["--paired table", "pairs", "languages", "seconds"],
                [["5 languages x 3 seeds x 4 systems", len(paired.pairs), 5, table_time()]]))
    if not same:
        sys.exit("the two ways disagree")


if __name__ == "__main__":
    main()
