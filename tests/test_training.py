"""How GenePTClassifier.train reads its cells (the CellData contract) and sets torch's threads."""

import os

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import torch
from lightning.pytorch.callbacks import Callback
from torch.utils.data import DistributedSampler

from sc_genept.model import GenePTClassifier
from sc_genept.model._data import InMemoryCells, shard
from sc_genept.model._threads import CELLS_PER_THREAD, cpu_threads

TERMS = ["CL:0000236", "CL:0000624", "CL:0000623", "CL:0000576"]
FAST = {
    "max_epochs": 3,
    "plan_kwargs": {"lr": 0.01},
    "batch_size": 32,
    "enable_progress_bar": False,
}


def generated(n_per_type: int = 75) -> ad.AnnData:
    """Cells of 4 types, 16 dims, each type apart along its own axis (also used by DDP/GPU tests)."""
    rng = np.random.default_rng(0)
    codes = np.repeat(np.arange(4), n_per_type)
    x = (6 * np.eye(4, 16)[codes] + rng.normal(size=(len(codes), 16))).astype(np.float32)
    names = [f"c{i}" for i in range(len(codes))]
    adata = ad.AnnData(obs=pd.DataFrame({"cell_type": np.asarray(TERMS)[codes]}, index=names))
    adata.obsm["X_genept"] = x
    return adata


@pytest.fixture
def cells() -> ad.AnnData:
    adata = generated()
    GenePTClassifier.setup_anndata(adata, labels_key="cell_type")
    return adata


class Seen(Callback):
    """Per epoch, the cells of each training batch (found from their inputs), and torch's threads."""

    def __init__(self, adata):
        self.cell_of_row = {r.tobytes(): i for i, r in enumerate(adata.obsm["X_genept"])}
        self.epochs, self.threads = {}, []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        cells = self.epochs.setdefault(trainer.current_epoch, [])
        cells += [self.cell_of_row[r.tobytes()] for r in batch["input_0"].cpu().numpy()]
        self.threads.append(torch.get_num_threads())


def accuracy(model, adata) -> float:
    """Share of cells whose most probable term is their label."""
    return model.predict(adata)["finest_ontology_term_id"].eq(adata.obs["cell_type"]).mean()


def _train(adata, callbacks=(), **kwargs) -> tuple[GenePTClassifier, Seen]:
    model = GenePTClassifier(adata, n_hidden=16, n_members=1)
    seen = Seen(adata)
    model.train(callbacks=[seen, *callbacks], **{**FAST, **kwargs})
    return model, seen


def test_every_training_cell_once_per_epoch_in_a_new_seeded_order(cells):
    model, seen = _train(cells, early_stopping=False)
    train = sorted(model.train_indices)
    orders = list(seen.epochs.values())
    assert len(orders) == 3
    assert all(sorted(order) == train for order in orders)
    assert orders[0] != orders[1] != orders[2]
    # batches hold the cells' own labels
    assert accuracy(model, cells) > 0.9
    _, again = _train(cells, early_stopping=False)
    assert list(again.epochs.values()) == orders  # same seed, same order
    _, other = _train(cells, early_stopping=False, seed=1)
    assert list(other.epochs.values()) != orders


@pytest.mark.parametrize(("n", "world_size"), [(10, 2), (11, 2), (10, 3), (7, 4), (5, 1)])
def test_shards_are_those_of_torch_distributed_sampler(n, world_size):
    cells = np.random.default_rng(0).permutation(100)[:n]
    for rank in range(world_size):
        sampler = DistributedSampler(range(n), num_replicas=world_size, rank=rank, shuffle=False)
        np.testing.assert_array_equal(shard(cells, rank, world_size), cells[list(sampler)])


def test_threads_are_chosen_for_the_call_and_restored(cells):
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        _, seen = _train(cells)
        assert set(seen.threads) == {1}  # 32-cell batches: one thread
        assert torch.get_num_threads() == 2
        _, seen = _train(cells, num_threads=3)
        assert set(seen.threads) == {3} and torch.get_num_threads() == 2
        # also when training fails
        with pytest.raises(ZeroDivisionError):
            _train(cells, callbacks=[Boom()])
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_prediction_threads_are_chosen_and_restored(cells):
    model, _ = _train(cells)
    seen = []
    model.module.network.register_forward_hook(lambda *_: seen.append(torch.get_num_threads()))
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        model.predict_proba(cells, batch_size=CELLS_PER_THREAD - 1)  # small: one thread
        assert set(seen) == {1} and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


class Boom(Callback):
    def on_train_batch_start(self, *args):
        raise ZeroDivisionError


def test_thread_rule_follows_batch_size_affinity_and_processes():
    allowed = os.sched_getaffinity(0)
    big = 64 * CELLS_PER_THREAD
    assert cpu_threads(CELLS_PER_THREAD - 1, "cpu", "auto") == 1  # smaller than a share
    alone = cpu_threads(big, "cpu", "auto")  # fewer when other programs keep CPUs busy
    assert 1 <= alone <= len(allowed)
    assert cpu_threads(big, "cpu", 2) == cpu_threads(big, "cpu", [0, 1])
    assert cpu_threads(big, "cpu", 2) == max(1, min(alone, len(allowed) // 2))
    try:
        os.sched_setaffinity(0, {min(allowed)})  # as a job scheduler would pin it
        assert cpu_threads(big, "cpu", "auto") == 1
    finally:
        os.sched_setaffinity(0, allowed)


def test_train_reads_a_given_datamodule(cells):
    model = GenePTClassifier(cells, n_hidden=16, n_members=1)
    data = InMemoryCells(
        [cells.obsm["X_genept"]],
        model._label_codes(),
        model.terms,
        ["input_0"],
        train_size=0.5,
        calibration_size=0.0,
        batch_size=16,
        seed=3,
    )
    model.train(datamodule=data, **{**FAST, "batch_size": 999})
    np.testing.assert_array_equal(model.train_indices, data.train_idx)
    assert len(data.train_idx) == 4 * 38  # its split (half of each type), not train()'s
    # no calibration cells: the temperature and the error curve come from its validation cells
    assert float(model.module.network.temperature) != 1.0
    assert model.calibration_["error_coverage"]["n_cells"] == cells.n_obs - len(data.train_idx)
    counts = data.label_counts()
    weights = model.trainer.lightning_module.loss_kwargs["class_weights"].numpy()
    np.testing.assert_allclose(weights[counts > 0], counts.sum() / counts[counts > 0])
    np.testing.assert_allclose(
        model.module.network.input_mean.numpy(),
        cells.obsm["X_genept"][data.train_idx].mean(0),
        atol=1e-5,
    )
    assert accuracy(model, cells) > 0.9


def test_a_datamodule_without_the_contract_is_refused_by_name(cells):
    model = GenePTClassifier(cells, n_hidden=16, n_members=1)
    with pytest.raises(TypeError, match=r"lacks \[.*'labels', 'input_keys'.*'calibration_set'\]"):
        model.train(datamodule=object())
    data = InMemoryCells(
        [cells.obsm["X_genept"]], model._label_codes(), model.terms[::-1], ["input_0"]
    )
    with pytest.raises(ValueError, match="another order"):
        model.train(datamodule=data)
    data.labels = [*model.terms[:-1], "CL:0000540"]
    with pytest.raises(
        ValueError, match=rf"only in the data \['CL:0000540'\].*'{model.terms[-1]}'"
    ):
        model.train(datamodule=data)
    data.labels, data.input_keys = model.terms, ["input_1"]
    with pytest.raises(ValueError, match="input_keys"):
        model.train(datamodule=data)
    assert not model.is_trained_
    with pytest.raises(ValueError, match=r"one input per input key \(1 inputs, 2 keys\)"):
        InMemoryCells([cells.obsm["X_genept"]], model._label_codes(), model.terms, ["a", "b"])


def test_without_validation_cells_training_runs_to_the_end(cells):
    with pytest.warns(UserWarning, match="No validation cells .*early stopping is off"):
        model, seen = _train(cells, train_size=1.0)
    assert len(seen.epochs) == FAST["max_epochs"]
    assert "validation_loss" not in model.history_
    assert accuracy(model, cells) > 0.9


def test_a_label_with_too_few_training_cells_is_named(recwarn):
    """sc_genept names the rare type by CL name; scvi-tools' warning (an internal code, the
    registered cells rather than the training ones) does not reach the user."""
    adata = generated()
    adata.obs["cell_type"] = adata.obs["cell_type"].astype(str)
    adata.obs.iloc[:2, 0] = "CL:0000084"  # two T cells
    GenePTClassifier.setup_anndata(adata, labels_key="cell_type")
    model = GenePTClassifier(adata, n_hidden=16, n_members=1)
    with pytest.warns(UserWarning, match=r"1 cell types have fewer than 3 training cells \(T cell"):
        model.train(train_size=1.0, calibration_size=0.0, **FAST)
    assert not [w for w in recwarn if "_scvi_labels" in str(w.message)]
