"""deftx: zero-shot cross-lingual transfer with composable sparse fine-tuning.

The library is importable without torch: heavy modules (``deftx.sft``, ``deftx.training``,
``deftx.denoise``, ``deftx.selection``, ``deftx.evaluation``) import torch themselves, while
``deftx.runs``, ``deftx.errors``, ``deftx.config`` and ``deftx.data.registry`` stay light so that
the dashboard and ``deftx --help`` open fast.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
