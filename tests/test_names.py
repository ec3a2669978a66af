"""Names that biologists type: CellOntology.match, its rules, and where it refuses to guess."""

import time

import pytest

from sc_genept.ontology import (
    ABBREVIATIONS,
    IMPLIED_QUALIFIERS,
    RULES,
    CellOntology,
    Match,
    normalise,
)

# label as people write it → (CL id, its CL name, the step that finds it). Each id was
# checked against the bundled CL's names: the test asserts the name too.
EVERYDAY = {
    # ids, names and exact synonyms, with case, hyphen, underscore and Greek variants
    "CL:0000236": ("CL:0000236", "B cell", "id"),
    "t_cell": ("CL:0000084", "T cell", "name"),
    "NATURAL KILLER CELL": ("CL:0000623", "natural killer cell", "name"),
    "Treg": ("CL:0000815", "regulatory T cell", "synonym"),
    "pDC": ("CL:0000784", "plasmacytoid dendritic cell", "synonym"),
    "cDC": ("CL:0000990", "conventional dendritic cell", "synonym"),
    "mDC": ("CL:0000782", "myeloid dendritic cell", "synonym"),
    "NK cell": ("CL:0000623", "natural killer cell", "synonym"),
    "RBC": ("CL:0000232", "erythrocyte", "synonym"),
    "T-Lymphocyte": ("CL:0000084", "T cell", "synonym"),
    "CD16+ monocyte": ("CL:0002397", "CD14-positive, CD16-positive monocyte", "synonym"),
    # marker form: "+" = "-positive", "-" = "-negative"
    "CD14+ Monocyte": ("CL:0001054", "CD14-positive monocyte", "marker form"),
    "CD14 positive monocyte": ("CL:0001054", "CD14-positive monocyte", "name"),
    # bare marker: "CD16 monocyte" is CD16-positive
    "CD16 monocyte": ("CL:0002397", "CD14-positive, CD16-positive monocyte", "bare marker"),
    "CD4 T": ("CL:0000624", "CD4-positive, alpha-beta T cell", "implied qualifier"),
    "CD8+ Treg": ("CL:0000795", "CD8-positive, alpha-beta regulatory T cell", "synonym"),
    # plural
    "B cells": ("CL:0000236", "B cell", "plural"),
    "T-cells": ("CL:0000084", "T cell", "plural"),
    "NK cells": ("CL:0000623", "natural killer cell", "plural"),
    "Monocytes": ("CL:0000576", "monocyte", "plural"),
    "Tregs": ("CL:0000815", "regulatory T cell", "plural"),
    "pDCs": ("CL:0000784", "plasmacytoid dendritic cell", "plural"),
    "Platelets": ("CL:0000233", "platelet", "plural"),
    "Megakaryocytes": ("CL:0000556", "megakaryocyte", "plural"),
    "Plasma cells": ("CL:0000786", "plasma cell", "plural"),
    "Plasmablasts": ("CL:0000980", "plasmablast", "plural"),
    "Naive B cells": ("CL:0000788", "naive B cell", "plural"),
    "Memory B cells": ("CL:0000787", "memory B cell", "plural"),
    "classical monocytes": ("CL:0000860", "classical monocyte", "plural"),
    "non-classical monocytes": ("CL:0000875", "non-classical monocyte", "plural"),
    "CD16- monocytes": (
        "CL:0002057",
        "CD14-positive, CD16-negative classical monocyte",
        "plural",
    ),
    "CD4-CD8- T cells": ("CL:0002489", "double negative thymocyte", "plural"),
    "γδ T cells": ("CL:0000798", "gamma-delta T cell", "plural"),
    "Neutrophils": ("CL:0000775", "neutrophil", "plural"),
    "Macrophages": ("CL:0000235", "macrophage", "plural"),
    "Mast cells": ("CL:0000097", "mast cell", "plural"),
    "red blood cells": ("CL:0000232", "erythrocyte", "plural"),
    "Hepatocytes": ("CL:0000182", "hepatocyte", "plural"),
    "Fibroblasts": ("CL:0000057", "fibroblast", "plural"),
    "Endothelial cells": ("CL:0000115", "endothelial cell", "plural"),
    "Keratinocytes": ("CL:0000312", "keratinocyte", "plural"),
    "Astrocytes": ("CL:0000127", "astrocyte", "plural"),
    "Oligodendrocytes": ("CL:0000128", "oligodendrocyte", "plural"),
    "Cardiomyocytes": ("CL:0000746", "cardiac muscle cell", "plural"),
    "Alveolar macrophages": ("CL:0000583", "alveolar macrophage", "plural"),
    "Type II pneumocytes": ("CL:0002063", "pulmonary alveolar type 2 cell", "plural"),
    "Th1 cells": ("CL:0000545", "T-helper 1 cell", "plural"),
    # abbreviations that CL uses in its own synonyms
    "DC": ("CL:0000451", "dendritic cell", "abbreviation"),
    "DCs": ("CL:0000451", "dendritic cell", "abbreviation"),
    "myeloid DC": ("CL:0000782", "myeloid dendritic cell", "abbreviation"),
    "HSCs": ("CL:0000037", "hematopoietic stem cell", "abbreviation"),
    "ILC": ("CL:0001065", "innate lymphoid cell", "abbreviation"),
    # a trailing "cell(s)" left out
    "Dendritic": ("CL:0000451", "dendritic cell", "cell suffix"),
    "NK": ("CL:0000623", "natural killer cell", "cell suffix"),
    "B": ("CL:0000236", "B cell", "cell suffix"),
    "Endothelial": ("CL:0000115", "endothelial cell", "cell suffix"),
    "Progenitors": ("CL:0011026", "progenitor cell", "cell suffix"),
    "Th17": ("CL:0000899", "T-helper 17 cell", "cell suffix"),
    "Tfh cells": ("CL:0002038", "T follicular helper cell", "cell suffix"),
    # qualifiers CL adds: CD4/CD8 T cells are alpha-beta, CL's naive ones thymus-derived
    "CD4+ T cell": ("CL:0000624", "CD4-positive, alpha-beta T cell", "implied qualifier"),
    "CD8+ T cells": ("CL:0000625", "CD8-positive, alpha-beta T cell", "implied qualifier"),
    "CD4-positive T cells": (
        "CL:0000624",
        "CD4-positive, alpha-beta T cell",
        "implied qualifier",
    ),
    "Naive CD8 T": (
        "CL:0000900",
        "naive thymus-derived CD8-positive, alpha-beta T cell",
        "implied qualifier",
    ),
    "Effector memory CD8+ T cells": (
        "CL:0000913",
        "effector memory CD8-positive, alpha-beta T cell",
        "implied qualifier",
    ),
    # Seurat's and Azimuth's words (sc_genept.ontology.EVERYDAY_WORDS)
    "Mono": ("CL:0000576", "monocyte", "everyday word"),
    "CD14+ Mono": ("CL:0001054", "CD14-positive monocyte", "everyday word"),
    "MAIT cells": ("CL:0000940", "mucosal-associated invariant T cell", "everyday word"),
    # "CD4"/"CD8" with T-cell states only is a T cell
    "CD8 Cytotoxic": (
        "CL:0000794",
        "CD8-positive, alpha-beta cytotoxic T cell",
        "implied T cell",
    ),
    # population names whose term is not what their words say (EVERYDAY_NAMES)
    "CD56+ NK": ("CL:0000623", "natural killer cell", "everyday name"),
    "CD16 Mono": ("CL:0002396", "CD14-low, CD16-positive monocyte", "everyday name"),
    # a numbered subcluster is of its population's type
    "NK_3": ("CL:0000623", "natural killer cell", "subcluster"),
    # word order
    "Memory CD4 T": ("CL:0000897", "CD4-positive, alpha-beta memory T cell", "word order"),
    "CD4 Naive": (
        "CL:0000895",
        "naive thymus-derived CD4-positive, alpha-beta T cell",
        "word order",
    ),
    "Treg Naive": ("CL:0002677", "naive regulatory T cell", "word order"),
    "Memory CD8 T": ("CL:0000909", "CD8-positive, alpha-beta memory T cell", "word order"),
    "CD11b-high, CD27-low natural killer cell, mouse": (
        "CL:0002348",
        "CD27-low, CD11b-high natural killer cell, mouse",
        "word order",
    ),
    "CD11b-low, CD27-high natural killer cell, mouse": (
        "CL:0002349",
        "CD27-high, CD11b-low natural killer cell, mouse",
        "word order",
    ),
}

# labels that must map to nothing: CL has no such term or synonym, and no rule makes one
UNMAPPED = [
    "Tcells",  # not "T cells": words run together are not a variant
    "Microglia",  # CL: "microglial cell", no synonym "microglia"
    "NKT cells",  # CL has mature/immature/type I NK T cells, no plain one
    "CD4",  # a marker alone is no cell type
    "CD8 Naive_x",  # "_x" is no numbered subcluster
    "Doublet",  # no cell type
]


@pytest.fixture(scope="module")
def shared_alpha():
    """A small CL-like ontology where "alpha cell" and "stellate" name two terms each."""
    cell, endo = "CL:0000000", "CL:0000001"
    terms = {
        cell: {"name": "cell", "parents": []},
        endo: {"name": "endocrine cell", "parents": [cell]},
        "CL:0000002": {"name": "pancreatic A cell", "parents": [endo], "synonyms": ["alpha cell"]},
        "CL:0000003": {
            "name": "alpha retinal ganglion cell",
            "parents": [cell],
            "synonyms": ["alpha cell"],
        },
        "CL:0000006": {"name": "stellate neuron", "parents": [cell], "synonyms": ["stellate"]},
        "CL:0000007": {"name": "stellate", "parents": [cell], "synonyms": ["star cell"]},
        "CL:0000008": {"name": "CD4-positive, alpha-beta T cell", "parents": [cell]},
        "CL:0000009": {"name": "CD4-positive, thymus-derived T cell", "parents": [cell]},
    }
    return CellOntology.from_dict(terms, version="test")


# ---- the table -------------------------------------------------------------------------


@pytest.mark.parametrize("label", list(EVERYDAY))
def test_everyday_labels_resolve(cl, label):
    term, name, how = EVERYDAY[label]
    assert cl.name(term) == name  # the expected id is the term of that name
    assert cl.match(label) == Match(term, name, how, cl.match(label).matched)
    assert cl.resolve(label) == term
    explained = cl.explain(label)
    assert explained.startswith(f"{label!r} is {term} {name!r} in CL {cl.version}")
    if how not in ("id", "name", "synonym"):
        assert f"(by {how}: " in explained


def test_the_table_covers_every_rule_and_enough_labels():
    assert len(EVERYDAY) >= 30
    assert set(RULES) <= {how for _, _, how in EVERYDAY.values()}


def test_matched_is_the_cl_text_the_label_met(cl):
    assert cl.match("NK cells").matched == "NK cell"
    assert cl.match("CD14+ Monocyte").matched == "CD14-positive monocyte"
    assert cl.match("t_cell").matched == "T cell"


@pytest.mark.parametrize("label", UNMAPPED)
def test_labels_without_a_term_stay_unmapped(cl, label):
    assert cl.match(label) is None and cl.resolve(label) is None
    assert "not a CL id, name or synonym" in cl.explain(label)


def test_the_issue_examples(cl):
    # the labels that resolved to none before
    assert cl.resolve("CD14+ Monocyte") == "CL:0001054"
    assert cl.resolve("CD4+ T cell") == "CL:0000624"
    assert cl.resolve("Dendritic") == "CL:0000451"


# ---- each rule, and what it must not merge ---------------------------------------------


def test_normalise_keeps_what_carries_meaning():
    assert normalise("  T_Cell ") == normalise("t-cell") == normalise("T  cell") == "t cell"
    assert normalise("γδ T cell") == normalise("gamma-delta T cell") == "gamma delta t cell"
    assert normalise("CD4-positive, alpha-beta T cell") == "cd4 positive alpha beta t cell"
    # signs stay on their marker: a trailing or marker-to-marker minus is "negative"
    assert normalise("CD4+/CD45RA+/CD25- Naive T") == "cd4+ cd45ra+ cd25- naive t"
    assert normalise("CD16-CD56bright NK cell") == "cd16- cd56bright nk cell"
    assert normalise("CD4 + T") == "cd4+ t"
    assert normalise("CD16−") == "cd16-"  # a real minus sign
    assert normalise("Bm2' B cell") != normalise("Bm2 B cell")  # a prime is part of a name
    assert normalise("Deiter's cell") == "deiter s cell"


def test_marker_signs_are_never_swapped(cl):
    assert cl.resolve("CD16- monocytes") == "CL:0002057"  # CD16-negative classical
    assert cl.resolve("CD16+ monocytes") == "CL:0002397"  # CD14+ CD16+ monocyte
    assert cl.resolve("CD4-CD8- T cells") == "CL:0002489"  # double negative
    assert cl.resolve("CD4+CD8+ T cells") != "CL:0002489"
    # levels stay with their marker, even when the word order rule sorts the words
    assert cl.resolve("CD11b-high CD27-low natural killer cell, mouse") == "CL:0002348"
    assert cl.resolve("CD11b-low CD27-high natural killer cell, mouse") == "CL:0002349"


def test_bare_marker_means_positive_only_before_a_cell_word(cl):
    assert cl.match("CD4 T").how == "implied qualifier"
    assert cl.resolve("CD4 T") == cl.resolve("CD4+ T")
    assert cl.resolve("CD4") is None
    # "CD8 alpha" is a chain, not a CD8-positive cell
    assert normalise("CD8-alpha-positive") == "cd8 alpha positive"
    assert RULES["bare marker"](RULES["marker form"]("cd8 alpha positive")) == "cd8alpha+"


def test_each_abbreviation_is_one_cl_uses(cl):
    # an abbreviation is expanded only if CL itself writes it in an exact synonym of a
    # term whose name has the long form
    for short, long in ABBREVIATIONS.items():
        used = [
            t
            for t in cl.terms
            if long in RULES["abbreviation"](normalise(cl.name(t)))
            and any(short in normalise(s).split() for s in cl.synonyms(t))
        ]
        assert used, short


def test_implied_qualifiers_are_why_cd4_t_cells_need_them(cl):
    for qualifier in IMPLIED_QUALIFIERS:
        assert any(qualifier in normalise(cl.name(t)) for t in cl.terms), qualifier
    # CL has no plain CD4-positive or CD8-positive T cell: the rule is what finds them
    assert cl._names_index.get("cd4 positive t cell") is None
    assert cl._names_index.get("cd8 positive t cell") is None


def test_rules_are_tried_in_order_and_add_up(cl):
    assert list(RULES) == [
        "marker form",
        "bare marker",
        "plural",
        "abbreviation",
        "everyday word",
        "cell suffix",
        "implied qualifier",
        "implied T cell",
        "word order",
    ]
    # "CD4+ T cells" needs the plural rule and the implied qualifier: the last one counts
    assert cl.match("CD4+ T cells").how == "implied qualifier"
    # an exact name wins over any rule: "T cell" is not "alpha-beta T cell" without qualifier
    assert cl.match("T cell").how == "name"
    assert cl.resolve("alpha-beta T cells") == "CL:0000789"


# ---- never a guess ----------------------------------------------------------------------


def test_an_ambiguous_label_resolves_to_none_and_explain_lists_the_candidates(shared_alpha):
    # an exact synonym of two terms
    assert shared_alpha.match("alpha cell") is None
    said = shared_alpha.explain("alpha cell")
    assert "exact synonym of several terms" in said
    assert "CL:0000002 'pancreatic A cell', CL:0000003 'alpha retinal ganglion cell'" in said
    # the same through a rule
    assert shared_alpha.resolve("Alpha cells") is None
    said = shared_alpha.explain("Alpha cells")
    assert "ambiguous: by plural" in said and "CL:0000002" in said and "CL:0000003" in said


def test_a_rule_that_makes_two_names_meet_resolves_to_none(shared_alpha):
    # "CD4+ T cell" is the alpha-beta one or the thymus-derived one, both by name
    assert shared_alpha.resolve("CD4+ T cell") is None
    said = shared_alpha.explain("CD4+ T cell")
    assert "by implied qualifier" in said
    assert "CL:0000008" in said and "CL:0000009" in said
    # a name wins over a synonym that meets it under the same rule
    assert shared_alpha.match("stellates") == Match("CL:0000007", "stellate", "plural", "stellate")


def test_related_synonyms_count_only_where_unique(tmp_path):
    obo = tmp_path / "cl.obo"
    obo.write_text(
        "format-version: 1.2\ndata-version: cl/releases/2024-01-01/cl-basic.obo\n\n"
        "[Term]\nid: CL:0000000\nname: cell\n\n"
        '[Term]\nid: CL:0000001\nname: T cell\nsynonym: "thymocyte-derived cell" RELATED []\n'
        'synonym: "lymph" BROAD []\nis_a: CL:0000000\n\n'
        '[Term]\nid: CL:0000002\nname: B cell\nsynonym: "lymph" BROAD []\n'
        'synonym: "bursal cell" NARROW []\nis_a: CL:0000000\n'
    )
    cl = CellOntology.load(obo)
    assert cl.match("Thymocyte-derived cell") == (
        "CL:0000001",
        "T cell",
        "related synonym",
        "thymocyte-derived cell",
    )
    assert cl.match("bursal cell").how == "narrow synonym"
    assert cl.resolve("lymph") is None and "by broad synonym" in cl.explain("lymph")
    assert cl.synonyms("CL:0000002", "narrow") == ["bursal cell"]
    # a saved subset keeps them
    data = cl.to_dict(["CL:0000001", "CL:0000002"])
    assert data["CL:0000001"]["other_synonyms"] == [
        ["RELATED", "thymocyte-derived cell"],
        ["BROAD", "lymph"],
    ]
    again = CellOntology.from_dict(data, version=cl.version)
    assert again.match("thymocyte-derived cell") == cl.match("thymocyte-derived cell")
    with pytest.raises(ValueError, match="'other_synonyms' must be"):
        CellOntology.from_dict(
            {"CL:0000000": {"name": "cell", "parents": [], "other_synonyms": [["CLOSE", "x"]]}},
            version="x",
        )


def test_obsolete_names_are_normalised_too(cl):
    # "obsolete bone matrix secreting cell" CL:0000054 → osteoblast
    with pytest.warns(UserWarning, match="CL:0000054.*obsolete.*CL:0000062 'osteoblast'"):
        found = cl.match("Bone-Matrix Secreting Cell")
    assert found == Match(
        "CL:0000062", "osteoblast", "obsolete name", cl._obsolete["CL:0000054"][0]
    )


def test_pbmc_table_needs_a_cl_where_its_names_resolve(tiny_cl):
    from sc_genept.datasets import pbmc68k_cell_types

    with pytest.raises(ValueError, match="'CD14\\+ Monocyte' no longer resolves"):
        pbmc68k_cell_types(tiny_cl)


# ---- speed --------------------------------------------------------------------------------


def test_rules_run_once_per_distinct_label(cl, monkeypatch):
    import numpy as np

    from sc_genept.ontology import _label_lookup

    distinct = [*list(EVERYDAY)[:15], *UNMAPPED[:5]]
    labels = np.random.default_rng(0).choice(distinct, size=100_000)
    cl.match("warm up the indices")
    calls = []
    real = _label_lookup.rule_keys
    monkeypatch.setattr(_label_lookup, "rule_keys", lambda key: calls.append(key) or real(key))
    start = time.perf_counter()
    ids, unmapped = cl.map_labels(labels)
    took = time.perf_counter() - start
    assert len(calls) <= len(distinct)  # labels matched before the rules never reach them
    assert sorted(unmapped) == sorted(UNMAPPED[:5])
    assert ids.notna().sum() == np.isin(labels, distinct[:15]).sum()
    assert took < 2.0, took
