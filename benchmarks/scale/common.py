"""What the scale benchmarks share: generated data at realistic sizes, timing, peak memory."""

from __future__ import annotations

import os
import platform
import resource
import time

import anndata as ad
import numpy as np
import pandas as pd
from scipy import sparse


def add_data_arguments(parser, *, cells: int = 20_000, per_cell: int = 2_000) -> None:
    """``--cells``, ``--genes``, ``--per-cell``: the size of the generated data."""
    parser.add_argument("--cells", type=int, default=cells)
    parser.add_argument("--genes", type=int, default=20_000)
    parser.add_argument("--per-cell", type=int, default=per_cell, help="expressed genes per cell")


def machine() -> str:
    return f"{os.cpu_count()} cores, {platform.processor() or platform.machine()}"


def generate_csr(
    n_cells: int, n_genes: int, per_cell: int, *, counts: bool = False, seed: int = 0
) -> sparse.csr_matrix:
    """About ``per_cell`` random genes per cell (drawn with replacement, repeats dropped);
    log-normalised-looking values, or integer counts. Made in chunks of cells.
    """
    rng = np.random.default_rng(seed)
    rows, lengths = [], []
    for start in range(0, n_cells, 10_000):
        drawn = np.sort(rng.integers(0, n_genes, size=(min(10_000, n_cells - start), per_cell)))
        keep = np.ones(drawn.shape, dtype=bool)
        keep[:, 1:] = np.diff(drawn, axis=1) != 0
        rows.append(drawn[keep].astype(np.int32))
        lengths.append(keep.sum(axis=1))
    indices = np.concatenate(rows)
    indptr = np.zeros(n_cells + 1, dtype=np.int64)
    np.cumsum(np.concatenate(lengths), out=indptr[1:])
    if counts:
        data = rng.negative_binomial(1, 0.5, size=len(indices)).astype(np.float32) + 1
    else:
        data = rng.gamma(2.0, 0.6, size=len(indices)).astype(np.float32) + 0.01
    return sparse.csr_matrix((data, indices, indptr), shape=(n_cells, n_genes))


def generate(n_cells: int, n_genes: int, per_cell: int, **kwargs) -> ad.AnnData:
    """:func:`generate_csr` as an AnnData over the default table's first ``n_genes`` symbols."""
    import sc_genept

    symbols = sc_genept.genes.load().symbols[:n_genes]
    return ad.AnnData(
        generate_csr(n_cells, n_genes, per_cell, **kwargs),
        obs=pd.DataFrame(index=np.arange(n_cells).astype(str)),
        var=pd.DataFrame(index=symbols),
    )


def best_of(fn, repeats: int = 1):
    """``(result, seconds)``: the fastest of ``repeats`` calls."""
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return result, best


def peak_rss_mib() -> float:
    """This process's peak resident memory so far, in MiB.

    ``VmHWM`` where Linux has it: ``ru_maxrss`` survives ``exec``, so a child started by a
    large parent would report the parent's peak.
    """
    try:
        for line in open("/proc/self/status").read().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
