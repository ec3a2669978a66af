"""A saved GenePTClassifier loaded for prediction only: in NumPy, without torch, scvi-tools or Lightning."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sc_genept.model._numpy_network import NumpyNetwork
from sc_genept.model._trained import TrainedClassifier

if TYPE_CHECKING:
    import numpy as np

    from sc_genept.model._network import GenePTNetwork
    from sc_genept.ontology import CellOntology


class SavedClassifier(TrainedClassifier):
    """A model folder of :class:`~sc_genept.model.GenePTClassifier`, loaded to predict.

    It has the classifier's prediction API (:meth:`predict`, :meth:`predict_proba`,
    :meth:`error_coverage`, :attr:`genes`, …) and reads the folder as
    :meth:`GenePTClassifier.load <sc_genept.model.GenePTClassifier.load>` does, but it
    cannot train: it predicts in NumPy on the CPU, and imports neither torch, scvi-tools
    nor Lightning, so loading and predicting take a fraction of the time.
    ``sc.tl.genept_annotate(adata, model=...)`` and the ``sc-genept annotate`` command use
    it for a folder or a pretrained model's name. To predict on a GPU, load the folder
    with ``GenePTClassifier.load(..., accelerator="gpu")``.

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
        self._options = {
            "n_hidden": n_hidden,
            "n_layers": n_layers,
            "dropout": dropout,
            "n_members": n_members,
        }
        self._state: dict[str, np.ndarray] = {}
        self._arrays: NumpyNetwork | None = None
        self._network: GenePTNetwork | None = None
        self._model_summary_string = self._describe(
            n_hidden=n_hidden, n_layers=n_layers, n_members=n_members, loss=loss
        )
        self.embedding_provenance_, self.gene_sets_ = {}, {}
        self.is_trained_, self.history_ = False, {}

    @property
    def network(self) -> GenePTNetwork:
        """The weights, standardisation, temperature and novelty space as a :class:`GenePTNetwork`.

        Built from the loaded weights on first access (this imports torch); predictions
        do not use it.
        """
        if self._network is None:
            from sc_genept.model._network import GenePTNetwork

            self._network = GenePTNetwork(
                sum(self.input_widths), self.ontology.ancestor_matrix(self.terms), **self._options
            )
            if self._state:
                super()._take_weights(self._state)
                self._network.eval()
        return self._network

    @property
    def _scorer(self) -> NumpyNetwork:
        if self._arrays is None:
            raise RuntimeError(
                "This SavedClassifier has no weights: load one with SavedClassifier.load."
            )
        return self._arrays

    @classmethod
    def _device(cls, accelerator: str | None, device: str | int | None) -> str:
        if accelerator in (None, "auto", "cpu") and device in (None, "auto", "cpu"):
            return "cpu"
        raise ValueError(
            f"A SavedClassifier predicts in NumPy on the CPU (got accelerator={accelerator!r}, "
            f"device={device!r}). To predict on a GPU, load the folder with "
            "GenePTClassifier.load(..., accelerator='gpu')."
        )

    def _take_weights(self, state: dict[str, np.ndarray]) -> None:
        self._state = state
        self._arrays = NumpyNetwork(
            state, n_layers=self._options["n_layers"], n_members=self._options["n_members"]
        )
        self._network = None

    def _place(self, device: str) -> None:
        pass  # NumPy, on the CPU (``_device`` allows nothing else)

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
