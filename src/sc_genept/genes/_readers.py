"""Gene tables from elsewhere: GenePT's pickles, parquet (Hugging Face layout), CSV/TSV, dicts.

GenePT's published tables (Zenodo 10030426 / 10833191) are pickled ``dict`` symbol →
vector. Unpickling runs code named in the file, so :func:`read_genept_pickle` uses an
unpickler that resolves no global except NumPy's array reconstruction, then checks that
what came out is a dict of strings to equal-length float vectors. Anything else is refused
with an error before any foreign code runs.
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from sc_genept.genes._ids import primary_ensembl_ids
from sc_genept.genes._table import GeneEmbeddings, Provenance

# the only globals a pickle of plain floats or NumPy float arrays needs
_NUMPY_ARRAY_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
}
_SYMBOL_COLUMNS = ("symbol", "gene_symbol", "gene_name", "gene", "genes", "feature_name")
_EMBEDDING_COLUMNS = ("embedding", "embeddings", "vector", "emb")


class UnsafePickleError(pickle.UnpicklingError):
    """The pickle holds something other than a GenePT table; nothing in it was run."""


class _TableUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) in _NUMPY_ARRAY_GLOBALS:
            return super().find_class(module, name)
        raise UnsafePickleError(
            f"Refusing to load {module}.{name} from the pickle: a GenePT table is a dict of gene "
            "symbols to lists or arrays of floats, and nothing else is unpickled."
        )


def read_genept_pickle(path: str | Path, *, provenance: Provenance | None = None) -> GeneEmbeddings:
    """Read one of GenePT's pickled tables (``dict`` symbol → vector) safely.

    Parameters
    ----------
    path
        E.g. ``GenePT_gene_embedding_ada_text.pickle`` (1536 dims) or
        ``GenePT_gene_protein_embedding_model_3_text.pickle`` (3072 dims).
    provenance
        Recorded with the table; default: GenePT, NCBI summaries, unknown model.
    """
    data = Path(path).read_bytes()
    try:
        table = _TableUnpickler(io.BytesIO(data)).load()
    except UnsafePickleError:
        raise
    except Exception as err:  # noqa: BLE001 (any malformed stream)
        raise UnsafePickleError(f"{path} is not a readable pickle: {err}") from None
    if not isinstance(table, dict) or not all(isinstance(k, str) for k in table):
        raise UnsafePickleError(
            f"{path} does not hold a dict of gene symbols (got {type(table).__name__})."
        )
    return from_mapping(
        table,
        provenance=provenance
        or Provenance(
            text_source="GenePT: NCBI gene summaries (Chen & Zou 2024)",
            embedding_model=f"GenePT published table ({Path(path).name})",
            license="GenePT, CC BY 4.0 (Zenodo 10030426 / 10833191)",
        ),
    )


def from_mapping(
    mapping: Mapping[str, object], *, provenance: Provenance | None = None
) -> GeneEmbeddings:
    """A table from ``{symbol: vector}``; Ensembl ids come from the bundled NCBI map."""
    symbols = list(mapping)
    vectors = []
    for symbol in symbols:
        vector = np.asarray(mapping[symbol])
        if vector.ndim != 1 or vector.dtype.kind not in "fiu":
            raise UnsafePickleError(f"The vector of {symbol!r} is not a 1-D array of numbers.")
        vectors.append(vector.astype(np.float32))
    if len({len(v) for v in vectors}) > 1:
        raise ValueError("Gene vectors have different lengths.")
    return GeneEmbeddings(
        symbols,
        np.stack(vectors) if vectors else np.zeros((0, 0)),
        ensembl_ids=primary_ensembl_ids(symbols),
        provenance=provenance,
    )


def from_frame(
    frame: pd.DataFrame,
    *,
    symbol_column: str | None = None,
    embedding_column: str | None = None,
    provenance: Provenance | None = None,
) -> GeneEmbeddings:
    """A table from a DataFrame with a symbol column and vectors.

    Vectors are either one column of lists (the Hugging Face layout of GenePT-tools'
    tables) or one numeric column per dimension. ``ensembl_id`` and ``text`` columns are
    kept when present.
    """
    symbol_column = symbol_column or _find_column(frame, _SYMBOL_COLUMNS, "gene symbols")
    symbols = frame[symbol_column].astype(str).to_numpy()
    embedding_column = embedding_column or next(
        (c for c in _EMBEDDING_COLUMNS if c in frame.columns), None
    )
    if embedding_column is not None:
        vectors = np.stack([np.asarray(v, dtype=np.float32) for v in frame[embedding_column]])
    else:
        ignored = [c for c in frame.columns if c == symbol_column or _is_id_column(c)]
        numeric = frame.drop(columns=ignored).select_dtypes("number")
        if numeric.shape[1] == 0:
            raise ValueError(
                f"No embedding column ({_EMBEDDING_COLUMNS}) and no numeric columns in the table."
            )
        vectors = numeric.to_numpy(np.float32)
    ensembl = (
        frame["ensembl_id"].to_numpy() if "ensembl_id" in frame else primary_ensembl_ids(symbols)
    )
    texts = frame["text"].to_numpy() if "text" in frame else None
    return GeneEmbeddings(symbols, vectors, ensembl_ids=ensembl, texts=texts, provenance=provenance)


def read_table_file(path: str | Path, *, provenance: Provenance | None = None) -> GeneEmbeddings:
    """Read any supported file by its suffix: sc_genept or other parquet, pickle, CSV/TSV."""
    path = Path(path)
    suffixes = "".join(path.suffixes[-2:]).lower()
    if path.suffix.lower() in (".pkl", ".pickle"):
        return read_genept_pickle(path, provenance=provenance)
    if path.suffix.lower() == ".parquet":
        metadata = pq.read_schema(path).metadata or {}
        if b"sc_genept" in metadata:
            return GeneEmbeddings.read(path)
        return from_frame(
            pd.read_parquet(path),
            provenance=provenance or Provenance(text_source=f"file {path.name}"),
        )
    if any(s in suffixes for s in (".csv", ".tsv", ".txt")):
        sep = "\t" if ".tsv" in suffixes or ".txt" in suffixes else ","
        return from_frame(
            pd.read_csv(path, sep=sep),
            provenance=provenance or Provenance(text_source=f"file {path.name}"),
        )
    raise ValueError(
        f"Unknown gene-table format {path.suffix!r}: use .parquet, .pickle/.pkl, .csv or .tsv."
    )


def from_huggingface(
    repo_id: str, filename: str, *, revision: str | None = None, repo_type: str = "dataset"
) -> GeneEmbeddings:
    """Download a table file from the Hugging Face hub (cached locally) and read it.

    Needs ``huggingface_hub``. E.g. the LLM-enriched GenePT-tools tables are parquet files
    with a gene-name column and an ``embedding`` column.
    """
    from huggingface_hub import hf_hub_download

    path = hf_hub_download(repo_id, filename, revision=revision, repo_type=repo_type)
    return read_table_file(
        path,
        provenance=Provenance(
            text_source=f"hf://{repo_type}s/{repo_id}/{filename}",
            extra={"revision": revision or "main"},
        ),
    )


_ID_COLUMNS = {
    "index",
    "entrez",
    "entrez_id",
    "gene_id",
    "geneid",
    "ncbi_gene_id",
    "ensembl_id",
    "ensembl",
}


def _is_id_column(name) -> bool:
    """Index and id columns that must not become embedding dimensions."""
    name = str(name)
    return name.startswith("Unnamed:") or name.lower() in _ID_COLUMNS


def _find_column(frame: pd.DataFrame, candidates, what: str) -> str:
    lower = {c.lower(): c for c in frame.columns}
    for name in candidates:
        if name in lower:
            return lower[name]
    raise ValueError(f"No column of {what} found (looked for {candidates}); pass symbol_column=.")
