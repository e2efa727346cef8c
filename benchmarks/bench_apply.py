"""Applying, reverting, composing, saving and loading SFTs at XLM-R base scale, with K = 7,667,712
(a language SFT) and K = 14,155,776 (a task SFT), and the SFT's size on disk against K x (index +
value) bytes.

The model is ``AutoModelForMaskedLM`` built from XLM-R base's config (random weights; 277,414,656
maskable parameters). The SFTs hold K positions drawn uniformly over all maskable parameters, with
Gaussian values. Reference figures from the same run: a dense add of a full difference to every
maskable parameter (what applying a dense fine-tuning costs) and the size of that dense difference.

    python benchmarks/bench_apply.py            # ~25 s on 2 cores, ~5 GiB of memory
    python benchmarks/bench_apply.py --quick    # 2 layers, a 25,000-row embedding
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import K_LANG, K_TASK, PeakMemory, machine_header, mib, table, timer, xlmr_base_config  # noqa: E402


def random_sft(maskable: dict, k: int, seed: int, fingerprint: str, kind: str):
    """A SparseDiff with ``k`` uniformly drawn positions over all maskable parameters."""
    import torch

    from deftx.sft.diff import SparseDiff

    g = torch.Generator().manual_seed(seed)
    sizes = torch.tensor([p.numel() for p in maskable.values()])
    total = int(sizes.sum())
    drawn = torch.unique(torch.randint(total, (int(k * 1.1) + 1000,), generator=g))
    assert drawn.numel() >= k
    positions = drawn[torch.randperm(drawn.numel(), generator=g)[:k]].sort().values
    values = torch.randn(k, generator=g) * 1e-3
    ends = torch.cumsum(sizes, 0)
    cuts = torch.searchsorted(positions, ends).tolist()
    entries, shapes, begin, offset = {}, {}, 0, 0
    for (name, p), cut, end in zip(maskable.items(), cuts, ends.tolist()):
        if cut > begin:
            entries[name] = (positions[begin:cut] - offset, values[begin:cut].clone())
        shapes[name] = tuple(p.shape)
        begin, offset = cut, end
    shapes = {n: s for n, s in shapes.items() if n in entries}
    return SparseDiff(entries, shapes, {}, {"kind": kind, "base_fingerprint": fingerprint, "method": "lt-sft"})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 layers and a 25,000-row embedding")
    args = parser.parse_args()

    import torch

    from deftx.model import fingerprint, maskable_parameters, model_from_config
    from deftx.sft.manifest import DIFF_FILE
    from deftx.sft.diff import SparseDiff, compose

    config = xlmr_base_config(**(dict(num_hidden_layers=2, vocab_size=25_000) if args.quick else {}))
    print(machine_header("Apply, revert, compose, save and load SFTs"))
    model = model_from_config(config, "mlm", seed=0)
    fp = fingerprint(model)
    maskable = maskable_parameters(model)
    n = sum(p.numel() for p in maskable.values())
    scale = n / 277_414_656
    k_lang, k_task = (round(K_LANG * scale), round(K_TASK * scale)) if args.quick else (K_LANG, K_TASK)
    print(f"model     AutoModelForMaskedLM from XLM-R base's config{' (quick: 2 layers, vocab 25,000)' if args.quick else ''}: "
          f"{n:,} maskable parameters ({mib(n * 4):,.0f} MiB in float32)")
    print(f"load      {os.getloadavg()[0]:.2f} (1-min load average at the start)\n", flush=True)

    original = {name: p.detach().clone() for name, p in maskable.items()}
    sfts = {"language": random_sft(maskable, k_lang, 1, fp, "language"),
            "task": random_sft(maskable, k_task, 2, fp, "task")}

    def measure(label, fn):
        with PeakMemory() as mem, timer() as elapsed:
            out = fn()
        return out, elapsed(), mem.extra

    rows, size_rows, checks = [], [], []
    # reference: a dense add over every maskable parameter
    dense = {name: torch.randn(p.shape) * 1e-3 for name, p in maskable.items()}

    def dense_add(sign: float):
        with torch.no_grad():
            for name, p in maskable.items():
                p.add_(dense[name], alpha=sign)

    _, t_dense, m_dense = measure("dense", lambda: dense_add(1.0))
    measure("dense back", lambda: dense_add(-1.0))
    del dense
    with torch.no_grad():
        for name, p in maskable.items():
            p.copy_(original[name])
    rows.append(["dense add of a full difference (reference)", f"{n:,}", t_dense, 1.0, mib(m_dense)])

    def restored() -> tuple[float, int]:
        worst, changed = 0.0, 0
        for name, p in maskable.items():
            diff = (p.detach() - original[name]).abs()
            worst = max(worst, float(diff.max()))
            changed += int((diff != 0).sum())
        return worst, changed

    with tempfile.TemporaryDirectory(prefix="deftx-bench-") as tmp:
        for kind, sft in sfts.items():
            k = sft.n_entries
            _, t_apply, m_apply = measure("apply", lambda: sft.apply(model))
            _, t_revert, m_revert = measure("revert", lambda: sft.revert(model))
            worst, changed = restored()
            checks.append(f"{kind} SFT: apply then revert: max |change| {worst:.3g}; "
                          f"{changed:,} of its {k:,} entries not bit-identical (float rounding of (w + d) - d)")
            with torch.no_grad():  # start the next measurement from the exact weights
                for name, p in maskable.items():
                    p.copy_(original[name])
            directory = Path(tmp) / kind
            _, t_save, m_save = measure("save", lambda: sft.save(directory))
            loaded, t_load, m_load = measure("load", lambda: SparseDiff.load(directory))
            same = all(torch.equal(loaded.entries[nm][0], sft.entries[nm][0]) and
                       torch.equal(loaded.entries[nm][1], sft.entries[nm][1]) for nm in sft.entries)
            checks.append(f"{kind} SFT: loaded entries equal the saved ones: {'yes' if same else 'NO'}")
            for label, t, m in (("apply", t_apply, m_apply), ("revert", t_revert, m_revert),
                                ("save (with sha256)", t_save, m_save), ("load (verifying sha256)", t_load, m_load)):
                rows.append([f"{label}, {kind} SFT", f"{k:,}", t, t / t_dense, mib(m)])
            diff_bytes = (directory / DIFF_FILE).stat().st_size
            dir_bytes = sum(f.stat().st_size for f in directory.iterdir())
            size_rows.append([f"{kind} SFT", f"{k:,}", mib(k * 8), mib(diff_bytes), diff_bytes / (k * 8),
                              mib(dir_bytes), dir_bytes / (n * 4)])
            del loaded

        composed, t_compose, m_compose = measure("compose", lambda: compose([sfts["language"], sfts["task"]]))
        shared = sfts["language"].overlap(sfts["task"])["shared"]
        rows.append(["compose language + task", f"{composed.n_entries:,}", t_compose, t_compose / t_dense, mib(m_compose)])
        _, t_apply_c, m_apply_c = measure("apply composed", lambda: composed.apply(model))
        rows.append(["apply composed", f"{composed.n_entries:,}", t_apply_c, t_apply_c / t_dense, mib(m_apply_c)])
        _, t_revert_c, m_revert_c = measure("revert composed", lambda: composed.revert(model))
        rows.append(["revert composed", f"{composed.n_entries:,}", t_revert_c, t_revert_c / t_dense, mib(m_revert_c)])
        checks.append(f"composed: {composed.n_entries:,} entries = {sfts['language'].n_entries:,} + "
                      f"{sfts['task'].n_entries:,} - {shared:,} shared: "
                      f"{'yes' if composed.n_entries == sfts['language'].n_entries + sfts['task'].n_entries - shared else 'NO'}")

    print(table(["operation", "entries", "seconds", "x dense add", "peak extra MiB"], rows))
    print()
    print(table(["SFT", "K", "K x (4 + 4 B) MiB", "diff.safetensors MiB", "file / (K x 8 B)", "SFT directory MiB",
                 "directory / dense diff"], size_rows))
    print()
    for line in checks:
        print(line)
    print(f"load      {os.getloadavg()[0]:.2f} (1-min load average at the end)")


if __name__ == "__main__":
    main()
