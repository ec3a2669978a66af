"""``genept_embed`` on CSR matrices with int64 ``indptr`` against the all-int32 case.

h5ad files of large datasets store ``indptr`` as int64 and ``indices`` as int32. scipy's row
slicing casts both index arrays of the *whole* matrix to one dtype when they differ, so a
blocked pass that slices with scipy copies all the indices once per block. ``genept_w``
reads blocks as views of the matrix's arrays instead; this script checks that the mixed
(and the all-int64) case cost what the all-int32 case costs.

    python benchmarks/scale/indptr.py                  # 20k cells × 20k genes, 2k per cell
    python benchmarks/scale/indptr.py --cells 100000   # the size of the report (~8 GB)

Each case runs in a fresh subprocess on the same generated counts: seconds of the
``genept_embed`` call (best of ``--repeats``), and the peak of numpy memory allocated during
one more call (tracemalloc; the matrix itself is allocated before). Prints both per case
and each case's ratio to int32/int32; the target is within 10 % (ratio ≤ 1.10).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import tracemalloc
import warnings

import common

CASES = {  # name: (indptr dtype, indices dtype)
    "int32 indptr, int32 indices": ("int32", "int32"),
    "int64 indptr, int32 indices": ("int64", "int32"),
    "int64 indptr, int64 indices": ("int64", "int64"),
}


def generate(n_cells: int, n_genes: int, per_cell: int, indptr_dtype: str, indices_dtype: str):
    """:func:`common.generate`'s counts with the index dtypes asked for, and a 384-d table."""
    import numpy as np

    import sc_genept

    adata = common.generate(n_cells, n_genes, per_cell, counts=True)
    x = adata.X
    # set the arrays directly: scipy's constructor would unify the two index dtypes
    x.indices, x.indptr = x.indices.astype(indices_dtype), x.indptr.astype(indptr_dtype)
    vectors = np.random.default_rng(0).normal(size=(n_genes, 384)).astype(np.float32)
    return adata, sc_genept.genes.GeneEmbeddings(adata.var_names, vectors)


def run_case(args) -> dict:
    """One case, in this process: seconds and peak numpy allocation of the call."""
    import sc_genept

    indptr_dtype, indices_dtype = CASES[args.case]
    adata, table = generate(args.cells, args.genes, args.per_cell, indptr_dtype, indices_dtype)
    assert (adata.X.indptr.dtype, adata.X.indices.dtype) == (indptr_dtype, indices_dtype)
    seconds = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(args.repeats):
            start = time.perf_counter()
            sc_genept.tl.genept_embed(adata, gene_embeddings=table)
            seconds.append(time.perf_counter() - start)
        tracemalloc.start()
        sc_genept.tl.genept_embed(adata, gene_embeddings=table)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return {"seconds": min(seconds), "peak_mib": peak / 2**20, "matrix_mib": _mib(adata.X)}


def _mib(x) -> float:
    return (x.data.nbytes + x.indices.nbytes + x.indptr.nbytes) / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    common.add_data_arguments(parser)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--case", choices=list(CASES), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:  # the child: one case, result as JSON on the last line
        print(json.dumps(run_case(args)))
        return

    print(
        f"data: {args.cells:,} cells × {args.genes:,} genes, ~{args.per_cell:,} expressed per "
        f"cell, float32 CSR; gene table d = 384; {common.machine()}"
    )
    results = {}
    for case in CASES:
        child = [sys.executable, __file__, "--case", case]
        child += ["--cells", str(args.cells), "--genes", str(args.genes)]
        child += ["--per-cell", str(args.per_cell), "--repeats", str(args.repeats)]
        out = subprocess.run(child, check=True, capture_output=True, text=True).stdout
        results[case] = json.loads(out.strip().splitlines()[-1])
    base = results["int32 indptr, int32 indices"]
    print(f"matrix: {base['matrix_mib']:,.0f} MiB (int32 indices)")
    print(f"{'case':<30} {'seconds':>8} {'ratio':>6} {'peak MiB':>9} {'ratio':>6}")
    for case, r in results.items():
        print(
            f"{case:<30} {r['seconds']:>8.2f} {r['seconds'] / base['seconds']:>5.2f}× "
            f"{r['peak_mib']:>9,.0f} {r['peak_mib'] / base['peak_mib']:>5.2f}×"
        )


if __name__ == "__main__":
    main()
