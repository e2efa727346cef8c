"""A whole zero-shot transfer experiment: language SFTs, task SFTs, evaluations, a results table.

For each seed: the source and every target language get a language SFT per method. LT-SFT and
DeFT-X share phase 1 exactly (same data, same seed), so phase 1 runs once per language: the first
method keeps its phase-1 difference, the other selects its mask from it and runs phase 2 only. Then a
task SFT per method is trained on the source language (with that method's source SFT applied) and
evaluated in every target with that method's target SFT. Baselines: ``no-lang-sft`` (the LT-SFT task
SFT without a target language SFT) and ``full-ft`` (dense task fine-tuning, no language SFTs).
With ``lang_seed`` set, the language SFTs are trained once with that seed and shared by every seed's
task SFTs (a cheaper protocol: the spread over seeds then covers task training only).

Every step is a run directory with a deterministic name (settings hashed in), so a second call reuses
finished steps: an interrupted experiment resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deftx.config import TrainConfig, resolve_config
from deftx.errors import UsageError
from deftx.runs import RESULTS_JSON, read_run

# Evaluation task -> (training task, source language) of the standard recipes.
RECIPES = {"nusax-senti": ("smsa", "ind"), "americasnli": ("sick", "eng")}

Notify = Callable[[str], None]


@dataclass
class TransferPlan:
    task: str
    targets: list[str]
    methods: list[str] = field(default_factory=lambda: ["lt-sft", "deftx"])
    seeds: list[int] = field(default_factory=lambda: [0])
    train_task: str | None = None
    source_lang: str | None = None
    preset: str = "quick"
    task_preset: str | None = None  # the task SFTs' preset (None: the same as the language SFTs')
    lang_overrides: dict[str, Any] = field(default_factory=dict)
    task_overrides: dict[str, Any] = field(default_factory=dict)
    baselines: list[str] = field(default_factory=lambda: ["no-lang-sft"])
    split: str = "test"
    lang_seed: int | None = None  # one seed for every language SFT (None: each seed trains its own)

    def resolved(self) -> TransferPlan:
        from deftx.data import canonical_language, get_task

        spec = get_task(self.task)
        train_task, source = RECIPES.get(spec.name, (spec.name, None))
        self.task = spec.name
        self.train_task = get_task(self.train_task or train_task).name
        self.source_lang = canonical_language(self.source_lang or source or "")
        self.targets = [canonical_language(t) for t in self.targets]
        bad = [m for m in self.methods if m not in ("lt-sft", "deftx")]
        if bad or not self.methods:
            raise UsageError(f"methods must be lt-sft and/or deftx (got {', '.join(self.methods) or 'none'})")
        bad = [b for b in self.baselines if b not in ("no-lang-sft", "full-ft")]
        if bad:
            raise UsageError(f"unknown baseline {bad[0]!r}", hint="baselines: no-lang-sft, full-ft")
        return self


def _key(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:10]


# Settings a method does not read: the DeFT-X-only ones, and for dense fine-tuning also K.
_DEFTX_ONLY = ("rank_rule", "tail_keep", "denoise_include", "denoise_exclude", "svd")
_IGNORED_BY = {"lt-sft": _DEFTX_ONLY, "full-ft": (*_DEFTX_ONLY, "k")}


def _cache_settings(cfg: TrainConfig) -> dict[str, Any]:
    """The settings that name a cached task SFT: those the method ignores are at their defaults, so
    that an ablation of the DeFT-X rank rule reuses the LT-SFT and full fine-tuning runs."""
    ignored = _IGNORED_BY.get(cfg.method, ())
    defaults = {name: TrainConfig.model_fields[name].get_default(call_default_factory=True) for name in ignored}
    return cfg.model_copy(update=defaults).model_dump()


def _finished(run_dir: Path, needs: str) -> bool:
    info = read_run(run_dir)
    return info.readable and info.get("status") == "finished" and (run_dir / needs).exists()


def _fresh(run_dir: Path) -> None:
    """Remove an unfinished run directory so the step runs again from scratch."""
    if run_dir.exists():
        shutil.rmtree(run_dir)


def _resumable(run_dir: Path) -> bool:
    """Whether an unfinished training step continues in its run directory (from its last
    checkpoint); one that cannot is removed, to run again from scratch."""
    info = read_run(run_dir)
    if info.readable and info.get("status") != "finished" and info.get("resume_settings"):
        return True
    _fresh(run_dir)
    return False


def run_transfer(
    plan: TransferPlan,
    *,
    model: str | Path,
    data_dir: str | Path | None,
    runs_dir: Path,
    notify: Notify = lambda message: None,
    callbacks_for: Callable[[str], Iterable[Any]] = lambda label: (),
    save_every: int | None = None,
) -> list[dict[str, Any]]:
    """Run (or resume) the experiment; returns every result record. A training step that was
    interrupted continues from its last checkpoint (every ``save_every`` steps; ``None``: the
    preset's default)."""
    from deftx.pipeline import PHASE1_DIFF, Checkpointing, evaluate_transfer, train_language_sft, train_task_sft
    from deftx.sft import load_difference, save_mask
    from deftx.training import choose_mask

    plan = plan.resolved()
    runs_dir = Path(runs_dir)
    results: list[dict[str, Any]] = []
    for seed in plan.seeds:
        lang_seed = seed if plan.lang_seed is None else plan.lang_seed
        lang_cfg = resolve_config("language", plan.preset, seed=lang_seed, **plan.lang_overrides)
        task_cfg = resolve_config("task", plan.task_preset or plan.preset, seed=seed, **plan.task_overrides)
        lang_sfts: dict[tuple[str, str], Path] = {}
        for lang in [plan.source_lang, *[t for t in plan.targets if t != plan.source_lang]]:
            first = plan.methods[0]
            for method in plan.methods:
                cfg = lang_cfg.model_copy(update={"method": method})
                key = _key("lang", str(model), lang, cfg.model_dump(exclude={"method", "rank_rule", "tail_keep"}),
                           method, cfg.rank_rule if method == "deftx" else None, cfg.tail_keep if method == "deftx" else None)
                run_id = f"xfer-lang-{lang}-{method}-s{lang_seed}-{key}"
                run_dir = runs_dir / run_id
                label = f"[seed {lang_seed}] language SFT {lang} ({method})"
                if not _finished(run_dir, "sft/sft.json"):
                    resume = _resumable(run_dir)
                    mask_file = None
                    if method != first:
                        first_dir = runs_dir / lang_sfts[(lang, first)].parent.name
                        differences, meta = load_difference(first_dir / PHASE1_DIFF)
                        selection = choose_mask(differences, method, cfg.k, rank_rule=cfg.rank_rule,
                                                tail_keep=cfg.tail_keep, include=cfg.denoise_include,
                                                exclude=cfg.denoise_exclude, svd=cfg.svd, seed=lang_seed, in_place=True)
                        del differences
                        mask_file = runs_dir / f".mask-{run_id}.safetensors"
                        save_mask(mask_file, selection.masks, {
                            "method": method, "k": selection.k, "base_fingerprint": meta.get("base_fingerprint"),
                            **selection.event(cfg.rank_rule, cfg.tail_keep)})
                        notify(f"{label}: phase 1 shared with {first}; mask selected from its difference")
                    notify(f"{label}: {'resuming' if resume else 'training'}")
                    train_language_sft(lang, cfg, model=model, data_dir=data_dir, runs_dir=runs_dir, run_id=run_id,
                                       keep_phase1_diff=method == first and len(plan.methods) > 1,
                                       mask_file=mask_file, callbacks=callbacks_for(label),
                                       checkpointing=Checkpointing(save_every=save_every, resume=resume))
                    if mask_file is not None:
                        mask_file.unlink(missing_ok=True)
                else:
                    notify(f"{label}: cached ({run_dir})")
                lang_sfts[(lang, method)] = run_dir / "sft"
        task_sfts: dict[str, Path] = {}
        task_variants = [(m, m, lang_sfts[(plan.source_lang, m)]) for m in plan.methods]
        if "full-ft" in plan.baselines:
            task_variants.append(("full-ft", "full-ft", None))
        for name, method, src_sft in task_variants:
            cfg = task_cfg.model_copy(update={"method": method})
            key = _key("task", str(model), plan.train_task, plan.source_lang, _cache_settings(cfg),
                       str(src_sft) if src_sft else None)
            run_id = f"xfer-task-{plan.train_task}-{plan.source_lang}-{name}-s{seed}-{key}"
            run_dir = runs_dir / run_id
            label = f"[seed {seed}] task SFT {plan.train_task}/{plan.source_lang} ({name})"
            if not _finished(run_dir, "sft/sft.json"):
                resume = _resumable(run_dir)
                notify(f"{label}: {'resuming' if resume else 'training'}")
                train_task_sft(plan.train_task, plan.source_lang, cfg, model=model, lang_sft=src_sft,
                               data_dir=data_dir, runs_dir=runs_dir, run_id=run_id, callbacks=callbacks_for(label),
                               checkpointing=Checkpointing(save_every=save_every, resume=resume))
            else:
                notify(f"{label}: cached ({run_dir})")
            task_sfts[name] = run_dir / "sft"
        for target in plan.targets:
            evaluations = [(m, task_sfts[m], lang_sfts[(target, m)]) for m in plan.methods]
            if "no-lang-sft" in plan.baselines:
                evaluations.append(("no-lang-sft", task_sfts[plan.methods[0]], None))
            if "full-ft" in plan.baselines:
                evaluations.append(("full-ft", task_sfts["full-ft"], None))
            for system, task_sft, lang_sft in evaluations:
                run_id = f"xfer-eval-{plan.task}-{target}-{system}-s{seed}-{_key(str(task_sft), str(lang_sft), plan.split)}"
                run_dir = runs_dir / run_id
                if _finished(run_dir, RESULTS_JSON):
                    record = json.loads((run_dir / RESULTS_JSON).read_text())
                    notify(f"[seed {seed}] {plan.task}/{target} {system}: cached")
                else:
                    _fresh(run_dir)
                    record, _ = evaluate_transfer(plan.task, target, task_sft, lang_sft=lang_sft, model=model,
                                                  split=plan.split, data_dir=data_dir, runs_dir=runs_dir,
                                                  run_id=run_id, system=system)
                    notify(f"[seed {seed}] {plan.task}/{target} {system}: "
                           f"{record['metric']} {record['metrics'][record['metric']]:.4f}")
                results.append(record)
    return results


def results_table(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Languages x systems: mean and standard deviation of each record's headline metric over seeds,
    with an average row (mean over languages of the per-language means)."""
    systems: list[str] = []
    cells: dict[tuple[str, str], list[float]] = {}
    languages: list[str] = []
    for r in records:
        value = r["metrics"][r["metric"]]
        if r["system"] not in systems:
            systems.append(r["system"])
        if r["language"] not in languages:
            languages.append(r["language"])
        cells.setdefault((r["language"], r["system"]), []).append(value)
    rows = []
    for lang in languages:
        row = {"language": lang}
        for system in systems:
            values = cells.get((lang, system), [])
            row[system] = {"mean": statistics.fmean(values) if values else None,
                           "std": statistics.stdev(values) if len(values) > 1 else 0.0, "n": len(values)}
        rows.append(row)
    average = {"language": "average"}
    for system in systems:
        means = [row[system]["mean"] for row in rows if row[system]["mean"] is not None]
        average[system] = {"mean": statistics.fmean(means) if means else None, "std": None, "n": len(means)}
    metric = records[0]["metric"] if records else None
    return {"metric": metric, "systems": systems, "rows": rows, "average": average}
