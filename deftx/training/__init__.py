"""The two-phase sparse fine-tuning engine (LT-SFT / DeFT-X)."""

from deftx.training.engine import MaskSelection, TrainResult, choose_mask, select_device, train_sft

__all__ = ["MaskSelection", "TrainResult", "choose_mask", "select_device", "train_sft"]
