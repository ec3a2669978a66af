"""GenePT-w: a cell is the expression-weighted, L2-normalised sum of its genes' embeddings.

Works block by block over the rows of in-memory dense and CSR matrices and of backed
dense and CSR ones, so memory stays bounded by the block size: an in-memory CSR matrix is
read through views of its arrays (whatever its index dtypes), never copied whole. Other
in-memory sparse formats are converted to CSR once, with a warning that says so; backed
CSC is refused (each block would read all of it). Each block's matched genes are
multiplied with their vectors by the kernel of :mod:`sc_genept._kernels` (a cache-tiled
sparse kernel on all cores, one BLAS call, or torch on a GPU), then normalised, and the
block goes to its sink (memory, or a ``.npy`` file): memory is bounded by the block.
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass

import numpy as np
from scipy import sparse

from sc_genept import _kernels
from sc_genept._checks import check_value_kind
from sc_genept._kernels import SparseBlock
from sc_genept._utils import atomic_path, progress_bar, warn_caller

#: Library size every cell is scaled to before log1p (fixed, so a cell's embedding does not
#: depend on which other cells are in the dataset or the block).
TARGET_SUM = _kernels.TARGET_SUM
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
    #: With ``normalize=True``: whether the values are integer counts, as the first block
    #: with a non-zero value decided; None when no value is non-zero (or normalize=False).
    counts: bool | None = None


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
    kernel: str = "auto",
    device: str = "cpu",
    sink: ArraySink | NpyFileSink | None = None,
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
    kernel, device
        How each block is multiplied with ``gene_vectors`` (see :mod:`sc_genept._kernels`):
        ``"auto"`` (the faster of ``"sparse"`` and ``"dense"`` on CPU, by measurement),
        one of those, ``"scipy"`` (no compiled loop: for small matrices, see
        ``_kernels.kernel_for``), or ``"torch"`` on the torch ``device`` (e.g. ``"cuda"``).
        A device other than ``"cpu"`` implies ``"torch"``.
    sink
        Where the embedding goes: in memory (default) or a ``.npy`` file
        (:class:`NpyFileSink`), block by block.
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
    matrix = _readable_by_rows(matrix)
    sink = sink or ArraySink(n_obs, gene_vectors.shape[1], out_dtype)
    n_embedded = len(gene_vectors)
    product = _Product(
        gene_vectors,
        columns.var_index[:n_embedded],
        kernel=kernel,
        device=device,
        block_rows=block_rows,
    )
    matched_total = all_total = 0.0
    gene_totals = np.zeros(len(var_index), dtype=np.float64)
    detected = None  # integer counts or not, when normalize=True
    normalize = None if normalize else False  # None: undecided until a block has values
    expression_blocks = []
    empty = np.zeros(n_obs, dtype=bool)
    starts = range(0, n_obs, block_rows)
    with sink:  # a file sink drops its partial file on an error
        bar = progress_bar(
            starts, desc="GenePT-w", unit="block", disable=len(starts) < _PROGRESS_MIN_BLOCKS
        )
        for start in bar:
            block = _Block.read(
                matrix, start, min(start + block_rows, n_obs), columns, compiled=kernel != "scipy"
            )
            if (
                normalize is None and block.is_integer is not None
            ):  # first block with values decides
                normalize = block.is_integer
                detected = block.is_integer
                deciding = f"{start}–{start + block.n_rows}"
                if not detected and block.maximum > _LOG_SCALE_MAX:
                    warn_caller(
                        f"The values are not integer counts but reach {block.maximum:.0f}: this looks "
                        "normalised but not log-transformed, and is embedded as it is. Pass raw "
                        "counts (layer=...) to have them normalised, or log1p the data first."
                    )
            if detected is not None:
                here = f"rows {start}–{start + block.n_rows}"
                check_value_kind(f"Rows {deciding}", detected, here, block.is_integer)
            product_input = block.finish(
                normalize=bool(normalize), totals=gene_totals, product=product
            )
            all_total += block.library_size.sum()
            matched_total += block.matched_sum
            if return_expression:
                expression_blocks.append(block.matched_csr(n_embedded))
            rows = sink.rows(start, block.n_rows)
            product(product_input, rows)
            # normalised block by block: memory stays bounded by the block, not the dataset
            empty[start : start + block.n_rows] = _row_norms(rows) == 0
            _normalise_rows(rows, offset)
            sink.commit(start, rows)
    return WeightedSum(
        embedding=sink.result(),
        n_empty=int(empty.sum()),
        fraction_counts_covered=matched_total / all_total if all_total else 0.0,
        log_normalized=bool(normalize),
        counts=detected,
        gene_totals=gene_totals,
        expression=(
            sparse.vstack(expression_blocks, format="csr")
            if expression_blocks
            else sparse.csr_matrix((n_obs, n_embedded), dtype=np.float32)
        )
        if return_expression
        else None,
    )


def _readable_by_rows(matrix):
    """``matrix``, or a CSR copy of an in-memory sparse matrix of another format (warned)."""
    if sparse.issparse(matrix) and matrix.format != "csr":
        # row blocks of CSC would each scan the whole matrix: one CSR copy is cheaper
        size = (matrix.data.nbytes + matrix.indices.nbytes + matrix.indptr.nbytes) / 2**20
        warn_caller(
            f"The matrix is {matrix.format.upper()}, not CSR: embedding reads it by cells, so "
            f"a CSR copy of it (about {size:,.0f} MiB) is made for this call. Store it as CSR "
            "once (e.g. adata.X = adata.X.tocsr()) to embed without the copy."
        )
        return matrix.tocsr()
    if getattr(matrix, "format", None) == "csc":  # backed CSC: same problem, on disk
        raise ValueError(
            "The matrix is a backed CSC (column-major) matrix: reading blocks of cells would "
            "read all of it for every block. Convert it to CSR once (e.g. load it, "
            "X.tocsr(), write_h5ad) or load it into memory with adata.to_memory()."
        )
    return matrix


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

    def __init__(self, rows, start: int, stop: int, columns: _Columns, *, compiled: bool = True):
        """``rows``: dense ndarray or CSR ``(data, indices, indptr)`` of rows start:stop.

        ``compiled``: whether the checks and :meth:`finish` may run numba's loops.
        """
        self.n_rows = stop - start
        is_sparse = isinstance(rows, tuple)
        values = rows[0] if is_sparse else rows
        stats = _kernels.value_stats(values, compiled=compiled)
        if not stats.finite:
            raise NonFiniteDataError(
                f"The matrix has NaN or infinite values in rows {start}–{stop}; remove or fill "
                "them (e.g. with 0) before embedding."
            )
        if stats.minimum < 0:
            raise ScaledDataError(f"negative values in rows {start}–{stop}")
        self.maximum = stats.maximum
        # judged on non-zero values only; None: all zero, nothing to tell counts from
        # normalised data
        self.is_integer = stats.integer if stats.any_nonzero else None
        self._rows, self._columns, self._may_compile = rows, columns, compiled
        self._compiled = None  # (block, order) when the compiled pass made the values

    def finish(self, *, normalize: bool, totals, product: _Product):
        """Library sizes, normalisation, gene totals: the block's input to ``product``.

        Sets ``library_size`` and ``matched_sum``; returns what :meth:`product_input` does.
        CSR rows without duplicate genes take one compiled pass.
        """
        n_embedded = len(product.gene_vectors)
        if self._may_compile and isinstance(self._rows, tuple) and self._columns.extra is None:
            data, indices, indptr = self._rows
            block, self.library_size, self.matched_sum = _kernels.prepare_sparse(
                data, indices, indptr, self._columns.slot, product.position, n_embedded, normalize,
                totals,
            )  # fmt: skip
            self._compiled = (block, product.order)  # for matched_csr
            return block
        self._gather()
        if normalize:
            self.log_normalize()
        self.add_gene_totals(totals)
        return self.product_input(n_embedded, product.position)

    def _gather(self) -> None:
        """Library sizes and the matched genes' values, in NumPy (any layout)."""
        rows, columns = self._rows, self._columns
        self._n_matched_genes = n_slots = len(columns.var_index)
        if isinstance(rows, tuple):
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
    def read(cls, matrix, start: int, stop: int, columns: _Columns, *, compiled: bool) -> _Block:
        if sparse.issparse(matrix):  # in memory, CSR
            rows = _csr_rows(matrix, start, stop)
        else:
            rows = matrix[start:stop]  # a backed matrix reads only these rows
            if sparse.issparse(rows):
                rows = _csr_rows(sparse.csr_matrix(rows), 0, stop - start)
            else:
                rows = np.asarray(rows)
        return cls(rows, start, stop, columns, compiled=compiled)

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
        if self._compiled is not None:  # the same values, columns back in slot order
            block, order = self._compiled
            return sparse.csr_matrix(
                (block.values, order[block.columns], block.indptr), shape=(self.n_rows, n_columns)
            )
        if self._row_of is None:
            return sparse.csr_matrix(self.matched[:, :n_columns].astype(np.float32))
        row_of, slot, values = self._first(n_columns)
        return sparse.csr_matrix(
            (values.astype(np.float32), (row_of, slot)), shape=(self.n_rows, n_columns)
        )

    def product_input(self, n_columns: int, column_of_slot: np.ndarray):
        """The first ``n_columns`` matched genes' values, as the product kernels take them.

        Dense rows: a float32 rows × genes array. Sparse rows: a :class:`SparseBlock` whose
        columns are ``column_of_slot[slot]``.
        """
        if self._row_of is None:
            return np.ascontiguousarray(self.matched[:, :n_columns], dtype=np.float32)
        row_of, slot, values = self._first(n_columns)
        return SparseBlock.from_entries(row_of, column_of_slot[slot], values, self.n_rows)

    def _first(self, n_columns: int):
        """Stored (row, slot, value) of the first ``n_columns`` matched genes (sparse rows)."""
        if n_columns >= self._n_matched_genes:  # the usual case: every matched gene
            return self._row_of, self._slot, self.matched
        first = self._slot < n_columns
        return self._row_of[first], self._slot[first], self.matched[first]


class _Product:
    """Multiplies blocks with the gene vectors by the kernel asked for, or the faster one.

    The vectors are put in the order of the matrix columns they belong to, so that a CSR
    row's genes reach the tiled kernel in increasing order (its gene tiles are walked in
    order).
    """

    def __init__(
        self,
        gene_vectors: np.ndarray,
        columns: np.ndarray,
        *,
        kernel: str,
        device: str,
        block_rows: int,
    ):
        kernels = ("auto", "sparse", "dense", "scipy", "torch")
        if kernel not in kernels:
            raise ValueError(f"kernel must be one of {kernels}, got {kernel!r}.")
        # slot -> position of its matrix column among the embedded genes' columns
        self.order = np.argsort(columns, kind="stable")
        self.position = np.empty(len(columns), dtype=np.int64)
        self.position[self.order] = np.arange(len(columns))
        in_order = bool(np.all(np.diff(columns) > 0))  # as genes are usually matched
        self.gene_vectors = np.ascontiguousarray(
            gene_vectors if in_order else gene_vectors[self.order]
        )
        self.kernel = "torch" if device != "cpu" else kernel
        self.block_rows = block_rows
        self._buffer = None
        self.torch = (
            _kernels.TorchProduct(self.gene_vectors, device) if self.kernel == "torch" else None
        )

    def __call__(self, columns, out: np.ndarray) -> None:
        """``out = columns @ gene vectors``; ``columns`` from :meth:`_Block.finish`."""
        if not isinstance(columns, SparseBlock):  # dense rows, genes in slot order
            columns = columns[:, self.order]
        if self.torch is not None:
            self.torch(columns, out)
        elif not isinstance(columns, SparseBlock):
            np.matmul(columns, self.gene_vectors, out=out)
        elif self.kernel == "auto":
            self.kernel = _kernels.choose(columns, self.gene_vectors, out, self._dense_buffer)
        else:
            _kernels.run(self.kernel, columns, self.gene_vectors, out, self._dense_buffer)

    def _dense_buffer(self) -> np.ndarray:
        if self._buffer is None:
            self._buffer = np.empty((self.block_rows, len(self.gene_vectors)), np.float32)
        return self._buffer


class _Sink:
    """Where :func:`genept_w` puts each finished block; a context for the whole pass.

    :meth:`rows` gives a float32 array to compute a block into (by default a reused
    scratch buffer), :meth:`commit` stores it.
    """

    n_dims: int
    _scratch: np.ndarray | None = None

    def rows(self, start: int, n_rows: int) -> np.ndarray:
        """A float32 array to compute rows ``start:start + n_rows`` into."""
        if self._scratch is None or len(self._scratch) < n_rows:
            self._scratch = np.empty((n_rows, self.n_dims), dtype=np.float32)
        return self._scratch[:n_rows]

    def __enter__(self):
        return self

    def __exit__(self, kind, error, traceback) -> None:
        if error is not None:
            self.abort()

    def abort(self) -> None:
        """Undo what an unfinished pass left (nothing, in memory)."""


class ArraySink(_Sink):
    """The embedding in memory; blocks are computed in place when it is float32."""

    def __init__(self, n_rows: int, n_dims: int, dtype):
        self.array = np.empty((n_rows, n_dims), dtype=dtype)
        self.n_dims = n_dims
        self._in_place = self.array.dtype == np.float32

    def rows(self, start: int, n_rows: int) -> np.ndarray:
        if self._in_place:
            return self.array[start : start + n_rows]
        return super().rows(start, n_rows)

    def commit(self, start: int, rows: np.ndarray) -> None:
        if not self._in_place:
            self.array[start : start + len(rows)] = rows  # rounded once, e.g. to float16

    def result(self) -> np.ndarray:
        return self.array


class NpyFileSink(_Sink):
    """The embedding written to a ``.npy`` file block by block, then memory-mapped.

    Blocks are appended with plain writes (they go to the page cache, not to this
    process's memory), so memory stays bounded by one block however many cells there are.
    The file appears complete or not at all (written under a temporary name).
    """

    def __init__(self, path, n_rows: int, n_dims: int, dtype):
        self.path, self.dtype = path, np.dtype(dtype)
        self._shape, self.n_dims = (n_rows, n_dims), n_dims
        self._written = 0
        self._stack = ExitStack()
        temporary = self._stack.enter_context(atomic_path(path))
        self._file = self._stack.enter_context(open(temporary, "wb"))
        np.lib.format.write_array_header_1_0(
            self._file, {"descr": self.dtype.str, "fortran_order": False, "shape": self._shape}
        )

    def commit(self, start: int, rows: np.ndarray) -> None:
        if start != self._written:
            raise RuntimeError("blocks must be written in order")
        self._file.write(rows.astype(self.dtype, copy=False).tobytes())
        self._written += len(rows)

    def result(self) -> np.ndarray:
        """The embedding: a read-only memory map of the finished file, as a plain ndarray."""
        if self._written != self._shape[0]:
            raise RuntimeError(f"{self._written} of {self._shape[0]} rows were written")
        self._stack.close()  # the file is closed, then moved into place
        # a plain ndarray over the mapping: AnnData can write it (not a np.memmap) and
        # pages are read from the file only when used
        return np.load(self.path, mmap_mode="r").view(np.ndarray)

    def abort(self) -> None:
        """Close and drop the partial file (after an error)."""
        error = RuntimeError("embedding aborted")
        self._stack.__exit__(RuntimeError, error, None)
