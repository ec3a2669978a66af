"""The Cell Ontology as a DAG: names, synonyms, ancestors, LCA, distances, label mapping."""

from __future__ import annotations

import re
from functools import cached_property, lru_cache
from importlib.resources import as_file, files
from pathlib import Path
from typing import TYPE_CHECKING

import networkx as nx
import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from collections.abc import Iterable

#: The root of CL: "cell".
ROOT = "CL:0000000"
BUNDLED_FILE = "cl.obo.gz"
ATTRIBUTION = (
    "Cell Ontology (CL), https://obophenotype.github.io/cell-ontology/, licensed CC BY 4.0. "
    "Diehl et al. 2016, J Biomed Semantics 7:44."
)
_QUOTED = re.compile(r'^"((?:[^"\\]|\\.)*)"')
_CL_ID = re.compile(r"^CL:\d{7}$")


class CellOntology:
    """The Cell Ontology: terms, their names and exact synonyms, and the ``is_a`` hierarchy.

    Build one with :meth:`load`. Obsolete terms, non-CL terms and terms that do not reach
    the root ``CL:0000000`` ("cell") are dropped.

    Parameters
    ----------
    graph
        Directed graph with an edge ``child → parent`` per ``is_a`` link and node
        attributes ``name`` and ``synonym`` (as :func:`obonet.read_obo` returns).
    version
        Release of the ontology, e.g. ``"2026-03-26"``.
    source
        Where it was read from.
    """

    def __init__(self, graph: nx.DiGraph, *, version: str, source: str):
        live = [
            n
            for n, d in graph.nodes(data=True)
            if _CL_ID.match(n) and str(d.get("is_obsolete", "false")).lower() != "true"
        ]
        dag = nx.DiGraph()
        dag.add_nodes_from((n, graph.nodes[n]) for n in live)
        edges = graph.edges(keys=True) if graph.is_multigraph() else graph.edges
        dag.add_edges_from(
            (child, parent)
            for child, parent, *relation in edges
            if child in dag and parent in dag and relation in ([], ["is_a"])
        )
        if ROOT not in dag:
            raise ValueError(f"{source} has no term {ROOT} ('cell'): is it the Cell Ontology?")
        reaching_root = nx.ancestors(dag, ROOT) | {ROOT}  # edges point child → parent
        self.graph = dag.subgraph(reaching_root).copy()
        self.version = version
        self.source = source

    @classmethod
    def load(cls, source: str | Path = "bundled") -> CellOntology:
        """Read the bundled CL release, or any CL OBO file or URL (e.g. ``cl-basic.obo``).

        Parameters
        ----------
        source
            ``"bundled"``: CL 2026-03-26 as pinned by CELLxGENE (``cellxgene-ontology-guide``),
            CC BY 4.0. Otherwise a path or URL understood by :func:`obonet.read_obo`
            (``.gz``/``.bz2``/``.xz`` allowed), e.g.
            ``"http://purl.obolibrary.org/obo/cl/cl-basic.obo"``.
        """
        return _load_cached(str(source))

    # ---- terms -----------------------------------------------------------------------

    def __contains__(self, term_id: str) -> bool:
        return term_id in self.graph

    def __len__(self) -> int:
        return self.graph.number_of_nodes()

    def __repr__(self) -> str:
        return f"CellOntology({len(self)} terms, version={self.version!r})"

    @property
    def terms(self) -> list[str]:
        """All term ids, sorted."""
        return sorted(self.graph)

    def name(self, term_id: str) -> str:
        """The label of a term (``"CL:0000084"`` → ``"T cell"``)."""
        return self.graph.nodes[self._check(term_id)]["name"]

    def names(self, term_ids: Iterable[str]) -> list[str]:
        """Labels of several terms."""
        return [self.name(t) for t in term_ids]

    def synonyms(self, term_id: str) -> list[str]:
        """Exact synonyms of a term."""
        raw = self.graph.nodes[self._check(term_id)].get("synonym", [])
        return [m.group(1) for s in raw if " EXACT" in s and (m := _QUOTED.match(s))]

    def resolve(self, label: str) -> str | None:
        """The term id for an id, a name or an exact synonym (case-insensitive); else ``None``.

        Names win over synonyms; a synonym shared by several terms resolves to none.
        """
        label = str(label).strip()
        if label.upper().replace("_", ":") in self.graph:
            return label.upper().replace("_", ":")
        key = label.casefold()
        return self._by_name.get(key) or self._by_synonym.get(key)

    def map_labels(self, labels: Iterable[str]) -> tuple[pd.Series, list[str]]:
        """Map free-text labels (ids, names or exact synonyms) to CL ids.

        Returns
        -------
        The ids as a :class:`pandas.Series` aligned with ``labels`` (``NaN`` where nothing
        matched), and the sorted distinct labels that did not map.
        """
        labels = pd.Series(labels)
        lookup = {u: self.resolve(u) for u in labels.dropna().unique()}
        ids = labels.map(lookup)
        return ids, sorted(str(u) for u, t in lookup.items() if t is None)

    # ---- hierarchy -------------------------------------------------------------------

    def parents(self, term_id: str) -> set[str]:
        """Direct ``is_a`` parents."""
        return set(self.graph.successors(self._check(term_id)))

    def children(self, term_id: str) -> set[str]:
        """Direct ``is_a`` children."""
        return set(self.graph.predecessors(self._check(term_id)))

    def ancestors(self, term_id: str, *, include_self: bool = False) -> frozenset[str]:
        """All terms above ``term_id`` (up to and including the root)."""
        found = self._ancestors[self._check(term_id)]
        return found | {term_id} if include_self else found

    def descendants(self, term_id: str, *, include_self: bool = False) -> frozenset[str]:
        """All terms below ``term_id``."""
        found = frozenset(nx.ancestors(self.graph, self._check(term_id)))
        return found | {term_id} if include_self else found

    def is_ancestor(self, ancestor: str, term_id: str) -> bool:
        """Whether ``ancestor`` is ``term_id`` or above it."""
        return ancestor == term_id or ancestor in self.ancestors(term_id)

    def depth(self, term_id: str) -> int:
        """Length of the shortest ``is_a`` path from the root (the root has depth 0)."""
        return self._depth[self._check(term_id)]

    def lowest_common_ancestor(self, a: str, b: str) -> str:
        """The lowest term that is ``a`` or above it and ``b`` or above it.

        In a DAG there can be several lowest common ancestors (none below another); the
        deepest of them wins, then the one closest to ``a`` and ``b``, then the smallest id.
        """
        common = self.ancestors(a, include_self=True) & self.ancestors(b, include_self=True)
        lowest = [c for c in common if not any(c in self.ancestors(o) for o in common if o != c)]
        up_a, up_b = self._up(a), self._up(b)
        return min(lowest, key=lambda t: (-self.depth(t), up_a[t] + up_b[t], t))

    def distance(self, a: str, b: str) -> int:
        """Edges from ``a`` up to a common ancestor and down to ``b``, on the shortest such path.

        Paths go through a common ancestor only, never down through a shared descendant, so
        the distance reads as "how far apart in the hierarchy" (0 when ``a == b``).
        """
        up_a, up_b = self._up(self._check(a)), self._up(self._check(b))
        return min(up_a[c] + up_b[c] for c in up_a.keys() & up_b.keys())

    # ---- internals -------------------------------------------------------------------

    def _check(self, term_id: str) -> str:
        if term_id not in self.graph:
            raise KeyError(
                f"{term_id!r} is not a live term of {self!r}. Map names with "
                "CellOntology.resolve() or map_labels()."
            )
        return term_id

    @cached_property
    def _ancestors(self) -> dict[str, frozenset[str]]:
        found: dict[str, frozenset[str]] = {}
        # parents before children: walk the reversed topological order of child → parent edges
        for term in reversed(list(nx.topological_sort(self.graph))):
            parents = list(self.graph.successors(term))
            found[term] = frozenset(parents).union(*(found[p] for p in parents))
        return found

    @cached_property
    def _depth(self) -> dict[str, int]:
        return nx.single_source_shortest_path_length(self.graph.reverse(copy=False), ROOT)

    def _up(self, term: str) -> dict[str, int]:
        """Shortest upward distance from ``term`` to itself and each of its ancestors."""
        if term not in self._up_cache:  # edges point child → parent
            self._up_cache[term] = nx.single_source_shortest_path_length(self.graph, term)
        return self._up_cache[term]

    @cached_property
    def _up_cache(self) -> dict[str, dict[str, int]]:
        return {}

    @cached_property
    def _by_name(self) -> dict[str, str]:
        return {d["name"].casefold(): t for t, d in self.graph.nodes(data=True) if "name" in d}

    @cached_property
    def _by_synonym(self) -> dict[str, str]:
        owners: dict[str, set[str]] = {}
        for term in self.graph:
            for synonym in self.synonyms(term):
                owners.setdefault(synonym.casefold(), set()).add(term)
        return {s: next(iter(t)) for s, t in owners.items() if len(t) == 1}

    def ancestor_matrix(self, term_ids: list[str]) -> np.ndarray:
        """``R[i, j] = 1`` if ``term_ids[i]`` is ``term_ids[j]`` or one of its ancestors.

        The subtree-mass matrix of hierarchical cross-entropy: with ``p`` a distribution
        over ``term_ids``, ``R @ p`` is the probability mass under each term.
        """
        index = {t: i for i, t in enumerate(term_ids)}
        matrix = np.eye(len(term_ids), dtype=np.float32)
        for j, term in enumerate(term_ids):
            for anc in self.ancestors(term):
                if anc in index:
                    matrix[index[anc], j] = 1.0
        return matrix


@lru_cache(maxsize=4)
def _load_cached(source: str) -> CellOntology:
    import obonet

    if source == "bundled":
        with as_file(files("sc_genept") / "data" / BUNDLED_FILE) as path:
            graph = obonet.read_obo(path)
    else:
        graph = obonet.read_obo(source)
    data_version = str(graph.graph.get("data-version", "unknown"))
    match = re.search(r"\d{4}-\d{2}-\d{2}", data_version)
    return CellOntology(graph, version=match.group(0) if match else data_version, source=source)
