#!/usr/bin/env bash
# The language-SFT science on one GPU, within a time budget: NusaX Part 2 (test) and the learning curve (valid).
#
# Runs, side by side, as `deftx transfer` experiments in parallel worker processes (all on the one GPU):
#   part2      ace,ban,bjn,mad,min test: LT-SFT, DeFT-X (energy:0.9), no lang SFT, full FT, and the control
#              (jav's language SFT in place of the target's); language SFTs of P2_STEPS + P2_STEPS masked-LM
#              steps of P2_BATCH x P2_LENGTH tokens over all of each language's text, task SFTs on all of SmSA
#              train (9,974 examples after the NusaX filter), one seed, bf16 autocast. Then the same SFTs on
#              NusaX valid (evaluations only).
#   curve-B    the learning curve on NusaX valid (mad, min; control jav; 2 task seeds, LT-SFT, the `quick`
#              settings: 16 x 64-token batches, 2,000 text lines, 3,000 task examples, float32) for each
#              budget B in CURVE_STEPS.
# Every experiment stops at BUDGET seconds (SIGTERM: trainings checkpoint); running the script again resumes
# from the runs directory. Then it writes the tables (and the learning-curve plot) to OUT_DIR.
#
#   DEFTX_MODEL=../shared/models/me5-small-mlm DEFTX_DATA_DIR=../shared/data bash benchmarks/gpu_science.sh
#   # a CPU try-out in about two minutes:
#   PRESET=smoke P2_STEPS=2 CURVE_STEPS="2 3" TASK_EXAMPLES=32 P2_BATCH=4 P2_LENGTH=32 P2_PRECISION=no \
#     JOBS_PART2=2 JOBS_CURVE=1 BUDGET=600 bash benchmarks/gpu_science.sh
set -uo pipefail
cd "$(dirname "$0")/.."

DEFTX=${DEFTX:-deftx}
RUNS=${RUNS:-runs/gpu}
OUT_DIR=${OUT_DIR:-$RUNS/report}
BUDGET=${BUDGET:-300}                  # seconds for the trainings of this call
PRESET=${PRESET:-quick}
P2_STEPS=${P2_STEPS:-2000}
P2_BATCH=${P2_BATCH:-32}
P2_LENGTH=${P2_LENGTH:-128}
P2_PRECISION=${P2_PRECISION:-bf16}
TASK_EXAMPLES=${TASK_EXAMPLES:-0}      # 0: all of SmSA train
CURVE_STEPS=${CURVE_STEPS:-300 1000 3000}
JOBS_PART2=${JOBS_PART2:-6}
JOBS_CURVE=${JOBS_CURVE:-2}
SAVE_EVERY=${SAVE_EVERY:-0}           # checkpoints inside a phase (0: only at the end of phase 1 and on SIGTERM)
: "${DEFTX_MODEL:?set DEFTX_MODEL to the base model (a directory or hub id)}"
: "${DEFTX_DATA_DIR:?set DEFTX_DATA_DIR to a data root laid out like ../shared/data}"
export DEFTX_MODEL DEFTX_DATA_DIR PYTHONUNBUFFERED=1
mkdir -p "$RUNS" "$OUT_DIR"

part2=(--targets ace,ban,bjn,mad,min --control-lang jav --methods lt-sft,deftx --baselines no-lang-sft,full-ft
       --preset "$PRESET" --lang-steps "$P2_STEPS" --lang-set "batch_size=$P2_BATCH" --lang-set "max_length=$P2_LENGTH"
       --lang-set max_examples=0 --lang-set "mixed_precision=$P2_PRECISION" --task-max-examples "$TASK_EXAMPLES"
       --task-set "mixed_precision=$P2_PRECISION" --seed 0 --runs-dir "$RUNS/part2" --jobs "$JOBS_PART2" --save-every "$SAVE_EVERY" --json)
curve() {  # the learning-curve experiment at $1 steps per phase
  local extra=()
  [ "$PRESET" = quick ] || extra=(--task-max-examples "${TASK_EXAMPLES:-32}")
  echo --targets mad,min --control-lang jav --methods lt-sft --baselines no-lang-sft --preset "$PRESET" \
    --lang-steps "$1" --lang-seed 0 --seed 0 --seed 1 --split valid --runs-dir "$RUNS/curve-$1" \
    --jobs "$JOBS_CURVE" --save-every "$SAVE_EVERY" --json "${extra[@]}"
}

started=$(date +%s)
echo "gpu_science: budget ${BUDGET}s, runs in $RUNS, started $(date -u +%FT%TZ)" >&2
pids=()
( timeout --signal=TERM --kill-after=90 "$BUDGET" $DEFTX transfer "${part2[@]}" --split test \
    > "$OUT_DIR/part2-test.json" 2> "$OUT_DIR/part2.log" \
  && timeout --signal=TERM --kill-after=30 $((BUDGET - ($(date +%s) - started))) \
    $DEFTX transfer "${part2[@]}" --split valid > "$OUT_DIR/part2-valid.json" 2>> "$OUT_DIR/part2.log" ) &
pids+=($!)
for steps in $CURVE_STEPS; do
  # shellcheck disable=SC2046
  timeout --signal=TERM --kill-after=90 "$BUDGET" $DEFTX transfer $(curve "$steps") \
    > "$OUT_DIR/curve-$steps.json" 2> "$OUT_DIR/curve-$steps.log" &
  pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid"; done
echo "gpu_science: experiments stopped after $(( $(date +%s) - started ))s" >&2

curve_dirs=()
for steps in $CURVE_STEPS; do curve_dirs+=(--runs-dir "$RUNS/curve-$steps"); done
{
  echo "## Part 2: NusaX test"; $DEFTX results --runs-dir "$RUNS/part2" --split test --languages ace,ban,bjn,mad,min
  echo; echo "## Part 2: paired differences (test)"; $DEFTX results --runs-dir "$RUNS/part2" --split test --paired
  echo; echo "## Part 2 SFTs on NusaX valid"; $DEFTX results --runs-dir "$RUNS/part2" --split valid
  echo; echo "## Learning curve (valid)"; $DEFTX results "${curve_dirs[@]}" --split valid --curve
} > "$OUT_DIR/tables.md" 2> "$OUT_DIR/tables.log"
$DEFTX results "${curve_dirs[@]}" --split valid --curve --plot "$OUT_DIR/learning-curve.png" >> "$OUT_DIR/tables.log" 2>&1
cat "$OUT_DIR/tables.md"
echo "gpu_science: done after $(( $(date +%s) - started ))s; tables in $OUT_DIR" >&2
