"""scanpy's bundled ``pbmc68k_reduced`` with Cell Ontology labels."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd
import scanpy as sc

if TYPE_CHECKING:
    from anndata import AnnData

# bulk_labels name the FACS-sorted PBMC populations of Zheng et al. 2017 (10x 68k PBMCs)
# whose bulk profiles the cells correlate with best. Each maps to the CL term (release
# 2026-03-26) that names that sorted population, no finer than the sort defines it.
PBMC68K_TO_CL = {
    # sorted on CD14: classical monocytes; CL has exactly "CD14-positive monocyte"
    "CD14+ Monocyte": "CL:0001054",
    # CD19 is the pan-B marker, so the population is all B cells
    "CD19+ B": "CL:0000236",
    # CD34+ sorted cells are stem and progenitor cells together: "hematopoietic precursor cell"
    "CD34+": "CL:0008001",
    # CD4+ CD25+ sorted regulatory T cells
    "CD4+/CD25 T Reg": "CL:0000792",
    # CD4+ CD45RA+ CD25- is the naive CD4 T phenotype
    "CD4+/CD45RA+/CD25- Naive T": "CL:0000895",
    # CD45RO marks memory T cells
    "CD4+/CD45RO+ Memory": "CL:0000897",
    # CD56 (NCAM1) sorted natural killer cells
    "CD56+ NK": "CL:0000623",
    # sorted on CD8 only (naive included), so not "cytotoxic T cell" despite the 10x name
    "CD8+ Cytotoxic T": "CL:0000625",
    # CD8+ CD45RA+: naive CD8 T cells, a subtype of the previous label
    "CD8+/CD45RA+ Naive Cytotoxic": "CL:0000900",
    # no finer phenotype given: dendritic cell
    "Dendritic": "CL:0000451",
}


def pbmc68k_reduced() -> AnnData:
    """700 PBMCs × 765 genes from 10x Genomics' 68k PBMC data, with Cell Ontology labels.

    scanpy's bundled dataset (no download): ``.X`` is scaled (has negative values),
    ``.raw.X`` is log-normalised over the same 765 genes, and ``obs["bulk_labels"]`` holds
    10 cell-type labels (noisy: they come from correlation with sorted bulk populations).

    Returns
    -------
    The dataset, with two more columns:

    ``obs["cell_type_ontology_term_id"]``
        The CL id of each ``bulk_labels`` population (see ``PBMC68K_TO_CL`` in the source
        for the reason behind each mapping).
    ``obs["cell_type"]``
        The CL name of that term.
    """
    from sc_genept.ontology import CellOntology

    adata = sc.datasets.pbmc68k_reduced()
    cl = CellOntology.load()
    ids = adata.obs["bulk_labels"].astype(str).map(PBMC68K_TO_CL)
    adata.obs["cell_type_ontology_term_id"] = pd.Categorical(ids)
    adata.obs["cell_type"] = pd.Categorical(ids.map(cl.name))
    return adata
