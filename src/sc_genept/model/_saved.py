"""A saved GenePTClassifier loaded for prediction only: without scvi-tools or Lightning."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sc_genept.model._network import GenePTNetwork
from sc_genept.model._trained import TrainedClassifier

if TYPE_CHECKING:
    from sc_genept.ontology import CellOntology


class SavedClassifier(TrainedClassifier):
    """A model folder of :class:`~sc_genept.model.GenePTClassifier`, loaded to predict.

    It has the classifier's prediction API (:meth:`predict`, :meth:`predict_proba`,
    :meth:`error_coverage`, :attr:`genes`, …) and reads the folder as
    :meth:`GenePTClassifier.load <sc_genept.model.GenePTClassifier.load>` does, but it
    cannot train, and it imports neither scvi-tools nor Lightning: loading and predicting
    take a fraction of the time. ``sc.tl.genept_annotate(adata, model=...)`` and the
    ``sc-genept annotate`` command use it for a folder or a pretrained model's name.

    Examples
    --------
    >>> model = SavedClassifier.load("my_model")
    >>> model.predict(query)
    """

    def __init__(
        self,
        registry: dict,
        ontology: CellOntology,
        *,
        n_hidden: int,
        n_layers: int,
        dropout: float,
        n_members: int,
        loss: str,
    ):
        self._set_up(registry, ontology, loss)
        self._network = GenePTNetwork(
            sum(self.input_widths),
            ontology.ancestor_matrix(self.terms),
            n_hidden=n_hidden,
            n_layers=n_layers,
            dropout=dropout,
            n_members=n_members,
        )
        self._model_summary_string = self._describe(
            n_hidden=n_hidden, n_layers=n_layers, n_members=n_members, loss=loss
        )
        self.embedding_provenance_, self.gene_sets_ = {}, {}
        self.is_trained_, self.history_ = False, {}

    @property
    def network(self) -> GenePTNetwork:
        """Weights, standardisation, temperature and novelty space, as a :class:`GenePTNetwork`."""
        return self._network

    #: ``None``, for there is no training data: predictions need ``adata`` (or the data
    #: given to :meth:`load`).
    adata = None

    def __repr__(self) -> str:
        return f"SavedClassifier({self._model_summary_string})"

    @classmethod
    def _folder_model(cls) -> str:
        return "GenePTClassifier"

    @classmethod
    def _from_registry(cls, registry: dict, ontology: CellOntology, init_params: dict):
        return cls(registry, ontology, **init_params)
