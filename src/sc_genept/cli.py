"""The ``sc-genept`` command."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def demo(out: Path, *, max_epochs: int = 200) -> Path:
    """Embed scanpy's bundled PBMCs, plot a UMAP, transfer CL labels from 80 % to 20 %."""
    import logging

    import matplotlib

    matplotlib.use("Agg")
    for noisy in ("lightning.pytorch", "scvi"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    import matplotlib.pyplot as plt
    import numpy as np
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
        color="cell_type",
        title="pbmc68k_reduced, GenePT-w embedding",
        return_fig=True,
        show=False,
    )
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    print(f"UMAP on X_genept coloured by cell type: {path}")

    # label transfer: train on a stratified 80 %, annotate the other 20 %
    rng = np.random.default_rng(0)
    labels = adata.obs["cell_type_ontology_term_id"].to_numpy()
    held_out = np.concatenate(
        [rng.permutation(np.flatnonzero(labels == c))[::5] for c in np.unique(labels)]
    )
    is_query = np.isin(np.arange(adata.n_obs), held_out)
    reference, query = adata[~is_query].copy(), adata[is_query].copy()
    sc.tl.genept_annotate(
        query,
        reference=reference,
        labels_key="cell_type_ontology_term_id",
        max_epochs=max_epochs,
        enable_progress_bar=False,
    )
    truth = query.obs["cell_type_ontology_term_id"].astype(str)
    table = sc_genept.metrics.evaluate(
        truth, query.obs["genept_cell_type_ontology_term_id"].astype(str)
    )
    print(
        f"\ngenept_annotate: trained on {reference.n_obs} cells, annotated {query.n_obs}; "
        f"mean confidence {query.obs['genept_cell_type_confidence'].mean():.2f}"
    )
    print(table.round(3).to_string())
    print(
        f"(hierarchical scores leave out the terms every true label shares: {table.attrs['excluded_terms']})"
    )
    return path


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``sc-genept``."""
    parser = argparse.ArgumentParser(prog="sc-genept", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo_parser = commands.add_parser(
        "demo",
        help="embed scanpy's bundled PBMCs, plot a UMAP, annotate 20 %% from the other 80 %%",
    )
    demo_parser.add_argument(
        "--out", type=Path, default=Path("sc_genept_demo"), help="output folder"
    )
    args = parser.parse_args(argv)
    if args.command == "demo":
        demo(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
