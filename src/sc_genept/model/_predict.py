"""The steps of GenePTClassifier's predictions: probabilities, the level to call at, the calls.

From term probabilities to calls, and how far to trust them, is in ``_calls``; these
functions run the model on a query and hand ``_calls`` what it needs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from sc_genept._checks import check_adata, check_fraction, positive_int
from sc_genept._utils import warn_caller
from sc_genept.model._calls import decode, error_coverage, level_for_error, typicality
from sc_genept.model._threads import cpu_threads

if TYPE_CHECKING:
    from anndata import AnnData

    from sc_genept.model._model import GenePTClassifier


def score_cells(
    model: GenePTClassifier, adata, batch_size: int, min_gene_overlap: float, *, novelty: bool
) -> tuple[pd.DataFrame, np.ndarray | None]:
    """Term probabilities and (with ``novelty``, where fitted) each cell's novelty score."""
    if adata is not None:
        check_adata(adata)
    positive_int("batch_size", batch_size)
    check_fraction("min_gene_overlap", min_gene_overlap, "[0, 1]")
    if not model.is_trained_:
        raise RuntimeError(
            "This model has not been trained: call model.train() first, or load a trained "
            "model with GenePTClassifier.load."
        )
    adata = model._query(adata, min_gene_overlap)
    scorer = model._scorer  # GenePTNetwork (torch) or NumpyNetwork
    novelty = novelty and scorer.has_novelty
    # threads chosen as for training: torch's default (one per core) crawls when other
    # programs keep the cores busy
    threads = cpu_threads(batch_size, "cpu", 1)
    parts, scores = [], []
    for x in model._input_batches(adata, size=batch_size):
        probs, score = scorer.score(x, novelty=novelty, threads=threads)
        parts.append(probs)
        if novelty:
            scores.append(score)
    probs = np.concatenate(parts) if parts else np.zeros((0, len(model.terms)), np.float32)
    frame = pd.DataFrame(probs, index=adata.obs_names, columns=model.terms)
    return frame, (np.concatenate(scores) if scores else np.zeros(0)) if novelty else None


def level_for_max_error(model: GenePTClassifier, max_error: float) -> float:
    """The mass level whose calls were wrong on at most ``max_error`` of the held-out cells."""
    curve = _held_out_curve(
        model,
        "max_error needs the error this model made on reference cells held out from "
        "training, and it has none: train it with train_size < 1 or "
        "calibration_size > 0 (the defaults), with this version of sc_genept.",
    )
    level = level_for_error(curve, max_error)
    if level is None:
        warn_caller(
            f"max_error={max_error} cannot be guaranteed with {curve['n_cells']} held-out "
            f"cells (at least {int(np.ceil(1 / max_error))} are needed): every cell is "
            "called at its surest term. Train with more cells or a larger "
            "calibration_size, or allow a larger error."
        )
        return 1.0
    return level


def cell_calls(
    model: GenePTClassifier,
    probs: pd.DataFrame,
    scores: np.ndarray | None,
    level: float,
    novelty_rate: float | None,
) -> pd.DataFrame:
    """The frame :meth:`GenePTClassifier.predict` returns, from probabilities and novelty."""
    reference = (model.calibration_ or {}).get("novelty")
    typical = (
        typicality(scores, reference)
        if scores is not None and reference
        else np.full(len(probs), np.nan)
    )
    calls = decode(
        probs,
        model._scorer.subtree_matrix,
        level,
        model.ontology,
        unlike=typical < novelty_rate if novelty_rate else None,
        labelled=model._labelled(),
    )
    calls["typicality"] = typical
    return calls


def error_curve(
    model: GenePTClassifier, adata: AnnData | None, labels_key: str | None
) -> pd.DataFrame:
    """:meth:`GenePTClassifier.error_coverage`: on held-out cells, or on ``adata``'s."""
    if adata is None:
        curve = _held_out_curve(
            model,
            "This model kept no held-out cells (trained with train_size=1 and "
            "calibration_size=0, or saved by an older sc_genept): pass adata and "
            "labels_key.",
        )
    else:
        if labels_key is None or labels_key not in adata.obs:
            raise KeyError(
                f"labels_key={labels_key!r} is not a column of adata.obs: pass the column "
                "with the cells' true CL ids or names."
            )
        # scored: cells whose true type is one of the model's terms
        truth, _ = model.ontology.map_labels(adata.obs[labels_key].astype(str))
        known = truth.isin(model.terms).to_numpy()
        probs = model.predict_proba(adata)[known].to_numpy().astype(np.float64)
        codes = pd.Index(model.terms).get_indexer(truth[known])
        curve = error_coverage(probs, codes, model._scorer.subtree_matrix, model._labelled())
    columns = ["levels", "error", "coverage", "bound_error"]
    return pd.DataFrame({c: curve[c] for c in columns if c in curve}).rename(
        columns={"levels": "level"}
    )


def _held_out_curve(model: GenePTClassifier, missing: str) -> dict:
    """The error curve measured on held-out cells in training; else ``ValueError(missing)``."""
    curve = (model.calibration_ or {}).get("error_coverage")
    if curve is None:
        raise ValueError(missing)
    return curve
