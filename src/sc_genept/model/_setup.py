"""GenePTClassifier.setup_anndata's registration: labels onto CL terms, fields with scvi-tools.

Each label must name exactly one term (CL id, name, exact synonym or everyday form); a cell
without a label, a label that maps to no single term, or a reference of one cell type is
refused with what to do about it.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import pandas as pd
from scvi import REGISTRY_KEYS
from scvi.data import AnnDataManager
from scvi.data.fields import CategoricalObsField, ObsmField

from sc_genept.model._inputs import _input_keys
from sc_genept.model._training import DEBUG, quiet_loggers, scanpy_verbosity
from sc_genept.ontology import CellOntology

if TYPE_CHECKING:
    from anndata import AnnData

    from sc_genept.model._model import GenePTClassifier


_LABEL_COLUMN = "_genept_label_id"


def register_reference(
    cls: type[GenePTClassifier],
    adata: AnnData,
    labels_key: str,
    embedding_keys: list[str],
    ontology: str,
    setup_method_args: dict,
    kwargs: dict,
) -> None:
    """Map ``adata``'s labels onto CL terms, and register its inputs and labels for ``cls``."""
    ids, terms = _reference_labels(adata, labels_key, ontology)
    adata.obs[_LABEL_COLUMN] = pd.Categorical(ids.to_numpy(), categories=terms)
    fields = [
        ObsmField(k, key)
        for k, key in zip(_input_keys(embedding_keys), embedding_keys, strict=True)
    ]
    fields.append(CategoricalObsField(REGISTRY_KEYS.LABELS_KEY, _LABEL_COLUMN))
    manager = AnnDataManager(fields=fields, setup_method_args=setup_method_args)
    with (
        quiet_loggers(("scvi",), scanpy_verbosity() >= DEBUG),  # "Generating sequential …"
        warnings.catch_warnings(),
    ):
        # scvi-tools names a rare label by its internal code, and counts the cells given
        # here (a SOMA prototype's, not the training cells): train() warns in its place
        warnings.filterwarnings("ignore", message="Category .* has fewer than 3 cells")
        manager.register_fields(adata, **kwargs)
    cls.register_manager(manager)


def _reference_labels(adata: AnnData, labels_key: str, ontology: str) -> tuple[pd.Series, list]:
    """Each cell's CL id, and the terms the model scores: the labels and their ancestors.

    The terms are ordered by depth in the ontology, then by id.
    """
    if labels_key not in adata.obs:
        raise KeyError(
            f"No column {labels_key!r} in adata.obs; columns: {list(adata.obs.columns)}."
        )
    cl = CellOntology.load(ontology)
    ids, unmapped = cl.map_labels(
        adata.obs[labels_key].astype(object).where(adata.obs[labels_key].notna())
    )
    missing = int(adata.obs[labels_key].isna().sum())
    if missing:
        raise ValueError(
            f"{missing} cells have no label in obs[{labels_key!r}]: train on the labelled "
            f"cells only, e.g. adata[adata.obs[{labels_key!r}].notna()].copy()."
        )
    if unmapped:
        why = "; ".join(cl.explain(u) for u in unmapped[:10]) + (
            "; …" if len(unmapped) > 10 else ""
        )
        raise ValueError(
            f"{len(unmapped)} labels in obs[{labels_key!r}] match no single term of {cl!r} "
            f"(as CL id, name, synonym or everyday form): {unmapped[:20]} ({why}). Map them "
            "to CL ids first."
        )
    labels = sorted(set(ids))
    if len(labels) < 2:
        raise ValueError(
            f"All {adata.n_obs} cells in obs[{labels_key!r}] have one label "
            f"({cl.name(labels[0]) if labels else 'none'}): a classifier needs at least two "
            "cell types to tell apart. Train on a reference with several types."
        )
    terms = sorted(
        set(labels).union(*(cl.ancestors(t) for t in labels)), key=lambda t: (cl.depth(t), t)
    )
    return ids, terms
