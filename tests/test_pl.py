"""sc_genept.pl: each plot renders a PNG on real annotated PBMCs and draws what it should."""

from __future__ import annotations

import re
import subprocess
import sys
from functools import reduce

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import scanpy as sc
from matplotlib.colors import to_hex

import sc_genept
from sc_genept import pl

KEY = "genept_cell_type"
TRUTH = "cell_type_ontology_term_id"
# T cell, B cell, monocyte, natural killer cell, dendritic cell
LINEAGES = ["CL:0000084", "CL:0000236", "CL:0000576", "CL:0000623", "CL:0000451"]
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="session")
def _annotated_once():
    adata = sc_genept.datasets.pbmc68k_reduced()
    ref, query = adata[::2].copy(), adata[1::2].copy()
    sc.tl.genept_annotate(
        query, reference=ref, labels_key=TRUTH, max_epochs=5, enable_progress_bar=False
    )
    return query


@pytest.fixture
def annotated(_annotated_once, unchanged):
    """The annotated real PBMCs (with X_umap); plotting must leave them as they were."""
    return unchanged(_annotated_once)


@pytest.fixture
def figdir(tmp_path):
    """Figures are saved (through scanpy) into a fresh folder."""
    before = sc.settings.figdir, sc.settings.file_format_figs
    sc.settings.figdir, sc.settings.file_format_figs = tmp_path, "png"
    yield tmp_path
    sc.settings.figdir, sc.settings.file_format_figs = before
    plt.close("all")


def assert_png(path) -> None:
    assert path.is_file(), f"{path} was not written"
    data = path.read_bytes()
    assert data.startswith(PNG) and len(data) > 5000, f"{path} is not a rendered PNG"


def called_ids(adata) -> pd.Series:
    return adata.obs[f"{KEY}_ontology_term_id"].astype(str)


# ---- colours ---------------------------------------------------------------------------


def test_term_colors_depend_on_the_set_of_terms_only(cl):
    terms = ["CL:0000236", "CL:0000084", "CL:0000576", "CL:0000623"]
    colors = pl.term_colors(terms)
    assert set(colors) == set(terms)
    assert pl.term_colors([*reversed(terms), terms[0], terms[2]]) == colors  # order, repeats
    assert pl.term_colors(["B cell", "T cell", "monocyte", "natural killer cell"]) == colors
    assert len(set(colors.values())) == len(terms)
    # no grey: grey marks cells that were not called at a term
    assert all(np.ptp(matplotlib.colors.to_rgb(c)) > 0.08 for c in colors.values())
    many = cl.terms[:150]
    assert len(set(pl.term_colors(many, ontology=cl).values())) > 80


def test_term_colors_put_related_terms_side_by_side():
    order = list(pl.term_colors(["CL:0000236", "CL:0000576", "CL:0000895", "CL:0000625"]))
    # the two T cell types are neighbours, whichever way round
    assert abs(order.index("CL:0000895") - order.index("CL:0000625")) == 1


def test_set_term_colors_writes_what_scanpy_uses(_annotated_once, figdir):
    adata = _annotated_once.copy()
    before = adata.copy()
    colors = pl.set_term_colors(adata, [TRUTH, KEY])
    truth_ids = adata.obs[TRUTH].cat.categories
    pred_names = adata.obs[KEY].cat.categories
    name_to_id = dict(zip(adata.obs[KEY].astype(str), called_ids(adata), strict=True))
    assert colors == pl.term_colors([*truth_ids, *called_ids(adata)])
    assert adata.uns[f"{TRUTH}_colors"] == [colors[t] for t in truth_ids]
    assert adata.uns[f"{KEY}_colors"] == [colors[name_to_id[n]] for n in pred_names]
    # a term shared by truth and prediction has one colour in both columns
    shared = set(truth_ids) & set(name_to_id.values())
    assert shared
    for term in shared:
        i = list(truth_ids).index(term)
        j = [name_to_id[n] for n in pred_names].index(term)
        assert adata.uns[f"{TRUTH}_colors"][i] == adata.uns[f"{KEY}_colors"][j]
    # scanpy draws with them and keeps them
    written = list(adata.uns[f"{KEY}_colors"])
    sc.pl.umap(adata, color=KEY, show=False)
    assert list(adata.uns[f"{KEY}_colors"]) == written
    # only the two colour entries were added
    assert set(adata.uns) - set(before.uns) == {f"{TRUTH}_colors", f"{KEY}_colors"}
    pd.testing.assert_frame_equal(adata.obs, before.obs)


# ---- confidence ------------------------------------------------------------------------


def _legend(fig):
    (ax,) = [a for a in fig.axes if a.get_legend() is not None]
    legend = ax.get_legend()
    labels = [t.get_text() for t in legend.get_texts()]
    colors = [to_hex(h.get_color()) for h in legend.legend_handles]
    return ax, dict(zip(labels, colors, strict=True))


def test_confidence_draws_terms_in_their_colours_and_greys_abstentions(annotated, figdir):
    fig = pl.confidence(annotated, min_confidence=0.7, show=False, save="_test.png")
    assert_png(figdir / "genept_confidence_test.png")
    ax, legend = _legend(fig)

    obs = annotated.obs
    ids, finest = called_ids(annotated), obs[f"{KEY}_finest_ontology_term_id"].astype(str)
    below = obs[f"{KEY}_confidence"].to_numpy() < 0.7
    coarser = (ids != finest).to_numpy() & ~below
    called = ~below & ~coarser
    expected_colors = pl.term_colors(ids.unique())
    expected = {}
    for term, n in ids[called].value_counts().items():
        if n:
            expected[f"{obs[KEY][ids == term].iloc[0]} ({n})"] = expected_colors[term]
    expected[f"coarser than most probable ({coarser.sum()})"] = "#c8c8c8"
    expected[f"below min_confidence=0.7 ({below.sum()})"] = "#6e6e6e"
    assert coarser.sum() and below.sum(), "the fixture should exercise both grey groups"
    assert legend == expected
    # every cell is drawn once, each group in its legend colour
    drawn = {to_hex(c.get_facecolor()[0]): len(c.get_offsets()) for c in ax.collections}
    counts = [int(re.search(r"\((\d+)\)$", label).group(1)) for label in legend]
    assert drawn == dict(zip(legend.values(), counts, strict=True))
    assert sum(drawn.values()) == annotated.n_obs
    # the confidence panel carries the confidences
    (points,) = fig.axes[0].collections
    np.testing.assert_allclose(
        np.sort(points.get_array()), np.sort(obs[f"{KEY}_confidence"].to_numpy())
    )


def test_confidence_uses_colours_set_for_scanpy(_annotated_once, figdir):
    adata = _annotated_once.copy()
    colors = pl.set_term_colors(adata, [TRUTH, KEY])  # truth's terms shift the palette
    fig = pl.confidence(adata, show=False)
    _, legend = _legend(fig)
    names = dict(zip(adata.obs[KEY].astype(str), called_ids(adata), strict=True))
    for label, color in legend.items():
        name = label.rsplit(" (", 1)[0]
        if name in names:
            assert color == colors[names[name]], label


def test_confidence_without_min_confidence_greys_only_coarser_calls(annotated, figdir):
    fig = pl.confidence(annotated, show=False, save=True)
    assert_png(figdir / "genept_confidence.png")  # sc.settings.file_format_figs
    _, legend = _legend(fig)
    assert not any(label.startswith("below") for label in legend)


# ---- confusion -------------------------------------------------------------------------


def test_collapse_terms_by_depth_and_by_list():
    from sc_genept.ontology import CellOntology

    def term(name, *parents):
        return {"name": name, "parents": list(parents)}

    cl = CellOntology.from_dict(
        {
            "CL:0000000": term("cell"),
            "CL:0000001": term("immune cell", "CL:0000000"),
            "CL:0000002": term("T cell", "CL:0000001"),
            "CL:0000003": term("CD4 T cell", "CL:0000002"),
            "CL:0000004": term("CD8 T cell", "CL:0000002"),
            "CL:0000005": term("B cell", "CL:0000001"),
            "CL:0000006": term("neuron", "CL:0000000"),
            # under CD4 T cell (3 edges to immune cell) and neuron (1 edge): depth 2
            "CL:0000009": term("odd cell", "CL:0000003", "CL:0000006"),
            # one edge to each of immune cell and neuron
            "CL:0000010": term("both", "CL:0000001", "CL:0000006"),
        },
        version="test",
    )
    terms = ["CL:0000003", "CL:0000004", "CL:0000005", "CL:0000002", "CL:0000000"]
    assert pl.collapse_terms(terms, None, ontology=cl).tolist() == terms
    assert pl.collapse_terms(terms, 2, ontology=cl).tolist() == [
        "CL:0000002",
        "CL:0000002",
        "CL:0000005",
        "CL:0000002",
        "CL:0000000",  # above the level: as it is
    ]
    assert pl.collapse_terms(terms, 1, ontology=cl).tolist() == ["CL:0000001"] * 4 + ["CL:0000000"]
    assert pl.collapse_terms(terms, 0, ontology=cl).tolist() == ["CL:0000000"] * 5
    # several ancestors at the level: the fewest edges up, then the smallest id
    odd = ["CL:0000009", "CL:0000010"]
    assert pl.collapse_terms(odd, 1, ontology=cl).tolist() == ["CL:0000006", "CL:0000001"]
    # a list: the deepest listed term at or above; none: as it is
    listed = ["CL:0000001", "CL:0000002"]
    assert pl.collapse_terms([*terms, "CL:0000006"], listed, ontology=cl).tolist() == [
        "CL:0000002",
        "CL:0000002",
        "CL:0000001",
        "CL:0000002",
        "CL:0000000",
        "CL:0000006",
    ]
    # equally deep listed terms: the first listed wins
    assert pl.collapse_terms(["CL:0000010"], ["CL:0000006", "CL:0000001"], ontology=cl)[0] == (
        "CL:0000006"
    )
    assert pl.collapse_terms(["CL:0000010"], ["CL:0000001", "CL:0000006"], ontology=cl)[0] == (
        "CL:0000001"
    )


def _expected_table(adata, cl, level) -> pd.DataFrame:
    truth = adata.obs[TRUTH].astype(str).to_numpy()
    pred = called_ids(adata).to_numpy()
    if level is not None:

        def up(t):
            hits = [x for x in level if cl.is_ancestor(x, t)]
            return max(hits, key=lambda x: cl.depth(x)) if hits else t

        truth, pred = [up(t) for t in truth], [up(t) for t in pred]
    return pd.crosstab(pd.Series(truth, name="t"), pd.Series(pred, name="p"), normalize="index")


@pytest.mark.parametrize("level", [None, LINEAGES], ids=["as-called", "lineages"])
def test_confusion_draws_the_collapsed_crosstab(annotated, figdir, cl, level):
    ax = pl.confusion(annotated, truth_key=TRUTH, level=level, show=False, save="_test.png")
    assert_png(figdir / "genept_confusion_test.png")
    table = pl.confusion_table(annotated, truth_key=TRUTH, level=level)
    drawn = np.asarray(ax.images[0].get_array())
    np.testing.assert_allclose(drawn, table.to_numpy())
    np.testing.assert_allclose(table.sum(axis=1), 1)

    expected = _expected_table(annotated, cl, level)
    assert set(table.index) == set(expected.index)
    assert set(expected.columns) <= set(table.columns)
    for row in expected.index:
        for col in table.columns:
            want = expected.loc[row, col] if col in expected.columns else 0.0
            assert table.loc[row, col] == pytest.approx(want), (row, col)
    if level is not None:
        assert set(table.index) <= set(LINEAGES) | {"CL:0008001"}  # precursors: no lineage
    # tick labels name the terms (rows with their cells), squares carry the fractions
    names = [cl.name(t) for t in table.columns]
    assert [t.get_text() for t in ax.get_xticklabels()] == names
    counts = annotated.obs[TRUTH].astype(str).value_counts()
    if level is None:
        assert [t.get_text() for t in ax.get_yticklabels()] == [
            f"{cl.name(t)} ({counts[t]})" for t in table.index
        ]
    texts = {(round(t.get_position()[1]), round(t.get_position()[0])): t for t in ax.texts}
    for (i, j), value in np.ndenumerate(table.to_numpy()):
        if value > 0:
            assert texts[(i, j)].get_text() == f"{value:.2f}"
    assert len(texts) == int((table.to_numpy() > 0).sum())


def test_confusion_at_a_depth_collapses_everything_to_that_depth(annotated, figdir, cl):
    table = pl.confusion_table(annotated, truth_key="cell_type", level=3, normalize=False)
    assert all(cl.depth(t) <= 3 for t in [*table.index, *table.columns])
    assert table.to_numpy().sum() == annotated.n_obs
    assert pl.confusion(annotated, truth_key="cell_type", level=3, show=False) is not None


# ---- ontology --------------------------------------------------------------------------


def test_ontology_draws_called_terms_and_ancestors_with_counts(annotated, figdir, cl):
    ax = pl.ontology(annotated, show=False, save="_test.png")
    assert_png(figdir / "genept_ontology_test.png")
    graph = pl.ontology_graph(annotated)

    counts = called_ids(annotated).value_counts()
    counts = counts[counts > 0]
    root = reduce(cl.lowest_common_ancestor, counts.index)
    below_root = cl.descendants(root, include_self=True)
    expected = set().union(*(cl.ancestors(t, include_self=True) for t in counts.index))
    assert set(graph) == expected & below_root
    assert graph.graph["root"] == root and graph.graph["n_cells_outside"] == 0
    for node, data in graph.nodes(data=True):
        assert data["n_cells"] == counts.get(node, 0)
        under = cl.descendants(node, include_self=True)
        assert data["n_cells_below"] == counts[[t for t in counts.index if t in under]].sum()
        assert all(graph.nodes[p]["layer"] < data["layer"] for p in graph.predecessors(node))
    assert set(graph.edges) == {(p, t) for t in graph for p in cl.parents(t) if p in graph}

    # every node is labelled with its name and counts
    def squeeze(text):  # labels are wrapped over lines
        return "".join(text.split())

    assert sorted(squeeze(t.get_text()) for t in ax.texts) == sorted(
        squeeze(f"{d['name']} {d['n_cells']} / {d['n_cells_below']}")
        for _, d in graph.nodes(data=True)
    )
    # the called terms in their colours, the other ancestors pale
    colors = pl.term_colors(counts.index)
    (nodes,) = [c for c in ax.collections if len(c.get_offsets()) == graph.number_of_nodes()]
    faces = [to_hex(c) for c in nodes.get_facecolors()]
    assert faces == [colors.get(n, "#f2f2f2") for n in graph]


def test_ontology_below_a_chosen_root(annotated, figdir, cl):
    t_cell = "CL:0000084"
    graph = pl.ontology_graph(annotated, root=t_cell)
    ids = called_ids(annotated)
    under = ids[ids.map(lambda t: cl.is_ancestor(t_cell, t))]
    assert min(graph.nodes[n]["layer"] for n in graph) == 0 and t_cell in graph
    assert all(cl.is_ancestor(t_cell, n) for n in graph)
    assert graph.graph["n_cells_outside"] == annotated.n_obs - len(under)
    assert sum(d["n_cells"] for _, d in graph.nodes(data=True)) == len(under)
    ax = pl.ontology(annotated, root=t_cell, show=False)
    assert "cells outside not shown" in ax.get_title()


# ---- bad input -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call",
    [
        lambda a: pl.confidence(a, show=False),
        lambda a: pl.confusion(a, truth_key=TRUTH, show=False),
        lambda a: pl.ontology(a, show=False),
    ],
    ids=["confidence", "confusion", "ontology"],
)
def test_plots_without_an_annotation_say_to_run_genept_annotate(call, figdir, unchanged):
    adata = unchanged(sc_genept.datasets.pbmc68k_reduced())
    with pytest.raises(KeyError, match=r"genept_cell_type.*Run sc\.tl\.genept_annotate"):
        call(adata)


def test_a_wrong_key_names_the_annotations_there(annotated, figdir):
    with pytest.raises(KeyError, match=r"'genept_ontology_term_id'.*keys \['genept_cell_type'\]"):
        pl.ontology(annotated, key="genept", show=False)


def test_an_unknown_basis_lists_the_embeddings(annotated, figdir):
    with pytest.raises(KeyError, match=r"No embedding 'tsne'.*\['X_pca', 'X_umap'"):
        pl.confidence(annotated, basis="tsne", show=False)
    assert pl.confidence(annotated, basis="pca", show=False) is not None
    assert pl.confidence(annotated, basis="X_pca", show=False) is not None


@pytest.mark.parametrize(
    ("level", "error", "match"),
    [
        (-1, ValueError, "depth ≥ 0"),
        (True, TypeError, "level must be None"),
        (2.0, TypeError, "level must be None"),
        ("CL:0000084", TypeError, "wrap a single id in a list"),
        ([], ValueError, "empty list"),
        (["T cell"], ValueError, "not a live CL id"),
        (["CL:9999999"], ValueError, "CL:9999999"),
        ({"a": 1}, ValueError, "not a live CL id"),
    ],
)
def test_bad_levels_are_refused(annotated, figdir, level, error, match):
    with pytest.raises(error, match=match):
        pl.confusion(annotated, truth_key=TRUTH, level=level, show=False)
    with pytest.raises(error, match=match):
        pl.collapse_terms(["CL:0000084"], level)


def test_other_bad_arguments(annotated, figdir):
    with pytest.raises(KeyError, match="truth_key='nope'.*columns"):
        pl.confusion(annotated, truth_key="nope", show=False)
    with pytest.raises(ValueError, match="min_confidence"):
        pl.confidence(annotated, min_confidence=1.5, show=False)
    with pytest.raises(ValueError, match="two Axes"):
        pl.confidence(annotated, ax=plt.subplots()[1], show=False)
    with pytest.raises(TypeError, match="save must be"):
        pl.ontology(annotated, show=False, save=3)
    with pytest.raises(ValueError, match="root must be a live CL id"):
        pl.ontology(annotated, root="CL:9999999", show=False)
    with pytest.raises(ValueError, match="No cell is called at CL:0000540"):
        pl.ontology_graph(annotated, root="CL:0000540")  # neuron
    with pytest.raises(TypeError, match="not the string"):
        pl.term_colors("CL:0000084")
    with pytest.raises(ValueError, match="not CL terms"):
        pl.term_colors(["CL:0000084", "not a cell type"])
    with pytest.raises(KeyError, match="no column 'nope'"):
        pl.set_term_colors(annotated.copy(), "nope")


def test_unlabelled_cells_are_left_out_of_the_confusion_with_a_warning(_annotated_once):
    adata = _annotated_once.copy()
    truth = adata.obs[TRUTH].astype(object)
    truth.iloc[:7] = None
    adata.obs["partial"] = truth
    with pytest.warns(UserWarning, match="7 cells have no label"):
        table = pl.confusion_table(adata, truth_key="partial", normalize=False)
    assert table.to_numpy().sum() == adata.n_obs - 7


def test_plots_draw_into_given_axes_and_return_them(annotated, figdir):
    fig, axs = plt.subplots(1, 4, figsize=(20, 4))
    assert pl.confusion(annotated, truth_key=TRUTH, ax=axs[0], show=False) is axs[0]
    assert pl.ontology(annotated, ax=axs[1], show=False) is axs[1]
    assert pl.confidence(annotated, ax=axs[2:], show=False) is fig
    assert axs[0].images and axs[1].collections and axs[2].collections


@pytest.mark.slow
def test_importing_pl_stays_light():
    code = (
        "import sys, sc_genept\n"
        "assert 'sc_genept.pl' not in sys.modules\n"
        "before = set(sys.modules)\n"  # what scanpy and anndata load themselves (0.11.0: torch)
        "sc_genept.pl.term_colors\n"
        "heavy = [m for m in ('networkx', 'torch', 'lightning') if m in set(sys.modules) - before]\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
