"""One colour per CL term, the same in every plot and in ``sc.pl.umap``."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from sc_genept._checks import check_adata
from sc_genept.pl._utils import lineage_order, load_ontology, term_ids

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from anndata import AnnData

    from sc_genept.ontology import CellOntology

#: Cells reported at a coarser term than their most probable one.
COARSER_COLOR = "#c8c8c8"
#: Cells below ``min_confidence``.
BELOW_COLOR = "#6e6e6e"
#: Ontology terms drawn only as ancestors of called terms.
ANCESTOR_COLOR = "#f2f2f2"


def _palette(n: int) -> list[str]:
    from matplotlib.colors import to_rgb
    from scanpy.plotting import palettes

    colors = palettes.default_20 if n <= 20 else palettes.default_102
    # greys are kept for cells that were not called at a term
    return [c for c in colors if np.ptp(to_rgb(c)) > 0.08]


def term_colors(
    terms: Iterable[str], *, ontology: CellOntology | str | None = None
) -> dict[str, str]:
    """A colour for each CL term, decided by the set of terms alone.

    The distinct terms are put in ontology order (by lineage, so that sibling terms sit
    side by side) and take scanpy's default palette in that order (``default_20`` up to 20
    terms, else ``default_102``; its greys left out, as greys mark uncalled cells). The same
    set of terms gets the same colours whatever their order or repeats, in every plot of
    ``sc_genept.pl``; :func:`set_term_colors` hands them to ``sc.pl.umap``.

    Parameters
    ----------
    terms
        CL ids (or names or exact synonyms, which are mapped to ids).
    ontology
        The Cell Ontology: ``None`` for the bundled release, a :class:`~sc_genept.ontology.CellOntology`
        or a path or URL of an OBO file.

    Returns
    -------
    ``{cl_id: "#rrggbb"}`` for each distinct term, in ontology order.

    Examples
    --------
    >>> sc_genept.pl.term_colors(["CL:0000236", "CL:0000084"])
    {'CL:0000236': '#1f77b4', 'CL:0000084': '#ff7f0e'}
    """
    if isinstance(terms, str):
        raise TypeError(
            f"terms must be a list of CL ids, not the string {terms!r}: pass [{terms!r}]."
        )
    ontology = load_ontology(ontology)
    values = pd.Series(list(terms), dtype=object)
    if values.isna().any():
        raise ValueError(f"terms has {int(values.isna().sum())} missing values; pass CL ids only.")
    ordered = lineage_order(term_ids(values, ontology, "terms"), ontology)
    palette = _palette(len(ordered))
    return {t: palette[i % len(palette)] for i, t in enumerate(ordered)}


def set_term_colors(
    adata: AnnData,
    keys: str | Sequence[str] = "genept_cell_type",
    *,
    ontology: CellOntology | str | None = None,
) -> dict[str, str]:
    """Write ``uns[f"{key}_colors"]``: ``sc.pl.umap`` then uses :func:`term_colors`' colours.

    ``sc.pl.umap(adata, color=key)`` then colours each term as the plots of
    ``sc_genept.pl`` do.

    With several keys (e.g. the true labels and ``genept_cell_type``), the terms of all of
    them are coloured together, so a term has one colour in every column: truth and
    prediction side by side then match.

    Parameters
    ----------
    adata
        Annotated data; only ``uns[f"{key}_colors"]`` is written, for each key.
    keys
        ``obs`` columns holding CL ids, names or exact synonyms, categorical or not (e.g.
        ``"genept_cell_type"``, ``"genept_cell_type_ontology_term_id"``,
        ``"cell_type_ontology_term_id"``).
    ontology
        As in :func:`term_colors`.

    Returns
    -------
    The ``{cl_id: colour}`` used (that of :func:`term_colors` for all the keys' terms).
    Sets ``adata.uns[f"{key}_colors"]`` for each key: one colour per category of
    ``obs[key]`` (categories in the order pandas gives a column without them: sorted).
    """
    check_adata(adata, empty_ok=False)
    keys = [keys] if isinstance(keys, str) else list(keys)
    if not keys:
        raise ValueError("keys must name at least one obs column.")
    missing = [k for k in keys if k not in adata.obs]
    if missing:
        raise KeyError(
            f"adata.obs has no column {missing[0]!r}; columns: {list(adata.obs.columns)}. For "
            "predictions, run sc.tl.genept_annotate first."
        )
    ontology = load_ontology(ontology)
    categories = {k: _categories(adata.obs[k]) for k in keys}
    ids = {k: term_ids(c, ontology, f"obs[{k!r}]") for k, c in categories.items()}
    colors = term_colors(np.concatenate(list(ids.values())), ontology=ontology)
    for key in keys:
        adata.uns[f"{key}_colors"] = [colors[t] for t in ids[key]]
    return colors


def annotation_colors(adata: AnnData, key: str, ontology: CellOntology) -> dict[str, str]:
    """``{cl_id: colour}`` for the terms called under ``key``.

    Those scanpy would use (``uns[f"{key}_colors"]``, e.g. from :func:`set_term_colors`)
    where they are set for every category, else :func:`term_colors` of the called terms.
    """
    names = adata.obs[key]
    ids = adata.obs[f"{key}_ontology_term_id"].astype(object)
    pairs = pd.DataFrame({"name": names.astype(object), "id": ids}).drop_duplicates()
    name_to_id = dict(zip(pairs["name"], pairs["id"], strict=True))
    stored = adata.uns.get(f"{key}_colors")
    categories = _categories(names)
    if stored is not None and len(stored) == len(categories):
        from matplotlib.colors import is_color_like, to_hex

        if all(is_color_like(c) for c in stored):
            by_name = dict(zip(categories, stored, strict=True))
            return {t: to_hex(by_name[n]) for n, t in name_to_id.items() if n in by_name}
    return term_colors(ids.unique(), ontology=ontology)


def _categories(column: pd.Series) -> list:
    if isinstance(column.dtype, pd.CategoricalDtype):
        return list(column.cat.categories)
    return list(pd.Categorical(column.dropna()).categories)
