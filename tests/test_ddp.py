"""Multi-process (DDP) training on the CPU: 2 processes talking over gloo."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

#: Run as ``python script.py OUT TESTS``; Lightning's DDP launcher runs it again as rank 1.
SCRIPT = textwrap.dedent(
    """
    import json, os, sys

    from sc_genept.model import GenePTClassifier

    sys.path.insert(0, sys.argv[2])  # the tests folder
    from test_training import Seen, accuracy, generated

    adata = generated(n_per_type=100)
    GenePTClassifier.setup_anndata(adata, labels_key="cell_type")
    model = GenePTClassifier(adata, n_hidden=16, n_members=2)
    seen = Seen(adata)
    model.train(
        max_epochs=4,
        batch_size=32,
        plan_kwargs={"lr": 0.01},
        early_stopping=False,
        accelerator="cpu",
        devices=2,
        strategy="ddp",
        num_threads=2,  # not what Lightning's launcher sets (cores / processes)
        callbacks=[seen],
        enable_progress_bar=False,
    )
    rank = int(os.environ.get("LOCAL_RANK", 0))
    result = {
        "rank": rank,
        "world_size": model.trainer.world_size,
        "seen": seen.epochs,
        "threads": sorted(set(seen.threads)),
        "train_cells": sorted(map(int, model.train_indices)),
        "accuracy": float(accuracy(model, adata)),
        "weights": [p.detach().double().sum().item() for p in model.module.parameters()],
        "trained": model.is_trained_,
        "epochs_logged": len((model.history_ or {}).get("train_loss", [])),
    }
    with open(os.path.join(sys.argv[1], f"rank{rank}.json"), "w") as f:
        json.dump(result, f)
    """
)


pytestmark = pytest.mark.slow  # minutes of training or processes: the full lane only


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ddp")
    script = folder / "train_ddp.py"
    script.write_text(SCRIPT)
    run = subprocess.run(
        [sys.executable, str(script), str(folder), str(Path(__file__).parent)],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=folder,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return [json.loads((folder / f"rank{r}.json").read_text()) for r in (0, 1)]


def test_each_rank_trains_on_its_own_half_of_the_cells_each_epoch(ranks):
    assert [r["world_size"] for r in ranks] == [2, 2]
    assert [r["threads"] for r in ranks] == [[2], [2]]  # train()'s thread count, in each rank
    train = set(ranks[0]["train_cells"])
    assert ranks[1]["train_cells"] == ranks[0]["train_cells"] and len(train) % 2 == 0
    orders = []
    for epoch in ("0", "1", "2"):
        first, second = (r["seen"][epoch] for r in ranks)
        assert len(first) == len(second) == len(train) // 2  # a half each, nothing seen twice
        assert not set(first) & set(second)
        assert set(first) | set(second) == train
        orders.append(first)
    assert orders[0] != orders[1] != orders[2]  # reshuffled every epoch


def test_ranks_end_with_the_same_trained_model(ranks):
    assert all(r["trained"] for r in ranks)
    np.testing.assert_allclose(ranks[0]["weights"], ranks[1]["weights"], rtol=1e-6)
    assert ranks[0]["accuracy"] > 0.9
    assert ranks[0]["epochs_logged"] == 4  # the history lives on rank 0
