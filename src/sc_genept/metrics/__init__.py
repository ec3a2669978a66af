"""Flat and ontology-aware metrics for cell-type predictions."""

from ._metrics import (
    accuracy,
    evaluate,
    expected_calibration_error,
    hierarchical_prf,
    macro_f1,
    mean_distance,
    per_class_f1,
    sctab_adjusted,
    sctab_correct,
    shared_top_terms,
)

__all__ = [
    "accuracy",
    "evaluate",
    "expected_calibration_error",
    "hierarchical_prf",
    "macro_f1",
    "mean_distance",
    "per_class_f1",
    "sctab_adjusted",
    "sctab_correct",
    "shared_top_terms",
]
