"""What a trained classifier answers with, shared by the full model and a loaded one.

:class:`TrainedClassifier` holds the prediction API of
:class:`~sc_genept.model.GenePTClassifier` over a :class:`~sc_genept.model.GenePTNetwork`
and the records of the training data. It imports neither scvi-tools, Lightning nor torch,
so that :class:`~sc_genept.model.SavedClassifier` (a model folder loaded for prediction
only, in NumPy) does not either.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Self

import numpy as np
import pandas as pd

from sc_genept._checks import check_fraction
from sc_genept.model._calls import DEFAULT_NOVELTY_RATE
from sc_genept.model._inputs import _input_keys as input_keys
from sc_genept.model._inputs import check_query, input_batches, model_inputs
from sc_genept.model._overlap import DEFAULT_MIN_GENE_OVERLAP, gene_overlap
from sc_genept.model._persist import load_folder, torch_device
from sc_genept.model._predict import cell_calls, error_curve, level_for_max_error, score_cells

if TYPE_CHECKING:
    from pathlib import Path

    from anndata import AnnData

    from sc_genept.model._network import GenePTNetwork
    from sc_genept.ontology import CellOntology


class TrainedClassifier:
    """Predictions of a trained classifier: the methods of ``GenePTClassifier`` that need no training.

    A subclass sets :attr:`network` and the records below.

    Attributes
    ----------
    terms
        The label set: CL ids, in the network's output order.
    ontology
        The Cell Ontology of :attr:`terms`.
    embedding_keys, input_widths
        The ``obsm`` inputs, in order, and their widths.
    embedding_provenance_, gene_sets_
        What made each input in the training data (gene table, genes).
    calibration_
        What training measured on held-out cells (see ``_calls``), or ``None``.
    """

    terms: list[str]
    ontology: CellOntology
    embedding_keys: list[str]
    input_widths: list[int]
    embedding_provenance_: dict
    gene_sets_: dict
    calibration_: dict | None
    is_trained_: bool
    pretrained_name_: str | None
    _attached: AnnData | None

    @property
    def network(self) -> GenePTNetwork:
        """Weights, standardisation, temperature and novelty space, as a :class:`GenePTNetwork`."""
        raise NotImplementedError

    @classmethod
    def _folder_model(cls) -> str:
        """The ``model`` a model folder must name for this class to load it."""
        return cls.__name__

    def _set_up(self, registry: dict, ontology: CellOntology, loss: str) -> None:
        """Inputs and label set from ``registry``, and the records training or a folder fills."""
        self._read_registry(registry)
        self.ontology = ontology
        self.loss_kind = loss
        self._attached = None  # query data given to load()
        self.pretrained_name_ = None  # set by load_pretrained: which registry model
        # what train() measured on held-out cells: error by level, novelty (see _calls)
        self.calibration_ = None

    def _read_registry(self, registry: dict) -> None:
        """Inputs and label set from an scvi-tools registry (plain, or the model's own)."""
        self.embedding_keys = list(registry["setup_args"]["embedding_keys"])
        fields = registry["field_registries"]
        self.terms = [str(t) for t in fields["labels"]["state_registry"]["categorical_mapping"]]
        self.input_widths = [
            int(fields[key]["summary_stats"][f"n_{key}"]) for key in input_keys(self.embedding_keys)
        ]

    def _describe(self, *, n_hidden: int, n_layers: int, n_members: int, loss: str) -> str:
        """The one-line summary (``repr``, ``uns[key]["model"]``)."""
        return (
            f"GenePTClassifier: {len(self.terms)} CL terms, inputs {self.embedding_keys} "
            f"({sum(self.input_widths)} dims), {n_members} × {n_layers} hidden layer(s) of "
            f"{n_hidden}, {loss} loss, CL {self.ontology.version}"
        )

    @property
    def genes(self) -> list[str] | None:
        """The gene-table genes the GenePT-w input was made of; a query is embedded on them.

        ``None`` when the training embedding did not record its genes (made before
        sc_genept recorded them, or not by :func:`~sc_genept.tl.genept_embed`).
        """
        gene_set = self.gene_set
        return None if gene_set is None else list(gene_set["names"])

    def gene_overlap(self, genes) -> dict:
        """How much of the model's genes a query has.

        Parameters
        ----------
        genes
            The model genes the query has (e.g. ``uns["X_genept"]["gene_set"]["names"]``).

        Returns
        -------
        ``n_model_genes``, ``n_genes_found``, ``fraction_genes_found``,
        ``fraction_expression_found`` (the share of the reference's mean expression that the
        found genes carry) and ``missing_examples`` (the most expressed missing genes).
        Empty when the model recorded no genes.
        """
        gene_set = self.gene_set
        return {} if gene_set is None else gene_overlap(gene_set, genes)

    @property
    def gene_set(self) -> dict | None:
        """The model's genes (``names``) and their ``mean_expression`` in the training data.

        Genes a query lacks take that mean (see :meth:`predict`). ``None`` when the
        training inputs did not record their genes.
        """
        key = next((k for k in self.embedding_keys if k in self.gene_sets_), None)
        return None if key is None else self.gene_sets_[key]

    # ---- prediction --------------------------------------------------------------------

    def _labelled(self) -> np.ndarray:
        """Which of the model's terms are the reference's own cell types (had cells)."""
        labelled = set((self.calibration_ or {}).get("labelled_terms", self.terms))
        return np.array([t in labelled for t in self.terms])

    def predict_proba(
        self,
        adata: AnnData | None = None,
        *,
        batch_size: int = 4096,
        min_gene_overlap: float = DEFAULT_MIN_GENE_OVERLAP,
    ) -> pd.DataFrame:
        """Probability of each term of the label set (rows sum to 1), cells × terms.

        Arguments as in :meth:`predict`.
        """
        return score_cells(self, adata, batch_size, min_gene_overlap, novelty=False)[0]

    def predict(
        self,
        adata: AnnData | None = None,
        *,
        soft: bool = False,
        min_confidence: float = 0.5,
        max_error: float | None = None,
        novelty_rate: float | None = DEFAULT_NOVELTY_RATE,
        batch_size: int = 4096,
        min_gene_overlap: float = DEFAULT_MIN_GENE_OVERLAP,
    ) -> pd.DataFrame:
        """Annotate cells with the deepest term that holds ``min_confidence`` of the mass.

        Parameters
        ----------
        adata
            Cells with the same ``obsm`` representations as the training data (made with
            the same gene table); default: the training data.
        soft
            Return the full probability table (cells × terms) instead.
        min_confidence
            Subtree mass a term needs to be reported. Higher: fewer, coarser, surer calls.
        max_error
            Instead of ``min_confidence``: the share of wrong calls to allow, e.g. ``0.1``.
            Each cell gets the deepest term at the lowest mass level whose calls were
            wrong on at most this share of the reference cells held out from training
            (conformal risk control; a call is wrong when it is neither the true term nor
            above or below it). Guaranteed on cells drawn like the reference's; on data
            from another study, see :doc:`/honest_calls`.
        novelty_rate
            Cells less typical of the reference than all but this share of its held-out
            cells (``typicality`` below it) are called at a term strictly above their most
            probable reference type that is none of its types, for they may be of a type
            the reference lacks: about this share of cells of known types is coarsened
            too. ``None`` (default): no check; ``0``: ``typicality`` without coarsening any
            cell. Meant for data like the reference's: from another study, most cells are
            less typical than the reference's own.
        batch_size
            Cells per forward pass.
        min_gene_overlap
            Smallest share of the model's genes the query's GenePT-w embedding may be made
            of (and at least 10 of them); below it a :class:`ValueError` is raised (below
            80 %, a warning).

        Returns
        -------
        With ``soft=False``, a frame indexed like ``adata.obs`` with columns
        ``ontology_term_id`` and ``cell_type`` (the reported term), ``confidence`` (its
        subtree mass), ``finest_ontology_term_id``, ``finest_cell_type`` and
        ``finest_probability`` (the single most probable term, before thresholding),
        ``reason`` (why the reported term is the one reported: ``"most probable term"``,
        ``"uncertain: coarser term"`` or ``"unlike the reference: coarser term"``) and
        ``typicality`` (with ``novelty_rate``: the share of held-out reference cells at
        least as far from the reference's cell types; else, or for a model saved without
        it, NaN).
        """
        check_fraction("min_confidence", min_confidence, "(0, 1]")
        if max_error is not None:
            check_fraction("max_error", max_error, "(0, 1)")
        if novelty_rate is not None:
            check_fraction("novelty_rate", novelty_rate, "[0, 1)")
        level = min_confidence if max_error is None else level_for_max_error(self, max_error)
        # typicality only when asked for: scoring it costs ~15x the network's forward pass
        checks = not soft and novelty_rate is not None
        probs, scores = score_cells(self, adata, batch_size, min_gene_overlap, novelty=checks)
        if soft:
            return probs
        return cell_calls(self, probs, scores, level, novelty_rate)

    def error_coverage(self, adata: AnnData | None = None, labels_key: str | None = None):
        """Error and coverage of the calls at each mass level: the price of each error rate.

        Without arguments: on the reference cells held out from training (what
        ``max_error`` is calibrated on). With ``adata`` and ``labels_key`` (a column of CL
        ids or names): on those cells, e.g. an annotated query whose truth is known.

        Returns
        -------
        A frame with one row per level: ``level`` (the subtree mass a term needs),
        ``error`` (share of calls that are wrong), ``coverage`` (share of cells called at
        one of the reference's own types) and, on held-out cells, ``bound_error`` (the
        monotone error ``max_error`` is calibrated on).
        """
        return error_curve(self, adata, labels_key)

    # ---- persistence -------------------------------------------------------------------

    @classmethod
    def load(
        cls,
        dir_path: str | Path,
        adata: AnnData | None = None,
        *,
        accelerator: str | None = None,
        device: str | int | None = None,
    ) -> Self:
        """Load a model folder written by :meth:`~sc_genept.model.GenePTClassifier.save`.

        The folder is read as data only: the weights from safetensors, the rest from JSON,
        both checked against the sha256 in ``manifest.json`` first. A folder with a missing,
        damaged or edited file, or whose metadata names a path or URL, is refused with a
        :class:`~sc_genept.model.ModelFolderError`; nothing outside the folder is read.

        Parameters
        ----------
        dir_path
            The folder :meth:`GenePTClassifier.save <sc_genept.model.GenePTClassifier.save>` wrote.
        adata
            Optional query data to attach; its embeddings must come from the same gene
            table as the training data's, else a :class:`ValueError` says which differ.
        accelerator, device
            Where to put the weights; the CPU when neither is given. ``device`` may be a
            torch device (``"cpu"``, ``"cuda"``, ``"cuda:1"`` …); or, as scvi-tools' models
            take them, an ``accelerator`` (``"auto"``: a GPU when torch sees one, ``"cpu"``,
            ``"gpu"``/``"cuda"``) with ``device="auto"`` or a GPU index. Contradicting
            values (``accelerator="gpu", device="cpu"``) are an error. scvi-tools' model
            sharing (``scvi.hub.HubModel``) loads a model folder this way (see
            :doc:`/annotation`). A :class:`~sc_genept.model.SavedClassifier` predicts in
            NumPy on the CPU: it takes only ``"cpu"`` or ``"auto"``.
        """
        return load_folder(cls, dir_path, adata, cls._device(accelerator, device))

    @classmethod
    def load_pretrained(
        cls, name: str, adata: AnnData | None = None, *, device: str = "cpu"
    ) -> Self:
        """Load a pretrained model by name (see :func:`~sc_genept.model.available_models`).

        A bundled model is read from the installed package, offline. A remote one is
        downloaded once (checked against the sha256 its registry entry holds, unpacked
        refusing absolute paths, ``..`` and links) into the cache folder
        (``$SC_GENEPT_CACHE``, else the user cache folder), then read from there. Either way
        the folder is loaded by :meth:`load`, as data only.

        Parameters
        ----------
        name
            A name listed by :func:`~sc_genept.model.available_models`; an unknown name
            raises a :class:`KeyError` that lists them.
        adata, device
            As in :meth:`load`.
        """
        from sc_genept.model._pretrained import load_model

        return load_model(cls, name, adata, device=device)

    # ---- internals ---------------------------------------------------------------------

    @property
    def _scorer(self):
        """What computes probabilities and novelty: ``GenePTNetwork.score``'s interface."""
        return self.network

    @classmethod
    def _device(cls, accelerator: str | None, device: str | int | None) -> str:
        """Where :meth:`load` puts the weights (see ``_persist.torch_device``)."""
        return torch_device(accelerator, device)

    def _take_weights(self, state: dict[str, np.ndarray]) -> None:
        """Load a folder's weights, checked by ``_meta.check_meta``."""
        import torch

        self.network.load_state_dict({k: torch.tensor(v) for k, v in state.items()}, strict=False)

    def _place(self, device: str) -> None:
        """Move the loaded weights to ``device``, ready to predict."""
        self.network.to(device).eval()

    def _inputs(self, adata: AnnData, rows=slice(None), sources=None) -> np.ndarray:
        """The model's input for ``rows`` of ``adata``: its representations side by side."""
        return model_inputs(self, adata, rows, sources)

    def _input_batches(self, adata: AnnData, rows: np.ndarray | None = None, size: int = 4096):
        """:meth:`_inputs` in batches of ``size`` cells (bounded memory)."""
        return input_batches(self, adata, rows, size)

    def _query(
        self, adata: AnnData | None, min_gene_overlap: float = DEFAULT_MIN_GENE_OVERLAP
    ) -> AnnData:
        """The data to predict on, after checking its embeddings come from the right gene table."""
        return check_query(self, adata, min_gene_overlap)
