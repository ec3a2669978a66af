"""``GenePTClassifier``: Cell Ontology labels from cell embeddings, scvi-tools style.

The class holds the public API and its documentation; the steps behind it are in
``_setup`` (registering a reference), ``_inputs`` (reading and checking inputs),
``_fitting`` (training), ``_predict`` (predictions) and ``_persist`` (model folders).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
from anndata import AnnData
from scvi import REGISTRY_KEYS
from scvi.model.base import BaseModelClass

from sc_genept._checks import (
    check_adata,
    check_fraction,
    non_negative_int,
    positive_int,
)
from sc_genept.model._data import CellData, InMemoryCells, check_cell_data
from sc_genept.model._fitting import (
    _check_trainer_kwargs,
    _stopping_options,
    calibrate,
    check_validation,
    plan_options,
    prepare_module,
    run_trainer,
    training_plan,
)
from sc_genept.model._folder import OWN_ONTOLOGY
from sc_genept.model._inputs import (
    _check_embedding,
    _input_keys,
    record_inputs,
    training_inputs,
)
from sc_genept.model._module import GenePTClassifierModule
from sc_genept.model._persist import save_folder
from sc_genept.model._setup import register_reference
from sc_genept.model._threads import cpu_threads, torch_threads
from sc_genept.model._trained import TrainedClassifier
from sc_genept.model._training import KeepThreads
from sc_genept.ontology import CellOntology

if TYPE_CHECKING:
    from collections.abc import Sequence

    from sc_genept.model._network import GenePTNetwork


class GenePTClassifier(TrainedClassifier, BaseModelClass):
    """Predict Cell Ontology terms from cell embeddings (GenePT-w, alone or with others).

    An MLP over the standardised, concatenated ``obsm`` representations scores every term
    of the training label set and its ancestors. Trained with hierarchical cross-entropy, a
    cell labelled "T cell" is satisfied by probability mass anywhere under T cell, so labels
    of mixed granularity train one model. Predictions report the deepest term whose subtree
    holds at least ``min_confidence`` of the mass, and that mass as the confidence.

    Parameters
    ----------
    adata
        AnnData registered with :meth:`setup_anndata`.
    registry
        Used by :meth:`load`; leave ``None``.
    n_hidden
        Width of the hidden layers.
    n_layers
        Number of hidden layers; 0 gives a (standardised) linear model.
    dropout
        Dropout after each hidden layer.
    n_members
        MLPs trained side by side from different random starts; predictions average their
        probabilities (a deep ensemble :cite:p:`Lakshminarayanan2017`): steadier labels
        and more honest confidences on data unlike the reference.
    loss
        ``"hierarchical"`` (default) or ``"flat"`` cross-entropy (for comparison).

    Examples
    --------
    >>> ref = sc_genept.datasets.pbmc68k_reduced()
    >>> sc.tl.genept_embed(ref, use_raw=True)
    >>> GenePTClassifier.setup_anndata(ref, labels_key="cell_type_ontology_term_id")
    >>> model = GenePTClassifier(ref)
    >>> model.train(max_epochs=50)
    >>> model.predict(query)
    """

    def __init__(
        self,
        adata: AnnData | None = None,
        registry: dict | None = None,
        n_hidden: int = 256,
        n_layers: int = 1,
        dropout: float = 0.2,
        n_members: int = 5,
        loss: Literal["hierarchical", "flat"] = "hierarchical",
    ):
        if adata is None and registry is None:
            raise ValueError(
                "Pass adata registered with GenePTClassifier.setup_anndata(adata, "
                "labels_key=...), or load a saved model with GenePTClassifier.load(folder)."
            )
        if adata is not None:
            check_adata(adata)
        positive_int("n_hidden", n_hidden)
        non_negative_int("n_layers", n_layers)
        check_fraction("dropout", dropout, "[0, 1)")
        positive_int("n_members", n_members)
        if loss not in ("hierarchical", "flat"):
            raise ValueError(f"loss must be 'hierarchical' or 'flat', not {loss!r}.")
        super().__init__(adata, registry=registry)
        ontology = self.registry_["setup_args"]["ontology"]  # a CL source, or the model's own
        self._set_up(
            self.registry_,
            ontology if isinstance(ontology, CellOntology) else CellOntology.load(ontology),
            loss,
        )
        self.module = GenePTClassifierModule(
            sum(self.input_widths),
            self.ontology.ancestor_matrix(self.terms),
            input_keys=_input_keys(self.embedding_keys),
            n_hidden=n_hidden,
            n_layers=n_layers,
            dropout=dropout,
            n_members=n_members,
        )
        record_inputs(self, adata)  # which gene table and genes made them; which are expression
        self._model_summary_string = self._describe(
            n_hidden=n_hidden, n_layers=n_layers, n_members=n_members, loss=loss
        )
        self.init_params_ = self._get_init_params(locals())

    @property
    def network(self) -> GenePTNetwork:
        """Weights, standardisation, temperature and novelty space, as a :class:`GenePTNetwork`."""
        return self.module.network

    @classmethod
    def _from_registry(cls, registry: dict, ontology: CellOntology, init_params: dict):
        """The model a folder describes, before its weights (see ``_persist.load_folder``)."""
        registry["setup_args"]["ontology"] = ontology  # the model's own terms, not a path
        model = cls(None, registry=registry, **init_params)
        registry["setup_args"]["ontology"] = OWN_ONTOLOGY
        return model

    # ---- data --------------------------------------------------------------------------

    @classmethod
    def setup_anndata(
        cls,
        adata: AnnData,
        labels_key: str,
        embedding_keys: Sequence[str] = ("X_genept",),
        ontology: str = "bundled",
        **kwargs,
    ) -> None:
        """Register the cell representations and the labels to train on.

        Parameters
        ----------
        adata
            Reference data with embeddings in ``obsm`` and labels in ``obs``.
        labels_key
            Column of ``adata.obs`` with CL ids, or CL names / exact synonyms that map to
            exactly one term. Unknown or missing labels raise an error that lists them.
        embedding_keys
            ``obsm`` keys concatenated as the input, e.g. ``("X_genept", "X_pca")``.
        ontology
            ``"bundled"`` CL or a path/URL of a CL OBO file (see
            :meth:`~sc_genept.ontology.CellOntology.load`).
        """
        check_adata(adata)
        if isinstance(embedding_keys, str):
            raise TypeError(
                f"embedding_keys must be a list of obsm keys, not the string {embedding_keys!r}: "
                f"pass [{embedding_keys!r}]."
            )
        if adata.n_obs == 0:
            raise ValueError(
                "adata has no cells: train on a reference with labelled cells (check the "
                "subsetting that made it)."
            )
        setup_method_args = cls._get_setup_method_args(**locals())
        embedding_keys = list(embedding_keys)
        setup_method_args["setup_args"]["embedding_keys"] = embedding_keys
        for key in embedding_keys:
            _check_embedding(adata, key)
        register_reference(
            cls, adata, labels_key, embedding_keys, ontology, setup_method_args, kwargs
        )

    # ---- training ----------------------------------------------------------------------

    def train(
        self,
        max_epochs: int = 200,
        *,
        batch_size: int = 128,
        accelerator: str = "auto",
        devices: int | list[int] | str = "auto",
        strategy: str = "auto",
        train_size: float = 0.9,
        early_stopping: bool = True,
        early_stopping_patience: int = 15,
        calibration_size: float = 0.1,
        seed: int = 0,
        checkpoint_dir: str | Path | None = None,
        datamodule: CellData | None = None,
        num_threads: int | None = None,
        verbose: bool = False,
        plan_kwargs: dict | None = None,
        **trainer_kwargs,
    ):
        """Train with Lightning on a stratified train/validation split.

        Quiet by default, as scanpy is: training writes nothing but scanpy log lines
        (``sc.settings.verbosity``), and one progress bar, updated once per epoch, when
        the verbosity is ``"info"`` or more. Lightning's banners, tips, model summary and
        warnings are held back for the call only (its loggers' levels are restored after).

        Parameters
        ----------
        max_epochs
            Upper bound on passes over the training cells.
        batch_size
            Cells per step; batches are drawn from all training cells, reshuffled every
            epoch (no dataset-ordered batches). The cells' inputs are read into memory
            once, as float32, and batches are taken from there.
        accelerator, devices, strategy
            Passed to Lightning: ``"auto"`` uses a GPU when there is one; e.g.
            ``devices=4, strategy="ddp"`` trains on 4 GPUs (or, with ``accelerator="cpu"``,
            4 processes), each on its own shard of the training cells per epoch. A
            multi-process strategy re-runs the calling script in each process (see
            Lightning's docs); every process ends with the trained model.
        train_size
            Share of each label's cells (after the calibration cells are set aside) used
            for training; the rest validates (for early stopping and to keep the best
            weights).
        early_stopping, early_stopping_patience
            Stop when the validation loss has not improved for this many epochs.
        calibration_size
            Share of each label's cells set aside, used neither for training nor for early
            stopping. With the validation cells, they fit a temperature after training so
            that confidences match accuracy (temperature scaling, :cite:p:`Guo2017`; it
            changes confidences, never which term is most probable), and measure the
            error of the calls at each confidence level (for ``max_error``) and how
            typical held-out cells are (``typicality``); all saved with the model
            (``calibration_``). With 0 and ``train_size=1`` there are no held-out cells:
            confidences stay uncalibrated and ``max_error`` is unavailable.
        seed
            Seeds the split, the initial weights (of an untrained model), batch order and
            dropout: the same data and seed give the same model on the same hardware.
        checkpoint_dir
            Save a Lightning checkpoint there after every epoch (``last.ckpt``), and resume
            from it when it exists: training interrupted by a crash or a time limit
            continues where it stopped when ``train`` is called again with the same
            arguments. The folder holds only this user's own checkpoints.
        datamodule
            Train on these cells instead of the registered AnnData's: a Lightning data
            module with the members of :class:`~sc_genept.model.CellData` (e.g.
            :class:`~sc_genept.model.SomaCells`, which streams from TileDB-SOMA). Its split, batches, label counts and
            calibration cells are used; ``batch_size``, ``train_size`` and
            ``calibration_size`` are then its own business.
        num_threads
            torch's CPU threads for the call (restored after it). Default: one per 64
            cells of a batch, at least 1 and at most the CPUs this process may use
            (``os.sched_getaffinity``) shared among the processes training on this machine,
            and those other programs leave idle. Small batches run fastest on one thread, and a thread count
            taken from the number of cores makes training crawl when other programs keep
            those cores busy.
        verbose
            Bring back Lightning's own output: its device banner, model summary, per-step
            progress bar and warnings.
        plan_kwargs
            The training plan's options, grouped as scvi-tools' models take them:

            - ``lr`` (1e-3), ``weight_decay`` (1e-4): AdamW settings;
            - ``balance_classes`` (True): weight each cell by the inverse frequency of its
              label, so that rare types count as much as common ones (it raised macro-F1
              within a dataset and across studies, where type proportions differ);
            - ``gene_dropout`` (0.0): share of the expression inputs (genes) hidden from
              each training cell at each step, set to their reference mean as a gene a
              query lacks is at prediction: robustness to missing or differently measured
              genes.
        **trainer_kwargs
            Other :class:`lightning.pytorch.Trainer` arguments; e.g.
            ``enable_progress_bar=False`` hides the progress bar at any verbosity.
        """
        # every argument is checked before anything is changed or trained
        positive_int("max_epochs", max_epochs)
        positive_int("batch_size", batch_size)
        options = plan_options(plan_kwargs)
        check_fraction("train_size", train_size, "(0, 1]")
        check_fraction("calibration_size", calibration_size, "[0, 1)")
        non_negative_int("early_stopping_patience", early_stopping_patience)
        if num_threads is not None:
            positive_int("num_threads", num_threads)
        if not isinstance(verbose, bool | np.bool_):
            raise TypeError(f"verbose must be True or False, got {verbose!r}.")
        _check_trainer_kwargs(trainer_kwargs)
        input_keys = _input_keys(self.embedding_keys)
        if datamodule is not None:
            check_cell_data(datamodule, self.terms, input_keys)
        threads = num_threads or cpu_threads(batch_size, accelerator, devices)
        with torch_threads(threads):
            if datamodule is None:
                datamodule = InMemoryCells(
                    self._training_inputs(),
                    self._label_codes(),
                    self.terms,
                    input_keys,
                    train_size=train_size,
                    calibration_size=calibration_size,
                    batch_size=batch_size,
                    seed=seed,
                )
            prepare_module(self, datamodule, seed, options["gene_dropout"])
            validates, early_stopping = check_validation(datamodule, early_stopping)
            plan = training_plan(
                self, datamodule, options["lr"], options["weight_decay"], options["balance_classes"]
            )
            trainer_kwargs.update(
                max_epochs=max_epochs, accelerator=accelerator, devices=devices, strategy=strategy
            )
            trainer_kwargs["callbacks"] = [
                *(trainer_kwargs.get("callbacks") or []),
                KeepThreads(threads),
            ]
            _stopping_options(
                trainer_kwargs, early_stopping, early_stopping_patience, validates, verbose
            )
            result = run_trainer(self, plan, datamodule, checkpoint_dir, verbose, trainer_kwargs)
            calibrate(self, datamodule, seed)
        return result

    # ---- persistence -------------------------------------------------------------------

    def save(self, dir_path: str | Path, *, overwrite: bool = False) -> None:
        """Save the model as a self-contained folder of data.

        ``model.safetensors`` holds the weights (a format that cannot carry code),
        ``model.json`` everything else, including the Cell Ontology terms the model uses,
        and ``manifest.json`` the sha256 of both, so that :meth:`load` refuses a damaged or
        edited folder. Nothing in the folder names another file or URL; no data, and no
        API key or other secret, is written.
        """
        save_folder(self, dir_path, overwrite)

    # ---- internals ---------------------------------------------------------------------

    def _label_codes(self) -> np.ndarray:
        return (
            np.asarray(self.adata_manager.get_from_registry(REGISTRY_KEYS.LABELS_KEY))
            .ravel()
            .astype(int)
        )

    def _training_inputs(self, size: int = 4096) -> list[np.ndarray]:
        """Each input of the training data as one dense float32 array, read in blocks."""
        return training_inputs(self, size)
