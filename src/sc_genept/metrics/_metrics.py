"""Flat and ontology-aware metrics for cell-type predictions.

Every function takes one label per cell in ``y_true`` and ``y_pred`` (equally long, not
empty) and refuses missing labels (``None``, ``NaN``, or their text forms such as
``"nan"``) with an error that says how many and where: an unlabelled cell has no right
answer, and a missing prediction has no place in the hierarchy. Drop such cells first, or,
to count an abstention as "no information", predict the root ``"CL:0000000"`` ("cell") for
it. The flat metrics compare labels as given; the ontology-aware ones take CL ids, names,
synonyms or everyday names ("CD14+ Monocyte", "B cells", "NK") and map them with
:meth:`~sc_genept.ontology.CellOntology.map_labels`, as ``genept_annotate`` does its
reference labels (see :meth:`~sc_genept.ontology.CellOntology.match`).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from sc_genept.ontology import CellOntology

from sc_genept._checks import positive_int


def accuracy(y_true: Sequence[str], y_pred: Sequence[str]) -> float:
    """Fraction of exact matches.

    Labels are compared as given: map names and ids to one form first (e.g. with
    :meth:`~sc_genept.ontology.CellOntology.map_labels`), or use :func:`evaluate`. CL ids
    on one side and names on the other (one all ids, the other none) never match, and are
    refused with a :class:`ValueError` rather than scored 0.
    """
    y_true, y_pred = _flat(y_true, y_pred)
    return float(np.mean(y_true == y_pred))


def per_class_f1(y_true: Sequence[str], y_pred: Sequence[str]) -> pd.Series:
    """F1 of each class present in ``y_true``; labels are compared as given (see :func:`accuracy`)."""
    y_true, y_pred = _flat(y_true, y_pred)
    scores = {}
    for label in np.unique(y_true):
        tp = np.sum((y_true == label) & (y_pred == label))
        wrong = np.sum((y_true != label) & (y_pred == label)) + np.sum(
            (y_true == label) & (y_pred != label)
        )
        scores[label] = 2 * tp / (2 * tp + wrong) if tp else 0.0
    return pd.Series(scores, name="f1", dtype=float)


def macro_f1(y_true: Sequence[str], y_pred: Sequence[str]) -> float:
    """F1 averaged over the classes present in ``y_true``.

    Averaging over the true classes only keeps a prediction at another level of the
    ontology (never a true class) from adding a zero-F1 class of its own; it still costs
    recall of the true class.
    """
    scores = per_class_f1(y_true, y_pred)
    return float(scores.mean()) if len(scores) else float("nan")


def sctab_correct(
    y_true: Sequence[str], y_pred: Sequence[str], ontology: CellOntology
) -> np.ndarray:
    """ScTab's rule: a prediction is right if it is the true term or one of its descendants.

    Labels may be CL ids, names, synonyms or everyday names (see
    :meth:`~sc_genept.ontology.CellOntology.match`).
    """
    y_true, y_pred = _terms(y_true, y_pred, ontology)
    return np.array([ontology.is_ancestor(t, p) for t, p in zip(y_true, y_pred, strict=True)])


def sctab_adjusted(
    y_true: Sequence[str], y_pred: Sequence[str], ontology: CellOntology
) -> np.ndarray:
    """Predictions with every scTab-correct one replaced by the true label (feed to flat metrics).

    Labels keep the form they were given in, so the result compares with ``y_true``.
    """
    correct = sctab_correct(y_true, y_pred, ontology)
    return np.where(correct, *_arrays(y_true, y_pred))


def shared_top_terms(labels: Iterable[str], ontology: CellOntology) -> frozenset[str]:
    """Terms strictly above every label ("cell", "hematopoietic cell", …).

    Every cell gets them right, so they say nothing about a prediction. A term that is
    itself one of the labels is never among them. Labels may be CL ids, names, synonyms or
    everyday names; none gives the empty set.
    """
    labels = set(_to_terms(_labels(labels, "labels"), ontology, "labels"))
    sets = [ontology.ancestors(t) for t in labels]
    return frozenset.intersection(*sets) - labels if sets else frozenset()


def hierarchical_prf(
    y_true: Sequence[str],
    y_pred: Sequence[str],
    ontology: CellOntology,
    *,
    exclude: Iterable[str] | str = "shared",
) -> tuple[float, float, float]:
    """Hierarchical precision, recall and F1 (Kiritchenko et al. 2005), micro-averaged.

    Each term stands for itself and all its ancestors; precision is the share of the
    predicted terms' ancestor sets that are also in the true terms' sets, recall the
    reverse.

    Parameters
    ----------
    exclude
        Terms left out of every ancestor set. ``"shared"`` (default): the terms above every
        true label (see :func:`shared_top_terms`), which every cell trivially gets right
        and which would otherwise inflate the scores. Pass ``()`` to keep everything.
    """
    y_true, y_pred = _terms(y_true, y_pred, ontology)
    excluded = _excluded(exclude, y_true, ontology)
    overlap = n_pred = n_true = 0
    for t, p in zip(y_true, y_pred, strict=True):
        a_true = ontology.ancestors(t, include_self=True) - excluded
        a_pred = ontology.ancestors(p, include_self=True) - excluded
        overlap += len(a_true & a_pred)
        n_pred += len(a_pred)
        n_true += len(a_true)
    precision = overlap / n_pred if n_pred else 0.0
    recall = overlap / n_true if n_true else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def mean_distance(y_true: Sequence[str], y_pred: Sequence[str], ontology: CellOntology) -> float:
    """Mean number of ``is_a`` edges between prediction and truth (0 when exact).

    Paths run through a common ancestor; see :meth:`~sc_genept.ontology.CellOntology.distance`.
    """
    y_true, y_pred = _terms(y_true, y_pred, ontology)
    return float(np.mean([ontology.distance(t, p) for t, p in zip(y_true, y_pred, strict=True)]))


def expected_calibration_error(
    confidence: Sequence[float], correct: Sequence[bool], *, n_bins: int = 15
) -> float:
    """Expected calibration error: how far stated confidence is from the accuracy achieved.

    Cells are put in ``n_bins`` equal-width bins of confidence; ECE is the mean over cells
    of ``|accuracy of the bin − mean confidence of the bin|`` :cite:p:`Guo2017`. 0 means a
    confidence of 0.8 is right 80 % of the time.

    Parameters
    ----------
    confidence
        Probability given to each prediction, in [0, 1].
    correct
        Whether each prediction was right.
    n_bins
        Number of bins.
    """
    n_bins = positive_int("n_bins", n_bins)
    confidence = np.asarray(confidence, dtype=np.float64)
    correct = np.asarray(correct, dtype=object)
    if pd.isna(correct).any():  # bool(NaN) is True: a missing outcome would count as right
        raise ValueError(
            f"correct has {int(pd.isna(correct).sum())} missing values (NaN/None): score only "
            "cells whose outcome is known."
        )
    correct = correct.astype(bool)
    if confidence.shape != correct.shape or confidence.ndim != 1:
        raise ValueError(
            f"confidence and correct must be 1-D and equally long: {confidence.shape} vs "
            f"{correct.shape}."
        )
    if not np.all((confidence >= 0) & (confidence <= 1)):
        raise ValueError("confidence must be probabilities in [0, 1] (no NaN).")
    if not len(confidence):
        raise ValueError("confidence and correct are empty: there is nothing to calibrate.")
    bins = np.minimum((confidence * n_bins).astype(int), n_bins - 1)
    gap = 0.0
    for b in np.unique(bins):
        in_bin = bins == b
        gap += in_bin.sum() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    return float(gap / len(confidence))


def evaluate(
    y_true: Sequence[str],
    y_pred: Sequence[str],
    ontology: CellOntology | None = None,
    *,
    exclude: Iterable[str] | str = "shared",
) -> pd.DataFrame:
    """All metrics side by side, one row each.

    Parameters
    ----------
    y_true, y_pred
        One label per cell: CL ids, names, synonyms or everyday names such as "CD4+ T
        cells", in any mix (mapped with
        :meth:`~sc_genept.ontology.CellOntology.map_labels`; obsolete ids are followed to
        their replacement with a warning). Missing labels are refused: drop those cells.
    ontology
        The Cell Ontology; default the bundled release.
    exclude
        Terms left out of the hierarchical scores; see :func:`hierarchical_prf`.

    Returns
    -------
    A frame indexed by metric name with a ``value`` column: ``accuracy``, ``macro_f1``,
    ``sctab_accuracy``, ``sctab_macro_f1``, ``hierarchical_precision``,
    ``hierarchical_recall``, ``hierarchical_f1`` and ``mean_ontology_distance``.
    ``attrs["excluded_terms"]`` lists the terms left out of the hierarchical scores.

    Raises
    ------
    ValueError
        If the inputs differ in length or are empty, if a label is missing, or if a label
        maps to no live CL term (the message says which, in how many cells, and why).
    """
    from sc_genept.ontology import CellOntology

    if ontology is not None and not isinstance(ontology, CellOntology):
        raise TypeError(
            f"ontology must be a CellOntology, got {type(ontology).__name__}: pass "
            f"CellOntology.load({ontology!r}), or leave it out for the bundled CL."
        )
    ontology = ontology or CellOntology.load()
    y_true, y_pred = _terms(y_true, y_pred, ontology)
    excluded = _excluded(exclude, y_true, ontology)
    adjusted = sctab_adjusted(y_true, y_pred, ontology)
    h_precision, h_recall, h_f1 = hierarchical_prf(y_true, y_pred, ontology, exclude=excluded)
    table = pd.DataFrame(
        {
            "value": pd.Series(  # a Series keeps this order in every pandas version
                {
                    "accuracy": accuracy(y_true, y_pred),
                    "macro_f1": macro_f1(y_true, y_pred),
                    "sctab_accuracy": accuracy(y_true, adjusted),
                    "sctab_macro_f1": macro_f1(y_true, adjusted),
                    "hierarchical_precision": h_precision,
                    "hierarchical_recall": h_recall,
                    "hierarchical_f1": h_f1,
                    "mean_ontology_distance": mean_distance(y_true, y_pred, ontology),
                }
            )
        }
    )
    table.attrs["excluded_terms"] = sorted(excluded)
    return table


def _excluded(exclude, y_true: np.ndarray, ontology: CellOntology) -> frozenset[str]:
    if isinstance(exclude, str):
        if exclude != "shared":
            raise ValueError(
                f"exclude must be 'shared' or a list of CL ids, got the string {exclude!r}; "
                f"to leave out one term pass [{exclude!r}]."
            )
        return shared_top_terms(y_true, ontology)
    return frozenset(exclude)


def _arrays(y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
    """Both label vectors as new 1-D object arrays, checked for length and missing labels."""
    y_true, y_pred = _labels(y_true, "y_true"), _labels(y_pred, "y_pred")
    if len(y_true) != len(y_pred):
        raise ValueError(
            f"y_true and y_pred must be equally long (one label per cell): {len(y_true)} vs "
            f"{len(y_pred)} labels. Pass truth and prediction for the same cells, in the "
            "same order."
        )
    if not len(y_true):
        raise ValueError("y_true and y_pred are empty: there are no cells to score.")
    return y_true, y_pred


#: A Cell Ontology id as labels hold them (``CL:0000236``; ``CL_0000236`` in some files).
_CL_ID = re.compile(r"CL[:_]\d{7}")


def _flat(y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_arrays`, refusing CL ids on one side against names on the other.

    Flat metrics compare labels as given, so ``accuracy(ids, names)`` would score every cell
    wrong: a silently wrong number where the cause (two forms of one label) is certain.
    """
    y_true, y_pred = _arrays(y_true, y_pred)
    is_id = [
        np.array([isinstance(v, str) and _CL_ID.fullmatch(v.strip()) is not None for v in labels])
        for labels in (pd.unique(y_true), pd.unique(y_pred))
    ]
    for ids, names, which in ((0, 1, ("y_true", "y_pred")), (1, 0, ("y_pred", "y_true"))):
        if is_id[ids].all() and not is_id[names].any():
            examples = [pd.unique(a)[0] for a in (y_true, y_pred)]
            raise ValueError(
                f"{which[0]} holds CL ids (e.g. {examples[ids]!r}) but {which[1]} holds names "
                f"(e.g. {examples[names]!r}): compared as given, no label would ever match. "
                "Map both to ids first (ids, _ = CellOntology.load().map_labels(labels)), "
                "or score with metrics.evaluate, which maps names, synonyms and ids itself."
            )
    return y_true, y_pred


def _labels(labels, which: str) -> np.ndarray:
    if isinstance(labels, str):
        raise TypeError(f"{which} must be one label per cell, not a single string {labels!r}.")
    array = np.array(labels, dtype=object)  # a copy: the caller's labels stay as they are
    if array.ndim != 1:
        raise ValueError(f"{which} must be 1-D, one label per cell; got shape {array.shape}.")
    missing = np.flatnonzero(_is_missing(array))
    if len(missing):
        where = ", ".join(map(str, missing[:5])) + (", …" if len(missing) > 5 else "")
        raise ValueError(
            f"{len(missing)} of {len(array)} cells have no label in {which} (None, NaN or "
            f"text such as 'nan'; positions {where}). Drop them from both y_true and y_pred, "
            "e.g. keep = truth.notna() & prediction.notna(). To count an abstention as "
            "'no information' instead, predict the root 'CL:0000000' ('cell') for it."
        )
    return array


def _is_missing(array: np.ndarray) -> np.ndarray:
    from sc_genept.ontology._cell_ontology import _MISSING_AS_TEXT

    values = pd.Series(array, dtype=object)
    # "nan" and friends are what .astype(str) makes of missing values; no cell type has them.
    # Checked once per distinct label: evaluate() runs this on every cell several times.
    as_text = [
        v
        for v in values.unique()
        if isinstance(v, str) and v.strip().casefold() in _MISSING_AS_TEXT
    ]
    return (values.isna() | values.isin(as_text)).to_numpy()


def _terms(y_true, y_pred, ontology: CellOntology) -> tuple[np.ndarray, np.ndarray]:
    """Both label vectors checked (see :func:`_arrays`) and mapped to live CL ids."""
    y_true, y_pred = _arrays(y_true, y_pred)
    return _to_terms(y_true, ontology, "y_true"), _to_terms(y_pred, ontology, "y_pred")


def _to_terms(labels: np.ndarray, ontology: CellOntology, which: str) -> np.ndarray:
    ids, unmapped = ontology.map_labels(labels)
    if unmapped:
        counts = pd.Series(labels, dtype=object).astype(str).value_counts()
        first = np.flatnonzero(ids.isna().to_numpy())[0]
        listed = "; ".join(f"{ontology.explain(u)} ({counts[u]} cells)" for u in unmapped[:10]) + (
            "; …" if len(unmapped) > 10 else ""
        )
        raise ValueError(
            f"{len(unmapped)} labels in {which} ({int(ids.isna().sum())} of {len(labels)} "
            f"cells, first at position {first}) map to no live term of {ontology!r}: "
            f"{listed}. Relabel or drop those cells."
        )
    return ids.to_numpy(dtype=object)
