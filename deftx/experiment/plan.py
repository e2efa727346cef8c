"""A whole zero-shot transfer experiment, planned: language SFTs, task SFTs, evaluations.

For each seed: the source and every target language get a language SFT per method. LT-SFT and
DeFT-X share phase 1 exactly (same data, same seed), so phase 1 runs once per language: the first
method keeps its phase-1 difference, the others select their masks from it and run phase 2 only. A
DeFT-X setting can be a method of its own (:class:`~deftx.methods.MethodVariant`), so an ablation
shares that phase 1 too. Then a task SFT per method is trained on the source language (with that
method's source SFT applied; task SFTs with the same start point share phase 1 the same way) and
evaluated in every target with that method's target SFT. Baselines: ``no-lang-sft`` (the first
method's task SFT without a target language SFT) and ``full-ft`` (dense task fine-tuning, no language
SFTs). With ``control_lang`` set, that language's SFT (first method, trained as the targets' are) is
also applied in place of each target's own: the ``other-lang-sft`` control, which tells masked-LM
repair from knowledge of the target language. With ``lang_seed`` set, the language SFTs are trained
once with that seed and shared by every seed's task SFTs (the spread over seeds then covers task
training only).

:func:`plan_steps` is pure: from the plan and what the runs directory already holds it lists every
step with a deterministic run id (the settings that matter to the step hashed in, by
:func:`step_key`) and says which are cached. :mod:`deftx.experiment.executor` runs the others.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from deftx.config import TrainConfig, resolve_config
from deftx.data import canonical_language, get_task
from deftx.data.registry import RECIPES
from deftx.errors import UnknownNameError, UsageError
from deftx.methods import (
    METHODS,
    MULTI,
    NO_LANG_SFT,
    OTHER_LANG_SFT,
    SPARSE_METHODS,
    TARGET_IN_SOURCES,
    VARIANT_SETTINGS,
    FullFt,
    MethodVariant,
    cache_settings,
    get_method,
)
from deftx.records.files import PHASE1_DIFF, RESULTS_JSON, slug
from deftx.records.reading import read_run



BASELINES = (NO_LANG_SFT, FullFt.name)


SFT_MANIFEST = "sft/sft.json"


# In every evaluation step's key: raised when results records gain fields, so that an experiment run
# again evaluates once more (evaluations are cheap) instead of reusing records without them.
EVALUATION_RECORD_VERSION = 3


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
    control_lang: str | None = None  # also evaluate every other target with this language's SFT
    # Multi-source task SFTs beside the single-source ones: "non-targets" (one task SFT on every source
    # that is not a target) or "leave-one-out" (one per target, on every other source); None: none.
    multi_source: str | None = None
    sources: list[str] | None = None  # the multi-source candidates (None: every language with training data)
    allow_target_sources: bool = False  # let --sources hold a target (results marked "target in sources")
    source_sampling: str = "proportional"

    def resolved(self) -> TransferPlan:
        spec = get_task(self.task)
        train_task, source = RECIPES.get(spec.name, (spec.name, None))
        self.task = spec.name
        self.train_task = get_task(self.train_task or train_task).name
        self.source_lang = canonical_language(self.source_lang or source or "")
        self.targets = [canonical_language(t) for t in self.targets]
        if not self.targets:
            raise UsageError("--targets names no language", hint="e.g. --targets ace,mad")
        if self.control_lang is not None:
            self.control_lang = canonical_language(self.control_lang)
            if all(t == self.control_lang for t in self.targets):
                raise UsageError(
                    f"--control-lang {self.control_lang} is the only target: the control evaluates each other "
                    f"target with {self.control_lang}'s language SFT, so there is nothing to evaluate it on",
                    hint="choose a control language that is not a target (e.g. --targets mad --control-lang jav)")
        try:
            variants = [MethodVariant.parse(m) for m in self.methods]
        except UnknownNameError as exc:
            raise UnknownNameError("method of --methods", exc.name, SPARSE_METHODS) from None
        bad = [v.method for v in variants if v.method not in SPARSE_METHODS]
        if bad or not variants:
            raise UsageError(f"methods must be {' and/or '.join(SPARSE_METHODS)} (got {', '.join(self.methods) or 'none'})",
                             hint="a DeFT-X setting of its own: deftx@rank:16, deftx@lang=energy:0.8, deftx@task=tail:0.01")
        names = [v.name for v in variants]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise UsageError(f"method {twice[0]} is given twice")
        self.methods = names
        bad = [b for b in self.baselines if b not in BASELINES]
        if bad:
            raise UnknownNameError("baseline", bad[0], BASELINES)
        if self.split not in spec.splits:
            raise UnknownNameError(f"split of {spec.name}", self.split, spec.splits)
        self._resolve_sources(spec)
        return self

    def _resolve_sources(self, spec) -> None:
        """The multi-source candidates, checked: each has training data, none is a target unless allowed."""
        if self.multi_source is None:
            if self.sources or self.allow_target_sources:
                raise UsageError("--sources and --allow-target-sources need --multi-source",
                                 hint="--multi-source non-targets or --multi-source leave-one-out")
            return
        from deftx.objectives.multisource import normal_sampling

        if self.multi_source not in MULTI_SOURCE_DESIGNS:
            raise UnknownNameError("--multi-source design", self.multi_source, MULTI_SOURCE_DESIGNS)
        self.source_sampling = normal_sampling(self.source_sampling)
        given = self.sources is not None
        candidates = [canonical_language(s) for s in self.sources] if given else training_languages(spec.name)
        twice = sorted({c for c in candidates if candidates.count(c) > 1})
        if twice:
            raise UsageError(f"source {twice[0]} is given twice in --sources")
        for lang in candidates:
            source_task(spec.name, lang)
        if self.multi_source == "non-targets":
            inside = [c for c in candidates if c in self.targets]
            if inside and given and not self.allow_target_sources:
                raise UsageError(
                    f"--sources holds the target {inside[0]}: its labelled data would train the task SFT evaluated "
                    f"on it, which is not zero-shot", hint="drop it from --sources, use --multi-source leave-one-out, "
                    "or pass --allow-target-sources to measure it anyway (marked 'target in sources')")
            if not given:
                candidates = [c for c in candidates if c not in self.targets]
        if not candidates or (self.multi_source == "leave-one-out"
                              and any(not [c for c in candidates if c != t] for t in self.targets)):
            raise UsageError("no source is left for a multi-source task SFT", hint="name more languages in --sources")
        if self.allow_target_sources and self.multi_source == "leave-one-out":
            raise UsageError("--allow-target-sources is for --multi-source non-targets: leave-one-out never "
                             "trains a target's task SFT on its own data")
        self.sources = candidates

    def sources_for(self, target: str | None) -> list[str]:
        """The sources of the multi-source task SFT evaluated on ``target`` (every target's for non-targets)."""
        if self.multi_source == "leave-one-out":
            return [s for s in self.sources or [] if s != target]
        return list(self.sources or [])


MULTI_SOURCE_DESIGNS = ("non-targets", "leave-one-out")


def training_languages(task: str) -> list[str]:
    """Every language with labelled training data for ``task`` (the recipe's source first)."""
    spec = get_task(task)
    out = []
    recipe = RECIPES.get(spec.name)
    if recipe is not None:
        out.append(recipe[1])
    if "train" in spec.splits:
        out.extend(lang for lang in spec.languages if lang not in out)
    return out


def source_task(task: str, lang: str) -> str:
    """The task whose training split is ``lang``'s labelled data for ``task``: the recipe's training task
    for its source language (SmSA for ind in NusaX), else ``task`` itself where it has ``lang`` and a
    training split; a :class:`UsageError` naming the language otherwise."""
    spec = get_task(task)
    lang = canonical_language(lang)
    recipe = RECIPES.get(spec.name)
    if recipe is not None and recipe[1] == lang:
        return recipe[0]
    if lang in spec.languages and "train" in spec.splits:
        return spec.name
    has = training_languages(spec.name)
    raise UsageError(f"{spec.name} has no labelled training data in {lang}",
                     hint=f"languages with training data: {', '.join(has) or 'none'}")


def step_key(*parts: Any) -> str:
    """The hash that names a step's run directory: of every setting that changes its result."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:10]


@dataclass
class Step:
    """One step of the experiment: a run directory to produce (or reuse)."""

    kind: str  # "language", "task" or "evaluation"
    run_id: str
    label: str  # for people: "language SFT ace (DeFT-X)"
    seed: int
    cached: bool
    config: TrainConfig | None = None  # a training's settings
    language: str | None = None  # the SFT's language, or the evaluation's target
    system: str | None = None  # an evaluation's system; a task SFT's name in the plan
    lang_sft: str | None = None  # run id of the language SFT applied (task SFT, evaluation)
    task_sft: str | None = None  # run id of the evaluated task SFT
    keep_phase1_diff: bool = False
    mask_from: str | None = None  # run id whose phase-1 difference gives this step's mask
    mask_from_label: str | None = None  # for people: whose phase 1 that is ("LT-SFT")
    control_lang: str | None = None  # an other-lang-sft evaluation: the language of the SFT applied
    sources: list[str] | None = None  # a multi-source task SFT: its sources
    source_sfts: dict[str, str] | None = None  # and the run id of each source's language SFT
    target_in_sources: bool = False  # an evaluation whose task SFT was trained on the target's data

    @property
    def needs(self) -> str:
        """The file that marks the step finished."""
        return RESULTS_JSON if self.kind == "evaluation" else SFT_MANIFEST

    @property
    def after(self) -> set[str]:
        """The run ids that must be finished before this step starts: the run whose phase-1 difference
        gives its mask, the language SFT it applies, the task SFT it evaluates."""
        return {run_id for run_id in (self.mask_from, self.lang_sft, self.task_sft, *(self.source_sfts or {}).values())
                if run_id is not None}


class RunsState(Protocol):
    """What the planner asks of the runs directory."""

    def finished(self, run_id: str, needs: str) -> bool: ...

    def has_phase1_diff(self, run_id: str) -> bool: ...


@dataclass
class DiskState:
    """The runs directory as it is on disk."""

    runs_dir: Path

    def finished(self, run_id: str, needs: str) -> bool:
        run_dir = self.runs_dir / run_id
        info = read_run(run_dir)
        return info.status == "finished" and (run_dir / needs).exists()

    def has_phase1_diff(self, run_id: str) -> bool:
        return (self.runs_dir / run_id / PHASE1_DIFF).is_file()


def _label(seed: int, text: str) -> str:
    return f"[seed {seed}] {text}"


def plan_steps(plan: TransferPlan, *, model: str | Path, runs_dir: Path, state: RunsState | None = None) -> list[Step]:
    """Every step of the experiment in the order it runs, each marked cached or not. Pure: the
    runs directory is read only through ``state`` (by default, from disk)."""
    plan = plan.resolved()
    planner = _Planner(plan, str(model), Path(runs_dir), state or DiskState(Path(runs_dir)))
    for seed in plan.seeds:
        planner.language_steps(seed)
        task_runs = planner.task_steps(seed)
        multi_runs = planner.multi_source_steps(seed) if plan.multi_source else {}
        planner.evaluation_steps(seed, task_runs, multi_runs)
    return planner.steps


class _Planner:
    """The steps planned so far, and the runs they will produce, by what asks for them."""

    def __init__(self, plan: TransferPlan, model: str, runs_dir: Path, state: RunsState) -> None:
        self.plan, self.model, self.runs_dir, self.state = plan, model, runs_dir, state
        self.steps: list[Step] = []
        self.by_id: dict[str, Step] = {}
        self.lang_runs: dict[tuple[int, str, str], str] = {}  # (lang seed, language, method variant) -> run id
        self.evaluated: set[tuple[int, str, str, str]] = set()  # (seed, target, system, key) planned
        self.variants = [MethodVariant.parse(m) for m in plan.methods]
        self.first = self.variants[0]

    def sft_path(self, run_id: str | None) -> str | None:  # as run ids of earlier versions hashed it
        return str(self.runs_dir / run_id / "sft") if run_id is not None else None

    def add(self, step: Step) -> Step:
        """The step, or the planned one with its run id (two variants that train the same SFT)."""
        if step.run_id not in self.by_id:
            self.by_id[step.run_id] = step
            self.steps.append(step)
        return self.by_id[step.run_id]

    def lang_seed(self, seed: int) -> int:
        return seed if self.plan.lang_seed is None else self.plan.lang_seed

    def language_steps(self, seed: int) -> None:
        """A language SFT per language and method variant (the control language: the first method's
        only); variants share the first method's phase 1."""
        plan, first, lang_seed = self.plan, self.first, self.lang_seed(seed)
        lang_cfg = resolved_precision(resolve_config("language", plan.preset, seed=lang_seed, **plan.lang_overrides))
        languages = [plan.source_lang, *[t for t in plan.targets if t != plan.source_lang]]
        languages += [s for s in plan.sources or [] if s not in languages]  # multi-source: every source's SFT
        control = plan.control_lang if plan.control_lang not in languages else None
        for lang in languages + ([control] if control else []):
            for variant in self.variants if lang != control else [first]:
                if (lang_seed, lang, variant.name) in self.lang_runs:
                    continue  # shared with an earlier seed (lang_seed)
                cfg = lang_cfg.model_copy(update=variant.settings_for("language"))
                own = get_method(variant.method).from_config(cfg).settings()
                key = step_key("lang", self.model, lang, cfg.model_dump(exclude={"method", *VARIANT_SETTINGS}),
                               variant.method, *(own.get(name) for name in VARIANT_SETTINGS))
                run_id = f"xfer-lang-{lang}-{variant.method}-s{lang_seed}-{key}"
                step = Step("language", run_id, _label(lang_seed, f"language SFT {lang} ({variant.label})"),
                            lang_seed, self.state.finished(run_id, SFT_MANIFEST), cfg, language=lang)
                if lang == control:
                    step.label += " (control)"
                elif variant is first:
                    step.keep_phase1_diff = len(self.variants) > 1
                elif run_id != self.lang_runs[(lang_seed, lang, first.name)]:
                    # phase 1 is shared with the first method when its difference is (or will be) kept
                    shared = self.lang_runs[(lang_seed, lang, first.name)]
                    if not self.by_id[shared].cached or self.state.has_phase1_diff(shared):
                        step.mask_from, step.mask_from_label = shared, first.label
                self.lang_runs[(lang_seed, lang, variant.name)] = self.add(step).run_id

    def task_steps(self, seed: int) -> dict[str, str]:
        """A task SFT per method variant (and the dense baseline), each trained with its variant's source
        SFT; those with the same start point share phase 1. Returns the run id of each variant's."""
        plan, lang_seed = self.plan, self.lang_seed(seed)
        task_cfg = resolved_precision(resolve_config("task", plan.task_preset or plan.preset, seed=seed, **plan.task_overrides))
        task_runs: dict[str, str] = {}
        trainings = [(v, self.lang_runs[(lang_seed, plan.source_lang, v.name)]) for v in self.variants]
        if FullFt.name in plan.baselines:
            trainings.append((MethodVariant(FullFt.name), None))
        holders: dict[str, tuple[str, str]] = {}  # a phase-1 identity -> (the run keeping that phase 1, its label)
        for variant, src in trainings:
            cfg = task_cfg.model_copy(update=variant.settings_for("task"))
            key = step_key("task", self.model, plan.train_task, plan.source_lang, cache_settings(cfg), self.sft_path(src))
            run_id = f"xfer-task-{plan.train_task}-{plan.source_lang}-{variant.method}-s{seed}-{key}"
            label = _label(seed, f"task SFT {plan.train_task}/{plan.source_lang} ({variant.label})")
            step = self.add(Step("task", run_id, label, seed, self.state.finished(run_id, SFT_MANIFEST), cfg,
                                 language=plan.source_lang, system=variant.method, lang_sft=src))
            task_runs[variant.name] = step.run_id
            if get_method(variant.method).sparse and step.run_id == run_id and not step.keep_phase1_diff:
                holder, holder_label = holders.setdefault(step_key(self.sft_path(src), phase1_settings(cfg)),
                                                          (run_id, variant.label))
                if holder != run_id:
                    self.by_id[holder].keep_phase1_diff = True
                    if not self.by_id[holder].cached or self.state.has_phase1_diff(holder):
                        step.mask_from, step.mask_from_label = holder, f"the task SFT of {holder_label}"
        return task_runs

    def multi_source_steps(self, seed: int) -> dict[tuple[str, str | None], str]:
        """The multi-source task SFTs of each method variant (and of dense fine-tuning when it is a baseline):
        one on every source (``non-targets``) or one per target (``leave-one-out``), each source's batches
        trained with that variant's language SFT of the source. Returns their run ids by (variant, target);
        the target is None for the one shared by every target."""
        plan, lang_seed = self.plan, self.lang_seed(seed)
        task_cfg = resolved_precision(resolve_config("task", plan.task_preset or plan.preset, seed=seed, **plan.task_overrides))
        variants = list(self.variants)
        if FullFt.name in plan.baselines:
            variants.append(MethodVariant(FullFt.name))
        targets: list[str | None] = list(plan.targets) if plan.multi_source == "leave-one-out" else [None]
        runs: dict[tuple[str, str | None], str] = {}
        for variant in variants:
            cfg = task_cfg.model_copy(update=variant.settings_for("task"))
            dense = not get_method(variant.method).sparse
            for target in targets:
                sources = plan.sources_for(target)
                sfts = {} if dense else {lang: self.lang_runs[(lang_seed, lang, variant.name)] for lang in sources}
                key = step_key("task-multi", self.model, plan.task, sources, cache_settings(cfg), plan.source_sampling,
                               {lang: self.sft_path(run) for lang, run in sfts.items()})
                run_id = f"xfer-task-{plan.task}-multi-{variant.method}-s{seed}-{key}"
                without = f" without {target}" if target is not None else ""
                label = _label(seed, f"task SFT {plan.task}/{len(sources)} sources{without} ({variant.label} multi)")
                step = self.add(Step("task", run_id, label, seed, self.state.finished(run_id, SFT_MANIFEST), cfg,
                                     language="+".join(sources), system=variant.method + MULTI, sources=sources,
                                     source_sfts=sfts))
                runs[(variant.name, target)] = step.run_id
        return runs

    def evaluation_steps(self, seed: int, task_runs: dict[str, str],
                         multi_runs: dict[tuple[str, str | None], str] | None = None) -> None:
        """Every target: each variant (its task SFT with its target SFT), then the baselines and the
        control; the same SFTs under two variants' names are evaluated once."""
        plan, first, lang_seed = self.plan, self.first, self.lang_seed(seed)
        for target in plan.targets:
            evaluations = [(v.method, task_runs[v.name], self.lang_runs[(lang_seed, target, v.name)], v)
                           for v in self.variants]
            if NO_LANG_SFT in plan.baselines:
                evaluations.append((NO_LANG_SFT, task_runs[first.name], None, None))
            if plan.control_lang is not None and target != plan.control_lang:
                evaluations.append((OTHER_LANG_SFT, task_runs[first.name],
                                    self.lang_runs[(lang_seed, plan.control_lang, first.name)], None))
            if FullFt.name in plan.baselines:
                evaluations.append((FullFt.name, task_runs[FullFt.name], None, None))
            evaluations += self.multi_evaluations(target, lang_seed, multi_runs or {})
            for system, task_run, lang_run, variant in evaluations:
                key = step_key(self.sft_path(task_run), self.sft_path(lang_run), plan.split, EVALUATION_RECORD_VERSION)
                if (seed, target, system, key) in self.evaluated:
                    continue
                self.evaluated.add((seed, target, system, key))
                multi = system.endswith(MULTI) or system.endswith(MULTI + TARGET_IN_SOURCES)
                name = slug(variant.name) if variant is not None else system
                if multi and variant is not None:
                    name = slug(variant.name) + "-multi"
                control_lang = plan.control_lang if system == OTHER_LANG_SFT else None
                shown = variant.label if variant is not None and not variant.plain else system
                if multi and variant is not None:
                    shown = f"{variant.label} multi" + (" (target in sources)" if system.endswith(TARGET_IN_SOURCES) else "")
                label = f"{plan.task}/{target} {shown}" + (f" ({control_lang} SFT)" if control_lang else "")
                self.add(Step("evaluation", f"xfer-eval-{plan.task}-{target}-{name}-s{seed}-{key}", _label(seed, label),
                              seed, self.state.finished(f"xfer-eval-{plan.task}-{target}-{name}-s{seed}-{key}", RESULTS_JSON),
                              language=target, system=system, lang_sft=lang_run, task_sft=task_run,
                              control_lang=control_lang, target_in_sources=system.endswith(TARGET_IN_SOURCES)))

    def multi_evaluations(self, target: str, lang_seed: int,
                          multi_runs: dict[tuple[str, str | None], str]) -> list[tuple[str, str, str | None, Any]]:
        """A target's evaluations of the multi-source task SFTs: each variant's with the target's language
        SFT, the first's without one (``no-lang-sft-multi``), dense fine-tuning's; a system whose task SFT was
        trained on the target's own data ends in ``+target``."""
        plan, first = self.plan, self.first
        if not multi_runs:
            return []
        key = target if plan.multi_source == "leave-one-out" else None
        mark = TARGET_IN_SOURCES if target in plan.sources_for(target) else ""
        out: list[tuple[str, str, str | None, Any]] = [
            (v.method + MULTI + mark, multi_runs[(v.name, key)], self.lang_runs[(lang_seed, target, v.name)], v)
            for v in self.variants]
        if NO_LANG_SFT in plan.baselines:
            out.append((NO_LANG_SFT + MULTI + mark, multi_runs[(first.name, key)], None, None))
        if FullFt.name in plan.baselines:
            out.append((FullFt.name + MULTI + mark, multi_runs[(FullFt.name, key)], None, None))
        return out


def resolved_precision(config: TrainConfig) -> TrainConfig:
    """``config`` with ``auto`` precision resolved on this machine (bf16 where the device runs it fast,
    else no): the plan's trainings, and the run ids derived from them, say what runs. A float32
    training keeps the run id it had before the CPU presets defaulted to ``auto``."""
    from deftx.training.distributed import with_resolved_precision  # torch: imported when planning only

    return with_resolved_precision(config)


def phase1_settings(config: TrainConfig) -> dict[str, Any]:
    """The settings phase 1 depends on: all but the method's and K (which only the selection reads)."""
    method_only = {f for m in METHODS.values() for f in m.own_settings} | {"method", "k"}
    return config.model_dump(exclude=method_only)
