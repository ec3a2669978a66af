import json
import os
import re

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scanpy as sc
import torch
from conftest import rehash

import sc_genept
from sc_genept.genes import GeneEmbeddings, Provenance
from sc_genept.model import (
    GenePTClassifier,
    GenePTNetwork,
    ModelFolderError,
    SavedClassifier,
    decode,
)

CELL, IMMUNE, T, CD4, CD8, B, NEURON = (f"CL:000000{i}" for i in range(7))
FAST = {"max_epochs": 40, "enable_progress_bar": False}


def test_hierarchical_loss_is_subtree_mass(tiny_cl):
    terms = [IMMUNE, T, CD4, CD8, B]
    module = GenePTNetwork(2, tiny_cl.ancestor_matrix(terms), n_hidden=4, n_layers=0, dropout=0)
    logits = torch.log(torch.tensor([[0.1, 0.2, 0.3, 0.15, 0.25]]))
    for label, under in [(T, [T, CD4, CD8]), (CD4, [CD4]), (IMMUNE, terms)]:
        y = torch.tensor([terms.index(label)])
        p_under = sum([0.1, 0.2, 0.3, 0.15, 0.25][terms.index(t)] for t in under)
        assert module.loss(logits, y).item() == pytest.approx(-np.log(p_under), rel=1e-5)
        p_flat = [0.1, 0.2, 0.3, 0.15, 0.25][terms.index(label)]
        assert module.loss(logits, y, hierarchical=False).item() == pytest.approx(
            -np.log(p_flat), rel=1e-5
        )


def test_calibration_finds_the_temperature_of_overconfident_logits():
    # the module's logits are its inputs; labels are drawn from softmax(logits / 2.5)
    n_terms = 4
    module = GenePTNetwork(n_terms, np.eye(n_terms), n_hidden=4, n_layers=0, dropout=0)
    module.input_clip = float("inf")  # logits exactly the inputs
    with torch.no_grad():
        module.members[0][0].weight.copy_(torch.eye(n_terms))
        module.members[0][0].bias.zero_()
    generator = torch.Generator().manual_seed(0)
    logits = 4 * torch.randn(20000, n_terms, generator=generator)
    labels = torch.multinomial(torch.softmax(logits / 2.5, -1), 1, generator=generator)[:, 0]
    assert module.calibrate(logits, labels, hierarchical=True) == pytest.approx(2.5, rel=0.05)
    probs = module.probabilities(logits)
    torch.testing.assert_close(probs, torch.softmax(logits / module.temperature, -1))


def test_ensemble_probabilities_are_the_members_mean():
    module = GenePTNetwork(3, np.eye(4), n_hidden=8, n_layers=1, dropout=0, n_members=3)
    module.reset_parameters(0)
    module.eval()
    module.temperature.fill_(1.7)
    x = torch.randn(6, 3, generator=torch.Generator().manual_seed(0))
    logits = module(x)
    assert logits.shape == (3, 6, 4) and not torch.allclose(logits[0], logits[1])
    expected = torch.softmax(logits / 1.7, dim=-1).mean(0)
    torch.testing.assert_close(module.probabilities(x), expected)


def test_a_gene_constant_in_the_reference_cannot_dominate_a_query():
    module = GenePTNetwork(3, np.eye(2), n_hidden=4, n_layers=1, dropout=0)
    train = np.random.default_rng(0).normal(size=(50, 3)).astype(np.float32)
    train[:, 0] = 0.0  # never expressed in the reference: standard deviation ~0
    module.set_standardization([train])
    module.eval()
    query = torch.tensor([[5.0, 0.3, -0.2], [1e6, 0.3, -0.2]])
    logits = module(query)[0]  # the one member's
    torch.testing.assert_close(logits[0], logits[1])  # both capped at +10 sd


def test_decode_reports_deepest_confident_term(tiny_cl):
    terms = [IMMUNE, T, CD4, CD8, B]
    probs = pd.DataFrame(
        [
            [0.0, 0.0, 0.9, 0.05, 0.05],  # sure CD4
            [0.0, 0.1, 0.35, 0.35, 0.2],  # surely T (0.8), unsure which
            [0.3, 0.0, 0.2, 0.2, 0.3],  # only "immune cell" reaches 0.5
        ],
        columns=terms,
    )
    out = decode(probs, tiny_cl.ancestor_matrix(terms), 0.5, tiny_cl)
    assert out["ontology_term_id"].tolist() == [CD4, T, IMMUNE]
    assert out["confidence"].tolist() == pytest.approx([0.9, 0.8, 1.0])
    assert out["finest_ontology_term_id"].tolist() == [CD4, CD4, IMMUNE]
    assert out["cell_type"].tolist() == ["CD4 T cell", "T cell", "immune cell"]
    strict = decode(probs, tiny_cl.ancestor_matrix(terms), 0.95, tiny_cl)
    assert strict["ontology_term_id"].tolist() == [T, IMMUNE, IMMUNE]


def test_setup_checks_labels_and_inputs(pbmc_embedded):
    adata = pbmc_embedded
    adata.obs["bad"] = (
        adata.obs["cell_type"]
        .astype(str)
        .replace({"B cell": "B lymphocyte thing", "dendritic cell": "Dendritic blob"})
    )
    with pytest.raises(ValueError, match=r"2 labels.*\['B lymphocyte thing', 'Dendritic blob'\]"):
        GenePTClassifier.setup_anndata(adata, labels_key="bad")
    adata.obs["partial"] = adata.obs["cell_type"].astype(object).where(np.arange(adata.n_obs) > 2)
    with pytest.raises(ValueError, match="3 cells have no label"):
        GenePTClassifier.setup_anndata(adata, labels_key="partial")
    with pytest.raises(KeyError, match="genept_embed"):
        GenePTClassifier.setup_anndata(ad.AnnData(obs=adata.obs.copy()), labels_key="cell_type")


def test_names_are_accepted_and_ancestors_join_the_label_set(pbmc_embedded):
    GenePTClassifier.setup_anndata(pbmc_embedded, labels_key="cell_type")  # CL names
    model = GenePTClassifier(pbmc_embedded)
    assert set(pbmc_embedded.obs["cell_type_ontology_term_id"]) <= set(model.terms)
    assert "CL:0000084" in model.terms  # T cell: an ancestor of several labels
    assert model.terms[0] == "CL:0000000"


def test_train_predict_on_real_cells(trained, pbmc_split):
    _, query = pbmc_split
    pred = trained.predict(query)
    assert list(pred.columns) == [
        "ontology_term_id",
        "cell_type",
        "confidence",
        "finest_ontology_term_id",
        "finest_cell_type",
        "finest_probability",
        "reason",
        "typicality",
    ]
    assert pred["confidence"].between(0.5 - 1e-6, 1 + 1e-6).all()
    table = sc_genept.metrics.evaluate(
        query.obs["cell_type_ontology_term_id"].astype(str), pred["ontology_term_id"]
    )
    majority = query.obs["cell_type_ontology_term_id"].value_counts(normalize=True).max()
    assert table.loc["sctab_accuracy", "value"] > majority + 0.3
    soft = trained.predict(query, soft=True)
    assert soft.shape == (query.n_obs, len(trained.terms))
    np.testing.assert_allclose(soft.sum(axis=1), 1, rtol=1e-5)


def test_save_load_gives_identical_predictions(trained, pbmc_split, tmp_path):
    from safetensors.torch import load_file

    _, query = pbmc_split
    trained.save(tmp_path / "model")
    files = sorted(p.name for p in (tmp_path / "model").iterdir())
    assert files == ["manifest.json", "model.json", "model.safetensors"]
    load_file(tmp_path / "model" / "model.safetensors")  # tensors only, nothing to unpickle
    meta = json.loads((tmp_path / "model" / "model.json").read_text())
    assert meta["ontology"]["version"] == "2026-03-26"
    assert set(trained.terms) <= set(meta["ontology"]["terms"])  # the CL it needs travels with it
    assert "MiniLM" in meta["embedding_provenance"]["X_genept"]["embedding_model"]
    loaded = GenePTClassifier.load(tmp_path / "model")
    assert loaded.genes == trained.genes and len(loaded.genes) == 741
    assert (
        float(loaded.module.network.temperature) == float(trained.module.network.temperature) != 1
    )
    assert loaded.gene_sets_ == trained.gene_sets_
    assert loaded.ontology.source == "the model folder model"
    pd.testing.assert_frame_equal(loaded.predict_proba(query), trained.predict_proba(query))
    pd.testing.assert_frame_equal(loaded.predict(query), trained.predict(query))

    with pytest.raises(FileExistsError, match="overwrite=True"):
        trained.save(tmp_path / "model")
    loaded.save(tmp_path / "again")  # a loaded model saves as it was loaded
    assert (
        json.loads((tmp_path / "again" / "model.json").read_text())["ontology"] == meta["ontology"]
    )


def test_a_folder_loaded_to_predict_only_answers_as_the_full_model(trained, pbmc_split, tmp_path):
    _, query = pbmc_split
    trained.save(tmp_path / "model")
    saved = SavedClassifier.load(tmp_path / "model")
    assert saved.terms == trained.terms and saved.genes == trained.genes
    assert saved._model_summary_string == trained._model_summary_string
    assert saved.calibration_ == json.loads(json.dumps(trained.calibration_))
    pd.testing.assert_frame_equal(saved.predict_proba(query), trained.predict_proba(query))
    for options in ({}, {"max_error": 0.1}, {"novelty_rate": 0.05}):
        pd.testing.assert_frame_equal(
            saved.predict(query, **options), trained.predict(query, **options)
        )
    pd.testing.assert_frame_equal(saved.error_coverage(), trained.error_coverage())
    with pytest.raises(ValueError, match="Pass adata"):
        saved.predict()  # it has no training data to fall back on


def _opened_files():
    """Paths opened from now on (an audit hook; it cannot be removed, so it can be paused)."""
    import sys

    opened = []

    def hook(event, args):
        if (
            event == "open"
            and opened is not None
            and isinstance(args[0], str | bytes | os.PathLike)
        ):
            opened.append(os.fsdecode(args[0]))

    sys.addaudithook(hook)
    return opened


@pytest.mark.parametrize("where", ["file", "url", "registry"])
def test_model_folder_naming_another_location_is_refused_unread(trained_folder, tmp_path, where):
    import http.server
    import threading

    requests = []

    class Recorder(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            requests.append(self.path)
            self.send_error(404)

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    elsewhere = tmp_path / "elsewhere.obo"
    elsewhere.write_text("format-version: 1.2\n")
    folder = trained_folder
    meta = json.loads((folder / "model.json").read_text())
    target = {"file": str(elsewhere), "url": f"http://127.0.0.1:{server.server_port}/cl.obo"}
    if where == "registry":
        meta["registry"]["setup_args"]["labels_key"] = target["url"]
    else:
        meta["registry"]["setup_args"]["ontology"] = target[where]
    (folder / "model.json").write_text(json.dumps(meta))
    rehash(folder)
    opened = _opened_files()
    try:
        with pytest.raises(ModelFolderError, match="ontology source|names a location"):
            GenePTClassifier.load(folder)
    finally:
        server.shutdown()
    assert not requests
    assert str(elsewhere) not in opened
    assert all(p.startswith(str(folder)) for p in opened if str(tmp_path) in p)


def _edit_json(folder):
    meta = json.loads((folder / "model.json").read_text())
    meta["ontology"]["terms"]["CL:0000084"]["name"] = "B cell"  # silently swapped names
    (folder / "model.json").write_text(json.dumps(meta))


DAMAGE = {
    "edited metadata": (_edit_json, "changed after the model was saved"),
    "truncated weights": (
        lambda f: (f / "model.safetensors").write_bytes(
            (f / "model.safetensors").read_bytes()[:100]
        ),
        "changed after the model was saved",
    ),
    "missing weights": (lambda f: (f / "model.safetensors").unlink(), "no model.safetensors"),
    "missing manifest": (lambda f: (f / "manifest.json").unlink(), "no manifest.json"),
    "broken manifest": (lambda f: (f / "manifest.json").write_text("{"), "not valid JSON"),
    "a pickle instead": (
        lambda f: (
            (f / "model.safetensors").unlink(),
            (f / "manifest.json").unlink(),
            torch.save({}, f / "model.pt"),
        ),
        "earlier sc_genept",
    ),
    "not a folder": (lambda f: None, "not a folder"),
}


@pytest.mark.parametrize("damage", DAMAGE)
def test_damaged_or_edited_model_folder_is_refused(trained_folder, damage):
    change, message = DAMAGE[damage]
    folder = trained_folder
    change(folder)
    target = folder / "model.json" if damage == "not a folder" else folder
    with pytest.raises(ModelFolderError, match=message):
        GenePTClassifier.load(target)


def _set(path: str, value):
    def edit(meta):
        *parents, last = path.split(".")
        for key in parents:
            meta = meta[key]
        meta[last] = value

    return edit


def _drop_a_labels_term(meta):
    labels = meta["registry"]["field_registries"]["labels"]["state_registry"]
    del meta["ontology"]["terms"][labels["categorical_mapping"]["__ndarray__"][-1]]


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (_set("init_params.non_kwargs.n_hidden", 7), "different models"),
        (_set("init_params.non_kwargs.n_members", 200_000), r"n_members=200000 is outside"),
        (_set("init_params.non_kwargs.n_members", 4), "different models"),
        (_set("init_params.non_kwargs.n_layers", 2), "different models"),  # layer 2 absent
        (_set("init_params.non_kwargs.loss", "focal"), "'hierarchical' or 'flat'"),
        (_set("init_params.non_kwargs.dropout", "0.2"), r"dropout='0\.2' is not in"),
        (_set("init_params.non_kwargs.n_layers", True), "n_layers must be an integer"),
        (_set("is_trained", "false"), "is_trained must be true or false, got 'false'"),
        (_set("calibration", [1]), "calibration must be a JSON object"),
        (_set("registry.setup_args.embedding_keys", "X_genept"), "embedding_keys must be a list"),
        (_drop_a_labels_term, "Cell Ontology terms lack"),
    ],
    ids=["n_hidden", "n_members-huge", "n_members", "n_layers-2", "loss", "dropout", "n_layers", "is_trained",
         "calibration", "embedding_keys", "label-without-term"],
)  # fmt: skip
def test_rehashed_metadata_that_does_not_fit_the_weights_is_refused(trained_folder, edit, match):
    folder = trained_folder
    meta = json.loads((folder / "model.json").read_text())
    edit(meta)
    (folder / "model.json").write_text(json.dumps(meta))
    rehash(folder)
    for cls in (GenePTClassifier, SavedClassifier):
        with pytest.raises(ModelFolderError, match=match):
            cls.load(folder)


@pytest.mark.parametrize("weight", ["temperature", "members.0.0.weight", "input_std"])
def test_weights_that_are_not_numbers_are_refused(trained_folder, weight):
    from safetensors.torch import load_file, save_file

    folder = trained_folder
    state = load_file(folder / "model.safetensors")
    state[weight] = torch.full_like(state[weight], float("nan"))
    save_file(state, folder / "model.safetensors")
    rehash(folder)
    with pytest.raises(ModelFolderError, match=rf"\['{re.escape(weight)}'\] hold NaN"):
        SavedClassifier.load(folder)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda s: s.pop("input_std"), r"'input_std': None"),
        (lambda s: s.update(novelty_centroids=torch.zeros(3, 2)), "novelty_centroids"),
        (lambda s: s.update(extra_weight=torch.zeros(1)), r"extra \['extra_weight'\]"),
    ],
    ids=["missing", "novelty-shape", "unexpected"],
)
def test_weights_the_network_does_not_have_are_refused(trained_folder, change, match):
    from safetensors.torch import load_file, save_file

    state = load_file(trained_folder / "model.safetensors")
    change(state)
    save_file(state, trained_folder / "model.safetensors")
    rehash(trained_folder)
    for cls in (GenePTClassifier, SavedClassifier):
        with pytest.raises(ModelFolderError, match=match):
            cls.load(trained_folder)


def test_weights_of_a_type_numpy_lacks_are_refused_by_name(trained_folder):
    from safetensors.torch import load_file, save_file

    state = load_file(trained_folder / "model.safetensors")
    save_file(
        {k: v.to(torch.bfloat16) for k, v in state.items()}, trained_folder / "model.safetensors"
    )
    rehash(trained_folder)
    for cls in (GenePTClassifier, SavedClassifier):
        with pytest.raises(ModelFolderError, match="BF16.*convert the weights to float32"):
            cls.load(trained_folder)


def test_a_devices_error_is_not_blamed_on_the_folder(trained_folder, monkeypatch):
    def out_of_memory(self, *args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(GenePTNetwork, "to", out_of_memory)
    with pytest.raises(torch.OutOfMemoryError, match="out of memory"):
        GenePTClassifier.load(trained_folder)


@pytest.mark.parametrize(("n_layers", "n_members"), [(0, 1), (1, 1), (2, 3)])
def test_numpy_prediction_answers_as_the_torch_network(n_layers, n_members):
    from sc_genept.model._numpy_network import NumpyNetwork

    rng = np.random.default_rng(0)
    subtree = np.tril(np.ones((5, 5), np.float32))
    network = GenePTNetwork(
        12, subtree, n_hidden=8, n_layers=n_layers, dropout=0.1, n_members=n_members
    )
    network.reset_parameters(seed=1)
    network.set_standardization([rng.normal(size=(50, 12))])
    network.temperature.fill_(1.7)
    centroids = rng.normal(size=(5, 12)).astype(np.float32)
    centroids[2] = np.nan  # a term without reference cells
    network.set_novelty({"centroids": centroids, "variance": rng.uniform(0.5, 2, 12)})
    state = {k: v.numpy() for k, v in network.state_dict().items()}
    # float64 as stored by another tool: computed in float32 all the same, as torch does
    state = {k: v.astype(np.float64) if v.dtype == np.float32 else v for k, v in state.items()}
    arrays = NumpyNetwork(state, n_layers=n_layers, n_members=n_members)
    x = rng.normal(scale=3, size=(40, 12)).astype(np.float32)
    x[0, 0] = 1e6  # past the standardised inputs' cap
    probs, scores = network.score(x, novelty=True)
    np_probs, np_scores = arrays.score(x, novelty=True)
    assert np_probs.dtype == np_scores.dtype == np.float32
    np.testing.assert_allclose(np_probs, probs, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(np_scores, scores, rtol=1e-5)
    assert arrays.has_novelty and np.array_equal(arrays.subtree_matrix, network.subtree_matrix)
    assert arrays.score(x, novelty=False)[1] is None


def test_a_folder_loaded_to_predict_runs_on_the_cpu_and_builds_its_network_on_demand(
    trained_folder,
):
    with pytest.raises(ValueError, match=r"GenePTClassifier\.load\(\.\.\., accelerator='gpu'\)"):
        SavedClassifier.load(trained_folder, accelerator="gpu")
    saved = SavedClassifier.load(trained_folder, accelerator="auto")  # the CPU, as asked
    network = saved.network  # for whoever wants the weights as torch modules
    assert isinstance(network, GenePTNetwork) and saved.network is network
    loaded = GenePTClassifier.load(trained_folder).network.state_dict()
    for name, weight in network.state_dict().items():
        torch.testing.assert_close(weight, loaded[name], rtol=0, atol=0, equal_nan=True)


def test_untrained_model_and_single_type_reference_are_refused(pbmc_split):
    ref, query = pbmc_split
    GenePTClassifier.setup_anndata(ref, labels_key="cell_type_ontology_term_id")
    with pytest.raises(RuntimeError, match="not been trained"):
        GenePTClassifier(ref).predict(query)
    one = ref[ref.obs["cell_type_ontology_term_id"] == "CL:0000236"].copy()
    with pytest.raises(ValueError, match="one label .*B cell.*at least two"):
        GenePTClassifier.setup_anndata(one, labels_key="cell_type_ontology_term_id")


@pytest.mark.parametrize("how", ["enable_checkpointing", "callback"])
def test_lightning_checkpointing_works_as_documented(pbmc_split, tmp_path, monkeypatch, how):
    from lightning.pytorch.callbacks import ModelCheckpoint

    monkeypatch.chdir(tmp_path)
    ref, _ = pbmc_split
    GenePTClassifier.setup_anndata(ref, labels_key="cell_type_ontology_term_id")
    model = GenePTClassifier(ref)
    option = (
        {"enable_checkpointing": True}
        if how == "enable_checkpointing"
        else {"callbacks": [ModelCheckpoint(dirpath=tmp_path / "mine", monitor="validation_loss")]}
    )
    model.train(max_epochs=2, enable_progress_bar=False, default_root_dir=tmp_path, **option)
    saved = list(tmp_path.rglob("*.ckpt"))
    assert saved and all(p.is_relative_to(tmp_path) for p in saved)
    assert (tmp_path / "mine").exists() == (how == "callback")
    assert not any(p.is_dir() for p in tmp_path.rglob("*validation_loss*"))  # no scvi folders


def test_query_from_another_gene_table_fails_loudly(trained, pbmc_split, default_table, tmp_path):
    _, query = pbmc_split
    other = GeneEmbeddings(
        default_table.symbols,
        default_table.embeddings,
        provenance=Provenance(text_source="NCBI summaries", embedding_model="another-model"),
    )
    sc.tl.genept_embed(query, gene_embeddings=other, use_raw=True)
    with pytest.raises(ValueError, match="another gene table"):
        trained.predict(query)
    trained.save(tmp_path / "m")
    with pytest.raises(ValueError, match="another gene table"):
        GenePTClassifier.load(tmp_path / "m", adata=query)
    sc.tl.genept_embed(query, use_raw=True, n_dims=64)
    with pytest.raises(ValueError, match="n_dims"):
        trained.predict(query)


def test_ensemble_inputs_flat_loss_and_balancing(pbmc_split):
    ref, query = pbmc_split
    ref.obsm["X_pca"] = ref.obsm["X_pca"].copy()
    GenePTClassifier.setup_anndata(
        ref, labels_key="cell_type_ontology_term_id", embedding_keys=("X_genept", "X_pca")
    )
    model = GenePTClassifier(ref, loss="flat", n_layers=0)
    model.train(plan_kwargs={"balance_classes": True}, **FAST)
    # both inputs are read: shuffling either one's rows changes the predictions
    base = model.predict_proba(query).to_numpy()
    for key in ("X_genept", "X_pca"):
        shuffled = query.copy()
        shuffled.obsm[key] = shuffled.obsm[key][np.random.default_rng(0).permutation(query.n_obs)]
        assert np.abs(model.predict_proba(shuffled).to_numpy() - base).max() > 0.05, key
    # what training optimised: flat cross-entropy, each cell weighted by 1 / its label's count
    plan = model.trainer.lightning_module
    codes = model._label_codes()
    counts = np.bincount(codes[model.train_indices], minlength=len(model.terms))
    x = torch.as_tensor(model._inputs(ref))
    labels = torch.as_tensor(codes)
    with torch.no_grad():
        logits = model.module.network(x)
        nll = -torch.log_softmax(logits, -1)[:, torch.arange(len(codes)), labels].mean(0)
        weight = torch.as_tensor(1 / counts[codes], dtype=torch.float32)
        expected = (nll * weight).sum() / weight.sum()
        got = plan.module.network.loss(logits, labels, **plan.loss_kwargs)
    torch.testing.assert_close(got, expected)
    with pytest.raises(ValueError, match="'hierarchical' or 'flat'"):
        GenePTClassifier(ref, loss="focal")


def test_interrupted_training_resumes_from_its_checkpoint(pbmc_split, tmp_path):
    from lightning.pytorch.callbacks import Callback

    class CrashAfterEpoch(Callback):
        def on_train_epoch_end(self, trainer, pl_module):
            if trainer.current_epoch == 3:
                raise RuntimeError("simulated crash")

    ref, query = pbmc_split
    GenePTClassifier.setup_anndata(ref, labels_key="cell_type_ontology_term_id")
    model = GenePTClassifier(ref)
    run = {
        "max_epochs": 8,
        "early_stopping": False,
        "enable_progress_bar": False,
        "checkpoint_dir": tmp_path,
    }
    with pytest.raises(RuntimeError, match="simulated crash"):
        model.train(callbacks=[CrashAfterEpoch()], **run)
    assert (tmp_path / "last.ckpt").exists()
    model.train(**run)
    assert model.trainer.current_epoch == 8
    epochs = model.history_["train_loss"].index
    assert epochs.min() >= 3 and epochs.max() == 7  # picked up after the last saved epoch
    assert model.predict(query)["ontology_term_id"].isin(model.terms).all()


def test_a_saved_model_loads_through_scvi_tools_model_sharing(trained, pbmc_split, tmp_path):
    """scvi-tools' ``HubModel`` (what its hub uploads and downloads) loads the folder."""
    pytest.importorskip("huggingface_hub")
    import anndata
    import scvi
    from huggingface_hub import ModelCard
    from scvi.hub import HubMetadata, HubModel

    _, query = pbmc_split
    folder = tmp_path / "model"
    trained.save(folder)
    metadata = HubMetadata(
        scvi.__version__,
        anndata.__version__,
        "GenePTClassifier",
        model_parent_module="sc_genept.model",
    )
    card = ModelCard("---\nlicense: cc-by-4.0\n---\n# A GenePT classifier of PBMCs\n")
    HubModel(str(folder), metadata=metadata, model_card=card).save()  # beside the model's files
    shared = HubModel(str(folder))  # as a download would be read
    shared.load_model(adata=query)  # GenePTClassifier.load(accelerator="auto", device="auto")
    assert isinstance(shared.model, GenePTClassifier)
    pd.testing.assert_frame_equal(shared.model.predict(query), trained.predict(query))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"accelerator": "tpu"}, "accelerator must be"),
        ({"accelerator": "cpu", "device": 1.5}, "device must be"),
        ({"accelerator": "gpu", "device": "cpu"}, "contradict each other"),
        ({"accelerator": "cpu", "device": "cuda:1"}, "contradict each other"),
        pytest.param(
            {"accelerator": "gpu", "device": "auto"},
            "sees no CUDA GPU",
            marks=pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is here"),
        ),
    ],
)
def test_load_refuses_an_accelerator_it_cannot_use(trained_folder, options, message):
    with pytest.raises(ValueError, match=message):
        GenePTClassifier.load(trained_folder, **options)
