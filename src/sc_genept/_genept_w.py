"""GenePT-w: a cell is the expression-weighted, L2-normalised sum of its genes' embeddings.

Works block by block over the rows of in-memory dense and CSR matrices and of backed
dense and CSR ones, so memory stays bounded by the block size: an in-memory CSR matrix is
read through views of its arrays (whatever its index dtypes), never copied whole. Other
in-memory sparse formats are converted to CSR once, with a warning that says so; backed
CSC is refused (each block would read all of it). Each block's matched genes are made dense
and multiplied with one BLAS call: at single-cell densities (~10 % non-zero) multithreaded
dense GEMM beats scipy's single-threaded sparse × dense product several-fold.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import sparse
from tqdm.auto import tqdm

from sc_genept._utils import warn_caller

#: Library size every cell is scaled to before log1p (fixed, so a cell's embedding does not
#: depend on which other cells are in the dataset or the block).
TARGET_SUM = 1e4
_BLOCK_BYTES = 128 * 2**20  # dense float32 block of matched genes
_PROGRESS_MIN_BLOCKS = 5


class ScaledDataError(ValueError):
    """The expression matrix has negative values, so it cannot weight gene embeddings."""


class NonFiniteDataError(ValueError):
    """The expression matrix has NaN or infinite values."""


#: Largest value expected in log-normalised data (log1p of 10,000 counts is 9.2).
_LOG_SCALE_MAX = 50


def _row_norms(x: np.ndarray) -> np.ndarray:
    """Euclidean norm of each row, without a rows × columns temporary."""
    return np.sqrt(np.einsum("ij,ij->i", x, x))


def _normalise_rows(rows: np.ndarray, offset) -> None:
    """In place: add ``offset`` (if any) to every row, then scale each row to unit length.

    Rows that stay zero stay zero.
    """
    if offset is not None:
        rows += np.asarray(offset, dtype=np.float32)
    norms = _row_norms(rows)[:, None]
    np.divide(rows, norms, out=rows, where=norms > 0)
    rows[norms[:, 0] == 0] = 0.0


@dataclass
class WeightedSum:
    """Result of :func:`genept_w`."""

    embedding: np.ndarray
    n_empty: int
    fraction_counts_covered: float
    log_normalized: bool
    #: Sum over cells of each matched gene's (normalised) value, aligned with ``var_index``.
    gene_totals: np.ndarray
    #: Cells × embedded genes (normalised) values, CSR, columns aligned with the first
    #: ``len(gene_vectors)`` of ``var_index``; only with ``return_expression=True``.
    expression: sparse.csr_matrix | None = None


def default_block_rows(n_matched: int) -> int:
    """Rows per block so that the dense block of matched genes stays near 128 MiB."""
    return int(np.clip(_BLOCK_BYTES // (4 * max(n_matched, 1)), 256, 65536))


def genept_w(
    matrix,
    var_index: np.ndarray,
    gene_vectors: np.ndarray,
    *,
    normalize: bool = True,
    block_rows: int | None = None,
    offset: np.ndarray | None = None,
    return_expression: bool = False,
    duplicates: tuple[np.ndarray, np.ndarray] | None = None,
    out_dtype: type = np.float32,
) -> WeightedSum:
    """Embed every row (cell) of ``matrix``.

    Parameters
    ----------
    matrix
        Cells × genes expression: ndarray, scipy sparse, h5py dataset or backed sparse.
    var_index
        Columns of ``matrix`` that have an embedding.
    gene_vectors
        ``(k, d)`` embeddings of the first ``k`` genes of ``var_index``, row-aligned. Only
        those are embedded (and returned as expression); the rest of ``var_index`` is read
        for ``gene_totals`` alone, so the share a gene set carries costs no product.
    normalize
        ``True`` (as ``genept_embed``'s ``normalize``): library-size normalise to
        :data:`TARGET_SUM` and log1p if the values are integer counts (decided on the first
        block with non-zero values; a later block of the other kind is an error).
        ``False``: use the values as they are. Library sizes are summed in float64 whatever
        the matrix dtype (a float16 or integer sum could overflow).
    block_rows
        Rows per block; default from :func:`default_block_rows`.
    out_dtype
        Of the embedding returned; each block is computed and normalised in float32 and
        rounded once (``float16`` halves the memory of the result).
    offset
        ``(d,)`` vector added to every cell's sum before normalisation: the contribution of
        genes the data lacks, imputed (e.g. their mean expression in a reference times
        their vectors).
    return_expression
        Also return the matched genes' (normalised) values as a sparse matrix.
    duplicates
        ``(columns, slots)``: further columns of ``matrix`` whose values are added to those
        of ``var_index[slots]`` (the same gene under a duplicate name), before
        normalisation.

    Raises
    ------
    ScaledDataError
        If any value is negative.
    """
    n_obs = matrix.shape[0]
    block_rows = block_rows or default_block_rows(len(var_index))
    gene_vectors = np.ascontiguousarray(gene_vectors, dtype=np.float32)
    columns = _Columns.of(matrix.shape[1], np.asarray(var_index), duplicates)
    if sparse.issparse(matrix) and matrix.format != "csr":
        # row blocks of CSC would each scan the whole matrix: one CSR copy is cheaper
        size = (matrix.data.nbytes + matrix.indices.nbytes + matrix.indptr.nbytes) / 2**20
        warn_caller(
            f"The matrix is {matrix.format.upper()}, not CSR: embedding reads it by cells, so "
            f"a CSR copy of it (about {size:,.0f} MiB) is made for this call. Store it as CSR "
            "once (e.g. adata.X = adata.X.tocsr()) to embed without the copy."
        )
        matrix = matrix.tocsr()
    elif getattr(matrix, "format", None) == "csc":  # backed CSC: same problem, on disk
        raise ValueError(
            "The matrix is a backed CSC (column-major) matrix: reading blocks of cells would "
            "read all of it for every block. Convert it to CSR once (e.g. load it, "
            "X.tocsr(), write_h5ad) or load it into memory with adata.to_memory()."
        )

    out = np.empty((n_obs, gene_vectors.shape[1]), dtype=out_dtype)
    # a block is made in float32; into ``out`` directly when that is float32 too
    block_out = (
        None
        if out.dtype == np.float32
        else np.empty((min(block_rows, n_obs), gene_vectors.shape[1]), dtype=np.float32)
    )
    n_embedded = len(gene_vectors)
    buffer = np.empty((min(block_rows, n_obs), n_embedded), dtype=np.float32)
    matched_total = all_total = 0.0
    gene_totals = np.zeros(len(var_index), dtype=np.float64)
    detected = None  # integer counts or not, when normalize=True
    normalize = None if normalize else False  # None: undecided until a block has values
    expression_blocks = []
    empty = np.zeros(n_obs, dtype=bool)
    starts = range(0, n_obs, block_rows)
    bar = tqdm(starts, desc="GenePT-w", unit="block", disable=len(starts) < _PROGRESS_MIN_BLOCKS)
    for start in bar:
        block = _Block.read(matrix, start, min(start + block_rows, n_obs), columns)
        if normalize is None and block.is_integer is not None:  # first block with values decides
            normalize = block.is_integer
            detected = block.is_integer
            deciding = f"{start}–{start + block.n_rows}"
            if not detected and block.max() > _LOG_SCALE_MAX:
                warn_caller(
                    f"The values are not integer counts but reach {block.max():.0f}: this looks "
                    "normalised but not log-transformed, and is embedded as it is. Pass raw "
                    "counts (layer=...) to have them normalised, or log1p the data first."
                )
        if None not in (detected, block.is_integer) and block.is_integer != detected:
            kinds = ("integer counts", "non-integer (normalised) values")
            first, this = (kinds[0], kinds[1]) if detected else (kinds[1], kinds[0])
            raise ValueError(
                f"Rows {deciding} hold {first} but rows {start}–{start + block.n_rows} hold "
                f"{this}: the matrix mixes raw counts with normalised values. Pass "
                "normalize=False to embed the values as they are, or a layer that is all counts."
            )
        all_total += block.library_size.sum()
        matched_total += block.matched_sum
        if normalize:
            block.log_normalize()
        block.add_gene_totals(gene_totals)
        if return_expression:
            expression_blocks.append(block.matched_csr(n_embedded))
        dense = block.matched_dense(buffer[: block.n_rows])
        rows = out[start : start + block.n_rows] if block_out is None else block_out[: block.n_rows]
        np.matmul(dense, gene_vectors, out=rows)
        # normalised block by block: memory stays bounded by the block, not the dataset
        empty[start : start + block.n_rows] = _row_norms(rows) == 0
        _normalise_rows(rows, offset)
        if block_out is not None:
            out[start : start + block.n_rows] = rows
    return WeightedSum(
        embedding=out,
        n_empty=int(empty.sum()),
        fraction_counts_covered=matched_total / all_total if all_total else 0.0,
        log_normalized=bool(normalize),
        gene_totals=gene_totals,
        expression=(
            sparse.vstack(expression_blocks, format="csr")
            if expression_blocks
            else sparse.csr_matrix((n_obs, n_embedded), dtype=np.float32)
        )
        if return_expression
        else None,
    )


def _csr_rows(matrix, start: int, stop: int):
    """Rows ``start:stop`` of a CSR matrix as ``(data, indices, indptr)``, indptr from 0.

    Views of the matrix's own arrays: scipy's row slicing casts ``indptr`` and ``indices``
    of the *whole* matrix to one dtype when they differ (int64 ``indptr`` with int32
    ``indices``, as h5ad files of large datasets hold), a copy per block. Rows with
    duplicate entries are summed in a copy of the block, never in the user's matrix.
    """
    indptr = matrix.indptr[start : stop + 1]
    lo, hi = int(indptr[0]), int(indptr[-1])
    data, indices = matrix.data[lo:hi], matrix.indices[lo:hi]
    indptr = (indptr - lo).astype(np.int64)  # block rows + 1 values: cheap
    if _has_duplicates(indices, indptr):
        summable = data.astype(np.float32) if data.dtype == np.float16 else data.copy()
        block = sparse.csr_matrix(
            (summable, indices.copy(), indptr), shape=(stop - start, matrix.shape[1])
        )
        block.sum_duplicates()
        data, indices, indptr = block.data, block.indices, block.indptr
    return data, indices, indptr


def _has_duplicates(indices: np.ndarray, indptr: np.ndarray) -> bool:
    """Whether some row may repeat a column: indices not strictly increasing within a row."""
    if len(indices) < 2:
        return False
    not_increasing = np.diff(indices) <= 0
    boundary = indptr[1:-1]
    boundary = boundary[(boundary > 0) & (boundary < len(indices))]
    not_increasing[boundary - 1] = False  # pairs that straddle two rows
    return bool(not_increasing.any())


@dataclass
class _Columns:
    """Which columns feed which matched gene ("slot"), computed once for all blocks."""

    var_index: np.ndarray
    #: Slot of each column of the matrix, -1 for genes without an embedding.
    slot: np.ndarray
    #: Further columns and the slots they are added to (duplicate names); None if none.
    extra: tuple[np.ndarray, np.ndarray] | None

    @classmethod
    def of(cls, n_columns: int, var_index: np.ndarray, duplicates) -> _Columns:
        slot = np.full(n_columns, -1, dtype=np.int64)
        slot[var_index] = np.arange(len(var_index))
        if duplicates is not None and len(duplicates[0]):
            extra = (np.asarray(duplicates[0]), np.asarray(duplicates[1]))
            slot[extra[0]] = extra[1]  # summed into the same gene's slot
        else:
            extra = None
        return cls(var_index, slot, extra)


class _Block:
    """Rows ``start:stop`` of the matrix, checked, with their matched genes gathered once.

    Checks and library sizes use all values; normalisation and the product use only the
    matched genes' values.
    """

    def __init__(self, rows, start: int, stop: int, columns: _Columns):
        """``rows``: dense ndarray or CSR ``(data, indices, indptr)`` of rows start:stop."""
        self.n_rows = stop - start
        is_sparse = isinstance(rows, tuple)
        values = rows[0] if is_sparse else rows
        if values.dtype.kind == "f" and not np.isfinite(values).all():
            raise NonFiniteDataError(
                f"The matrix has NaN or infinite values in rows {start}–{stop}; remove or fill "
                "them (e.g. with 0) before embedding."
            )
        if values.size and values.min() < 0:
            raise ScaledDataError(f"negative values in rows {start}–{stop}")
        self._values = values
        # judged on non-zero values only; None: all zero, nothing to tell counts from
        # normalised data
        nonzero = values[values != 0]
        self.is_integer = (
            None
            if nonzero.size == 0
            else bool(np.issubdtype(values.dtype, np.integer) or np.all(np.mod(nonzero, 1) == 0))
        )
        self._n_matched_genes = n_slots = len(columns.var_index)
        if is_sparse:
            data, indices, indptr = rows
            row_all = np.repeat(np.arange(self.n_rows), np.diff(indptr))
            # float64 sums: a float16 (or small integer) sum of counts overflows
            self.library_size = np.bincount(row_all, weights=data, minlength=self.n_rows).astype(
                np.float64,
                copy=False,  # bincount gives int64 when the block stores nothing
            )
            slot = columns.slot[indices]
            keep = slot >= 0
            self._row_of, self._slot = row_all[keep], slot[keep]
            self.matched = data[keep]  # stored values of matched genes
            if columns.extra is not None:  # two columns of one gene: add them up per cell
                pair = self._row_of * n_slots + self._slot
                pair, which = np.unique(pair, return_inverse=True)
                self.matched = np.bincount(which, weights=self.matched)
                self._row_of, self._slot = pair // n_slots, pair % n_slots
        else:
            self.library_size = rows.sum(axis=1, dtype=np.float64)
            self._row_of = None
            self.matched = rows[:, columns.var_index]  # dense cells × matched genes
            if columns.extra is not None:  # float32, where added counts cannot overflow
                self.matched = self.matched.astype(np.float32)
                extra_columns, extra_slots = columns.extra
                np.add.at(self.matched, (slice(None), extra_slots), rows[:, extra_columns])
        self.matched_sum = float(self.matched.sum(dtype=np.float64))

    @classmethod
    def read(cls, matrix, start: int, stop: int, columns: _Columns) -> _Block:
        if sparse.issparse(matrix):  # in memory, CSR
            rows = _csr_rows(matrix, start, stop)
        else:
            rows = matrix[start:stop]  # a backed matrix reads only these rows
            if sparse.issparse(rows):
                rows = _csr_rows(sparse.csr_matrix(rows), 0, stop - start)
            else:
                rows = np.asarray(rows)
        return cls(rows, start, stop, columns)

    def max(self) -> float:
        """Largest value in the rows."""
        return float(self._values.max()) if self._values.size else 0.0

    def log_normalize(self) -> None:
        """Scale each cell to :data:`TARGET_SUM` and log1p the matched genes' values."""
        scale = np.divide(
            TARGET_SUM,
            self.library_size,
            out=np.zeros_like(self.library_size),
            where=self.library_size > 0,
        ).astype(np.float32)
        per_value = scale[self._row_of] if self._row_of is not None else scale[:, None]
        self.matched = np.log1p(self.matched.astype(np.float32) * per_value)

    def add_gene_totals(self, totals: np.ndarray) -> None:
        """Add each matched gene's sum over the block's cells to ``totals``."""
        if self._row_of is None:
            totals += self.matched.sum(axis=0, dtype=np.float64)
        else:
            totals += np.bincount(self._slot, weights=self.matched, minlength=len(totals))

    def matched_csr(self, n_columns: int) -> sparse.csr_matrix:
        """The first ``n_columns`` matched genes' values as a sparse block."""
        if self._row_of is None:
            return sparse.csr_matrix(self.matched[:, :n_columns].astype(np.float32))
        row_of, slot, values = self._first(n_columns)
        return sparse.csr_matrix(
            (values.astype(np.float32), (row_of, slot)), shape=(self.n_rows, n_columns)
        )

    def matched_dense(self, buffer: np.ndarray) -> np.ndarray:
        """The first ``buffer.shape[1]`` matched genes' values, dense float32, in ``buffer``."""
        n_columns = buffer.shape[1]
        if self._row_of is None:
            buffer[:] = self.matched[:, :n_columns]
        else:
            buffer.fill(0)
            row_of, slot, values = self._first(n_columns)
            buffer[row_of, slot] = values
        return buffer

    def _first(self, n_columns: int):
        """Stored (row, slot, value) of the first ``n_columns`` matched genes (sparse rows)."""
        if n_columns >= self._n_matched_genes:  # the usual case: every matched gene
            return self._row_of, self._slot, self.matched
        first = self._slot < n_columns
        return self._row_of[first], self._slot[first], self.matched[first]
