"""Speed of ``genept_embed`` against the plain scipy reference, measured in one run.

Reference: ``normalize(X @ E)`` with ``X`` a CSR matrix and ``E`` the dense gene table, i.e.
scipy's sparse × dense product, then row normalisation. Both see the same generated
log-normalised matrix (20k cells × 20k genes, ~2k expressed genes per cell by default)
and a gene table of the same genes at each ``d``; both results are compared.

    python benchmarks/embed_speed.py                    # 20k × 20k, d = 384 and 1536
    python benchmarks/embed_speed.py --cells 2000       # quick look

Prints cells/s of each and the ratio; the target is ≥ 3× at d = 1536 on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import anndata as ad
import numpy as np
import pandas as pd
from scipy import sparse

import sc_genept
from sc_genept.genes import GeneEmbeddings


def generate(n_cells: int, n_genes: int, per_cell: int, seed: int = 0) -> ad.AnnData:
    """Log-normalised-looking CSR data: ``per_cell`` random genes per cell, positive values."""
    rng = np.random.default_rng(seed)
    symbols = sc_genept.genes.load().symbols[:n_genes]
    indptr = np.arange(0, (n_cells + 1) * per_cell, per_cell, dtype=np.int64)
    indices = np.concatenate(
        [np.sort(rng.choice(n_genes, per_cell, replace=False)) for _ in range(n_cells)]
    )
    data = rng.gamma(2.0, 0.6, size=n_cells * per_cell).astype(np.float32) + 0.01
    x = sparse.csr_matrix((data, indices, indptr), shape=(n_cells, n_genes))
    return ad.AnnData(
        x, obs=pd.DataFrame(index=np.arange(n_cells).astype(str)), var=pd.DataFrame(index=symbols)
    )


def scipy_reference(x: sparse.csr_matrix, vectors: np.ndarray) -> np.ndarray:
    out = np.asarray(x @ vectors)
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cells", type=int, default=20_000)
    parser.add_argument("--genes", type=int, default=20_000)
    parser.add_argument("--per-cell", type=int, default=2_000, help="expressed genes per cell")
    parser.add_argument("--dims", type=int, nargs="+", default=[384, 1536])
    parser.add_argument(
        "--only",
        choices=["genept_embed", "scipy"],
        help="run one side only (to time whole processes, e.g. with /usr/bin/time -v)",
    )
    args = parser.parse_args()

    adata = generate(args.cells, args.genes, args.per_cell)
    print(
        f"data: {args.cells} cells × {args.genes} genes, {args.per_cell} expressed per cell "
        f"({adata.X.nnz / np.prod(adata.shape):.1%} dense); {os.cpu_count()} cores, {platform.processor() or platform.machine()}"
    )
    rng = np.random.default_rng(1)
    if args.only:
        for d in args.dims:
            table = GeneEmbeddings(
                adata.var_names, rng.normal(size=(args.genes, d)).astype(np.float32)
            )
            run = {"genept_embed": lambda: sc_genept.tl.genept_embed(adata, gene_embeddings=table)}  # noqa: B023
            run["scipy"] = lambda: scipy_reference(adata.X, table.embeddings)  # noqa: B023
            _, seconds = timed(run[args.only])
            print(f"{args.only} d={d}: {args.cells / seconds:,.0f} cells/s")
        return
    print(
        f"{'d':>6} {'genept_embed cells/s':>22} {'scipy X@E cells/s':>19} {'ratio':>7} {'max |diff|':>11}"
    )
    for d in args.dims:
        table = GeneEmbeddings(adata.var_names, rng.normal(size=(args.genes, d)).astype(np.float32))
        _, t_ours = timed(lambda: sc_genept.tl.genept_embed(adata, gene_embeddings=table))  # noqa: B023
        ref, t_ref = timed(lambda: scipy_reference(adata.X, table.embeddings))  # noqa: B023
        diff = np.abs(adata.obsm["X_genept"] - ref).max()
        print(
            f"{d:>6} {args.cells / t_ours:>22,.0f} {args.cells / t_ref:>19,.0f} {t_ref / t_ours:>6.1f}× {diff:>11.1e}"
        )


if __name__ == "__main__":
    main()
