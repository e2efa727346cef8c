"""Run directories for the dashboard tests, written the way the training commands write them.

Everything is deterministic (fixed times, no randomness) so that snapshots are stable; the clock the
dashboard gets in tests is :data:`NOW`.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

NOW = datetime(2026, 11, 25, 10, 30, 0, tzinfo=timezone.utc).timestamp()
DEAD_PID = 99_999_999  # above any pid_max: never a live process
MODEL = "../shared/models/me5-small-mlm"


def clock() -> float:
    return NOW


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="seconds")


def at(hhmmss: str, day: int = 25) -> float:
    h, m, s = (int(x) for x in hhmmss.split(":"))
    return datetime(2026, 11, day, h, m, s, tzinfo=timezone.utc).timestamp()


def line(obj: dict[str, Any]) -> str:
    return json.dumps(obj) + "\n"


def loss_at(phase: int, step: int) -> float:
    base = 2.6 if phase == 1 else 2.0
    return round(base * math.exp(-step / 250) + 0.4 + 0.05 * math.sin(step / 7), 4)


def train_events(phase: int, total: int, start: float, seconds_per_step: float, upto: int | None = None, every: int = 10):
    """A ``phase`` event then a ``train`` line every ``every`` steps up to ``upto`` (default: the end)."""
    events = [{"time": start, "event": "phase", "phase": phase, "total_steps": total}]
    for step in range(every, (upto if upto is not None else total) + 1, every):
        events.append(
            {
                "time": round(start + step * seconds_per_step, 3),
                "event": "train",
                "phase": phase,
                "step": step,
                "total_steps": total,
                "loss": loss_at(phase, step),
                "lr": round(5e-5 * (1 - step / total), 10),
                "throughput": round(32.0 + 4 * math.sin(step / 40), 2),
                "l1": 0.001,
            }
        )
    return events


MATRICES = (
    ("attention.self.query", (384, 384)),
    ("attention.self.key", (384, 384)),
    ("attention.self.value", (384, 384)),
    ("attention.output.dense", (384, 384)),
    ("intermediate.dense", (1536, 384)),
    ("output.dense", (384, 1536)),
)


def denoise_list(layers: int = 2) -> list[dict[str, Any]]:
    out = [{"name": "embeddings.word_embeddings.weight", "shape": [250037, 384], "rank": 120, "energy_kept": 0.9}]
    for layer in range(layers):
        for i, (name, shape) in enumerate(MATRICES):
            out.append(
                {
                    "name": f"encoder.layer.{layer}.{name}.weight",
                    "shape": list(shape),
                    "rank": 40 + 10 * i + 5 * layer,
                    "energy_kept": round(0.90 + 0.001 * i + 0.002 * layer, 4),
                }
            )
    return out


def selection_event(method: str, when: float) -> dict[str, Any]:
    event = {
        "time": when,
        "event": "selection",
        "method": method,
        "k": 1_500_000,
        "maskable": 45_000_000,
        "density": 0.0333,
    }
    if method == "deftx":
        event.update(rank_rule="energy:0.9", tail_keep=0.0, denoise=denoise_list(), overlap_with_magnitude=0.62)
    return event


def write_run(
    runs: Path,
    run_id: str,
    *,
    kind: str,
    method: str | None,
    languages: dict[str, str],
    task: str | None = None,
    status: str = "finished",
    started: float,
    ended: float | None = None,
    total_steps: dict[str, int] | None = None,
    pid: int | None = None,
    events: list[dict[str, Any]] = (),
    raw_tail: str = "",
    seed: int = 0,
    error: str | None = None,
    results: dict[str, Any] | None = None,
) -> Path:
    path = runs / run_id
    path.mkdir(parents=True, exist_ok=True)
    record = {
        "format_version": 1,
        "run_id": run_id,
        "kind": kind,
        "method": method,
        "languages": languages,
        "task": task,
        "base_model": MODEL,
        "seed": seed,
        "command": ["deftx", kind],
        "config": {"k": 1_500_000, "preset": "cpu"},
        "status": status,
        "started_at": iso(started),
        "ended_at": iso(ended),
        "total_steps": total_steps or {},
        "outputs": {"sft": "sft"} if kind in ("language", "task") else {},
        "summary": {},
        "error": error,
        "library_version": "0.1.0",
        "pid": pid if pid is not None else DEAD_PID,
    }
    (path / "run.json").write_text(json.dumps(record, indent=2))
    (path / "metrics.jsonl").write_text("".join(line(e) for e in events) + raw_tail)
    if results is not None:
        (path / "results.json").write_text(json.dumps(results, indent=2))
    return path


def training_run(
    runs: Path,
    run_id: str,
    *,
    kind: str,
    method: str,
    lang: str,
    start: float,
    status: str = "finished",
    task: str | None = None,
    upto_phase2: int | None = None,
    pid: int | None = None,
    raw_tail: str = "",
    error: str | None = None,
) -> Path:
    """A two-phase run of 400 + 400 steps at 0.8 steps/s; ``upto_phase2`` stops phase 2 early."""
    spp = 1.25  # seconds per step
    events = train_events(1, 400, start, spp)
    if kind == "task":
        events.append({"time": start + 400 * spp, "event": "eval", "phase": 1, "step": 400, "metrics": {"accuracy": 0.78, "macro_f1": 0.74}})
    p2_start = start + 400 * spp + 10
    events.append(selection_event(method, p2_start - 5))
    events += train_events(2, 400, p2_start, spp, upto=upto_phase2)
    finished = status in ("finished",)
    if kind == "task" and finished:
        events.append({"time": p2_start + 400 * spp, "event": "eval", "phase": 2, "step": 400, "metrics": {"accuracy": 0.81, "macro_f1": 0.79}})
    if finished:
        events.append({"time": p2_start + 400 * spp + 1, "event": "done", "summary": {"entries": 1_500_000}})
    last_time = events[-1]["time"]
    languages = {"source": lang} if kind == "task" else {"target": lang}
    return write_run(
        runs,
        run_id,
        kind=kind,
        method=method,
        languages=languages,
        task=task,
        status=status,
        started=start,
        ended=None if status == "running" else last_time + 2,
        total_steps={"phase1": 400, "phase2": 400},
        pid=pid,
        events=events,
        raw_tail=raw_tail,
        error=error,
    )


# Macro-F1 per (system, language), before a small per-seed offset.
SCORES = {
    "lt-sft": {"ace": 0.652, "ban": 0.618, "bjn": 0.701},
    "deftx": {"ace": 0.671, "ban": 0.612, "bjn": 0.724},
    "no-lang-sft": {"ace": 0.580, "ban": 0.561, "bjn": 0.640},
    "full-ft": {"ace": 0.601, "ban": 0.570, "bjn": 0.655},
}
SEEDS = {"lt-sft": (0, 1, 2), "deftx": (0, 1, 2), "no-lang-sft": (0, 1), "full-ft": (0,)}
SEED_OFFSET = {0: 0.0, 1: 0.012, 2: -0.009}


def result_record(system: str, lang: str, seed: int, value: float, *, task: str = "nusax-senti", model: str = MODEL,
                  metric: str = "macro_f1", created: str = "2026-11-24T12:00:00+00:00", run_id: str = "") -> dict[str, Any]:
    return {
        "format_version": 1,
        "run_id": run_id,
        "task": task,
        "language": lang,
        "source_language": "ind",
        "split": "test",
        "system": system,
        "method": system if system in ("lt-sft", "deftx") else None,
        "base_model": model,
        "seed": seed,
        "settings": {"k_lang": 1_500_000, "k_task": 2_000_000, "rank_rule": "energy:0.9", "tail_keep": 0.0, "preset": "cpu"},
        "metric": metric,
        "metrics": {
            "accuracy": round(value + 0.02, 4),
            "macro_f1": round(value, 4),
            "n": 400,
            "per_class": {
                "negative": {"precision": 0.7, "recall": 0.8, "f1": 0.75, "support": 153},
                "neutral": {"precision": 0.5, "recall": 0.4, "f1": 0.44, "support": 96},
                "positive": {"precision": 0.72, "recall": 0.7, "f1": 0.71, "support": 151},
            },
        },
        "task_sft": "runs/x/sft",
        "lang_sft": "runs/y/sft",
        "created_at": created,
    }


COLLAPSED = ("full-ft", "ban")  # (system, language) whose evaluation predicts one class too rarely


def evaluation_runs(runs: Path, *, second_task: bool = True) -> list[Path]:
    paths = []
    minute = 0
    for system, seeds in SEEDS.items():
        for lang, base in SCORES[system].items():
            for seed in seeds:
                minute += 1
                run_id = f"20261124-{12 + minute // 60:02d}{minute % 60:02d}00-evaluation-{system}-{lang}-s{seed}"
                value = round(base + SEED_OFFSET[seed], 4)
                started = at(f"{12 + minute // 60:02d}:{minute % 60:02d}:00", day=24)
                results = result_record(system, lang, seed, value, run_id=run_id)
                if (system, lang) == COLLAPSED:  # a classifier that never predicts neutral
                    results["metrics"].update(prediction_shares={"negative": 0.55, "neutral": 0.0, "positive": 0.45},
                                              collapsed_classes=["neutral"])
                paths.append(
                    write_run(
                        runs, run_id, kind="evaluation", method=system, languages={"target": lang, "source": "ind"},
                        task="nusax-senti", started=started, ended=started + 30, seed=seed,
                        events=[{"time": started + 30, "event": "done", "summary": {"macro_f1": value}}],
                        results=results,
                    )
                )
    if second_task:
        for system, value in (("lt-sft", 0.412), ("deftx", 0.431)):
            run_id = f"20261124-080000-evaluation-{system}-quy-anli"
            started = at("08:00:00", day=24)
            paths.append(
                write_run(
                    runs, run_id, kind="evaluation", method=system, languages={"target": "quy", "source": "en"},
                    task="americasnli", started=started, ended=started + 60,
                    results=result_record(system, "quy", 0, value, task="americasnli", model="xlm-roberta-base",
                                          metric="accuracy", run_id=run_id),
                )
            )
    return paths


RUNNING_ID = "20261125-101500-language-deftx-quy"
CORRUPT_ID = "20261125-100500-broken-run"
BAD_LINES_ID = "20261125-100000-task-deftx-ind"


def make_runs_dir(root: Path, *, evaluations: bool = True) -> Path:
    """The fixture runs directory: every kind, method and status, and two broken runs."""
    runs = root / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    # A DeFT-X language run in phase 2 (step 200 of 400), still running in this process, whose
    # last line is half written.
    training_run(
        runs, RUNNING_ID, kind="language", method="deftx", lang="quy", start=at("10:15:00"), status="running",
        upto_phase2=200, pid=os.getpid(), raw_tail='{"time": 1, "event": "train", "phase": 2, "st',
    )
    # run.json is not JSON at all.
    broken = runs / CORRUPT_ID
    broken.mkdir()
    (broken / "run.json").write_text('{"run_id": "20261125-100500-broken-run", "kind": "langu')
    (broken / "metrics.jsonl").write_text("")
    # A finished task run with two lines that are not JSON in the middle of its metrics.
    path = training_run(runs, BAD_LINES_ID, kind="task", method="deftx", lang="ind", task="smsa", start=at("09:45:00"))
    lines = (path / "metrics.jsonl").read_text().splitlines(keepends=True)
    lines.insert(5, "this is not json\n")
    lines.insert(9, "[1, 2, 3]\n")
    (path / "metrics.jsonl").write_text("".join(lines))
    training_run(runs, "20261125-093000-language-deftx-ace", kind="language", method="deftx", lang="ace", start=at("09:10:00"))
    training_run(runs, "20261125-090000-task-lt-sft-ind", kind="task", method="lt-sft", lang="ind", task="smsa", start=at("08:40:00"))
    training_run(runs, "20261125-083000-language-lt-sft-ace", kind="language", method="lt-sft", lang="ace", start=at("08:10:00"))
    training_run(runs, "20261125-080000-language-lt-sft-ban", kind="language", method="lt-sft", lang="ban", start=at("07:50:00"),
                 status="failed", upto_phase2=120, error="CUDA out of memory")
    training_run(runs, "20261125-073000-language-deftx-ban", kind="language", method="deftx", lang="ban", start=at("07:20:00"),
                 status="interrupted", upto_phase2=60, error="interrupted by the user (Ctrl-C)")
    training_run(runs, "20261125-070000-language-deftx-bjn", kind="language", method="deftx", lang="bjn", start=at("06:50:00"),
                 status="running", upto_phase2=300, pid=DEAD_PID)
    if evaluations:
        evaluation_runs(runs)
    return runs


def append(path: Path, text: str) -> None:
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()


def big_metrics_file(path: Path, lines: int = 100_000) -> None:
    """``lines`` train events over two phases, written fast (string formatting, not json.dumps)."""
    half = lines // 2
    chunks = []
    t0 = at("00:00:00")
    for i in range(lines):
        phase = 1 if i < half else 2
        step = (i % half) + 1
        chunks.append(
            f'{{"time": {t0 + i * 0.1:.1f}, "event": "train", "phase": {phase}, "step": {step}, '
            f'"total_steps": {half}, "loss": {2.0 / (1 + step / 5000):.5f}, "lr": 5e-05, "throughput": 30.5}}\n'
        )
    path.write_text("".join(chunks))


async def wait_until(pilot, condition: Callable[[], bool], timeout: float = 30.0, what: str = "condition") -> float:
    """Let the app run until ``condition()`` holds; returns the seconds it took.

    The timeout only bounds a wait for something that never happens: it is generous so that a busy
    machine does not fail a test. Speed is measured by benchmarks, not asserted here."""
    start = time.monotonic()
    while True:
        try:
            if condition():
                return time.monotonic() - start
        except Exception:  # a widget not mounted yet, a screen still opening
            pass
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out after {timeout}s waiting for {what() if callable(what) else what}")
        await pilot.pause(0.02)
