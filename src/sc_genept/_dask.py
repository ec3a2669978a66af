"""GenePT-w over a Dask array: :func:`~sc_genept._genept_w.genept_w` mapped over row chunks.

Each chunk of cells is embedded by :func:`genept_w` itself (the in-memory code path), lazily:
nothing is read until the result is computed, and no chunk needs another one (library-size
normalisation is per cell). Checks that need the values (negative values, NaN, counts mixed
with normalised values) run per chunk when it is computed.
"""

from __future__ import annotations

import numpy as np
from scanpy import logging as logg

from sc_genept._genept_w import ScaledDataError, genept_w


def is_dask(matrix) -> bool:
    """Whether ``matrix`` is a Dask array (without importing Dask when it is not)."""
    return type(matrix).__module__.split(".")[0] == "dask" and hasattr(matrix, "chunks")


def full_width(matrix, source: str):
    """``matrix`` with one chunk along genes: each chunk of cells must hold all its genes."""
    if len(matrix.chunks[1]) > 1:
        logg.info(
            f"{source} is a Dask array chunked along genes ({len(matrix.chunks[1])} chunks): "
            "rechunking it to the full gene width, so that each chunk of cells holds all genes."
        )
        matrix = matrix.rechunk({1: -1})
    return matrix


def first_chunk_log_normalized(matrix, var_index, gene_vectors, *, normalize, duplicates):
    """Whether the first chunk is counts to be log-normalised (None: it has no values).

    Reads one chunk, so that ``uns`` can say ``log_normalized`` without a pass over the
    data; every other chunk is checked against it when it is computed.
    """
    if not normalize:
        return False
    chunk = matrix.blocks[0].compute()
    result = genept_w(chunk, var_index, gene_vectors[:1], normalize=True, duplicates=duplicates)
    return result.log_normalized if result.fraction_counts_covered > 0 else None


def embed_lazily(
    matrix,
    var_index: np.ndarray,
    gene_vectors: np.ndarray,
    *,
    normalize: bool,
    block_rows: int | None,
    offset: np.ndarray | None,
    duplicates,
    log_normalized: bool | None,
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
        log_normalized=log_normalized,
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
    log_normalized,
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
    has_values = result.fraction_counts_covered > 0
    if normalize and has_values and None not in (log_normalized, result.log_normalized):
        if result.log_normalized != log_normalized:
            kinds = {True: "integer counts", False: "non-integer (normalised) values"}
            raise ValueError(
                f"The first Dask chunk holds {kinds[log_normalized]} but the chunk of rows "
                f"{start}–{stop} holds {kinds[result.log_normalized]}: the matrix mixes raw "
                "counts with normalised values. Pass normalize=False to embed the values as "
                "they are, or a layer that is all counts."
            )
    return result.embedding
