"""The fine-tuning methods, one config class each (as peft has one per tuner).

A method config knows its own settings, which settings of a :class:`~deftx.config.TrainConfig` it
reads (so that a cache key or a result record leaves out the others), and how to turn a phase-1
difference into the masks phase 2 trains:

- :class:`LtSft`: the K largest ``|Delta|`` (Ansell et al. 2022);
- :class:`DeftX`: the K largest ``|denoised Delta|``, every chosen 2-D matrix SVD-denoised first
  (Simon & Jyothi 2025);
- :class:`FullFt`: dense fine-tuning, the baseline: one phase, no selection.

Importing this module does not import torch; selecting does.

    >>> DeftX(rank_rule="rank:16").settings()["rank_rule"]
    'rank:16'
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from deftx.errors import UnknownNameError, UsageError
from deftx.sparsity import RankRule, check_tail_keep, resolve_k

if TYPE_CHECKING:  # pydantic is not needed to train: any object with TrainConfig's fields will do
    import torch

    from deftx.config import TrainConfig
    from deftx.methods.denoise import DenoiseInfo


@dataclass
class MaskSelection:
    """The masks chosen from a phase-1 difference, and how."""

    masks: dict[str, torch.Tensor]
    k: int
    maskable: int
    method: str
    settings: dict[str, Any] = field(default_factory=dict)  # the method's own settings
    denoise: list[DenoiseInfo] | None = None  # per matrix, for a denoising method
    overlap_with_magnitude: float | None = None

    def recorded(self) -> dict[str, Any]:
        """What a denoising selection adds to the SFT's record: per matrix, the rank and energy kept,
        and the share of the plain magnitude mask it kept (``{}`` for a plain selection)."""
        if self.denoise is None:
            return {}
        return {"denoise": [info.to_json() for info in self.denoise], "overlap_with_magnitude": self.overlap_with_magnitude}

    def event(self) -> dict[str, Any]:
        """The ``selection`` event of ``metrics.jsonl``, also saved with a mask file."""
        out: dict[str, Any] = {
            "method": self.method,
            "k": self.k,
            "maskable": self.maskable,
            "density": self.k / self.maskable if self.maskable else 0.0,
            **self.settings,
        }
        if self.denoise is not None:
            from deftx.methods.denoise import matrix_type

            out["denoise"] = [{**info.to_json(), "type": matrix_type(info.name)} for info in self.denoise]
            out["overlap_with_magnitude"] = self.overlap_with_magnitude
        return out


@dataclass(frozen=True)
class MethodConfig:
    """A fine-tuning method and its own settings."""

    name: ClassVar[str]
    label: ClassVar[str]
    sparse: ClassVar[bool] = True  # K entries selected after phase 1 and trained in phase 2
    # TrainConfig fields only this method reads, and the names its settings have in manifests
    own_settings: ClassVar[dict[str, str]] = {}

    @classmethod
    def from_config(cls, config: TrainConfig | Mapping[str, Any]) -> MethodConfig:
        """The method's settings from a TrainConfig (or its JSON dump, as runs and SFTs record it)."""
        if isinstance(config, Mapping):
            values = {f: config[f] for f in cls.own_settings if f in config}
        else:
            values = {f: getattr(config, f) for f in cls.own_settings if hasattr(config, f)}
        return cls(**{cls.own_settings[f]: value for f, value in values.items()})

    def settings(self) -> dict[str, Any]:
        """The method's own settings, by the names manifests and result records use."""
        return {name: getattr(self, name) for name in self.own_settings.values()}

    def recorded_keys(self) -> set[str]:
        """The keys of a mask file's metadata that describe its selection by this method: its own
        settings and what its selection records (:meth:`MaskSelection.recorded`)."""
        return set(self.settings()) | {"denoise", "overlap_with_magnitude"}

    def select(
        self,
        differences: dict[str, torch.Tensor],
        k: int | float | str,
        *,
        in_place: bool = False,
        on_matrix: Callable[[DenoiseInfo], None] | None = None,
    ) -> MaskSelection:
        """The masks of the K entries to train in phase 2, from the phase-1 differences."""
        raise UsageError(f"{self.label} selects no entries: it trains every parameter densely")


@dataclass(frozen=True)
class LtSft(MethodConfig):
    """Lottery-ticket sparse fine-tuning: keep the K entries that moved most in phase 1."""

    name: ClassVar[str] = "lt-sft"
    label: ClassVar[str] = "LT-SFT"

    def select(self, differences, k, *, in_place=False, on_matrix=None) -> MaskSelection:
        from deftx.methods.selection import select_top_k

        maskable = sum(d.numel() for d in differences.values())
        count = resolve_k(k, maskable)
        return MaskSelection(select_top_k(differences, count), count, maskable, self.name, self.settings())


@dataclass(frozen=True)
class DeftX(MethodConfig):
    """DeFT-X: SVD-denoise every chosen 2-D difference matrix, then keep the K largest entries.

    ``rank_rule``: ``energy:F`` or ``rank:R`` per matrix; ``tail_keep``: the fraction of the SVD
    residual added back (0: pure truncation); ``svd``: ``auto`` or ``full`` (both exact);
    ``include``/``exclude``: name patterns of the matrices to denoise."""

    name: ClassVar[str] = "deftx"
    label: ClassVar[str] = "DeFT-X"
    own_settings: ClassVar[dict[str, str]] = {
        "rank_rule": "rank_rule", "tail_keep": "tail_keep", "denoise_include": "include",
        "denoise_exclude": "exclude", "svd": "svd",
    }

    rank_rule: str = "energy:0.9"
    tail_keep: float = 0.0
    include: tuple[str, ...] = ("*",)
    exclude: tuple[str, ...] = ()
    svd: str = "auto"

    def __post_init__(self) -> None:
        object.__setattr__(self, "rank_rule", str(RankRule.parse(self.rank_rule)))
        object.__setattr__(self, "tail_keep", check_tail_keep(self.tail_keep))
        object.__setattr__(self, "include", tuple(self.include))
        object.__setattr__(self, "exclude", tuple(self.exclude))
        if self.svd not in ("auto", "full"):
            raise UsageError(f"svd must be 'auto' or 'full', not {self.svd!r}")

    def settings(self) -> dict[str, Any]:
        out = super().settings()
        out["include"], out["exclude"] = list(self.include), list(self.exclude)
        return out

    def select(self, differences, k, *, in_place=False, on_matrix=None) -> MaskSelection:
        """Scores are |denoised Delta| for the chosen matrices and |Delta| for the rest, compared by
        magnitude chunk by chunk (|Delta| is never materialised); with ``in_place`` each denoised
        matrix overwrites its difference (no second copy)."""
        from deftx.methods.denoise import denoise_difference, denoise_targets
        from deftx.methods.selection import mask_overlap, select_top_k

        maskable = sum(d.numel() for d in differences.values())
        count = resolve_k(k, maskable)
        magnitude = select_top_k(differences, count)
        infos = []
        scores = dict(differences)
        targets = denoise_targets(((n, tuple(d.shape)) for n, d in differences.items()), self.include, self.exclude)
        for name in targets:
            denoised, info = denoise_difference(differences[name], self.rank_rule, self.tail_keep, svd=self.svd, name=name)
            scores[name] = differences[name].copy_(denoised) if in_place else denoised
            del denoised
            infos.append(info)
            if on_matrix is not None:
                on_matrix(info)
        masks = select_top_k(scores, count)
        overlap = mask_overlap(masks, magnitude)["fraction"]
        return MaskSelection(masks, count, maskable, self.name, self.settings(), infos, overlap)


@dataclass(frozen=True)
class FullFt(MethodConfig):
    """Dense fine-tuning of every parameter: the baseline without selection."""

    name: ClassVar[str] = "full-ft"
    label: ClassVar[str] = "full FT"
    sparse: ClassVar[bool] = False


METHODS: dict[str, type[MethodConfig]] = {m.name: m for m in (LtSft, DeftX, FullFt)}
SPARSE_METHODS = tuple(name for name, m in METHODS.items() if m.sparse)

# The systems an evaluation measures: a method (its task SFT with its target language SFT), or a baseline.
PAIR = (LtSft.name, DeftX.name)  # the two methods compared head to head: Delta = DeFT-X - LT-SFT
NO_LANG_SFT = "no-lang-sft"  # the baseline of a task SFT evaluated without a target language SFT
OTHER_LANG_SFT = "other-lang-sft"  # the control: another language's SFT in place of the target's
BASELINE_LABELS = {NO_LANG_SFT: "no lang SFT", OTHER_LANG_SFT: "other lang SFT", FullFt.name: FullFt.label}
SYSTEM_LABELS = {**{name: METHODS[name].label for name in SPARSE_METHODS}, **BASELINE_LABELS}
MULTI = "-multi"  # after a system: its task SFT is multi-source ("lt-sft-multi": LT-SFT multi)
TARGET_IN_SOURCES = "+target"  # after that: the multi-source task SFT's sources hold the evaluated target
# the known systems in column order: the single-source ones, then their multi-source counterparts
SYSTEMS = (*SYSTEM_LABELS, *(s + MULTI for s in SYSTEM_LABELS), *(s + MULTI + TARGET_IN_SOURCES for s in SYSTEM_LABELS))


def system_label(system: str) -> str:
    """For people: ``LT-SFT``, ``no lang SFT``, ``LT-SFT multi``, ``LT-SFT multi (target in sources)``; an
    unknown system as it is."""
    if system.endswith(TARGET_IN_SOURCES):
        return system_label(system[: -len(TARGET_IN_SOURCES)]) + " (target in sources)"
    if system.endswith(MULTI) and system[: -len(MULTI)] in SYSTEM_LABELS:
        return SYSTEM_LABELS[system[: -len(MULTI)]] + " multi"
    return SYSTEM_LABELS.get(system, system)


def get_method(name: str) -> type[MethodConfig]:
    try:
        return METHODS[name]
    except KeyError:
        raise UnknownNameError("method", str(name), METHODS) from None


def method_of(config: TrainConfig | Mapping[str, Any]) -> MethodConfig:
    """The method config of a TrainConfig, or of a training record (an SFT's ``training``)."""
    name = config.get("method") if isinstance(config, Mapping) else config.method
    return get_method(str(name)).from_config(config)


def method_settings(training: Mapping[str, Any]) -> dict[str, Any]:
    """A recorded training's method settings (``{}`` for an unknown method or one without any)."""
    method = METHODS.get(str(training.get("method")))
    return method.from_config(training).settings() if method is not None else {}


def is_sparse(name: str | None) -> bool:
    """Whether a recorded method trains a sparse diff (unknown or missing names count as sparse)."""
    method = METHODS.get(str(name))
    return method.sparse if method is not None else True


def ignored_settings(name: str) -> tuple[str, ...]:
    """TrainConfig fields a method does not read: the other methods' own settings, and K for a
    dense method."""
    method = get_method(name)
    others = {f for m in METHODS.values() if m is not method for f in m.own_settings if f not in method.own_settings}
    return (*sorted(others), *(() if method.sparse else ("k",)))


def cache_settings(config: TrainConfig) -> dict[str, Any]:
    """The settings that name a cached training: those the method ignores are at their defaults, so
    that an ablation of one method's settings reuses the other methods' runs."""
    from deftx.config import TrainConfig

    ignored = ignored_settings(config.method)
    defaults = {n: TrainConfig.model_fields[n].get_default(call_default_factory=True) for n in ignored}
    return config.model_copy(update=defaults).model_dump()



# ----------------------------------------------------------------------------------------------
# a method of an experiment's plan, with settings of its own

VARIANT_SEP = "@"
SIDES = ("lang", "task")
# The settings a variant may set (DeFT-X's rank rule and tail), in the order run ids hash them.
VARIANT_SETTINGS = ("rank_rule", "tail_keep")


@dataclass(frozen=True)
class MethodVariant:
    """A method as an experiment plans it, with settings of its own for the language SFTs, the task
    SFT or both, on top of the plan's: ``deftx``, ``deftx@rank:16`` (both), ``deftx@lang=energy:0.8``
    (the language SFTs only), ``deftx@task=energy:0.9+tail:0.01``, ``deftx@lang=rank:8@task=rank:32``.
    A setting is a rank rule (``energy:F``, ``rank:R``) and/or ``tail:F``, joined by ``+``. Every
    variant of a plan shares phase 1 with the plan's first method wherever its start point is the same.

        >>> v = MethodVariant.parse("deftx@lang=rank:16+tail:0.01")
        >>> v.lang, v.task, v.label
        ({'rank_rule': 'rank:16', 'tail_keep': 0.01}, {}, 'DeFT-X lang rank:16 tail 0.01')
    """

    method: str
    lang_settings: tuple[tuple[str, Any], ...] = ()
    task_settings: tuple[tuple[str, Any], ...] = ()

    @property
    def lang(self) -> dict[str, Any]:
        return dict(self.lang_settings)

    @property
    def task(self) -> dict[str, Any]:
        return dict(self.task_settings)

    @property
    def plain(self) -> bool:
        return not self.lang_settings and not self.task_settings

    @classmethod
    def parse(cls, text: str | MethodVariant) -> MethodVariant:
        if isinstance(text, MethodVariant):
            return text
        name, *parts = str(text).strip().split(VARIANT_SEP)
        method = get_method(name.strip())
        sides: dict[str, dict[str, Any]] = {"lang": {}, "task": {}}
        for part in parts:
            side, eq, setting = part.partition("=")
            targets = [side] if eq and side in SIDES else list(SIDES)
            if eq and side not in SIDES:
                raise UsageError(f"method {text!r}: {side!r} is not lang or task",
                                 hint="e.g. deftx@lang=energy:0.8, deftx@task=rank:16 or deftx@rank:16 (both)")
            values = _variant_settings(setting if eq else part, str(text))
            if values and not set(values) <= set(method.own_settings):
                raise UsageError(f"method {text!r}: {method.label} has no rank rule or tail to set",
                                 hint="settings after @ are DeFT-X's: deftx@rank:16")
            for target in targets:
                sides[target].update(values)
        return cls(method.name, tuple(sorted(sides["lang"].items())), tuple(sorted(sides["task"].items())))

    @property
    def name(self) -> str:
        """The canonical text: what ``parse`` reads back."""
        if self.plain:
            return self.method
        if self.lang_settings == self.task_settings:
            return f"{self.method}{VARIANT_SEP}{_settings_text(self.lang)}"
        return self.method + "".join(f"{VARIANT_SEP}{side}={_settings_text(getattr(self, side))}"
                                     for side in SIDES if getattr(self, side))

    @property
    def label(self) -> str:
        """For people: ``DeFT-X``, ``DeFT-X rank:16``, ``DeFT-X lang energy:0.8``."""
        base = get_method(self.method).label
        if self.plain:
            return base
        if self.lang_settings == self.task_settings:
            return f"{base} {_settings_label(self.lang)}"
        return " ".join([base, *(f"{side} {_settings_label(getattr(self, side))}" for side in SIDES if getattr(self, side))])

    def settings_for(self, kind: str) -> dict[str, Any]:
        """The TrainConfig settings this variant sets for a ``language`` or ``task`` SFT."""
        return {"method": self.method, **(self.lang if kind == "language" else self.task)}


def _variant_settings(text: str, whole: str) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for item in (i.strip() for i in text.split("+")):
        if not item:
            raise UsageError(f"method {whole!r}: an empty setting", hint="e.g. deftx@energy:0.8+tail:0.01")
        if item.startswith("tail:"):
            try:
                values["tail_keep"] = check_tail_keep(float(item.removeprefix("tail:")))
            except ValueError:
                raise UsageError(f"method {whole!r}: {item!r} is not tail:F with F in [0, 1]") from None
        else:
            values["rank_rule"] = str(RankRule.parse(item))
    return values


def _settings_text(settings: Mapping[str, Any]) -> str:
    parts = [str(settings["rank_rule"])] if "rank_rule" in settings else []
    if "tail_keep" in settings:
        parts.append(f"tail:{settings['tail_keep']:g}")
    return "+".join(parts)


def _settings_label(settings: Mapping[str, Any]) -> str:
    parts = [str(settings["rank_rule"])] if "rank_rule" in settings else []
    if "tail_keep" in settings:
        parts.append(f"tail {settings['tail_keep']:g}")
    return " ".join(parts)
