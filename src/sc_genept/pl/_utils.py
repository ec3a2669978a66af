"""What the plots share: reading an annotation, the ontology, term order, save/show."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from sc_genept._checks import check_adata

if TYPE_CHECKING:
    from collections.abc import Iterable

    from anndata import AnnData
    from matplotlib.figure import Figure

    from sc_genept.ontology import CellOntology

_RUN_ANNOTATE = (
    "Run sc.tl.genept_annotate(adata, ...) first, or pass the key_added it was run with as key=."
)


def load_ontology(ontology: CellOntology | str | None) -> CellOntology:
    """The bundled CL (``None``), a :class:`CellOntology`, or one loaded from a path/URL."""
    from sc_genept.ontology import CellOntology  # networkx: only when plotting

    return CellOntology.load("bundled" if ontology is None else ontology)


def annotation_column(adata: AnnData, key: str, suffix: str = "") -> pd.Series:
    """``adata.obs[key + suffix]`` written by ``genept_annotate``, or a clear error."""
    check_adata(adata, empty_ok=False)
    if not isinstance(key, str) or not key:
        raise ValueError(f"key must be a non-empty string, got {key!r}.")
    column = key + suffix
    if column not in adata.obs:
        found = sorted(
            c[: -len("_ontology_term_id")]
            for c in adata.obs.columns
            if c.endswith("_ontology_term_id")
            and f"{c[: -len('_ontology_term_id')]}_confidence" in adata.obs
        )
        hint = f" Annotations found: keys {found}." if found else ""
        raise KeyError(f"adata.obs has no column {column!r}. {_RUN_ANNOTATE}{hint}")
    return adata.obs[column]


def term_ids(values: Iterable, ontology: CellOntology, what: str) -> np.ndarray:
    """CL ids for ids, names or exact synonyms; an error lists those that do not map."""
    ids, unmapped = ontology.map_labels(pd.Series(np.asarray(values, dtype=object)))
    if unmapped:
        why = "; ".join(ontology.explain(u) for u in unmapped[:5])
        raise ValueError(
            f"{len(unmapped)} labels of {what} are not CL terms of CL {ontology.version}: {why}."
        )
    return ids.to_numpy(dtype=object)


def lineage_order(terms: Iterable[str], ontology: CellOntology) -> list[str]:
    """Distinct ``terms`` in ontology order, related terms side by side.

    A term's lineage (names from the root down, through each term's shallowest parent)
    sorts it. Ids the ontology lacks come last, by id.
    """
    known, unknown = [], []
    for term in dict.fromkeys(terms):
        (known if term in ontology else unknown).append(term)
    return sorted(known, key=lambda t: _lineage(t, ontology)) + sorted(unknown)


def _lineage(term: str, ontology: CellOntology) -> tuple[str, ...]:
    path = [term]
    while parents := ontology.parents(path[-1]):
        path.append(min(parents, key=lambda p: (ontology.depth(p), p)))
    return tuple(ontology.name(t).casefold() for t in reversed(path))


def finish(fig: Figure, writekey: str, show: bool | None, save: bool | str | None, returned):
    """End as scanpy's plots do: save to ``sc.settings.figdir`` and/or show; return unless shown.

    ``save=True`` writes ``{figdir}/{writekey}{plot_suffix}.{file_format_figs}``; a string
    is a suffix of the file name and may carry its own extension (``"_pbmc.pdf"``). Built on
    scanpy's public settings only: its own helper for this is private.
    """
    import matplotlib.pyplot as plt
    from scanpy import logging as logg
    from scanpy import settings

    if save is not None and not isinstance(save, bool | str):
        raise TypeError(
            f"save must be True, False, None or a file-name suffix such as '_pbmc.png', got "
            f"{save!r}."
        )
    if isinstance(save, str):
        suffix, ext = _split_extension(save)
        writekey, save = writekey + suffix, True
    else:
        ext = None
    save = settings.autosave if save is None else save
    show = settings.autoshow if show is None else show
    if save:
        settings.figdir.mkdir(parents=True, exist_ok=True)
        filename = (
            settings.figdir / f"{writekey}{settings.plot_suffix}.{ext or settings.file_format_figs}"
        )
        logg.warning(f"saving figure to file {filename}")
        fig.savefig(filename, bbox_inches="tight")
    if show:
        plt.show()
    if save:
        plt.close(fig)
    return None if show else returned


def _split_extension(suffix: str) -> tuple[str, str | None]:
    """``"_pbmc.pdf"`` -> ``("_pbmc", "pdf")``; a suffix without a figure extension is kept."""
    for ext in ("svg", "pdf", "png"):
        if suffix.endswith(f".{ext}"):
            return suffix.removesuffix(f".{ext}"), ext
    return suffix, None
