"""``pl.confusion``: truth against prediction, collapsed to an ontology level."""

from __future__ import annotations

import numbers
import warnings
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from sc_genept.pl._utils import annotation_column, finish, lineage_order, load_ontology, term_ids

if TYPE_CHECKING:
    from collections.abc import Iterable

    from anndata import AnnData
    from matplotlib.axes import Axes

    from sc_genept.ontology import CellOntology

Level = int | list[str] | tuple[str, ...] | None


def collapse_terms(
    terms: Iterable[str], level: Level, *, ontology: CellOntology | str | None = None
) -> np.ndarray:
    """Map each CL term to its ancestor at an ontology level.

    Parameters
    ----------
    terms
        CL ids.
    level
        ``None``: the terms as they are. An int ``d`` ≥ 0: each term becomes its ancestor
        at depth ``d`` (edges on the shortest path from ``CL:0000000``, "cell", which has
        depth 0); where several ancestors have that depth, the one fewest edges up wins,
        then the smallest id. Terms above depth ``d`` stay as they are. A list of CL ids
        (e.g. ``["CL:0000084", "CL:0000236", "CL:0000576"]``, T cell, B cell, monocyte):
        each term becomes the deepest listed term that is it or above it (the first listed
        among equally deep ones); a term under none of them stays as it is, so a coarse
        call such as "leukocyte" remains visible.
    ontology
        The Cell Ontology (``None``: the bundled release).

    Returns
    -------
    The collapsed CL ids, aligned with ``terms`` (object array).

    Examples
    --------
    >>> collapse_terms(["CL:0000895", "CL:0000236"], ["CL:0000084", "CL:0000236"])
    array(['CL:0000084', 'CL:0000236'], dtype=object)
    """
    if isinstance(terms, str):
        raise TypeError(f"terms must be a list of CL ids, not the string {terms!r}.")
    ontology = load_ontology(ontology)
    terms = np.asarray(list(terms), dtype=object)
    targets = _check_level(level, ontology)
    for term in pd.unique(terms):
        ontology.name(term)  # an unknown id: a KeyError that says why
    if level is None:
        return terms.copy()
    lookup = {t: _collapse(t, targets, ontology) for t in pd.unique(terms)}
    return np.array([lookup[t] for t in terms], dtype=object)


def _check_level(level: Level, ontology: CellOntology):
    """The depth or the listed terms of ``level``; an error says what ``level`` takes."""
    takes = (
        "level must be None, a depth ≥ 0 (e.g. 3) or a list of CL ids (e.g. "
        "['CL:0000084', 'CL:0000236'])"
    )
    if level is None:
        return None
    if isinstance(level, bool) or isinstance(level, float | str):
        extra = " (wrap a single id in a list)" if isinstance(level, str) else ""
        raise TypeError(f"{takes}, got {level!r}{extra}.")
    if isinstance(level, numbers.Integral):
        if level < 0:
            raise ValueError(f"{takes}, got {level}.")
        return int(level)
    try:
        listed = list(level)
    except TypeError:
        raise TypeError(f"{takes}, got {type(level).__name__}.") from None
    if not listed:
        raise ValueError(f"{takes}, got an empty list.")
    unknown = [t for t in listed if not isinstance(t, str) or t not in ontology]
    if unknown:
        why = "; ".join(ontology.explain(t) for t in unknown[:3])
        raise ValueError(f"{takes}; not a live CL id: {why}. Map names with CellOntology.resolve.")
    return listed


def _collapse(term: str, targets, ontology: CellOntology) -> str:
    if isinstance(targets, int):
        if ontology.depth(term) <= targets:
            return term
        at_level = [a for a in ontology.ancestors(term) if ontology.depth(a) == targets]
        # the distance to an ancestor is the number of edges up to it
        return min(at_level, key=lambda a: (ontology.distance(term, a), a))
    above = ontology.ancestors(term, include_self=True)
    hits = [(i, t) for i, t in enumerate(targets) if t in above]
    if not hits:
        return term
    return min(hits, key=lambda h: (-ontology.depth(h[1]), h[0]))[1]


def confusion_table(
    adata: AnnData,
    *,
    truth_key: str,
    key: str = "genept_cell_type",
    level: Level = None,
    normalize: bool = True,
    ontology: CellOntology | str | None = None,
) -> pd.DataFrame:
    """The confusion matrix :func:`confusion` draws, as a table.

    Parameters
    ----------
    adata, truth_key, key, level, ontology
        As in :func:`confusion`.
    normalize
        Divide each row by its number of cells (rows sum to 1); else counts.

    Returns
    -------
    Rows: the collapsed true terms; columns: the same terms, then collapsed predicted
    terms no true label has (e.g. coarse calls). Both are CL ids in ontology order;
    ``table.attrs["names"]`` maps them to names and ``table.attrs["n_cells"]`` holds the
    cells per row. Cells whose true label is missing are left out, with a warning.
    """
    predicted = annotation_column(adata, key, "_ontology_term_id").astype(object).to_numpy()
    if not isinstance(truth_key, str) or truth_key not in adata.obs:
        raise KeyError(
            f"truth_key={truth_key!r} is not a column of adata.obs; columns: "
            f"{list(adata.obs.columns)}. Pass the column with the true cell types."
        )
    ontology = load_ontology(ontology)
    _check_level(level, ontology)
    truth = adata.obs[truth_key].astype(object)
    missing = truth.isna().to_numpy()
    if missing.all():
        raise ValueError(f"obs[{truth_key!r}] has no labels: every value is missing.")
    if missing.any():
        warnings.warn(
            f"{missing.sum()} cells have no label in obs[{truth_key!r}]; they are left out.",
            UserWarning,
            stacklevel=3,
        )
    truth = term_ids(truth[~missing], ontology, f"obs[{truth_key!r}]")
    predicted = predicted[~missing]
    truth = collapse_terms(truth, level, ontology=ontology)
    predicted = collapse_terms(predicted, level, ontology=ontology)
    rows = lineage_order(truth, ontology)
    columns = rows + [t for t in lineage_order(predicted, ontology) if t not in set(rows)]
    counts = pd.crosstab(
        pd.Categorical(truth, categories=rows),
        pd.Categorical(predicted, categories=columns),
        dropna=False,
    )
    counts.index, counts.columns = pd.Index(rows, name=truth_key), pd.Index(columns, name=key)
    n_cells = counts.sum(axis=1)
    table = counts.div(n_cells, axis=0) if normalize else counts
    table.attrs["names"] = {t: ontology.name(t) for t in columns}
    table.attrs["n_cells"] = n_cells.to_dict()
    return table


def confusion(
    adata: AnnData,
    *,
    truth_key: str,
    key: str = "genept_cell_type",
    level: Level = None,
    ontology: CellOntology | str | None = None,
    annotate: bool = True,
    cmap: str = "Blues",
    ax: Axes | None = None,
    show: bool | None = None,
    save: bool | str | None = None,
) -> Axes | None:
    """Truth against prediction as a row-normalised confusion matrix, at a chosen level.

    Both the true labels and the predictions are first collapsed to ``level`` (see
    :func:`collapse_terms`), so "how often is a T cell called a T cell of any kind" reads
    off the diagonal of ``level=["CL:0000084", …]``. Each row sums to 1; cells reported
    at a coarser term appear in that term's column.

    Parameters
    ----------
    adata
        Annotated by :func:`~sc_genept.tl.genept_annotate`.
    truth_key
        ``obs`` column with the true cell types: CL ids, names or exact synonyms.
    key
        The ``key_added`` of :func:`~sc_genept.tl.genept_annotate`.
    level
        ``None`` (no collapse), a depth in CL (``3``), or a list of CL ids to collapse to;
        see :func:`collapse_terms`.
    ontology
        The Cell Ontology (``None``: the bundled release).
    annotate
        Write each fraction in its square (empty squares are left blank).
    cmap
        Colour map of the fractions.
    ax
        Axes to draw in (default: a new figure).
    show
        Show the figure (default: ``sc.settings.autoshow``).
    save
        Save it to ``sc.settings.figdir``: ``True``, or a file-name suffix such as
        ``"_pbmc.png"`` (the file is ``genept_confusion_pbmc.png``).

    Returns
    -------
    The Axes when ``show`` is ``False``, else ``None``. The image drawn holds
    :func:`confusion_table`'s values; row labels give each row's number of cells.

    Examples
    --------
    >>> sc_genept.pl.confusion(query, truth_key="cell_type", level=["CL:0000084", "CL:0000236"])
    """
    import matplotlib.pyplot as plt

    table = confusion_table(adata, truth_key=truth_key, key=key, level=level, ontology=ontology)
    names, n_cells = table.attrs["names"], table.attrs["n_cells"]
    n_rows, n_cols = table.shape
    if ax is None:
        fig, ax = plt.subplots(
            figsize=(2.5 + 0.55 * n_cols, 1.5 + 0.45 * n_rows), layout="constrained"
        )
    fig = ax.figure
    values = table.to_numpy(dtype=float)
    image = ax.imshow(values, cmap=cmap, vmin=0, vmax=1, aspect="auto")
    fig.colorbar(image, ax=ax, label="fraction of the row's cells", shrink=0.8)
    ax.set_xticks(range(n_cols), [names[t] for t in table.columns], rotation=60, ha="right")
    ax.set_yticks(range(n_rows), [f"{names[t]} ({n_cells[t]})" for t in table.index])
    ax.set_xlabel(f"predicted ({key})")
    ax.set_ylabel(f"true ({truth_key})")
    if annotate:
        for (i, j), value in np.ndenumerate(values):
            if value > 0:
                ax.text(
                    j,
                    i,
                    f"{value:.2f}",
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if value > 0.6 else "black",
                )
    shown = (
        "as called"
        if level is None
        else f"level={level}"
        if isinstance(level, numbers.Integral)
        else f"collapsed to {len(level)} terms"
    )
    ax.set_title(f"{key} vs {truth_key} ({shown})")
    return finish(fig, "genept_confusion", show, save, ax)
