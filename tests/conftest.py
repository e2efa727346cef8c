"""Shared fixtures.

Tests that need the real data and model in ``../shared`` use the ``shared_dir`` fixture: outside CI
they skip with a reason when it is missing; with ``CI=true`` a missing ``../shared`` is a failure.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("DEFTX_SHARED_DIR", REPO.parent / "shared"))


def _require_shared(sub: str) -> Path:
    path = SHARED / sub
    if not path.exists():
        message = f"{path} is missing (real data/model expected beside the checkout at ../shared)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (the reference data root)."""
    return _require_shared("data")


@pytest.fixture(scope="session")
def shared_model() -> Path:
    """``../shared/models/me5-small-mlm`` (a real multilingual encoder)."""
    return _require_shared("models/me5-small-mlm")


@pytest.fixture(scope="session")
def composable_fixture() -> Path:
    """``../shared/fixtures/composable-sft-sft`` (an SFT written by composable-sft's own code)."""
    return _require_shared("fixtures/composable-sft-sft")


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch, tmp_path):
    """Keep tests from reading the developer's environment or writing into the checkout."""
    monkeypatch.delenv("DEFTX_DATA_DIR", raising=False)
    monkeypatch.setenv("DEFTX_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("DEFTX_CACHE", str(tmp_path / "cache"))  # the prepared text of this test only
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")


# ---------------------------------------------------------------------------------------------
# tiny models, built from a config in seconds


def tiny_vocab() -> dict[str, int]:
    import string

    pieces = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    pieces += list(string.ascii_lowercase) + list(string.digits) + list(".,!?'\"-:;()/@#&")
    pieces += ["##" + c for c in string.ascii_lowercase + string.digits]
    pieces += ["film", "ini", "sangat", "bagus", "jelek", "tidak", "saya", "suka", "makanan", "enak"]
    return {p: i for i, p in enumerate(pieces)}


def build_tiny_model_dir(path: Path, seed: int = 0) -> Path:
    """A 2-layer BERT with a masked-LM head and a WordPiece tokenizer, saved like a hub model."""
    import torch
    from transformers import BertConfig, BertForMaskedLM, BertTokenizer

    vocab = tiny_vocab()
    config = BertConfig(
        vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=128, pad_token_id=0,
    )
    torch.manual_seed(seed)
    model = BertForMaskedLM(config)
    model.save_pretrained(path)
    BertTokenizer(vocab=vocab).save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    return build_tiny_model_dir(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="session")
def other_tiny_model_dir(tmp_path_factory) -> Path:
    """Same architecture, other weights: for fingerprint mismatches."""
    return build_tiny_model_dir(tmp_path_factory.mktemp("tiny-bert-other"), seed=1)
