"""Loading encoders and naming their parameters the way SFTs store them.

Sparse diffs are keyed by parameter names *relative to the base model* (``encoder.layer.0...``), so
one language SFT trained in a masked-LM model applies unchanged to the sequence-classification model
of the same encoder. Dense head parameters keep their full names (``classifier.weight``).
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterable
from pathlib import Path

import torch
from torch import nn

from deftx.errors import InputNotFoundError, UsageError
from deftx.hub import hub_offline, looks_like_path

LAYER_NORM = re.compile(r"(^|\.)(LayerNorm|layer_norm|layernorm|ln_\w+|norm)\.", re.IGNORECASE)
FINGERPRINT_ATTR = "_deftx_base_fingerprint"
SOURCE_ATTR = "_deftx_source"


def is_layer_norm(name: str) -> bool:
    return bool(LAYER_NORM.search(name))


def base_prefix(model: nn.Module) -> str:
    prefix = getattr(model, "base_model_prefix", "") or ""
    return prefix if prefix and hasattr(model, prefix) else ""


def base_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    """Parameters of the encoder (``model.base_model``) by base-relative name."""
    prefix = base_prefix(model)
    base = getattr(model, prefix) if prefix else model
    return dict(base.named_parameters())


def full_name(model: nn.Module, relative: str) -> str:
    prefix = base_prefix(model)
    return f"{prefix}.{relative}" if prefix else relative


def head_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    """Parameters outside the encoder (classifier, MLM head), by full name; tied ones excluded."""
    prefix = base_prefix(model)
    if not prefix:
        return {}
    base_ids = {id(p) for p in getattr(model, prefix).parameters()}
    return {
        name: p
        for name, p in model.named_parameters()
        if not name.startswith(prefix + ".") and id(p) not in base_ids
    }


def maskable_parameters(model: nn.Module, exclude: Iterable[str] = ()) -> dict[str, nn.Parameter]:
    """Every encoder parameter except LayerNorm ones (and any matching ``exclude`` regexes)."""
    patterns = [re.compile(p) for p in exclude]
    return {
        name: p
        for name, p in base_parameters(model).items()
        if not is_layer_norm(name) and not any(pat.search(name) for pat in patterns)
    }


def fingerprint(model: nn.Module) -> str:
    """A fingerprint of the base weights: names, shapes and evenly spaced samples of every encoder
    parameter (pooler excluded: masked-LM models have none), rounded to bfloat16 so that the same
    checkpoint loaded in float32, float16 or bfloat16 gives the same fingerprint.

    Cached on the model when first computed: compute it (or load through :func:`load_model`)
    before applying any SFT."""
    cached = getattr(model, FINGERPRINT_ATTR, None)
    if cached:
        return cached
    digest = hashlib.sha256()
    with torch.no_grad():
        for name, p in sorted(base_parameters(model).items()):
            if name.startswith("pooler."):
                continue
            flat = p.detach().reshape(-1)
            n = flat.numel()
            m = min(n, 1024)
            idx = (torch.arange(m, dtype=torch.int64) * (n - 1) // max(m - 1, 1)).to(flat.device)
            sample = flat[idx].to(torch.bfloat16).view(torch.int16).cpu()
            digest.update(f"{name}:{tuple(p.shape)};".encode())
            digest.update(sample.numpy().tobytes())
    value = "sha256:" + digest.hexdigest()[:32]
    setattr(model, FINGERPRINT_ATTR, value)
    return value


def _quiet_transformers() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    logging.getLogger("transformers").setLevel(logging.ERROR)


def is_local_model(model_id: str | Path) -> bool:
    """Whether a model argument names a local directory (else it is a hub id)."""
    text = str(model_id)
    return Path(text).expanduser().exists() or looks_like_path(text)


def model_reference(model_id: str | Path) -> str:
    """How a base model is recorded in run and SFT manifests, so that it resolves from any working
    directory: a local directory as an absolute path, a hub id as it is."""
    if is_local_model(model_id):
        return str(Path(str(model_id)).expanduser().resolve())
    return str(model_id)


def _in_hub_cache(repo_id: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)
    except Exception:  # a malformed id, an unreadable cache: not there
        return False


def check_model_source(model_id: str | Path) -> str:
    """A local directory must hold a config.json; anything else is treated as a hub id, which must be
    in the local cache when the hub is out of reach (failing at once, not after the client's retries)."""
    text = str(model_id)
    path = Path(text).expanduser()
    if is_local_model(text):
        if not path.exists():
            raise InputNotFoundError(f"model directory {text} does not exist")
        if not (path / "config.json").is_file():
            raise InputNotFoundError(f"{text} is not a Hugging Face model directory (no config.json)")
        return str(path)
    if hub_offline() and not _in_hub_cache(text):
        raise InputNotFoundError(
            f"model {text} is not a local directory, and the Hugging Face hub is out of reach (offline)",
            hint="give a local model directory with --model, e.g. ../shared/models/me5-small-mlm",
        )
    return text


def _local_only(source: str) -> bool:
    """Load a hub model from the cache alone when the hub is out of reach."""
    return not is_local_model(source) and hub_offline()


def load_tokenizer(model_id: str | Path):
    from transformers import AutoTokenizer

    _quiet_transformers()
    source = check_model_source(model_id)
    try:
        return AutoTokenizer.from_pretrained(source, local_files_only=_local_only(source))
    except OSError as exc:
        raise InputNotFoundError(
            f"could not load the tokenizer of {source}: {_first_line(exc)}",
            hint="check the model id or path; offline, give a local model directory",
        ) from None


# Encoders whose position ids start after the padding index (RoBERTa's scheme): 2 positions fewer.
OFFSET_POSITIONS = ("roberta", "xlm-roberta", "xlm-roberta-xl", "camembert", "xmod", "roberta-prelayernorm")


def model_positions(model_id: str | Path) -> int | None:
    """The longest input (in tokens) the model takes, from its config (``None`` when it does not say)."""
    from transformers import AutoConfig

    _quiet_transformers()
    source = check_model_source(model_id)
    try:
        config = AutoConfig.from_pretrained(source, local_files_only=_local_only(source))
    except (OSError, ValueError) as exc:
        raise InputNotFoundError(f"could not load the config of {source}: {_first_line(exc)}",
                                 hint="check the model id or path; offline, give a local model directory") from None
    positions = getattr(config, "max_position_embeddings", None)
    if not isinstance(positions, int) or positions <= 0:
        return None
    if getattr(config, "model_type", None) in OFFSET_POSITIONS:
        pad = getattr(config, "pad_token_id", None)
        positions -= (1 if pad is None else pad) + 1
    return positions


def check_max_length(model_id: str | Path, max_length: int, option: str = "--max-length") -> None:
    """Refuse a sequence length the model has no positions for, before any work. ``option`` names the
    setting in the message (``--max-length``; ending in ``=``: ``--lang-set max_length=``)."""
    positions = model_positions(model_id)
    if positions is not None and max_length > positions:
        given = (lambda n: f"{option}{n}") if option.endswith("=") else (lambda n: f"{option} {n}")
        raise UsageError(f"{given(max_length)} is longer than {model_id} takes ({positions} tokens)",
                         hint=f"choose {given(positions)} or less")


def load_model(
    model_id: str | Path,
    kind: str,
    *,
    labels: Iterable[str] | None = None,
    dtype: torch.dtype = torch.float32,
) -> tuple[nn.Module, list[str]]:
    """Load an encoder with a masked-LM (``kind="mlm"``) or sequence-classification head.

    Returns the model (with its base fingerprint cached) and the names of newly initialised
    parameters (full names)."""
    from transformers import AutoModelForMaskedLM, AutoModelForSequenceClassification

    _quiet_transformers()
    source = check_model_source(model_id)
    try:
        if kind == "mlm":
            model, info = AutoModelForMaskedLM.from_pretrained(source, output_loading_info=True, dtype=dtype,
                                                               local_files_only=_local_only(source))
        elif kind == "classification":
            labels = list(labels or [])
            if not labels:
                raise UsageError("a classification model needs its label names")
            model, info = AutoModelForSequenceClassification.from_pretrained(
                source,
                num_labels=len(labels),
                id2label=dict(enumerate(labels)),
                label2id={label: i for i, label in enumerate(labels)},
                output_loading_info=True,
                dtype=dtype,
                local_files_only=_local_only(source),
            )
        else:
            raise ValueError(f"unknown model kind {kind!r}")
    except OSError as exc:
        raise InputNotFoundError(
            f"could not load model {source}: {_first_line(exc)}",
            hint="check the model id or path; offline, give a local model directory",
        ) from None
    except ValueError as exc:
        raise UsageError(f"{source} cannot be loaded as a {kind} model: {_first_line(exc)}") from None
    setattr(model, SOURCE_ATTR, str(model_id))
    fingerprint(model)
    return model, sorted(info.get("missing_keys", []))


def model_from_config(config, kind: str, labels: Iterable[str] | None = None, seed: int = 0) -> nn.Module:
    """A model built from a config (random weights, fixed seed): for tests and tiny examples."""
    from transformers import AutoModelForMaskedLM, AutoModelForSequenceClassification

    _quiet_transformers()
    torch.manual_seed(seed)
    if kind == "mlm":
        return AutoModelForMaskedLM.from_config(config)
    labels = list(labels or [])
    config.num_labels = len(labels)
    config.id2label = dict(enumerate(labels))
    config.label2id = {label: i for i, label in enumerate(labels)}
    return AutoModelForSequenceClassification.from_config(config)


def untie_output_embeddings(model: nn.Module) -> nn.Parameter | None:
    """Give a masked-LM model an output decoder of its own (a frozen copy of the word embeddings), so
    that sparse training of the input embeddings leaves the decoder alone, as LT-SFT does."""
    output = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    inputs = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    if output is None or inputs is None:
        return None
    if output.weight is inputs.weight:
        output.weight = nn.Parameter(inputs.weight.detach().clone())
    if hasattr(model.config, "tie_word_embeddings"):
        model.config.tie_word_embeddings = False
    output.weight.requires_grad_(False)
    return output.weight


def separate_shared_parameters(model: nn.Module) -> list[str]:
    """Give every parameter that is the same tensor as an earlier one (a masked-LM decoder's bias is
    its head's ``bias``) a copy of its own, so that ``save_pretrained`` writes every key: a model
    saved with ``tie_word_embeddings`` false is loaded without those ties, and a key written once
    would be missing (filled with zeros). Returns the full names of the parameters copied."""
    seen: set[int] = set()
    copied = []
    for module_name, module in model.named_modules():
        for name, parameter in list(module._parameters.items()):
            if parameter is None:
                continue
            if id(parameter) in seen:
                module._parameters[name] = nn.Parameter(parameter.detach().clone(), requires_grad=parameter.requires_grad)
                copied.append(f"{module_name}.{name}" if module_name else name)
            else:
                seen.add(id(parameter))
    return copied


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
