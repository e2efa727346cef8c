"""Language SFTs: masked-LM on unlabelled text of one language, and the held-out masked-LM evaluation
of a base model with or without a language SFT."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from deftx.config import TrainConfig
from deftx.data import canonical_language
from deftx.data.blocks import TextBlocks, prepare_blocks, text_spec
from deftx.data.stream import BlockStream
from deftx.data.text import HubText, choose_text_mode, resolve_text_sources
from deftx.errors import ArtifactError, DataFormatError
from deftx.experiment.lifecycle import (
    Checkpointing,
    EventCallback,
    Prepared,
    TrainOutcome,
    check_mask_base,
    prepare_outputs,
    seed_new_weights,
    train_in_run,
)
from deftx.model import (
    check_max_length,
    head_parameters,
    load_model,
    load_tokenizer,
    model_reference,
    untie_output_embeddings,
)
from deftx.objectives import MaskedLMObjective, StreamingMaskedLMObjective
from deftx.sft.diff import SparseDiff


def _mlm_head_mode(config: TrainConfig, model_id: str | Path, missing: Iterable[str], head_names: Iterable[str]) -> str:
    """``train`` when the MLM head is not pretrained (newly initialised by from_pretrained, or a
    local model marked by a ``head_warmup.json``), else ``freeze`` (as LT-SFT does)."""
    if config.mlm_head != "auto":
        return config.mlm_head
    missing = set(missing)
    if any(name in missing for name in head_names):
        return "train"
    path = Path(str(model_id))
    if path.is_dir() and (path / "head_warmup.json").is_file():
        return "train"
    return "freeze"


def train_language_sft(
    lang: str,
    config: TrainConfig,
    *,
    model: str | Path,
    data_dir: str | Path | None = None,
    text_files: Sequence[str | Path] | None = None,
    text_dataset: HubText | None = None,
    text_mode: str = "auto",
    workers: int | None = None,
    runs_dir: Path,
    run_id: str | None = None,
    out: Path | None = None,
    keep_phase1_diff: bool = False,
    mask_file: Path | None = None,
    callbacks: Iterable[EventCallback] = (),
    command: list[str] | None = None,
    checkpointing: Checkpointing | None = None,
) -> TrainOutcome:
    """A language SFT by masked-LM on unlabelled ``lang`` text: the data root's text of the language,
    ``text_files`` (files, directories, globs; plain or compressed) or ``text_dataset`` (a hub data
    set). The text is tokenised once into the cache (``workers`` tokenizer threads; see
    :mod:`deftx.data.blocks`), inside the run, whose ``metrics.jsonl`` follows the preparation.
    ``checkpointing``: how often to checkpoint, and whether to resume an interrupted run."""
    lang = canonical_language(lang)
    mask, mask_meta, config = prepare_outputs(out, mask_file, config)
    text = _TextSetup(lang, config, model, data_dir, text_files, text_dataset, workers, text_mode)
    mlm, missing, decoder = _masked_lm_model(config, model)
    head = {n: p for n, p in head_parameters(mlm).items() if p is not decoder}
    mode = _mlm_head_mode(config, model, missing, head)
    named = dict(mlm.named_parameters())
    base_missing = [n for n in missing if n in named and named[n] is not decoder and n not in head]
    check_mask_base(mask_meta, mlm)
    manifest = {"kind": "language", "language": lang, "base_model": model_reference(model), "mlm_head": mode}

    def objective(emit: EventCallback) -> MaskedLMObjective:
        made = text.objective(progress=lambda fields: emit("prepare", fields))
        manifest["data"] = text.data_manifest(made)
        return made

    prepared = Prepared(
        kind="language", model=mlm, objective=objective,
        dense=sorted(set(head if mode == "train" else []) | set(base_missing)),
        manifest=manifest, languages={"target": lang},
        run_config={**config.model_dump(mode="json"), "mlm_head_resolved": mode, "text_sources": text.names},
        resume_settings={"mlm_head": mode, "text_sources": text.names, "text_key": text.key},
        data=text.record,
    )
    return train_in_run(prepared, config, model=model, mask=mask, mask_meta=mask_meta, runs_dir=runs_dir,
                        run_id=run_id, out=out, keep_phase1_diff=keep_phase1_diff, callbacks=callbacks,
                        command=command, checkpointing=checkpointing)


class _TextSetup:
    """A language's text for masked-LM: its sources, whether it is cached or streamed, and its key
    (known before any tokenising); once prepared, its blocks (cached) and the objective over them."""

    def __init__(self, lang: str, config: TrainConfig, model: str | Path, data_dir: str | Path | None,
                 text_files: Sequence[str | Path] | None, text_dataset: HubText | None, workers: int | None,
                 mode: str = "auto") -> None:
        self.config, self.workers = config, workers
        self.sources = resolve_text_sources(lang, data_dir, list(text_files or []), text_dataset)
        self.names = [f"{s.description} ({s.name})" for s in self.sources]
        self.mode = choose_text_mode(mode, self.sources, max_lines=config.max_examples,
                                     tokens_read=_tokens_read(config))
        check_max_length(model, config.max_length)  # after the sources are checked, before any text is read
        self.tokenizer = load_tokenizer(model)
        self.spec = text_spec(self.sources, self.tokenizer, max_length=config.max_length,
                              max_lines=config.max_examples, seed=config.seed)
        self.key = self.spec.key if self.mode == "cache" else f"stream-{self.spec.key}"
        self.blocks: TextBlocks | None = None

    def objective(self, progress: Any = None) -> MaskedLMObjective:
        config = self.config
        if self.mode == "stream":
            if self.workers:
                os.environ["RAYON_NUM_THREADS"] = str(self.workers)
            stream = BlockStream(self.sources, self.tokenizer, max_length=config.max_length,
                                 max_lines=config.max_examples)
            if progress is not None:
                progress({"stage": "streaming", "message": "the text is streamed: tokenised as training reads it"})
            return StreamingMaskedLMObjective(self.tokenizer, stream, max_length=config.max_length,
                                              mlm_probability=config.mlm_probability, seed=config.seed)
        self.blocks = prepare_blocks(self.sources, self.tokenizer, max_length=config.max_length,
                                     max_lines=config.max_examples, seed=config.seed, workers=self.workers,
                                     progress=progress, spec=self.spec)
        return MaskedLMObjective(self.tokenizer, self.blocks.blocks, max_length=config.max_length,
                                 mlm_probability=config.mlm_probability, seed=config.seed)

    def record(self) -> dict[str, Any]:
        """What run.json records of the text."""
        if self.blocks is not None:
            return {"mode": "cache", **self.blocks.record()}
        sizes = [s.size() for s in self.sources]
        return {"mode": "stream", "sources": self.names, "bytes": sum(sizes) if None not in sizes else None,
                "text_key": self.key}

    def data_manifest(self, objective: Any) -> dict[str, Any]:
        """What the SFT's manifest records of its data."""
        if self.blocks is None:
            return {"sources": self.names, "mode": "stream", "text_key": self.key}
        return {"sources": self.blocks.stats.get("sources"), "lines": self.blocks.stats.get("lines_kept"),
                "blocks": objective.num_examples(), "cache_key": self.spec.key}


def _tokens_read(config: TrainConfig) -> int:
    """About how many tokens a training reads (budgets in steps; 0 when in epochs: the text is read whole)."""
    steps = [config.phase_budget(phase)[0] for phase in (1, 2)]
    return sum(s or 0 for s in steps) * config.batch_size * config.max_length


def _masked_lm_model(config: TrainConfig, model: str | Path):
    """The masked-LM model with its decoder untied: ``(model, missing, decoder)`` (a head that loading
    initialises follows the seed)."""
    seed_new_weights(config.seed)
    mlm, missing = load_model(model, "mlm")
    return mlm, missing, untie_output_embeddings(mlm)


def evaluate_language_model(
    lang: str,
    config: TrainConfig,
    *,
    model: str | Path,
    sft: Path | None = None,
    data_dir: str | Path | None = None,
    text_files: Sequence[str | Path] | None = None,
    text_dataset: HubText | None = None,
    text_mode: str = "auto",
    workers: int | None = None,
    force: bool = False,
    progress: Any = None,
) -> dict[str, Any]:
    """Held-out masked-LM loss, accuracy and perplexity of the base model, and with the language SFT
    ``sft`` applied, on ``lang``'s held-out blocks built exactly as a language SFT trained with
    ``config`` builds them (text, line subset, block length, seed, masking): the ``base`` numbers equal
    the ``base_eval`` such a training records.

    A language SFT also repairs a weak masked-LM head; another language's SFT measured on the same
    text tells that part apart from what the SFT knows of the language."""
    lang = canonical_language(lang)
    check_max_length(model, config.max_length)
    lang_sft = None
    if sft is not None:
        lang_sft = SparseDiff.load(sft)
        if lang_sft.kind != "language":
            raise ArtifactError(f"{sft} is a {lang_sft.manifest.get('kind')} SFT, not a language SFT")
    text = _TextSetup(lang, config, model, data_dir, text_files, text_dataset, workers, text_mode)
    objective = text.objective(progress)
    mlm, _, _ = _masked_lm_model(config, model)
    if objective.validation is None:
        raise DataFormatError(f"too little {lang} text for held-out blocks ({len(objective.blocks)} blocks; 50 needed)",
                              hint="give more text, or a smaller --max-length")
    batch_size = max(config.batch_size, 32)  # as the training's evaluations (the masking follows the batches)
    base = objective.evaluate(mlm, batch_size)
    with_sft = None
    if lang_sft is not None:
        lang_sft.apply(mlm, force=force)
        with_sft = objective.evaluate(mlm, batch_size)
    return {
        "language": lang,
        "base_model": model_reference(model),
        "text_sources": text.names,
        "lines": text.blocks.stats.get("lines_kept") if text.blocks is not None else None,
        "held_out_blocks": int(objective.validation.shape[0]),
        "max_length": config.max_length,
        "seed": config.seed,
        "base": base,
        "sft": str(Path(sft).resolve()) if sft is not None else None,
        "sft_language": lang_sft.manifest.get("language") if lang_sft is not None else None,
        "sft_phase1_steps": lang_sft.training.get("phase1_steps") if lang_sft is not None else None,
        "with_sft": with_sft,
    }
