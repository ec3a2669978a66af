"""``GenePTClassifier``: Cell Ontology labels from cell embeddings, scvi-tools style."""

from __future__ import annotations

import difflib
import inspect
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd
import torch
from anndata import AnnData
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import EarlyStopping
from scanpy import logging as logg
from scipy import sparse
from scvi import REGISTRY_KEYS
from scvi.data import AnnDataManager
from scvi.data.fields import CategoricalObsField, ObsmField
from scvi.model.base import BaseModelClass
from scvi.train import Trainer as ScviTrainer
from scvi.train import TrainRunner

from sc_genept._checks import (
    check_adata,
    check_fraction,
    non_negative_int,
    positive_int,
    positive_number,
)
from sc_genept._utils import warn_caller
from sc_genept.model._calls import (
    _MAX_CALIBRATION_CELLS,
    DEFAULT_NOVELTY_RATE,
    NoveltyFit,
    decode,
    error_coverage,
    level_for_error,
    novelty_reference,
    typicality,
)
from sc_genept.model._data import CellData, InMemoryCells, check_cell_data
from sc_genept.model._folder import OWN_ONTOLOGY, ModelFolderError, read_folder, write_folder
from sc_genept.model._module import GenePTClassifierModule, TrainingPlan
from sc_genept.model._overlap import DEFAULT_MIN_GENE_OVERLAP, check_gene_overlap, gene_overlap
from sc_genept.model._training import (
    DEBUG,
    KeepThreads,
    checkpoint_callbacks,
    cpu_threads,
    lightning_output,
    output_options,
    quiet_loggers,
    runner_output,
    scanpy_verbosity,
    torch_threads,
)
from sc_genept.ontology import CellOntology

if TYPE_CHECKING:
    from collections.abc import Sequence


_LABEL_COLUMN = "_genept_label_id"
#: Provenance fields that must agree between training and query embeddings.
_PROVENANCE_KEYS = (
    "text_source",
    "embedding_model",
    "build_date",
    "n_genes",
    "n_dims",
    "truncated_from",
    "sha256",
)


class GenePTClassifier(BaseModelClass):
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
        setup = self.registry_["setup_args"]
        self.embedding_keys = list(setup["embedding_keys"])
        self.terms = [
            str(t)
            for t in self.registry_["field_registries"]["labels"]["state_registry"][
                "categorical_mapping"
            ]
        ]
        ontology = setup["ontology"]  # a CL source, or (from load) the model's own terms
        self.ontology = (
            ontology if isinstance(ontology, CellOntology) else CellOntology.load(ontology)
        )
        self.loss_kind = loss
        self._attached = None  # query data given to load()
        self.pretrained_name_ = None  # set by load_pretrained: which registry model
        # what train() measured on held-out cells: error by level, novelty (see _calls)
        self.calibration_: dict | None = None
        input_keys = _input_keys(self.embedding_keys)
        self.input_widths = [int(self.summary_stats[f"n_{k}"]) for k in input_keys]
        self.module = GenePTClassifierModule(
            sum(self.input_widths),
            self.ontology.ancestor_matrix(self.terms),
            n_hidden=n_hidden,
            n_layers=n_layers,
            dropout=dropout,
            n_members=n_members,
        )
        # which gene table, and which of its genes, made each embedding: checked on every query
        self.embedding_provenance_ = (
            {k: _provenance(adata, k) for k in self.embedding_keys} if adata is not None else {}
        )
        self.gene_sets_ = (
            {k: g for k in self.embedding_keys if (g := _gene_set(adata, k))}
            if adata is not None
            else {}
        )
        self.module.is_gene.copy_(
            torch.as_tensor(
                np.concatenate(
                    [
                        np.full(width, self._is_expression(key))
                        for key, width in zip(self.embedding_keys, self.input_widths, strict=True)
                    ]
                )
            )
        )
        self._model_summary_string = (
            f"GenePTClassifier: {len(self.terms)} CL terms, inputs {self.embedding_keys} "
            f"({sum(self.input_widths)} dims), {n_members} × {n_layers} hidden layer(s) of {n_hidden}, "
            f"{loss} loss, CL {self.ontology.version}"
        )
        self.init_params_ = self._get_init_params(locals())

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
        adata.obs[_LABEL_COLUMN] = pd.Categorical(ids.to_numpy(), categories=terms)
        fields = [
            ObsmField(k, key)
            for k, key in zip(_input_keys(embedding_keys), embedding_keys, strict=True)
        ]
        fields.append(CategoricalObsField(REGISTRY_KEYS.LABELS_KEY, _LABEL_COLUMN))
        manager = AnnDataManager(fields=fields, setup_method_args=setup_method_args)
        with quiet_loggers(("scvi",), scanpy_verbosity() >= DEBUG):  # "Generating sequential …"
            manager.register_fields(adata, **kwargs)
        cls.register_manager(manager)

    # ---- training ----------------------------------------------------------------------

    def train(
        self,
        max_epochs: int = 200,
        *,
        batch_size: int = 128,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        accelerator: str = "auto",
        devices: int | list[int] | str = "auto",
        strategy: str = "auto",
        train_size: float = 0.9,
        early_stopping: bool = True,
        early_stopping_patience: int = 15,
        balance_classes: bool = True,
        gene_dropout: float = 0.0,
        calibration_size: float = 0.1,
        seed: int = 0,
        checkpoint_dir: str | Path | None = None,
        datamodule: CellData | None = None,
        num_threads: int | None = None,
        verbose: bool = False,
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
        lr, weight_decay
            AdamW settings.
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
        balance_classes
            Weight each cell by the inverse frequency of its label, so that rare types
            count as much as common ones (on by default: it raised macro-F1 within a
            dataset and across studies, where type proportions differ).
        gene_dropout
            Share of the expression inputs (genes) hidden from each training cell at each
            step, set to their reference mean as a gene a query lacks is at prediction:
            robustness to missing or differently measured genes.
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
        **trainer_kwargs
            Other :class:`lightning.pytorch.Trainer` arguments; e.g.
            ``enable_progress_bar=False`` hides the progress bar at any verbosity.
        """
        # every argument is checked before anything is changed or trained
        positive_int("max_epochs", max_epochs)
        positive_int("batch_size", batch_size)
        positive_number("lr", lr)
        positive_number("weight_decay", weight_decay, allow_zero=True)
        check_fraction("train_size", train_size, "(0, 1]")
        check_fraction("calibration_size", calibration_size, "[0, 1)")
        check_fraction("gene_dropout", gene_dropout, "[0, 1)")
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
            self._start(datamodule, seed, gene_dropout)
            validates = _has_batches(datamodule.val_dataloader())
            if not validates and early_stopping:
                warn_caller(
                    "No validation cells (train_size=1, or a datamodule without validation): "
                    "early stopping is off."
                )
                early_stopping = False
            plan = TrainingPlan(
                self.module,
                input_keys,
                lr=lr,
                weight_decay=weight_decay,
                hierarchical=self.loss_kind == "hierarchical",
                class_weights=_class_weights(datamodule.label_counts())
                if balance_classes
                else None,
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
            result = self._fit(plan, datamodule, checkpoint_dir, verbose, trainer_kwargs)
            self._calibrate(datamodule, seed)
        return result

    def _start(self, datamodule: CellData, seed: int, gene_dropout: float) -> None:
        """Seed, draw the weights of an untrained model, learn the input standardisation."""
        torch.manual_seed(seed)  # dropout
        self.module.gene_dropout = gene_dropout
        if not self.is_trained_:
            self.module.reset_parameters(seed)
        self.module.set_standardization(datamodule.standardization_batches())

    def _fit(self, plan, datamodule, checkpoint_dir, verbose: bool, trainer_kwargs: dict):
        """Run Lightning, then keep the best weights the validation found."""
        checkpoints = checkpoint_callbacks(trainer_kwargs, checkpoint_dir)
        output_options(trainer_kwargs, verbose)
        with lightning_output(verbose), runner_output(verbose):
            # the device banner is logged when the Trainer is made
            runner = TrainRunner(
                self, training_plan=plan, data_splitter=datamodule, **trainer_kwargs
            )
            # added once scvi-tools' Trainer is built: asked for checkpoints, it would put its
            # own SaveCheckpoint in place of Lightning's, which saves scvi-format model folders
            runner.trainer.callbacks.extend(checkpoints)
            result = runner()
        if plan.best_state is not None:
            self.module.load_state_dict(plan.best_state)
        return result

    def _calibrate(self, datamodule: CellData, seed: int) -> None:
        """Fit what makes calls honest on cells the weights were not fitted to (``_calls``).

        The novelty space from the training cells; then, on the held-out cells (the
        calibration cells and the validation cells, which only chose the epoch), the
        temperature, the error and coverage of the calls at each level, and the novelty
        scores. Both sets together: a small reference's calibration cells alone (56 of
        700) make the error at each level too uncertain to bound. Without held-out cells
        confidences stay uncalibrated and ``max_error`` and the novelty check are
        unavailable.
        """
        self.module.temperature.fill_(1.0)
        self.module.eval()
        self.calibration_ = None
        fit = NoveltyFit(len(self.terms))
        for x, codes in self._batches(datamodule.train_dataloader()):
            fit.add(self.module.standardized(x).cpu().numpy(), codes.cpu().numpy())
        space = fit.fit()
        if space is not None:
            self.module.set_novelty(space)
        held_out = self._held_out(datamodule, seed)
        if held_out is None:
            return
        inputs, codes = held_out
        hierarchical = self.loss_kind == "hierarchical"
        temperature = self.module.calibrate(inputs, codes, hierarchical=hierarchical)
        probs = self.module.probabilities(inputs).cpu().numpy().astype(np.float64)
        labelled = [t for t, n in zip(self.terms, datamodule.label_counts(), strict=True) if n]
        self.calibration_ = {"labelled_terms": labelled}
        self.calibration_["error_coverage"] = error_coverage(
            probs, codes.cpu().numpy(), self.module.subtree.cpu().numpy(), self._labelled()
        )
        self.calibration_["novelty"] = (
            novelty_reference(self.module.novelty(inputs).cpu().numpy())
            if self.module.has_novelty
            else None
        )
        logg.info(
            f"confidences calibrated on {len(codes)} held-out cells: temperature {temperature:.2f}"
        )
        self.module.eval()

    def _held_out(self, datamodule: CellData, seed: int):
        """Inputs and label codes of the calibration and validation cells (at most 20,000)."""
        parts = list(self._batches(datamodule.val_dataloader()))
        calibration = datamodule.calibration_set()
        if calibration is not None and len(calibration[1]):
            parts.append(tuple(torch.as_tensor(a) for a in calibration))
        if not parts:
            return None
        inputs, codes = (torch.cat([p[i].cpu() for p in parts]) for i in (0, 1))
        if len(codes) > _MAX_CALIBRATION_CELLS:  # bounded time; a random subset is as good
            rows = np.random.default_rng(seed).choice(len(codes), _MAX_CALIBRATION_CELLS, False)
            rows = torch.as_tensor(np.sort(rows))
            inputs, codes = inputs[rows], codes[rows]
        return inputs, codes.long()

    def _batches(self, loader):
        """``(inputs, label codes)`` of each batch of a data loader, on the module's device."""
        keys = _input_keys(self.embedding_keys)
        device = self.module.input_mean.device
        for batch in loader:
            x = torch.cat([batch[k] for k in keys], dim=1).to(device)
            yield x, batch[REGISTRY_KEYS.LABELS_KEY].view(-1).long().to(device)

    def _labelled(self) -> np.ndarray:
        """Which of the model's terms are the reference's own cell types (had cells)."""
        labelled = set((self.calibration_ or {}).get("labelled_terms", self.terms))
        return np.array([t in labelled for t in self.terms])

    # ---- prediction --------------------------------------------------------------------

    @torch.inference_mode()
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
        return self._scores(adata, batch_size, min_gene_overlap, novelty=False)[0]

    @torch.inference_mode()
    def _scores(
        self, adata, batch_size: int, min_gene_overlap: float, *, novelty: bool
    ) -> tuple[pd.DataFrame, np.ndarray | None]:
        """Term probabilities and (with ``novelty``, where fitted) each cell's novelty score."""
        if adata is not None:
            check_adata(adata)
        positive_int("batch_size", batch_size)
        check_fraction("min_gene_overlap", min_gene_overlap, "[0, 1]")
        if not self.is_trained_:
            raise RuntimeError(
                "This model has not been trained: call model.train() first, or load a trained "
                "model with GenePTClassifier.load."
            )
        adata = self._query(adata, min_gene_overlap)
        self.module.eval()
        novelty = novelty and self.module.has_novelty
        parts, scores = [], []
        # threads chosen as for training: torch's default (one per core) crawls when other
        # programs keep the cores busy
        with torch_threads(cpu_threads(batch_size, "cpu", 1)):
            for x in self._input_batches(adata, size=batch_size):
                x = torch.as_tensor(x)
                parts.append(self.module.probabilities(x).cpu().numpy())
                if novelty:
                    scores.append(self.module.novelty(x).cpu().numpy())
        probs = np.concatenate(parts) if parts else np.zeros((0, len(self.terms)), np.float32)
        frame = pd.DataFrame(probs, index=adata.obs_names, columns=self.terms)
        return frame, (np.concatenate(scores) if scores else np.zeros(0)) if novelty else None

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
        level = min_confidence if max_error is None else self._level_for_error(max_error)
        # typicality only when asked for: scoring it costs ~15x the network's forward pass
        checks = not soft and novelty_rate is not None
        probs, scores = self._scores(adata, batch_size, min_gene_overlap, novelty=checks)
        if soft:
            return probs
        reference = (self.calibration_ or {}).get("novelty")
        typical = (
            typicality(scores, reference)
            if scores is not None and reference
            else np.full(len(probs), np.nan)
        )
        calls = decode(
            probs,
            self.module.subtree.cpu().numpy(),
            level,
            self.ontology,
            unlike=typical < novelty_rate if novelty_rate else None,
            labelled=self._labelled(),
        )
        calls["typicality"] = typical
        return calls

    def _level_for_error(self, max_error: float) -> float:
        curve = (self.calibration_ or {}).get("error_coverage")
        if curve is None:
            raise ValueError(
                "max_error needs the error this model made on reference cells held out from "
                "training, and it has none: train it with train_size < 1 or "
                "calibration_size > 0 (the defaults), with this version of sc_genept."
            )
        level = level_for_error(curve, max_error)
        if level is None:
            warn_caller(
                f"max_error={max_error} cannot be guaranteed with {curve['n_cells']} held-out "
                f"cells (at least {int(np.ceil(1 / max_error))} are needed): every cell is "
                "called at its surest term. Train with more cells or a larger "
                "calibration_size, or allow a larger error."
            )
            return 1.0
        return level

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
        if adata is None:
            curve = (self.calibration_ or {}).get("error_coverage")
            if curve is None:
                raise ValueError(
                    "This model kept no held-out cells (trained with train_size=1 and "
                    "calibration_size=0, or saved by an older sc_genept): pass adata and "
                    "labels_key."
                )
        else:
            if labels_key is None or labels_key not in adata.obs:
                raise KeyError(
                    f"labels_key={labels_key!r} is not a column of adata.obs: pass the column "
                    "with the cells' true CL ids or names."
                )
            # scored: cells whose true type is one of the model's terms
            truth, _ = self.ontology.map_labels(adata.obs[labels_key].astype(str))
            known = truth.isin(self.terms).to_numpy()
            probs = self.predict_proba(adata)[known].to_numpy().astype(np.float64)
            codes = pd.Index(self.terms).get_indexer(truth[known])
            curve = error_coverage(
                probs, codes, self.module.subtree.cpu().numpy(), self._labelled()
            )
        columns = ["levels", "error", "coverage", "bound_error"]
        return pd.DataFrame({c: curve[c] for c in columns if c in curve}).rename(
            columns={"levels": "level"}
        )

    # ---- persistence -------------------------------------------------------------------

    def save(self, dir_path: str | Path, *, overwrite: bool = False) -> None:
        """Save the model as a self-contained folder of data.

        ``model.safetensors`` holds the weights (a format that cannot carry code),
        ``model.json`` everything else, including the Cell Ontology terms the model uses,
        and ``manifest.json`` the sha256 of both, so that :meth:`load` refuses a damaged or
        edited folder. Nothing in the folder names another file or URL; no data, and no
        API key or other secret, is written.
        """
        path = Path(dir_path)
        if path.exists() and not path.is_dir():
            raise FileExistsError(f"{path} is a file; pass a folder to save the model in.")
        if path.exists() and any(path.iterdir()) and not overwrite:
            raise FileExistsError(f"{path} exists and is not empty; pass overwrite=True.")
        registry = _to_plain(self.registry_)
        registry["setup_args"]["ontology"] = OWN_ONTOLOGY
        meta = {
            "model": type(self).__name__,
            "sc_genept_version": _version(),
            "init_params": self.init_params_,
            "registry": registry,
            "embedding_provenance": self.embedding_provenance_,
            "gene_sets": self.gene_sets_,
            "ontology": {
                "version": self.ontology.version,
                "terms": self.ontology.to_dict(self.terms),
            },
            "is_trained": self.is_trained_,
            "calibration": self.calibration_,
            "history": {
                k: v.reset_index().to_dict(orient="list") for k, v in (self.history_ or {}).items()
            },
        }
        write_folder(
            path, self.module.state_dict(), json.loads(json.dumps(meta, default=_json_default))
        )

    @classmethod
    def load(
        cls, dir_path: str | Path, adata: AnnData | None = None, *, device: str = "cpu"
    ) -> GenePTClassifier:
        """Load a model folder written by :meth:`~sc_genept.model.GenePTClassifier.save`.

        The folder is read as data only: the weights from safetensors, the rest from JSON,
        both checked against the sha256 in ``manifest.json`` first. A folder with a missing,
        damaged or edited file, or whose metadata names a path or URL, is refused with a
        :class:`~sc_genept.model.ModelFolderError`; nothing outside the folder is read.

        Parameters
        ----------
        dir_path
            The folder :meth:`save` wrote.
        adata
            Optional query data to attach; its embeddings must come from the same gene
            table as the training data's, else a :class:`ValueError` says which differ.
        device
            Where to put the weights (``"cpu"``, ``"cuda"``, ``"cuda:1"`` …).
        """
        if not isinstance(dir_path, str | os.PathLike):
            raise TypeError(
                "dir_path must be the folder GenePTClassifier.save wrote (a str or Path), got "
                f"{type(dir_path).__name__}."
            )
        try:
            torch.device(device)
        except (RuntimeError, TypeError) as err:
            raise ValueError(
                f"device={device!r} is not a torch device: pass 'cpu', 'cuda' or "
                f"'cuda:<index>' ({err})."
            ) from None
        if adata is not None:
            check_adata(adata)
        path = Path(dir_path)
        meta, state = read_folder(path, device)
        if meta.get("model") != cls.__name__:
            raise ModelFolderError(f"{path} holds a {meta.get('model')!r}, not a {cls.__name__}.")
        try:
            ontology = CellOntology.from_dict(
                meta["ontology"]["terms"],
                version=str(meta["ontology"]["version"]),
                source=f"the model folder {path.name}",
            )
            registry = _from_plain(meta["registry"])
            registry["setup_args"]["ontology"] = ontology  # the model's own terms, not a path
            model = cls(None, registry=registry, **meta["init_params"]["non_kwargs"])
            registry["setup_args"]["ontology"] = OWN_ONTOLOGY
            _load_weights(model.module, state)
            model.calibration_ = meta.get("calibration")  # absent from older folders
            model.embedding_provenance_ = meta["embedding_provenance"]
            model.gene_sets_ = meta["gene_sets"]
            model.is_trained_ = bool(meta["is_trained"])
            model.history_ = {
                k: pd.DataFrame(v).set_index("epoch") for k, v in meta["history"].items()
            }
        except (KeyError, TypeError, ValueError, RuntimeError) as err:
            if isinstance(err, ModelFolderError):
                raise
            raise ModelFolderError(
                f"{path / 'model.json'} and its weights do not describe a GenePTClassifier "
                f"this sc_genept can rebuild ({type(err).__name__}: {err}). Save it again with "
                "this version."
            ) from err
        model.module.to(device).eval()
        if adata is not None:
            model._query(adata)
            model._attached = adata
        return model

    @classmethod
    def load_pretrained(
        cls, name: str, adata: AnnData | None = None, *, device: str = "cpu"
    ) -> GenePTClassifier:
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

    def _label_codes(self) -> np.ndarray:
        return (
            np.asarray(self.adata_manager.get_from_registry(REGISTRY_KEYS.LABELS_KEY))
            .ravel()
            .astype(int)
        )

    def _training_inputs(self, size: int = 4096) -> list[np.ndarray]:
        """Each input of the training data as one dense float32 array, read in blocks."""
        n_cells = self.adata.n_obs
        parts = [np.empty((n_cells, width), np.float32) for width in self.input_widths]
        bounds = np.cumsum(self.input_widths)[:-1]
        for start, x in zip(
            range(0, n_cells, size), self._input_batches(self.adata, size=size), strict=True
        ):
            for part, block in zip(parts, np.split(x, bounds, axis=1), strict=True):
                part[start : start + len(x)] = block
        return parts

    def _inputs(self, adata: AnnData, rows=slice(None), sources=None) -> np.ndarray:
        """The model's input for ``rows`` of ``adata``: its representations side by side.

        An expression input is put in the order of the model's genes, and genes the query
        lacks take their mean in the training data: "unknown", not "not expressed".
        ``sources`` (from :meth:`_input_sources`) spares re-checking ``adata`` per batch.
        """
        parts = []
        for key, x, columns, width in sources or self._input_sources(adata):
            x = x[rows]
            if columns is not None:
                x = _aligned(x, columns, self.gene_sets_[key]["mean_expression"])
            x = x.toarray() if sparse.issparse(x) else np.asarray(x)
            if x.shape[1] != width:
                raise ValueError(
                    f"obsm[{key!r}] has {x.shape[1]} columns; the model was trained on {width}."
                )
            parts.append(x.astype(np.float32, copy=False))
        return np.concatenate(parts, axis=1)

    def _input_sources(self, adata: AnnData) -> list[tuple]:
        """Each input of ``adata``, checked once: ``(key, matrix, columns, width)``.

        ``columns``: for an expression input whose genes differ from the model's, the model
        column of each of its genes; else ``None``.
        """
        sources = []
        for key, width in zip(self.embedding_keys, self.input_widths, strict=True):
            columns = None
            if self._is_expression(key):
                columns = _gene_columns(_gene_set(adata, key), self.gene_sets_[key])
            sources.append((key, _check_embedding(adata, key), columns, width))
        return sources

    def _is_expression(self, key: str) -> bool:
        """Whether the input ``key`` is the expression of genes (not an embedding)."""
        return self.gene_sets_.get(key, {}).get("kind") == "expression"

    def _input_batches(self, adata: AnnData, rows: np.ndarray | None = None, size: int = 4096):
        """:meth:`_inputs` in batches of ``size`` cells (bounded memory)."""
        rows = np.arange(adata.n_obs) if rows is None else np.asarray(rows)
        sources = self._input_sources(adata)
        for start in range(0, len(rows), size):
            yield self._inputs(adata, rows[start : start + size], sources)

    def _query(
        self, adata: AnnData | None, min_gene_overlap: float = DEFAULT_MIN_GENE_OVERLAP
    ) -> AnnData:
        """The data to predict on, after checking its embeddings come from the right gene table."""
        for candidate in (adata, self._attached, self.adata):
            if candidate is not None:
                adata = candidate
                break
        if adata is None:
            raise ValueError("Pass adata: this model was loaded without data.")
        for key, trained in self.embedding_provenance_.items():
            query = _provenance(adata, key)
            if trained and query is None:
                warn_caller(
                    f"adata.uns[{key!r}] has no gene-table provenance, so it cannot be checked "
                    "against the training data's; embed with sc.tl.genept_embed."
                )
            elif trained and query:
                # tables written before content hashes were recorded compare without one
                keys = [k for k in _PROVENANCE_KEYS if k != "sha256" or k in trained and k in query]
                differ = [f for f in keys if trained.get(f) != query.get(f)]
                if differ:
                    raise ValueError(
                        f"obsm[{key!r}] was made with another gene table than the model's training "
                        f"data (differs in {differ}: {[query.get(f) for f in differ]} vs "
                        f"{[trained.get(f) for f in differ]}). Re-embed with the model's table."
                    )
        overlap = None
        for key, trained in self.gene_sets_.items():
            query = _gene_set(adata, key)
            if query is None:
                warn_caller(
                    f"adata.uns[{key!r}] does not record which genes obsm[{key!r}] was made of, "
                    "so it cannot be checked against the model's genes; embed with "
                    "sc.tl.genept_embed(adata, genes=model.genes) or use sc.tl.genept_annotate."
                )
                continue
            extra = set(query["names"]) - set(trained["names"])
            if extra:
                raise ValueError(
                    f"obsm[{key!r}] was made of {query['n_genes']} genes, {len(extra)} of which "
                    f"the model was not trained on (e.g. {sorted(extra)[:5]}): inputs over "
                    "different genes are not comparable. Embed the query on the model's genes "
                    f"with sc.tl.genept_embed(adata, genes=model.genes, key_added={key!r}), or "
                    "let sc.tl.genept_annotate(adata, model=model) do it."
                )
            overlap = overlap or gene_overlap(trained, query["names"])
        if overlap:
            check_gene_overlap(overlap, min_gene_overlap)
        return adata


#: Weights a folder saved before the novelty check existed lacks: the check is then off.
_OPTIONAL_WEIGHTS = {"novelty_variance", "novelty_centroids"}


def _load_weights(module: GenePTClassifierModule, state: dict) -> None:
    missing, unexpected = module.load_state_dict(state, strict=False)
    if unexpected or set(missing) - _OPTIONAL_WEIGHTS:
        raise RuntimeError(
            f"the weights lack {sorted(set(missing) - _OPTIONAL_WEIGHTS)} and have "
            f"unexpected {sorted(unexpected)}"
        )


def _input_keys(embedding_keys: Sequence[str]) -> list[str]:
    return [f"input_{i}" for i in range(len(embedding_keys))]


def _check_embedding(adata: AnnData, key: str) -> np.ndarray:
    if key not in adata.obsm:
        hint = (
            " Run sc.tl.genept_embed(adata) first."
            if key == "X_genept"
            else " Compute it first, as for the training data."
        )
        raise KeyError(f"No obsm[{key!r}] in adata; it has {list(adata.obsm)}.{hint}")
    x = adata.obsm[key]
    if sparse.issparse(x):
        x = sparse.csr_matrix(x)
        values = x.data
    else:
        try:
            x = values = np.asarray(x, dtype=np.float32)
        except (TypeError, ValueError) as err:
            raise ValueError(
                f"obsm[{key!r}] must be a 2-D array of numbers ({err}): compute it again."
            ) from None
    if x.ndim != 2:
        raise ValueError(
            f"obsm[{key!r}] must be a 2-D array (cells × dimensions), got shape {x.shape}: "
            "compute it again."
        )
    if not np.isfinite(values).all():
        bad = (
            np.unique(x.tocoo().row[~np.isfinite(x.tocoo().data)])
            if sparse.issparse(x)
            else np.flatnonzero(~np.isfinite(x).all(axis=1))
        )
        raise ValueError(
            f"obsm[{key!r}] has NaN or infinite values in {len(bad)} cells (e.g. "
            f"{list(adata.obs_names[bad[:3]])}): embed again or drop those cells."
        )
    return x


def _train_arguments() -> set[str]:
    """What ``train(**trainer_kwargs)`` may pass on: scvi-tools' and Lightning's Trainer."""
    names = {"ckpt_path", "callbacks", "enable_checkpointing"}
    for function in (ScviTrainer.__init__, Trainer.__init__):
        names |= {
            p.name
            for p in inspect.signature(function).parameters.values()
            if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL) and p.name != "self"
        }
    return names


def _check_trainer_kwargs(trainer_kwargs: dict) -> None:
    """Refuse a misspelt training argument by name, before anything trains."""
    known = _train_arguments()
    own = [p for p in inspect.signature(GenePTClassifier.train).parameters if p != "self"]
    for name in trainer_kwargs:
        if name not in known:
            close = difflib.get_close_matches(name, [*own, *known], n=1)
            hint = f"; did you mean {close[0]!r}?" if close else "."
            raise TypeError(
                f"{name} is not an argument of GenePTClassifier.train or of Lightning's "
                f"Trainer{hint} See help(GenePTClassifier.train) for what it takes."
            )


def _stopping_options(
    trainer_kwargs: dict, early_stopping: bool, patience: int, validates: bool, verbose: bool
) -> None:
    """Early stopping on the validation loss, Lightning's (which says why it stopped if verbose)."""
    if validates:
        trainer_kwargs.setdefault("check_val_every_n_epoch", 1)
    if early_stopping:
        trainer_kwargs["callbacks"].append(
            EarlyStopping(monitor="validation_loss", patience=patience, mode="min", verbose=verbose)
        )


def _class_weights(counts: np.ndarray) -> torch.Tensor:
    """Each label's weight: inverse to its training cells (0 for a label without any)."""
    counts = np.asarray(counts, dtype=np.float32)
    return torch.as_tensor(np.where(counts > 0, counts.sum() / np.maximum(counts, 1), 0.0))


def _has_batches(loader) -> bool:
    """Whether a data module's ``val_dataloader()`` answer holds any batch."""
    if loader is None:
        return False
    return len(loader) > 0 if hasattr(loader, "__len__") else True


def _gene_columns(query_genes: dict | None, model_genes: dict) -> np.ndarray | None:
    """The model column of each query gene, or ``None`` when the genes are the model's own."""
    names = list(model_genes["names"])
    if query_genes is None or list(query_genes["names"]) == names:
        return None
    column = {g: i for i, g in enumerate(names)}
    return np.array([column[g] for g in query_genes["names"]], dtype=int)


def _aligned(x, columns: np.ndarray, mean_expression) -> np.ndarray:
    """Query expression put in the model's ``columns``; the model's other genes: their mean."""
    out = np.tile(np.asarray(mean_expression, dtype=np.float32), (x.shape[0], 1))
    out[:, columns] = x.toarray() if sparse.issparse(x) else x
    return out


def _gene_set(adata: AnnData, key: str) -> dict | None:
    """The genes an embedding was made of (names, mean expression, hash), if recorded."""
    info = adata.uns.get(key)
    gene_set = info.get("gene_set") if isinstance(info, dict) else None
    if not isinstance(gene_set, dict) or "sha256" not in gene_set:
        return None
    return {
        "kind": str(info.get("kind", "embedding")),
        "n_genes": int(gene_set["n_genes"]),
        "sha256": str(gene_set["sha256"]),
        "names": [str(g) for g in gene_set["names"]],
        "mean_expression": np.asarray(gene_set["mean_expression"], dtype=float).round(6).tolist(),
    }


def _provenance(adata: AnnData, key: str) -> dict | None:
    info = adata.uns.get(key)
    return (
        dict(info["gene_embeddings"])
        if isinstance(info, dict) and "gene_embeddings" in info
        else None
    )


def _to_plain(value):
    """JSON-able copy of a registry: numpy arrays and scalars become tagged lists / numbers."""
    if isinstance(value, dict):
        return {str(k): _to_plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_to_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return {"__ndarray__": value.tolist(), "dtype": str(value.dtype)}
    if isinstance(value, np.generic):
        return value.item()
    return value


def _from_plain(value):
    if isinstance(value, dict):
        if "__ndarray__" in value:
            return np.asarray(
                value["__ndarray__"], dtype=value["dtype"] if value["dtype"] != "object" else object
            )
        return {k: _from_plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_plain(v) for v in value]
    return value


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"Cannot store {type(value).__name__} in model.json")


def _version() -> str:
    from importlib.metadata import version

    return version("sc-genept")
