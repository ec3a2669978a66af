"""GenePT-w over a Dask array: :func:`~sc_genept._genept_w.genept_w` mapped over row chunks.

Each chunk of cells is embedded by :func:`genept_w` itself (the in-memory code path), lazily:
nothing is read until the result is computed, and no chunk needs another one (library-size
normalisation is per cell). Checks that need the values (negative values, NaN, counts mixed
with normalised values) run per chunk when it is computed. Sparse chunks of any format
(scipy COO or CSC, pydata ``sparse``) are read as CSR, converted chunk by chunk.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scanpy import logging as logg
from scipy import sparse

from sc_genept._checks import check_value_kind
from sc_genept._genept_w import ScaledDataError, genept_w


def is_dask(matrix) -> bool:
    """Whether ``matrix`` is a Dask array (without importing Dask when it is not)."""
    return type(matrix).__module__.split(".")[0] == "dask" and hasattr(matrix, "chunks")


def check_options(source: str, device: str, out_file) -> None:
    """Refuse the output options a lazy embedding cannot honour, naming the matrix."""
    if out_file is not None:
        raise ValueError(
            f"out_file is for in-memory or backed data; {source} is a Dask array, whose "
            "embedding is lazy: write it with dask (e.g. adata.obsm[key].to_zarr(...))."
        )
    if device not in ("auto", "cpu"):
        raise ValueError(
            f"device={device!r} with a Dask array: Dask's workers embed their chunks on "
            "their CPUs. Use device='cpu' (or 'auto'), or load the matrix to use a GPU."
        )


def row_readable(matrix):
    """``matrix`` whose sparse chunks are CSR, converted lazily chunk by chunk.

    GenePT-w reads chunks by rows; COO chunks cannot be sliced at all and CSC ones are
    read by columns. Converting one chunk costs a pass over its stored values, less than
    embedding it; dense chunks pass through untouched.
    """
    from dask.array.utils import meta_from_array

    meta = meta_from_array(matrix)
    if sparse.issparse(meta) or _is_other_sparse(meta):
        meta = sparse.csr_matrix((0, 0), dtype=matrix.dtype)
    return matrix.map_blocks(_as_csr, dtype=matrix.dtype, meta=meta)


def _as_csr(chunk):
    if sparse.issparse(chunk):
        return chunk if chunk.format == "csr" else sparse.csr_matrix(chunk)
    if _is_other_sparse(chunk):  # e.g. pydata sparse.COO, which dask arrays often hold
        return sparse.csr_matrix(chunk.tocsr())
    return chunk


def _is_other_sparse(chunk) -> bool:
    """A sparse array of another library (pydata ``sparse``) that converts to scipy CSR."""
    return not isinstance(chunk, np.ndarray) and callable(getattr(chunk, "tocsr", None))


def full_width(matrix, source: str):
    """``matrix`` with one chunk along genes: each chunk of cells must hold all its genes."""
    if len(matrix.chunks[1]) > 1:
        logg.info(
            f"{source} is a Dask array chunked along genes ({len(matrix.chunks[1])} chunks): "
            "rechunking it to the full gene width, so that each chunk of cells holds all genes."
        )
        matrix = matrix.rechunk({1: -1})
    return matrix


@dataclass(frozen=True)
class FirstValues:
    """What the first chunk with a non-zero value holds: the kind every chunk must hold."""

    #: Integer counts (log-normalised) or not; None: no chunk has a non-zero value.
    counts: bool | None
    #: Its rows, for messages (``"rows 0–25"``).
    rows: str = ""


def first_values(matrix, var_index, gene_vectors, *, normalize, duplicates) -> FirstValues:
    """Whether the first chunk with values is counts to be log-normalised.

    Reads chunks in order until one has a non-zero value (usually the first), so that
    ``uns`` can say ``log_normalized`` without a pass over the data; every chunk is
    checked against it when it is computed, as the in-memory pass checks its blocks
    against the first block with values. ``normalize=False``: nothing is read.
    """
    if not normalize:
        return FirstValues(None)
    start = 0
    for i, n_rows in enumerate(matrix.chunks[0]):
        chunk = matrix.blocks[i].compute()
        result = genept_w(chunk, var_index, gene_vectors[:1], normalize=True, duplicates=duplicates)
        if result.counts is not None:
            return FirstValues(result.counts, f"rows {start}–{start + n_rows}")
        start += n_rows
    return FirstValues(None)


def embed_lazily(
    matrix,
    var_index: np.ndarray,
    gene_vectors: np.ndarray,
    *,
    normalize: bool,
    block_rows: int | None,
    offset: np.ndarray | None,
    duplicates,
    first: FirstValues,
    scaled_message: str,
    dtype: type = np.float32,
):
    """Cells × dims Dask array of the GenePT-w embedding of ``matrix``'s row chunks."""
    import dask.array as da

    gene_vectors = np.ascontiguousarray(gene_vectors, dtype=np.float32)
    n_dims = gene_vectors.shape[1]
    return da.map_blocks(
        _embed_chunk,
        matrix,
        dtype=dtype,
        chunks=(matrix.chunks[0], (n_dims,)),
        meta=np.empty((0, 0), dtype=dtype),
        var_index=np.asarray(var_index),
        gene_vectors=gene_vectors,
        normalize=normalize,
        block_rows=block_rows,
        offset=offset,
        duplicates=duplicates,
        first=first,
        scaled_message=scaled_message,
        out_dtype=dtype,
    )


def _embed_chunk(
    chunk,
    *,
    var_index,
    gene_vectors,
    normalize,
    block_rows,
    offset,
    duplicates,
    first,
    scaled_message,
    out_dtype,
    block_info=None,
):
    """One chunk's embedding, by :func:`genept_w`; errors name the chunk's rows."""
    start, stop = block_info[0]["array-location"][0] if block_info else (0, chunk.shape[0])
    try:
        result = genept_w(
            chunk,
            var_index,
            gene_vectors,
            normalize=normalize,
            block_rows=block_rows,
            offset=offset,
            duplicates=duplicates,
            out_dtype=out_dtype,
        )
    except ScaledDataError as err:
        detail = f"{err} of the Dask chunk of rows {start}–{stop}"
        raise ScaledDataError(scaled_message.replace("\0", detail)) from None
    except ValueError as err:
        raise ValueError(f"In the Dask chunk of rows {start}–{stop}: {err}") from None
    if normalize:
        first_rows = f"{first.rows.capitalize()} (the first Dask chunk with values)"
        check_value_kind(first_rows, first.counts, f"rows {start}–{stop}", result.counts)
    return result.embedding
