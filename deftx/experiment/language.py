"""Language SFTs: masked-LM on unlabelled text of one language, and the held-out masked-LM evaluation
of a base model with or without a language SFT."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from deftx.config import TrainConfig
from deftx.data import canonical_language, load_unlabelled_text
from deftx.errors import ArtifactError, DataFormatError
from deftx.experiment.lifecycle import (
    Checkpointing,
    EventCallback,
    Prepared,
    TrainOutcome,
    check_mask_base,
    content_digest,
    prepare_outputs,
    seed_new_weights,
    train_in_run,
)
from deftx.model import (
    head_parameters,
    load_model,
    load_tokenizer,
    model_reference,
    untie_output_embeddings,
)
from deftx.objectives import MaskedLMObjective
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
    runs_dir: Path,
    run_id: str | None = None,
    out: Path | None = None,
    keep_phase1_diff: bool = False,
    mask_file: Path | None = None,
    callbacks: Iterable[EventCallback] = (),
    command: list[str] | None = None,
    checkpointing: Checkpointing | None = None,
) -> TrainOutcome:
    """A language SFT by masked-LM on unlabelled ``lang`` text. ``checkpointing``: how often to
    checkpoint, and whether to resume an interrupted run (see :class:`Checkpointing`)."""

    lang = canonical_language(lang)
    mask, mask_meta, config = prepare_outputs(out, mask_file, config)
    lines, sources, mlm, missing, decoder, objective = _masked_lm_setup(lang, config, model, data_dir, text_files)
    head = {n: p for n, p in head_parameters(mlm).items() if p is not decoder}
    mode = _mlm_head_mode(config, model, missing, head)
    named = dict(mlm.named_parameters())
    base_missing = [n for n in missing if n in named and named[n] is not decoder and n not in head]
    check_mask_base(mask_meta, mlm)
    prepared = Prepared(
        kind="language", model=mlm, objective=objective,
        dense=sorted(set(head if mode == "train" else []) | set(base_missing)),
        manifest={"kind": "language", "language": lang, "base_model": model_reference(model),
                  "data": {"sources": sources, "lines": len(lines), "blocks": objective.num_examples()}, "mlm_head": mode},
        languages={"target": lang},
        run_config={**config.model_dump(mode="json"), "mlm_head_resolved": mode, "text_sources": sources},
        resume_settings={"mlm_head": mode, "text_sources": sources, "data_sha256": content_digest(list(lines))},
    )
    return train_in_run(prepared, config, model=model, mask=mask, mask_meta=mask_meta, runs_dir=runs_dir,
                        run_id=run_id, out=out, keep_phase1_diff=keep_phase1_diff, callbacks=callbacks,
                        command=command, checkpointing=checkpointing)


def _masked_lm_setup(lang: str, config: TrainConfig, model: str | Path, data_dir: str | Path | None,
                     text_files: Sequence[str | Path] | None):
    """What a language SFT trains on and from: ``(lines, sources, model, missing, decoder, objective)``,
    the text and its training and held-out blocks, and the masked-LM model with its decoder untied."""

    lines, sources = load_unlabelled_text(lang, data_dir, text_files, max_lines=config.max_examples, seed=config.seed)
    tokenizer = load_tokenizer(model)
    seed_new_weights(config.seed)  # a head that loading initialises follows the seed
    mlm, missing = load_model(model, "mlm")
    decoder = untie_output_embeddings(mlm)
    objective = MaskedLMObjective(
        tokenizer, lines, max_length=config.max_length, mlm_probability=config.mlm_probability, seed=config.seed
    )
    return lines, sources, mlm, missing, decoder, objective


def evaluate_language_model(
    lang: str,
    config: TrainConfig,
    *,
    model: str | Path,
    sft: Path | None = None,
    data_dir: str | Path | None = None,
    text_files: Sequence[str | Path] | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Held-out masked-LM loss, accuracy and perplexity of the base model, and with the language SFT
    ``sft`` applied, on ``lang``'s held-out blocks built exactly as a language SFT trained with
    ``config`` builds them (text, line subset, block length, seed, masking): the ``base`` numbers equal
    the ``base_eval`` such a training records.

    A language SFT also repairs a weak masked-LM head; another language's SFT measured on the same
    text tells that part apart from what the SFT knows of the language."""

    lang = canonical_language(lang)
    lang_sft = None
    if sft is not None:
        lang_sft = SparseDiff.load(sft)
        if lang_sft.kind != "language":
            raise ArtifactError(f"{sft} is a {lang_sft.manifest.get('kind')} SFT, not a language SFT")
    lines, sources, mlm, _, _, objective = _masked_lm_setup(lang, config, model, data_dir, text_files)
    if objective.validation is None:
        raise DataFormatError(f"too little {lang} text for held-out blocks ({objective.blocks.shape[0]} blocks; 50 needed)",
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
        "text_sources": sources,
        "lines": len(lines),
        "held_out_blocks": int(objective.validation.shape[0]),
        "max_length": config.max_length,
        "seed": config.seed,
        "base": base,
        "sft": str(Path(sft).resolve()) if sft is not None else None,
        "sft_language": lang_sft.manifest.get("language") if lang_sft is not None else None,
        "sft_phase1_steps": lang_sft.training.get("phase1_steps") if lang_sft is not None else None,
        "with_sft": with_sft,
    }
