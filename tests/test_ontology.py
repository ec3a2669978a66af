import numpy as np
import pytest

from sc_genept.datasets._pbmc import PBMC68K_TO_CL

CELL, IMMUNE, T, CD4, CD8, B, NEURON = (f"CL:000000{i}" for i in range(7))


def test_loading_drops_obsolete_stray_and_foreign_terms(tiny_cl):
    assert tiny_cl.terms == [CELL, IMMUNE, T, CD4, CD8, B, NEURON]
    assert tiny_cl.version == "2024-01-01"
    assert (
        "CL:0000007" not in tiny_cl and "CL:0000008" not in tiny_cl and "GO:0000001" not in tiny_cl
    )


def test_names_synonyms_and_resolve(tiny_cl):
    assert tiny_cl.name(T) == "T cell"
    assert tiny_cl.synonyms(T) == ["T lymphocyte", "lymph"]
    assert tiny_cl.synonyms(CD4) == []  # RELATED synonyms are not exact
    assert tiny_cl.resolve("t LYMPHOCYTE") == T
    assert tiny_cl.resolve("leukocyte") == IMMUNE
    assert tiny_cl.resolve("cl_0000003") == CD4
    assert tiny_cl.resolve("lymph") is None  # shared by two terms: ambiguous
    assert tiny_cl.resolve("helper T cell") is None
    with pytest.raises(KeyError, match="not a live term"):
        tiny_cl.name("CL:0000007")


def test_hierarchy(tiny_cl):
    assert tiny_cl.parents(CD4) == {T}
    assert tiny_cl.children(T) == {CD4, CD8}
    assert tiny_cl.ancestors(CD4) == {T, IMMUNE, CELL}
    assert tiny_cl.ancestors(CD4, include_self=True) == {CD4, T, IMMUNE, CELL}
    assert tiny_cl.descendants(IMMUNE) == {T, CD4, CD8, B}
    assert [tiny_cl.depth(t) for t in (CELL, IMMUNE, T, CD4, NEURON)] == [0, 1, 2, 3, 1]
    assert tiny_cl.lowest_common_ancestor(CD4, B) == IMMUNE
    assert tiny_cl.lowest_common_ancestor(CD4, T) == T
    assert tiny_cl.lowest_common_ancestor(CD4, NEURON) == CELL
    assert tiny_cl.distance(CD4, CD8) == 2
    assert tiny_cl.distance(CD4, NEURON) == 4
    assert tiny_cl.distance(B, B) == 0


def test_ancestor_matrix(tiny_cl):
    terms = [T, CD4, CD8, B]
    r = tiny_cl.ancestor_matrix(terms)
    expected = np.array([[1, 1, 1, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
    np.testing.assert_array_equal(r, expected)
    p = np.array([0.1, 0.2, 0.3, 0.4])
    np.testing.assert_allclose(r @ p, [0.6, 0.2, 0.3, 0.4])  # subtree masses


def test_map_labels_reports_what_did_not_map(tiny_cl):
    ids, unmapped = tiny_cl.map_labels(
        ["T cell", "CD4 T cell", "Tcells", None, "CL:0000005", "Tcells"]
    )
    assert ids.tolist()[:3] == [T, CD4, None] and ids.tolist()[4] == B
    assert unmapped == ["Tcells"]


def test_bundled_cl(cl):
    assert cl.version == "2026-03-26"
    assert 3300 < len(cl) < 3330
    roots = [t for t in cl.terms if not cl.parents(t)]
    assert roots == ["CL:0000000"]
    assert cl.name("CL:0000084") == "T cell" and cl.resolve("T lymphocyte") == "CL:0000084"


def test_pbmc_labels_are_live_cl_terms(cl):
    for label, term in PBMC68K_TO_CL.items():
        assert term in cl, label
    # the two CD8 labels are nested: naive CD8 T is a CD8 alpha-beta T cell
    assert cl.is_ancestor(
        PBMC68K_TO_CL["CD8+ Cytotoxic T"], PBMC68K_TO_CL["CD8+/CD45RA+ Naive Cytotoxic"]
    )


def test_pbmc_dataset_has_cl_columns(pbmc, cl):
    assert pbmc.obs["cell_type_ontology_term_id"].notna().all()
    assert pbmc.obs["cell_type_ontology_term_id"].nunique() == 10
    first = pbmc.obs.iloc[0]
    assert cl.name(first["cell_type_ontology_term_id"]) == first["cell_type"]


def test_lca_and_distance_in_a_dag(cl):
    # "sperm" is a "male gamete"; both are "male germ cell"s, and shortest-path depth alone
    # would pick the latter as their lowest common ancestor
    sperm, male_gamete = cl.resolve("sperm"), cl.resolve("male gamete")
    assert cl.is_ancestor(male_gamete, sperm)
    assert cl.lowest_common_ancestor(male_gamete, sperm) == male_gamete
    assert cl.lowest_common_ancestor(sperm, male_gamete) == male_gamete
    # distance goes up to a common ancestor and down, never through a shared descendant
    b_cell, dc = cl.resolve("B cell"), cl.resolve("dendritic cell")
    lca = cl.lowest_common_ancestor(b_cell, dc)
    assert cl.distance(b_cell, dc) == cl.distance(b_cell, lca) + cl.distance(lca, dc)
    assert cl.distance(b_cell, dc) == cl.distance(dc, b_cell) >= 2
