"""The ``sc-genept`` command."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def demo(out: Path) -> Path:
    """Embed scanpy's bundled PBMCs, draw a UMAP of the embedding, and report what was done."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import scanpy as sc

    import sc_genept

    adata = sc_genept.datasets.pbmc68k_reduced()
    print(f"pbmc68k_reduced: {adata.n_obs} cells × {adata.raw.n_vars} genes (log-normalised .raw)")
    sc.tl.genept_embed(adata, use_raw=True)
    info = adata.uns["X_genept"]
    genes = info["genes"]
    print(
        f"genept_embed: {genes['n_genes_matched']} of {genes['n_genes']} genes matched "
        f"({genes['fraction_genes_matched']:.1%}; by symbol {genes['matched_by']['symbol']}, "
        f"by alias {genes['matched_by']['alias']}), covering "
        f"{info['fraction_counts_covered']:.1%} of the expression"
    )
    print(
        f"gene table: {info['gene_embeddings']['embedding_model']}, {info['params']['n_dims']} dims"
    )
    sc.pp.neighbors(adata, use_rep="X_genept", random_state=0)
    sc.tl.umap(adata, random_state=0)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "umap_genept.png"
    fig = sc.pl.umap(
        adata,
        color="bulk_labels",
        title="pbmc68k_reduced, GenePT-w embedding",
        return_fig=True,
        show=False,
    )
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    print(f"UMAP on X_genept coloured by cell type: {path}")
    return path


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``sc-genept``."""
    parser = argparse.ArgumentParser(prog="sc-genept", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo_parser = commands.add_parser("demo", help="embed scanpy's bundled PBMCs and plot a UMAP")
    demo_parser.add_argument(
        "--out", type=Path, default=Path("sc_genept_demo"), help="output folder"
    )
    args = parser.parse_args(argv)
    if args.command == "demo":
        demo(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
