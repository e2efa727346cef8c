"""Training objectives: masked-LM for language SFTs, sequence classification for task SFTs.

An objective owns its tokenised data and knows how to batch it, compute a loss and evaluate.
"""

from deftx.objectives.base import Objective
from deftx.objectives.classification import ClassificationObjective
from deftx.objectives.mlm import MaskedLMObjective, StreamingMaskedLMObjective

__all__ = ["Objective", "MaskedLMObjective", "StreamingMaskedLMObjective", "ClassificationObjective"]
