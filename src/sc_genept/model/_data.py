"""What :meth:`~sc_genept.model.GenePTClassifier.train` reads: the ``CellData`` contract.

Any Lightning data module that has the members of :class:`CellData` trains a
:class:`~sc_genept.model.GenePTClassifier` (``model.train(datamodule=...)``): the cells may
come from memory (:class:`InMemoryCells`, the default), from a TileDB-SOMA experiment, or
from anywhere else. Sharding the training cells across DDP ranks is the data module's job.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np
import torch
from lightning.pytorch import LightningDataModule
from scvi import REGISTRY_KEYS

from sc_genept._checks import check_fraction, positive_int

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Sequence


@runtime_checkable
class CellData(Protocol):
    """The training-data contract of :class:`~sc_genept.model.GenePTClassifier`.

    Implemented by a :class:`~lightning.pytorch.LightningDataModule`. ``train`` calls
    :meth:`label_counts`, :meth:`standardization_batches` and :meth:`val_dataloader` (to
    learn whether there is validation) before Lightning sets the module up, and
    :meth:`calibration_set` after fitting; the dataloaders are then read by Lightning,
    once per epoch. A multi-process strategy runs ``train`` in every process: each
    builds its own data module, which reads its rank from the trainer (or
    ``torch.distributed``) when iterated.

    Attributes
    ----------
    labels
        The label vocabulary in code order: the model's ``terms`` (the categories, in order,
        of the labels column it was set up with).
    input_keys
        Batch keys of the inputs, in the model's input order (``input_0``, ``input_1``, …
        for its ``embedding_keys``).
    """

    labels: list[str]
    input_keys: list[str]

    def train_dataloader(self):
        """Batches of training cells, each a dict of tensors.

        ``{key: float32 (B, width) for each input key, "labels": int64 (B, 1)}``. Under
        DDP each rank yields its own shard, and all ranks the same number of batches.
        """

    def val_dataloader(self):
        """Validation batches as above; ``[]`` or ``None`` when there is no validation."""

    def label_counts(self) -> np.ndarray:
        """Training cells per label code (length ``len(labels)``), for class balancing."""

    def standardization_batches(self) -> Iterator[np.ndarray]:
        """Training inputs, concatenated in input order, float32, in bounded-size batches."""

    def calibration_set(self) -> tuple[np.ndarray, np.ndarray] | None:
        """Held-out inputs (concatenated) and their label codes, or ``None``."""


#: What a data module must have to train a model (the members of :class:`CellData`).
CONTRACT = (
    "labels",
    "input_keys",
    "train_dataloader",
    "val_dataloader",
    "label_counts",
    "standardization_batches",
    "calibration_set",
)


def check_cell_data(datamodule, labels: Sequence[str], input_keys: Sequence[str]) -> None:
    """Refuse a data module that lacks the contract or does not match the model's labels."""
    missing = [m for m in CONTRACT if not hasattr(datamodule, m)]
    if not isinstance(datamodule, LightningDataModule):
        missing.insert(0, "LightningDataModule (its base class)")
    if missing:
        raise TypeError(
            f"datamodule ({type(datamodule).__name__}) lacks {missing}: pass a "
            "LightningDataModule with the members of sc_genept.model.CellData."
        )
    if list(datamodule.labels) != list(labels):
        only_data = [t for t in datamodule.labels if t not in set(labels)]
        only_model = [t for t in labels if t not in set(datamodule.labels)]
        order = "" if only_data or only_model else " (same terms, another order)"
        raise ValueError(
            f"datamodule.labels differ from the model's terms{order}: only in the data "
            f"{only_data[:10]}, only in the model {only_model[:10]}. Make the data module from "
            "the model's terms (model.terms), in their order."
        )
    if list(datamodule.input_keys) != list(input_keys):
        raise ValueError(
            f"datamodule.input_keys {list(datamodule.input_keys)} are not the model's inputs "
            f"{list(input_keys)}."
        )


def stratified_split(codes: np.ndarray, train_size: float, rng: np.random.Generator):
    """Split the cells of each label: ``ceil(train_size · n)`` (at least 1) and the rest.

    The first part comes back shuffled, the second sorted.
    """
    train, val = [], []
    for code in np.unique(codes):
        idx = rng.permutation(np.flatnonzero(codes == code))
        n_train = max(1, int(np.ceil(train_size * len(idx))))
        train.append(idx[:n_train]), val.append(idx[n_train:])
    return rng.permutation(np.concatenate(train)), np.sort(np.concatenate(val)).astype(int)


def shard(cells: np.ndarray, rank: int, world_size: int) -> np.ndarray:
    """The share of ``cells`` of ``rank``, as :class:`~torch.utils.data.DistributedSampler` takes it.

    ``cells[rank::world_size]`` after padding ``cells`` with its own first cells to a multiple
    of ``world_size``: every rank gets as many cells (and so batches), which DDP needs.
    """
    if world_size == 1:
        return cells
    padded = np.resize(cells, -(-len(cells) // world_size) * world_size)
    return padded[rank::world_size]


class _Batches:
    """Batches of ``cells`` by tensor indexing, reshuffled per epoch, this rank's shard only.

    ``where()`` gives ``(epoch, rank, world_size)`` when iteration starts, so that each epoch
    (also after resuming from a checkpoint) has its own seeded order, the same on all ranks.
    """

    def __init__(self, data: InMemoryCells, cells: np.ndarray, shuffle: bool, where: Callable):
        self.data, self.cells, self.shuffle, self.where = data, cells, shuffle, where

    def _rows(self) -> np.ndarray:
        epoch, rank, world_size = self.where()
        cells = self.cells
        if self.shuffle:
            cells = np.random.default_rng([self.data.seed, epoch]).permutation(cells)
        return shard(cells, rank, world_size)

    def __len__(self) -> int:
        _, _, world_size = self.where()
        return -(-shard(self.cells, 0, world_size).size // self.data.batch_size)

    def __iter__(self):
        rows = torch.as_tensor(self._rows())
        for batch in rows.split(self.data.batch_size):
            yield self.data.batch(batch)


class InMemoryCells(LightningDataModule):
    """Cells held in memory as contiguous float32 tensors, split for training.

    The split is stratified by label: ``calibration_size`` of each label's cells are held
    out for temperature calibration, then ``train_size`` of the rest train and the others
    validate (all seeded by ``seed``). Training batches are drawn by tensor indexing from
    a fresh seeded permutation each epoch; under DDP each rank reads its own shard of it.

    Parameters
    ----------
    inputs
        One ``cells × width`` array per model input, in input order.
    codes
        Label code of each cell (its index in ``labels``).
    labels
        The label vocabulary (the model's terms).
    input_keys
        Batch keys of ``inputs``.
    train_size, calibration_size
        Shares of each label's cells, as in :meth:`~sc_genept.model.GenePTClassifier.train`.
    batch_size
        Cells per batch.
    seed
        Seeds the split and each epoch's order.
    """

    def __init__(
        self,
        inputs: Sequence[np.ndarray | torch.Tensor],
        codes: np.ndarray,
        labels: Sequence[str],
        input_keys: Sequence[str],
        *,
        train_size: float = 0.9,
        calibration_size: float = 0.1,
        batch_size: int = 128,
        seed: int = 0,
    ):
        check_fraction("train_size", train_size, "(0, 1]")
        check_fraction("calibration_size", calibration_size, "[0, 1)")
        positive_int("batch_size", batch_size)
        if len(inputs) != len(input_keys) or any(len(x) != len(codes) for x in inputs):
            raise ValueError(
                f"Pass one input per input key ({len(inputs)} inputs, {len(input_keys)} keys), "
                f"each with a row per label code ({[len(x) for x in inputs]} rows, "
                f"{len(codes)} codes)."
            )
        super().__init__()
        self.labels, self.input_keys = list(labels), list(input_keys)
        self.inputs = [torch.as_tensor(x, dtype=torch.float32).contiguous() for x in inputs]
        self.codes = torch.as_tensor(np.asarray(codes), dtype=torch.int64)[:, None]
        self.batch_size, self.seed = batch_size, seed
        codes = np.asarray(codes)
        rng = np.random.default_rng(seed)
        # calibration cells are held out from everything else: cells that chose the best
        # epoch would make the model look surer than it is on new data
        fit_idx, self.test_idx = stratified_split(codes, 1 - calibration_size, rng)
        self.train_idx, self.val_idx = (
            fit_idx[part] for part in stratified_split(codes[fit_idx], train_size, rng)
        )

    def setup(self, stage: str | None = None) -> None:
        # on a GPU the cells move there once, so that batches are indexed where they are used
        device = self.trainer.strategy.root_device if self.trainer is not None else None
        if device is not None and device.type == "cuda" and _fits(self.inputs, device):
            self.inputs = [x.to(device) for x in self.inputs]
            self.codes = self.codes.to(device)

    def batch(self, rows: torch.Tensor) -> dict[str, torch.Tensor]:
        """The batch of the cells ``rows``."""
        rows = rows.to(self.codes.device)
        batch = {k: x[rows] for k, x in zip(self.input_keys, self.inputs, strict=True)}
        batch[REGISTRY_KEYS.LABELS_KEY] = self.codes[rows]
        return batch

    def _where(self) -> tuple[int, int, int]:
        """``(epoch, rank, world_size)`` from the trainer, else from ``torch.distributed``."""
        if self.trainer is not None:
            trainer = self.trainer
            return trainer.current_epoch, trainer.global_rank, trainer.world_size
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            return 0, torch.distributed.get_rank(), torch.distributed.get_world_size()
        return 0, 0, 1

    def train_dataloader(self) -> Iterable[dict]:
        """Batches of training cells (this rank's shard), in a new seeded order each epoch."""
        return _Batches(self, self.train_idx, True, self._where)

    def val_dataloader(self) -> Iterable[dict] | list:
        """Batches of validation cells, in order; ``[]`` when there are none."""
        return _Batches(self, self.val_idx, False, self._where) if self.val_idx.size else []

    def label_counts(self) -> np.ndarray:
        codes = self.codes[torch.as_tensor(self.train_idx)].ravel().cpu().numpy()
        return np.bincount(codes, minlength=len(self.labels))

    def standardization_batches(self, size: int = 4096) -> Iterator[np.ndarray]:
        for start in range(0, len(self.train_idx), size):
            yield self.concatenated(self.train_idx[start : start + size])

    def calibration_set(self) -> tuple[np.ndarray, np.ndarray] | None:
        if not self.test_idx.size:
            return None
        rows = np.sort(self.test_idx)
        return self.concatenated(rows), self.codes[torch.as_tensor(rows)].ravel().cpu().numpy()

    def concatenated(self, rows: np.ndarray) -> np.ndarray:
        """The inputs of the cells ``rows`` side by side (the model's input matrix)."""
        rows = torch.as_tensor(rows).to(self.codes.device)
        return torch.cat([x[rows] for x in self.inputs], dim=1).cpu().numpy()


def _fits(tensors: Sequence[torch.Tensor], device: torch.device) -> bool:
    """Whether ``tensors`` take at most half of ``device``'s free memory."""
    free, _ = torch.cuda.mem_get_info(device)
    return sum(x.nbytes for x in tensors) <= free // 2
