"""The gene side: gene ids, gene-embedding tables and where to get them."""

from ._ids import (
    GeneMatch,
    detect_id_type,
    gene_map,
    is_ensembl_id,
    match_genes,
    strip_ensembl_version,
)
from ._registry import available, load
from ._table import GeneEmbeddings, Provenance

__all__ = [
    "GeneEmbeddings",
    "GeneMatch",
    "Provenance",
    "available",
    "detect_id_type",
    "gene_map",
    "is_ensembl_id",
    "load",
    "match_genes",
    "strip_ensembl_version",
]
