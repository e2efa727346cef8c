"""The sparse fine-tuning methods: one config per method (LT-SFT, DeFT-X, full fine-tuning), what each
selects from a phase-1 difference (:mod:`~deftx.methods.selection`, :mod:`~deftx.methods.denoise`), and
the systems an evaluation measures. Importing this package does not import torch; selecting does.
"""

from deftx.methods.configs import (
    BASELINE_LABELS,
    METHODS,
    MULTI,
    NO_LANG_SFT,
    OTHER_LANG_SFT,
    PAIR,
    SPARSE_METHODS,
    SYSTEM_LABELS,
    SYSTEMS,
    TARGET_IN_SOURCES,
    VARIANT_SETTINGS,
    DeftX,
    FullFt,
    LtSft,
    MaskSelection,
    MethodConfig,
    MethodVariant,
    cache_settings,
    get_method,
    ignored_settings,
    is_sparse,
    method_of,
    method_settings,
    system_label,
)

__all__ = [
    "BASELINE_LABELS", "METHODS", "MULTI", "NO_LANG_SFT", "OTHER_LANG_SFT", "PAIR", "SPARSE_METHODS", "SYSTEMS", "SYSTEM_LABELS", "TARGET_IN_SOURCES", "VARIANT_SETTINGS",
    "DeftX", "FullFt", "LtSft", "MaskSelection", "MethodConfig", "MethodVariant", "cache_settings", "get_method",
    "ignored_settings", "is_sparse", "method_of", "method_settings", "system_label",
]
