"""The two-phase sparse fine-tuning engine (LT-SFT / DeFT-X)."""

from deftx.training.engine import MaskSelection, TrainResult, choose_mask, select_device, train_sft
from deftx.training.sparse_adamw import SparseAdamW

__all__ = ["MaskSelection", "SparseAdamW", "TrainResult", "choose_mask", "select_device", "train_sft"]
