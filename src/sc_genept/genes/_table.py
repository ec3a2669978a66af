"""The gene-embedding table: genes × d vectors keyed by symbol and Ensembl id, with provenance."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.lib
import pyarrow.parquet as pq

from sc_genept._checks import positive_int
from sc_genept._utils import atomic_path

from ._ids import strip_ensembl_version

#: Version of the on-disk format written by :meth:`GeneEmbeddings.save`.
FORMAT_VERSION = 1
_METADATA_KEY = b"sc_genept"


@dataclass(frozen=True)
class Provenance:
    """Where a gene-embedding table comes from.

    Parameters
    ----------
    text_source
        What text was embedded for each gene (e.g. ``"NCBI gene summaries"``).
    embedding_model
        The text-embedding model (e.g. ``"text-embedding-3-large"``).
    build_date
        ISO date the table was built.
    license
        Licence and attribution notes for the text and the vectors.
    truncated_from
        Original dimensionality when the table was Matryoshka-truncated, else ``None``.
    extra
        Anything else worth recording (tool versions, source database dates).
    """

    text_source: str = "unknown"
    embedding_model: str = "unknown"
    build_date: str = "unknown"
    license: str = "unknown"
    truncated_from: int | None = None
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """Plain-dict form (JSON- and ``.uns``-safe)."""
        return asdict(self)


class GeneEmbeddings:
    """A table of gene text embeddings: one row a gene, keyed by symbol and Ensembl id.

    Parameters
    ----------
    symbols
        Unique gene symbols, one per row.
    embeddings
        ``(n_genes, n_dims)`` matrix of finite numbers. Stored as float32.
    ensembl_ids
        Ensembl gene id per row (version suffix stripped), or ``None`` where unknown.
    texts
        The text that was embedded for each gene, if known: lets users re-embed the same
        texts with another model.
    provenance
        Where the table comes from.

    Notes
    -----
    On disk a table is one parquet file (see :meth:`save`): columns ``symbol`` (string),
    ``ensembl_id`` (string, nullable), ``text`` (string, optional) and ``embedding``
    (fixed-size list of float16 or float32), and the provenance as JSON under the schema
    metadata key ``sc_genept``.
    """

    def __init__(
        self,
        symbols,
        embeddings,
        *,
        ensembl_ids=None,
        texts=None,
        provenance: Provenance | None = None,
    ):
        symbols = np.asarray(symbols, dtype=object)
        try:
            embeddings = np.asarray(embeddings, dtype=np.float32)
        except (TypeError, ValueError) as err:
            raise ValueError(
                "The embeddings must be a (n_genes, n_dims) matrix of numbers, one row of equal "
                f"length per gene: {err}."
            ) from err
        if symbols.ndim != 1 or embeddings.ndim != 2 or len(symbols) != len(embeddings):
            raise ValueError(
                f"Need one symbol per embedding row; got {symbols.shape} symbols and an "
                f"embedding matrix of shape {embeddings.shape}."
            )
        if len(symbols) == 0 or embeddings.shape[1] == 0:
            raise ValueError(
                f"A gene table needs at least one gene and one dimension; got {len(symbols)} "
                f"genes × {embeddings.shape[1]} dims. Is the source file empty?"
            )
        bad = [i for i, s in enumerate(symbols) if not (isinstance(s, str) and s.strip())]
        if bad:
            raise ValueError(
                f"Gene symbols must be non-empty strings; {len(bad)} of {len(symbols)} are "
                f"missing or blank (rows {bad[:5]}, e.g. {symbols[bad[0]]!r}). Drop those rows "
                "or fill in their symbols."
            )
        duplicated = _duplicates(symbols)
        if duplicated:
            raise ValueError(
                f"Gene symbols must be unique; {len(duplicated)} are repeated: {duplicated[:10]}. "
                "Keep one row per symbol (e.g. DataFrame.drop_duplicates('symbol'))."
            )
        finite = np.isfinite(embeddings).all(axis=1)
        if not finite.all():
            rows = np.flatnonzero(~finite)
            raise ValueError(
                f"The embedding matrix holds NaN or infinite values in {len(rows)} genes "
                f"(e.g. {symbols[rows[:5]].tolist()}). Drop those genes or re-embed their texts."
            )
        self.symbols = symbols
        self.embeddings = embeddings
        self.ensembl_ids = _optional_column(ensembl_ids, len(symbols), "ensembl_ids")
        if ensembl_ids is not None:
            self.ensembl_ids = strip_ensembl_version(self.ensembl_ids)
        self.texts = None if texts is None else _optional_column(texts, len(symbols), "texts")
        self.provenance = provenance or Provenance()

    @property
    def n_genes(self) -> int:
        """Number of genes (rows)."""
        return self.embeddings.shape[0]

    @property
    def n_dims(self) -> int:
        """Embedding dimensionality (columns)."""
        return self.embeddings.shape[1]

    def __len__(self) -> int:
        return self.n_genes

    def __repr__(self) -> str:
        p = self.provenance
        return (
            f"GeneEmbeddings({self.n_genes} genes × {self.n_dims} dims, "
            f"model={p.embedding_model!r}, text={p.text_source!r})"
        )

    @property
    def sha256(self) -> str:
        """The content hash of the symbols and vectors, the table's identity whatever its name."""
        if getattr(self, "_sha256", None) is None:
            digest = hashlib.sha256("\n".join(self.symbols).encode())
            digest.update(np.ascontiguousarray(self.embeddings, dtype=np.float32).tobytes())
            self._sha256 = digest.hexdigest()
        return self._sha256

    @cached_property
    def _gene_index(self):
        """Lookup of symbols, Ensembl ids and aliases to rows (see :func:`~sc_genept.genes.match_genes`).

        Built on first use and kept: every embedding call with this table object reuses it.
        """
        from ._ids import _TableIndex

        return _TableIndex(self)

    @cached_property
    def _case_groups(self) -> dict[str, list[str]]:
        """Upper-case symbol → the table's symbols of it, where there are several."""
        return {
            upper: [self.symbols[r] for r in rows]
            for upper, rows in self._gene_index.by_symbol.items()
            if len(rows) > 1
        }

    def case_clashes(self, names) -> dict[str, list[str]]:
        """Which of ``names`` the table has under several symbols that differ only in case.

        E.g. a table with both ``CD3E`` and ``cd3e`` gives ``{"CD3E": ["CD3E", "cd3e"]}``
        for ``["CD3E", "LYZ"]``: gene matching ignores case, so such a name matches two
        rows. Tables usually have none, and this costs one look-up per name then.
        """
        groups = self._case_groups
        if not groups:
            return {}
        return {str(n): groups[str(n).upper()] for n in names if str(n).upper() in groups}

    def read_only(self) -> GeneEmbeddings:
        """Make the arrays read-only in place (for tables shared between callers); returns ``self``."""
        for values in (self.symbols, self.embeddings, self.ensembl_ids, self.texts):
            if values is not None:
                values.flags.writeable = False
        return self

    def describe(self) -> dict:
        """Provenance, size and content hash, as stored in ``adata.uns`` by :func:`sc_genept.tl.genept_embed`."""
        return {
            **self.provenance.to_dict(),
            "n_genes": self.n_genes,
            "n_dims": self.n_dims,
            "sha256": self.sha256,
        }

    def truncate(self, n_dims: int) -> GeneEmbeddings:
        """Keep the first ``n_dims`` dimensions and re-normalise each gene to unit length.

        This is how Matryoshka-trained models (OpenAI ``text-embedding-3-*``) are shortened;
        for other models it is a plain projection.
        """
        n_dims = positive_int("n_dims", n_dims)
        if n_dims > self.n_dims:
            raise ValueError(f"n_dims must be between 1 and {self.n_dims}, got {n_dims}.")
        if n_dims == self.n_dims:
            return self
        head = self.embeddings[:, :n_dims]
        norms = np.linalg.norm(head, axis=1, keepdims=True)
        head = np.divide(head, norms, out=np.zeros_like(head), where=norms > 0)
        provenance = replace(
            self.provenance, truncated_from=self.provenance.truncated_from or self.n_dims
        )
        short = GeneEmbeddings(
            self.symbols,
            head,
            ensembl_ids=self.ensembl_ids,
            texts=self.texts,
            provenance=provenance,
        )
        if "_gene_index" in self.__dict__:  # same genes, same lookup: don't build it again
            short._gene_index = self._gene_index
        return short

    def save(self, path: str | Path, *, dtype: Literal["float32", "float16"] = "float32") -> Path:
        """Write the table to one parquet file (zstd-compressed).

        Parameters
        ----------
        path
            Destination file, conventionally ending in ``.parquet``.
        dtype
            Storage precision of the vectors; ``"float16"`` halves the size and changes
            cosine similarities by less than 1e-3.
        """
        if dtype not in ("float32", "float16"):
            raise ValueError(f'dtype must be "float32" or "float16", got {dtype!r}.')
        path = Path(path)
        values = self.embeddings.astype(dtype)
        columns = {
            "symbol": pa.array(self.symbols.tolist(), pa.string()),
            "ensembl_id": pa.array(self.ensembl_ids.tolist(), pa.string()),
        }
        if self.texts is not None:
            columns["text"] = pa.array(self.texts.tolist(), pa.string())
        columns["embedding"] = pa.FixedSizeListArray.from_arrays(
            pa.array(values.ravel()), self.n_dims
        )
        meta = {"format_version": FORMAT_VERSION, "provenance": self.provenance.to_dict()}
        table = pa.table(columns).replace_schema_metadata({_METADATA_KEY: json.dumps(meta)})
        with atomic_path(path) as tmp:  # a crash never leaves a half-written table
            pq.write_table(table, tmp, compression="zstd")
        return path

    @classmethod
    def read(cls, path: str | Path, *, with_texts: bool = False) -> GeneEmbeddings:
        """Read a table written by :meth:`save`.

        Parameters
        ----------
        path
            The parquet file.
        with_texts
            Also read the gene texts (if the file has them).
        """
        path = Path(path)
        try:
            schema = pq.read_schema(path)
            meta = json.loads((schema.metadata or {}).get(_METADATA_KEY, b"{}"))
        except (pyarrow.lib.ArrowException, ValueError) as err:  # not parquet, or bad metadata
            raise ValueError(f"{path} is not a readable sc_genept gene table: {err}") from err
        if not isinstance(meta, dict) or meta.get("format_version") != FORMAT_VERSION:
            version = meta.get("format_version") if isinstance(meta, dict) else None
            raise ValueError(
                f"{path} is not an sc_genept gene table (format version "
                f"{version!r}, expected {FORMAT_VERSION})."
            )
        wanted = ["symbol", "ensembl_id", "embedding"]
        if with_texts and "text" in schema.names:
            wanted.append("text")
        missing = [c for c in wanted if c not in schema.names]
        try:
            if missing:
                raise ValueError(f"the columns {missing} are missing")
            table = pq.read_table(path, columns=wanted)
            vectors = table.column("embedding").combine_chunks()
            if not pa.types.is_fixed_size_list(vectors.type):
                raise ValueError(
                    f"the embedding column is {vectors.type}, not a fixed-size list of floats"
                )
            # a null vector, or a null inside one, would shift or NaN-fill rows when flattened
            if vectors.null_count or vectors.values.null_count:
                raise ValueError(
                    f"{vectors.null_count} genes have no vector and "
                    f"{vectors.values.null_count} vector entries are null"
                )
            n_dims = vectors.type.list_size
            matrix = np.asarray(vectors.flatten().to_numpy(zero_copy_only=False)).reshape(
                -1, n_dims
            )
            provenance = Provenance(**meta.get("provenance", {}))
        except (pyarrow.lib.ArrowException, ValueError, TypeError) as err:
            raise ValueError(
                f"{path} is a damaged sc_genept gene table ({err}); write it again with "
                "GeneEmbeddings.save."
            ) from err
        return cls(
            table.column("symbol").to_numpy(zero_copy_only=False),
            matrix,
            ensembl_ids=table.column("ensembl_id").to_numpy(zero_copy_only=False),
            texts=table.column("text").to_numpy(zero_copy_only=False) if "text" in wanted else None,
            provenance=provenance,
        )


def _duplicates(values: np.ndarray) -> list:
    uniq, counts = np.unique(values.astype(str), return_counts=True)
    return uniq[counts > 1].tolist()


def _optional_column(values, n: int, name: str) -> np.ndarray:
    if values is None:
        return np.full(n, None, dtype=object)
    values = np.asarray(values, dtype=object)
    if values.shape != (n,):
        raise ValueError(f"{name} must have one entry per gene ({n}), got shape {values.shape}.")
    return values
