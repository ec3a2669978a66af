"""``pl.error_coverage``: the price of each error rate, in coverage."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sc_genept.pl._utils import finish

if TYPE_CHECKING:
    from anndata import AnnData
    from matplotlib.axes import Axes

    from sc_genept.model import GenePTClassifier


def error_coverage(
    model: GenePTClassifier,
    adata: AnnData | None = None,
    *,
    labels_key: str | None = None,
    targets: tuple[float, ...] = (0.05, 0.1, 0.2),
    title: str | None = None,
    ax: Axes | None = None,
    show: bool | None = None,
    save: bool | str | None = None,
) -> Axes | None:
    """Error of the calls against coverage, as the confidence level a term needs rises.

    Each point is one level of subtree mass: the share of wrong calls (neither the true
    term nor above or below it) and the share of cells still called at one of the
    reference's own types. Without ``adata``: on the reference cells held out from
    training, the cells ``max_error`` is calibrated on; the levels that
    ``genept_annotate(..., max_error=t)`` picks for each of ``targets`` are marked. With
    ``adata`` and ``labels_key``: on those cells, e.g. a query whose truth is known.

    Parameters
    ----------
    model
        A trained :class:`~sc_genept.model.GenePTClassifier`.
    adata
        Cells with the model's inputs (e.g. embedded and annotated with it).
    labels_key
        With ``adata``: the ``obs`` column of true CL ids or names.
    targets
        ``max_error`` values to mark (held-out cells only).
    title
        Axes title.
    ax
        Axes to draw in (default: a new figure).
    show, save
        As in scanpy: show the figure, or save it to ``sc.settings.figdir``.

    Returns
    -------
    The Axes when ``show`` is ``False``, else ``None``.

    Examples
    --------
    >>> sc_genept.pl.error_coverage(model)
    """
    import matplotlib.pyplot as plt

    from sc_genept.model._calls import level_for_error

    curve = model.error_coverage(adata, labels_key)
    if ax is None:
        _, ax = plt.subplots(figsize=(4.5, 3.6))
    ax.plot(curve["coverage"], curve["error"], color="0.3", lw=1.5)
    if adata is None:
        stored = model.calibration_["error_coverage"]
        for target in targets:
            level = level_for_error(stored, target)
            if level is None:
                continue
            at = curve.iloc[(curve["level"] - level).abs().argmin()]
            ax.axhline(target, color="0.8", lw=0.8, ls="--", zorder=0)
            ax.plot(at["coverage"], at["error"], "o", label=f"max_error={target}")
        if targets:
            ax.legend(frameon=False, fontsize="small")
    ax.set_xlabel("coverage: cells called at a reference type")
    ax.set_ylabel("error: share of wrong calls")
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, max(0.05, float(curve["error"].max()) * 1.1))
    ax.set_title(title or ("held-out reference cells" if adata is None else "cells given"))
    return finish(ax.figure, "genept_error_coverage", show, save, ax)
