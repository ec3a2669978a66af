"""The gene side: gene ids, gene-embedding tables, gene texts and embedders."""

from . import text
from ._build import build_table
from ._cache import Cache, default_cache_dir
from ._embedders import (
    OPENAI_PRICES,
    BatchJobError,
    Cancelled,
    CostEstimate,
    Embedder,
    OpenAIEmbedder,
    SentenceTransformerEmbedder,
    embed_texts,
    estimate_cost,
)
from ._ids import (
    GeneMatch,
    detect_id_type,
    gene_map,
    is_ensembl_id,
    match_genes,
    primary_ensembl_ids,
    strip_ensembl_version,
)
from ._readers import (
    UnsafePickleError,
    from_frame,
    from_huggingface,
    from_mapping,
    read_genept_pickle,
    read_table_file,
)
from ._registry import available, load
from ._table import GeneEmbeddings, Provenance

__all__ = [
    "OPENAI_PRICES",
    "BatchJobError",
    "Cancelled",
    "Cache",
    "CostEstimate",
    "Embedder",
    "GeneEmbeddings",
    "GeneMatch",
    "OpenAIEmbedder",
    "Provenance",
    "SentenceTransformerEmbedder",
    "UnsafePickleError",
    "available",
    "build_table",
    "default_cache_dir",
    "detect_id_type",
    "embed_texts",
    "estimate_cost",
    "from_frame",
    "from_huggingface",
    "from_mapping",
    "gene_map",
    "is_ensembl_id",
    "load",
    "match_genes",
    "primary_ensembl_ids",
    "read_genept_pickle",
    "read_table_file",
    "strip_ensembl_version",
    "text",
]
