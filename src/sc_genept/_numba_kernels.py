"""The compiled loops of :mod:`sc_genept._kernels`; imported on first use (imports numba).

Each parallel loop also exists serial (``prange`` runs as ``range``): GNU OpenMP, numba's
usual threading layer on Linux, terminates a process forked from one that already used it
("fork() called from a process already using GNU OpenMP"), as a DataLoader worker or a
multiprocessing pool is. Such a child runs the serial loops (see :mod:`sc_genept._fork`).
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
from numba import njit, prange

from sc_genept._kernels import TARGET_SUM


def _value_stats(values):
    finite, any_nonzero, integer = True, False, True
    low, high = values[0], values[0]
    for v in values:
        if not np.isfinite(v):
            finite = False
            break
        low, high = min(low, v), max(high, v)
        if v != 0:
            any_nonzero = True
            if integer and np.floor(v) != v:
                integer = False
    return finite, float(low), float(high), any_nonzero, integer


def _count_rows(data, indices, indptr, slot, n_embedded, n_tasks, library, counts):
    n_rows = len(indptr) - 1
    for task in prange(n_tasks):
        for i in range(task * n_rows // n_tasks, (task + 1) * n_rows // n_tasks):
            total, n = 0.0, 0
            for p in range(indptr[i], indptr[i + 1]):
                total += data[p]
                gene = slot[indices[p]]
                if gene >= 0 and gene < n_embedded:
                    n += 1
            library[i], counts[i] = total, n


def _fill_rows(
    data, indices, indptr, slot, position, n_embedded, normalize, library, n_tasks,
    out_indptr, out_columns, out_values, task_totals, task_matched,
):  # fmt: skip
    n_rows = len(indptr) - 1
    for task in prange(n_tasks):
        matched = 0.0
        for i in range(task * n_rows // n_tasks, (task + 1) * n_rows // n_tasks):
            total = library[i]
            scale = np.float32(TARGET_SUM / total) if total > 0 else np.float32(0.0)
            k = out_indptr[i]
            for p in range(indptr[i], indptr[i + 1]):
                gene = slot[indices[p]]
                if gene < 0:
                    continue
                matched += data[p]
                value = np.float32(data[p])
                if normalize:
                    value = np.log1p(value * scale)
                task_totals[task, gene] += value
                if gene < n_embedded:
                    out_columns[k], out_values[k] = position[gene], value
                    k += 1
        task_matched[task] = matched


def _tiled_product(indptr, columns, values, table, out, task_rows, tile_genes):
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


def _compile(parallel: bool) -> SimpleNamespace:
    # compiled on first call; only the parallel loops are cached on disk (numba's cache
    # keys a function by name and signature, not by its parallel flag)
    options = {"parallel": parallel, "cache": parallel, "nogil": True}
    return SimpleNamespace(
        count_rows=njit(**options)(_count_rows),
        fill_rows=njit(**options)(_fill_rows),
        tiled_product=njit(fastmath=True, **options)(_tiled_product),
    )


value_stats = njit(cache=True, nogil=True)(_value_stats)
PARALLEL = _compile(parallel=True)
SERIAL = _compile(parallel=False)
