"""Preparing a language SFT's text at scale: the cached pipeline (deftx.data.blocks) on texts of 30 MB,
300 MB and 1 GB, cold (nothing cached) and warm (the entry found), against a 1 MB text; and the time to
the first block of the same 1 GB text streamed (deftx.data.stream).

The texts are distinct by construction: the NusaWrites paragraphs of ../shared (every language),
each copy with the words of every line shuffled by a seeded generator, repeated until the size is
reached (``.bench-cache/text-<size>.txt``, made once). Every measurement runs in a fresh process, so
that its peak resident memory (``ru_maxrss``: the whole process, the tokenizer and Python included)
is its own; the figure that matters is the peak over the 1 MB text's, and whether it stays flat as
the text grows. With ``--old REV``, the in-memory pipeline of that commit (a git worktree of it) is
measured on the same texts for comparison.

    python benchmarks/bench_text_prep.py                      # 30 MB, 300 MB, 1 GB
    python benchmarks/bench_text_prep.py --sizes 30 --quick   # a try-out
    python benchmarks/bench_text_prep.py --sizes 300 --old a25b44f
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import MB, REPO, SHARED, machine_header, table  # noqa: E402

CACHE = REPO / ".bench-cache"

CHILD = r"""
import json, os, resource, sys, time
from pathlib import Path
mode, path, model, root, max_length = sys.argv[1], sys.argv[2], sys.argv[3], Path(sys.argv[4]), int(sys.argv[5])
started = time.perf_counter()
from deftx.model import load_tokenizer
tok = load_tokenizer(model)
loaded = time.perf_counter()
out = {}
if mode in ("cold", "warm"):
    from deftx.data.blocks import prepare_blocks
    from deftx.data.text import resolve_text_sources
    made = prepare_blocks(resolve_text_sources(None, files=[path]), tok, max_length=max_length, root=root)
    out = {"blocks": len(made.blocks), "tokens": made.stats.get("tokens"), "cached": made.cached}
elif mode == "stream":
    from deftx.data.stream import BlockStream
    from deftx.data.text import resolve_text_sources
    stream = BlockStream(resolve_text_sources(None, files=[path]), tok, max_length=max_length)
    held = stream.held_out()
    first, _ = next(iter(stream.blocks(seed=0)))
    out = {"held_out": len(held)}
elif mode in ("examples-cold", "examples-warm", "examples-old"):  # labelled pairs (a task SFT's data)
    from deftx.data import load_labelled_file
    data = load_labelled_file(path, "multinli")
    read = time.perf_counter()
    out["read_seconds"] = read - loaded
    if mode == "examples-old":  # the earlier commit's objective: token ids in Python lists
        from deftx.objectives import ClassificationObjective
        objective = ClassificationObjective(tok, data, max_length=max_length)
    else:
        from deftx.data.encoded import encode_labelled
        made = encode_labelled(tok, data, max_length, root=root)
        out.update(cached=made.cached, tokens=int(made.lengths.sum()))
    loaded = read
elif mode == "old":  # the in-memory pipeline of an earlier commit (PYTHONPATH points at it)
    from deftx.data.text import load_unlabelled_text
    from deftx.objectives.mlm import MaskedLMObjective
    lines, _ = load_unlabelled_text(files=[path])
    objective = MaskedLMObjective(tok, lines, max_length=max_length)
    out = {"blocks": int(objective.blocks.shape[0])}
out["seconds"] = time.perf_counter() - loaded
out["rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(out))
"""


def make_text(size_mb: int) -> Path:
    """A distinct text of about ``size_mb`` MB from NusaWrites' paragraphs, words shuffled per copy."""
    CACHE.mkdir(exist_ok=True)
    path = CACHE / f"text-{size_mb}mb.txt"
    if path.exists() and path.stat().st_size >= size_mb * MB * 0.99:
        return path
    lines = []
    for source in sorted((SHARED / "data" / "nusawrites_unlabeled").glob("*.txt")):
        lines += [line.split() for line in source.read_text(encoding="utf-8").splitlines() if line.strip()]
    rng = random.Random(0)
    tmp = path.with_suffix(".tmp")
    written = 0
    with open(tmp, "w", encoding="utf-8") as handle:
        while written < size_mb * MB:
            for words in lines:
                rng.shuffle(words)
                text = " ".join(words) + "\n"
                handle.write(text)
                written += len(text.encode())
                if written >= size_mb * MB:
                    break
    tmp.replace(path)
    return path


def make_pairs(n: int) -> Path:
    """``n`` distinct premise/hypothesis/label rows (MNLI's 393k by default) from the English XNLI dev
    and test sets, the words of both sentences shuffled per copy."""
    CACHE.mkdir(exist_ok=True)
    path = CACHE / f"pairs-{n}.tsv"
    if path.exists():
        return path
    rows = []
    for split in ("dev", "test"):
        lines = (SHARED / "data" / "english_nli" / "xnli_en" / f"{split}.tsv").read_text(encoding="utf-8").splitlines()
        rows += [line.split("\t")[:3] for line in lines[1:]]
    rng = random.Random(0)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write("premise\thypothesis\tlabel\n")
        for i in range(n):
            premise, hypothesis, label = rows[i % len(rows)]
            words = [premise.split(), hypothesis.split()]
            for w in words:
                rng.shuffle(w)
            handle.write(f"{' '.join(words[0])}\t{' '.join(words[1])}\t{label}\n")
    tmp.replace(path)
    return path


def run(mode: str, text: Path, root: Path, model: str, max_length: int, pythonpath: str | None = None) -> dict:
    env = {**os.environ, "PYTHONPATH": pythonpath or str(REPO)}
    out = subprocess.run([sys.executable, "-c", CHILD, mode, str(text), model, str(root), str(max_length)],
                         capture_output=True, text=True, env=env, timeout=4 * 3600)
    if out.returncode != 0:
        raise SystemExit(f"bench_text_prep: {mode} on {text.name} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="30,300,1024", help="text sizes in MB (default 30,300,1024)")
    parser.add_argument("--model", default=str(SHARED / "models" / "me5-small-mlm"))
    parser.add_argument("--max-length", type=int, default=256, help="block length (the paper preset's 256)")
    parser.add_argument("--old", help="also measure the in-memory pipeline of this commit (a git worktree of it)")
    parser.add_argument("--no-stream", action="store_true", help="skip the streamed time to the first block")
    parser.add_argument("--quick", action="store_true", help="30 MB only, no stream")
    parser.add_argument("--old-sizes", help="the sizes (MB) at which to measure --old (default: all; 1 GB needs about 17 GB)")
    parser.add_argument("--pairs", type=int, default=393_000,
                        help="labelled sentence pairs for the task-data measurement (MNLI's size; 0 skips it)")
    args = parser.parse_args()
    sizes = [30] if args.quick else [int(s) for s in args.sizes.split(",")]
    old_tree = None
    if args.old:
        old_tree = Path(tempfile.mkdtemp(prefix="deftx-old-"))
        subprocess.run(["git", "worktree", "add", "-q", "--detach", str(old_tree), args.old], cwd=REPO, check=True)
    root = Path(tempfile.mkdtemp(prefix="deftx-bench-cache-"))
    rows = []
    try:
        base = run("cold", make_text(1), root, args.model, args.max_length)
        rows.append(["1 MB", "cached, cold", f"{base['seconds']:.1f}", f"{base['tokens'] / base['seconds']:,.0f}",
                     f"{base['rss_mb']:,.0f}", "0"])
        print(f"  1 MB baseline: {base}", file=sys.stderr, flush=True)
        for size in sizes:
            text = make_text(size)
            for mode in ("cold", "warm"):
                r = run(mode, text, root, args.model, args.max_length)
                rate = f"{r['tokens'] / r['seconds']:,.0f}" if mode == "cold" else "-"
                rows.append([f"{size} MB", f"cached, {mode}", f"{r['seconds']:.1f}", rate, f"{r['rss_mb']:,.0f}",
                             f"{r['rss_mb'] - base['rss_mb']:,.0f}"])
                print(f"  {size} MB {mode}: {r}", file=sys.stderr, flush=True)
            if old_tree is not None and (not args.old_sizes or str(size) in args.old_sizes.split(",")):
                r = run("old", text, root, args.model, args.max_length, pythonpath=str(old_tree))
                rows.append([f"{size} MB", f"in memory ({args.old})", f"{r['seconds']:.1f}", "-", f"{r['rss_mb']:,.0f}",
                             f"{r['rss_mb'] - base['rss_mb']:,.0f}"])
                print(f"  {size} MB old: {r}", file=sys.stderr, flush=True)
        if not args.quick and not args.no_stream:
            text = make_text(max(sizes))
            r = run("stream", text, root, args.model, args.max_length)
            rows.append([f"{max(sizes)} MB", "streamed: first block", f"{r['seconds']:.1f}", "-", f"{r['rss_mb']:,.0f}",
                         f"{r['rss_mb'] - base['rss_mb']:,.0f}"])
        if args.pairs and not args.quick:
            pairs = make_pairs(args.pairs)
            modes = ["examples-cold", "examples-warm"] + (["examples-old"] if old_tree is not None else [])
            for mode in modes:
                r = run(mode, pairs, root, args.model, 128, pythonpath=str(old_tree) if mode == "examples-old" else None)
                rate = f"{r['tokens'] / r['seconds']:,.0f}" if mode == "examples-cold" else "-"
                label = {"examples-cold": "cached, cold", "examples-warm": "cached, warm",
                         "examples-old": f"in memory ({args.old})"}[mode]
                rows.append([f"{args.pairs:,} pairs", label + f" (+{r['read_seconds']:.0f} s reading)",
                             f"{r['seconds']:.1f}", rate, f"{r['rss_mb']:,.0f}", f"{r['rss_mb'] - base['rss_mb']:,.0f}"])
                print(f"  pairs {mode}: {r}", file=sys.stderr, flush=True)
    finally:
        import shutil

        shutil.rmtree(root, ignore_errors=True)
        if old_tree is not None:
            subprocess.run(["git", "worktree", "remove", "--force", str(old_tree)], cwd=REPO)
    print(machine_header("Text preparation: cached and streamed", ["python", *sys.argv]))
    print()
    print(table(["text", "pipeline", "seconds", "tokens/s", "peak RSS (MB)", "over the 1 MB text (MB)"], rows))


if __name__ == "__main__":
    main()
