"""bf16 autocast against float32: does the quality of language and task SFTs hold?

Trains the same SFTs twice, once with ``--mixed-precision no`` (float32) and once with ``bf16``
(autocast of the forward and backward passes; weights, the phase-1 difference and the SFT stay
float32), through the ``deftx`` command line as a user runs it, for two seeds each:

* language SFTs (DeFT-X, the ``quick`` preset, Madurese text, phases of 60 and of 300 masked-LM steps):
  the held-out masked-LM accuracy and loss each run records at its end (the same held-out blocks for
  both precisions of a seed);
* task SFTs (DeFT-X, the ``quick`` preset, SmSA): SmSA valid macro-F1 (recorded by the run) and NusaX
  valid macro-F1 in Indonesian and the five target languages (``deftx evaluate``, no language SFT).

Parity, per figure: the mean bf16 - float32 difference over the seeds lies within the seed spread (the
larger of the two precisions' seed-to-seed differences). Runs go side by side (``--jobs``, one thread
each); each precision pair of a setting runs at the same time, so that both meet the same load, and
their wall times are printed too. Finished runs are kept under ``--out`` and skipped when the script
is run again (an interrupted run resumes from its checkpoint):

    python benchmarks/bench_bf16_parity.py                        # ~45 min on 2 cores with AMX/AVX512-BF16
    python benchmarks/bench_bf16_parity.py --quick                # smoke-size try-out, ~2 min
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import SHARED, machine_header, table  # noqa: E402

PRECISIONS = ("no", "bf16")
NUSAX_LANGS = ("ind", "ace", "ban", "bjn", "mad", "min")


def deftx() -> str:
    local = Path(sys.executable).parent / "deftx"
    return str(local) if local.exists() else "deftx"


def jobs_for(args) -> list[dict]:
    """Every training run, each precision pair next to each other."""
    jobs = []
    for steps in args.lang_steps:
        for seed in args.seeds:
            for precision in PRECISIONS:
                name = f"lang-{args.lang}-{steps}-s{seed}-{precision}"
                argv = ["train-lang", "--lang", args.lang, "--method", "deftx", "--preset", args.preset,
                        "--phase1-steps", str(steps), "--phase2-steps", str(steps), "--max-lines", str(args.max_lines),
                        "--seed", str(seed), "--mixed-precision", precision, "--workers", "1"]
                jobs.append(dict(name=name, kind="lang", steps=steps, seed=seed, precision=precision, argv=argv))
    for seed in args.seeds:
        for precision in PRECISIONS:
            name = f"task-smsa-s{seed}-{precision}"
            argv = ["train-task", "--task", "smsa", "--source-lang", "ind", "--method", "deftx", "--preset",
                    args.preset, "--seed", str(seed), "--mixed-precision", precision]
            jobs.append(dict(name=name, kind="task", seed=seed, precision=precision, argv=argv))
    return jobs


def run_job(job: dict, args) -> dict:
    """Train one SFT (resuming an interrupted run), then evaluate it; the result is cached as JSON."""
    result_file = args.out / f"{job['name']}.json"
    if result_file.exists():
        return json.loads(result_file.read_text())
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", DEFTX_MODEL=str(args.model),
               DEFTX_DATA_DIR=str(args.data_dir))
    command = [deftx(), *job["argv"], "--runs-dir", str(args.out / "runs"), "--run-id", job["name"], "--resume",
               "--json", "--quiet"]
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{job['name']} failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    trained = json.loads(done.stdout)
    result = dict(job, wall_s=round(seconds, 1), final_eval=trained["final_eval"])
    if job["kind"] == "task":
        result["nusax_valid"] = {}
        for lang in NUSAX_LANGS:
            evaluated = subprocess.run(
                [deftx(), "evaluate", "--task", "nusax-senti", "--lang", lang, "--split", "valid", "--task-sft",
                 trained["sft"], "--json", "--runs-dir", str(args.out / "evals")],
                env=env, capture_output=True, text=True)
            if evaluated.returncode != 0:
                raise SystemExit(f"evaluating {job['name']} on {lang} failed: {evaluated.stderr.strip()[-2000:]}")
            result["nusax_valid"][lang] = json.loads(evaluated.stdout)["metrics"]["macro_f1"]
    tmp = result_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=1))
    tmp.replace(result_file)
    print(f"  done {job['name']}: {seconds:.0f} s", file=sys.stderr, flush=True)
    return result


def figures(result: dict) -> dict[str, float]:
    """The quality figures of one run (percent)."""
    final = result["final_eval"]
    if result["kind"] == "lang":
        return {f"mad held-out MLM accuracy, {result['steps']}+{result['steps']} steps": 100 * final["mlm_accuracy"],
                f"mad held-out MLM loss, {result['steps']}+{result['steps']} steps": final["mlm_loss"]}
    out = {"SmSA valid macro-F1": 100 * final["macro_f1"]}
    valid = result["nusax_valid"]
    out["NusaX valid macro-F1, mean of 6 languages"] = 100 * statistics.mean(valid.values())
    for lang in NUSAX_LANGS:
        out[f"NusaX valid macro-F1, {lang}"] = 100 * valid[lang]
    return out


def parity_table(results: list[dict], seeds: list[int]) -> tuple[list[list[str]], int, int]:
    by = {(r["name"].rsplit("-", 2)[0], r["seed"], r["precision"]): figures(r) for r in results}
    rows, met, total = [], 0, 0
    for setting in dict.fromkeys(key[0] for key in by):
        names = list(by[(setting, seeds[0], "no")])
        for name in names:
            value = {(s, p): by[(setting, s, p)][name] for s in seeds for p in PRECISIONS}
            diffs = [value[(s, "bf16")] - value[(s, "no")] for s in seeds]
            mean_diff = statistics.mean(diffs)
            spread = max(max(value[(s, p)] for s in seeds) - min(value[(s, p)] for s in seeds) for p in PRECISIONS)
            ok = abs(mean_diff) <= spread
            per_lang = name.startswith("NusaX valid macro-F1, ") and not name.endswith("languages")
            if not per_lang:
                met, total = met + ok, total + 1
            rows.append([name, " / ".join(f"{value[(s, 'no')]:.2f}" for s in seeds),
                         " / ".join(f"{value[(s, 'bf16')]:.2f}" for s in seeds),
                         " / ".join(f"{d:+.2f}" for d in diffs), f"{mean_diff:+.2f}", f"{spread:.2f}",
                         ("yes" if ok else "NO") + (" (per language)" if per_lang else "")])
    return rows, met, total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=SHARED / "models" / "me5-small-mlm")
    parser.add_argument("--data-dir", type=Path, default=SHARED / "data")
    parser.add_argument("--out", type=Path, default=Path("runs/bf16-parity"))
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--lang", default="mad")
    parser.add_argument("--lang-steps", default="60,300", help="masked-LM steps per phase, comma-separated")
    parser.add_argument("--max-lines", type=int, default=20000, help="text lines of the language SFTs (all of mad)")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="smoke preset, 4-step phases: a try-out")
    args = parser.parse_args()
    args.seeds = [int(s) for s in args.seeds.split(",")]
    args.lang_steps = [int(s) for s in args.lang_steps.split(",")]
    args.preset = "quick"
    if args.quick:
        args.preset, args.lang_steps = "smoke", [4]
        args.out = args.out.with_name(args.out.name + "-quick")
    args.out.mkdir(parents=True, exist_ok=True)
    print(machine_header("bf16 autocast against float32: quality parity of language and task SFTs"))
    from deftx.training.distributed import cpu_has_fast_bf16

    print(f"cpu bf16  {'AVX512-BF16 or AMX: bf16 matrix products in hardware' if cpu_has_fast_bf16() else 'none: bf16 is emulated (slow) here'}")
    print(f"runs      {args.out} (preset {args.preset}, seeds {args.seeds}, {args.jobs} jobs x 1 thread)\n", flush=True)
    jobs = jobs_for(args)
    with ThreadPoolExecutor(args.jobs) as pool:
        results = list(pool.map(lambda job: run_job(job, args), jobs))
    rows, met, total = parity_table(results, args.seeds)
    print(table(["figure (%; loss in nats)", "float32 (seeds)", "bf16 (seeds)", "bf16 - fp32", "mean diff",
                 "seed spread", "parity"], rows))
    print(f"\nparity    {met} of {total} figures: mean bf16 - float32 difference within the seed spread")
    by_name = {r["name"]: r for r in results}
    rows = []
    for r in results:
        if r["precision"] != "no":
            continue
        other = by_name[r["name"][: -len("-no")] + "-bf16"]
        rows.append([r["name"][: -len("-no")], f"{r['wall_s']:.0f}", f"{other['wall_s']:.0f}",
                     f"{other['wall_s'] / r['wall_s']:.2f}"])
    print("\nwall time of each run (s; the pair side by side, one thread each; the task runs include training only):")
    print(table(["run", "float32", "bf16", "bf16 / float32"], rows))


if __name__ == "__main__":
    main()
