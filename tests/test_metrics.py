import pandas as pd
import pytest

from sc_genept import metrics

CELL, IMMUNE, T, CD4, CD8, B, NEURON = (f"CL:000000{i}" for i in range(7))
# hand-computed case on tests/data/tiny_cl.obo
Y_TRUE = [CD4, CD4, CD8, B, NEURON, T]
Y_PRED = [CD4, T, CD4, B, B, CD8]


def test_flat_metrics():
    assert metrics.accuracy(Y_TRUE, Y_PRED) == pytest.approx(2 / 6)
    f1 = metrics.per_class_f1(Y_TRUE, Y_PRED)
    assert f1.to_dict() == pytest.approx({CD4: 0.5, CD8: 0.0, B: 2 / 3, NEURON: 0.0, T: 0.0})
    assert metrics.macro_f1(Y_TRUE, Y_PRED) == pytest.approx((0.5 + 2 / 3) / 5)


def test_sctab_rule_counts_predicted_descendants(tiny_cl):
    # only the last cell (true T cell, predicted CD8 T cell) is right under the scTab rule;
    # the second (true CD4, predicted its parent T cell) is not
    assert metrics.sctab_correct(Y_TRUE, Y_PRED, tiny_cl).tolist() == [
        True,
        False,
        False,
        True,
        False,
        True,
    ]
    adjusted = metrics.sctab_adjusted(Y_TRUE, Y_PRED, tiny_cl)
    assert metrics.macro_f1(Y_TRUE, adjusted) == pytest.approx((0.5 + 2 / 3 + 2 / 3) / 5)


def test_hierarchical_scores(tiny_cl):
    assert metrics.shared_top_terms(Y_TRUE, tiny_cl) == {CELL}
    precision, recall, f1 = metrics.hierarchical_prf(Y_TRUE, Y_PRED, tiny_cl)
    assert (precision, recall, f1) == pytest.approx((11 / 15, 11 / 14, 22 / 29))
    # keeping "cell" in every set inflates all three
    p_all, r_all, f_all = metrics.hierarchical_prf(Y_TRUE, Y_PRED, tiny_cl, exclude=())
    assert (p_all, r_all) == pytest.approx((17 / 21, 17 / 20))
    assert f_all > f1


def test_a_label_above_all_others_still_counts(tiny_cl):
    assert metrics.shared_top_terms([T, CD4], tiny_cl) == {IMMUNE, CELL}
    assert metrics.hierarchical_prf([T, T], [T, T], tiny_cl) == (1.0, 1.0, 1.0)
    # predicting B cell for a T cell is a miss, not perfect recall
    assert metrics.hierarchical_prf([T, CD4], [B, CD4], tiny_cl)[1] == pytest.approx(2 / 3)


def test_distance(tiny_cl):
    assert metrics.mean_distance(Y_TRUE, Y_PRED, tiny_cl) == pytest.approx(
        (0 + 1 + 2 + 0 + 3 + 1) / 6
    )


def test_evaluate_table(tiny_cl):
    table = metrics.evaluate(Y_TRUE, Y_PRED, tiny_cl)
    assert list(table.index) == [
        "accuracy",
        "macro_f1",
        "sctab_accuracy",
        "sctab_macro_f1",
        "hierarchical_precision",
        "hierarchical_recall",
        "hierarchical_f1",
        "mean_ontology_distance",
    ]
    assert table.loc["sctab_accuracy", "value"] == pytest.approx(3 / 6)
    assert table.loc["hierarchical_f1", "value"] == pytest.approx(22 / 29)
    assert table.attrs["excluded_terms"] == [CELL]
    explicit = metrics.evaluate(Y_TRUE, Y_PRED, tiny_cl, exclude=[CELL, IMMUNE])
    assert explicit.attrs["excluded_terms"] == [CELL, IMMUNE]


def test_evaluate_refuses_unknown_terms(tiny_cl):
    with pytest.raises(ValueError, match="CL:0000099"):
        metrics.evaluate([CD4], ["CL:0000099"], tiny_cl)
    with pytest.raises(ValueError, match="equally long"):
        metrics.evaluate([CD4], [CD4, CD8], tiny_cl)


def test_expected_calibration_error_by_hand():
    # bin [0.8, 0.867): 2 cells at 0.8 and 0.85, one right -> |0.5 - 0.825| = 0.325
    # bin [0.933, 1]: 2 cells at 1.0, both right -> 0
    confidence = [0.8, 0.85, 1.0, 1.0]
    correct = [True, False, True, True]
    assert metrics.expected_calibration_error(confidence, correct) == pytest.approx(2 / 4 * 0.325)
    assert metrics.expected_calibration_error([0.7] * 10, [True] * 7 + [False] * 3) == (
        pytest.approx(0.0)
    )
    with pytest.raises(ValueError, match="probabilities"):
        metrics.expected_calibration_error([1.2], [True])


def test_missing_labels_are_refused_with_where_and_what_to_do(tiny_cl):
    import numpy as np

    with pytest.raises(ValueError, match=r"2 of 4 cells have no label in y_true .*positions 1, 3"):
        metrics.evaluate([CD4, None, T, np.nan], [CD4] * 4, tiny_cl)
    # "nan" is what .astype(str) makes of a missing label: not a cell type
    with pytest.raises(ValueError, match=r"1 of 2 cells have no label in y_pred .*Drop them"):
        metrics.accuracy([CD4, T], [CD4, "nan"])
    with pytest.raises(ValueError, match="no label in y_true"):
        metrics.macro_f1(pd.Series([CD4, None], dtype="category"), [CD4, T])


def test_length_empty_and_shape_are_refused(tiny_cl):
    with pytest.raises(ValueError, match=r"equally long .*1 vs 2"):
        metrics.evaluate([CD4], [CD4, CD8], tiny_cl)
    for function in (metrics.accuracy, metrics.macro_f1, metrics.per_class_f1):
        with pytest.raises(ValueError, match="empty"):
            function([], [])
    with pytest.raises(ValueError, match="empty"):
        metrics.evaluate([], [], tiny_cl)
    with pytest.raises(ValueError, match="1-D"):
        metrics.accuracy([[CD4]], [[CD4]])
    with pytest.raises(ValueError, match="empty"):
        metrics.expected_calibration_error([], [])
    with pytest.raises(ValueError, match=r"pass \['CL:0000000'\]"):
        metrics.hierarchical_prf(Y_TRUE, Y_PRED, tiny_cl, exclude=CELL)


def test_names_and_synonyms_score_like_ids(tiny_cl):
    names = pd.Series([tiny_cl.name(t) for t in Y_TRUE])
    synonyms = ["CD4 T cell", "cd4 t cell", "CD8 T cell", "B cell", "neuron", "T lymphocyte"]
    kept = names.copy()
    expected = metrics.evaluate(Y_TRUE, Y_PRED, tiny_cl)
    pd.testing.assert_frame_equal(metrics.evaluate(names, Y_PRED, tiny_cl), expected)
    pd.testing.assert_frame_equal(metrics.evaluate(synonyms, Y_PRED, tiny_cl), expected)
    pd.testing.assert_series_equal(names, kept)  # the caller's labels are not modified
    # sctab_adjusted keeps the form it was given, so flat metrics can compare with y_true
    assert metrics.sctab_adjusted(["T cell"], ["CD8 T cell"], tiny_cl).tolist() == ["T cell"]


def test_unmapped_labels_say_which_and_why(tiny_cl, cl):
    with pytest.raises(
        ValueError, match=r"1 labels in y_pred \(2 of 3 cells, first at position 1\)"
    ):
        metrics.evaluate([CD4, CD4, T], [CD4, "Tcells", "Tcells"], tiny_cl)
    with pytest.raises(ValueError, match="exact synonym of several terms"):
        metrics.mean_distance([CD4], ["lymph"], tiny_cl)
    # an obsolete id without replacement: say so, and what CL suggests
    with pytest.raises(ValueError, match=r"CL:0000004 .*obsolete in CL 2026-03-26; CL suggests"):
        metrics.evaluate(["CL:0000084", "CL:0000004"], ["T cell", "T cell"], cl)
    # an obsolete id with a replacement is scored as the replacement
    with pytest.warns(UserWarning, match="CL:0000054 is obsolete"):
        table = metrics.evaluate(["CL:0000054"], ["osteoblast"], cl)
    assert table.loc["accuracy", "value"] == 1.0


def test_everyday_names_score_like_ids_on_both_sides(cl):
    # what people type, on both sides, scores as the CL ids CellOntology.match gives
    y_true = ["CD4+ T cells", "B cells", "CD14+ Monocyte", "NK", "Dendritic", "CD8 T"]
    y_pred = ["CD4 T", "B", "Monocytes", "NK cells", "pDCs", "CD4+ T cell"]
    true_ids = ["CL:0000624", "CL:0000236", "CL:0001054", "CL:0000623", "CL:0000451", "CL:0000625"]
    pred_ids = ["CL:0000624", "CL:0000236", "CL:0000576", "CL:0000623", "CL:0000784", "CL:0000624"]
    expected = metrics.evaluate(true_ids, pred_ids, cl)
    pd.testing.assert_frame_equal(metrics.evaluate(y_true, y_pred, cl), expected)
    # pDC is under dendritic cell; monocyte is above CD14-positive monocyte
    assert metrics.sctab_correct(y_true, y_pred, cl).tolist() == [1, 1, 0, 1, 1, 0]
    assert expected.loc["accuracy", "value"] == pytest.approx(3 / 6)


def test_the_classifier_maps_labels_as_the_metrics_do(cl):
    # genept_annotate's reference labels go through GenePTClassifier.setup_anndata, which
    # uses the same CellOntology.map_labels: the same names give the same terms
    import anndata as ad
    import numpy as np

    from sc_genept.model import GenePTClassifier

    labels = ["CD4+ T cells", "B cells", "CD14+ Monocyte", "NK", "Dendritic", "CD8 T"] * 2
    ref = ad.AnnData(
        np.zeros((len(labels), 3), dtype=np.float32),
        obs=pd.DataFrame({"cell_type": labels}, index=[f"c{i}" for i in range(len(labels))]),
    )
    ref.obsm["X_genept"] = np.random.default_rng(0).normal(size=(len(labels), 4))
    GenePTClassifier.setup_anndata(ref, labels_key="cell_type", embedding_keys=["X_genept"])
    registered = ref.obs.drop(columns="cell_type").iloc[:, 0].astype(str).tolist()
    assert registered == cl.map_labels(labels)[0].tolist()
