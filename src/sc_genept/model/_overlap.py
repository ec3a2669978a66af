"""How much of a model's genes a query has: measured, warned about, refused below a floor.

Kept free of torch so that :mod:`sc_genept.tl` can check a query before the model loads.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from sc_genept._utils import warn_caller

#: Below this share of the model's genes a query is refused (callers can lower it). Low,
#: so that a targeted panel of a few hundred genes survives a whole-transcriptome model;
#: a query with genes named another way matches almost none and is still refused.
DEFAULT_MIN_GENE_OVERLAP = 0.01
#: Below this share of the model's genes a query gets a warning.
_GENE_OVERLAP_WARNING = 0.8
#: Fewest genes a query may share with a model or a reference, whatever the share.
MIN_SHARED_GENES = 10


def gene_overlap(gene_set: dict, genes) -> dict:
    """Share of a reference's gene set (names, mean expression) found among ``genes``."""
    names = np.asarray(gene_set["names"], dtype=object)
    weight = np.asarray(gene_set["mean_expression"], dtype=np.float64)
    found = pd.Index(names, dtype=object).isin(list(genes))
    missing = np.flatnonzero(~found)
    return {
        "n_model_genes": len(names),
        "n_genes_found": int(found.sum()),
        "fraction_genes_found": round(float(found.mean()) if len(names) else 0.0, 6),
        "fraction_expression_found": round(
            float(weight[found].sum() / weight.sum()) if weight.sum() > 0 else 0.0, 6
        ),
        "missing_examples": [str(g) for g in names[missing[np.argsort(-weight[missing])][:10]]],
    }


def check_gene_overlap(overlap: dict, min_gene_overlap: float) -> None:
    """Warn below 80 % of the model's genes, raise below ``min_gene_overlap``."""
    if not overlap:
        return
    found, n = overlap["fraction_genes_found"], overlap["n_model_genes"]
    n_found = overlap["n_genes_found"]
    what = (
        f"The query has {overlap['n_genes_found']} of the model's {n} genes ({found:.0%}), "
        f"carrying {overlap['fraction_expression_found']:.0%} of the reference's expression; "
        f"missing are e.g. {', '.join(overlap['missing_examples'][:5])}."
    )
    too_few = min_gene_overlap > 0 and n_found < min(MIN_SHARED_GENES, n)  # 0: no floor
    if found < min_gene_overlap or too_few:
        floor = (
            f"below min_gene_overlap={min_gene_overlap}"
            if found < min_gene_overlap
            else f"fewer than {MIN_SHARED_GENES} genes"
        )
        raise ValueError(
            f"{what} That is {floor}: predictions would rest "
            "on too few genes. Check that the query's gene names are symbols or Ensembl ids "
            "of the same species (gene_symbols= can name another var column; for another "
            "species pass orthologs=), or pass a lower min_gene_overlap (0: no floor at all) "
            "to predict anyway."
        )
    if found < _GENE_OVERLAP_WARNING:
        warn_caller(
            f"{what} genept_annotate gives missing genes their reference mean, so the model "
            "sees a typical value, not the cell's own, and accuracy drops (see "
            "benchmarks/README.md, gene panels). With the reference at hand, "
            "genept_annotate(adata, reference=..., labels_key=...) trains on the genes this "
            "query has and does better."
        )


def shared_gene_overlap(n_reference: int, n_query: int, n_shared: int) -> dict:
    """How the genes a reference and a query share compare with what each has.

    A model trained on a reference reads only the shared genes, so what matters is the share
    of the *smaller* gene set that the other has: a panel of 300 genes that a whole-transcriptome
    reference covers is complete, while two datasets that name genes differently share few.
    """
    smaller = min(n_reference, n_query)
    return {
        "n_reference_genes": n_reference,
        "n_query_genes": n_query,
        "n_shared_genes": n_shared,
        "fraction_of_smaller_shared": round(n_shared / smaller, 6) if smaller else 0.0,
    }


def check_shared_genes(overlap: dict, min_gene_overlap: float) -> None:
    """Raise when a reference and a query share too few genes to train on; else log them."""
    from scanpy import logging as logg

    n_shared, fraction = overlap["n_shared_genes"], overlap["fraction_of_smaller_shared"]
    what = (
        f"The reference and the query share {n_shared} genes with an embedding (the reference "
        f"has {overlap['n_reference_genes']}, the query {overlap['n_query_genes']}; "
        f"{fraction:.0%} of the smaller set)"
    )
    too_few = min_gene_overlap > 0 and n_shared < MIN_SHARED_GENES  # 0: no floor
    if too_few or fraction < min_gene_overlap:
        floor = (
            f"fewer than {MIN_SHARED_GENES}"
            if too_few
            else f"below min_gene_overlap={min_gene_overlap}"
        )
        raise ValueError(
            f"{what}: {floor}, too few to train on. Check that both name genes the same way "
            "(symbols or Ensembl ids of one species; for another species pass orthologs=), "
            "or pass a lower min_gene_overlap (0: no floor at all) to train anyway."
        )
    logg.info(f"    {what}: the model is trained on the shared genes")
