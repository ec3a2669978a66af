import numpy as np
import pytest

import sc_genept
from sc_genept.datasets import pbmc68k_cell_types

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
    assert tiny_cl.synonyms(CD4, "related") == ["helper T cell"]
    assert tiny_cl.resolve("t LYMPHOCYTE") == T
    assert tiny_cl.resolve("leukocyte") == IMMUNE
    assert tiny_cl.resolve("cl_0000003") == CD4
    assert tiny_cl.resolve("lymph") is None  # shared by two terms: ambiguous
    # a RELATED synonym counts, after names, exact synonyms and obsolete names
    assert tiny_cl.match("helper T cell") == (
        "CL:0000003",
        "CD4 T cell",
        "related synonym",
        "helper T cell",
    )
    with pytest.raises(ValueError, match="scope must be"):
        tiny_cl.synonyms(T, "CLOSE")
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
    table = pbmc68k_cell_types()
    ids = table["cell_type_ontology_term_id"]
    assert len(table) == 10
    for label, term in ids.items():
        assert term in cl, label
        assert cl.name(term) == table.loc[label, "cell_type"]
    # the two CD8 labels are nested: naive CD8 T is a CD8 alpha-beta T cell
    assert cl.is_ancestor(ids["CD8+ Cytotoxic T"], ids["CD8+/CD45RA+ Naive Cytotoxic"])
    # built on resolve where the name alone finds the sorted population's term
    for label in ("CD14+ Monocyte", "Dendritic"):
        assert cl.resolve(label) == ids[label]
        assert table.loc[label, "how"] == cl.match(label).how
    # the others are decisions, each with a reason: "CD8+ Cytotoxic T" was sorted on CD8
    # only, so not the cytotoxic T cell its name resolves to
    decided = table[table["how"].str.startswith("decided: ")]
    assert len(decided) == 8 and (decided["how"].str.len() > len("decided: ") + 10).all()
    assert cl.resolve("CD8+ Cytotoxic T") == "CL:0000794" != ids["CD8+ Cytotoxic T"]


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


# ---- obsolete terms -------------------------------------------------------------------


def test_obsolete_id_follows_replaced_by_with_a_warning(cl):
    # CL:0000054 "obsolete bone matrix secreting cell" is replaced by CL:0000062 osteoblast
    message = (
        r"CL:0000054 is obsolete in CL 2026-03-26; using its replacement CL:0000062 'osteoblast'"
    )
    with pytest.warns(UserWarning, match=message):
        assert cl.resolve("CL:0000054") == "CL:0000062"
    labels = ["CL:0000054", "T cell", "CL:0000054"]
    with pytest.warns(UserWarning, match=message) as caught:
        ids, unmapped = cl.map_labels(labels)
    assert len(caught) == 1  # one warning per distinct label, not per cell
    assert caught[0].filename == __file__  # it points at the caller's line
    with pytest.warns(UserWarning, match=message) as caught:
        sc_genept.metrics.evaluate(["CL:0000054"], ["CL:0000062"])
    assert {w.filename for w in caught} == {__file__}  # also when called from metrics
    assert ids.tolist() == ["CL:0000062", "CL:0000084", "CL:0000062"] and unmapped == []
    assert labels == ["CL:0000054", "T cell", "CL:0000054"]
    assert "CL:0000054" not in cl  # still not part of the hierarchy


def test_obsolete_id_without_replacement_is_explained(cl):
    # CL:0000004 has no replacement; CL suggests CL:0000000, CL:0000003 (itself obsolete)
    # and CL:0001034
    assert cl.resolve("CL:0000004") is None
    ids, unmapped = cl.map_labels(["CL:0000004"])
    assert unmapped == ["CL:0000004"]
    explained = cl.explain("CL:0000004")
    assert "obsolete in CL 2026-03-26" in explained
    assert "CL:0000000 'cell'" in explained and "CL:0001034 'cell in vitro'" in explained
    assert "CL:0000003" not in explained  # obsolete suggestions are no help
    # replaced by a term of another ontology (CLO): unmapped, and said so
    assert cl.resolve("CL:0000002") is None
    assert "CLO:0000019" in cl.explain("CL:0000002")
    with pytest.raises(KeyError, match="CL:0000004 'obsolete cell by organism' is obsolete"):
        cl.name("CL:0000004")


def test_explain_tells_why_a_label_does_not_map(tiny_cl):
    assert "obsolete" in tiny_cl.explain("CL:0000007")
    assert "no replacement" in tiny_cl.explain("CL:0000007")
    assert "CL:0000002 'T cell', CL:0000005 'B cell'" in tiny_cl.explain("lymph")
    assert "not a term of CL 2024-01-01" in tiny_cl.explain("CL:0000099")
    assert "did you mean 'T cell'" in tiny_cl.explain("T cel")
    assert "missing" in tiny_cl.explain(None) and "missing" in tiny_cl.explain(float("nan"))
    assert "missing value turned into text" in tiny_cl.explain("nan")
    assert (
        tiny_cl.explain("t lymphocyte") == "'t lymphocyte' is CL:0000002 'T cell' in CL 2024-01-01"
    )


# ---- loading --------------------------------------------------------------------------


def test_load_refuses_what_is_not_the_cell_ontology(tmp_path):
    from sc_genept.ontology import CellOntology

    with pytest.raises(FileNotFoundError, match=r"does not exist\. Pass 'bundled'"):
        CellOntology.load(tmp_path / "missing.obo")
    with pytest.raises(FileNotFoundError, match="is a folder"):
        CellOntology.load(tmp_path)
    not_obo = tmp_path / "table.csv"
    not_obo.write_text("gene,value\nCD3E,1\n")
    with pytest.raises(ValueError, match="could not read it as an OBO file") as err:
        CellOntology.load(not_obo)
    assert err.value.__cause__ is not None
    no_root = tmp_path / "go.obo"
    no_root.write_text("format-version: 1.2\n\n[Term]\nid: CL:0000084\nname: T cell\n")
    with pytest.raises(ValueError, match=r"no live term CL:0000000 .* not the Cell Ontology"):
        CellOntology.load(no_root)
    with pytest.raises(TypeError, match="path or URL"):
        CellOntology.load(3)


# ---- plain-data subsets -----------------------------------------------------------------


def test_to_dict_from_dict_round_trip(cl):
    import json

    from sc_genept.ontology import CellOntology

    wanted = sorted(set(pbmc68k_cell_types()["cell_type_ontology_term_id"]))
    data = json.loads(json.dumps(cl.to_dict(wanted)))
    sub = CellOntology.from_dict(data, version=cl.version, source="a saved model")
    assert sub.version == cl.version and set(wanted) <= set(sub.terms)
    assert set(sub.terms) == set().union(*(cl.ancestors(t, include_self=True) for t in wanted))
    for term in sub.terms:
        assert sub.ancestors(term) == cl.ancestors(term)
        assert sub.name(term) == cl.name(term) and sub.synonyms(term) == cl.synonyms(term)
        assert sub.depth(term) == cl.depth(term)
    np.testing.assert_array_equal(sub.ancestor_matrix(sub.terms), cl.ancestor_matrix(sub.terms))
    assert sub.resolve("T lymphocyte") == "CL:0000084"


def test_from_dict_refuses_an_open_or_broken_dict():
    from sc_genept.ontology import CellOntology

    good = {CELL: {"name": "cell", "parents": []}, T: {"name": "T cell", "parents": [CELL]}}
    assert CellOntology.from_dict(good, version="x").ancestors(T) == {CELL}
    with pytest.raises(ValueError, match=r"has parent 'CL:0000001', which is not a key"):
        CellOntology.from_dict({**good, CD4: {"name": "CD4", "parents": [IMMUNE]}}, version="x")
    with pytest.raises(ValueError, match="has no 'name'"):
        CellOntology.from_dict({**good, CD4: {"parents": [T]}}, version="x")
    with pytest.raises(ValueError, match="cycle"):
        CellOntology.from_dict({**good, CELL: {"name": "cell", "parents": [T]}}, version="x")
    with pytest.raises(ValueError, match="do not reach CL:0000000"):
        CellOntology.from_dict({**good, B: {"name": "B cell", "parents": []}}, version="x")
    with pytest.raises(ValueError, match="not a CL id"):
        CellOntology.from_dict({**good, "T cell": {"name": "T", "parents": []}}, version="x")
