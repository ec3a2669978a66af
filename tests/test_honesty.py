"""Honest calls: an error rate the user chooses, and cells of types the reference lacks."""

import json

import numpy as np
import pandas as pd
import pytest
import scanpy as sc
from conftest import rehash
from safetensors.torch import load_file, save_file

import sc_genept
from sc_genept.model import GenePTClassifier, decode
from sc_genept.model._calls import (
    LEVELS,
    error_coverage,
    level_for_error,
    novelty_reference,
    typicality,
)

CELL, IMMUNE, T, CD4, CD8, B = (f"CL:000000{i}" for i in range(6))
LABELS = "cell_type_ontology_term_id"
B_CELL = "CL:0000236"


def test_a_cell_unlike_the_reference_is_called_above_its_likeliest_type(tiny_cl):
    terms = [IMMUNE, T, CD4, CD8, B]
    probs = pd.DataFrame([[0.0, 0.0, 0.9, 0.05, 0.05]] * 2, columns=terms)
    labelled = np.array([False, False, True, True, True])
    out = decode(
        probs,
        tiny_cl.ancestor_matrix(terms),
        0.5,
        tiny_cl,
        unlike=np.array([False, True]),
        labelled=labelled,
    )
    assert out["ontology_term_id"].tolist() == [CD4, T]
    assert out["reason"].tolist() == ["most probable term", "unlike the reference: coarser term"]
    assert out["confidence"].tolist() == pytest.approx([0.9, 0.95])


def _calibrated_sample(rng, n, terms_subtree):
    """Cells whose probabilities are true: the truth is drawn from them."""
    probs = rng.dirichlet(np.full(terms_subtree.shape[0], 0.3), size=n)
    truth = np.array([rng.choice(len(p), p=p) for p in probs])
    return probs, truth


def test_max_error_bounds_the_error_of_new_cells(tiny_cl):
    terms = [IMMUNE, T, CD4, CD8, B]
    subtree = tiny_cl.ancestor_matrix(terms)
    labelled = np.array([False, False, True, True, True])
    rng = np.random.default_rng(0)
    curve = error_coverage(*_calibrated_sample(rng, 400, subtree), subtree, labelled)
    assert np.all(np.diff(curve["bound_error"]) <= 1e-12)  # monotone, as the bound needs
    assert curve["coverage"][0] > curve["coverage"][-1]
    new = error_coverage(*_calibrated_sample(rng, 4000, subtree), subtree, labelled)
    for target in (0.05, 0.1, 0.2):
        level = level_for_error(curve, target)
        realised = new["error"][int(np.flatnonzero(LEVELS == level)[0])]
        assert realised <= target + 0.02
    assert level_for_error({**curve, "n_cells": 10}, 0.05) is None  # 1/11 > 0.05


def test_typicality_is_a_conformal_p_value():
    rng = np.random.default_rng(0)
    reference = novelty_reference(rng.chisquare(10, 2000))
    p = typicality(rng.chisquare(10, 20000), reference)
    for rate in (0.01, 0.05, 0.2):
        assert (p < rate).mean() <= rate + 0.01
    assert typicality(np.array([1e9]), reference)[0] == pytest.approx(1 / 2001)


def test_max_error_on_real_cells_trades_coverage_for_errors(trained, pbmc_split):
    _, query = pbmc_split
    truth = query.obs[LABELS].astype(str).to_numpy()
    cl = trained.ontology
    coverage = []
    for target in (0.05, 0.2):
        calls = trained.predict(query, max_error=target)["ontology_term_id"].to_numpy()
        right = [
            c == t or cl.is_ancestor(c, t) or cl.is_ancestor(t, c)
            for c, t in zip(calls, truth, strict=True)
        ]
        assert 1 - np.mean(right) <= target + 0.1  # 140 cells: the bound holds in expectation
        coverage.append(np.isin(calls, trained.calibration_["labelled_terms"]).mean())
    assert coverage[0] <= coverage[1]
    curve = trained.error_coverage()
    assert list(curve.columns) == ["level", "error", "coverage", "bound_error"]
    on_query = trained.error_coverage(query, LABELS)
    assert on_query["coverage"].iloc[0] > on_query["coverage"].iloc[-1]


def test_without_held_out_cells_max_error_says_how_to_get_them(pbmc_split):
    ref, query = pbmc_split
    GenePTClassifier.setup_anndata(ref, labels_key=LABELS)
    model = GenePTClassifier(ref)
    with pytest.warns(UserWarning, match="early stopping is off"):
        model.train(max_epochs=2, train_size=1, calibration_size=0, enable_progress_bar=False)
    with pytest.raises(ValueError, match="train_size < 1 or calibration_size > 0"):
        model.predict(query, max_error=0.1)
    with pytest.raises(ValueError, match="max_error must be"):
        model.predict(query, max_error=1.5)
    assert model.predict(query)["typicality"].isna().all()


@pytest.fixture
def without_b_cells(pbmc_split):
    """A model of PBMCs trained without B cells, and a query with them."""
    ref, query = pbmc_split
    ref = ref[ref.obs[LABELS] != B_CELL].copy()
    inputs = ["X_genept", "X_genept_expression"]  # what genept_annotate trains on
    for adata in (ref, query):
        sc.tl.genept_embed(adata, use_raw=True, expression=True)
    GenePTClassifier.setup_anndata(ref, labels_key=LABELS, embedding_keys=inputs)
    model = GenePTClassifier(ref)
    model.train(max_epochs=40, enable_progress_bar=False)
    return model, query, (query.obs[LABELS] == B_CELL).to_numpy()


def test_cells_of_a_type_the_reference_lacks_are_not_given_a_wrong_type(without_b_cells):
    model, query, b_cells = without_b_cells
    reference_types = model.calibration_["labelled_terms"]
    cl = model.ontology

    def wrong_specific(calls):
        return np.mean(
            [c in reference_types and not cl.is_ancestor(c, B_CELL) for c in calls[b_cells]]
        )

    unchecked = model.predict(query)  # the default: no check
    assert wrong_specific(unchecked["ontology_term_id"].to_numpy()) > 0.7  # what it prevents
    checked = model.predict(query, novelty_rate=0.02)
    assert wrong_specific(checked["ontology_term_id"].to_numpy()) <= 0.4
    flagged = checked["reason"].astype(str).str.startswith("unlike").to_numpy()
    assert flagged[b_cells].mean() >= 0.5
    assert flagged[~b_cells].mean() <= 0.05
    assert checked["typicality"][b_cells].median() < checked["typicality"][~b_cells].median()


def test_genept_annotate_writes_why_and_how_typical(trained, pbmc_split):
    _, query = pbmc_split
    sc.tl.genept_annotate(query, trained, max_error=0.1)
    assert query.obs["genept_cell_type_typicality"].isna().all()  # not asked for: not paid
    sc.tl.genept_annotate(query, trained, max_error=0.1, novelty_rate=0)
    assert query.uns["genept_cell_type"]["params"]["max_error"] == 0.1
    assert not query.obs["genept_cell_type_reason"].astype(str).str.startswith("unlike").any()
    reason = query.obs["genept_cell_type_reason"]
    assert list(reason.cat.categories) == list(sc_genept.model._calls.REASONS)
    assert query.obs["genept_cell_type_typicality"].between(0, 1).all()


def test_bad_max_error_is_refused_before_training(pbmc_split):
    ref, query = pbmc_split
    for bad in (0, 1, "0.1"):
        with pytest.raises((ValueError, TypeError), match="max_error"):
            sc.tl.genept_annotate(query, reference=ref, labels_key=LABELS, max_error=bad)
    with pytest.raises(ValueError, match="novelty_rate"):
        sc.tl.genept_annotate(query, reference=ref, labels_key=LABELS, novelty_rate=1.0)


def test_calibration_survives_save_and_an_older_folder_still_loads(trained, pbmc_split, tmp_path):
    _, query = pbmc_split
    trained.save(tmp_path / "m")
    loaded = GenePTClassifier.load(tmp_path / "m")
    pd.testing.assert_frame_equal(
        loaded.predict(query, max_error=0.1), trained.predict(query, max_error=0.1)
    )
    # a folder saved before the novelty check: no novelty weights, no calibration record
    folder = tmp_path / "m"
    state = load_file(folder / "model.safetensors")
    save_file(
        {k: v for k, v in state.items() if not k.startswith("novelty")},
        folder / "model.safetensors",
    )
    meta = json.loads((folder / "model.json").read_text())
    del meta["calibration"]
    (folder / "model.json").write_text(json.dumps(meta))
    rehash(folder)
    old = GenePTClassifier.load(folder)
    calls = old.predict(query, novelty_rate=0.02)
    assert calls["typicality"].isna().all()
    assert not calls["reason"].astype(str).str.startswith("unlike").any()
    with pytest.raises(ValueError, match="held out"):
        old.predict(query, max_error=0.1)


def test_error_coverage_plot(trained, pbmc_split):
    import matplotlib

    matplotlib.use("Agg")
    _, query = pbmc_split
    ax = sc_genept.pl.error_coverage(trained, show=False)
    assert ax.get_xlabel().startswith("coverage")
    assert len(ax.get_legend().get_texts()) >= 1
    ax = sc_genept.pl.error_coverage(trained, query, labels_key=LABELS, show=False)
    assert ax.get_title() == "cells given"


def test_majority_vote_takes_each_cluster_s_most_frequent_call():
    from sc_genept.tl._voting import majority_vote

    calls = np.array(["T", "T", "B", "B", "B", "NK"])
    assert majority_vote(calls, [0, 0, 0, 1, 1, 1]).tolist() == ["T"] * 3 + ["B"] * 3


def test_majority_voting_in_genept_annotate(trained, pbmc_split):
    _, query = pbmc_split
    sc.tl.genept_annotate(query, trained, majority_voting=True, over_clustering="louvain")
    voted = query.obs.groupby("louvain", observed=True)["genept_cell_type_majority_voting"]
    assert (voted.nunique() == 1).all()
    assert query.uns["genept_cell_type"]["params"]["majority_voting"] is True
    sc.tl.genept_annotate(query, trained, majority_voting=True)  # its own over-clustering
    assert (
        query.obs["genept_cell_type_majority_voting_ontology_term_id"].str.startswith("CL:").all()
    )
    sc.tl.genept_annotate(query, trained)  # without: the voted columns go
    assert "genept_cell_type_majority_voting" not in query.obs
    with pytest.raises(ValueError, match="pass both"):
        sc.tl.genept_annotate(query, trained, over_clustering="louvain")
    with pytest.raises(KeyError, match="not a column"):
        sc.tl.genept_annotate(query, trained, majority_voting=True, over_clustering="nope")
