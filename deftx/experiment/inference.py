"""What a user does with trained SFTs besides evaluating them: classify their own sentences, and compose
SFTs into a ready Hugging Face model."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from deftx.data.encoded import encode_labelled
from deftx.data.labelled import LabelledData
from deftx.errors import UsageError
from deftx.experiment.evaluation import (
    composed_classifier,
    load_transfer_sfts,
    recorded_base_model,
)
from deftx.model import (
    load_model,
    load_tokenizer,
    model_reference,
    separate_shared_parameters,
    untie_output_embeddings,
)
from deftx.objectives.classification import class_probabilities
from deftx.records.files import atomic_write_json, now_iso, use_umask
from deftx.sft.diff import SparseDiff, compose
from deftx.version import __version__


def predict_texts(
    task_sft: Path,
    texts: Sequence[str],
    *,
    lang_sft: Path | None = None,
    model: str | Path | None = None,
    batch_size: int = 32,
    max_length: int | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """The label and the class probabilities of each text under theta0 + phi_lang + phi_task.

    For a sentence-pair task (NLI) a text holds the two sentences separated by a tab."""

    texts = [str(t) for t in texts]
    if not texts:
        raise UsageError("nothing to predict", hint="give sentences as arguments or --file")
    task_diff, lang_diff = load_transfer_sfts(task_sft, lang_sft)
    clf, tokenizer = composed_classifier(task_diff, lang_diff, model=model, force=force)
    labels = [clf.config.id2label[i] for i in range(clf.config.num_labels)]
    if max_length is None:
        max_length = int(task_diff.training.get("max_length") or 128)
    paired = any("\t" in t for t in texts)
    if paired and not all("\t" in t for t in texts):
        raise UsageError("some texts hold a tab (a sentence pair) and others do not",
                         hint="for a sentence-pair task give every text as 'premise<TAB>hypothesis'")
    firsts = [t.split("\t", 1)[0] for t in texts] if paired else texts
    seconds = [t.split("\t", 1)[1] for t in texts] if paired else None
    unlabelled = LabelledData(firsts, seconds, [0] * len(texts), tuple(labels), "the texts")
    encoded = encode_labelled(tokenizer, unlabelled, max_length, cache=False)
    probabilities = class_probabilities(clf, tokenizer, encoded, batch_size)
    predictions = []
    for text, probs in zip(texts, probabilities):
        best = max(range(len(labels)), key=lambda i: probs[i])
        predictions.append({"text": text, "label": labels[best],
                            "probabilities": {name: p for name, p in zip(labels, probs)}})
    return {
        "task": task_diff.manifest.get("task"),
        "labels": labels,
        "base_model": str(model or recorded_base_model([task_diff, lang_diff])),
        "task_sft": str(Path(task_sft).resolve()),
        "lang_sft": str(Path(lang_sft).resolve()) if lang_sft is not None else None,
        "language": lang_diff.manifest.get("language") if lang_diff is not None else None,
        "predictions": predictions,
    }


def compose_model(
    model: str | Path | None,
    sft_dirs: Sequence[Path],
    out: Path,
    *,
    force: bool = False,
    overwrite: bool = False,
) -> dict[str, Any]:
    """theta0 + sum of SFTs, saved with ``save_pretrained`` (and the tokenizer) into ``out``, with
    the task head when a task SFT is among them. Written to a temporary directory, then renamed.
    ``model`` None: the base model the SFTs record. ``force`` composes and applies SFTs whose base
    fingerprints differ (from each other or from the model)."""

    out = Path(out)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise UsageError(f"{out} already exists and is not empty", hint="choose another --out")
    if not sft_dirs:
        raise UsageError("give at least one --sft")
    sfts = [SparseDiff.load(p) for p in sft_dirs]
    model = model or recorded_base_model(sfts)
    combined = compose(sfts, force=force)
    labels = combined.manifest.get("labels")
    kind = "classification" if labels else "mlm"
    tokenizer = load_tokenizer(model)
    target, _ = load_model(model, kind, labels=labels)
    if kind == "mlm":  # as language SFTs are trained: the decoder untied and frozen at theta0
        untie_output_embeddings(target)
    combined.apply(target, force=force)
    if kind == "mlm":  # the untied decoder's bias is its head's bias: written under both names
        separate_shared_parameters(target)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    use_umask(tmp, directory=True)
    try:
        target.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        provenance = {
            "composed_by": f"deftx {__version__}",
            "base_model": model_reference(model),
            "sfts": [{"path": str(Path(p).resolve()), **{k: s.manifest.get(k) for k in ("kind", "method", "language", "task")}}
                     for p, s in zip(sft_dirs, sfts)],
            "entries": combined.n_entries,
            "created_at": now_iso(),
        }
        atomic_write_json(tmp / "deftx_compose.json", provenance)
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {"out": str(out), "kind": kind, "labels": labels, **provenance}
