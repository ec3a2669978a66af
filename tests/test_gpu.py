"""Training on a CUDA GPU: skipped where there is none."""

import pytest
import torch
from test_training import FAST, accuracy, generated

from sc_genept.model import GenePTClassifier

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_gpu_training_matches_cpu_quality():
    adata = generated(n_per_type=200)
    GenePTClassifier.setup_anndata(adata, labels_key="cell_type")
    trained = {}
    for accelerator in ("cpu", "gpu"):
        model = GenePTClassifier(adata, n_hidden=16, n_members=2)
        model.train(accelerator=accelerator, devices=1, **{**FAST, "max_epochs": 5})
        trained[accelerator] = model
    gpu, cpu = trained["gpu"], trained["cpu"]
    assert gpu.module.network.input_mean.device.type == "cuda"
    assert accuracy(gpu, adata) >= accuracy(cpu, adata) - 0.02
    assert accuracy(gpu, adata) > 0.9
    assert (
        abs(
            gpu.history_["validation_loss"].iloc[-1, 0]
            - cpu.history_["validation_loss"].iloc[-1, 0]
        )
        < 0.1
    )
    # the saved model loads on the CPU and predicts as on the GPU
    probs = gpu.predict_proba(adata).to_numpy()
    gpu.module.cpu()
    torch.testing.assert_close(
        torch.as_tensor(gpu.predict_proba(adata).to_numpy()),
        torch.as_tensor(probs),
        atol=1e-4,
        rtol=1e-4,
    )


def test_gpu_training_moves_the_cells_to_the_gpu_once():
    # the training cells are put on the GPU once, so batches are indexed there
    from sc_genept.model._data import InMemoryCells

    adata = generated()
    GenePTClassifier.setup_anndata(adata, labels_key="cell_type")
    model = GenePTClassifier(adata, n_hidden=16, n_members=1)
    data = InMemoryCells(
        [adata.obsm["X_genept"]], model._label_codes(), model.terms, ["input_0"], batch_size=32
    )
    model.train(datamodule=data, accelerator="gpu", devices=1, **FAST)
    assert data.inputs[0].device.type == "cuda" and data.codes.device.type == "cuda"
    assert accuracy(model, adata) > 0.9
