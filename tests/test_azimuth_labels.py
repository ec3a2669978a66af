"""Seurat and Azimuth labels resolve to the CL term a biologist means (issue 19).

The vocabulary is in ``sc_genept/ontology/_vocabulary.py``; each id below was looked up
in the bundled CL (2026-03-26), and the tests assert its CL name too.
"""

import re

import pytest

from sc_genept.ontology import (
    EVERYDAY_NAMES,
    EVERYDAY_WORDS,
    LINEAGE_MARKERS,
    LINEAGES,
    MARKER_GENES,
    RULES,
    CellOntology,
    normalise,
)

NAIVE_CD4 = ("CL:0000895", "naive thymus-derived CD4-positive, alpha-beta T cell")
NAIVE_CD8 = ("CL:0000900", "naive thymus-derived CD8-positive, alpha-beta T cell")
TEM_CD4 = ("CL:0000905", "effector memory CD4-positive, alpha-beta T cell")
TEM_CD8 = ("CL:0000913", "effector memory CD8-positive, alpha-beta T cell")
TCM_CD4 = ("CL:0000904", "central memory CD4-positive, alpha-beta T cell")
TCM_CD8 = ("CL:0000907", "central memory CD8-positive, alpha-beta T cell")
NON_CLASSICAL = ("CL:0002396", "CD14-low, CD16-positive monocyte")
NK = ("CL:0000623", "natural killer cell")
NK_BRIGHT = ("CL:0000938", "CD16-negative, CD56-bright natural killer cell, human")
GDT = ("CL:0000798", "gamma-delta T cell")
ASDC = ("CL:0017009", "Axl+ dendritic cell, human")
CDC2 = ("CL:0002399", "CD1c-positive myeloid dendritic cell")
NAIVE_B = ("CL:0000788", "naive B cell")
MATURE_B = ("CL:0000785", "mature B cell")

# label → (CL id, CL name)
AZIMUTH_PBMC = {
    # level 1
    "B": ("CL:0000236", "B cell"),
    "CD4 T": ("CL:0000624", "CD4-positive, alpha-beta T cell"),
    "CD8 T": ("CL:0000625", "CD8-positive, alpha-beta T cell"),
    "DC": ("CL:0000451", "dendritic cell"),
    "Mono": ("CL:0000576", "monocyte"),
    "NK": NK,
    # level 2
    "ASDC": ASDC,
    "B intermediate": MATURE_B,  # between naive and memory: CL's lowest term above both
    "B memory": ("CL:0000787", "memory B cell"),
    "B naive": NAIVE_B,
    "CD14 Mono": ("CL:0001054", "CD14-positive monocyte"),
    "CD16 Mono": NON_CLASSICAL,
    "CD4 CTL": ("CL:0000934", "CD4-positive, alpha-beta cytotoxic T cell"),
    "CD4 Naive": NAIVE_CD4,
    "CD4 Proliferating": ("CL:4033075", "cycling CD4-positive, alpha-beta T cell"),
    "CD4 TCM": TCM_CD4,
    "CD4 TEM": TEM_CD4,
    "CD8 Naive": NAIVE_CD8,
    "CD8 Proliferating": ("CL:4033074", "cycling CD8-positive, alpha-beta T cell"),
    "CD8 TCM": TCM_CD8,
    "CD8 TEM": TEM_CD8,
    "cDC1": ("CL:0002394", "CD141-positive myeloid dendritic cell"),
    "cDC2": CDC2,
    "dnT": ("CL:0000791", "mature alpha-beta T cell"),  # of blood, not a thymocyte
    "Eryth": ("CL:0000764", "erythroid lineage cell"),
    "gdT": GDT,
    "HSPC": ("CL:0008001", "hematopoietic precursor cell"),  # stem and progenitor cells
    "ILC": ("CL:0001065", "innate lymphoid cell"),
    "MAIT": ("CL:0000940", "mucosal-associated invariant T cell"),
    "NK Proliferating": ("CL:4033071", "cycling natural killer cell"),
    "NK_CD56bright": NK_BRIGHT,
    "pDC": ("CL:0000784", "plasmacytoid dendritic cell"),
    "Plasmablast": ("CL:0000980", "plasmablast"),
    "Platelet": ("CL:0000233", "platelet"),
    "Treg": ("CL:0000815", "regulatory T cell"),
    # level 3: subclusters, light chains, Treg states
    "ASDC_pDC": ASDC,
    "B intermediate kappa": MATURE_B,
    "B naive lambda": NAIVE_B,
    "CD4 TCM_1": TCM_CD4,
    "CD4 TEM_3": TEM_CD4,
    "CD8 Naive_2": NAIVE_CD8,
    "CD8 TEM_4": TEM_CD8,
    "cDC2_1": CDC2,
    "gdT_2": GDT,
    "NK_3": NK,
    "Treg Memory": ("CL:0002678", "memory regulatory T cell"),
    "Treg Naive": ("CL:0002677", "naive regulatory T cell"),
}

SEURAT = {
    # the pbmc3k tutorial
    "Naive CD4 T": NAIVE_CD4,
    "Memory CD4 T": ("CL:0000897", "CD4-positive, alpha-beta memory T cell"),
    "CD14+ Mono": ("CL:0001054", "CD14-positive monocyte"),
    "FCGR3A+ Mono": NON_CLASSICAL,
    # the integration tutorial
    "CD4 Naive T": NAIVE_CD4,
    "Mk": ("CL:0000556", "megakaryocyte"),
    # 10x's sorted PBMCs: every human NK cell is CD56+, bright or dim
    "CD56+ NK": NK,
    # spelling variants
    "CD8 Cytotoxic": ("CL:0000794", "CD8-positive, alpha-beta cytotoxic T cell"),
    "CD56bright NK cells": NK_BRIGHT,
    "gdT cells": GDT,
    "MAIT cells": ("CL:0000940", "mucosal-associated invariant T cell"),
    "CD14 Monos": ("CL:0001054", "CD14-positive monocyte"),
    "cDC2 cells": CDC2,
}

# no cell type, or none CL has
UNMAPPED = ["other", "other T", "Doublet", "Mono/Mk Doublets", "Doublet_1", "CD4 Treg_x"]


@pytest.mark.parametrize("label", [*AZIMUTH_PBMC, *SEURAT])
def test_seurat_and_azimuth_labels_resolve(cl, label):
    term, name = {**AZIMUTH_PBMC, **SEURAT}[label]
    assert cl.name(term) == name  # the expected id is the term of that name
    assert cl.resolve(label) == term
    assert cl.explain(label).startswith(f"{label!r} is {term} {name!r}")


def test_the_issue_labels(cl):
    issue = ["CD14 Mono", "CD16 Mono", "CD4 Naive", "CD8 TEM", "MAIT", "gdT", "HSPC", "cDC2"]
    assert all(cl.resolve(label) == AZIMUTH_PBMC[label][0] for label in issue)
    assert cl.resolve("CD56+ NK") == SEURAT["CD56+ NK"][0]
    # CD16 monocytes are the non-classical ones; cDC2 is conventional, not plasmacytoid
    assert cl.is_ancestor("CL:0000875", cl.resolve("CD16 Mono"))
    assert cl.is_ancestor("CL:0000990", cl.resolve("cDC2"))
    assert not cl.is_ancestor("CL:0000784", cl.resolve("cDC2"))


@pytest.mark.parametrize("label", UNMAPPED)
def test_labels_of_no_cell_type_stay_unmapped(cl, label):
    assert cl.resolve(label) is None


def test_how_they_are_found(cl):
    assert cl.match("CD16 Mono").how == "everyday name"
    assert cl.match("CD14 Mono").how == "everyday word"
    assert cl.match("CD8 Cytotoxic").how == "implied T cell"
    sub = cl.match("CD4 TEM_3")
    assert sub.how == "subcluster" and sub.term_id == TEM_CD4[0]
    assert "(by subcluster: " in cl.explain("CD4 TEM_3")
    # a marker alone is still no cell type, and CL ids are not subclusters
    assert cl.resolve("CD4") is None and cl.resolve("CD8+") is None
    assert cl.resolve("CL_0000236") == "CL:0000236"


# ---- the vocabulary ---------------------------------------------------------------------


def _cl_words(cl):
    return {
        w for t in cl.terms for s in [cl.name(t), *cl.synonyms(t)] for w in normalise(s).split()
    }


def test_everyday_words_are_words_cl_never_writes(cl):
    # so the rule that expands them changes labels only, never merges two CL names
    words = _cl_words(cl)
    assert not (set(EVERYDAY_WORDS) | set(MARKER_GENES)) & words
    assert all(re.fullmatch(r"[a-z0-9]+", w) for w in [*EVERYDAY_WORDS, *MARKER_GENES])


def test_everyday_names_stand_for_one_cl_term_each(cl):
    for label, text in EVERYDAY_NAMES.items():
        named = {t for t in cl.terms if text in (cl.name(t), *cl.synonyms(t))}
        assert len(named) == 1, (label, text)
        assert cl.resolve(label) == named.pop()
    for name in [*LINEAGES, *LINEAGE_MARKERS.values()]:
        assert cl.match(name).how == "name", name


def test_a_release_without_the_term_maps_the_name_to_none(tiny_cl):
    # "CD16 Mono" stands for a term this ontology lacks: no guess from its words instead
    assert tiny_cl.resolve("CD16 Mono") is None
    assert tiny_cl.resolve("CD4 TEM_1") is None


def test_rules_include_the_everyday_ones():
    assert list(RULES).index("everyday word") == list(RULES).index("abbreviation") + 1
    assert list(RULES)[-2:] == ["implied T cell", "word order"]


# ---- suggestions stay in the label's lineage --------------------------------------------


def _suggested(cl: CellOntology, label: str) -> list[str]:
    said = cl.explain(label)
    assert "not a CL id, name or synonym" in said, said
    shown = said.partition("did you mean ")[2]
    return re.findall(r"'([^']+)'", shown)


def _terms(cl, names):
    return {cl.resolve(n) for n in names}


@pytest.mark.parametrize(
    ("label", "kept", "dropped"),
    [
        ("mDC2", "mDC", "DC2"),  # a myeloid (conventional) DC: not CL's "DC2", a pDC
        ("pDC1", "pDC", "DC1"),  # a plasmacytoid DC: not CL's "DC1", a conventional DC
        ("LC2", "LC", "ILC2"),  # Langerhans cells are no innate lymphoid cells
    ],
)
def test_suggestions_never_cross_lineages(cl, label, kept, dropped):
    suggested = _suggested(cl, label)
    assert kept in suggested and dropped not in suggested


T_CELL_LABELS = {
    # label → the suggestions that remain (CL's closest names were dendritic cells)
    "conventional T cell": [],
    "migratory T cell": [],
    "type 1 T": [],
    "CD14-positive dermal T cell": ["CD4-positive helper T cell"],
    "spleen double-negative T cell": ["double negative T cell"],
    "MAIT-like": [],  # not "A-like", a pancreatic A cell
}


@pytest.mark.parametrize("label", T_CELL_LABELS)
def test_a_t_cell_label_is_never_offered_a_dendritic_cell(cl, label):
    suggested = _suggested(cl, label)
    assert suggested == T_CELL_LABELS[label]
    assert _terms(cl, suggested) <= cl.descendants("CL:0000084", include_self=True)


@pytest.mark.parametrize(
    ("label", "expected"),
    [("Treg1", "Treg"), ("T cellz", "T cell"), ("Th1 cells x", "Th1 cell"), ("cDC3", "cDC")],
)
def test_suggestions_in_the_lineage_remain(cl, label, expected):
    assert expected in _suggested(cl, label)


# ---- as reference labels ----------------------------------------------------------------


def test_a_reference_labelled_by_azimuth_registers_its_cl_terms(cl):
    # genept_annotate(reference=..., labels_key=...) maps labels in setup_anndata
    import anndata as ad
    import numpy as np
    import pandas as pd

    from sc_genept.model import GenePTClassifier

    labels = ["CD14 Mono", "CD16 Mono", "CD4 Naive", "CD8 TEM_2", "MAIT", "gdT", "cDC2"] * 2
    ref = ad.AnnData(
        np.zeros((len(labels), 3), dtype=np.float32),
        obs=pd.DataFrame({"azimuth": labels}, index=[f"c{i}" for i in range(len(labels))]),
    )
    ref.obsm["X_genept"] = np.random.default_rng(0).normal(size=(len(labels), 4))
    GenePTClassifier.setup_anndata(ref, labels_key="azimuth", embedding_keys=["X_genept"])
    registered = ref.obs.drop(columns="azimuth").iloc[:, 0].astype(str).tolist()
    assert registered == [{**AZIMUTH_PBMC, "CD8 TEM_2": TEM_CD8}[x][0] for x in labels]


def test_many_numbered_suffixes_resolve_without_recursion(cl):
    found = cl.match("CD4 TEM" + "_1" * 2000)  # was a RecursionError
    assert found is not None and found.term_id == cl.match("CD4 TEM").term_id
