"""Speed of ``genept_embed`` against scipy's ``X @ E`` and this machine's GEMM peak, in one run.

Reference: ``normalize(X @ E)`` with ``X`` a CSR matrix and ``E`` the dense gene table,
i.e. scipy's sparse × dense product, then row normalisation. Both see the same generated
log-normalised matrix (20k cells × 20k genes, ~2k expressed genes per cell by default) and a
gene table of the same genes at each ``d``; their results are compared. The useful work is
``2 · nnz · d`` flops; it is also given as a share of the dense float32 GEMM rate measured
in the same run (a 4096² ``np.matmul``), the most any kernel could reach here.

    python benchmarks/scale/embed.py                      # 20k cells, d = 384, 1536, 3072
    python benchmarks/scale/embed.py --cells 100000 --dims 384
    python benchmarks/scale/embed.py --device cuda        # on a GPU, beside the CPU

Targets (issue 11): ≥ 10,000 cells/s and ≥ 5× scipy at d = 384; ≥ 4× scipy at d = 1536.
"""

from __future__ import annotations

import argparse

import numpy as np
from common import add_data_arguments, best_of, generate, machine

import sc_genept
from sc_genept import _kernels
from sc_genept.genes import GeneEmbeddings


def scipy_reference(x, vectors: np.ndarray) -> np.ndarray:
    out = np.asarray(x @ vectors)
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def gemm_flops(n: int = 4096) -> float:
    """Dense float32 GEMM flop rate of this machine (best of 3)."""
    a = np.random.default_rng(0).random((n, n), dtype=np.float32)
    _, seconds = best_of(lambda: a @ a, 3)
    return 2 * n**3 / seconds


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_data_arguments(parser)
    parser.add_argument("--dims", type=int, nargs="+", default=[384, 1536, 3072])
    parser.add_argument("--repeats", type=int, default=2, help="genept_embed: best of N")
    parser.add_argument("--device", default="cpu", help="genept_embed's device (e.g. cuda)")
    args = parser.parse_args()

    adata = generate(args.cells, args.genes, args.per_cell)
    peak = gemm_flops()
    print(
        f"data: {args.cells:,} cells × {args.genes:,} genes, "
        f"{adata.X.nnz / args.cells:,.0f} expressed per cell "
        f"({adata.X.nnz / np.prod(adata.shape):.1%} dense); {machine()}; "
        f"dense float32 GEMM peak {peak / 1e9:,.0f} GFLOP/s"
    )
    print(
        f"{'d':>6} {'genept_embed cells/s':>21} {'scipy cells/s':>14} {'ratio':>7} "
        f"{'GFLOP/s':>8} {'of peak':>8} {'kernel':>7} {'max |diff|':>11}"
    )
    rng = np.random.default_rng(1)
    for d in args.dims:
        table = GeneEmbeddings(adata.var_names, rng.normal(size=(args.genes, d)).astype(np.float32))

        def embed(table=table):
            sc_genept.tl.genept_embed(adata, gene_embeddings=table, device=args.device)

        embed()  # compiles the kernel and chooses it: not timed
        _, ours = best_of(embed, args.repeats)
        reference, theirs = best_of(lambda table=table: scipy_reference(adata.X, table.embeddings))
        diff = np.abs(adata.obsm["X_genept"] - reference).max()
        useful = 2 * adata.X.nnz * d / ours
        kernel = (
            "torch" if args.device != "cpu" else ",".join(sorted(set(_kernels._CHOSEN.values())))
        )
        print(
            f"{d:>6} {args.cells / ours:>21,.0f} {args.cells / theirs:>14,.0f} "
            f"{theirs / ours:>6.1f}× {useful / 1e9:>8,.0f} {useful / peak:>8.0%} {kernel:>7} "
            f"{diff:>11.1e}"
        )
        _kernels._CHOSEN.clear()


if __name__ == "__main__":
    main()
