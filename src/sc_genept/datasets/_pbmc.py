"""scanpy's bundled ``pbmc68k_reduced`` with Cell Ontology labels."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd
import scanpy as sc

if TYPE_CHECKING:
    from anndata import AnnData

    from sc_genept.ontology import CellOntology

# bulk_labels name the FACS-sorted PBMC populations of Zheng et al. 2017 (10x 68k PBMCs)
# whose bulk profiles the cells correlate with best. Each maps to the CL term (release
# 2026-03-26) that names that sorted population, no finer than the sort defines it.
# Labels that CellOntology.resolve maps to that term are resolved; the others need a
# decision, pinned here with the reason.
_RESOLVED = (
    # "marker form": CL has exactly "CD14-positive monocyte" (classical monocytes)
    "CD14+ Monocyte",
    # "cell suffix": no finer phenotype given, so "dendritic cell"
    "Dendritic",
)
_DECIDED = {
    # resolve gives CL:0001201 "B cell, CD19-positive" (its synonym "CD19+ B cell"); CD19
    # is the pan-B marker, so the population is all B cells, and plain "B cell" is the term
    # other datasets (CELLxGENE) use, so labels compare across datasets
    "CD19+ B": ("CL:0000236", "CD19 is pan-B: all B cells"),
    "CD34+": ("CL:0008001", "CD34+ cells: stem and progenitor cells together"),
    "CD4+/CD25 T Reg": ("CL:0000792", "sorted CD4+ CD25+ regulatory T cells"),
    "CD4+/CD45RA+/CD25- Naive T": ("CL:0000895", "CD4+ CD45RA+ CD25- is naive CD4 T"),
    "CD4+/CD45RO+ Memory": ("CL:0000897", "CD45RO marks memory CD4 T cells"),
    # CL has no "CD56-positive natural killer cell", so resolve finds nothing
    "CD56+ NK": ("CL:0000623", "CD56 (NCAM1) sorted natural killer cells"),
    # resolve gives CL:0000794 "CD8-positive, alpha-beta cytotoxic T cell" for the 10x
    # name, but the population was sorted on CD8 only (naive cells included)
    "CD8+ Cytotoxic T": ("CL:0000625", "sorted on CD8 only (naive included), not cytotoxic"),
    # a subtype of the previous label
    "CD8+/CD45RA+ Naive Cytotoxic": ("CL:0000900", "CD8+ CD45RA+ is naive CD8 T"),
}


def pbmc68k_cell_types(ontology: CellOntology | str = "bundled") -> pd.DataFrame:
    """The CL term of each ``bulk_labels`` population of :func:`pbmc68k_reduced`, and why.

    Labels that :meth:`~sc_genept.ontology.CellOntology.match` resolves to the term that
    names the sorted population ("CD14+ Monocyte", "Dendritic") are resolved; the others
    are decided by hand, each with its reason (e.g. "CD8+ Cytotoxic T" was sorted on CD8
    only, so it is "CD8-positive, alpha-beta T cell", not the cytotoxic T cell that the
    name alone resolves to).

    Parameters
    ----------
    ontology
        The Cell Ontology to resolve and name terms with (default: the bundled CL).

    Returns
    -------
    One row per bulk label (the index), with columns ``cell_type_ontology_term_id``,
    ``cell_type`` (the CL name) and ``how`` (the :class:`~sc_genept.ontology.Match` rule,
    or ``"decided: <reason>"``). ``pbmc68k_cell_types()["cell_type_ontology_term_id"]``
    maps bulk labels to CL ids.
    """
    from sc_genept.ontology import CellOntology

    cl = CellOntology.load(ontology)
    rows = {}
    for label in _RESOLVED:
        found = cl.match(label)
        if found is None:  # another CL release: say which label, rather than map to NaN
            raise ValueError(f"{label!r} no longer resolves in {cl!r}: {cl.explain(label)}")
        rows[label] = (found.term_id, found.name, found.how)
    for label, (term, reason) in _DECIDED.items():
        rows[label] = (term, cl.name(term), f"decided: {reason}")
    table = pd.DataFrame.from_dict(
        rows, orient="index", columns=["cell_type_ontology_term_id", "cell_type", "how"]
    )
    table.index.name = "bulk_labels"
    return table.sort_index()


def pbmc68k_reduced() -> AnnData:
    """700 PBMCs × 765 genes from 10x Genomics' 68k PBMC data, with Cell Ontology labels.

    scanpy's bundled dataset (no download): ``.X`` is scaled (has negative values),
    ``.raw.X`` is log-normalised over the same 765 genes, and ``obs["bulk_labels"]`` holds
    10 cell-type labels (noisy: they come from correlation with sorted bulk populations).

    Returns
    -------
    The dataset, with two more columns:

    ``obs["cell_type_ontology_term_id"]``
        The CL id of each ``bulk_labels`` population, as :func:`pbmc68k_cell_types`
        gives it (with the reason behind each).
    ``obs["cell_type"]``
        The CL name of that term.
    """
    adata = sc.datasets.pbmc68k_reduced()
    table = pbmc68k_cell_types()
    labels = adata.obs["bulk_labels"].astype(str)
    adata.obs["cell_type_ontology_term_id"] = pd.Categorical(
        labels.map(table["cell_type_ontology_term_id"])
    )
    adata.obs["cell_type"] = pd.Categorical(labels.map(table["cell_type"]))
    return adata
