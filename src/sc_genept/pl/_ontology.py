"""``pl.ontology``: the part of the Cell Ontology the annotation used, with cell counts."""

from __future__ import annotations

from functools import reduce
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from sc_genept.pl._colors import ANCESTOR_COLOR, annotation_colors
from sc_genept.pl._utils import annotation_column, finish, lineage_order, load_ontology

if TYPE_CHECKING:
    import networkx as nx
    from anndata import AnnData
    from matplotlib.axes import Axes

    from sc_genept.ontology import CellOntology


def ontology_graph(
    adata: AnnData,
    *,
    key: str = "genept_cell_type",
    root: str | None = None,
    ontology: CellOntology | str | None = None,
) -> nx.DiGraph:
    """The called terms and their ancestors up to ``root``, with cell counts.

    Parameters
    ----------
    adata, key, root, ontology
        As in :func:`~sc_genept.pl.ontology`.

    Returns
    -------
    A :class:`networkx.DiGraph` with an edge ``parent → child`` per ``is_a`` link among
    its nodes. Each node has ``name``, ``depth`` (edges below ``root``), ``n_cells`` (cells
    called exactly at that term), ``n_cells_below`` (cells called at it or under it),
    ``called`` (whether cells were called at it) and ``layer`` (the row it is drawn in:
    the longest path down from ``root`` in the graph, so that every term is drawn below
    all its parents; ``depth`` can tie a term with a parent). ``graph.graph`` holds ``root`` and
    ``n_cells_outside`` (cells called at terms not under ``root``, not drawn).
    """
    import networkx as nx

    ids = annotation_column(adata, key, "_ontology_term_id").astype(object)
    ontology = load_ontology(ontology)
    counts = ids.value_counts()
    counts = counts[counts > 0]
    called = list(counts.index)
    for term in called:
        ontology.name(term)  # an unknown id: a KeyError that says why
    if root is None:
        root = reduce(ontology.lowest_common_ancestor, called)
    elif not isinstance(root, str) or root not in ontology:
        raise ValueError(
            f"root must be a live CL id, got {root!r}: {ontology.explain(root)}. Map a name "
            "with CellOntology.resolve."
        )
    below_root = ontology.descendants(root, include_self=True)
    inside = [t for t in called if t in below_root]
    if not inside:
        raise ValueError(
            f"No cell is called at {root} {ontology.name(root)!r} or under it; the called "
            f"terms are {called[:10]}. Pass root=None (their lowest common ancestor) or a "
            "term above them."
        )
    nodes = set()
    for term in inside:
        nodes |= ontology.ancestors(term, include_self=True) & below_root
    graph = nx.DiGraph(root=root, n_cells_outside=int(counts.drop(inside).sum()))
    for term in lineage_order(nodes, ontology):
        below = ontology.descendants(term, include_self=True)
        graph.add_node(
            term,
            name=ontology.name(term),
            depth=ontology.depth(term) - ontology.depth(root),
            n_cells=int(counts.get(term, 0)),
            n_cells_below=int(counts[[t for t in inside if t in below]].sum()),
            called=term in counts.index,
        )
    graph.add_edges_from((p, t) for t in graph for p in ontology.parents(t) if p in graph)
    for term in nx.topological_sort(graph):  # parents first: below every parent drawn
        graph.nodes[term]["layer"] = max(
            (graph.nodes[p]["layer"] + 1 for p in graph.predecessors(term)), default=0
        )
    return graph


def _layered_layout(graph: nx.DiGraph) -> dict[str, tuple[float, float]]:
    """Top-down layers by ``layer``; in a layer, nodes ordered by their parents' mean x."""
    by_depth: dict[int, list[str]] = {}
    for node, depth in graph.nodes(data="layer"):
        by_depth.setdefault(depth, []).append(node)  # nodes come in ontology order
    pos: dict[str, tuple[float, float]] = {}
    width = max(len(v) for v in by_depth.values())
    for depth in sorted(by_depth):
        layer = by_depth[depth]
        rank = {n: i for i, n in enumerate(layer)}

        def barycentre(node, rank=rank):
            xs = [pos[p][0] for p in graph.predecessors(node) if p in pos]
            return (np.mean(xs) if xs else 0.0, rank[node])

        layer.sort(key=barycentre)
        step = width / len(layer)
        for i, node in enumerate(layer):
            pos[node] = ((i + 0.5) * step, -float(depth))
    return pos


def ontology(
    adata: AnnData,
    *,
    key: str = "genept_cell_type",
    root: str | None = None,
    ontology: CellOntology | str | None = None,
    ax: Axes | None = None,
    show: bool | None = None,
    save: bool | str | None = None,
) -> Axes | None:
    """The Cell Ontology subgraph of the called terms, with how many cells each got.

    Nodes are the terms cells were called at (coloured as in
    :func:`~sc_genept.pl.term_colors`, sized by their cells) and their ancestors up to
    ``root`` (pale); arrows go from a term to its subtypes, in layers by depth below
    ``root`` (a term's layer is its longest path from ``root``, so it sits below all its
    parents). Each label reads ``name`` and ``n`` (cells called there) ``/ N`` (cells
    called there or below). Coarse calls (e.g. "T cell") show where the model abstained.
    Drawn with networkx and matplotlib (no graphviz).

    Parameters
    ----------
    adata
        Annotated by :func:`~sc_genept.tl.genept_annotate`.
    key
        The ``key_added`` of :func:`~sc_genept.tl.genept_annotate`.
    root
        CL id of the top term drawn (default: the lowest common ancestor of the called
        terms); cells called at terms not under it are left out and counted in the title.
    ontology
        The Cell Ontology (``None``: the bundled release).
    ax
        Axes to draw in (default: a new figure sized to the graph).
    show
        Show the figure (default: ``sc.settings.autoshow``).
    save
        Save it to ``sc.settings.figdir``: ``True``, or a file-name suffix such as
        ``"_pbmc.png"`` (the file is ``genept_ontology_pbmc.png``).

    Returns
    -------
    The Axes when ``show`` is ``False``, else ``None``. :func:`ontology_graph` gives the
    graph drawn, with its counts.

    Examples
    --------
    >>> sc_genept.pl.ontology(query)
    """
    import textwrap

    import matplotlib.pyplot as plt
    import networkx as nx

    cl = load_ontology(ontology)
    graph = ontology_graph(adata, key=key, root=root, ontology=cl)
    colors = annotation_colors(adata, key, cl)
    pos = _layered_layout(graph)
    if ax is None:
        n_layers = 1 + max(d for _, d in graph.nodes(data="layer"))
        widest = max(pd.Series(dict(graph.nodes(data="layer"))).value_counts())
        fig, ax = plt.subplots(
            figsize=(max(6, 2 * widest), max(3, 1.4 * n_layers)), layout="constrained"
        )
    nodes = list(graph)
    data = graph.nodes
    n_max = max(d["n_cells"] for _, d in graph.nodes(data=True))
    nx.draw_networkx_edges(
        graph, pos, ax=ax, edge_color="#9a9a9a", arrows=True, arrowsize=8, node_size=900
    )
    nx.draw_networkx_nodes(
        graph,
        pos,
        nodelist=nodes,
        ax=ax,
        node_color=[colors[n] if data[n]["called"] else ANCESTOR_COLOR for n in nodes],
        node_size=[150 + 1200 * np.sqrt(data[n]["n_cells"] / n_max) for n in nodes],
        edgecolors="#555555",
        linewidths=0.6,
    )
    labels = {
        n: "\n".join(textwrap.wrap(data[n]["name"], 18))
        + f"\n{data[n]['n_cells']} / {data[n]['n_cells_below']}"
        for n in nodes
    }
    below = {n: (x, y - 0.13) for n, (x, y) in pos.items()}  # under the node
    nx.draw_networkx_labels(
        graph, below, labels=labels, ax=ax, font_size=7, verticalalignment="top"
    )
    ax.set_axis_off()
    ax.margins(0.08, 0.15)
    outside = graph.graph["n_cells_outside"]
    ax.set_title(
        f"{key}: CL terms called (n / under it) below {cl.name(graph.graph['root'])!r}"
        + (f"; {outside} cells outside not shown" if outside else "")
    )
    return finish(ax.figure, "genept_ontology", show, save, ax)
