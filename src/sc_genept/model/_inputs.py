"""What a GenePTClassifier reads from AnnData: its inputs, checked against its training data.

Each input is an ``obsm`` representation (an embedding, or the expression of genes). A
query's must come from the same gene table as the training data's (the provenance in
``uns``), and be made of the model's genes: an expression input is put in the order of
the model's genes, and genes the query lacks take their mean in the training data.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from scipy import sparse

from sc_genept._record import EmbeddingRecord
from sc_genept._utils import warn_caller
from sc_genept.model._overlap import DEFAULT_MIN_GENE_OVERLAP, check_gene_overlap, gene_overlap

if TYPE_CHECKING:
    from collections.abc import Sequence

    from anndata import AnnData

    from sc_genept.model._model import GenePTClassifier


#: Provenance fields that must agree between training and query embeddings.
_PROVENANCE_KEYS = (
    "text_source",
    "embedding_model",
    "build_date",
    "n_genes",
    "n_dims",
    "truncated_from",
    "sha256",
)


def record_inputs(model: GenePTClassifier, adata: AnnData | None) -> None:
    """Record what made each of ``adata``'s inputs, and which inputs are expression."""
    import torch  # training only: prediction reads these modules without torch

    # which gene table, and which of its genes, made each embedding: checked on every query
    model.embedding_provenance_ = (
        {k: _provenance(adata, k) for k in model.embedding_keys} if adata is not None else {}
    )
    model.gene_sets_ = (
        {k: g for k in model.embedding_keys if (g := _gene_set(adata, k))}
        if adata is not None
        else {}
    )
    model.network.is_gene.copy_(
        torch.as_tensor(
            np.concatenate(
                [
                    np.full(width, is_expression(model, key))
                    for key, width in zip(model.embedding_keys, model.input_widths, strict=True)
                ]
            )
        )
    )


def training_inputs(model: GenePTClassifier, size: int = 4096) -> list[np.ndarray]:
    """Each input of the training data as one dense float32 array, read in blocks."""
    n_cells = model.adata.n_obs
    parts = [np.empty((n_cells, width), np.float32) for width in model.input_widths]
    bounds = np.cumsum(model.input_widths)[:-1]
    for start, x in zip(
        range(0, n_cells, size), input_batches(model, model.adata, size=size), strict=True
    ):
        for part, block in zip(parts, np.split(x, bounds, axis=1), strict=True):
            part[start : start + len(x)] = block
    return parts


def model_inputs(
    model: GenePTClassifier, adata: AnnData, rows=slice(None), sources=None
) -> np.ndarray:
    """The model's input for ``rows`` of ``adata``: its representations side by side.

    An expression input is put in the order of the model's genes, and genes the query
    lacks take their mean in the training data: "unknown", not "not expressed".
    ``sources`` (from :func:`input_sources`) spares re-checking ``adata`` per batch.
    """
    parts = []
    for key, x, columns, width in sources or input_sources(model, adata):
        x = x[rows]
        if columns is not None:
            x = _aligned(x, columns, model.gene_sets_[key]["mean_expression"])
        x = x.toarray() if sparse.issparse(x) else np.asarray(x)
        if x.shape[1] != width:
            raise ValueError(
                f"obsm[{key!r}] has {x.shape[1]} columns; the model was trained on {width}."
            )
        parts.append(x.astype(np.float32, copy=False))
    return np.concatenate(parts, axis=1)


def input_sources(model: GenePTClassifier, adata: AnnData) -> list[tuple]:
    """Each input of ``adata``, checked once: ``(key, matrix, columns, width)``.

    ``columns``: for an expression input whose genes differ from the model's, the model
    column of each of its genes; else ``None``.
    """
    sources = []
    for key, width in zip(model.embedding_keys, model.input_widths, strict=True):
        columns = None
        if is_expression(model, key):
            columns = _gene_columns(_gene_set(adata, key), model.gene_sets_[key])
        sources.append((key, _check_embedding(adata, key), columns, width))
    return sources


def is_expression(model: GenePTClassifier, key: str) -> bool:
    """Whether the input ``key`` is the expression of genes (not an embedding)."""
    return model.gene_sets_.get(key, {}).get("kind") == "expression"


def input_batches(
    model: GenePTClassifier, adata: AnnData, rows: np.ndarray | None = None, size: int = 4096
):
    """:func:`model_inputs` in batches of ``size`` cells (bounded memory)."""
    rows = np.arange(adata.n_obs) if rows is None else np.asarray(rows)
    sources = input_sources(model, adata)
    for start in range(0, len(rows), size):
        yield model_inputs(model, adata, rows[start : start + size], sources)


def check_query(
    model: GenePTClassifier,
    adata: AnnData | None,
    min_gene_overlap: float = DEFAULT_MIN_GENE_OVERLAP,
) -> AnnData:
    """The data to predict on, after checking its embeddings come from the right gene table."""
    for candidate in (adata, model._attached, model.adata):
        if candidate is not None:
            adata = candidate
            break
    if adata is None:
        raise ValueError("Pass adata: this model was loaded without data.")
    for key, trained in model.embedding_provenance_.items():
        query = _provenance(adata, key)
        if trained and query is None:
            warn_caller(
                f"adata.uns[{key!r}] has no gene-table provenance, so it cannot be checked "
                "against the training data's; embed with sc.tl.genept_embed."
            )
        elif trained and query:
            # tables written before content hashes were recorded compare without one
            keys = [k for k in _PROVENANCE_KEYS if k != "sha256" or k in trained and k in query]
            differ = [f for f in keys if trained.get(f) != query.get(f)]
            if differ:
                raise ValueError(
                    f"obsm[{key!r}] was made with another gene table than the model's training "
                    f"data (differs in {differ}: {[query.get(f) for f in differ]} vs "
                    f"{[trained.get(f) for f in differ]}). Re-embed with the model's table."
                )
    overlap = None
    for key, trained in model.gene_sets_.items():
        query = _gene_set(adata, key)
        if query is None:
            warn_caller(
                f"adata.uns[{key!r}] does not record which genes obsm[{key!r}] was made of, "
                "so it cannot be checked against the model's genes; embed with "
                "sc.tl.genept_embed(adata, genes=model.genes) or use sc.tl.genept_annotate."
            )
            continue
        extra = set(query["names"]) - set(trained["names"])
        if extra:
            raise ValueError(
                f"obsm[{key!r}] was made of {query['n_genes']} genes, {len(extra)} of which "
                f"the model was not trained on (e.g. {sorted(extra)[:5]}): inputs over "
                "different genes are not comparable. Embed the query on the model's genes "
                f"with sc.tl.genept_embed(adata, genes=model.genes, key_added={key!r}), or "
                "let sc.tl.genept_annotate(adata, model=model) do it."
            )
        overlap = overlap or gene_overlap(trained, query["names"])
    if overlap:
        check_gene_overlap(overlap, min_gene_overlap)
    return adata


def _input_keys(embedding_keys: Sequence[str]) -> list[str]:
    return [f"input_{i}" for i in range(len(embedding_keys))]


def _check_embedding(adata: AnnData, key: str) -> np.ndarray:
    if key not in adata.obsm:
        hint = (
            " Run sc.tl.genept_embed(adata) first."
            if key == "X_genept"
            else " Compute it first, as for the training data."
        )
        raise KeyError(f"No obsm[{key!r}] in adata; it has {list(adata.obsm)}.{hint}")
    x = adata.obsm[key]
    if sparse.issparse(x):
        x = sparse.csr_matrix(x)
        values = x.data
    else:
        try:
            x = values = np.asarray(x, dtype=np.float32)
        except (TypeError, ValueError) as err:
            raise ValueError(
                f"obsm[{key!r}] must be a 2-D array of numbers ({err}): compute it again."
            ) from None
    if x.ndim != 2:
        raise ValueError(
            f"obsm[{key!r}] must be a 2-D array (cells × dimensions), got shape {x.shape}: "
            "compute it again."
        )
    if not np.isfinite(values).all():
        bad = (
            np.unique(x.tocoo().row[~np.isfinite(x.tocoo().data)])
            if sparse.issparse(x)
            else np.flatnonzero(~np.isfinite(x).all(axis=1))
        )
        raise ValueError(
            f"obsm[{key!r}] has NaN or infinite values in {len(bad)} cells (e.g. "
            f"{list(adata.obs_names[bad[:3]])}): embed again or drop those cells."
        )
    return x


def _gene_columns(query_genes: dict | None, model_genes: dict) -> np.ndarray | None:
    """The model column of each query gene, or ``None`` when the genes are the model's own."""
    names = list(model_genes["names"])
    if query_genes is None or list(query_genes["names"]) == names:
        return None
    column = {g: i for i, g in enumerate(names)}
    return np.array([column[g] for g in query_genes["names"]], dtype=int)


def _aligned(x, columns: np.ndarray, mean_expression) -> np.ndarray:
    """Query expression put in the model's ``columns``; the model's other genes: their mean."""
    out = np.tile(np.asarray(mean_expression, dtype=np.float32), (x.shape[0], 1))
    out[:, columns] = x.toarray() if sparse.issparse(x) else x
    return out


def _genept_record(adata: AnnData, key: str) -> EmbeddingRecord | None:
    """The genept_embed record of input ``key``, or None when it has none.

    An input made otherwise (e.g. ``X_pca``) has no record: that is not an error here,
    its genes and gene table are just not checked.
    """
    try:
        return EmbeddingRecord.read(adata, key)
    except ValueError:
        return None


def _gene_set(adata: AnnData, key: str) -> dict | None:
    """The genes an embedding was made of (names, mean expression, hash), if recorded.

    In the form model folders keep in ``model.json``'s ``gene_sets``.
    """
    record = _genept_record(adata, key)
    if record is None:
        return None
    gene_set = record.gene_set
    return {
        "kind": record.kind,
        "n_genes": gene_set.n_genes,
        "sha256": gene_set.sha256,
        "names": [str(g) for g in gene_set.names],
        "mean_expression": np.asarray(gene_set.mean_expression, dtype=float).round(6).tolist(),
    }


def _provenance(adata: AnnData, key: str) -> dict | None:
    """The gene table an embedding was made with, as ``model.json`` keeps it, if recorded."""
    record = _genept_record(adata, key)
    return None if record is None else record.gene_embeddings
