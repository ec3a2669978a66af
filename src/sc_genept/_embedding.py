"""GenePT-w of an AnnData, and its ``uns`` record, without writing to the AnnData.

:func:`cell_embedding` is what :func:`~sc_genept.tl.genept_embed` and
:func:`~sc_genept.tl.genept_annotate` write, and what a streaming data module
(:class:`~sc_genept.model.SomaCells`) embeds batches with: the choice of matrix, gene
matching, duplicate names, the gene set and the checks live here, once. The record's
fields are built here; its type and ``uns`` form are :mod:`sc_genept._record`'s.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

import numpy as np
import pandas as pd
from scanpy import logging as logg
from scipy import sparse

from sc_genept import _dask, _kernels
from sc_genept._checks import check_adata, check_numeric, positive_int
from sc_genept._files import check_output
from sc_genept._genept_w import NpyFileSink, ScaledDataError, genept_w
from sc_genept._record import EmbeddingRecord, GeneSet
from sc_genept._utils import warn_caller
from sc_genept.genes import GeneEmbeddings, load, match_genes, ortholog_map
from sc_genept.genes._ids import translate_names

if TYPE_CHECKING:
    from anndata import AnnData

#: Below this many matched genes the embedding says little; most likely an id mismatch.
_FEW_GENES = 100
#: Below this share of the expression in matched genes, most of a cell is not embedded.
_LOW_COVERAGE = 0.5
#: Rows of a backed ``.X`` read to tell whether it is scaled (``use_raw=None``); scaled
#: data is negative in nearly every cell, and reading all of it would cost a pass.
_SCALED_PROBE_ROWS = 8


def cell_embedding(
    adata: AnnData,
    *,
    gene_embeddings: str | Path | GeneEmbeddings = "default",
    layer: str | None = None,
    use_raw: bool | None = None,
    gene_symbols: str | None = None,
    orthologs=None,
    normalize: bool = True,
    n_dims: int | None = None,
    genes: Sequence[str] | None = None,
    missing_values: Mapping[str, float] | None = None,
    chunk_size: int | None = None,
    expression: bool = False,
    dtype: Literal["float32", "float16"] = "float32",
    device: str = "auto",
    out_file: str | Path | None = None,
    name: str = "adata",
) -> CellEmbedding:
    """The GenePT-w embedding of ``adata`` and its ``uns`` record, without writing anything.

    Same arguments as :func:`genept_embed`; used where the embedding is needed but
    ``adata`` must stay as it is. Also:

    missing_values
        Values for genes of ``genes`` that ``adata`` lacks (e.g. their mean in a reference),
        so that a missing gene counts as "typical" rather than "not expressed".
    expression
        Also return the (log-normalised) expression of the embedded genes, cells × genes
        in the order of ``record.gene_set.names``.
    name
        How messages name ``adata`` (e.g. ``"reference"``: "None of the genes of
        reference.X ..."); the record's ``source`` stays ``"adata.X"`` and the like.
    """
    check_adata(adata, name, empty_ok=False)
    _check_options(
        chunk_size=chunk_size, n_dims=n_dims, normalize=normalize, use_raw=use_raw, genes=genes
    )
    if dtype not in ("float32", "float16"):
        raise ValueError(f"dtype must be 'float32' or 'float16', got {dtype!r}.")
    _check_output(device, out_file)
    table = gene_table(gene_embeddings, n_dims)
    matrix, var, source, _ = _choose_expression(adata, use_raw, layer, name=name)
    shown = source.replace("adata", name, 1)  # the matrix as messages name it
    names = var.index if gene_symbols is None else _var_column(var, gene_symbols, shown)
    ortholog_pairs = None if orthologs is None else ortholog_map(orthologs)
    match = match_genes(names, table, orthologs=ortholog_pairs)
    _check_match(match, names, table, shown, orthologs_given=orthologs is not None)
    plan = _GenePlan.of(
        translate_names(list(map(str, names)), ortholog_pairs), table, match, genes,
        source=shown, gene_symbols=gene_symbols, missing_values=missing_values,
        original_names=names,
    )  # fmt: skip
    params = {
        "gene_embeddings": str(gene_embeddings)
        if not isinstance(gene_embeddings, GeneEmbeddings)
        else repr(gene_embeddings),
        "layer": layer,
        "use_raw": use_raw,
        "gene_symbols": gene_symbols,
        "orthologs": None if ortholog_pairs is None else f"{len(ortholog_pairs)} pairs",
        "normalize": normalize,
        "n_dims": table.n_dims,
        "chunk_size": chunk_size,
        "dtype": dtype,
        "device": device,
        "out_file": None if out_file is None else str(out_file),
    }
    if _dask.is_dask(matrix):
        _dask.check_options(shown, device, out_file)
        return _lazy_embedding(
            adata,
            matrix,
            (source, shown),
            plan,
            params=params,
            normalize=normalize,
            chunk_size=chunk_size,
            expression=expression,
            dtype=dtype,
        )
    sink = None if out_file is None else NpyFileSink(out_file, adata.n_obs, table.n_dims, dtype)
    try:
        result = genept_w(
            matrix,
            plan.var_index,
            plan.vectors,
            normalize=normalize,
            block_rows=chunk_size,
            offset=plan.offset,
            return_expression=expression,
            duplicates=plan.duplicates,
            out_dtype=np.dtype(dtype),
            kernel=_kernels.kernel_for(matrix),
            device=_resolve_device(device),
            sink=sink,
        )
    except ScaledDataError as err:
        raise ScaledDataError(_scaled_message(adata, shown, err)) from None
    _warn_coverage(result, match.n_matched, shown, adata.n_obs, genes_given=genes is not None)
    record = _record(params, source, plan, result, adata.n_obs)
    values = None
    if expression:  # columns in the order of the record's (sorted) names
        values = result.expression[:, plan.expression_order]
    return CellEmbedding(result.embedding, record, values)


def _record(params: dict, source: str, plan: _GenePlan, result, n_cells: int) -> EmbeddingRecord:
    """The record of an in-memory embedding (what it was made of and from)."""
    set_totals = result.gene_totals[: len(plan.vectors)]
    matched_total = result.gene_totals.sum()
    share = set_totals.sum() / matched_total if matched_total else 0.0
    gene_set = GeneSet.sorted_by_name(
        plan.found,
        set_totals / max(n_cells, 1),
        fraction_of_matched_expression=share,
        n_imputed=len(plan.imputed),
    )
    return plan.record(
        params,
        source,
        gene_set,
        fraction_counts_covered=round(float(result.fraction_counts_covered), 6),
        log_normalized=result.log_normalized,
        n_cells_empty=result.n_empty,
    )


def gene_table(
    gene_embeddings: str | Path | GeneEmbeddings, n_dims: int | None = None
) -> GeneEmbeddings:
    """The gene table given or named, cut to its first ``n_dims`` dimensions."""
    table = (
        gene_embeddings if isinstance(gene_embeddings, GeneEmbeddings) else load(gene_embeddings)
    )
    if n_dims is None:
        return table
    if n_dims > table.n_dims:
        raise ValueError(
            f"n_dims={n_dims} but the gene table ({table!r}) has {table.n_dims} "
            f"dimensions: pass n_dims from 1 to {table.n_dims}, or None for all of them."
        )
    return table.truncate(n_dims)


def _warn_coverage(result, n_matched: int, source: str, n_cells: int, *, genes_given: bool):
    """Warn when the matched genes carry little of the expression, or cells express none."""
    low_coverage = result.fraction_counts_covered < _LOW_COVERAGE
    if not genes_given and n_matched >= _FEW_GENES and low_coverage:
        warn_caller(
            f"The {n_matched} matched genes carry only {result.fraction_counts_covered:.0%} "
            f"of the expression in {source}: most of what these cells express has no embedding "
            "(another species, or ids the table lacks?). See adata.uns[key_added]['genes']."
        )
    if result.n_empty:
        warn_caller(
            f"{result.n_empty} of {n_cells} cells express none of the {n_matched} "
            "matched genes; their embedding is a zero vector."
        )


def _check_output(device, out_file) -> None:
    """``device`` names a device; ``out_file`` is a ``.npy`` path whose folder exists."""
    if not isinstance(device, str) or not device:
        raise ValueError(
            f"device must be 'auto', 'cpu' or a torch device such as 'cuda', got {device!r}."
        )
    if out_file is not None:
        path = Path(out_file)
        if path.suffix != ".npy":
            raise ValueError(
                f"out_file must end in .npy (a NumPy array file), got {str(out_file)!r}."
            )
        if not path.parent.is_dir():
            raise FileNotFoundError(
                f"out_file's folder {str(path.parent)!r} does not exist; create it first."
            )
        check_output(path, "out_file")  # before the work: a folder, read-only, unwritable


def _resolve_device(device: str) -> str:
    """``"cpu"`` or a torch device; ``"auto"`` is CUDA when torch sees a GPU.

    torch is imported for ``"auto"`` only when it already is, or an NVIDIA driver is
    present: importing it costs a second, which a CPU-only embedding does not need.
    """
    if device != "auto":
        if device != "cpu":
            import torch

            try:
                torch.empty(0, device=device)
            except (RuntimeError, AssertionError) as err:
                raise ValueError(
                    f"device={device!r} cannot be used here ({err}). Use 'cpu', or 'auto' to "
                    "take a GPU when there is one."
                ) from None
        return device
    if "torch" not in sys.modules and not Path("/proc/driver/nvidia/version").exists():
        return "cpu"
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _lazy_embedding(
    adata, matrix, sources, plan: _GenePlan, *, params, normalize, chunk_size, expression, dtype
) -> CellEmbedding:
    """:func:`cell_embedding` of a Dask matrix: a lazy embedding, and what ``uns`` can know.

    ``sources``: the matrix as the record names it, and as messages do.

    Statistics that need a pass over the data (``fraction_counts_covered``,
    ``n_cells_empty``, the gene set's ``mean_expression`` and
    ``fraction_of_matched_expression``) are None, so left out of the record.
    """
    source, shown = sources
    if expression:
        raise NotImplementedError(
            f"expression=True is not supported when {shown} is a Dask array. Embed without "
            "it (expression=False), or load the matrix into memory first (e.g. "
            "adata.X = adata.X.compute(), or adata.to_memory()) to also get the expression."
        )
    matrix = _dask.row_readable(_dask.full_width(matrix, shown))
    first = _dask.first_values(
        matrix, plan.var_index, plan.vectors, normalize=normalize, duplicates=plan.duplicates
    )
    log_normalized = first.counts if normalize else False
    embedding = _dask.embed_lazily(
        matrix,
        plan.var_index,
        plan.vectors,
        normalize=normalize,
        block_rows=chunk_size,
        offset=plan.offset,
        duplicates=plan.duplicates,
        first=first,
        scaled_message=_scaled_message(adata, shown, "\0"),
        dtype=np.dtype(dtype),
    )
    gene_set = GeneSet.sorted_by_name(
        plan.found, None, fraction_of_matched_expression=None, n_imputed=len(plan.imputed)
    )
    record = plan.record(params, source, gene_set, log_normalized=log_normalized, lazy=True)
    return CellEmbedding(embedding, record, None)


@dataclass
class _GenePlan:
    """Which columns of the matrix are embedded, with which vectors: one per call."""

    table: GeneEmbeddings
    match: Any
    #: Matched columns, the gene set's first (only they are embedded).
    var_index: np.ndarray
    #: Embeddings of the gene set's genes, row-aligned with the first ``var_index``.
    vectors: np.ndarray
    #: Table symbols of the gene set's genes.
    found: np.ndarray
    imputed: dict
    duplicates: tuple[np.ndarray, np.ndarray] | None

    @classmethod
    def of(
        cls,
        names,
        table,
        match,
        genes,
        *,
        source: str,
        gene_symbols,
        missing_values=None,
        original_names=None,
    ) -> _GenePlan:
        """The plan for columns ``names`` matched to ``table`` (``match``), on ``genes``.

        The set's genes come first: only they are embedded; the other matched genes are
        read for their expression alone, for the share of it the set carries.
        """
        if genes is None:
            in_set = np.ones(match.n_matched, dtype=bool)
        else:
            # a hash look-up: np.isin sorts object arrays (0.1 s on a 20,000-gene table)
            in_set = pd.Index(table.symbols[match.table_index]).isin(list(genes))
        order = np.argsort(~in_set, kind="stable")
        rows, n_in_set = match.table_index[order], int(in_set.sum())
        found = table.symbols[rows[:n_in_set]]
        var_index = match.var_index[order]
        return cls(
            table=table,
            match=match,
            var_index=var_index,
            vectors=table.embeddings[rows[:n_in_set]],
            found=found,
            imputed=_missing_genes(genes, found, missing_values),
            duplicates=_duplicate_columns(
                names, var_index, source, gene_symbols, original_names=original_names
            ),
        )

    @property
    def expression_order(self) -> np.ndarray:
        """Embedded genes' columns in the order of their (sorted) names, as stored."""
        return np.argsort(self.found, kind="stable")

    @property
    def offset(self) -> np.ndarray | None:
        """The imputed genes' contribution to every cell, if any are imputed."""
        return _imputed_sum(self.table, self.imputed) if self.imputed else None

    def record(self, params: dict, source: str, gene_set: GeneSet, **statistics) -> EmbeddingRecord:
        """The embedding's record: the plan's gene table and matches, with ``statistics``.

        ``statistics``: the :class:`EmbeddingRecord` fields measured by the pass over the
        data (``fraction_counts_covered``, ``log_normalized``, ...).
        """
        n_summed = 0 if self.duplicates is None else len(self.duplicates[0])
        return EmbeddingRecord(
            params=params,
            source=source,
            gene_embeddings=self.table.describe(),
            genes={**self.match.summary(), "n_duplicate_columns_summed": n_summed},
            gene_set=gene_set,
            **statistics,
        )


@dataclass
class CellEmbedding:
    """What :func:`cell_embedding` returns."""

    embedding: np.ndarray
    #: What ``uns[key_added]`` records (:meth:`EmbeddingRecord.to_uns`).
    record: EmbeddingRecord
    #: Cells × genes of ``record.gene_set.names``, with ``expression=True``.
    expression: sparse.csr_matrix | None = None

    def store(self, adata: AnnData, key: str) -> None:
        """Write the embedding and its record to ``adata.obsm[key]`` / ``adata.uns[key]``.

        The expression, when there is one, goes with its record to ``key + "_expression"``.
        """
        adata.obsm[key] = self.embedding
        adata.uns[key] = self.record.to_uns()
        if self.expression is not None:
            adata.obsm[f"{key}_expression"] = self.expression
            adata.uns[f"{key}_expression"] = self.record.expression().to_uns()


def _missing_genes(genes, found, missing_values) -> dict:
    """Genes of ``genes`` not in ``found`` that have a value to impute."""
    if genes is None or not missing_values:
        return {}
    missing = set(map(str, genes)) - set(map(str, found))
    imputed = {g: missing_values[g] for g in sorted(missing) if g in missing_values}
    values = pd.to_numeric(pd.Series(imputed, dtype=object), errors="coerce").astype(float)
    bad = values[~np.isfinite(values.to_numpy())]
    if len(bad):
        # each imputed value times its gene's vector is added to every cell: one NaN or inf
        # would make every embedding NaN
        raise ValueError(
            f"missing_values (the values imputed for genes the data lacks; with a model, its "
            f"reference's mean expression) are not finite numbers for {len(bad)} genes: "
            f"{ {g: imputed[g] for g in bad.index[:5]} }. Give finite values, or leave those "
            "genes out."
        )
    return values.to_dict()


def _imputed_sum(table: GeneEmbeddings, imputed: dict) -> np.ndarray:
    """``Σ value × vector`` over the imputed genes: their share of every cell's sum."""
    row_of = {symbol: row for row, symbol in enumerate(table.symbols)}
    rows = [row_of[g] for g in imputed if g in row_of]
    values = np.array([imputed[g] for g in imputed if g in row_of], dtype=np.float32)
    return values @ table.embeddings[rows]


class ExpressionSource(NamedTuple):
    """What :func:`_choose_expression` picked."""

    matrix: Any
    #: Names the matrix's columns.
    var: pd.DataFrame
    #: Label for messages and ``uns``: ``"adata.X"``, ``"adata.raw.X"``, ``"adata.layers['counts']"``.
    source: str
    #: Why, when it is not what was asked for (``.raw`` because ``.X`` is scaled), else None.
    reason: str | None


def _choose_expression(
    adata: AnnData, use_raw: bool | None, layer: str | None, *, name: str = "adata"
) -> ExpressionSource:
    """The matrix to embed: the one place that gives ``use_raw`` and ``layer`` a meaning.

    ``layer`` → that layer; ``use_raw=True`` → ``.raw``; ``use_raw=False`` → ``.X``;
    ``use_raw=None`` → ``.X``, or ``.raw`` when ``.X`` has negative values (scaled) and
    ``.raw`` exists. Raises ``ValueError``/``KeyError`` when the asked-for matrix is
    missing, ``ScaledDataError`` when ``use_raw=None`` finds ``.X`` scaled with
    no ``.raw`` to fall back to, and ``TypeError`` when the matrix is not numbers (messages
    name ``adata`` as ``name``). For backed ``.X`` only its first rows are checked; the
    blocked pass still refuses negative values anywhere.
    """
    if use_raw not in (None, True, False):
        raise ValueError(f"use_raw must be True, False or None, got {use_raw!r}.")
    if layer is not None and use_raw:
        raise ValueError("Pass either layer= or use_raw=True, not both.")
    if use_raw:
        if adata.raw is None:
            raise ValueError(f"use_raw=True but {name}.raw is None. Pass layer= or use {name}.X.")
        return _numeric(name, ExpressionSource(adata.raw.X, adata.raw.var, "adata.raw.X", None))
    if layer is not None:
        if layer not in adata.layers:
            raise KeyError(f"No layer {layer!r} in {name}.layers; it has {list(adata.layers)}.")
        source = f"adata.layers[{layer!r}]"
        return _numeric(name, ExpressionSource(adata.layers[layer], adata.var, source, None))
    if adata.X is None:
        raise ValueError(f"{name}.X is None: pass layer= or use_raw=True.")
    chosen = _numeric(name, ExpressionSource(adata.X, adata.var, "adata.X", None))
    if use_raw is None and _has_negative(adata.X, adata.isbacked):
        if adata.raw is None:
            raise ScaledDataError(_scaled_message(adata, f"{name}.X", "found before embedding"))
        reason = f"{name}.X has negative values (scaled): embedding {name}.raw.X"
        logg.info(reason)
        return _numeric(name, ExpressionSource(adata.raw.X, adata.raw.var, "adata.raw.X", reason))
    return chosen


def _numeric(name: str, chosen: ExpressionSource) -> ExpressionSource:
    """``chosen``, or a TypeError when its matrix holds anything but numbers."""
    source = chosen.source.replace("adata", name, 1)
    if chosen.source == "adata.raw.X":
        fix = f"raw = {name}.raw.to_adata(); raw.X = raw.X.astype(np.float32); {name}.raw = raw"
    else:
        fix = f"{source} = {source}.astype(np.float32)"
    check_numeric(chosen.matrix, source, fix)
    return chosen


def _has_negative(matrix, backed: bool) -> bool:
    """Whether ``matrix`` has a negative value (backed: in its first rows only)."""
    if _dask.is_dask(matrix):  # the first rows: one chunk is read
        matrix = _dask.row_readable(matrix)[: min(_SCALED_PROBE_ROWS, matrix.shape[0])].compute()
    elif backed:
        matrix = matrix[: min(_SCALED_PROBE_ROWS, matrix.shape[0])]
    values = matrix.data if sparse.issparse(matrix) else np.asarray(matrix)
    return bool(values.size and values.min() < 0)


def _check_options(*, chunk_size, n_dims, normalize, use_raw, genes) -> None:
    """Refuse nonsense options before any work, with what to pass instead."""
    positive_int("chunk_size", chunk_size, allow_none=True)
    positive_int("n_dims", n_dims, allow_none=True)
    if not isinstance(normalize, bool | np.bool_):
        raise ValueError(f"normalize must be True or False, got {normalize!r}.")
    if use_raw not in (None, True, False):
        raise ValueError(f"use_raw must be True, False or None, got {use_raw!r}.")
    if isinstance(genes, str):
        raise ValueError(
            f"genes must be a list of gene symbols, got the string {genes!r}: pass [{genes!r}]."
        )


def _duplicate_columns(
    names, var_index: np.ndarray, source: str, gene_symbols: str | None, original_names=None
):
    """Further columns named like a matched gene, which GenePT-w adds to that gene.

    Returns ``(columns, slots)`` (slot: the gene's position in ``var_index``), or None
    when no matched name repeats. Two columns with one name are one gene to the embedding (its one text embedding), e.g.
    two Ensembl ids sharing a symbol; matching keeps one column per gene, so the other's
    counts would silently drop out.
    """
    names = pd.Index(names).astype(str)
    if names.is_unique:
        return None
    slot_of = pd.Series(np.arange(len(var_index)), index=names[var_index])
    repeated = np.flatnonzero(names.duplicated(keep=False))
    repeated = repeated[names[repeated].isin(slot_of.index)]
    repeated = repeated[~np.isin(repeated, var_index)]
    if not len(repeated):
        return None
    dup_names = pd.unique(names[repeated])
    where = f"adata.var[{gene_symbols!r}]" if gene_symbols else "var_names"
    examples = ", ".join(map(repr, dup_names[:5]))
    original = pd.Index(names if original_names is None else original_names).astype(str)
    if original.is_unique:  # several genes of the data share one ortholog: summed, as meant
        logg.info(
            f"    {len(dup_names)} genes of the table stand for several of the data's genes "
            f"through orthologs= (e.g. {examples}): their values are summed"
        )
        return repeated.astype(np.int64), slot_of[names[repeated]].to_numpy(np.int64)
    warn_caller(
        f"{len(dup_names)} matched gene names occur more than once in the {where} of {source} "
        f"(e.g. {examples}; {len(repeated)} extra columns): columns with the same name are "
        "one gene, so their values are summed into it. If they are different features, make "
        "the names unique first (adata.var_names_make_unique() keeps only the first of each "
        "matched) or aggregate them as you see fit."
    )
    return repeated.astype(np.int64), slot_of[names[repeated]].to_numpy(np.int64)


def _var_column(var, key: str, source: str):
    if key not in var.columns:
        raise KeyError(
            f"gene_symbols={key!r} is not a column of the var of {source}; "
            f"columns: {list(var.columns)}."
        )
    return var[key]


def _check_match(
    match, names, table: GeneEmbeddings, source: str, *, orthologs_given: bool = False
) -> None:
    examples = ", ".join(map(str, list(names[:5])))
    if match.n_matched == 0:
        raise ValueError(
            f"None of the {match.n_vars} genes of {source} is in the gene table "
            f"({table!r}). Their names look like {match.id_type}s (e.g. {examples}). If "
            "another .var column holds symbols or Ensembl ids, pass gene_symbols=<column>; "
            "the table covers human genes only."
        )
    clashes = table.case_clashes(match.ambiguous)
    if clashes:  # the table, not the data, makes these ambiguous: say so, not silently
        pairs = "; ".join(f"{n} → {', '.join(clashes[n])}" for n in list(clashes)[:5])
        warn_caller(
            f"{len(clashes)} genes of {source} were left out: the gene table has them under "
            f"symbols that differ only in case ({pairs}), and matching ignores case. Keep one "
            "symbol of each in the table, or rename the other, to embed them."
        )
    if match.n_case_differs > match.n_matched / 2 and not orthologs_given:
        warn_caller(
            f"{match.n_case_differs} of the {match.n_matched} matched genes of {source} match "
            f"only when case is ignored (names like {examples}): these look like mouse genes, "
            "matched to the human genes of the same name. To map to human orthologs whose "
            "names differ too, pass orthologs= (a table of orthologs, e.g. from Ensembl BioMart)."
        )
    if match.n_matched < _FEW_GENES:
        warn_caller(
            f"Only {match.n_matched} of {match.n_vars} genes of {source} matched the gene "
            f"table (names like {examples}): the embedding will carry little information. "
            "Check the species and pass gene_symbols=<column> if another column holds ids."
        )


def _scaled_message(adata: AnnData, source: str, err: Exception | str) -> str:
    options = []
    if not source.endswith(".raw.X") and adata.raw is not None:
        options.append("use_raw=True (adata.raw holds the unscaled data)")
    if adata.layers:
        options.append(f"layer=<one of {list(adata.layers)}> holding counts")
    options = " or ".join(options) or "the unscaled (count or log-normalised) matrix"
    return (
        f"{source} has negative values ({err}): it looks scaled (e.g. by sc.pp.scale), "
        "and GenePT-w weights genes by expression, which must be non-negative. "
        f"Pass {options}."
    )
