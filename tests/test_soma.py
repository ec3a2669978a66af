"""Streaming training from a TileDB-SOMA experiment (the census format), on local stand-ins.

Two experiments are written with ``tiledbsoma.io.from_anndata``, as the census is laid out:

- ``pbmc``: scanpy's 700 real PBMCs (log-normalised ``raw``, CL labels, and their GenePT-w
  embedding stored in ``obsm``), split into two "datasets" stored one after the other, with
  census-like ``is_primary_data``, ``tissue`` and ``assay`` columns;
- ``counts``: 150 real 10x cells (celltypist's sample, raw integer counts over 32,786
  genes), for the on-the-fly normalisation.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scanpy as sc

import sc_genept

tiledbsoma = pytest.importorskip("tiledbsoma")
tiledbsoma_io = pytest.importorskip("tiledbsoma.io")

from file_server import FileServer  # noqa: E402  (a real HTTP server on 127.0.0.1)

from sc_genept.model import SomaCells  # noqa: E402

LABELS = "cell_type_ontology_term_id"
PRIMARY_BLOOD = "is_primary_data == True and tissue == 'blood'"


@pytest.fixture(scope="module")
def pbmc_soma(tmp_path_factory):
    """(uri, the AnnData written: experiment row i is soma_joinid i)."""
    pbmc = sc_genept.datasets.pbmc68k_reduced()
    sc.tl.genept_embed(pbmc, use_raw=True)
    rng = np.random.default_rng(0)
    obs = pbmc.obs[[LABELS]].copy()
    obs["dataset_id"] = np.where(rng.random(pbmc.n_obs) < 0.5, "A", "B")
    obs["is_primary_data"] = rng.random(pbmc.n_obs) > 0.15  # the rest: duplicates
    obs["tissue"] = np.where(rng.random(pbmc.n_obs) < 0.8, "blood", "bone marrow")
    obs["assay"] = np.where(obs["dataset_id"] == "A", "10x 3' v1", "10x 3' v2")
    # a fifth of each label held out, to test the models trained on the rest
    held_out = np.zeros(pbmc.n_obs, dtype=bool)
    for label in obs[LABELS].unique():
        held_out[rng.permutation(np.flatnonzero(obs[LABELS] == label))[::5]] = True
    obs["held_out"] = held_out
    # the census stores each dataset's cells together: a reader in storage order would
    # train on one dataset, then the other
    order = np.argsort(obs["dataset_id"].to_numpy(), kind="stable")
    adata = ad.AnnData(
        pbmc.raw.X[order],
        obs=obs.iloc[order],
        var=pbmc.raw.var[[]],
        obsm={"X_genept": pbmc.obsm["X_genept"][order]},
    )
    uri = str(tmp_path_factory.mktemp("soma") / "pbmc")
    tiledbsoma_io.from_anndata(uri, adata, measurement_name="RNA")
    return uri, adata


@pytest.fixture(scope="module")
def counts_soma(tmp_path_factory):
    import celltypist

    samples = os.path.join(os.path.dirname(celltypist.__file__), "data", "samples")
    counts = pd.read_csv(os.path.join(samples, "sample_cell_by_gene.csv"), index_col=0, nrows=150)
    adata = ad.AnnData(
        counts.to_numpy(np.int32),
        obs=pd.DataFrame(index=counts.index),
        var=pd.DataFrame(index=counts.columns),
    )
    # the sample has no labels; two stand-in types, enough to make a label set
    adata.obs[LABELS] = np.where(np.arange(adata.n_obs) % 2, "CL:0000084", "CL:0000236")
    uri = str(tmp_path_factory.mktemp("soma") / "counts")
    tiledbsoma_io.from_anndata(uri, adata, measurement_name="RNA")
    return uri, adata


def _cells(uri, **kwargs) -> SomaCells:
    options = {
        "labels_key": LABELS,
        "layer": "data",
        "batch_size": 32,
        "shuffle_chunk_size": 8,
        "io_batch_size": 256,
        "validation_size": 0.1,
        "calibration_size": 0.1,
    }
    return SomaCells(uri, **{**options, **kwargs})


def _rows_to_cells(rows: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """The reference row (cell) each row is, checking that it is that row exactly."""
    match = (rows @ reference.T).argmax(axis=1)
    np.testing.assert_allclose(rows, reference[match], atol=1e-6, rtol=0)
    return match


def _epoch(loader, reference) -> list[np.ndarray]:
    """The cells (experiment rows) of each batch of one pass, found by their inputs."""
    return [_rows_to_cells(b["input_0"].numpy(), reference) for b in loader]


# ---- obs: filter, cap, splits -------------------------------------------------------------


def test_filter_cap_and_splits_come_from_obs(pbmc_soma):
    uri, adata = pbmc_soma
    cells = _cells(uri, obs_value_filter=PRIMARY_BLOOD, max_cells_per_label=40, seed=1)
    obs = adata.obs.reset_index(drop=True)
    selected = obs.index[obs["is_primary_data"] & (obs["tissue"] == "blood")].to_numpy()
    train, val, cal = cells._train, cells._val, cells._cal
    served = np.concatenate([train, val, cal])
    assert len(np.unique(served)) == len(served)  # the splits are disjoint
    assert np.isin(served, selected).all()
    # per label: all its filtered cells, or the cap
    expected = obs.loc[selected, LABELS].value_counts().clip(upper=40)
    got = obs.loc[served, LABELS].value_counts()
    pd.testing.assert_series_equal(got.sort_index(), expected.sort_index(), check_names=False)
    assert got.max() == 40 and got.min() < 40
    # every label trains; the counts the model balances classes by are the training cells'
    codes = cells.label_counts()
    assert codes.sum() == len(train)
    assert {cells.labels[c] for c in np.flatnonzero(codes)} == set(cells.leaf_labels)
    # seeded: the same seed draws the same cells, another seed others
    again = _cells(uri, obs_value_filter=PRIMARY_BLOOD, max_cells_per_label=40, seed=1)
    assert np.array_equal(again._train, train) and np.array_equal(again._cal, cal)
    other = _cells(uri, obs_value_filter=PRIMARY_BLOOD, max_cells_per_label=40, seed=2)
    assert not np.array_equal(other._train, train)


def test_labels_are_the_models_terms_and_the_prototype_has_every_label(pbmc_soma):
    uri, _ = pbmc_soma
    cells = _cells(uri, obs_value_filter=PRIMARY_BLOOD, embedding="X_genept", prototype_cells=9)
    proto = cells.prototype()  # a cell of each label, though fewer than the labels are asked
    assert set(proto.obs[LABELS]) == set(cells.leaf_labels) and proto.n_obs == 10
    assert proto.obsm["X_genept"].shape == (10, 384)
    sc_genept.model.GenePTClassifier.setup_anndata(proto, labels_key=LABELS)
    model = sc_genept.model.GenePTClassifier(proto, n_members=1)
    assert cells.labels == model.terms
    assert cells.input_keys == ["input_0"]


# ---- the stream: global block shuffle, epochs, shards --------------------------------------


def test_batches_mix_datasets_in_a_new_order_every_epoch(pbmc_soma):
    uri, adata = pbmc_soma
    stored = adata.obsm["X_genept"]
    dataset = adata.obs["dataset_id"].to_numpy()
    cells = _cells(uri, obs_value_filter="is_primary_data == True", embedding="X_genept")
    loader = cells.train_dataloader()
    first, second = _epoch(loader, stored), _epoch(loader, stored)
    for batches in (first, second):
        order = np.concatenate(batches)
        assert np.array_equal(np.sort(order), cells._train)  # each cell once per epoch
        # batches draw from both datasets, from the very first on, not one after the other
        share_a = np.array([np.mean(dataset[b] == "A") for b in batches[:-1]])
        assert 0.2 < share_a.min() and share_a.max() < 0.8
        # and from all over the experiment: position in the epoch ~ unrelated to storage order
        assert abs(np.corrcoef(np.arange(len(order)), order)[0, 1]) < 0.3
    assert not np.array_equal(np.concatenate(first), np.concatenate(second))
    assert [b["labels"].shape for b in loader][0] == (32, 1)
    # seeded: a fresh data module with the same seed serves the same first epoch
    again = _cells(uri, obs_value_filter="is_primary_data == True", embedding="X_genept")
    assert np.array_equal(
        np.concatenate(_epoch(again.train_dataloader(), stored)), np.concatenate(first)
    )
    # labels travel with their cells
    batch = next(iter(cells.train_dataloader()))
    rows = _rows_to_cells(batch["input_0"].numpy(), stored)
    names = np.asarray(cells.labels)[batch["labels"].numpy().ravel()]
    assert (names == adata.obs[LABELS].to_numpy()[rows]).all()


def test_an_epoch_has_as_many_whole_batches_as_its_length_says(pbmc_soma):
    """Reads of ``io_batch_size`` cells that are not whole batches do not cut batches short:
    Lightning stops an epoch after ``len(loader)`` batches, and every cell must be in one."""
    uri, adata = pbmc_soma
    cells = _cells(uri, embedding="X_genept", batch_size=30, io_batch_size=64)
    loader = cells.train_dataloader()
    batches = _epoch(loader, adata.obsm["X_genept"])
    assert len(batches) == len(loader)
    assert [len(b) for b in batches[:-1]] == [30] * (len(batches) - 1)
    assert sorted(np.concatenate(batches)) == sorted(cells._train)


def test_ranks_read_disjoint_equal_shares(pbmc_soma, monkeypatch):
    """Under DDP without a trainer, the rank comes from ``RANK``/``WORLD_SIZE``."""
    uri, adata = pbmc_soma
    stored = adata.obsm["X_genept"]
    cells = _cells(uri, embedding="X_genept")
    ranks = []
    monkeypatch.setenv("WORLD_SIZE", "2")
    for rank in (0, 1):
        monkeypatch.setenv("RANK", str(rank))
        cells._epoch = 0  # the same epoch on every rank, as the trainer's would be
        ranks.append(np.concatenate(_epoch(cells.train_dataloader(), stored)))
    assert len(ranks[0]) == len(ranks[1]) == len(cells._train) // 2
    served = np.concatenate(ranks)
    assert len(np.unique(served)) == len(served)  # no cell read twice
    assert np.isin(served, cells._train).all()
    # each rank's share comes from everywhere, not a contiguous range of the experiment
    for share in ranks:
        assert np.mean(adata.obs["dataset_id"].to_numpy()[share] == "A") == pytest.approx(
            0.5, abs=0.15
        )


def test_a_trainer_gives_the_epoch_and_the_global_rank(pbmc_soma):
    """Under Lightning the shard is the trainer's global rank (not the node-local rank of
    the environment) and the shuffle its epoch."""
    from types import SimpleNamespace

    uri, adata = pbmc_soma
    stored = adata.obsm["X_genept"]
    cells = _cells(uri, embedding="X_genept")
    shares = []
    for rank in (0, 1):
        cells.trainer = SimpleNamespace(current_epoch=3, global_rank=rank, world_size=2)
        loader = cells.train_dataloader()
        shares.append(np.concatenate(_epoch(loader, stored)))
        assert len(loader) == -(-len(shares[-1]) // 32)
    assert len(shares[0]) == len(shares[1]) == len(cells._train) // 2
    assert not set(shares[0]) & set(shares[1])
    again = np.concatenate(_epoch(loader, stored))
    assert np.array_equal(shares[1], again)  # the epoch is the trainer's, not a count of passes


#: Run as ``python script.py OUT TESTS URI STORED``; Lightning's DDP launcher runs it again
#: as rank 1.
DDP_SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    from types import SimpleNamespace

    import numpy as np
    from sc_genept.model import GenePTClassifier, SomaCells

    sys.path.insert(0, sys.argv[2])  # the tests folder
    from test_training import Seen

    cells = SomaCells(
        sys.argv[3], labels_key="cell_type_ontology_term_id", layer="data",
        embedding="X_genept", batch_size=32, shuffle_chunk_size=8, io_batch_size=512,
        validation_size=0.0, calibration_size=0.0,
    )
    reference = cells.prototype()
    GenePTClassifier.setup_anndata(
        reference, labels_key="cell_type_ontology_term_id", embedding_keys=cells.keys
    )
    model = GenePTClassifier(reference, n_hidden=16, n_members=1)
    seen = Seen(SimpleNamespace(obsm={"X_genept": np.load(sys.argv[4])}))
    model.train(
        datamodule=cells, max_epochs=2, plan_kwargs={"lr": 0.01}, early_stopping=False, accelerator="cpu",
        devices=2, strategy="ddp", num_threads=1, callbacks=[seen], enable_progress_bar=False,
    )
    rank = int(os.environ.get("LOCAL_RANK", 0))
    result = {
        "train": cells._train.tolist(),
        "seen": seen.epochs,
        "weights": [p.detach().double().sum().item() for p in model.module.parameters()],
        "trained": model.is_trained_,
    }
    with open(os.path.join(sys.argv[1], f"rank{rank}.json"), "w") as f:
        json.dump(result, f)
    """
)


@pytest.mark.slow
def test_ddp_ranks_stream_disjoint_halves_in_a_new_order_every_epoch(pbmc_soma, tmp_path):
    """2 processes over gloo, as Lightning launches them: each reads its own shard."""
    uri, adata = pbmc_soma
    np.save(tmp_path / "stored.npy", adata.obsm["X_genept"])
    (tmp_path / "train_ddp.py").write_text(DDP_SCRIPT)
    tests = str(Path(__file__).parent)
    run = subprocess.run(
        [sys.executable, "train_ddp.py", str(tmp_path), tests, uri, "stored.npy"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    train = set(ranks[0]["train"])
    assert ranks[1]["train"] == ranks[0]["train"]  # the same seeded selection on each rank
    firsts = []
    for epoch in ("0", "1"):
        first, second = (r["seen"][epoch] for r in ranks)
        assert len(first) == len(second) == len(train) // 2  # DDP needs equal shares
        assert not set(first) & set(second) and set(first) | set(second) <= train
        firsts.append(first)
    assert set(firsts[0]) != set(firsts[1])  # fresh blocks every epoch
    assert all(r["trained"] for r in ranks)
    np.testing.assert_allclose(ranks[0]["weights"], ranks[1]["weights"], rtol=1e-6)


# ---- inputs: GenePT-w on the fly, as genept_embed ------------------------------------------


@pytest.mark.parametrize("which", ["counts", "log-normalised"])
def test_embedding_on_the_fly_is_genept_embed(which, counts_soma, pbmc_soma):
    uri, adata = counts_soma if which == "counts" else pbmc_soma
    expected = sc.tl.genept_embed(adata, key_added="X_ref", expression=True, copy=True)
    reference = expected.obsm["X_ref"]
    expression = expected.obsm["X_ref_expression"].toarray()
    width = reference.shape[1]
    cells = _cells(uri, validation_size=0.2, calibration_size=0.2, standardization_cells=40)
    assert cells.keys == ["X_genept", "X_genept_expression"]
    assert cells.input_keys == ["input_0", "input_1"]
    batches = list(cells.train_dataloader())
    served = np.concatenate(_epoch(batches, reference))
    assert np.array_equal(np.sort(served), cells._train)
    # the expression input: the embedded genes' log-normalised values, as genept_embed
    # stores them (columns in the order of the record's gene names)
    np.testing.assert_allclose(
        np.concatenate([b["input_1"].numpy() for b in batches]), expression[served], atol=1e-6
    )
    assert np.array_equal(
        np.sort(np.concatenate(_epoch(cells.val_dataloader(), reference))), cells._val
    )
    inputs, codes = cells.calibration_set()
    assert inputs.dtype == np.float32 and codes.dtype == np.int64
    assert np.array_equal(_rows_to_cells(inputs[:, :width], reference), cells._cal)
    np.testing.assert_allclose(inputs[:, width:], expression[cells._cal], atol=1e-6)
    batches = np.concatenate(list(cells.standardization_batches()))
    assert batches.shape == (40, width + expression.shape[1])
    rows = _rows_to_cells(batches[:, :width], reference)
    np.testing.assert_allclose(batches[:, width:], expression[rows], atol=1e-6)
    proto = cells.prototype()
    rows = _rows_to_cells(proto.obsm["X_genept"], reference)
    np.testing.assert_allclose(
        proto.obsm["X_genept_expression"].toarray(), expression[rows], atol=1e-6
    )
    assert proto.uns["X_genept_expression"]["kind"] == "expression"
    record, want = proto.uns["X_genept"], expected.uns["X_ref"]
    assert record["log_normalized"] is want["log_normalized"] is (which == "counts")
    assert list(record["gene_set"]["names"]) == list(want["gene_set"]["names"])


@pytest.mark.slow
def test_worker_processes_read_and_embed_their_own_shares(pbmc_soma):
    """Spawned workers (the stream is pickled) each read and embed a share: all the
    training cells, each once."""
    uri, adata = pbmc_soma
    reference = sc.tl.genept_embed(adata, key_added="X_ref", copy=True).obsm["X_ref"]
    cells = _cells(uri, num_workers=2)
    served = np.concatenate(_epoch(cells.train_dataloader(), reference))
    assert np.array_equal(np.sort(served), cells._train)


# ---- end to end: train from SOMA, save, serve -----------------------------------------------


def _accuracy(model, query) -> float:
    predicted = model.predict(query)["finest_ontology_term_id"]
    return float(predicted.eq(query.obs[LABELS].astype(str)).mean())


def test_a_model_trained_from_soma_predicts_as_one_trained_in_memory(
    pbmc_soma, tmp_path, monkeypatch
):
    uri, adata = pbmc_soma
    adata = ad.AnnData(adata.X, obs=adata.obs, var=adata.var)
    sc.tl.genept_embed(adata, expression=True)  # the same cells, in memory
    held_out = adata.obs["held_out"].to_numpy()
    query, reference = adata[held_out].copy(), adata[~held_out].copy()
    options = {
        "max_epochs": 8,
        "plan_kwargs": {"lr": 3e-3},
        "seed": 0,
        "enable_progress_bar": False,
    }
    GenePTClassifier = sc_genept.model.GenePTClassifier

    keys = ["X_genept", "X_genept_expression"]  # sc_genept's default model: GenePT-w + expression
    GenePTClassifier.setup_anndata(reference, labels_key=LABELS, embedding_keys=keys)
    in_memory = GenePTClassifier(reference, n_hidden=64, n_members=1)
    in_memory.train(batch_size=32, **options)

    cells = _cells(uri, obs_value_filter="held_out == False", io_batch_size=1024)
    prototype = cells.prototype()
    assert cells.keys == keys
    GenePTClassifier.setup_anndata(prototype, labels_key=LABELS, embedding_keys=cells.keys)
    model = GenePTClassifier(prototype, n_hidden=64, n_members=1)
    model.train(datamodule=cells, **options)
    assert model.is_trained_ and model.genes == in_memory.genes
    assert len(model.history["train_loss"]) == 8
    # standardised on the training cells' embedding, as training in memory does
    trained = np.isin(np.flatnonzero(~held_out), cells._train)
    np.testing.assert_allclose(
        model.module.network.input_mean.numpy(),
        np.hstack([np.asarray(reference.obsm[k][trained].mean(0)).ravel() for k in keys]),
        atol=1e-5,
    )
    accuracy, baseline = _accuracy(model, query), _accuracy(in_memory, query)
    majority = query.obs[LABELS].value_counts(normalize=True).max()
    assert accuracy > majority + 0.3
    assert accuracy == pytest.approx(baseline, abs=0.06)

    # a model folder: loads, and the pretrained registry serves its archive by name
    model.save(tmp_path / "soma_model")
    loaded = GenePTClassifier.load(tmp_path / "soma_model")
    pd.testing.assert_frame_equal(loaded.predict(query), model.predict(query))
    monkeypatch.setenv("SC_GENEPT_CACHE", str(tmp_path / "cache"))
    with FileServer(tmp_path) as server:
        archive = shutil.make_archive(str(tmp_path / "soma"), "zip", tmp_path, "soma_model")
        sha256 = hashlib.sha256(Path(archive).read_bytes()).hexdigest()
        sc_genept.model.register_pretrained(
            "soma-test", url=server.url("soma.zip"), sha256=sha256, training_data="SOMA stand-in"
        )
        try:
            served = GenePTClassifier.load_pretrained("soma-test")
        finally:
            sc_genept.model.unregister_pretrained("soma-test")
        pd.testing.assert_frame_equal(served.predict(query), model.predict(query))
    fresh = ad.AnnData(query.X, obs=query.obs[[]], var=query.var)  # not embedded yet
    sc.tl.genept_annotate(fresh, model=str(tmp_path / "soma_model"))
    assert (
        fresh.obs["genept_cell_type_finest_ontology_term_id"]
        == model.predict(query)["finest_ontology_term_id"]
    ).all()


# ---- what users get wrong ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"labels_key": "celltype"}, KeyError, "No column 'celltype'.*labels_key="),
        ({"obs_value_filter": "tissue == 'lung'"}, ValueError, "selects no cells"),
        ({"layer": "raw"}, KeyError, "No X layer 'raw'.*'data'"),
        ({"measurement_name": "ATAC"}, KeyError, "No measurement 'ATAC'.*'RNA'"),
        ({"embedding": "X_scvi"}, KeyError, r"No obsm array 'X_scvi'.*\['X_genept'\]"),
        ({"var_names": "gene_ids"}, KeyError, "No var column 'gene_ids'.*var_names="),
        ({"labels_key": "assay"}, ValueError, "match no single term.*obs_value_filter"),
        (
            {
                "obs_value_filter": "dataset_id == 'A' and tissue == 'blood' and "
                "cell_type_ontology_term_id == 'CL:0000236'"
            },
            ValueError,
            "at least two",
        ),
        ({"io_batch_size": 100}, ValueError, "multiple of shuffle_chunk_size"),
        ({"validation_size": 0.5, "calibration_size": 0.5}, ValueError, "below 1"),
        ({"genes": ["NOTAGENE"]}, ValueError, "None of the 1 genes="),
        ({"inputs": "pca"}, ValueError, "inputs must be"),
        (
            {"embedding": "X_genept", "inputs": "genept+expression"},
            ValueError,
            "without the expression.*inputs='genept'",
        ),
    ],
)
def test_bad_input_says_what_to_do(pbmc_soma, kwargs, error, match):
    uri, _ = pbmc_soma
    with pytest.raises(error, match=match):
        _cells(uri, **kwargs)


def _tiny(path, genes, labels) -> str:
    adata = ad.AnnData(
        np.ones((len(labels), len(genes)), dtype=np.float32),
        obs=pd.DataFrame({LABELS: pd.Categorical(labels)}, index=list("abcd")[: len(labels)]),
        var=pd.DataFrame(index=genes),
    )
    tiledbsoma_io.from_anndata(str(path), adata, measurement_name="RNA")
    return str(path)


def test_genes_the_table_lacks_say_which_column_to_use(tmp_path):
    uri = _tiny(tmp_path / "x", ["gene1", "gene2", "gene3"], ["CL:0000084", "CL:0000236"] * 2)
    with pytest.raises(ValueError, match="None of the 3 genes.*var_names="):
        _cells(uri)


def test_unlabelled_cells_are_refused(tmp_path):
    uri = _tiny(tmp_path / "x", ["CD3E", "MS4A1"], ["CL:0000084", "CL:0000236", None, None])
    with pytest.raises(ValueError, match="2 selected cells have no label.*obs_value_filter"):
        _cells(uri)


def test_missing_tiledbsoma_gives_the_install_hint(pbmc_soma, monkeypatch):
    monkeypatch.setitem(sys.modules, "tiledbsoma", None)
    with pytest.raises(ImportError, match=r"pip install 'sc-genept\[soma\]'"):
        _cells(pbmc_soma[0])


@pytest.fixture(scope="module")
def tiny_soma(tmp_path_factory) -> str:
    """Four cells of two labels, with a text and a boolean obs column to filter on."""
    adata = ad.AnnData(
        np.ones((4, 3), dtype=np.float32),
        obs=pd.DataFrame(
            {
                LABELS: pd.Categorical(["CL:0000084", "CL:0000236"] * 2),
                "tissue": ["blood"] * 4,
                "is_primary_data": [True] * 4,
            },
            index=list("abcd"),
        ),
        var=pd.DataFrame(index=["CD3E", "MS4A1", "LYZ"]),
    )
    uri = str(tmp_path_factory.mktemp("soma") / "tiny")
    tiledbsoma_io.from_anndata(uri, adata, measurement_name="RNA")
    return uri


@pytest.mark.parametrize(
    ("value_filter", "match"),
    [
        ("tissue == ", r"obs_value_filter 'tissue == ' cannot be used: could not parse"),
        ("tissue = 'blood'", r"\"tissue = 'blood'\" cannot be used: could not parse"),
        ("nosuch == 'x' and tissue == 'blood'", r"no obs column \['nosuch'\] \(obs has .*tissue"),
        ("tissue == 3", r"'tissue == 3' cannot be used: a value does not match its column"),
    ],
    ids=["unfinished", "single-equals", "unknown-column", "wrong-type"],
)
def test_bad_obs_filters_name_the_filter_and_what_is_wrong(tiny_soma, value_filter, match):
    with pytest.raises(ValueError, match=match) as info:
        _cells(tiny_soma, obs_value_filter=value_filter)
    assert "\nAt:" not in str(info.value) and "SOMAError" not in str(info.value)


def test_uris_that_are_no_experiment_are_named(tiny_soma, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"No SOMA experiment at '.*nope'"):
        _cells(str(tmp_path / "nope"))
    with pytest.raises(ValueError, match=r"'.*tiny/ms/RNA' cannot be opened as a SOMA experiment"):
        _cells(f"{tiny_soma}/ms/RNA")
