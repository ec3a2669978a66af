"""``pl.confidence``: how sure the annotation is, and where it abstained, on an embedding."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from sc_genept._checks import check_fraction
from sc_genept.pl._colors import BELOW_COLOR, COARSER_COLOR, annotation_colors
from sc_genept.pl._utils import annotation_column, finish, lineage_order, load_ontology

if TYPE_CHECKING:
    from collections.abc import Sequence

    from anndata import AnnData
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from sc_genept.ontology import CellOntology


def confidence(
    adata: AnnData,
    *,
    basis: str = "umap",
    key: str = "genept_cell_type",
    min_confidence: float | None = None,
    ontology: CellOntology | str | None = None,
    size: float | None = None,
    cmap: str = "viridis",
    ax: Sequence[Axes] | None = None,
    show: bool | None = None,
    save: bool | str | None = None,
) -> Figure | None:
    """The annotation's confidence and its abstentions on an embedding, in two panels.

    Left, each cell's confidence (``obs[key + "_confidence"]``, the probability mass under
    its reported term) as a colour scale. Right, the reported term, coloured as in
    :func:`~sc_genept.pl.term_colors`; cells reported at a coarser term than their most
    probable one (the model abstained) are light grey, and with ``min_confidence`` the
    cells below it are dark grey. The legend gives each group's number of cells.

    Parameters
    ----------
    adata
        Annotated by :func:`~sc_genept.tl.genept_annotate`, with an embedding in ``obsm``.
    basis
        The embedding: ``obsm["X_" + basis]`` (e.g. ``"umap"``, ``"pca"``), or an
        ``obsm`` key itself.
    key
        The ``key_added`` of :func:`~sc_genept.tl.genept_annotate`.
    min_confidence
        Also grey out cells whose confidence is below this, in (0, 1]. ``None``: only the
        abstentions ``genept_annotate`` made.
    ontology
        The Cell Ontology (``None``: the bundled release); orders the legend and the colours.
    size
        Point size (default: ``120000 / n_cells`` as in scanpy, at most 30).
    cmap
        Colour map of the confidence.
    ax
        Two Axes to draw in (default: a new figure).
    show
        Show the figure (default: ``sc.settings.autoshow``).
    save
        Save it to ``sc.settings.figdir``: ``True``, or a file-name suffix such as
        ``"_pbmc.png"`` (the file is ``genept_confidence_pbmc.png``).

    Returns
    -------
    The figure when ``show`` is ``False``, else ``None``. Its second Axes' legend lists
    ``"<CL name> (n)"`` per term, then the grey groups.

    Examples
    --------
    >>> sc_genept.pl.confidence(query, min_confidence=0.7)
    """
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    confidences = annotation_column(adata, key, "_confidence").to_numpy(dtype=float)
    ids = annotation_column(adata, key, "_ontology_term_id").astype(object).to_numpy()
    finest = annotation_column(adata, key, "_finest_ontology_term_id").astype(object).to_numpy()
    names = annotation_column(adata, key).astype(object).to_numpy()
    if min_confidence is not None:
        check_fraction("min_confidence", min_confidence, "(0, 1]")
    coords = _basis(adata, basis)
    ontology = load_ontology(ontology)
    colors = annotation_colors(adata, key, ontology)

    coarser = ids != finest
    below = np.zeros(len(ids), bool) if min_confidence is None else confidences < min_confidence
    coarser &= ~below
    called = ~coarser & ~below

    if ax is None:
        fig, axs = plt.subplots(1, 2, figsize=(11, 4.5), layout="constrained")
    else:
        axs = list(ax) if not hasattr(ax, "figure") else [ax]
        if len(axs) != 2:
            raise ValueError(f"ax must be two Axes (one per panel), got {len(axs)}.")
        fig = axs[0].figure
    size = min(120000 / len(ids), 30.0) if size is None else size
    order = np.argsort(confidences, kind="stable")[::-1]  # least confident on top
    points = axs[0].scatter(
        *coords[order].T,
        c=confidences[order],
        cmap=cmap,
        vmin=0,
        vmax=1,
        s=size,
        linewidths=0,
        rasterized=True,
    )
    fig.colorbar(points, ax=axs[0], label=f"{key}_confidence", shrink=0.8)
    axs[0].set_title("confidence")

    handles = []
    for term in lineage_order(ids[called], ontology):
        where = called & (ids == term)
        axs[1].scatter(*coords[where].T, c=colors[term], s=size, linewidths=0, rasterized=True)
        handles.append(_handle(Line2D, colors[term], f"{names[where][0]} ({where.sum()})"))
    for where, color, label in (
        (coarser, COARSER_COLOR, "coarser than most probable"),
        (below, BELOW_COLOR, f"below min_confidence={min_confidence}"),
    ):
        if where.any():
            axs[1].scatter(*coords[where].T, c=color, s=size, linewidths=0, rasterized=True)
            handles.append(_handle(Line2D, color, f"{label} ({where.sum()})"))
    axs[1].legend(handles=handles, loc="center left", bbox_to_anchor=(1, 0.5), frameon=False)
    axs[1].set_title(key)
    for a in axs:
        a.set_xticks([])
        a.set_yticks([])
        a.set_xlabel(f"{basis}1")
        a.set_ylabel(f"{basis}2")
    return finish(fig, "genept_confidence", show, save, fig)


def _handle(Line2D, color: str, label: str):
    return Line2D([], [], marker="o", linestyle="", color=color, markersize=7, label=label)


def _basis(adata: AnnData, basis: str) -> np.ndarray:
    if not isinstance(basis, str):
        raise TypeError(f"basis must be a string such as 'umap', got {basis!r}.")
    for name in (f"X_{basis}", basis):
        if name in adata.obsm:
            coords = np.asarray(pd.DataFrame(adata.obsm[name]).to_numpy(), dtype=float)
            if coords.ndim != 2 or coords.shape[1] < 2:
                raise ValueError(f"obsm[{name!r}] needs two columns to plot, has {coords.shape}.")
            return coords[:, :2]
    raise KeyError(
        f"No embedding {basis!r}: adata.obsm has {list(adata.obsm)}. Pass one of them as "
        "basis= (without 'X_'), or compute it first, e.g. sc.pp.neighbors and sc.tl.umap."
    )
