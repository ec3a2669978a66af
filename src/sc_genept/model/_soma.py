"""Streaming training data from a TileDB-SOMA experiment (the CELLxGENE census format).

:class:`SomaCells` is a Lightning data module over the cells of a SOMA experiment that pass
an ``obs`` filter: it reads labels from ``obs`` alone (the per-label cap and the splits are
decided there, before any expression is read), then streams the expression in shuffled
blocks read with tiledbsoma's own array reads and embeds each mini-batch with GenePT-w on
the fly (or reads a stored embedding). :meth:`GenePTClassifier.train
<sc_genept.model.GenePTClassifier.train>` consumes it through ``datamodule=``.

Why tiledbsoma itself: annbatch needs Python ≥ 3.12 (sc_genept supports 3.11) and reads
AnnData stores it writes itself, so a census user would first copy the data out of SOMA.
tiledbsoma-ml reads SOMA where it is, but its public API takes a query and decides the
cell order and the split across DDP ranks itself (the same order every epoch, the
node-local rank), and cannot read a stored ``obsm`` embedding; driving it the way this
module needs took its private modules. The stream here is what is left: a shuffled list
of joinids, one share per rank and worker, and one ``X.read(coords=...)`` per
``io_batch_size`` cells.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader

from sc_genept._checks import check_fraction, positive_int
from sc_genept._record import EmbeddingRecord
from sc_genept.model._soma_stream import (
    Embedder,
    EpochLoader,
    Locator,
    Stream,
    open_experiment,
    read_obs,
    read_rows,
    soma,
)

if TYPE_CHECKING:
    from anndata import AnnData

    from sc_genept.genes import GeneEmbeddings

#: Cells read (and embedded) at a time outside the training stream.
_READ_ROWS = 4096


class SomaCells(LightningDataModule):
    """Cells of a TileDB-SOMA experiment, streamed to :class:`~sc_genept.model.GenePTClassifier`.

    The cells are those ``obs_value_filter`` selects (e.g. primary data of one tissue and
    assay in the CELLxGENE census), at most ``max_cells_per_label`` of each label, drawn
    at random with ``seed`` from ``obs`` alone. They are split once, per label, into
    training, validation and calibration cells. For the training batches,
    every epoch the training cells are cut into blocks of ``shuffle_chunk_size``
    contiguous cells, the blocks shuffled (a new order every epoch, from ``seed``), read
    ``io_batch_size`` cells at a time and shuffled again cell by cell, so each batch mixes
    cells from all over the experiment rather than from one dataset. Under DDP and with
    DataLoader workers each process reads its own share of the epoch's order (every rank
    as many cells; the rank from the trainer, ``torch.distributed`` or the
    ``RANK``/``WORLD_SIZE`` variables).

    Each batch is embedded on the fly with GenePT-w from the counts of ``layer``, as
    :func:`~sc_genept.tl.genept_embed` embeds the same cells, or read from a stored
    embedding (``embedding``).

    Parameters
    ----------
    experiment
        URI of a SOMA experiment, or an open ``tiledbsoma.Experiment`` (e.g.
        ``census["census_data"]["homo_sapiens"]``).
    labels_key
        ``obs`` column of Cell Ontology ids (or names) to train on, e.g.
        ``"cell_type_ontology_term_id"``.
    obs_value_filter
        SOMA value filter on ``obs``, e.g. ``"is_primary_data == True and tissue_general
        == 'blood'"``. Default: all cells.
    measurement_name
        Measurement holding the expression (``"RNA"`` in the census).
    layer
        ``X`` layer to embed (``"raw"`` counts in the census; ``"data"`` in experiments
        written by ``tiledbsoma.io.from_anndata``).
    inputs
        The model's inputs, as in :func:`~sc_genept.tl.genept_annotate`:
        ``"genept+expression"`` (the default when embedding on the fly) also serves the
        log-normalised expression of the embedded genes beside the embedding (inputs
        ``key`` and ``key + "_expression"``); ``"genept"`` the embedding alone (the only
        choice with a stored ``embedding``).
    embedding
        Name of an ``obsm`` array of the measurement holding a stored embedding (cells ×
        dimensions) to read instead of embedding ``layer``.
    embedding_record
        With ``embedding``: the ``uns`` record of the :func:`~sc_genept.tl.genept_embed`
        run that made it (``adata.uns["X_genept"]``), so the model knows its genes.
    gene_embeddings
        Gene table to embed with: a name, a path or a
        :class:`~sc_genept.genes.GeneEmbeddings`.
    var_names
        ``var`` column of gene names or Ensembl ids. Default: ``"feature_name"`` (census)
        if there is one, else ``"var_id"`` (``tiledbsoma.io.from_anndata``).
    genes
        Embed on these table genes only (e.g. a trained model's
        :attr:`~sc_genept.model.GenePTClassifier.genes`). Default: every table gene the
        experiment has.
    normalize
        As in :func:`~sc_genept.tl.genept_embed`: raw counts are library-size normalised
        and log1p'd, normalised values are used as they are.
    max_cells_per_label
        Cap on the cells of each label (balance: a common type no longer drowns the rare
        ones). Default: no cap.
    validation_size, calibration_size
        Share of each label's cells set aside for validation (early stopping) and for
        temperature calibration; calibration cells are held in memory.
    batch_size
        Cells per training step.
    shuffle_chunk_size, io_batch_size
        Shuffling granularity: contiguous cells read as one block, and
        cells read (and shuffled together) at a time; ``io_batch_size`` must be a multiple
        of ``shuffle_chunk_size`` (and each read is rounded down to whole batches). Smaller
        blocks shuffle more finely; larger reads mix more blocks and read faster.
    num_workers
        DataLoader worker processes (each reads and embeds its own share).
    standardization_cells
        Training cells (a seeded sample) the input standardisation is learned from.
    prototype_cells
        Cells (at least one of each label) of :meth:`prototype`.
    ontology
        Cell Ontology the labels are mapped with (as in
        :meth:`~sc_genept.model.GenePTClassifier.setup_anndata`).
    key
        ``obsm`` key of the embedding in :meth:`prototype`; ``keys`` are the model's
        ``embedding_keys``.
    seed
        Seeds the cap, the splits and the shuffle: the same seed gives the same cells in
        the same order.

    Attributes
    ----------
    labels
        The model's label set in code order: the labels of the selected cells (Cell
        Ontology ids) and their ancestors, as
        :meth:`~sc_genept.model.GenePTClassifier.setup_anndata` orders them.
    leaf_labels
        The labels of the selected cells.
    keys
        ``obsm`` keys of the model's inputs in :meth:`prototype` (its ``embedding_keys``).

    Examples
    --------
    >>> cells = SomaCells(
    ...     census["census_data"]["homo_sapiens"],
    ...     labels_key="cell_type_ontology_term_id",
    ...     obs_value_filter="is_primary_data == True and tissue_general == 'blood'",
    ...     max_cells_per_label=2_000,
    ... )
    >>> reference = cells.prototype()
    >>> GenePTClassifier.setup_anndata(
    ...     reference, labels_key="cell_type_ontology_term_id", embedding_keys=cells.keys
    ... )
    >>> model = GenePTClassifier(reference)
    >>> model.train(datamodule=cells)
    """

    def __init__(
        self,
        experiment,
        *,
        labels_key: str,
        obs_value_filter: str | None = None,
        measurement_name: str = "RNA",
        layer: str = "raw",
        inputs: Literal["genept+expression", "genept"] | None = None,
        embedding: str | None = None,
        embedding_record: dict | None = None,
        gene_embeddings: str | Path | GeneEmbeddings = "default",
        var_names: str | None = None,
        genes: Sequence[str] | None = None,
        normalize: bool = True,
        max_cells_per_label: int | None = None,
        validation_size: float = 0.05,
        calibration_size: float = 0.05,
        batch_size: int = 128,
        shuffle_chunk_size: int = 64,
        io_batch_size: int = 2**14,
        num_workers: int = 0,
        standardization_cells: int = 50_000,
        prototype_cells: int = 2_000,
        ontology: str = "bundled",
        key: str = "X_genept",
        seed: int = 0,
    ):
        super().__init__()
        soma()  # the install hint before anything else
        for name, value in [
            ("batch_size", batch_size),
            ("shuffle_chunk_size", shuffle_chunk_size),
            ("io_batch_size", io_batch_size),
            ("standardization_cells", standardization_cells),
            ("prototype_cells", prototype_cells),
        ]:
            positive_int(name, value)
        if max_cells_per_label is not None:
            positive_int("max_cells_per_label", max_cells_per_label)
        if not isinstance(num_workers, int) or num_workers < 0:
            raise ValueError(f"num_workers must be an integer ≥ 0, got {num_workers!r}.")
        check_fraction("validation_size", validation_size, "[0, 1)")
        check_fraction("calibration_size", calibration_size, "[0, 1)")
        if validation_size + calibration_size >= 1:
            raise ValueError(
                f"validation_size + calibration_size must be below 1 (got {validation_size} + "
                f"{calibration_size}): no cells would be left to train on."
            )
        if io_batch_size % shuffle_chunk_size:
            raise ValueError(
                f"io_batch_size ({io_batch_size}) must be a multiple of shuffle_chunk_size "
                f"({shuffle_chunk_size})."
            )
        self.labels_key = labels_key
        self.obs_value_filter = obs_value_filter
        self.batch_size = batch_size
        self.shuffle_chunk_size = shuffle_chunk_size
        self.io_batch_size = io_batch_size
        self.num_workers = num_workers
        if inputs is None:
            inputs = "genept" if embedding is not None else "genept+expression"
        if inputs not in ("genept+expression", "genept"):
            raise ValueError(f"inputs must be 'genept+expression' or 'genept', not {inputs!r}.")
        if inputs == "genept+expression" and embedding is not None:
            raise ValueError(
                "A stored embedding comes without the expression of its genes: pass "
                "inputs='genept' with embedding=, or embedding=None to embed on the fly."
            )
        self.key = key
        self.keys = [key, f"{key}_expression"] if inputs == "genept+expression" else [key]
        self.seed = seed
        self._epoch = 0
        rng = np.random.default_rng(seed)
        if isinstance(experiment, str | Path):
            with open_experiment(experiment) as exp:
                obs = self._read_experiment(exp, measurement_name, layer, embedding, var_names)
        else:
            obs = self._read_experiment(experiment, measurement_name, layer, embedding, var_names)
        self._select(obs, max_cells_per_label, validation_size, calibration_size, ontology, rng)
        self._embedder = (
            None
            if embedding is not None
            else Embedder.plan(
                self._var_names,
                self._var_column,
                gene_embeddings,
                genes,
                expression=len(self.keys) > 1,
            )
        )
        self._prototype = self._make_prototype(
            prototype_cells, gene_embeddings, genes, normalize, embedding_record, rng
        )
        if self._embedder is not None:
            # every batch must be of the prototype's kind (counts or normalised values);
            # None: values as they are, unchecked
            counts = bool(EmbeddingRecord.read(self._prototype, key).log_normalized)
            self._embedder.normalize = counts if normalize else None
        self._standardization_ids = np.sort(
            rng.choice(self._train, min(standardization_cells, len(self._train)), replace=False)
        )

    # ---- reading obs and var ---------------------------------------------------------------

    def _read_experiment(self, exp, measurement_name, layer, embedding, var_names):
        """Locate the array to read and its columns; the selected cells' ids and labels."""
        if measurement_name not in exp.ms:
            raise KeyError(
                f"No measurement {measurement_name!r} in the experiment; it has "
                f"{sorted(exp.ms.keys())}: pass measurement_name=."
            )
        ms = exp.ms[measurement_name]
        if embedding is None:
            if layer not in ms.X:
                raise KeyError(
                    f"No X layer {layer!r} in measurement {measurement_name!r}; it has "
                    f"{sorted(ms.X.keys())}: pass layer= (the census's counts are 'raw', "
                    "tiledbsoma.io.from_anndata writes 'data')."
                )
            self._locator = Locator.create(exp, measurement_name, layer, "X")
            var = ms.var.read().concat().to_pandas()
            self._var_column = var_names or next(
                (c for c in ("feature_name", "var_id") if c in var.columns), None
            )
            if self._var_column not in var.columns:
                asked = repr(var_names) if var_names else "'feature_name' or 'var_id'"
                raise KeyError(
                    f"No var column {asked} of gene names; columns: "
                    f"{list(var.columns)}: pass var_names=<column of symbols or Ensembl ids>."
                )
            var = var.sort_values("soma_joinid")
            self._var_ids = var["soma_joinid"].to_numpy(np.int64)
            self._var_names = var[self._var_column].astype(str).to_numpy()
        else:
            if "obsm" not in ms or embedding not in ms.obsm:
                have = sorted(ms.obsm.keys()) if "obsm" in ms else []
                raise KeyError(
                    f"No obsm array {embedding!r} in measurement {measurement_name!r}; it has "
                    f"{have}: pass embedding=None to embed the counts on the fly."
                )
            self._locator = Locator.create(exp, measurement_name, embedding, "obsm")
            width = ms.obsm[embedding].shape[1]
            self._var_ids = np.arange(width, dtype=np.int64)
            self._var_names = self._var_column = None
        columns = [f.name for f in exp.obs.schema]
        if self.labels_key not in columns:
            raise KeyError(
                f"No column {self.labels_key!r} in the experiment's obs; columns: {columns}: "
                "pass labels_key= (the census's is 'cell_type_ontology_term_id')."
            )
        obs = read_obs(exp, self.obs_value_filter, columns, ["soma_joinid", self.labels_key])
        if obs.empty:
            raise ValueError(
                f"The obs filter {self.obs_value_filter!r} selects no cells: check its column "
                "names and values (e.g. exp.obs.read(column_names=[...]).concat().to_pandas())."
            )
        return obs

    def _select(self, obs, cap, validation_size, calibration_size, ontology, rng) -> None:
        """Map labels, apply the cap and split, from ``obs`` alone."""
        from sc_genept.ontology import CellOntology

        values = obs[self.labels_key]
        missing = int(values.isna().sum())
        if missing:
            raise ValueError(
                f"{missing} selected cells have no label in obs[{self.labels_key!r}]: select "
                "labelled cells only with obs_value_filter."
            )
        cl = CellOntology.load(ontology)
        unique = pd.unique(values.astype(str))
        ids, unmapped = cl.map_labels(pd.Series(unique))
        if unmapped:
            raise ValueError(
                f"{len(unmapped)} labels in obs[{self.labels_key!r}] match no single term of "
                f"{cl!r}: {unmapped[:20]}. Leave those cells out with obs_value_filter (e.g. "
                f"\"{self.labels_key} != 'unknown'\")."
            )
        leaf = pd.Series(np.asarray(ids, dtype=object), index=unique)
        leaves = sorted(set(leaf))
        if len(leaves) < 2:
            raise ValueError(
                f"All selected cells have one label ({leaves}): a classifier needs at least two "
                "cell types; widen obs_value_filter."
            )
        # the model's label set: the labels and their ancestors, as setup_anndata orders them
        self.labels = sorted(
            set(leaves).union(*(cl.ancestors(t) for t in leaves)), key=lambda t: (cl.depth(t), t)
        )
        code_of = {t: i for i, t in enumerate(self.labels)}
        codes = leaf[values.astype(str)].map(code_of).to_numpy(np.int64)
        joinids = obs["soma_joinid"].to_numpy(np.int64)
        # a random rank within each label: the cap keeps the first ranks, the splits cut them
        order = rng.permutation(len(joinids))
        rank = np.empty(len(joinids), dtype=np.int64)
        rank[order] = pd.Series(codes[order]).groupby(codes[order]).cumcount().to_numpy()
        kept = np.bincount(codes, minlength=len(self.labels))
        if cap is not None:
            kept = np.minimum(kept, cap)
        # every label keeps a training cell (the model's label set is the training labels')
        n_cal = np.minimum(np.round(kept * calibration_size), np.maximum(kept - 1, 0))
        n_val = np.minimum(np.round(kept * validation_size), np.maximum(kept - 1 - n_cal, 0))
        part = np.zeros(len(joinids), dtype=np.int64)  # 0: training
        part[rank < (n_cal + n_val)[codes]] = 1  # validation
        part[rank < n_cal[codes]] = 2  # calibration
        part[rank >= kept[codes]] = -1  # over the cap
        sort = np.argsort(joinids)
        self._ids, self._codes = joinids[sort], codes[sort]
        part = part[sort]
        self._train, self._val, self._cal = (self._ids[part == p] for p in (0, 1, 2))
        self.leaf_labels = leaves

    def _codes_of(self, joinids: np.ndarray) -> np.ndarray:
        return self._codes[np.searchsorted(self._ids, joinids)]

    # ---- the contract GenePTClassifier.train reads --------------------------------------

    @property
    def input_keys(self) -> list[str]:
        """Batch keys of the inputs, as the model names them."""
        from sc_genept.model._inputs import _input_keys

        return _input_keys(self.keys)

    @property
    def n_cells(self) -> dict[str, int]:
        """Cells selected for training, validation and calibration."""
        return {
            "train": len(self._train),
            "validation": len(self._val),
            "calibration": len(self._cal),
        }

    def label_counts(self) -> np.ndarray:
        """Training cells per label code."""
        return np.bincount(self._codes_of(self._train), minlength=len(self.labels))

    def train_dataloader(self) -> DataLoader:
        """Shuffled training batches; a new order every epoch."""
        return self._loader(self._train, shuffle=True)

    def val_dataloader(self) -> DataLoader | list:
        """Validation batches in experiment order (empty without validation cells)."""
        return self._loader(self._val, shuffle=False) if len(self._val) else []

    def standardization_batches(self) -> Iterator[np.ndarray]:
        """Inputs of a seeded sample of training cells, ``_READ_ROWS`` at a time."""
        for start in range(0, len(self._standardization_ids), _READ_ROWS):
            yield self._inputs(self._standardization_ids[start : start + _READ_ROWS])

    def calibration_set(self) -> tuple[np.ndarray, np.ndarray] | None:
        """Inputs and label codes of the calibration cells (in memory), or None."""
        if not len(self._cal):
            return None
        inputs = np.concatenate(
            [
                self._inputs(self._cal[s : s + _READ_ROWS])
                for s in range(0, len(self._cal), _READ_ROWS)
            ]
        )
        return inputs, self._codes_of(self._cal)

    def prototype(self) -> AnnData:
        """A small in-memory reference to build the model with.

        Cells of every label (``prototype_cells`` at most, at least one per label), their
        inputs in ``obsm`` (the embedding in ``obsm[key]`` with its ``uns`` record, the genes
        it is made of; with ``inputs="genept+expression"`` their expression in
        ``obsm[key + "_expression"]``) and their labels (CL ids) in ``obs[labels_key]``: pass
        it, with ``embedding_keys=cells.keys``, to
        :meth:`~sc_genept.model.GenePTClassifier.setup_anndata` and
        :class:`~sc_genept.model.GenePTClassifier`, then train with ``datamodule=self``.
        """
        return self._prototype.copy()

    def _loader(self, ids: np.ndarray, *, shuffle: bool) -> DataLoader:
        stream = Stream(
            locator=self._locator,
            ids=ids,
            codes=self._codes_of(ids),
            var_ids=self._var_ids,
            embedder=self._embedder,
            input_keys=self.input_keys,
            num_workers=self.num_workers,
            batch_size=self.batch_size,
            io_batch_size=self.io_batch_size,
            shuffle_chunk_size=self.shuffle_chunk_size,
            shuffle=shuffle,
            seed=self.seed,
        )
        return EpochLoader(stream, self)

    def _where(self, *, advance: bool = True) -> tuple[int, int | None, int | None]:
        """``(epoch, rank, world_size)`` of the pass about to start.

        From the trainer when there is one (its global rank); else a count of passes, and
        the rank left to :func:`rank_and_world_size`.
        """
        trainer = getattr(self, "trainer", None)
        if trainer is not None:
            return int(trainer.current_epoch), int(trainer.global_rank), int(trainer.world_size)
        epoch = self._epoch
        self._epoch += advance
        return epoch, None, None

    # ---- reading cells outside the stream ------------------------------------------------

    def _rows(self, joinids: np.ndarray):
        """``X`` (CSR, var order) or the stored embedding (dense) of these cells, in order."""
        with self._locator.open() as (array, _):
            matrix = read_rows(array, joinids, self._var_ids)
        return matrix if self._embedder is not None else matrix.toarray().astype(np.float32)

    def _inputs(self, joinids: np.ndarray) -> np.ndarray:
        """The model's input matrix of these cells: its inputs side by side."""
        rows = self._rows(joinids)
        return rows if self._embedder is None else np.concatenate(self._embedder(rows), axis=1)

    def _make_prototype(self, n, gene_embeddings, genes, normalize, record, rng) -> AnnData:
        from anndata import AnnData

        codes = self._codes_of(self._train)
        # one cell of each training label first, then a seeded sample of the rest
        first = np.unique(codes, return_index=True)[1]
        rest = np.setdiff1d(np.arange(len(codes)), first)
        extra = rng.choice(rest, max(0, min(n - len(first), len(rest))), replace=False)
        joinids = np.sort(self._train[np.concatenate([first, extra]).astype(np.int64)])
        labels = pd.Categorical(
            np.asarray(self.labels, dtype=object)[self._codes_of(joinids)],
            categories=self.leaf_labels,
        )
        obs = pd.DataFrame({self.labels_key: labels}, index=joinids.astype(str))
        obs.index.name = "soma_joinid"
        rows = self._rows(joinids)
        if self._embedder is None:
            adata = AnnData(obs=obs, obsm={self.key: rows})
            if record is not None:
                adata.uns[self.key] = dict(record)
            return adata
        # the reference is embedded by genept_embed itself: its record (genes, their mean
        # expression, the table's provenance) is what a query is later checked against
        from sc_genept._embedding import cell_embedding

        with warnings.catch_warnings():  # names may repeat: genept_embed sums their columns
            warnings.filterwarnings("ignore", message=".*not unique", category=UserWarning)
            counts = AnnData(rows, obs=obs, var=pd.DataFrame(index=self._var_names))
        expression = len(self.keys) > 1
        embedded = cell_embedding(
            counts,
            gene_embeddings=gene_embeddings,
            genes=genes,
            normalize=normalize,
            expression=expression,
        )
        adata = AnnData(obs=obs)
        embedded.store(adata, self.key)  # self.keys[1] is its "_expression"
        return adata
