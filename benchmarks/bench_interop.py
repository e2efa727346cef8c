"""composable-sft interop and the interference report at XLM-R base scale: exporting a deftx SFT to
``pytorch_diff.bin``, reading it back (restricted unpickling, index-order conversion), and
``deftx overlap`` of a language SFT (K = 7,667,712) against a task SFT (K = 14,155,776).

The SFTs hold K positions drawn uniformly over XLM-R base's maskable parameters (no model is built:
the base model's name and shape checks of ``deftx import`` are not part of what is timed). Reference
from the same run: saving and loading the same SFT in deftx's own format (safetensors + sha256).

    python benchmarks/bench_interop.py            # ~1 min on 2 cores, ~2 GiB of memory
    python benchmarks/bench_interop.py --quick    # 2 layers, a 25,000-row embedding
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import K_LANG, K_TASK, PeakMemory, machine_header, mib, numel, table, timer, xlmr_base_shapes  # noqa: E402


def random_sft(shapes: dict[str, tuple[int, ...]], k: int, seed: int, kind: str):
    """A SparseDiff with ``k`` uniformly drawn positions over all parameters of ``shapes``."""
    import torch

    from deftx.sft.diff import SparseDiff

    g = torch.Generator().manual_seed(seed)
    sizes = torch.tensor([numel(s) for s in shapes.values()])
    total = int(sizes.sum())
    drawn = torch.unique(torch.randint(total, (int(k * 1.1) + 1000,), generator=g))
    positions = drawn[torch.randperm(drawn.numel(), generator=g)[:k]].sort().values
    values = torch.randn(k, generator=g) * 1e-3
    cuts = torch.searchsorted(positions, torch.cumsum(sizes, 0)).tolist()
    entries, begin, offset = {}, 0, 0
    for (name, shape), cut in zip(shapes.items(), cuts):
        if cut > begin:
            entries[name] = (positions[begin:cut] - offset, values[begin:cut].clone())
        begin, offset = cut, offset + numel(shape)
    return SparseDiff(entries, {n: shapes[n] for n in entries}, {}, {"kind": kind, "method": "lt-sft"})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 layers and a 25,000-row embedding")
    args = parser.parse_args()

    import torch

    from deftx.sft.interop import decode_composable, export_composable_sft, load_composable_file
    from deftx.sft.overlap import overlap_report, read_sparse_arrays
    from deftx.sft.manifest import DIFF_FILE
    from deftx.sft.diff import SparseDiff

    shapes = xlmr_base_shapes(**(dict(layers=2, vocab=25_000) if args.quick else {}))
    n = sum(numel(s) for s in shapes.values())
    scale = n / 277_414_656
    k_lang, k_task = (round(K_LANG * scale), round(K_TASK * scale)) if args.quick else (K_LANG, K_TASK)
    print(machine_header("composable-sft export/import and the interference report"))
    print(f"shapes    XLM-R base{' (quick: 2 layers, vocab 25,000)' if args.quick else ''}: {n:,} maskable parameters")
    print(f"load      {os.getloadavg()[0]:.2f} (1-min load average at the start)\n", flush=True)
    sfts = {"language": random_sft(shapes, k_lang, 1, "language"), "task": random_sft(shapes, k_task, 2, "task")}

    def measure(fn):
        with PeakMemory() as mem, timer() as elapsed:
            out = fn()
        return out, elapsed(), mem.extra

    rows, checks = [], []
    with tempfile.TemporaryDirectory(prefix="deftx-bench-") as tmp:
        dirs = {}
        for kind, sft in sfts.items():
            k = sft.n_entries
            dirs[kind] = Path(tmp) / kind
            _, t_save, m_save = measure(lambda: sft.save(dirs[kind]))
            _, t_load, m_load = measure(lambda: SparseDiff.load(dirs[kind]))
            out = Path(tmp) / f"{kind}-composable"
            _, t_export, m_export = measure(lambda: export_composable_sft(sft, out, prefix="roberta"))
            raw, t_unpickle, m_unpickle = measure(lambda: load_composable_file(out / "pytorch_diff.bin"))
            (entries, _), t_decode, m_decode = measure(lambda: decode_composable(raw))
            same = all(torch.equal(entries[f"roberta.{name}"][0], idx) and torch.equal(entries[f"roberta.{name}"][1], v)
                       for name, (idx, v) in sft.entries.items())
            checks.append(f"{kind} SFT: export then read back gives the same indices and values: {'yes' if same else 'NO'}")
            size_bin = (out / "pytorch_diff.bin").stat().st_size
            size_own = (dirs[kind] / DIFF_FILE).stat().st_size
            for label, t, m in (("deftx save (safetensors, sha256)", t_save, m_save),
                                ("deftx load (verifying sha256)", t_load, m_load),
                                ("export to pytorch_diff.bin", t_export, m_export),
                                ("read pytorch_diff.bin (weights_only)", t_unpickle, m_unpickle),
                                ("decode (to row-major, sorted)", t_decode, m_decode)):
                rows.append([f"{label}, {kind}", f"{k:,}", t, t / t_save, mib(m)])
            rows.append([f"file size MiB: pytorch_diff.bin {mib(size_bin):,.1f} vs diff.safetensors {mib(size_own):,.1f}",
                         f"{k:,}", "", size_bin / size_own, ""])
            del raw, entries

        arrays, t_read, m_read = measure(lambda: [read_sparse_arrays(dirs[k]) for k in ("language", "task")])
        report, t_overlap, m_overlap = measure(lambda: overlap_report(arrays))
        total = report["pairs"][0]["total"]
        checks.append(f"overlap of independent uniform picks: {total['shared']:,} shared, {total['over_chance']:.3f}x "
                      f"chance (1.0 expected), sign disagreement {total['sign_disagreement']:.3f} (0.5 expected)")
        rows.append(["read both SFTs for overlap (numpy, sha256)", f"{k_lang + k_task:,}", t_read, "", mib(m_read)])
        rows.append(["overlap report (total, per type, per layer)", f"{k_lang + k_task:,}", t_overlap, "", mib(m_overlap)])

    print(table(["step", "entries", "seconds", "x deftx save", "peak extra MiB"], rows))
    print()
    for line in checks:
        print(line)


if __name__ == "__main__":
    main()
