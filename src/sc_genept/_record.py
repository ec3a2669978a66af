"""The ``uns`` record of a GenePT-w embedding, typed, in one place.

:func:`~sc_genept.tl.genept_embed` writes a nested dict to ``adata.uns[key_added]``; h5ad
files keep it, :func:`~sc_genept.tl.genept_annotate` and the models read it, and model
folders copy its gene set and gene-table provenance. :class:`EmbeddingRecord` and
:class:`GeneSet` are that dict as dataclasses: the embedding code builds them, readers
parse ``uns`` with :meth:`EmbeddingRecord.read` (which names the key and the field when
the dict is not such a record), and :meth:`EmbeddingRecord.to_uns` gives the dict exactly
as it has always been written, so saved files do not change.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

from sc_genept._utils import h5ad_safe

if TYPE_CHECKING:
    from anndata import AnnData

#: What :attr:`EmbeddingRecord.kind` can be: the embedding, or the expression of its genes.
_KINDS = ("embedding", "expression")


class _Malformed(ValueError):
    """A field of a record is missing or of the wrong type; ``problem`` says which."""

    def __init__(self, problem: str):
        super().__init__(problem)
        self.problem = problem


def gene_set_hash(names) -> str:
    """Identity of a set of gene names (order does not matter).

    Parameters
    ----------
    names
        Gene names, in any order.

    Returns
    -------
    The SHA-256 hex digest of the sorted names, one per line.
    """
    return hashlib.sha256("\n".join(sorted(map(str, names))).encode()).hexdigest()


@dataclass(frozen=True, eq=False)
class GeneSet:
    """The genes an embedding (or an expression input) is made of, sorted by name.

    Parameters
    ----------
    names
        Table symbols of the genes, sorted (a ``str`` array).
    sha256
        :func:`gene_set_hash` of ``names``: their identity, compared across datasets.
    mean_expression
        Each gene's mean (log-normalised) expression over the cells, in the order of
        ``names`` (float32), or None when unknown without a pass over the data (Dask).
    fraction_of_matched_expression
        Share of the matched genes' expression that these genes carry (1.0 when every
        matched gene is in the set), or None when unknown.
    n_imputed
        Genes of the set the data lacks, given a value instead (``missing_values``).
    """

    names: np.ndarray
    sha256: str
    mean_expression: np.ndarray | None = None
    fraction_of_matched_expression: float | None = 1.0
    n_imputed: int = 0

    @property
    def n_genes(self) -> int:
        """How many genes the set has."""
        return len(self.names)

    @classmethod
    def sorted_by_name(
        cls,
        names,
        mean_expression=None,
        *,
        fraction_of_matched_expression: float | None = 1.0,
        n_imputed: int = 0,
    ) -> GeneSet:
        """The gene set of ``names`` (any order), with their mean expression, sorted by name.

        Parameters
        ----------
        names
            Table symbols of the genes.
        mean_expression
            Their mean expression, in the order of ``names``; None when unknown.
        fraction_of_matched_expression
            Share of the matched genes' expression the set carries (rounded to 6
            decimals); None when unknown.
        n_imputed
            Genes given a value instead of read from the data.

        Returns
        -------
        The gene set, names and means put in the order of the names.
        """
        names = np.asarray(names, dtype=object)
        order = np.argsort(names, kind="stable")
        names = names[order]
        if mean_expression is not None:  # None: not known without a pass over the data (Dask)
            # summed in float64 by the caller; stored as float32, which is precise enough
            mean_expression = np.asarray(mean_expression, dtype=np.float64)[order]
            mean_expression = mean_expression.astype(np.float32)
        if fraction_of_matched_expression is not None:
            fraction_of_matched_expression = round(float(fraction_of_matched_expression), 6)
        return cls(
            names=names.astype(str),
            sha256=gene_set_hash(names),
            mean_expression=mean_expression,
            fraction_of_matched_expression=fraction_of_matched_expression,
            n_imputed=n_imputed,
        )

    def to_uns(self) -> dict:
        """The gene set as ``uns`` stores it (None entries kept; the record drops them)."""
        return {
            "n_genes": self.n_genes,
            "sha256": self.sha256,
            "names": self.names.astype(str),
            "mean_expression": self.mean_expression,
            "fraction_of_matched_expression": self.fraction_of_matched_expression,
            "n_imputed": self.n_imputed,
        }

    @classmethod
    def from_uns(cls, mapping: Mapping) -> GeneSet:
        """The gene set stored as ``mapping`` (what :meth:`to_uns` wrote, maybe via h5ad).

        Parameters
        ----------
        mapping
            A record's ``gene_set`` entry.

        Returns
        -------
        The gene set.

        Raises
        ------
        ValueError
            When ``mapping`` lacks ``names`` or ``sha256``, or a field has the wrong type.
        """
        try:
            return cls._parse(mapping)
        except _Malformed as err:
            raise ValueError(f"Not a genept_embed gene set ({err.problem}).") from None

    @classmethod
    def _parse(cls, mapping, prefix: str = "gene_set") -> GeneSet:
        """:meth:`from_uns`, raising :class:`_Malformed` that names the field."""
        _require_mapping(mapping, repr(prefix))
        names = _required(mapping, "names", prefix)
        if isinstance(names, str) or np.ndim(names) != 1:
            raise _Malformed(
                f"{_path(prefix, 'names')} is a {type(names).__name__}, not a list of names"
            )
        names = np.asarray(names).astype(str)
        mean = mapping.get("mean_expression")
        if mean is not None:
            mean = np.asarray(mean, dtype=np.float32)
            if mean.shape != names.shape:
                raise _Malformed(
                    f"{_path(prefix, 'names')} has {len(names)} genes but "
                    f"{_path(prefix, 'mean_expression')} {mean.size} values"
                )
        return cls(
            names=names,
            sha256=str(_required(mapping, "sha256", prefix)),
            mean_expression=mean,
            fraction_of_matched_expression=_number(
                mapping, "fraction_of_matched_expression", prefix, float
            ),
            n_imputed=_number(mapping, "n_imputed", prefix, int) or 0,
        )


@dataclass(frozen=True, eq=False, kw_only=True)
class EmbeddingRecord:
    """What :func:`~sc_genept.tl.genept_embed` computed: its ``uns[key_added]`` record.

    Fields a lazy (Dask) embedding cannot know without a pass over the data, and options
    that were not given, are None here and absent from ``uns``.

    Parameters
    ----------
    kind
        ``"embedding"`` (``uns[key_added]``) or ``"expression"`` (the record of
        ``uns[key_added + "_expression"]``, the expression of the embedding's genes).
    gene_embeddings
        The gene table's identity (:meth:`~sc_genept.genes.GeneEmbeddings.describe`).
    gene_set
        The genes the embedding (or the expression input) is made of.
    params
        The embedding's arguments.
    source
        Which matrix was embedded: ``"adata.X"``, ``"adata.raw.X"``, ``"adata.layers[...]"``.
    genes
        How many of the data's genes matched the table, and how.
    fraction_counts_covered
        Share of all expression in matched genes.
    log_normalized
        Whether the values were counts, log-normalised before embedding.
    n_cells_empty
        Cells that express none of the matched genes (zero embeddings).
    lazy
        Whether the embedding is a lazy Dask array.
    values
        The expression record's ``"log-normalised"`` or ``"as given"``.
    """

    kind: Literal["embedding", "expression"] = "embedding"
    gene_embeddings: dict
    gene_set: GeneSet
    params: dict | None = None
    source: str | None = None
    genes: dict | None = None
    fraction_counts_covered: float | None = None
    log_normalized: bool | None = None
    n_cells_empty: int | None = None
    lazy: bool = False
    values: str | None = None

    def to_uns(self) -> dict:
        """The record as ``uns`` stores it, exactly as genept_embed has always written it.

        Returns
        -------
        A new nested dict. The embedding's has no None entries (``write_h5ad`` cannot
        store them); the expression record keeps its gene set's, as it always has.
        """
        if self.kind == "expression":
            return {
                "kind": "expression",
                "values": self.values,
                "gene_set": self.gene_set.to_uns(),
                "gene_embeddings": h5ad_safe(dict(self.gene_embeddings)),
            }
        return h5ad_safe(
            {
                "params": self.params,
                "source": self.source,
                "gene_embeddings": dict(self.gene_embeddings),
                "genes": self.genes,
                "gene_set": self.gene_set.to_uns(),
                "fraction_counts_covered": self.fraction_counts_covered,
                "log_normalized": self.log_normalized,
                "n_cells_empty": self.n_cells_empty,
                "lazy": True if self.lazy else None,  # only a lazy record says so
            }
        )

    def expression(self) -> EmbeddingRecord:
        """The record of the expression input made with this embedding (``expression=True``).

        Returns
        -------
        An ``"expression"`` record of the same genes and gene table.
        """
        if self.kind == "expression":
            return self
        return EmbeddingRecord(
            kind="expression",
            values="log-normalised" if self.log_normalized else "as given",
            gene_set=self.gene_set,
            gene_embeddings=self.gene_embeddings,
        )

    @classmethod
    def from_uns(cls, mapping, *, key: str | None = None) -> EmbeddingRecord:
        """The record stored as ``mapping`` (an ``uns`` entry, maybe read from h5ad).

        Parameters
        ----------
        mapping
            The ``uns`` entry.
        key
            Its key in ``adata.uns``, for the error message.

        Returns
        -------
        The record; numbers and flags read from h5ad are plain Python values again.

        Raises
        ------
        ValueError
            When ``mapping`` is not a genept_embed record: not a dict, no ``gene_set`` or
            ``gene_embeddings``, or a field of the wrong type. The message names ``key``
            and the field.
        """
        try:
            return cls._parse(mapping)
        except _Malformed as err:
            where = "this dict" if key is None else f"adata.uns[{key!r}]"
            raise ValueError(
                f"{where} is not a genept_embed record ({err.problem}): run "
                "sc.tl.genept_embed again."
            ) from None

    @classmethod
    def read(cls, adata: AnnData, key: str) -> EmbeddingRecord | None:
        """The record in ``adata.uns[key]``, or None when ``adata.uns`` has no ``key``.

        Parameters
        ----------
        adata
            The data genept_embed wrote to.
        key
            The record's key: ``key_added`` (``"X_genept"``), or ``key_added +
            "_expression"`` for the expression input's record.

        Returns
        -------
        The record, or None.

        Raises
        ------
        ValueError
            When ``adata.uns[key]`` is not a genept_embed record (see :meth:`from_uns`).
        """
        if key not in adata.uns:
            return None
        return cls.from_uns(adata.uns[key], key=key)

    @classmethod
    def _parse(cls, mapping) -> EmbeddingRecord:
        """:meth:`from_uns`, raising :class:`_Malformed`."""
        _require_mapping(mapping, "it")
        kind = str(mapping.get("kind", "embedding"))  # an embedding's record has never said so
        if kind not in _KINDS:
            raise _Malformed(f"'kind' is {kind!r}, not 'embedding' or 'expression'")
        gene_set = GeneSet._parse(_required(mapping, "gene_set"))
        gene_embeddings = _plain(_required(mapping, "gene_embeddings"), "'gene_embeddings'")
        if kind == "expression":
            values = _required(mapping, "values")
            if not isinstance(values, str):
                raise _Malformed(f"'values' is a {type(values).__name__}, not a string")
            return cls(kind=kind, values=values, gene_set=gene_set, gene_embeddings=gene_embeddings)
        log_normalized = mapping.get("log_normalized")
        if log_normalized is not None and not isinstance(log_normalized, bool | np.bool_):
            raise _Malformed(f"'log_normalized' is a {type(log_normalized).__name__}, not a bool")
        source = mapping.get("source")
        return cls(
            kind=kind,
            gene_embeddings=gene_embeddings,
            gene_set=gene_set,
            params=_plain(mapping.get("params"), "'params'"),
            source=None if source is None else str(source),
            genes=_plain(mapping.get("genes"), "'genes'"),
            fraction_counts_covered=_number(mapping, "fraction_counts_covered", "", float),
            log_normalized=None if log_normalized is None else bool(log_normalized),
            n_cells_empty=_number(mapping, "n_cells_empty", "", int),
            lazy=bool(mapping.get("lazy", False)),
        )


def _path(prefix: str, field: str) -> str:
    """How a message names ``field`` of the record (``prefix``: the dict it is in, if any)."""
    return repr(field) if not prefix else f"{prefix}[{field!r}]"


def _require_mapping(value, name: str) -> None:
    if not isinstance(value, Mapping):
        raise _Malformed(f"{name} is a {type(value).__name__}, not a dict")


def _required(mapping: Mapping, field: str, prefix: str = ""):
    """``mapping[field]``; a missing one is what makes a dict not a record."""
    if field not in mapping:
        raise _Malformed(f"no {_path(prefix, field)}")
    return mapping[field]


def _number(mapping: Mapping, field: str, prefix: str, kind: type):
    """``mapping[field]`` as ``kind`` (``int`` or ``float``), or None when absent or None.

    h5ad gives NumPy scalars back; the record holds plain numbers, as it was written.
    """
    value = mapping.get(field)
    if value is None:
        return None
    if isinstance(value, bool | np.bool_) or not isinstance(value, int | float | np.number):
        raise _Malformed(f"{_path(prefix, field)} is a {type(value).__name__}, not a number")
    return kind(value)


def _plain(value, name: str) -> dict | None:
    """A nested mapping as nested dicts (None stays None), sharing nothing with ``uns``."""
    if value is None:
        return None
    _require_mapping(value, name)
    return {k: _plain(v, name) if isinstance(v, Mapping) else v for k, v in value.items()}
