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

The CPU choice between ``sparse`` and ``dense`` is made by measurement: the first block of
each shape class is multiplied both ways and the faster kernel is kept for that shape
class for the rest of the process (:func:`choose`).
"""

from __future__ import annotations

import threading
import time
import warnings
from dataclasses import dataclass

import numpy as np

#: Rows per parallel task of the sparse kernel, and the cache each gene tile is sized to.
_TASK_ROWS = 256
_TILE_BYTES = 256 * 2**10
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

    @property
    def density(self) -> float:
        return len(self.values) / max(self.n_rows, 1)


def _sparse_kernel():
    """The numba kernel, compiled on first use (and cached on disk by numba)."""
    global _compiled
    if _compiled is None:
        from numba import njit, prange

        @njit(parallel=True, fastmath=True, cache=True, nogil=True)
        def tiled_product(indptr, columns, values, table, out, task_rows, tile_genes):
            n_rows, d, n_genes = out.shape[0], table.shape[1], table.shape[0]
            for task in prange((n_rows + task_rows - 1) // task_rows):
                first, stop = task * task_rows, min(n_rows, (task + 1) * task_rows)
                cursor = indptr[first:stop].copy()  # each row's next stored value
                for i in range(first, stop):
                    for j in range(d):
                        out[i, j] = 0.0
                for tile_end in range(tile_genes, n_genes + tile_genes, tile_genes):
                    for i in range(first, stop):
                        p, end = cursor[i - first], indptr[i + 1]
                        while p < end and columns[p] < tile_end:
                            v, gene = values[p], columns[p]
                            for j in range(d):
                                out[i, j] += v * table[gene, j]
                            p += 1
                        cursor[i - first] = p

        _compiled = tiled_product
    return _compiled


_compiled = None


def sparse_product(block: SparseBlock, table: np.ndarray, out: np.ndarray) -> None:
    """``out = block @ table`` by the tiled kernel; ``table`` C-contiguous float32."""
    tile = int(np.clip(_TILE_BYTES // (4 * table.shape[1]), 16, 4096))
    kernel = _sparse_kernel()
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
                    check_invariants=False,  # built by SparseBlock.from_entries: valid
                ).to(self.device)
        else:
            x = torch.from_numpy(np.ascontiguousarray(block, dtype=np.float32)).to(self.device)
        out[:] = (x @ self.table).cpu().numpy()


def _shape_class(block: SparseBlock, table: np.ndarray) -> tuple:
    """Blocks whose kernel timings compare alike: table width and density (log2 buckets)."""
    return (table.shape[1], int(np.log2(max(block.density, 1))), table.shape[0] > 2**14)


def choose(block: SparseBlock, table: np.ndarray, out: np.ndarray, buffer_for) -> str:
    """The faster of ``sparse`` and ``dense`` for blocks like ``block``, by timing both on it.

    Leaves ``block @ table`` in ``out``. The choice is remembered per shape class for the
    process: later blocks (and calls) of that class are not timed again.
    """
    key = _shape_class(block, table)
    if key in _CHOSEN:
        run(_CHOSEN[key], block, table, out, buffer_for)
        return _CHOSEN[key]
    sparse_product(block, table, out)  # compiles on first use: not timed
    timings = {}
    for name in ("dense", "sparse"):  # the winner's result is left in out (same bits later)
        start = time.perf_counter()
        run(name, block, table, out, buffer_for)
        timings[name] = time.perf_counter() - start
    _CHOSEN[key] = min(timings, key=timings.get)
    if _CHOSEN[key] == "dense":
        run("dense", block, table, out, buffer_for)
    return _CHOSEN[key]


def run(kernel: str, block: SparseBlock, table: np.ndarray, out: np.ndarray, buffer_for) -> None:
    """``out = block @ table`` by the CPU ``kernel`` (``"sparse"`` or ``"dense"``)."""
    if kernel == "sparse":
        sparse_product(block, table, out)
    else:
        dense_product(block, table, out, buffer_for())
