"""The product of a block of cells' expression with the gene table: three kernels, one choice.

- ``sparse``: a cache-tiled CSR × dense kernel (numba, all cores). The useful work is
  ``2 · nnz · d`` flops, but a plain sparse × dense product (scipy's) fetches a gene's whole
  ``d``-vector from main memory for every stored value. Here a task of rows walks the gene
  table in tiles that fit in a core's L2 cache, so each gene vector fetched serves every
  row of the task that expresses it.
- ``dense``: the block's matched genes made dense and multiplied with one BLAS call. It
  multiplies the zeros too (10× the useful flops at 10 % density), so it wins only on
  dense data.
- ``torch``: the same product on a torch device (a GPU), block by block.
- ``scipy``: scipy's CSR × dense product, with the block's other passes in NumPy: no
  compiled loop at all, for matrices of fewer than :data:`COMPILED_FROM` stored values
  (:func:`kernel_for`).

The CPU choice between ``sparse`` and ``dense`` is made by measurement: the first rows of
the first block of each shape class are multiplied both ways and the faster kernel is
kept for that shape class for the rest of the process (:func:`choose`).
"""

from __future__ import annotations

import threading
import time
import warnings
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from scipy import sparse

from sc_genept import _fork as fork

#: Rows per parallel task of the sparse kernel, and the cache each gene tile is sized to.
_TASK_ROWS = 256
_TILE_BYTES = 256 * 2**10
#: Largest dense copy of a block's first rows made to time the dense kernel.
_SAMPLE_BYTES = 32 * 2**20
#: Matrices with fewer stored values take the ``scipy`` kernel: numba's first call in a
#: process costs ~0.3 s (importing its linear algebra, loading its typing context and the
#: cached loops), more than the compiled loops save on up to ~2 million values (scipy's
#: product costs ~50 ns more per value at 384 dimensions; one pass in NumPy ~5 ns more).
COMPILED_FROM = 2_000_000
#: Kernels chosen so far, by shape class (see :func:`_shape_class`).
_CHOSEN: dict[tuple, str] = {}
#: numba's parallel runtimes (workqueue, and omp within one process) must not be entered
#: from two threads at once (Dask's threaded scheduler calls in parallel); each call
#: already uses every core, so calls queue.
_PARALLEL = threading.Lock()


@dataclass
class SparseBlock:
    """A block's matched genes as CSR: ``indptr`` (rows + 1), ``columns`` (table rows)."""

    indptr: np.ndarray
    columns: np.ndarray
    values: np.ndarray
    n_rows: int

    @classmethod
    def from_entries(cls, row_of, columns, values, n_rows: int) -> SparseBlock:
        """From the stored ``(row, column, value)`` of a block, in row order.

        Any order of columns within a row gives the same product; increasing order (as
        CSR rows have) is what makes the tiled kernel's cache reuse work.
        """
        indptr = np.zeros(n_rows + 1, dtype=np.int64)
        np.cumsum(np.bincount(row_of, minlength=n_rows), out=indptr[1:])
        return cls(
            indptr,
            np.asarray(columns, dtype=np.int64),
            np.asarray(values, dtype=np.float32),
            n_rows,
        )

    def head(self, n_rows: int) -> SparseBlock:
        """The first ``n_rows`` rows (views)."""
        end = self.indptr[n_rows]
        return SparseBlock(self.indptr[: n_rows + 1], self.columns[:end], self.values[:end], n_rows)

    @property
    def density(self) -> float:
        return len(self.values) / max(self.n_rows, 1)


class ValueStats(NamedTuple):
    """What one pass over a block's values tells (see :func:`value_stats`)."""

    finite: bool
    minimum: float
    maximum: float
    any_nonzero: bool
    #: All non-zero values are whole numbers (counts).
    integer: bool


def kernel_for(matrix) -> str:
    """``"scipy"`` for an in-memory matrix of fewer than :data:`COMPILED_FROM` stored values, else ``"auto"``."""
    if isinstance(matrix, np.ndarray) or sparse.issparse(matrix):
        stored = matrix.nnz if sparse.issparse(matrix) else matrix.size
        if stored < COMPILED_FROM:
            return "scipy"
    return "auto"


def value_stats(values: np.ndarray, *, compiled: bool = True) -> ValueStats:
    """Finite, min, max, any non-zero, integer-valued: in one pass (numba) if ``compiled``."""
    if values.size == 0:
        return ValueStats(True, 0.0, 0.0, False, True)
    if values.dtype.kind in "iu":
        return ValueStats(True, float(values.min()), float(values.max()), bool(values.any()), True)
    if not compiled:
        if not np.isfinite(values).all():
            return ValueStats(False, np.nan, np.nan, False, False)
        integer = bool(np.all(np.floor(values) == values))
        return ValueStats(
            True, float(values.min()), float(values.max()), bool(values.any()), integer
        )
    return ValueStats(*_loops().value_stats(_compiled_dtype(values).reshape(-1)))


def _compiled_dtype(values: np.ndarray) -> np.ndarray:
    """``values`` as the compiled loops take them: float16 (which numba lacks) as float32."""
    if values.dtype.kind in "iu" or values.dtype in (np.float32, np.float64):
        return values
    return values.astype(np.float32)


def prepare_sparse(data, indices, indptr, slot, position, n_embedded: int, normalize: bool, totals):
    """One pass over a CSR block, on all cores: library sizes and the embedded genes' values.

    The values come as a :class:`SparseBlock`, log-normalised if asked; each matched gene's
    values are added to ``totals``. Returns ``(block, library_size, sum of the matched
    genes' raw values)``. ``slot``: each matrix column's matched gene (-1: none);
    ``position``: each embedded gene's column in the product's table. The same float32
    arithmetic as :meth:`sc_genept._genept_w._Block.log_normalize`.
    """
    data = _compiled_dtype(data)
    loops = _parallel()
    n_rows = len(indptr) - 1
    n_tasks = max(1, min(n_rows, 4 * _threads()))
    library = np.empty(n_rows, dtype=np.float64)
    out_indptr = np.zeros(n_rows + 1, dtype=np.int64)
    with _PARALLEL:
        loops.count_rows(data, indices, indptr, slot, n_embedded, n_tasks, library, out_indptr[1:])
    np.cumsum(out_indptr, out=out_indptr)
    out_columns = np.empty(out_indptr[-1], dtype=np.int64)
    out_values = np.empty(out_indptr[-1], dtype=np.float32)
    task_totals = np.zeros((n_tasks, len(totals)), dtype=np.float64)
    task_matched = np.zeros(n_tasks, dtype=np.float64)
    with _PARALLEL:
        loops.fill_rows(
            data, indices, indptr, slot, position, n_embedded, normalize, library, n_tasks,
            out_indptr, out_columns, out_values, task_totals, task_matched,
        )  # fmt: skip
    totals += task_totals.sum(axis=0)
    block = SparseBlock(out_indptr, out_columns, out_values, n_rows)
    return block, library, float(task_matched.sum())


def _threads() -> int:
    if fork.after_openmp:
        return 1
    import numba

    return numba.get_num_threads()


def _loops():
    """The compiled loops (:mod:`sc_genept._numba_kernels`), imported on first use."""
    from sc_genept import _numba_kernels

    return _numba_kernels


def _parallel():
    """The parallel loops, or the serial ones in a child forked after OpenMP started."""
    loops = _loops()
    return loops.SERIAL if fork.after_openmp else loops.PARALLEL


#: Library size every cell is scaled to (as :data:`sc_genept._genept_w.TARGET_SUM`).
TARGET_SUM = 1e4


def sparse_product(block: SparseBlock, table: np.ndarray, out: np.ndarray) -> None:
    """``out = block @ table`` by the tiled kernel; ``table`` C-contiguous float32."""
    tile = int(np.clip(_TILE_BYTES // (4 * table.shape[1]), 16, 4096))
    kernel = _parallel().tiled_product
    with _PARALLEL:
        kernel(block.indptr, block.columns, block.values, table, out, _TASK_ROWS, tile)


def dense_product(block: SparseBlock, table: np.ndarray, out: np.ndarray, buffer) -> None:
    """``out = block @ table`` by densifying the block into ``buffer`` (rows × genes)."""
    dense = buffer[: block.n_rows]
    dense.fill(0)
    rows = np.repeat(np.arange(block.n_rows), np.diff(block.indptr))
    dense[rows, block.columns] = block.values
    np.matmul(dense, table, out=out)


class TorchProduct:
    """``block @ table`` on a torch device, the table moved there once."""

    def __init__(self, table: np.ndarray, device: str):
        import torch

        self.torch, self.device = torch, torch.device(device)
        self.table = torch.from_numpy(table).to(self.device)

    def __call__(self, block, out: np.ndarray) -> None:
        torch = self.torch
        if isinstance(block, SparseBlock):
            with warnings.catch_warnings():  # "Sparse CSR tensor support is in beta state"
                warnings.simplefilter("ignore", UserWarning)
                x = torch.sparse_csr_tensor(
                    torch.from_numpy(block.indptr),
                    torch.from_numpy(block.columns),
                    torch.from_numpy(block.values),
                    size=(block.n_rows, self.table.shape[0]),
                    check_invariants=False,  # built by prepare_sparse or from_entries: valid
                ).to(self.device)
        else:
            x = torch.from_numpy(np.ascontiguousarray(block, dtype=np.float32)).to(self.device)
        out[:] = (x @ self.table).cpu().numpy()


def _shape_class(block: SparseBlock, table: np.ndarray) -> tuple:
    """Blocks whose kernel timings compare alike.

    Table width, stored values per row (log2 buckets) and whether the table has more than
    16,384 genes (past the caches).
    """
    return (table.shape[1], int(np.log2(max(block.density, 1))), table.shape[0] > 2**14)


def choose(block: SparseBlock, table: np.ndarray, out: np.ndarray, buffer_for) -> str:
    """The faster of ``sparse`` and ``dense`` for blocks like ``block``, by timing both.

    Both run on the block's first rows (enough for every core, and a dense copy of at most
    :data:`_SAMPLE_BYTES`); then the winner computes ``block @ table`` into ``out``. The
    choice is remembered per shape class for the process: later blocks (and calls) of
    that class are not timed again.
    """
    key = _shape_class(block, table)
    if key not in _CHOSEN:
        n = min(
            block.n_rows,
            _TASK_ROWS * _threads(),
            max(64, _SAMPLE_BYTES // (4 * table.shape[0])),
        )
        sample, sample_out = block.head(n), out[:n]
        sparse_product(sample, table, sample_out)  # compiles on first use: not timed
        buffer = np.empty((n, table.shape[0]), dtype=np.float32)
        timings = {"dense": np.inf, "sparse": np.inf}
        for name in ("dense", "sparse") * 2:  # best of two, interleaved: less noise
            start = time.perf_counter()
            run(name, sample, table, sample_out, lambda: buffer)
            timings[name] = min(timings[name], time.perf_counter() - start)
        _CHOSEN[key] = min(timings, key=timings.get)
    run(_CHOSEN[key], block, table, out, buffer_for)
    return _CHOSEN[key]


def run(kernel: str, block: SparseBlock, table: np.ndarray, out: np.ndarray, buffer_for) -> None:
    """``out = block @ table`` by the CPU ``kernel`` (``"sparse"``, ``"dense"`` or ``"scipy"``)."""
    if kernel == "sparse":
        sparse_product(block, table, out)
    elif kernel == "scipy":
        shape = (block.n_rows, len(table))
        out[:] = sparse.csr_matrix((block.values, block.columns, block.indptr), shape=shape) @ table
    else:
        dense_product(block, table, out, buffer_for())
