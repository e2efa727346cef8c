"""The two-phase sparse fine-tuning engine (LT-SFT / DeFT-X)."""

from deftx.methods import MaskSelection
from deftx.training.engine import TrainResult, select_device, train_sft

__all__ = ["MaskSelection", "TrainResult", "select_device", "train_sft"]
