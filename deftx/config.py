"""Training settings, declared once, with named presets.

A :class:`TrainConfig` is resolved from a preset plus explicit overrides and written whole into the
run directory and the SFT manifest. Unknown keys (from a newer deftx) are kept with a warning.
"""

from __future__ import annotations

import warnings
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from deftx.errors import UnknownNameError, UsageError
from deftx.sparsity import RankRule, check_k

Method = Literal["lt-sft", "deftx", "full-ft"]  # the names of deftx.methods.METHODS


class TrainConfig(BaseModel):
    """Settings of one two-phase SFT training (language or task)."""

    model_config = ConfigDict(extra="allow", validate_assignment=True)

    preset: str = "cpu"
    method: Method = "deftx"
    k: int | float | str = Field(0.0276, description="entries kept: a count, a fraction (<1) or a percentage")
    rank_rule: str = "energy:0.9"
    tail_keep: float = Field(0.0, ge=0.0, le=1.0)
    denoise_include: list[str] = Field(default_factory=lambda: ["*"])
    denoise_exclude: list[str] = Field(default_factory=list)
    svd: Literal["auto", "full"] = "auto"
    phase1_steps: int | None = Field(None, ge=1)
    phase2_steps: int | None = Field(None, ge=1)
    phase1_epochs: float | None = Field(None, gt=0)
    phase2_epochs: float | None = Field(None, gt=0)
    batch_size: int = Field(16, ge=1)
    max_length: int = Field(128, ge=8, le=8192)
    group_by_length: bool = Field(True, description="task SFTs: batches of similar length (less padding)")
    lr: float = Field(5e-5, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    warmup_ratio: float = Field(0.0, ge=0, lt=1)
    l1: float = Field(0.0, ge=0, description="lambda of the L1 pull toward the start point")
    max_grad_norm: float = Field(1.0, ge=0)
    mlm_probability: float = Field(0.15, gt=0, lt=1)
    max_examples: int | None = Field(None, ge=1, description="cap on training examples (task) or text lines (language)")
    eval_every: int | None = Field(None, ge=1)
    log_every: int = Field(10, ge=1)
    seed: int = 0
    mlm_head: Literal["auto", "train", "freeze"] = "auto"
    device: str = "auto"
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = Field(
        "no", description="autocast precision of the forward and backward passes (weights stay float32); "
                          "auto: bf16 where the device runs it fast, else no")
    grad_accum: int = Field(1, ge=1, description="micro-batches per optimizer step (per process)")

    @field_validator("rank_rule")
    @classmethod
    def _rank_rule(cls, value: str) -> str:
        return str(RankRule.parse(value))

    @field_validator("k")
    @classmethod
    def _k(cls, value: int | float | str) -> int | float | str:
        return check_k(value)

    @model_validator(mode="after")
    def _warn_unknown(self) -> TrainConfig:
        if self.model_extra:
            warnings.warn(f"unknown settings ignored: {', '.join(sorted(self.model_extra))}", stacklevel=2)
        return self

    def phase_budget(self, phase: int) -> tuple[int | None, float | None]:
        if phase == 1:
            return self.phase1_steps, self.phase1_epochs
        return self.phase2_steps, self.phase2_epochs


# Paper-scale (LT-SFT, XLM-R base) and small CPU presets. K for the small presets is the paper's
# K as a fraction of XLM-R base's maskable parameters (7,667,712 and 14,155,776 of ~277M).
# The CPU presets train with bf16 autocast where the CPU multiplies bf16 in hardware (``auto``; float32
# elsewhere): parity with float32 measured in docs/benchmarks.md. ``paper`` keeps float32 as published.
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "paper": {
        "language": dict(k=7_667_712, batch_size=8, max_length=256, lr=5e-5, phase1_steps=100_000,
                         phase2_steps=100_000, l1=0.1, eval_every=None, log_every=50),
        "task": dict(k=14_155_776, batch_size=32, max_length=128, lr=2e-5, phase1_epochs=5, phase2_epochs=5,
                     l1=0.0, log_every=50),
    },
    "cpu": {
        # Sized so the NusaX five-language table (3 seeds, shared language SFTs) fits a few hours
        # on 2 CPU cores with a small encoder; see docs/quality.md.
        "language": dict(k=0.0276, batch_size=16, max_length=64, lr=1e-4, phase1_steps=60, phase2_steps=60,
                         l1=0.1, log_every=10, mixed_precision="auto"),
        "task": dict(k=0.051, batch_size=16, max_length=96, lr=1e-4, phase1_epochs=1, phase2_epochs=1,
                     l1=0.0, max_examples=1200, log_every=10, mixed_precision="auto"),
    },
    "quick": {
        "language": dict(k=0.0276, batch_size=16, max_length=64, lr=1e-4, phase1_steps=30, phase2_steps=30,
                         l1=0.1, log_every=5, max_examples=2000, mixed_precision="auto"),
        # 3,000 SmSA examples: the smallest budget at which the sparse task SFT learns the rare neutral
        # class; 128 tokens hold 99% of SmSA's texts whole, and length-grouped batches keep that cheap.
        "task": dict(k=0.051, batch_size=16, max_length=128, lr=1e-4, phase1_epochs=1, phase2_epochs=1,
                     l1=0.0, max_examples=3000, log_every=10, mixed_precision="auto"),
    },
    "smoke": {
        "language": dict(k=0.0276, batch_size=4, max_length=32, lr=1e-3, phase1_steps=4, phase2_steps=4,
                         l1=0.1, log_every=1, max_examples=200, mixed_precision="auto"),
        "task": dict(k=0.051, batch_size=4, max_length=32, lr=1e-3, phase1_steps=4, phase2_steps=4,
                     l1=0.0, max_examples=64, log_every=1, mixed_precision="auto"),
    },
}


# Steps between checkpoints inside a phase (0: none but the one at the end of phase 1). Not a
# TrainConfig field: it does not change the SFT, so it stays out of the settings that name a run.
SAVE_EVERY: dict[str, int] = {"paper": 1000, "cpu": 50, "quick": 100, "smoke": 0}


def default_save_every(preset: str) -> int:
    """The preset's checkpoint interval in steps (0 for an unknown preset)."""
    return SAVE_EVERY.get(preset, 0)


def resolve_config(kind: str, preset: str = "cpu", **overrides: Any) -> TrainConfig:
    """A preset for a language or task SFT, with explicit settings (not None) on top."""
    if kind not in ("language", "task"):
        raise ValueError(kind)
    if preset not in PRESETS:
        raise UnknownNameError("preset", preset, PRESETS)
    values = dict(PRESETS[preset][kind])
    given = {k: v for k, v in overrides.items() if v is not None}
    # An explicit budget in steps replaces the preset's budget in epochs, and vice versa.
    for phase in ("phase1", "phase2"):
        if f"{phase}_steps" in given:
            values.pop(f"{phase}_epochs", None)
        if f"{phase}_epochs" in given:
            values.pop(f"{phase}_steps", None)
    values.update(given)
    if values.get("max_examples") == 0:  # an explicit 0: every example, whatever the preset's cap
        values["max_examples"] = None
    try:
        return TrainConfig(preset=preset, **values)
    except UsageError:
        raise
    except ValueError as exc:  # pydantic ValidationError
        raise UsageError(_first_error(exc)) from None


def _first_error(exc: ValueError) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        first = errors()[0]
        where = ".".join(str(x) for x in first.get("loc", ())) or "setting"
        return f"invalid {where}: {first.get('msg')} (got {first.get('input')!r})"
    return str(exc)


# Settings a plan gives each training itself: not to be set per kind.
PLAN_SETTINGS = {"preset": "--preset", "method": "--methods", "seed": "--seed"}


def parse_settings(pairs: list[str], option: str = "--set") -> dict[str, Any]:
    """``KEY=VALUE`` texts -> TrainConfig settings, each value checked and converted by TrainConfig's
    own validation ("64" -> 64). An unknown key, a key the plan sets itself, a missing ``=`` or a
    bad value is a :class:`UsageError` naming the key. ``max_examples=0`` means every example (as
    in :func:`resolve_config`); a later pair for the same key replaces an earlier one."""
    import difflib

    allowed = sorted(set(TrainConfig.model_fields) - set(PLAN_SETTINGS))
    settings: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key:
            raise UsageError(f"{option} {pair!r}: expected KEY=VALUE", hint=f"keys: {', '.join(allowed)}")
        if key in PLAN_SETTINGS:
            raise UsageError(f"{option} {key}: set by the plan; use {PLAN_SETTINGS[key]}")
        if key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=3, cutoff=0.6)
            maybe = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise UsageError(f"{option}: unknown setting {key!r}{maybe}", hint=f"keys: {', '.join(allowed)}")
        if key == "max_examples" and value == "0":
            settings[key] = 0
            continue
        parsed: Any = value
        if value.startswith("["):  # a list setting (denoise_include, denoise_exclude) as JSON
            import json

            try:
                parsed = json.loads(value)
            except ValueError:
                raise UsageError(f"{option} {key}: {value!r} is not a JSON list") from None
        try:
            checked = TrainConfig.model_validate({key: parsed})
        except UsageError as exc:
            raise UsageError(f"{option} {key}: {exc.message}", hint=exc.hint) from None
        except ValueError as exc:  # pydantic ValidationError
            raise UsageError(f"{option} {_first_error(exc)}") from None
        settings[key] = getattr(checked, key)
    return settings
