"""Annotating 100k cells end to end: the sc_genept one-liner beside CellTypist, in one run.

The query: 100,000 cells drawn with replacement from CellTypist's sample of real 10x raw
counts (559 PBMCs × 32,786 genes, 5.6 % non-zero), CSR. Both annotators were trained on
the same reference, ``pbmc68k_reduced`` (sc_genept: the bundled ``pbmc68k`` model;
CellTypist: its ``train`` in SGD mode on the same cells' log-expression), before the
clock starts. Timed from raw counts to labels in ``obs``:

- sc_genept: ``sc.tl.genept_annotate(query, model="pbmc68k")`` (it embeds the query
  first; the embedding's share is given too);
- CellTypist: ``normalize_total`` + ``log1p`` (it needs log-normalised input), then
  ``celltypist.annotate``.

    python benchmarks/scale/end_to_end.py
    python benchmarks/scale/end_to_end.py --cells 20000      # quick look

Targets (issue 11): ≤ 10 s here for 100k cells, within 5× of CellTypist.
"""

from __future__ import annotations

import argparse
import logging
import time
import warnings
from importlib.resources import files

import anndata as ad
import numpy as np
import pandas as pd
import scanpy as sc
from common import machine
from scipy import sparse

import sc_genept


def query_cells(n_cells: int, seed: int = 0) -> ad.AnnData:
    counts = pd.read_csv(
        files("celltypist") / "data" / "samples" / "sample_cell_by_gene.csv", index_col=0
    )
    x = sparse.csr_matrix(counts.to_numpy(dtype=np.float32))
    rows = np.random.default_rng(seed).integers(0, x.shape[0], n_cells)
    return ad.AnnData(
        x[rows],
        obs=pd.DataFrame(index=[f"cell{i}" for i in range(n_cells)]),
        var=pd.DataFrame(index=counts.columns),
    )


def celltypist_model():
    """CellTypist trained (SGD mode, seeded) on pbmc68k_reduced's log-expression."""
    import celltypist

    reference = sc_genept.datasets.pbmc68k_reduced()
    expression = reference.raw.to_adata()
    return celltypist.train(
        expression,
        labels=reference.obs["cell_type"].astype(str).to_numpy(),
        check_expression=False,
        feature_selection=False,
        use_SGD=True,
        n_jobs=2,
        random_state=0,
    )


def run_celltypist(query: ad.AnnData, model):
    import celltypist

    query = query.copy()
    sc.pp.normalize_total(query, target_sum=1e4)
    sc.pp.log1p(query)
    return celltypist.annotate(query, model=model).predicted_labels["predicted_labels"]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cells", type=int, default=100_000)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    sc.settings.verbosity = 0
    logging.getLogger("celltypist.logger").setLevel(logging.WARNING)  # its progress lines

    query = query_cells(args.cells)
    print(
        f"query: {args.cells:,} cells × {query.n_vars:,} genes "
        f"({query.X.nnz / np.prod(query.shape):.1%} non-zero); {machine()}"
    )
    model = celltypist_model()
    warm = query[:500].copy()  # load the bundled model and table, compile the kernels
    sc.tl.genept_annotate(warm, model="pbmc68k")
    run_celltypist(warm, model)

    start = time.perf_counter()
    sc.tl.genept_embed(query)
    embed_seconds = time.perf_counter() - start
    del query.obsm["X_genept"], query.uns["X_genept"]

    start = time.perf_counter()
    sc.tl.genept_annotate(query, model="pbmc68k")
    ours = time.perf_counter() - start
    start = time.perf_counter()
    run_celltypist(query, model)
    theirs = time.perf_counter() - start
    print(f"{'':<34} {'seconds':>8} {'cells/s':>9}")
    print(f"{'sc_genept genept_annotate':<34} {ours:>8.2f} {args.cells / ours:>9,.0f}")
    print(f"{'  of which genept_embed (alone)':<34} {embed_seconds:>8.2f}")
    print(f"{'CellTypist (normalise + annotate)':<34} {theirs:>8.2f} {args.cells / theirs:>9,.0f}")
    print(f"ratio sc_genept / CellTypist: {ours / theirs:.1f}×")


if __name__ == "__main__":
    main()
