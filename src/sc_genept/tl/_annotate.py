"""``genept_annotate``: Cell Ontology labels in ``adata.obs``, from a model or a reference."""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import anndata as ad
import numpy as np
import pandas as pd
from scanpy import logging as logg

from sc_genept._checks import check_adata, check_fraction, positive_int
from sc_genept._record import EmbeddingRecord
from sc_genept._utils import h5ad_safe
from sc_genept.genes import GeneEmbeddings
from sc_genept.model._calls import DEFAULT_NOVELTY_RATE
from sc_genept.model._overlap import DEFAULT_MIN_GENE_OVERLAP
from sc_genept.tl._inputs import (
    EMBEDDING_KEY,
    INPUTS,
    gene_table,
    load_model,
    model_inputs,
    reference_inputs,
    through_orthologs,
)
from sc_genept.tl._voting import majority_vote
from sc_genept.tl._voting import over_clustering as over_clustering_of

if TYPE_CHECKING:
    from anndata import AnnData

    from sc_genept.model import GenePTClassifier, SavedClassifier
    from sc_genept.model._trained import TrainedClassifier


def genept_annotate(
    adata: AnnData,
    model: GenePTClassifier | SavedClassifier | str | Path | None = None,
    *,
    reference: AnnData | None = None,
    labels_key: str | None = None,
    inputs: Literal["genept+expression", "genept"] = "genept+expression",
    n_expression_genes: int | None = 2000,
    min_confidence: float = 0.5,
    max_error: float | None = None,
    novelty_rate: float | None = DEFAULT_NOVELTY_RATE,
    majority_voting: bool = False,
    over_clustering: str | None = None,
    min_gene_overlap: float = DEFAULT_MIN_GENE_OVERLAP,
    gene_embeddings: str | Path | GeneEmbeddings | None = None,
    orthologs: Mapping[str, str] | pd.DataFrame | str | Path | None = None,
    n_dims: int | None = None,
    layer: str | None = None,
    use_raw: bool | None = None,
    reference_layer: str | None = None,
    reference_use_raw: bool | None = None,
    key_added: str = "genept_cell_type",
    copy: bool = False,
    **train_kwargs,
) -> AnnData | None:
    """Annotate cells with Cell Ontology terms and confidences.

    Either predict with a trained :class:`~sc_genept.model.GenePTClassifier` (an object,
    a folder written by its ``save``, or the name of a pretrained model such as
    ``"pbmc68k"``, see :func:`~sc_genept.model.available_models`), or transfer labels in
    one line: with
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
        A trained classifier, the folder it was saved to, or the name of a pretrained
        model (:func:`~sc_genept.model.available_models`; the bundled ``"pbmc68k"`` works
        offline). A string that is an existing path loads that folder; otherwise it must
        be a pretrained model's name.
    reference
        Labelled cells to train on (instead of ``model``); it is not modified.
    labels_key
        Column of ``reference.obs`` with CL ids or names.
    inputs
        What a model trained here reads: ``"genept+expression"`` (default), the GenePT-w
        embedding and the log-expression of the same genes side by side, or ``"genept"``,
        the embedding alone. Across studies the expression is what makes the labels right
        (see the transfer benchmark in :doc:`/annotation`); a given ``model`` reads what
        it was trained on.
    n_expression_genes
        With ``reference`` and ``"genept+expression"``: the expression input reads the
        reference's ``n_expression_genes`` most variable shared genes (scanpy's
        :func:`~scanpy.pp.highly_variable_genes`, seurat flavour), the GenePT-w embedding
        all shared genes. ``None``: every shared gene (training time grows with them: a
        whole-transcriptome reference of 2,000 cells took minutes). A ``model`` reads the
        genes it was trained on.
    min_confidence
        Subtree mass a term needs to be reported.
    max_error
        Instead of ``min_confidence``: the share of wrong calls to allow (e.g. ``0.1``);
        each cell gets the deepest term that keeps the calls within it on reference cells
        held out from training (conformal risk control, see :doc:`/honest_calls`).
    novelty_rate
        E.g. ``0.02``: cells less typical of the reference than all but this share of its
        held-out cells are called at a term strictly above their most probable
        reference type that is none of its types, for they may be of a type the
        reference lacks (about this share of cells of known types is coarsened too).
        ``None`` (default): no check; ``0``: the ``_typicality`` column without
        coarsening any cell. Meant for data like the reference's: a query from another
        study or platform is less typical as a whole (see :doc:`/honest_calls`).
    majority_voting
        Also write each cell's cluster's most frequent call, as CellTypist's
        ``majority_voting``, over ``over_clustering`` or, by default, a Leiden
        over-clustering of the query's GenePT-w embedding (resolution 5 to 30 as the
        query grows, as CellTypist does). Off by default: across
        studies it lowered macro-F1 (see :doc:`/honest_calls`).
    over_clustering
        With ``majority_voting``: an ``adata.obs`` column of clusters to vote in.
    min_gene_overlap
        With ``model``: the smallest share of the model's genes that ``adata`` must have
        (and at least 10 genes), low by default so that a targeted panel survives a
        whole-transcriptome model; below it a :class:`ValueError` is raised, below 80 % a
        warning says which genes are missing (they take their reference mean). With ``reference``: the
        smallest share of the smaller of the two gene sets that the other has (a
        300-gene panel that a whole-transcriptome reference covers shares 100 %); the
        model is trained on the shared genes, at least 10 of them.
    gene_embeddings
        The gene table to embed with (see :func:`~sc_genept.tl.genept_embed`). With
        ``reference``: default ``"default"``. With ``model``: the table the model was
        trained on, found among the bundled tables by its content hash; a model trained on
        another table raises an error that names it, and a ``gene_embeddings`` that is not
        that table is refused.
    orthologs
        A map from gene names of another species to the table's human symbols
        (see :func:`~sc_genept.tl.genept_embed`), applied to ``adata`` and ``reference``
        alike: a mouse query with a human reference or model, or a human query with a
        mouse reference. Without it, genes match by symbol ignoring case. The log and
        ``uns[key_added]["genes_through_orthologs"]`` say how many genes matched each way.
    n_dims
        Use the first ``n_dims`` dimensions of the table (with ``reference``; a ``model``
        uses those it was trained on).
    layer, use_raw
        Which matrix of ``adata`` to embed, as in :func:`~sc_genept.tl.genept_embed`:
        ``layer``, ``.raw`` (``use_raw=True``) or ``.X``; ``use_raw=None`` uses ``.X``, or
        ``.raw`` when ``.X`` is scaled (has negative values).
    reference_layer, reference_use_raw
        The same for ``reference``, chosen on their own: a reference and a query often
        keep their counts in different places.
    key_added
        Prefix of the ``obs`` columns written.
    copy
        Return a copy instead of writing to ``adata``.
    **train_kwargs
        Passed to :meth:`~sc_genept.model.GenePTClassifier.train` (e.g. ``max_epochs``,
        or ``verbose=True`` for Lightning's own output; by default training is quiet and
        shows one per-epoch progress bar at ``sc.settings.verbosity = "info"``); only with
        ``reference`` (a given ``model`` is used as trained).

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
    ``adata.obs[key_added + "_reason"]`` : categorical
        Why the reported term is the one reported: ``"most probable term"``, ``"uncertain:
        coarser term"`` (no deeper term held the confidence) or ``"unlike the reference:
        coarser term"`` (see ``novelty_rate``).
    ``adata.obs[key_added + "_majority_voting"]``, ``[… + "_majority_voting_ontology_term_id"]`` : categorical
        With ``majority_voting``: the most frequent reported term of the cell's cluster.
    ``adata.obs[key_added + "_typicality"]`` : float
        With ``novelty_rate``: the share of the reference's held-out cells at least as far
        from its cell types as this cell (small: unlike any type the reference has).
        Otherwise, or for a model saved without it, NaN.
    ``adata.uns[key_added]`` : dict
        ``params``, ``gene_overlap`` (with ``model``: how many of the model's genes
        ``adata`` has, and the share of the reference's expression they carry; with
        ``reference``: how many genes each has and how many they share), the model summary, which model
        was used (``model_source``: ``"pretrained"``, ``"folder"``, ``"object"`` or
        ``"reference"``; ``pretrained_model``: the pretrained model's name) and the CL
        version.
    ``adata.obsm["X_genept"]``, ``adata.uns["X_genept"]``
        The embedding the model read (made of its genes), only if ``adata`` had no
        ``X_genept`` yet.

    Examples
    --------
    >>> sc.tl.genept_annotate(query, reference=ref, labels_key="cell_type_ontology_term_id")
    >>> sc.pl.umap(query, color=["genept_cell_type", "genept_cell_type_confidence"])
    """
    _check_call(adata, model, reference, labels_key, inputs, key_added)
    _check_numbers(min_confidence, max_error, novelty_rate, min_gene_overlap, n_expression_genes)
    _check_voting(adata, majority_voting, over_clustering)
    where = {"layer": layer, "use_raw": use_raw, "n_dims": n_dims, "orthologs": orthologs}
    if model is None:
        model, embedded, overlap = _from_reference(
            adata,
            reference,
            labels_key,
            keys=INPUTS[inputs],
            table=gene_table("default" if gene_embeddings is None else gene_embeddings),
            reference_layer=reference_layer,
            reference_use_raw=reference_use_raw,
            min_gene_overlap=min_gene_overlap,
            n_expression_genes=n_expression_genes,
            train_kwargs=train_kwargs,
            **where,
        )
        model_source = "reference"
    else:
        _check_model_mode_options(train_kwargs, reference_layer, reference_use_raw)
        model, model_source = _model_object(model)
        embedded, overlap = model_inputs(
            adata,
            model,
            gene_embeddings=gene_embeddings,
            min_gene_overlap=min_gene_overlap,
            **where,
        )
    with warnings.catch_warnings():  # the overlap was checked and warned about above
        warnings.filterwarnings("ignore", message="The query has .* of the model's")
        prediction = model.predict(
            embedded,
            min_confidence=min_confidence,
            max_error=max_error,
            novelty_rate=novelty_rate,
            min_gene_overlap=min_gene_overlap,
        )
    adata = adata.copy() if copy else adata
    if EMBEDDING_KEY not in adata.obsm:  # keep the embedding made
        adata.obsm[EMBEDDING_KEY] = embedded.obsm[EMBEDDING_KEY]
        adata.uns[EMBEDDING_KEY] = embedded.uns[EMBEDDING_KEY]
    if majority_voting:
        _vote(adata, prediction, embedded, model, over_clustering)
    _write(adata, prediction, key_added)
    params = {
        "min_confidence": min_confidence,
        "max_error": max_error,
        "novelty_rate": novelty_rate,
        "majority_voting": majority_voting,
        "over_clustering": over_clustering,
        "min_gene_overlap": min_gene_overlap,
        "n_expression_genes": n_expression_genes if model_source == "reference" else None,
        "labels_key": labels_key,
        "layer": layer,
        "use_raw": use_raw,
        "reference_layer": reference_layer,
        "reference_use_raw": reference_use_raw,
    }
    crossed = through_orthologs(embedded)
    adata.uns[key_added] = h5ad_safe(
        {
            "params": params,
            "gene_embeddings": EmbeddingRecord.read(embedded, EMBEDDING_KEY).gene_embeddings,
            "gene_overlap": overlap or None,
            "genes_through_orthologs": crossed,
            "model": str(model._model_summary_string),
            "model_source": model_source,
            "pretrained_model": model.pretrained_name_,
            "ontology_version": model.ontology.version,
        }
    )
    _log_summary(adata, prediction, key_added, model_source, overlap, crossed, min_confidence)
    return adata if copy else None


def _from_reference(
    adata, reference, labels_key, *, keys, table, train_kwargs, **options
) -> tuple[GenePTClassifier, AnnData, dict]:
    """The one-line mode: a model trained on ``reference``, and the query's inputs for it."""
    ref_inputs, query_inputs, overlap = reference_inputs(
        adata, reference, keys=keys, table=table, **options
    )
    return _train_on(reference, ref_inputs, labels_key, **train_kwargs), query_inputs, overlap


def _check_model_mode_options(train_kwargs: dict, reference_layer, reference_use_raw) -> None:
    """Refuse options of the reference mode given with ``model=``."""
    given = sorted(train_kwargs) + [
        name
        for name, value in (
            ("reference_layer", reference_layer),
            ("reference_use_raw", reference_use_raw),
        )
        if value is not None
    ]
    if given:
        raise TypeError(
            f"genept_annotate got {given} with model=: they apply only when training on "
            "reference=. A given model is used as trained; to retrain it, call "
            "model.train(...) first."
        )


def _model_object(model) -> tuple[TrainedClassifier, str]:
    """The classifier ``model=`` names, and where it came from (``uns[key]["model_source"]``)."""
    # torch only (no scvi-tools, no Lightning), and only when annotating
    from sc_genept.model._trained import TrainedClassifier

    if isinstance(model, TrainedClassifier):
        return model, "object" if model.pretrained_name_ is None else "pretrained"
    if not isinstance(model, str | os.PathLike):
        raise TypeError(
            "model must be a GenePTClassifier or the folder its save() wrote (a str or "
            f"Path), or a pretrained model's name, got {type(model).__name__}."
        )
    return load_model(model)


def _vote(adata, prediction: pd.DataFrame, embedded: AnnData, model, over_clustering) -> None:
    """Add the majority-voting columns to ``prediction``."""
    clusters = (
        adata.obs[over_clustering].to_numpy()
        if over_clustering is not None
        else over_clustering_of(embedded.obsm[EMBEDDING_KEY], embedded.obs_names)
    )
    voted = majority_vote(prediction["ontology_term_id"].to_numpy(), clusters)
    prediction["majority_voting_ontology_term_id"] = voted
    prediction["majority_voting"] = model.ontology.names(voted)


def _log_summary(adata, prediction, key_added, model_source, overlap, crossed, min_confidence):
    n_coarse = int((prediction["ontology_term_id"] != prediction["finest_ontology_term_id"]).sum())
    if model_source == "reference":
        genes = f" on the {overlap['n_shared_genes']} genes it shares with the reference"
    elif overlap:
        genes = f" on {overlap['n_genes_found']} of the model's {overlap['n_model_genes']} genes"
    else:
        genes = ""
    if crossed["by_ortholog_table"] or crossed["by_symbol_ignoring_case"]:
        genes += (
            f" ({crossed['by_ortholog_table']} matched through orthologs= and "
            f"{crossed['by_symbol_ignoring_case']} by symbol ignoring case)"
        )
    logg.info(
        f"GenePT annotation of {adata.n_obs} cells{genes}: "
        f"{prediction['ontology_term_id'].nunique()} CL terms, "
        f"{n_coarse} cells called at a coarser term than the most probable one "
        f"(min_confidence={min_confidence})\n    added obs[{key_added!r}] and related columns"
    )


def _train_on(
    reference: AnnData, embedded: AnnData, labels_key: str, **train_kwargs
) -> GenePTClassifier:
    from sc_genept.model import GenePTClassifier

    if labels_key not in reference.obs:
        raise KeyError(
            f"No column {labels_key!r} in reference.obs; columns: {list(reference.obs.columns)}."
        )
    # a light copy: what the model registers (labels, inputs) never touches the reference
    light = ad.AnnData(
        obs=reference.obs[[labels_key]].copy(), obsm=dict(embedded.obsm), uns=dict(embedded.uns)
    )
    GenePTClassifier.setup_anndata(light, labels_key=labels_key, embedding_keys=list(light.obsm))
    model = GenePTClassifier(light)
    model.train(**train_kwargs)
    return model


def _check_call(adata, model, reference, labels_key, inputs, key_added: str) -> None:
    """Refuse a call that cannot work before anything is embedded, loaded or trained."""
    if (model is None) == (reference is None):
        raise ValueError(
            "Pass either model= (trained or saved) or reference= with labels_key=, not both."
        )
    if reference is not None and labels_key is None:
        raise ValueError("reference= needs labels_key=: the obs column with its cell types.")
    for name, value in (("adata", adata), ("reference", reference)):
        if value is not None:
            check_adata(value, name, empty_ok=False)
    if reference is not None and labels_key not in reference.obs:
        raise KeyError(
            f"No column {labels_key!r} in reference.obs; columns: "
            f"{list(reference.obs.columns)}. Pass the column with its cell types as labels_key=."
        )
    if inputs not in INPUTS:
        raise ValueError(f"inputs must be one of {list(INPUTS)}, not {inputs!r}.")
    if not isinstance(key_added, str) or not key_added:
        raise ValueError(f"key_added must be a non-empty string, got {key_added!r}.")
    record = adata.uns.get(key_added)
    ours = isinstance(record, Mapping) and "params" in record and "ontology_version" in record
    taken = [c for c in _columns(key_added) if c in adata.obs]
    if taken and not ours:  # re-annotating with the same key replaces our own columns only
        raise ValueError(
            f"key_added={key_added!r} would overwrite adata.obs[{taken[0]!r}], which "
            "genept_annotate did not write: pass another key_added (default "
            "'genept_cell_type'), or rename that column first."
        )


def _columns(key: str) -> dict[str, str]:
    """The ``obs`` columns written under ``key`` and the prediction column each holds."""
    return {
        key: "cell_type",
        f"{key}_ontology_term_id": "ontology_term_id",
        f"{key}_confidence": "confidence",
        f"{key}_finest": "finest_cell_type",
        f"{key}_finest_ontology_term_id": "finest_ontology_term_id",
        f"{key}_finest_probability": "finest_probability",
        f"{key}_reason": "reason",
        f"{key}_typicality": "typicality",
        f"{key}_majority_voting": "majority_voting",
        f"{key}_majority_voting_ontology_term_id": "majority_voting_ontology_term_id",
    }


def _check_numbers(
    min_confidence, max_error, novelty_rate, min_gene_overlap, n_expression_genes
) -> None:
    check_fraction("min_confidence", min_confidence, "(0, 1]")
    if max_error is not None:
        check_fraction("max_error", max_error, "(0, 1)")
    if novelty_rate is not None:
        check_fraction("novelty_rate", novelty_rate, "[0, 1)")
    check_fraction("min_gene_overlap", min_gene_overlap, "[0, 1]")
    positive_int("n_expression_genes", n_expression_genes, allow_none=True)


def _check_voting(adata: AnnData, majority_voting, over_clustering) -> None:
    if not isinstance(majority_voting, bool | np.bool_):
        raise TypeError(f"majority_voting must be True or False, got {majority_voting!r}.")
    if over_clustering is None:
        return
    if not majority_voting:
        raise ValueError("over_clustering= is what majority_voting=True votes in: pass both.")
    if over_clustering not in adata.obs:
        raise KeyError(
            f"over_clustering={over_clustering!r} is not a column of adata.obs; columns: "
            f"{list(adata.obs.columns)}. Pass a column of clusters, or leave it out for a "
            "Leiden over-clustering."
        )


def _write(adata: AnnData, prediction: pd.DataFrame, key: str) -> None:
    for column, source in _columns(key).items():
        if source not in prediction:  # the majority-voting columns, only when asked for
            if column in adata.obs:
                del adata.obs[column]
            continue
        values = prediction[source]
        if isinstance(values.dtype, pd.CategoricalDtype):
            # kept with all its categories (the reasons), so that columns of several calls
            # concatenate alike
            adata.obs[column] = values.array
        elif values.dtype.kind == "f":
            adata.obs[column] = values.to_numpy().astype(np.float32)
        else:
            adata.obs[column] = pd.Categorical(values.to_numpy())
