"""The two-phase sparse fine-tuning engine (LT-SFT / DeFT-X)."""

from deftx.methods import MaskSelection
from deftx.training.engine import TrainResult, select_device, train_sft
from deftx.training.sparse_adamw import SparseAdamW

__all__ = ["MaskSelection", "SparseAdamW", "TrainResult", "select_device", "train_sft"]
