"""``genept_annotate``: Cell Ontology labels in ``adata.obs``, from a model or a reference."""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import anndata as ad
import numpy as np
import pandas as pd
import scanpy as sc
from scanpy import logging as logg
from scipy import sparse

from sc_genept._checks import check_adata, check_fraction, positive_int
from sc_genept._embedding import cell_embedding, expression_record, gene_set_record
from sc_genept._utils import h5ad_safe, warn_caller
from sc_genept.genes import GeneEmbeddings
from sc_genept.genes import available as available_tables
from sc_genept.genes import load as load_table
from sc_genept.model._calls import DEFAULT_NOVELTY_RATE
from sc_genept.model._overlap import (
    DEFAULT_MIN_GENE_OVERLAP,
    check_gene_overlap,
    check_shared_genes,
    shared_gene_overlap,
)
from sc_genept.tl._voting import majority_vote
from sc_genept.tl._voting import over_clustering as over_clustering_of

if TYPE_CHECKING:
    from anndata import AnnData

    from sc_genept.model import GenePTClassifier

_EMBEDDING_KEY = "X_genept"
_EXPRESSION_KEY = "X_genept_expression"
#: The inputs a one-line annotation trains on: the GenePT-w embedding, and with it the
#: expression of the same genes (the default: across studies it is what makes labels right).
INPUTS = {
    "genept+expression": (_EMBEDDING_KEY, _EXPRESSION_KEY),
    "genept": (_EMBEDDING_KEY,),
}


def genept_annotate(
    adata: AnnData,
    model: GenePTClassifier | str | Path | None = None,
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
    check_fraction("min_confidence", min_confidence, "(0, 1]")
    if max_error is not None:
        check_fraction("max_error", max_error, "(0, 1)")
    if novelty_rate is not None:
        check_fraction("novelty_rate", novelty_rate, "[0, 1)")
    _check_voting(adata, majority_voting, over_clustering)
    check_fraction("min_gene_overlap", min_gene_overlap, "[0, 1]")
    positive_int("n_expression_genes", n_expression_genes, allow_none=True)
    from sc_genept.model import GenePTClassifier  # torch and Lightning: only when annotating

    if model is None:
        keys = INPUTS[inputs]
        table = _table(gene_embeddings)
        embed = partial(_embedded, table=table, keys=keys, n_dims=n_dims, orthologs=orthologs)
        # reference and query are embedded on the genes they share: embeddings over
        # different genes differ systematically and a model trained on one misreads the other
        query_embed = partial(embed, adata, layer=layer, use_raw=use_raw)
        reference_embed = partial(
            embed, reference, layer=reference_layer, use_raw=reference_use_raw
        )
        ref_embedded = reference_embed()
        ref_genes = ref_embedded.uns[_EMBEDDING_KEY]["gene_set"]
        embedded = query_embed(genes=ref_genes["names"])
        shared = embedded.uns[_EMBEDDING_KEY]["gene_set"]["names"]
        overlap = shared_gene_overlap(
            ref_genes["n_genes"],
            embedded.uns[_EMBEDDING_KEY]["genes"]["n_genes_matched"],
            len(shared),
        )
        check_shared_genes(overlap, min_gene_overlap)
        if len(shared) < ref_genes["n_genes"]:
            ref_embedded = reference_embed(genes=shared)
        if _EXPRESSION_KEY in keys:
            informative = _most_variable(ref_embedded, n_expression_genes)
            for light in (ref_embedded, embedded):
                _keep_expression_genes(light, informative)
        model = _train_on(reference, ref_embedded, labels_key, **train_kwargs)
        model_source = "reference"
    else:
        if train_kwargs or reference_layer is not None or reference_use_raw is not None:
            given = sorted(train_kwargs) + [
                k
                for k, v in (
                    ("reference_layer", reference_layer),
                    ("reference_use_raw", reference_use_raw),
                )
                if v is not None
            ]
            raise TypeError(
                f"genept_annotate got {given} with model=: they apply only when training on "
                "reference=. A given model is used as trained; to retrain it, call "
                "model.train(...) first."
            )
        model_source = "object"
        if not isinstance(model, GenePTClassifier):
            if not isinstance(model, str | os.PathLike):
                raise TypeError(
                    "model must be a GenePTClassifier or the folder its save() wrote (a str or "
                    f"Path), or a pretrained model's name, got {type(model).__name__}."
                )
            model, model_source = _load_model(model)
        elif model.pretrained_name_ is not None:
            model_source = "pretrained"
        gene_set = model.gene_set
        embedded = _embedded(
            adata,
            layer=layer,
            use_raw=use_raw,
            table=_model_table(model, gene_embeddings, n_dims),
            keys=model.embedding_keys,
            genes=model.genes,
            orthologs=orthologs,
            # genes the query lacks count as typical of the reference, not as unexpressed
            missing_values=dict(zip(gene_set["names"], gene_set["mean_expression"], strict=True))
            if gene_set
            else None,
        )
        if _EXPRESSION_KEY in embedded.obsm:  # a model may read fewer genes' expression
            _keep_expression_genes(embedded, model.gene_sets_[_EXPRESSION_KEY]["names"])
        overlap = model.gene_overlap(embedded.uns[_EMBEDDING_KEY]["gene_set"]["names"])
        check_gene_overlap(overlap, min_gene_overlap)
    with warnings.catch_warnings():  # the overlap was checked and warned about above
        warnings.filterwarnings("ignore", message="The query has .* of the model's")
        prediction = model.predict(
            embedded,
            min_confidence=min_confidence,
            max_error=max_error,
            novelty_rate=novelty_rate,
            min_gene_overlap=min_gene_overlap,
        )

    crossed = _through_orthologs(embedded)
    adata = adata.copy() if copy else adata
    if _EMBEDDING_KEY not in adata.obsm:  # keep the embedding made
        adata.obsm[_EMBEDDING_KEY] = embedded.obsm[_EMBEDDING_KEY]
        adata.uns[_EMBEDDING_KEY] = embedded.uns[_EMBEDDING_KEY]
    if majority_voting:
        clusters = (
            adata.obs[over_clustering].to_numpy()
            if over_clustering is not None
            else over_clustering_of(embedded.obsm[_EMBEDDING_KEY], embedded.obs_names)
        )
        voted = majority_vote(prediction["ontology_term_id"].to_numpy(), clusters)
        prediction["majority_voting_ontology_term_id"] = voted
        prediction["majority_voting"] = model.ontology.names(voted)
    _write(adata, prediction, key_added)
    adata.uns[key_added] = h5ad_safe(
        {
            "params": {
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
            },
            "gene_embeddings": embedded.uns[_EMBEDDING_KEY]["gene_embeddings"],
            "gene_overlap": overlap or None,
            "genes_through_orthologs": crossed,
            "model": str(model._model_summary_string),
            "model_source": model_source,
            "pretrained_model": model.pretrained_name_,
            "ontology_version": model.ontology.version,
        }
    )
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
    return adata if copy else None


def _through_orthologs(embedded: AnnData) -> dict:
    """How many of the query's genes matched the table across species, and how."""
    genes = embedded.uns[_EMBEDDING_KEY]["genes"]
    return {
        "by_ortholog_table": int(genes["matched_by"].get("ortholog", 0)),
        "by_symbol_ignoring_case": int(genes.get("n_symbol_case_differs", 0)),
    }


def _load_model(model: str | os.PathLike) -> tuple[GenePTClassifier, str]:
    """A saved folder (an existing path) or a pretrained model (a registry name)."""
    from sc_genept.model import GenePTClassifier, ModelFolderError
    from sc_genept.model import _pretrained as pretrained

    is_name = pretrained.is_pretrained(model)
    if Path(model).exists() or not isinstance(model, str):
        if is_name:
            warn_caller(
                f"model={model!r} is both a path here and a pretrained model's name: loading "
                f"the folder. For the pretrained model, call "
                f"GenePTClassifier.load_pretrained({model!r})."
            )
        return GenePTClassifier.load(model), "folder"
    if is_name:
        return GenePTClassifier.load_pretrained(model), "pretrained"
    raise ModelFolderError(
        f"{model} is not a folder: pass the folder that GenePTClassifier.save wrote, or the name "
        f"of a pretrained model: {pretrained.names()} (sc_genept.model.available_models() "
        "describes them)."
    )


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


def _embedded(
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
        expression=_EXPRESSION_KEY in keys,
    )
    light = ad.AnnData(
        obs=pd.DataFrame(index=adata.obs_names.copy()),
        obsm={_EMBEDDING_KEY: made.embedding},
        uns={_EMBEDDING_KEY: made.record},
    )
    if _EXPRESSION_KEY in keys:
        light.obsm[_EXPRESSION_KEY] = made.expression
        light.uns[_EXPRESSION_KEY] = expression_record(made.record)
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


def _most_variable(light: AnnData, n_genes: int | None) -> np.ndarray | None:
    """The ``n_genes`` most variable genes of an expression input (``None``: all of them)."""
    names = np.asarray(light.uns[_EXPRESSION_KEY]["gene_set"]["names"], dtype=object)
    if n_genes is None or n_genes >= len(names):
        return None
    x = light.obsm[_EXPRESSION_KEY]
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


def _keep_expression_genes(light: AnnData, genes) -> None:
    """Cut the expression input of ``light`` to the columns of ``genes`` (``None``: all)."""
    if genes is None:
        return
    record = light.uns[_EXPRESSION_KEY]["gene_set"]
    names = np.asarray(record["names"], dtype=object)
    keep = np.flatnonzero(np.isin(names, np.asarray(genes, dtype=object)))
    if len(keep) == len(names):
        return
    mean = record["mean_expression"]
    light.obsm[_EXPRESSION_KEY] = light.obsm[_EXPRESSION_KEY][:, keep]
    light.uns[_EXPRESSION_KEY] = {
        **light.uns[_EXPRESSION_KEY],
        "gene_set": gene_set_record(
            names[keep],
            None if mean is None else np.asarray(mean)[keep],
            fraction_of_matched_expression=None,
        ),
    }


def _table(gene_embeddings: str | Path | GeneEmbeddings | None) -> GeneEmbeddings:
    if isinstance(gene_embeddings, GeneEmbeddings):
        return gene_embeddings
    return load_table("default" if gene_embeddings is None else gene_embeddings)


def _model_table(
    model: GenePTClassifier, gene_embeddings: str | Path | GeneEmbeddings | None, n_dims
) -> GeneEmbeddings:
    """The gene table ``model`` was trained on, cut to its dimensions, found by content hash."""
    trained = model.embedding_provenance_.get(_EMBEDDING_KEY) or {}
    dims = trained.get("n_dims")
    if n_dims is not None and dims is not None and n_dims != dims:
        raise ValueError(
            f"n_dims={n_dims}, but the model was trained on {dims} dimensions of its gene "
            "table: leave n_dims out."
        )
    candidates = available_tables() if gene_embeddings is None else [gene_embeddings]
    for candidate in candidates:
        table = _table(candidate)
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
