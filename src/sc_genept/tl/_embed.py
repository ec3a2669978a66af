"""``genept_embed``: GenePT-w cell embeddings in ``adata.obsm``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from scanpy import logging as logg

from sc_genept._checks import check_adata
from sc_genept._embedding import cell_embedding
from sc_genept._record import EmbeddingRecord
from sc_genept._utils import warn_caller
from sc_genept.genes import GeneEmbeddings

if TYPE_CHECKING:
    import pandas as pd
    from anndata import AnnData


def genept_embed(
    adata: AnnData,
    *,
    gene_embeddings: str | Path | GeneEmbeddings = "default",
    layer: str | None = None,
    use_raw: bool | None = None,
    gene_symbols: str | None = None,
    orthologs: Mapping[str, str] | pd.DataFrame | str | Path | None = None,
    normalize: bool = True,
    n_dims: int | None = None,
    genes: Sequence[str] | None = None,
    expression: bool = False,
    key_added: str = "X_genept",
    chunk_size: int | None = None,
    dtype: Literal["float32", "float16"] = "float32",
    device: str = "auto",
    out_file: str | Path | None = None,
    copy: bool = False,
) -> AnnData | None:
    """Embed cells with GenePT-w: the expression-weighted sum of their genes' text embeddings.

    Each gene of the gene table carries a text embedding of what is known about it. A cell's
    embedding is ``normalize(x @ E)``: its log-normalised expression ``x`` over the genes
    that have an embedding, times their embeddings ``E``, scaled to unit length
    :cite:p:`Chen2024`. Genes are matched by symbol (case-insensitive, then unambiguous
    aliases) or Ensembl id (version suffixes ignored), whichever ``var_names`` hold.

    Parameters
    ----------
    adata
        Annotated data matrix (cells × genes). May be backed (``backed="r"``), and its
        ``X`` (or ``layer``) may be a Dask array (see Notes).
    gene_embeddings
        The gene table: ``"default"`` (GO text embedded with all-MiniLM-L6-v2, bundled),
        another name from :func:`sc_genept.genes.available`, a parquet file written by
        :meth:`~sc_genept.genes.GeneEmbeddings.save`, or a
        :class:`~sc_genept.genes.GeneEmbeddings`.
    layer
        Use ``adata.layers[layer]`` instead of ``adata.X``.
    use_raw
        ``True``: use ``adata.raw``. ``False``: use ``adata.X`` (an error if it has
        negative values). ``None`` (default): ``adata.X``, unless it has negative values
        (it was scaled, e.g. by :func:`scanpy.pp.scale`) and ``adata.raw`` exists, in which
        case ``adata.raw`` (logged; ``uns[key_added]["source"]`` says which was used). For
        backed data only the first rows of ``adata.X`` are checked for this choice.
    gene_symbols
        Column of ``.var`` (or ``.raw.var``) holding the gene names to match, symbols or
        Ensembl ids. Default: the index (``var_names``). Columns with the same name (e.g.
        two Ensembl ids sharing a symbol) are one gene: their values are summed (counts
        before normalisation) into it, with a warning that names examples. To keep only
        the first column of each name instead, make the names unique first
        (``adata.var_names_make_unique()``); to choose how, aggregate them yourself.
    orthologs
        For another species than the table's (human): a map from the data's gene names
        to the table's symbols (a mapping, a two-column DataFrame, or a CSV/TSV path; see
        :func:`~sc_genept.genes.ortholog_map`), e.g. mouse → human orthologs. Genes that
        share one ortholog (mouse ``Ins1`` and ``Ins2`` → ``INS``) are summed into it. Without it, genes match by symbol ignoring case, which pairs most mouse
        genes with their human orthologs (``Cd3e`` → ``CD3E``) but misses those named
        differently. ``uns[key_added]["genes"]["matched_by"]["ortholog"]`` counts the
        genes matched through it.
    normalize
        Library-size normalise each cell to 10,000 and ``log1p`` it when the values are raw
        counts (all integers, in any dtype: library sizes are summed in float64, so float16
        or integer counts cannot overflow); data that is already normalised is used as it
        is. ``False`` uses the values as they are in any case.
    n_dims
        Use only the first ``n_dims`` dimensions of the gene embeddings (re-normalised;
        Matryoshka truncation for OpenAI ``text-embedding-3-*`` tables): an integer from 1
        to the table's dimensions.
    genes
        Embed on these genes of the table only (table symbols), e.g. a trained model's
        :attr:`~sc_genept.model.GenePTClassifier.genes`: embeddings of two datasets are
        comparable only when made on the same genes. Default: every gene of the table that
        ``adata`` has.
    expression
        Also store the (log-normalised) expression of the genes the embedding is made of,
        sparse, in ``obsm[key_added + "_expression"]``: with the embedding, the input of
        :class:`~sc_genept.model.GenePTClassifier`'s default hybrid model.
    key_added
        Key in ``adata.obsm`` and ``adata.uns`` for the results. Overwriting an ``obsm``
        entry that genept_embed did not make (e.g. ``"X_pca"``; one without a GenePT-w
        record in ``uns[key_added]``) warns; re-running on its own key does not.
    chunk_size
        Cells embedded at a time (a positive integer); bounds the memory used. Default:
        enough cells for a 128 MiB block of matched genes.
    dtype
        Of the embedding: ``"float16"`` halves its memory (computed in float32, each
        block rounded once it is normalised; values agree with float32 to ~1e-3).
    device
        Where the product with the gene table runs. ``"auto"`` (default): a CUDA GPU when
        torch sees one, else the CPU. ``"cpu"``: a cache-tiled sparse kernel on all cores
        (or one BLAS call on dense data, whichever measures faster on the first block).
        Any other torch device (``"cuda"``, ``"cuda:1"``): torch, block by block, the gene
        table moved there once. Normalisation always runs on the CPU.
    out_file
        Write the embedding block by block to this ``.npy`` file (replaced atomically) and
        put a read-only memory map of it in ``obsm``: for atlases whose embedding does not
        fit in memory (memory stays bounded by one block). ``np.load(out_file,
        mmap_mode="r")`` reopens it. Not for Dask data.
    copy
        Return a copy instead of writing to ``adata``.

    Returns
    -------
    Returns ``None`` if ``copy=False``, else a copy of ``adata``. Sets the following fields:

    ``adata.obsm[key_added]`` : :class:`numpy.ndarray` (dtype ``dtype``)
        (memory-mapped from ``out_file`` when given; a ``dask.array.Array`` for Dask
        input). Unit-length cell embeddings, ``n_obs × n_dims``; zero for cells that express none
        of the matched genes.
    ``adata.uns[key_added]`` : :class:`dict`
        ``params`` (the arguments), ``gene_embeddings`` (the table's provenance),
        ``genes`` (how many genes matched, and how), ``gene_set`` (the table genes the
        embedding is made of: ``names``, their ``mean_expression`` over the cells, the
        ``fraction_of_matched_expression`` they carry, and a ``sha256`` of the names),
        ``fraction_counts_covered`` (share of all expression in matched genes),
        ``log_normalized`` and ``n_cells_empty``.
    ``adata.obsm[key_added + "_expression"]``, ``adata.uns[key_added + "_expression"]``
        Only with ``expression=True``: :class:`scipy.sparse.csr_matrix` of the genes'
        values, columns in the order of ``gene_set["names"]``, and its record.

    Raises
    ------
    ValueError
        For options out of range (``chunk_size``, ``n_dims``, ...) and data that cannot
        be embedded (no gene matches, NaN values, counts mixed with normalised values).
        ``ScaledDataError`` (a ``ValueError``) when the matrix
        has negative values. ``adata`` is left as it was.
    NotImplementedError
        ``expression=True`` with a Dask matrix.

    Warns
    -----
    UserWarning
        When ``key_added`` overwrites results genept_embed did not make; when names of
        matched genes are duplicated (their columns are summed); when a sparse matrix is
        not CSR (it is copied to CSR for the call); and when few genes match, they cover
        little of the expression, or cells express none of them.

    Notes
    -----
    **Dask.** When the matrix is a Dask array (dense, or of ``scipy.sparse`` CSR chunks,
    chunked along cells; one chunked along genes is rechunked to the full gene width, with
    a logged note), ``obsm[key_added]`` is a lazy Dask array: each chunk of cells is
    embedded, when computed, by the same blocked pass as in-memory data, with per-cell
    normalisation, so no chunk depends on another and the matrix is never gathered. Only
    the first chunk is read up front (counts or normalised values; with ``use_raw=None``,
    its first rows also tell whether ``X`` is scaled). Negative values (and NaN, or counts
    mixed with normalised values) elsewhere raise ``ScaledDataError`` (resp.
    ``ValueError``) when the chunk holding them is computed, naming its rows.
    ``uns[key_added]`` records what is known without a pass over the data (``params``,
    ``genes``, ``gene_set`` names and hash, ``log_normalized`` from the first chunk) and
    ``lazy: True``; ``fraction_counts_covered``, ``n_cells_empty`` and the gene set's
    ``mean_expression`` and ``fraction_of_matched_expression`` are None, so left out (and
    the coverage and empty-cell warnings are not given). ``expression=True`` raises
    ``NotImplementedError``: load the matrix into memory for it.

    Examples
    --------
    >>> import scanpy as sc
    >>> import sc_genept
    >>> adata = sc.datasets.pbmc68k_reduced()
    >>> sc.tl.genept_embed(adata, use_raw=True)
    >>> adata.obsm["X_genept"].shape
    (700, 384)
    """
    check_adata(adata, empty_ok=False)
    if copy and adata.isbacked:
        raise ValueError(
            "copy=True needs an in-memory AnnData; for backed data use copy=False (the "
            "embedding goes to adata.obsm, which is held in memory) or adata.to_memory()."
        )
    if not isinstance(key_added, str) or not key_added:
        raise ValueError(f"key_added must be a non-empty string, got {key_added!r}.")
    embedded = cell_embedding(
        adata,
        gene_embeddings=gene_embeddings,
        layer=layer,
        use_raw=use_raw,
        gene_symbols=gene_symbols,
        orthologs=orthologs,
        normalize=normalize,
        n_dims=n_dims,
        genes=genes,
        chunk_size=chunk_size,
        expression=expression,
        dtype=dtype,
        device=device,
        out_file=out_file,
    )
    embedding, record = embedded.embedding, embedded.record
    _warn_overwrite(adata, [key_added, *([f"{key_added}_expression"] if expression else [])])
    adata = adata.copy() if copy else adata
    embedded.store(adata, key_added)
    genes = record.genes
    covered = record.fraction_counts_covered
    covering = (
        "embedding lazily (Dask) the expression in"
        if covered is None
        else f"covering {covered:.1%} of the expression in"
    )
    logg.info(
        f"GenePT-w: {genes['n_genes_matched']} of {genes['n_genes']} genes matched "
        f"({genes['fraction_genes_matched']:.1%}), {covering} {record.source}\n"
        f"    added 'obsm[{key_added!r}]' ({embedding.shape[1]} dims) and 'uns[{key_added!r}]'"
    )
    return adata if copy else None


def _warn_overwrite(adata: AnnData, keys: Sequence[str]) -> None:
    """Warn when writing ``keys`` replaces ``obsm``/``uns`` entries genept_embed did not make."""
    taken = [
        f"obsm[{key!r}]"
        for key in keys
        if key in adata.obsm and not _is_genept_record(adata.uns.get(key))
    ]
    taken += [
        f"uns[{key!r}]"
        for key in keys
        if key in adata.uns and not _is_genept_record(adata.uns[key])
    ]
    if taken:
        warn_caller(
            f"key_added overwrites adata.{' and adata.'.join(taken)}, which genept_embed did "
            "not make. Pass another key_added (default 'X_genept') to keep them."
        )


def _is_genept_record(value) -> bool:
    """Whether ``value`` is an ``uns`` entry written by genept_embed (embedding or expression)."""
    try:
        EmbeddingRecord.from_uns(value)
    except ValueError:
        return False
    return True
