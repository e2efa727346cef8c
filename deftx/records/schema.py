"""The one schema of what training and evaluation write and everything else reads: the events of
``metrics.jsonl``, ``run.json``, an evaluation's ``results.json`` and the experiment's progress.

The library writes through these models (an event or record that does not fit its model is a bug,
caught where it is written), and the tables, the dashboard and ``deftx info`` read through the same
models. Reading is lenient about what the schema leaves open: fields a newer deftx adds are kept
(``extra="allow"``), fields an older one did not write take their defaults. A value of the wrong type
makes the whole record unreadable, with a reason that names the field (:func:`problem`), so that a
broken file is reported rather than read as a silent gap. A loss or rate that is not finite (NaN,
infinity) reads as missing.

Pydantic only: no torch, so the dashboard imports it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

STATUSES = ("running", "finished", "failed", "interrupted")
RUN_KINDS = ("language", "task", "evaluation", "compose", "transfer")


class Record(BaseModel):
    """A JSON object of a run directory: unknown keys kept, types checked strictly (a number written as
    text, or a float where a count belongs, is not what deftx writes)."""

    model_config = ConfigDict(extra="allow", strict=True)

    def to_json(self) -> dict[str, Any]:
        """The object as written: every field, the extra ones included."""
        return self.model_dump(mode="json")


def number(value: Any) -> float | None:
    """A value of a free-form mapping (a metrics dict) as a finite float, or ``None``: booleans, text,
    NaN and infinities are not numbers here."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def problem(exc: ValidationError) -> str:
    """One line saying what is wrong with a record: the first field and why."""
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first.get("loc", ()))
    message = str(first.get("msg", "invalid")).removeprefix("Value error, ")
    if not where:  # the record as a whole (a check across fields)
        return message
    got = first.get("input")
    shown = repr(got) if not isinstance(got, (dict, list)) else type(got).__name__
    if len(shown) > 40:
        shown = shown[:37] + "..."
    return f"{where}: {message[:1].lower() + message[1:]} (got {shown})"


# ----------------------------------------------------------------------------------------------
# metrics.jsonl events


def _finite(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


Finite = Annotated[float | None, BeforeValidator(_finite)]  # NaN and infinities read as missing


class Event(Record):
    time: Finite = None  # seconds since the epoch


class PhaseStarted(Event):
    """A training phase starts."""

    event: Literal["phase"] = "phase"
    phase: int
    total_steps: int | None = None
    masked: bool | None = None


class StepsTrained(Event):
    """A logging window of training steps ended (every ``log_every`` steps and at the phase's end)."""

    event: Literal["train"] = "train"
    phase: int | None = None  # written by every deftx; a reader takes the current phase without it
    step: int
    total_steps: int | None = None
    epoch: int | None = None
    loss: Finite = None
    lr: Finite = None
    throughput: Finite = None  # examples per second over the window
    l1: Finite = None  # mean |theta - start| per maskable parameter
    source: str | None = None  # a multi-source task SFT: the source language of the window's last batch


class Evaluated(Event):
    """Held-out metrics: during training (``phase``, ``step``; ``base``: of the start point) or of an
    evaluation run (no phase)."""

    event: Literal["eval"] = "eval"
    phase: int | None = None
    step: int | None = None
    metrics: dict[str, Any] = Field(default_factory=dict)
    base: bool = False


class MatrixDenoised(Record):
    """What DeFT-X's denoising did to one matrix."""

    name: str
    shape: list[int] = Field(default_factory=list)
    rank: int | None = None
    energy_kept: float | None = None
    frobenius: float | None = None
    svd: str | None = None
    tail_kept: int = 0
    type: str | None = None  # the matrix type (attention.self.query, intermediate.dense, ...)


class MaskSelected(Event):
    """The K entries phase 2 trains were selected (or read from a mask file)."""

    event: Literal["selection"] = "selection"
    method: str | None = None
    k: int
    maskable: int | None = None
    density: float | None = None
    rank_rule: str | None = None
    tail_keep: float | None = None
    denoise: list[MatrixDenoised] | None = None
    overlap_with_magnitude: float | None = None
    from_file: bool = False


class CheckpointingPlanned(Event):
    """How a training checkpoints, and about how big each phase's checkpoints are."""

    event: Literal["checkpointing"] = "checkpointing"
    save_every: int = 0
    directory: str | None = None
    keep: int | None = None  # how many of the newest checkpoints are kept
    phase1_bytes: int | None = None
    phase2_bytes: int | None = None


class RunResumed(Event):
    """An interrupted training continues from a checkpoint."""

    event: Literal["resume"] = "resume"
    run_id: str | None = None
    attempt: int | None = None
    phase: int | None = None
    step: int | None = None
    checkpoint: str | None = None
    total_steps: int | None = None
    phase_done: bool = False
    dropped_metrics_lines: int = 0


class Noticed(Event):
    """Something a person should know (a skipped checkpoint, nothing to resume)."""

    event: Literal["notice"] = "notice"
    message: str = ""


class TextPrepared(Event):
    """Progress of the data preparation of a run: a language SFT's text tokenised into blocks, a task
    SFT's examples tokenised (``examples`` of ``examples_total``), or the cache found."""

    event: Literal["prepare"] = "prepare"
    stage: str = ""  # "reading", "tokenising", "cached", "streaming", "rebuild", "waiting", "done"
    examples: int | None = None
    examples_total: int | None = None
    lines: int | None = None
    tokens: int | None = None
    blocks: int | None = None
    bytes_read: int | None = None
    bytes_total: int | None = None
    seconds: float | None = None
    eta_seconds: float | None = None
    cache: str | None = None


class RunDone(Event):
    """A training finished; its summary."""

    event: Literal["done"] = "done"
    summary: dict[str, Any] = Field(default_factory=dict)


MetricsEvent = Annotated[Union[PhaseStarted, StepsTrained, Evaluated, MaskSelected, CheckpointingPlanned, RunResumed,
                               Noticed, TextPrepared, RunDone], Field(discriminator="event")]
_EVENT = TypeAdapter(MetricsEvent)
EVENT_NAMES = tuple(model.model_fields["event"].default for model in
                    (PhaseStarted, StepsTrained, Evaluated, MaskSelected, CheckpointingPlanned, RunResumed, Noticed,
                     TextPrepared, RunDone))


def parse_event(obj: Any) -> MetricsEvent | Event | None:
    """A ``metrics.jsonl`` line's object as its event model; an event of a name this deftx does not
    know as a plain :class:`Event` (kept, not understood); ``None`` when it is not an event or a known
    event's fields are malformed."""
    if not isinstance(obj, dict) or not isinstance(obj.get("event"), str):
        return None
    if obj["event"] not in EVENT_NAMES:
        try:
            return Event.model_validate(obj)
        except ValidationError:
            return None
    try:
        return _EVENT.validate_python(obj)
    except ValidationError:
        return None


def as_events(events: Iterable[Any]) -> Iterator[MetricsEvent | Event]:
    """Events as their models: models as they are, JSON objects parsed (the malformed left out)."""
    for event in events:
        if not isinstance(event, Event):
            event = parse_event(event)
        if event is not None:
            yield event


def event_line(name: str, fields: dict[str, Any], time: float) -> dict[str, Any]:
    """The JSON object of one event as it is written: checked against its model (a known event with
    a malformed field is a bug in the writer: :class:`ValueError`)."""
    obj = {"time": time, "event": name, **fields}
    if name in EVENT_NAMES:
        try:
            _EVENT.validate_python(obj)
        except ValidationError as exc:
            raise ValueError(f"a {name!r} event that does not fit its schema: {problem(exc)}") from None
    return obj


# ----------------------------------------------------------------------------------------------
# run.json


class PhaseSummary(Record):
    steps: int | None = None
    final_loss: float | None = None
    eval: dict[str, Any] | None = None


class RunSummary(Record):
    """The outcome of a run: a training's K and phases, an evaluation's headline scores."""

    k: int | None = None
    maskable: int | None = None
    entries: int | None = None
    seconds: float | None = None
    processes: int | None = None
    mixed_precision: str | None = None  # the autocast precision trained in ("auto" resolved)
    base_eval: dict[str, Any] | None = None
    phase1: PhaseSummary | None = None
    phase2: PhaseSummary | None = None


class Resumption(Record):
    phase: int | None = None
    step: int | None = None
    checkpoint: str | None = None
    at: str | None = None
    dropped_metrics_lines: int = 0
    status_before: str | None = None


class CheckpointWritten(Record):
    name: str
    phase: int | None = None
    step: int | None = None
    phase_done: bool = False
    bytes: int | None = None
    seconds: float | None = None
    time: float | None = None


class RunRecord(Record):
    """``run.json``: what a run is, how it was started, where it stands."""

    format_version: int = 1
    run_id: str
    kind: str | None = None
    method: str | None = None
    languages: dict[str, str] = Field(default_factory=dict)
    task: str | None = None
    base_model: str | None = None
    seed: int | None = None
    command: list[str] = Field(default_factory=list)
    config: dict[str, Any] = Field(default_factory=dict)
    status: Literal["running", "finished", "failed", "interrupted"] = "running"
    started_at: str | None = None
    ended_at: str | None = None
    total_steps: dict[str, int] = Field(default_factory=dict)
    outputs: dict[str, str] = Field(default_factory=dict)
    summary: RunSummary = Field(default_factory=RunSummary)
    error: str | None = None
    library_version: str | None = None
    provenance: dict[str, Any] = Field(default_factory=dict)
    pid: int | None = None
    host: str | None = None
    resume_settings: dict[str, Any] | None = None
    checkpointing: dict[str, Any] | None = None
    checkpoints: list[CheckpointWritten] = Field(default_factory=list)
    checkpoints_written: int | None = None
    resumptions: list[Resumption] = Field(default_factory=list)
    data: dict[str, Any] | None = None  # what a language SFT's text was (sources, bytes, tokens, blocks, cache key)


# ----------------------------------------------------------------------------------------------
# results.json


class ResultSettings(Record):
    """The settings an evaluation's systems were made with: they tell the columns of a table apart."""

    k_task: int | float | str | None = None  # K as the SFT records it (a count)
    k_lang: int | float | str | None = None
    rank_rule: str | None = None  # the task SFT's DeFT-X rank rule
    tail_keep: float | None = None
    lang_rank_rule: str | None = None  # the language SFT's
    lang_tail_keep: float | None = None
    preset: str | None = None
    lang_preset: str | None = None
    task_budget: str | None = None
    task_examples: int | str | None = None
    lang_steps: int | None = None
    control_lang: str | None = None


class ResultRecord(Record):
    """``results.json``: one evaluation of one system in one target language, with its predictions."""

    format_version: int = 1
    task: str
    language: str
    source_language: str | None = None
    split: str
    system: str
    method: str | None = None
    base_model: str | None = None
    seed: int | None = None
    settings: ResultSettings = Field(default_factory=ResultSettings)
    lang_sft_language: str | None = None
    metric: str
    metrics: dict[str, Any]
    task_sft: str | None = None
    lang_sft: str | None = None
    created_at: str | None = None
    run_id: str | None = None
    predictions: list[int] | None = None
    gold: list[int] | None = None

    @model_validator(mode="after")
    def _has_its_metric(self) -> ResultRecord:
        if number(self.metrics.get(self.metric)) is None:
            raise ValueError(f"metrics.{self.metric} is not a number")
        return self

    @property
    def value(self) -> float:
        """The headline metric's value."""
        return float(self.metrics[self.metric])


# ----------------------------------------------------------------------------------------------
# experiment.json


class ExperimentStep(Record):
    label: str
    kind: str | None = None
    run_id: str | None = None
    cached: bool = False


class ExperimentRecord(Record):
    """``experiment.json`` in a runs directory: the progress of the last ``deftx transfer``."""

    kind: str = "transfer"
    status: Literal["running", "finished", "failed", "interrupted"] = "running"
    pid: int | None = None
    host: str | None = None
    command: list[str] = Field(default_factory=list)
    started_at: str | None = None
    ended_at: str | None = None
    updated_at: str | None = None
    total: int = 0
    index: int = 0
    step_label: str | None = None
    step_started: float | None = None
    eta_seconds: float | None = None
    running: list[str] | None = None
    finished: int | None = None
    steps: list[ExperimentStep] = Field(default_factory=list)
