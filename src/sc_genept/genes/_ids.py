"""Gene identifiers: tell symbols from Ensembl ids and match a dataset's genes to a table.

Matching rules, in order, each gene of the dataset matched to at most one table row:

0. With an ortholog table (``orthologs=``, e.g. mouse → human orthologs), a name in it
   is replaced by its ortholog, which then matches by the rules below.
1. An Ensembl id (any version suffix stripped) matches the table row with that id, or else
   the row whose gene carries that id in the bundled NCBI map.
2. A symbol matches the row with the same symbol, ignoring case (which also matches most
   mouse genes to their human orthologs: ``Cd3e`` → ``CD3E``).
3. Otherwise, a symbol that is an alias (previous or synonym symbol) of exactly one gene,
   and the official symbol of none, matches that gene's row, unless the dataset already
   has that gene under its own name.

Missing names never match, and each table row takes at most one gene of the dataset.

Anything that would match two rows is left out and reported as ambiguous: a wrong match
is worse than a missing one.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from importlib.resources import files
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow.compute as pc
import pyarrow.parquet as pq

if TYPE_CHECKING:
    from collections.abc import Iterable

    from ._table import GeneEmbeddings

# ENSG00000141510, ENSG00000141510.17, ENSG00000002586.20_PAR_Y; other species' prefixes too
_ENSEMBL = re.compile(r"^(ENS[A-Z]*G\d{11})(\.\d+)?(_PAR_Y)?$", re.IGNORECASE)

#: The bundled NCBI gene map (symbols, types, Ensembl ids, aliases of every human gene).
GENE_MAP_FILE = "gene_ids.parquet"


def is_ensembl_id(name: str) -> bool:
    """Whether ``name`` looks like an Ensembl gene id (with or without a version)."""
    return bool(_ENSEMBL.match(name))


def strip_ensembl_version(ids: Iterable) -> np.ndarray:
    """Drop version suffixes (``ENSG00000141510.17`` → ``ENSG00000141510``); keep ``None``."""
    out = []
    for value in ids:
        if not isinstance(value, str) or not value:
            out.append(None)
            continue
        m = _ENSEMBL.match(value)
        out.append(m.group(1).upper() if m else value)
    return np.asarray(out, dtype=object)


def detect_id_type(names: Iterable[str]) -> str:
    """Return ``"ensembl"`` if most names are Ensembl gene ids, else ``"symbol"``."""
    names = list(names)
    n_ensembl = sum(is_ensembl_id(str(n)) for n in names)
    return "ensembl" if n_ensembl > len(names) / 2 else "symbol"


@dataclass
class GeneMatch:
    """Which genes of a dataset matched which rows of a gene table.

    Attributes
    ----------
    var_index
        Positions of the matched genes in the dataset.
    table_index
        The table row each of them matched, aligned with ``var_index``.
    n_vars
        Number of genes in the dataset.
    id_type
        ``"ensembl"`` or ``"symbol"``: what most of the dataset's names are.
    matched_by
        How many genes matched through the ortholog table, by Ensembl id, by symbol and by
        alias.
    ambiguous
        Names left out because they would match more than one table row.
    duplicates
        Names left out because another gene of the dataset already took their table row.
    n_case_differs
        Genes matched by symbol only when case is ignored (``Cd3e`` → ``CD3E``): many of
        them suggest mouse genes on a human table.
    """

    var_index: np.ndarray
    table_index: np.ndarray
    n_vars: int
    id_type: str
    matched_by: dict = field(default_factory=dict)
    ambiguous: list = field(default_factory=list)
    duplicates: list = field(default_factory=list)
    n_case_differs: int = 0

    @property
    def n_matched(self) -> int:
        """Number of dataset genes that have an embedding."""
        return len(self.var_index)

    @property
    def fraction_matched(self) -> float:
        """Fraction of the dataset's genes that have an embedding."""
        return self.n_matched / self.n_vars if self.n_vars else 0.0

    def summary(self) -> dict:
        """Counts for ``adata.uns`` and messages."""
        return {
            "n_genes": self.n_vars,
            "n_genes_matched": self.n_matched,
            "fraction_genes_matched": round(self.fraction_matched, 6),
            "id_type": self.id_type,
            "matched_by": dict(self.matched_by),
            "n_symbol_case_differs": self.n_case_differs,
            "n_ambiguous": len(self.ambiguous),
            "n_duplicates": len(self.duplicates),
        }


@lru_cache(maxsize=1)
def gene_map() -> pd.DataFrame:
    """The bundled map of every human gene (NCBI): symbol, type, Ensembl ids and aliases.

    Built by ``scripts/build_default_table.py`` from Bioconductor's ``org.Hs.eg.db``.
    """
    path = files("sc_genept") / "data" / GENE_MAP_FILE
    return pq.read_table(path).to_pandas()


def primary_ensembl_ids(symbols: Iterable[str]) -> np.ndarray:
    """One Ensembl id per official symbol from the bundled NCBI map (``None`` where none).

    A gene with several Ensembl ids gets one that no other gene claims, the smallest such.
    """
    ncbi = gene_map()
    owners = Counter(e for ids in ncbi["ensembl_ids"] for e in ids)
    ids_of = {
        s.upper(): ids
        for s, ids in zip(ncbi["symbol"], ncbi["ensembl_ids"], strict=True)
        if len(ids)
    }
    out = []
    for symbol in symbols:
        ids = ids_of.get(str(symbol).upper())
        out.append(None if ids is None else sorted(ids, key=lambda e: (owners[e] > 1, e))[0])
    return np.asarray(out, dtype=object)


def match_genes(
    names: Iterable, table: GeneEmbeddings, *, orthologs: Mapping[str, str] | None = None
) -> GeneMatch:
    """Match a dataset's gene names (symbols, Ensembl ids, or a mix) to the rows of ``table``.

    See the module docstring for the rules. Each name is judged on its own, so a mix of
    Ensembl ids and symbols (common after merging datasets) works. Missing names (NaN,
    empty, "nan", "NA") never match. Each table row takes at most one dataset gene, the
    best: the table's own symbol (same case) or Ensembl id, then an ortholog, a
    case-insensitive symbol or an Ensembl id from the NCBI map, then an alias; ties go to
    the first in ``var``. The others are counted in ``duplicates``.

    ``orthologs`` maps the dataset's names to the table's (see :func:`ortholog_map`); a
    name in it is matched as its ortholog, counted in ``matched_by["ortholog"]``.
    """
    from ._table import GeneEmbeddings

    if not isinstance(table, GeneEmbeddings):
        raise TypeError(
            f"table must be a GeneEmbeddings, got {type(table).__name__}: load one with "
            f"sc_genept.genes.load({table!r})."
        )
    if isinstance(names, str | bytes):
        raise TypeError(
            f"names must be a list of gene names, got the string {names!r}: pass [{names!r}]."
        )
    names = ["" if _is_missing(n) else str(n) for n in names]
    crossed = {i for i, n in enumerate(names) if orthologs and n in orthologs}
    names = translate_names(names, orthologs)
    index = _TableIndex.of(table)
    is_ensembl = [bool(n) and is_ensembl_id(n) for n in names]
    by_alias, ambiguous_aliases = index.aliases(
        {
            u
            for n, e in zip(names, is_ensembl, strict=True)
            if n and not e and (u := n.upper()) not in index.by_symbol
        }
    )
    candidates = []  # (rank, var position, table row, how)
    ambiguous = []
    for i, name in enumerate(names):
        if not name:
            continue
        if is_ensembl[i]:
            ensembl = strip_ensembl_version([name])[0]
            rows, how = index.by_ensembl.get(ensembl, ()), "ensembl"
            exact = len(rows) == 1 and table.ensembl_ids[rows[0]] == ensembl
        else:
            rows, how = index.by_symbol.get(name.upper(), ()), "symbol"
            if len(rows) > 1:  # the table has the symbol in several cases: the exact one wins
                rows = [r for r in rows if table.symbols[r] == name] or rows
            exact = len(rows) == 1 and table.symbols[rows[0]] == name
            if not rows:
                row = by_alias.get(name.upper())
                rows, how, exact = ((row,) if row is not None else ()), "alias", False
                if name.upper() in ambiguous_aliases:
                    ambiguous.append(name)
        if len(rows) == 1:
            rank = 0 if exact else 1 if how != "alias" else 2
            candidates.append((rank, i, rows[0], "ortholog" if i in crossed else how))
        elif len(rows) > 1:
            ambiguous.append(name)
    taken: dict[int, tuple[int, str]] = {}
    duplicates = []
    for _, i, row, how in sorted(candidates):
        if row in taken:
            duplicates.append(names[i])
        else:
            taken[row] = (i, how)
    pairs = sorted((i, row, how) for row, (i, how) in taken.items())
    hows = [how for _, _, how in pairs]
    return GeneMatch(
        var_index=np.asarray([i for i, _, _ in pairs], dtype=np.int64),
        table_index=np.asarray([row for _, row, _ in pairs], dtype=np.int64),
        n_vars=len(names),
        id_type=detect_id_type(names),
        matched_by={k: hows.count(k) for k in ("ortholog", "ensembl", "symbol", "alias")},
        ambiguous=ambiguous,
        duplicates=duplicates,
        n_case_differs=sum(
            how == "symbol" and names[i] != table.symbols[row] for i, row, how in pairs
        ),
    )


def translate_names(names: list[str], orthologs: Mapping[str, str] | None) -> list[str]:
    """``names`` with each one in ``orthologs`` replaced by its ortholog (the others as given).

    Several names may become one (``Ins1``, ``Ins2`` → ``INS``): to the embedding they are
    then one gene, whose values are summed.
    """
    return list(names) if not orthologs else [orthologs.get(n, n) for n in names]


def ortholog_map(orthologs) -> dict[str, str]:
    """A map from a dataset's gene names to a gene table's symbols, one symbol per name.

    Parameters
    ----------
    orthologs
        A mapping, a two-column :class:`~pandas.DataFrame` (the dataset's names first, the
        table's second), or the path of a CSV/TSV file with such two columns and a header:
        e.g. mouse → human orthologs from Ensembl BioMart or HGNC's HCOP.

    Returns
    -------
    The pairs whose data gene has one ortholog: a gene with several is left to the other
    matching rules rather than matched to one of them at random. Several data genes may
    share one ortholog (mouse ``Ins1`` and ``Ins2`` → human ``INS``): their expression is
    summed into it.
    """
    if isinstance(orthologs, str | PathLike):
        path = Path(orthologs)
        if not path.is_file():
            raise FileNotFoundError(f"orthologs={str(orthologs)!r}: no such file.")
        sep = "\t" if path.suffix.lower() in (".tsv", ".txt") else ","
        orthologs = pd.read_csv(path, sep=sep, dtype=str)
    if isinstance(orthologs, pd.DataFrame):
        if orthologs.shape[1] != 2:
            raise ValueError(
                "orthologs= as a table needs exactly two columns, the dataset's gene names "
                f"and then the gene table's symbols; it has {list(orthologs.columns)}."
            )
        pairs = list(orthologs.itertuples(index=False, name=None))
    elif isinstance(orthologs, Mapping):
        pairs = list(orthologs.items())
    else:
        raise TypeError(
            "orthologs must be a mapping, a two-column DataFrame or a CSV/TSV path, got "
            f"{type(orthologs).__name__}."
        )
    pairs = [(str(a), str(b)) for a, b in pairs if not _is_missing(a) and not _is_missing(b)]
    targets: dict[str, set[str]] = defaultdict(set)
    for a, b in pairs:
        targets[a].add(b)
    return {a: next(iter(b)) for a, b in targets.items() if len(b) == 1}


_MISSING = {"", "NAN", "NA", "NONE", "NULL", "-"}


def _is_missing(name) -> bool:
    return (
        name is None
        or (isinstance(name, float) and np.isnan(name))
        or str(name).strip().upper() in _MISSING
    )


class _TableIndex:
    """Lookup from upper-case symbol / Ensembl id / alias to table rows (see module doc).

    Symbols are indexed at once; Ensembl ids on the first name that is one, and aliases
    only for the names asked about (:meth:`aliases`): resolving all of the NCBI map's
    70,000 aliases was most of a one-line annotation's time after its imports.
    """

    def __init__(self, table: GeneEmbeddings):
        self.by_symbol: dict[str, list[int]] = defaultdict(list)
        for row, symbol in enumerate(table.symbols):
            self.by_symbol[symbol.upper()].append(row)
        self.by_symbol = dict(self.by_symbol)
        self._ensembl_ids = table.ensembl_ids

    @classmethod
    def of(cls, table: GeneEmbeddings) -> _TableIndex:
        """The index of ``table``, built once per table object (kept on the table)."""
        return table._gene_index

    @cached_property
    def by_ensembl(self) -> dict[str, list[int]]:
        """Ensembl id → rows: the table's own ids, then NCBI's for a gene it has once."""
        by_ensembl = defaultdict(set)
        for row, ens in enumerate(self._ensembl_ids):
            if ens:
                by_ensembl[ens].add(row)
        row_of = pd.Series({s: rows[0] for s, rows in self.by_symbol.items() if len(rows) == 1})
        extra = _ncbi_pairs()["ensembl"].assign(row=lambda d: d["gene"].map(row_of)).dropna()
        extra = extra[~extra["ensembl"].isin(list(by_ensembl))]  # the table's own ids win
        for ens, row in zip(extra["ensembl"], extra["row"].astype(int), strict=True):
            by_ensembl[ens].add(row)
        return {k: sorted(v) for k, v in by_ensembl.items()}

    def aliases(self, names: set[str]) -> tuple[dict[str, int], set[str]]:
        """Which upper-case ``names`` are aliases of one gene's one row, and which are ambiguous.

        Returns ``({alias: row}, {ambiguous alias})``. An alias that is somebody's official
        symbol, or the table's symbol, is no alias here; one that names several genes, or a
        gene with several rows, is ambiguous.
        """
        if not names:
            return {}, set()
        pairs = _ncbi_pairs()
        asked = pairs["aliases"][pairs["aliases"]["alias"].isin(list(names))]
        n_rows = asked["gene"].map({s: len(r) for s, r in self.by_symbol.items()}).fillna(0)
        per_alias = asked.assign(n_rows=n_rows).groupby("alias", sort=False)
        counts = pd.DataFrame({"genes": per_alias.size(), "rows": per_alias["n_rows"].sum()})
        counts = counts[
            (counts["rows"] > 0)
            & ~counts.index.isin(pairs["official"])
            & ~counts.index.isin(list(self.by_symbol))
        ]
        single = (counts["genes"] == 1) & (counts["rows"] == 1)
        one_gene = counts.index[single]
        genes = asked.drop_duplicates("alias").set_index("alias")["gene"].reindex(one_gene)
        by_alias = {a: self.by_symbol[g][0] for a, g in zip(one_gene, genes, strict=True)}
        return by_alias, set(counts.index[~single])


@lru_cache(maxsize=1)
def _ncbi_pairs() -> dict:
    """The NCBI map as (upper-case gene, Ensembl id) and (upper-case alias, gene) pairs.

    Read from the file's list columns as flat arrays (4× faster than :func:`gene_map`'s
    one array per gene).
    """
    table = pq.read_table(
        files("sc_genept") / "data" / GENE_MAP_FILE, columns=["symbol", "ensembl_ids", "aliases"]
    )
    genes = np.asarray([s.upper() for s in table.column("symbol").to_pylist()], dtype=object)

    def pairs(column: str, name: str) -> pd.DataFrame:
        lists = table.column(column).combine_chunks()
        gene = genes[pc.list_parent_indices(lists).to_numpy()]
        return pd.DataFrame({name: lists.flatten().to_numpy(zero_copy_only=False), "gene": gene})

    aliases = pairs("aliases", "alias")
    aliases["alias"] = [a.upper() for a in aliases["alias"]]
    return {
        "ensembl": pairs("ensembl_ids", "ensembl"),
        "aliases": aliases.drop_duplicates(),
        "official": pd.Index(genes).unique(),  # an index: looked up by hash, built once
    }
