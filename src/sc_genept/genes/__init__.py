"""The gene side: gene ids, gene-embedding tables, gene texts and embedders."""

from . import text
from ._build import build_table
from ._cache import Cache
from ._embed_texts import embed_texts
from ._embedders import (
    OPENAI_PRICES,
    BatchJobError,
    Cancelled,
    Embedder,
    EmbeddingError,
    OpenAIEmbedder,
    estimate_cost,
)
from ._ids import GeneMatch, gene_map, match_genes, ortholog_map, primary_ensembl_ids
from ._readers import (
    UnsafePickleError,
    from_frame,
    from_huggingface,
    from_mapping,
    read_genept_pickle,
    read_table_file,
)
from ._registry import available, load
from ._sentence_transformer import SentenceTransformerEmbedder
from ._table import GeneEmbeddings, Provenance

# What users call (see docs/api.md). Helpers such as ``detect_id_type``,
# ``strip_ensembl_version`` or ``default_cache_dir`` stay importable from their modules.
__all__ = [
    "OPENAI_PRICES",
    "BatchJobError",
    "Cache",
    "Cancelled",
    "Embedder",
    "EmbeddingError",
    "GeneEmbeddings",
    "GeneMatch",
    "OpenAIEmbedder",
    "Provenance",
    "SentenceTransformerEmbedder",
    "UnsafePickleError",
    "available",
    "build_table",
    "embed_texts",
    "estimate_cost",
    "from_frame",
    "from_huggingface",
    "from_mapping",
    "gene_map",
    "load",
    "match_genes",
    "ortholog_map",
    "primary_ensembl_ids",
    "read_genept_pickle",
    "read_table_file",
    "text",
]
