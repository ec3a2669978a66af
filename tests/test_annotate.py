import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scanpy as sc
from conftest import COLUMNS, largest_block

import sc_genept
from sc_genept.model import GenePTClassifier

FAST = {"max_epochs": 40, "enable_progress_bar": False}


@pytest.fixture
def raw_split(pbmc):
    """Un-embedded real PBMCs (scaled .X, log-normalised .raw): (reference, query)."""
    is_query = np.arange(pbmc.n_obs) % 5 == 0
    return pbmc[~is_query].copy(), pbmc[is_query].copy()


def test_label_transfer_in_one_line(raw_split, cl):
    ref, query = raw_split
    ref_before = ref.copy()
    sc.tl.genept_annotate(query, reference=ref, labels_key="cell_type_ontology_term_id", **FAST)
    assert [c for c in query.obs.columns if c.startswith("genept")] == COLUMNS
    assert isinstance(query.obs["genept_cell_type"].dtype, pd.CategoricalDtype)
    assert query.obs["genept_cell_type_confidence"].between(0.5 - 1e-6, 1 + 1e-6).all()
    ids = query.obs["genept_cell_type_ontology_term_id"].astype(str)
    assert all(
        cl.name(i) == n for i, n in zip(ids, query.obs["genept_cell_type"].astype(str), strict=True)
    )
    assert (
        "X_genept" in query.obsm and query.uns["X_genept"]["source"] == "adata.raw.X"
    )  # .X was scaled
    assert query.uns["genept_cell_type"]["ontology_version"] == "2026-03-26"
    # the default model reads the embedding and the expression of the same genes
    assert "['X_genept', 'X_genept_expression']" in query.uns["genept_cell_type"]["model"]
    accuracy = sc_genept.metrics.evaluate(query.obs["cell_type_ontology_term_id"].astype(str), ids)
    assert accuracy.loc["sctab_accuracy", "value"] > 0.6
    # the reference is left exactly as it was
    assert list(ref.obs.columns) == list(ref_before.obs.columns)
    assert list(ref.obsm) == list(ref_before.obsm) and list(ref.uns) == list(ref_before.uns)


def test_with_a_saved_model_and_copy(pbmc_split, tmp_path):
    ref, query = pbmc_split
    GenePTClassifier.setup_anndata(ref, labels_key="cell_type_ontology_term_id")
    model = GenePTClassifier(ref)
    model.train(**FAST)
    model.save(tmp_path / "m")
    out = sc.tl.genept_annotate(query, tmp_path / "m", copy=True, key_added="ct")
    assert "ct" not in query.obs and "ct" in out.obs
    direct = model.predict(query)
    assert (out.obs["ct_ontology_term_id"].astype(str) == direct["ontology_term_id"]).all()
    coarse = sc.tl.genept_annotate(query, model, min_confidence=0.99, copy=True)
    depth = sc_genept.ontology.CellOntology.load().depth
    shallower = [
        depth(a) <= depth(b)
        for a, b in zip(
            coarse.obs["genept_cell_type_ontology_term_id"].astype(str),
            direct["ontology_term_id"],
            strict=True,
        )
    ]
    assert all(shallower)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "either model="),
        ({"reference": "r"}, "labels_key"),
        ({"model": "m", "reference": "r"}, "not both"),
    ],
)
def test_bad_calls(pbmc, kwargs, message):
    with pytest.raises(ValueError, match=message):
        sc_genept.tl.genept_annotate(pbmc, **kwargs)
    assert "genept_cell_type" not in pbmc.obs


@pytest.mark.slow
def test_same_seed_same_annotation(pbmc_split):
    ref, query = pbmc_split
    runs = [
        sc.tl.genept_annotate(query, reference=ref, labels_key="cell_type", copy=True, **FAST).obs
        for _ in range(2)
    ]
    np.testing.assert_array_equal(
        runs[0]["genept_cell_type_confidence"], runs[1]["genept_cell_type_confidence"]
    )


def test_backed_query_is_embedded_without_copying(pbmc_split, tmp_path, monkeypatch, backed_reads):
    import hashlib

    from scipy import sparse

    ref, query = pbmc_split
    counts = ad.AnnData(
        sparse.csr_matrix(np.expm1(query.raw.X.toarray()).round()),
        obs=query.obs[[]],
        var=query.raw.var[[]],
    )
    path = tmp_path / "q.h5ad"
    counts.write_h5ad(path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    backed = ad.read_h5ad(path, backed="r")
    GenePTClassifier.setup_anndata(ref, labels_key="cell_type_ontology_term_id")
    model = GenePTClassifier(ref)
    model.train(**FAST)
    # blocks of 16 cells, so that reading all of X at once cannot pass for one block
    monkeypatch.setattr(sc_genept._genept_w, "default_block_rows", lambda n: 16)
    reads = backed_reads(backed)
    sc.tl.genept_annotate(backed, model)
    monkeypatch.undo()
    assert reads and max(reads) <= largest_block(counts.X.indptr, 16)
    assert backed.isbacked and backed.obs["genept_cell_type"].notna().all()
    assert backed.uns["X_genept"]["log_normalized"] is True  # counts on disk were normalised
    backed.file.close()
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest


def test_query_problems_surface_before_training(pbmc, raw_split, monkeypatch):
    trained = []
    monkeypatch.setattr(GenePTClassifier, "train", lambda self, **kw: trained.append(kw))
    ref, query = raw_split
    query.var_names = [f"NOTAGENE_{i}" for i in range(query.n_vars)]
    query.raw = query  # scaled, and no gene matches either way
    with pytest.raises(ValueError, match="None of the"):
        sc.tl.genept_annotate(query, reference=ref, labels_key="cell_type", max_epochs=1000)
    with pytest.raises(ValueError, match="min_confidence"):
        sc.tl.genept_annotate(query, reference=ref, labels_key="cell_type", min_confidence=0)
    assert not trained  # the user waited for nothing


def test_training_arguments_with_a_model_are_refused(pbmc_split):
    ref, query = pbmc_split
    GenePTClassifier.setup_anndata(ref, labels_key="cell_type_ontology_term_id")
    model = GenePTClassifier(ref)
    model.train(max_epochs=1, enable_progress_bar=False)
    before = query.copy()
    with pytest.raises(TypeError, match=r"\['max_epochs'\] with model=.*model.train"):
        sc.tl.genept_annotate(query, model, max_epochs=50)
    with pytest.raises(TypeError, match="reference_layer"):
        sc.tl.genept_annotate(query, model, reference_layer="counts")
    assert list(query.obs.columns) == list(before.obs.columns)


def _model_on(ref, table, **embed):
    sc.tl.genept_embed(ref, gene_embeddings=table, use_raw=True, **embed)
    GenePTClassifier.setup_anndata(ref, labels_key="cell_type_ontology_term_id")
    model = GenePTClassifier(ref)
    model.train(max_epochs=2, enable_progress_bar=False)
    return model


def test_a_model_on_another_table_is_given_queries_of_that_table(raw_split, default_table):
    from sc_genept.genes import GeneEmbeddings, Provenance

    ref, query = raw_split
    # trained on 64 dimensions of the bundled table: found and cut to 64 by itself
    model = _model_on(ref.copy(), "default", n_dims=64)
    out = sc.tl.genept_annotate(query, model, copy=True)
    assert out.obsm["X_genept"].shape[1] == 64
    assert out.uns["genept_cell_type"]["gene_embeddings"]["truncated_from"] == 384
    # trained on a table that is not bundled: the error names it, and passing it works
    vectors = np.random.default_rng(0).normal(size=default_table.embeddings.shape)
    other = GeneEmbeddings(
        default_table.symbols,
        vectors.astype(np.float32),
        provenance=Provenance(text_source="random", embedding_model="gaussian-384"),
    )
    model = _model_on(ref.copy(), other)
    before = query.copy()
    with pytest.raises(ValueError, match="embedding_model='gaussian-384'.*none of the bundled"):
        sc.tl.genept_annotate(query, model)
    with pytest.raises(ValueError, match="gene_embeddings='default' is another table"):
        sc.tl.genept_annotate(query, model, gene_embeddings="default")
    assert list(query.obs.columns) == list(before.obs.columns) and "X_genept" not in query.obsm
    out = sc.tl.genept_annotate(query, model, gene_embeddings=other, copy=True)
    assert out.uns["X_genept"]["gene_embeddings"]["sha256"] == other.sha256


def test_reference_and_query_choose_their_matrices_apart(raw_split):
    ref, query = raw_split
    # the reference keeps counts in a layer under a scaled .X without .raw; the query is
    # log-normalised in .X
    ref = ad.AnnData(
        ref.X, obs=ref.obs, var=ref.var, layers={"counts": np.expm1(ref.raw.X.toarray()).round()}
    )
    query = ad.AnnData(query.raw.X.copy(), obs=query.obs[[]], var=query.raw.var[[]])
    sc.tl.genept_annotate(
        query,
        reference=ref,
        labels_key="cell_type_ontology_term_id",
        reference_layer="counts",
        **FAST,
    )
    assert query.uns["X_genept"]["source"] == "adata.X"
    assert query.uns["genept_cell_type"]["params"]["reference_layer"] == "counts"
    assert query.obs["genept_cell_type"].notna().all()


def _keep_genes(adata, fraction, seed=0):
    """The log-normalised cells with only a random ``fraction`` of their genes, not embedded."""
    keep = np.random.default_rng(seed).random(adata.raw.n_vars) < fraction
    return ad.AnnData(adata.raw.X[:, keep], obs=adata.obs[[]], var=adata.raw.var[keep][[]])


def test_reference_and_query_are_embedded_on_shared_genes(raw_split):
    ref, query = raw_split
    query = _keep_genes(query, 0.9)
    sc.tl.genept_annotate(query, reference=ref, labels_key="cell_type", **FAST)
    overlap = query.uns["genept_cell_type"]["gene_overlap"]
    n_query = query.uns["X_genept"]["gene_set"]["n_genes"]
    assert overlap["n_shared_genes"] == n_query == overlap["n_query_genes"]
    assert n_query < overlap["n_reference_genes"]
    assert overlap["fraction_of_smaller_shared"] == 1
    # the query embedding is the one made of exactly those genes
    alone = sc.tl.genept_embed(query, copy=True)
    np.testing.assert_allclose(query.obsm["X_genept"], alone.obsm["X_genept"], atol=1e-6)


def test_missing_model_genes_warn_then_refuse(pbmc_split):
    ref, query = pbmc_split
    GenePTClassifier.setup_anndata(ref, labels_key="cell_type_ontology_term_id")
    model = GenePTClassifier(ref)
    model.train(**FAST)
    assert len(model.genes) == ref.uns["X_genept"]["gene_set"]["n_genes"]
    half = _keep_genes(query, 0.5)
    with pytest.warns(
        UserWarning, match=r"of the model's 7\d\d genes \(\d\d%\).*missing are e\.g\."
    ):
        out = sc.tl.genept_annotate(half, model, copy=True)
    assert out.uns["genept_cell_type"]["gene_overlap"]["n_genes_found"] < 400
    few = _keep_genes(query, 0.05)  # ~38 genes: a small panel still gets labels
    before = few.copy()
    with pytest.raises(ValueError, match="below min_gene_overlap=0.1"):
        sc.tl.genept_annotate(few, model, min_gene_overlap=0.1)
    assert list(few.obs.columns) == list(before.obs.columns) and "X_genept" not in few.obsm
    with pytest.raises(ValueError, match="fewer than 10 genes"):
        sc.tl.genept_annotate(_keep_genes(query, 0.011), model)  # 1.1 %: ~8 genes
    with pytest.warns(UserWarning, match="of the model's"):
        sc.tl.genept_annotate(few, model)
    assert few.obs["genept_cell_type"].notna().all()


def test_embedding_of_other_genes_is_refused_by_the_model(pbmc_split, default_table):
    ref, query = pbmc_split
    GenePTClassifier.setup_anndata(ref, labels_key="cell_type_ontology_term_id")
    model = GenePTClassifier(ref)
    model.train(max_epochs=1, enable_progress_bar=False)
    extra = _keep_genes(query, 1.0)
    extra.var_names = [*extra.var_names[:-1], "CD19" if "CD19" not in extra.var_names else "CD4"]
    sc.tl.genept_embed(extra)
    with pytest.raises(ValueError, match="not trained on"):
        model.predict(extra)
    sc.tl.genept_embed(extra, genes=model.genes)  # the fix the message names
    assert model.predict(extra)["cell_type"].notna().all()


def test_missing_genes_count_as_typical_of_the_reference(pbmc_split):
    """A query lacking genes is annotated as if it had them at the reference's mean."""
    ref, query = pbmc_split
    sc.tl.genept_embed(ref, use_raw=True, expression=True)
    GenePTClassifier.setup_anndata(
        ref, labels_key="cell_type", embedding_keys=["X_genept", "X_genept_expression"]
    )
    model = GenePTClassifier(ref)
    model.train(**FAST)
    mean = pd.Series(model.gene_set["mean_expression"], index=model.genes)
    full = _keep_genes(query, 1.0)
    full = full[:, full.var_names.isin(model.genes)].copy()
    dropped = np.random.default_rng(1).random(full.n_vars) < 0.3
    at_mean = full.copy()
    at_mean.X = at_mean.X.toarray()
    at_mean.X[:, dropped] = mean[full.var_names[dropped]].to_numpy()
    lacking = full[:, ~dropped].copy()
    with pytest.warns(UserWarning, match="of the model's"):
        a = sc.tl.genept_annotate(lacking, model, copy=True).obs
    b = sc.tl.genept_annotate(at_mean, model, copy=True).obs
    np.testing.assert_allclose(
        a["genept_cell_type_finest_probability"],
        b["genept_cell_type_finest_probability"],
        atol=1e-5,
    )
    assert (a["genept_cell_type_finest"] == b["genept_cell_type_finest"]).all()


def test_panel_query_with_a_larger_reference(raw_split):
    """A targeted panel (few of the reference's genes) is annotated on the genes it has."""
    ref, query = raw_split
    panel = _keep_genes(query, 0.08)
    sc.tl.genept_annotate(panel, reference=ref, labels_key="cell_type_ontology_term_id", **FAST)
    overlap = panel.uns["genept_cell_type"]["gene_overlap"]
    assert (
        overlap["n_shared_genes"] == overlap["n_query_genes"] < 0.1 * overlap["n_reference_genes"]
    )
    assert overlap["fraction_of_smaller_shared"] == 1
    assert panel.obs["genept_cell_type"].notna().all()
    tiny = _keep_genes(query, 0.008)  # ~6 genes: too few to train on
    with pytest.raises(ValueError, match=r"share \d genes .*fewer than 10"):
        sc.tl.genept_annotate(tiny, reference=ref, labels_key="cell_type_ontology_term_id")


def test_mouse_query_through_orthologs(raw_split, verbosity, capfd):
    """Mouse-style names match by case; a gene named differently needs orthologs=."""
    ref, query = raw_split
    mouse = _keep_genes(query, 1.0)
    names = [g.capitalize() for g in mouse.var_names]
    names[list(mouse.var_names).index("CD74")] = "Mouse-cd74"  # named differently in mouse
    mouse.var_names = names
    verbosity("info")
    with pytest.warns(UserWarning, match="look like mouse genes"):
        plain = sc.tl.genept_annotate(
            mouse, reference=ref, labels_key="cell_type_ontology_term_id", copy=True, **FAST
        )
    crossed = sc.tl.genept_annotate(
        mouse,
        reference=ref,
        labels_key="cell_type_ontology_term_id",
        orthologs={"Mouse-cd74": "CD74"},
        copy=True,
        **FAST,
    )
    before = plain.uns["genept_cell_type"]["genes_through_orthologs"]
    after = crossed.uns["genept_cell_type"]["genes_through_orthologs"]
    assert after["by_ortholog_table"] == 1 and before["by_ortholog_table"] == 0
    assert after["by_symbol_ignoring_case"] == before["by_symbol_ignoring_case"] > 600
    shared = crossed.uns["genept_cell_type"]["gene_overlap"]["n_shared_genes"]
    assert shared == plain.uns["genept_cell_type"]["gene_overlap"]["n_shared_genes"] + 1
    assert "(1 matched through orthologs= and " in capfd.readouterr().err


def test_expression_input_reads_the_most_variable_genes(raw_split):
    ref, query = raw_split
    sc.tl.genept_annotate(
        query,
        reference=ref,
        labels_key="cell_type_ontology_term_id",
        n_expression_genes=100,
        **FAST,
    )
    record = query.uns["genept_cell_type"]
    assert record["params"]["n_expression_genes"] == 100
    n_dims = query.obsm["X_genept"].shape[1]
    assert f"({n_dims + 100} dims)" in record["model"]  # embedding + 100 genes' expression
    assert query.uns["X_genept"]["gene_set"]["n_genes"] > 700  # GenePT-w: every shared gene
    with pytest.raises(
        ValueError, match=r"n_expression_genes must be ≥ 1 \(or None for the default\), got 0"
    ):
        sc.tl.genept_annotate(
            query, reference=ref, labels_key="cell_type_ontology_term_id", n_expression_genes=0
        )


def test_most_variable_genes_are_chosen_on_log_data_however_given(pbmc):
    """Normalised data given unlogged is ranked as its log (the seurat flavour reads logs)."""
    from sc_genept.tl._inputs import EXPRESSION_KEY as _EXPRESSION_KEY
    from sc_genept.tl._inputs import most_variable as _most_variable

    logged = sc.tl.genept_embed(pbmc, use_raw=True, expression=True, copy=True)
    unlogged = logged.copy()
    unlogged.obsm[_EXPRESSION_KEY] = unlogged.obsm[_EXPRESSION_KEY].expm1()
    chosen = _most_variable(logged, 100)
    assert len(chosen) == 100
    np.testing.assert_array_equal(_most_variable(unlogged, 100), chosen)
    assert _most_variable(logged, 5000) is None  # fewer genes than asked: all of them
