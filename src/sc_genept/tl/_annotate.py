"""``genept_annotate``: Cell Ontology labels in ``adata.obs``, from a model or a reference."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import anndata as ad
import numpy as np
import pandas as pd
from scanpy import logging as logg

from sc_genept._genept_w import ScaledDataError
from sc_genept._utils import h5ad_safe
from sc_genept.model import GenePTClassifier
from sc_genept.tl._embed import cell_embedding

if TYPE_CHECKING:
    from anndata import AnnData

_EMBEDDING_KEY = "X_genept"


def genept_annotate(
    adata: AnnData,
    model: GenePTClassifier | str | Path | None = None,
    *,
    reference: AnnData | None = None,
    labels_key: str | None = None,
    min_confidence: float = 0.5,
    use_raw: bool | None = None,
    key_added: str = "genept_cell_type",
    copy: bool = False,
    **train_kwargs,
) -> AnnData | None:
    """Annotate cells with Cell Ontology terms and confidences.

    Either predict with a trained :class:`~sc_genept.model.GenePTClassifier` (an object
    or a folder written by its ``save``), or transfer labels in one line: with
    ``reference`` and ``labels_key``, a classifier is trained on the reference and applied
    to ``adata``. Cells are embedded with :func:`~sc_genept.tl.genept_embed` first where
    ``obsm["X_genept"]`` is missing.

    Each cell gets the deepest CL term that holds at least ``min_confidence`` of the
    predicted probability mass (summed over the term and everything below it): a cell the
    model cannot place among T cell subtypes is called "T cell" rather than guessed.

    Parameters
    ----------
    adata
        The cells to annotate.
    model
        A trained classifier, or the folder it was saved to.
    reference
        Labelled cells to train on (instead of ``model``); it is not modified.
    labels_key
        Column of ``reference.obs`` with CL ids or names.
    min_confidence
        Subtree mass a term needs to be reported.
    use_raw
        Where ``adata`` or ``reference`` must be embedded: use ``.raw``. ``None`` uses
        ``.X``, or ``.raw`` when ``.X`` turns out to be scaled (has negative values).
    key_added
        Prefix of the ``obs`` columns written.
    copy
        Return a copy instead of writing to ``adata``.
    **train_kwargs
        Passed to :meth:`~sc_genept.model.GenePTClassifier.train` (e.g. ``max_epochs``).

    Returns
    -------
    Returns ``None`` if ``copy=False``, else a copy of ``adata``. Sets:

    ``adata.obs[key_added]`` : categorical
        CL name of the reported term.
    ``adata.obs[key_added + "_ontology_term_id"]`` : categorical
        Its CL id.
    ``adata.obs[key_added + "_confidence"]`` : float
        Its subtree probability mass.
    ``adata.obs[key_added + "_finest"]``, ``[… + "_finest_ontology_term_id"]``, ``[… + "_finest_probability"]``
        The single most probable term before thresholding.
    ``adata.uns[key_added]`` : dict
        ``params``, the model summary and the CL version.
    ``adata.obsm["X_genept"]``, ``adata.uns["X_genept"]``
        Only if ``adata`` had no embedding yet.

    Examples
    --------
    >>> sc.tl.genept_annotate(query, reference=ref, labels_key="cell_type_ontology_term_id")
    >>> sc.pl.umap(query, color=["genept_cell_type", "genept_cell_type_confidence"])
    """
    if (model is None) == (reference is None):
        raise ValueError(
            "Pass either model= (trained or saved) or reference= with labels_key=, not both."
        )
    if reference is not None and labels_key is None:
        raise ValueError("reference= needs labels_key=: the obs column with its cell types.")
    if not 0 < min_confidence <= 1:
        raise ValueError(f"min_confidence must be in (0, 1], got {min_confidence}.")
    # embed the query first: its problems (scaled data, no matching genes) surface before training
    newly_embedded = _EMBEDDING_KEY not in adata.obsm
    embedded = _with_embedding(adata, use_raw=use_raw)
    if model is None:
        model = _train_on(reference, labels_key, use_raw=use_raw, **train_kwargs)
    elif not isinstance(model, GenePTClassifier):
        model = GenePTClassifier.load(model)
    prediction = model.predict(embedded, min_confidence=min_confidence)

    adata = adata.copy() if copy else adata
    if newly_embedded:  # keep the embedding just made
        adata.obsm[_EMBEDDING_KEY] = embedded.obsm[_EMBEDDING_KEY]
        adata.uns[_EMBEDDING_KEY] = embedded.uns[_EMBEDDING_KEY]
    _write(adata, prediction, key_added)
    adata.uns[key_added] = h5ad_safe(
        {
            "params": {
                "min_confidence": min_confidence,
                "labels_key": labels_key,
                "use_raw": use_raw,
            },
            "model": str(model._model_summary_string),
            "ontology_version": model.ontology.version,
        }
    )
    n_coarse = int((prediction["ontology_term_id"] != prediction["finest_ontology_term_id"]).sum())
    logg.info(
        f"GenePT annotation of {adata.n_obs} cells: {prediction['ontology_term_id'].nunique()} CL terms, "
        f"{n_coarse} cells called at a coarser term than the most probable one "
        f"(min_confidence={min_confidence})\n    added obs[{key_added!r}] and related columns"
    )
    return adata if copy else None


def _with_embedding(adata: AnnData, *, use_raw: bool | None) -> AnnData:
    """``adata`` itself if it has an embedding, else a light AnnData holding one.

    The light object shares nothing mutable with ``adata`` and carries only what the model
    reads (cell names, the embedding and its gene-table record), so ``adata`` stays as it is
    and nothing large is copied. With ``use_raw=None``, ``.X`` is tried first and ``.raw``
    used when ``.X`` turns out to be scaled.
    """
    if _EMBEDDING_KEY in adata.obsm:
        return adata
    try:
        embedding, record = cell_embedding(adata, use_raw=use_raw)
    except ScaledDataError:
        if use_raw is not None or adata.raw is None:
            raise
        logg.info("adata.X is scaled: embedding adata.raw")
        embedding, record = cell_embedding(adata, use_raw=True)
    return ad.AnnData(
        obs=pd.DataFrame(index=adata.obs_names.copy()),
        obsm={_EMBEDDING_KEY: embedding},
        uns={_EMBEDDING_KEY: record},
    )


def _train_on(
    reference: AnnData, labels_key: str, *, use_raw: bool | None, **train_kwargs
) -> GenePTClassifier:
    if labels_key not in reference.obs:
        raise KeyError(
            f"No column {labels_key!r} in reference.obs; columns: {list(reference.obs.columns)}."
        )
    embedded = _with_embedding(reference, use_raw=use_raw)
    # a light copy: what the model registers (labels, embedding) never touches the reference
    light = ad.AnnData(
        obs=reference.obs[[labels_key]].copy(),
        obsm={_EMBEDDING_KEY: np.asarray(embedded.obsm[_EMBEDDING_KEY])},
        uns={_EMBEDDING_KEY: embedded.uns.get(_EMBEDDING_KEY, {})},
    )
    GenePTClassifier.setup_anndata(light, labels_key=labels_key)
    model = GenePTClassifier(light)
    model.train(**train_kwargs)
    return model


def _write(adata: AnnData, prediction: pd.DataFrame, key: str) -> None:
    columns = {
        key: "cell_type",
        f"{key}_ontology_term_id": "ontology_term_id",
        f"{key}_confidence": "confidence",
        f"{key}_finest": "finest_cell_type",
        f"{key}_finest_ontology_term_id": "finest_ontology_term_id",
        f"{key}_finest_probability": "finest_probability",
    }
    for column, source in columns.items():
        values = prediction[source].to_numpy()
        adata.obs[column] = (
            values.astype(np.float32) if values.dtype.kind == "f" else pd.Categorical(values)
        )
