"""The inputs ``genept_annotate`` gives a model, made from a light copy of the user's data.

Each mode has one function here: :func:`reference_inputs` embeds a reference and the query
on the genes they share (and picks the expression genes), :func:`model_inputs` embeds the
query on a trained model's genes with its gene table.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import anndata as ad
import numpy as np
import pandas as pd
import scanpy as sc
from scipy import sparse

from sc_genept._embedding import cell_embedding, gene_table
from sc_genept._record import EmbeddingRecord, GeneSet
from sc_genept._utils import warn_caller
from sc_genept.genes import GeneEmbeddings
from sc_genept.genes import available as available_tables
from sc_genept.model._overlap import check_gene_overlap, check_shared_genes, shared_gene_overlap

if TYPE_CHECKING:
    from anndata import AnnData

    from sc_genept.model import SavedClassifier
    from sc_genept.model._trained import TrainedClassifier

EMBEDDING_KEY = "X_genept"
EXPRESSION_KEY = "X_genept_expression"
#: The inputs a one-line annotation trains on: the GenePT-w embedding, and with it the
#: expression of the same genes (the default: across studies it is what makes labels right).
INPUTS = {
    "genept+expression": (EMBEDDING_KEY, EXPRESSION_KEY),
    "genept": (EMBEDDING_KEY,),
}


def reference_inputs(
    adata: AnnData,
    reference: AnnData,
    *,
    keys: Sequence[str],
    table: GeneEmbeddings,
    n_dims: int | None,
    orthologs,
    layer: str | None,
    use_raw: bool | None,
    reference_layer: str | None,
    reference_use_raw: bool | None,
    min_gene_overlap: float,
    n_expression_genes: int | None,
) -> tuple[AnnData, AnnData, dict]:
    """``(reference inputs, query inputs, gene overlap)``, on the genes the two share.

    Embeddings over different genes differ systematically, and a model trained on one
    misreads the other: the reference is embedded again on the shared genes when the
    query lacks some of its genes.
    """

    def embed(data, genes=None, **where):
        return embedded(
            data, table=table, keys=keys, n_dims=n_dims, orthologs=orthologs, genes=genes, **where
        )

    ref = embed(reference, layer=reference_layer, use_raw=reference_use_raw, name="reference")
    ref_genes = EmbeddingRecord.read(ref, EMBEDDING_KEY).gene_set
    query = embed(adata, genes=ref_genes.names, layer=layer, use_raw=use_raw)
    query_record = EmbeddingRecord.read(query, EMBEDDING_KEY)
    shared = query_record.gene_set.names
    overlap = shared_gene_overlap(
        ref_genes.n_genes, query_record.genes["n_genes_matched"], len(shared)
    )
    check_shared_genes(overlap, min_gene_overlap)
    if len(shared) < ref_genes.n_genes:
        ref = embed(
            reference,
            genes=shared,
            layer=reference_layer,
            use_raw=reference_use_raw,
            name="reference",
        )
    if EXPRESSION_KEY in keys:
        informative = most_variable(ref, n_expression_genes)
        for light in (ref, query):
            keep_expression_genes(light, informative)
    return ref, query, overlap


def model_inputs(
    adata: AnnData,
    model: TrainedClassifier,
    *,
    gene_embeddings,
    n_dims: int | None,
    orthologs,
    layer: str | None,
    use_raw: bool | None,
    min_gene_overlap: float,
) -> tuple[AnnData, dict]:
    """``(query inputs, gene overlap)``: the query on ``model``'s genes and gene table."""
    gene_set = model.gene_set
    query = embedded(
        adata,
        layer=layer,
        use_raw=use_raw,
        table=model_table(model, gene_embeddings, n_dims),
        keys=model.embedding_keys,
        genes=model.genes,
        orthologs=orthologs,
        # genes the query lacks count as typical of the reference, not as unexpressed
        missing_values=dict(zip(gene_set["names"], gene_set["mean_expression"], strict=True))
        if gene_set
        else None,
    )
    if EXPRESSION_KEY in query.obsm:  # a model may read fewer genes' expression
        keep_expression_genes(query, model.gene_sets_[EXPRESSION_KEY]["names"])
    overlap = model.gene_overlap(EmbeddingRecord.read(query, EMBEDDING_KEY).gene_set.names)
    check_gene_overlap(overlap, min_gene_overlap)
    return query, overlap


def embedded(
    adata: AnnData,
    *,
    layer: str | None,
    use_raw: bool | None,
    table: GeneEmbeddings,
    keys: Sequence[str],
    n_dims: int | None = None,
    genes: Sequence[str] | None = None,
    missing_values: dict | None = None,
    orthologs=None,
    name: str = "adata",
) -> AnnData:
    """A light AnnData with the model inputs ``keys`` of ``adata``, made of ``genes``.

    The light object shares nothing mutable with ``adata`` and carries only what the model
    reads (cell names, inputs and their records), so ``adata`` stays as it is and nothing
    large is copied. ``X_genept`` (and ``X_genept_expression``) are made here; other keys
    (e.g. ``X_pca``) are taken from ``adata.obsm``.
    """
    made = cell_embedding(
        adata,
        gene_embeddings=table,
        layer=layer,
        use_raw=use_raw,
        n_dims=n_dims,
        genes=genes,
        missing_values=missing_values,
        orthologs=orthologs,
        expression=EXPRESSION_KEY in keys,
        name=name,
    )
    light = ad.AnnData(obs=pd.DataFrame(index=adata.obs_names.copy()))
    made.store(light, EMBEDDING_KEY)  # and EXPRESSION_KEY, its "_expression"
    for key in keys:
        if key not in light.obsm:
            if key not in adata.obsm:
                raise KeyError(
                    f"The model also reads obsm[{key!r}], which adata lacks; it has "
                    f"{list(adata.obsm)}. Compute it as for the training data first."
                )
            light.obsm[key] = adata.obsm[key]
            if key in adata.uns:
                light.uns[key] = adata.uns[key]
    return light


#: Largest value of log-normalised expression (log1p of 1e4 counts per cell is 9.2).
_LOGGED_MAX = 30.0


def most_variable(light: AnnData, n_genes: int | None) -> np.ndarray | None:
    """The ``n_genes`` most variable genes of an expression input (``None``: all of them)."""
    names = np.asarray(EmbeddingRecord.read(light, EXPRESSION_KEY).gene_set.names, dtype=object)
    if n_genes is None or n_genes >= len(names):
        return None
    x = light.obsm[EXPRESSION_KEY]
    # the seurat flavour reads log data (it takes expm1): normalised data given unlogged
    # (values far above any log1p of a normalised count) is logged for the ranking only
    if x.max() > _LOGGED_MAX:
        x = x.log1p() if sparse.issparse(x) else np.log1p(x)
    values = ad.AnnData(x, var=pd.DataFrame(index=names.astype(str)))
    with warnings.catch_warnings():  # e.g. genes constant in the reference
        warnings.simplefilter("ignore")
        ranked = sc.pp.highly_variable_genes(
            values, n_top_genes=n_genes, flavor="seurat", inplace=False
        )
    return names[ranked["highly_variable"].to_numpy()]


def keep_expression_genes(light: AnnData, genes) -> None:
    """Cut the expression input of ``light`` to the columns of ``genes`` (``None``: all)."""
    if genes is None:
        return
    record = EmbeddingRecord.read(light, EXPRESSION_KEY)
    names = np.asarray(record.gene_set.names, dtype=object)
    keep = np.flatnonzero(pd.Index(names, dtype=object).isin(list(genes)))
    if len(keep) == len(names):
        return
    mean = record.gene_set.mean_expression
    light.obsm[EXPRESSION_KEY] = light.obsm[EXPRESSION_KEY][:, keep]
    # the share of the expression the kept genes carry is not known: recorded as None
    kept = GeneSet.sorted_by_name(
        names[keep],
        None if mean is None else mean[keep],
        fraction_of_matched_expression=None,
    )
    light.uns[EXPRESSION_KEY] = replace(record, gene_set=kept).to_uns()


def model_table(
    model: TrainedClassifier, gene_embeddings: str | Path | GeneEmbeddings | None, n_dims
) -> GeneEmbeddings:
    """The gene table ``model`` was trained on, cut to its dimensions, found by content hash."""
    trained = model.embedding_provenance_.get(EMBEDDING_KEY) or {}
    dims = trained.get("n_dims")
    if n_dims is not None and dims is not None and n_dims != dims:
        raise ValueError(
            f"n_dims={n_dims}, but the model was trained on {dims} dimensions of its gene "
            "table: leave n_dims out."
        )
    candidates = available_tables() if gene_embeddings is None else [gene_embeddings]
    for candidate in candidates:
        table = gene_table(candidate)
        if dims is not None and table.n_dims > dims:
            table = table.truncate(dims)
        if trained.get("sha256") in (None, table.sha256):  # None: trained before hashes
            return table
    needed = ", ".join(
        f"{k}={trained[k]!r}"
        for k in ("text_source", "embedding_model", "n_genes", "n_dims", "sha256")
        if k in trained
    )
    given = (
        f"gene_embeddings={gene_embeddings!r} is another table"
        if gene_embeddings is not None
        else f"none of the bundled tables {available_tables()} is it"
    )
    raise ValueError(
        f"The model was trained on the gene table ({needed}), and {given}. Pass that table "
        "as gene_embeddings= (its file or GeneEmbeddings object)."
    )


def through_orthologs(embedded: AnnData) -> dict:
    """How many of the query's genes matched the table across species, and how."""
    genes = EmbeddingRecord.read(embedded, EMBEDDING_KEY).genes
    return {
        "by_ortholog_table": int(genes["matched_by"].get("ortholog", 0)),
        "by_symbol_ignoring_case": int(genes.get("n_symbol_case_differs", 0)),
    }


def load_model(model: str | os.PathLike) -> tuple[SavedClassifier, str]:
    """A saved folder (an existing path) or a pretrained model (a registry name), to predict.

    Loaded as a :class:`~sc_genept.model.SavedClassifier`: no scvi-tools or Lightning import.
    """
    from sc_genept.model import _pretrained as pretrained
    from sc_genept.model._folder import ModelFolderError
    from sc_genept.model._saved import SavedClassifier

    is_name = pretrained.is_pretrained(model)
    if Path(model).exists() or not isinstance(model, str):
        if is_name:
            warn_caller(
                f"model={model!r} is both a path here and a pretrained model's name: loading "
                f"the folder. For the pretrained model, call "
                f"GenePTClassifier.load_pretrained({model!r})."
            )
        return SavedClassifier.load(model), "folder"
    if is_name:
        return SavedClassifier.load_pretrained(model), "pretrained"
    raise ModelFolderError(
        f"{model} is not a folder: pass the folder that GenePTClassifier.save wrote, or the name "
        f"of a pretrained model: {pretrained.names()} (sc_genept.model.available_models() "
        "describes them)."
    )
