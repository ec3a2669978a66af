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

from sc_genept._utils import warn_caller

from ._label_lookup import _MISSING_AS_TEXT, _OTHER_SCOPES, LabelLookup
from ._names import Match, normalise

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

#: The root of CL: "cell".
ROOT = "CL:0000000"
BUNDLED_FILE = "cl.obo.gz"
ATTRIBUTION = (
    "Cell Ontology (CL), https://obophenotype.github.io/cell-ontology/, licensed CC BY 4.0. "
    "Diehl et al. 2016, J Biomed Semantics 7:44."
)
_SYNONYM = re.compile(r'^"((?:[^"\\]|\\.)*)"\s+(EXACT|RELATED|BROAD|NARROW)\b')
_ESCAPE = re.compile(r"\\(.)")
_CL_ID = re.compile(r"^CL:\d{7}$")
_CL_URL = "http://purl.obolibrary.org/obo/cl/cl-basic.obo"
_HOW_TO_LOAD = (
    f"Pass 'bundled' (the CL release shipped with sc_genept), or a path or URL of a Cell "
    f"Ontology OBO file, plain or .gz, e.g. {_CL_URL!r}."
)


class CellOntology(LabelLookup):
    """The Cell Ontology: terms, their names and exact synonyms, and the ``is_a`` hierarchy.

    Build one with :meth:`load` (an OBO file) or :meth:`from_dict` (plain data, e.g. the
    subset a saved model carries). Non-CL terms and terms that do not reach the root
    ``CL:0000000`` ("cell") are dropped. Obsolete terms are not part of the hierarchy, but
    their ids, names, ``replaced_by`` and ``consider`` are kept: :meth:`resolve` follows an
    obsolete id to its replacement, and :meth:`explain` says why a label does not map.

    Parameters
    ----------
    graph
        Directed graph with an edge ``child → parent`` per ``is_a`` link and node
        attributes ``name`` and ``synonym`` (as ``obonet.read_obo`` returns); nodes with
        ``is_obsolete`` set may carry ``replaced_by`` and ``consider``.
    version
        Release of the ontology, e.g. ``"2026-03-26"``.
    source
        Where it was read from.
    """

    def __init__(self, graph: nx.DiGraph, *, version: str, source: str):
        is_cl = [(n, d) for n, d in graph.nodes(data=True) if _CL_ID.match(n)]
        live = [n for n, d in is_cl if not _is_obsolete(d)]
        # id -> (name, replaced_by, consider): enough to follow or explain an old annotation
        self._obsolete = {
            n: (
                str(d.get("name", "")),
                tuple(_as_list(d.get("replaced_by"))),
                tuple(_as_list(d.get("consider"))),
            )
            for n, d in is_cl
            if _is_obsolete(d)
        }
        dag = nx.DiGraph()
        dag.add_nodes_from((n, graph.nodes[n]) for n in live)
        edges = graph.edges(keys=True) if graph.is_multigraph() else graph.edges
        dag.add_edges_from(
            (child, parent)
            for child, parent, *relation in edges
            if child in dag and parent in dag and relation in ([], ["is_a"])
        )
        if ROOT not in dag:
            found = f"{len(dag)} live CL terms" if len(dag) else "no live CL terms"
            raise ValueError(
                f"{source} has no live term {ROOT} ('cell') ({found} among "
                f"{graph.number_of_nodes()} terms), so it is not the Cell Ontology. " + _HOW_TO_LOAD
            )
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
            CC BY 4.0. Otherwise a path or URL understood by ``obonet.read_obo``
            (``.gz``/``.bz2``/``.xz`` allowed), e.g.
            ``"http://purl.obolibrary.org/obo/cl/cl-basic.obo"``. A :class:`CellOntology`
            is returned as it is.

        Raises
        ------
        FileNotFoundError
            If ``source`` is neither ``"bundled"``, a URL nor an existing file.
        ValueError
            If the file is not OBO, or has no live term ``CL:0000000`` ("cell").
        """
        if isinstance(source, CellOntology):
            return source
        if not isinstance(source, str | Path):
            raise TypeError(
                f"CellOntology.load takes a path or URL, got {type(source).__name__}. "
                + _HOW_TO_LOAD
            )
        return _load_cached(str(source))

    @classmethod
    def from_dict(
        cls, terms: Mapping[str, Mapping], *, version: str, source: str = "dict"
    ) -> CellOntology:
        """Build an ontology from plain data, as :meth:`to_dict` writes it.

        This lets a saved model carry the part of CL it uses as JSON, so that loading it
        never reads another file or URL.

        Parameters
        ----------
        terms
            ``{term_id: {"name": str, "parents": [term_id, …], "synonyms": [str, …]}}``,
            closed under ancestors: every parent is a key, and every term reaches
            ``CL:0000000``. ``"synonyms"`` (exact synonyms) may be left out, and an entry
            may add ``"other_synonyms": [[scope, str], …]`` (scope ``"RELATED"``,
            ``"BROAD"`` or ``"NARROW"``).
        version
            CL release the terms come from, e.g. ``"2026-03-26"``.
        source
            Where the terms come from, shown in messages.

        Raises
        ------
        ValueError
            If an entry lacks a name, names a parent that is not a key, is not a CL id, or
            does not reach ``CL:0000000``, or if the parents form a cycle.
        """
        if not hasattr(terms, "items"):
            raise TypeError(
                f"CellOntology.from_dict takes a dict {{term_id: {{'name': …, 'parents': […]}}}}, "
                f"got {type(terms).__name__}."
            )
        graph = nx.DiGraph()
        problems = []
        for term_id, entry in terms.items():
            if not isinstance(term_id, str) or not _CL_ID.match(term_id):
                problems.append(f"{term_id!r} is not a CL id such as 'CL:0000084'")
                continue
            if not hasattr(entry, "get") or not isinstance(entry.get("name"), str):
                problems.append(f"{term_id} has no 'name' string")
                continue
            parents, synonyms = entry.get("parents", []), entry.get("synonyms", [])
            others = entry.get("other_synonyms", [])
            if isinstance(parents, str) or isinstance(synonyms, str):
                problems.append(f"{term_id}: 'parents' and 'synonyms' must be lists, not strings")
                continue
            if any(
                isinstance(o, str) or len(o) != 2 or str(o[0]).upper() not in _OTHER_SCOPES
                for o in others
            ):
                problems.append(
                    f"{term_id}: 'other_synonyms' must be [scope, synonym] pairs with scope "
                    "RELATED, BROAD or NARROW"
                )
                continue
            graph.add_node(
                term_id,
                name=entry["name"],
                synonym=[f'"{_obo_quote(s)}" EXACT []' for s in synonyms]
                + [f'"{_obo_quote(text)}" {scope.upper()} []' for scope, text in others],
            )
            for parent in parents:
                if parent not in terms:
                    problems.append(f"{term_id} has parent {parent!r}, which is not a key")
                graph.add_edge(term_id, parent)
        if not problems and not nx.is_directed_acyclic_graph(graph):
            problems.append(f"the parents form a cycle: {nx.find_cycle(graph)}")
        if not problems and ROOT in graph:
            stray = sorted(set(graph) - nx.ancestors(graph, ROOT) - {ROOT})
            if stray:
                problems.append(f"{len(stray)} terms do not reach {ROOT}: {stray[:5]}")
        if problems:
            raise ValueError(
                f"Cannot build a CellOntology from {source}: {'; '.join(problems[:5])}. "
                "Pass a dict closed under ancestors, as CellOntology.to_dict(terms) returns."
            )
        return cls(graph, version=version, source=source)

    def to_dict(self, terms: Iterable[str]) -> dict[str, dict]:
        """The given terms and all their ancestors as plain data for :meth:`from_dict`.

        Parameters
        ----------
        terms
            Live CL ids.

        Returns
        -------
        ``{term_id: {"name": str, "parents": [term_id, …], "synonyms": [str, …]}}``, sorted
        by id and JSON-serialisable; a term with related, broad or narrow synonyms also has
        ``"other_synonyms": [[scope, str], …]``. ``CellOntology.from_dict(d, version=self.version)`` gives the same names, synonyms, ancestors and depths for
        these terms.
        """
        if isinstance(terms, str):
            terms = [terms]
        closed = set()
        for term in terms:
            closed |= self.ancestors(term, include_self=True)
        found = {}
        for t in sorted(closed):
            found[t] = {
                "name": self.name(t),
                "parents": sorted(self.parents(t)),
                "synonyms": self.synonyms(t),
            }
            others = [[scope, s] for scope in _OTHER_SCOPES for s in self.synonyms(t, scope)]
            if others:
                found[t]["other_synonyms"] = others
        return found

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

    def synonyms(self, term_id: str, scope: str = "EXACT") -> list[str]:
        """Synonyms of a term: exact ones, or those of another OBO scope.

        Parameters
        ----------
        scope
            ``"EXACT"``, ``"RELATED"``, ``"BROAD"`` or ``"NARROW"``. The bundled CL has exact
            synonyms only (that is all its source, cellxgene-ontology-guide, carries); an
            official ``cl-basic.obo`` has all four.
        """
        scope = str(scope).upper()
        if scope not in ("EXACT", *_OTHER_SCOPES):
            raise ValueError(f"scope must be EXACT, RELATED, BROAD or NARROW, got {scope!r}")
        raw = self.graph.nodes[self._check(term_id)].get("synonym", [])
        return [
            _ESCAPE.sub(r"\1", m.group(1))
            for s in raw
            if (m := _SYNONYM.match(s)) and m.group(2) == scope
        ]

    def resolve(self, label: str) -> str | None:
        """The term id for a label that names one CL term; else ``None``.

        ``resolve(label)`` is ``match(label).term_id``: see :meth:`match` for what a label
        may be and how it is matched. An obsolete CL id is followed through
        ``replaced_by`` to its live replacement, with a warning that names both.
        """
        found = self.match(label)
        return None if found is None else found.term_id

    def match(self, label: str) -> Match | None:
        """The CL term a label names, and how it was found; ``None`` if none or several.

        Labels are compared in their normalised form (case, spacing, hyphens, underscores,
        punctuation and Greek letters do not matter; marker signs do), and tried in order:

        1. a CL id (``"CL:0000236"``, ``"cl_0000236"``); an obsolete id is followed through
           ``replaced_by``, with a warning;
        2. a term's name, then an exact synonym; then an obsolete term's name (followed
           like an obsolete id); then a related, narrow or broad synonym, where the loaded
           OBO file has them (the bundled CL has exact synonyms only);
        3. an everyday population name whose term is not what its words say
           (``"everyday name"``: "CD16 Mono", "NK_CD56bright", "cDC2", "HSPC"; see
           ``sc_genept.ontology.EVERYDAY_NAMES``);
        4. the rewrite rules, each applied to the label and to every CL name and exact
           synonym alike, and adding up in this order (``sc_genept.ontology.RULES``):
           ``"marker form"`` ("CD14+" = "CD14-positive", "FCGR3A+" = "CD16+"),
           ``"bare marker"`` ("CD4 T cell" = "CD4+ T cell"), ``"plural"`` ("B cells"),
           ``"abbreviation"`` (DC, NK, NKT, ILC, HSC, Treg: those CL uses in its own
           synonyms), ``"everyday word"`` (Seurat's and Azimuth's Mono, TEM, TCM, CTL, gdT,
           MAIT), ``"cell suffix"`` ("Dendritic" = "dendritic cell"), ``"implied
           qualifier"`` ("CD4+ T cell" = "CD4-positive, alpha-beta T cell": CL has no plain
           CD4 T cell), ``"implied T cell"`` ("CD8 Cytotoxic" = "CD8 cytotoxic T") and
           ``"word order"`` ("memory CD4+ T cell", "CD4 Naive");
        5. a numbered subcluster, ``"CD4 TEM_1"``, as its population ``"CD4 TEM"``.

        The first step under which the label matches anything decides: one term (or one
        term by name, where others match by synonym) is the match; several terms mean the
        label is ambiguous and resolves to none: it is never a guess between terms.
        :meth:`explain` lists the candidates.

        Returns
        -------
        A :class:`~sc_genept.ontology.Match` ``(term_id, name, how, matched)``, e.g.
        ``Match("CL:0001054", "CD14-positive monocyte", "marker form",
        "CD14-positive monocyte")`` for ``"CD14+ Monocyte"``; ``None`` if nothing or
        several terms match.
        """
        found, _, warning = self._lookup(label)
        if warning:
            warn_caller(warning)
        return found

    def map_labels(self, labels: Iterable[str]) -> tuple[pd.Series, list[str]]:
        """Map free-text labels to CL ids, as :meth:`resolve` does, once per distinct label.

        Obsolete ids are followed to their replacement, with one warning each (see
        :meth:`resolve`). ``labels`` is not modified.

        Returns
        -------
        The ids as a :class:`pandas.Series` aligned with ``labels`` (``NaN`` where nothing
        matched), and the sorted distinct labels that did not map; :meth:`explain` says why
        for each.
        """
        labels = pd.Series(labels, dtype=object)
        lookup = {}
        for label in labels.dropna().unique():
            found, _, warning = self._lookup(label)
            lookup[label] = None if found is None else found.term_id
            if warning:
                warn_caller(warning)
        ids = labels.map(lookup)
        return ids, sorted(str(u) for u, t in lookup.items() if t is None)

    def explain(self, label: object) -> str:
        """One sentence on what ``label`` maps to and how, or why it maps to no live term.

        Meant for error messages that list unmapped labels: it tells an obsolete id (and
        its replacement, or the terms CL suggests to ``consider``) from an ambiguous label
        (listing the terms it could be, and the rule that made them meet), a missing value,
        an id this release lacks, and an unknown name (with close matches in the lineage
        its words name: "cDC3" is never offered a plasmacytoid dendritic cell).

        Parameters
        ----------
        label
            A CL id, name, synonym or everyday name, as passed to :meth:`resolve`.
        """
        if label is None or (pd.api.types.is_scalar(label) and pd.isna(label)):
            return "a missing label (None/NaN): drop unlabelled cells or label them first"
        text = str(label).strip()
        if text.casefold() in _MISSING_AS_TEXT:
            return (
                f"{text!r} looks like a missing value turned into text (e.g. by .astype(str)): "
                "drop unlabelled cells or label them first"
            )
        key = text.upper().replace("_", ":")
        if key in self._obsolete:
            return self._explain_obsolete(key)
        found, candidates, _ = self._lookup(text)
        if found is not None:
            told = f"{text!r} is {found.term_id} {found.name!r} in CL {self.version}"
            if found.how.startswith("obsolete"):
                obsolete = self._obsolete_by_name[normalise(text)]
                return f"{told}: {self._explain_obsolete(obsolete)}"
            if found.how in ("id", "name", "synonym"):
                return told
            return f"{told} (by {found.how}: {found.matched!r})"
        if candidates:
            how, terms = candidates
            listed = ", ".join(f"{t} {self.name(t)!r}" for t in sorted(terms))
            if how == "synonym":
                return (
                    f"{text!r} is an exact synonym of several terms ({listed}): use the CL "
                    "id of the one you mean"
                )
            return (
                f"{text!r} is ambiguous: by {how} it could be any of {listed}; use the CL "
                "id (or the name) of the one you mean"
            )
        obsolete = self._obsolete_by_name.get(normalise(text))
        if obsolete is not None:
            return self._explain_obsolete(obsolete)
        if _CL_ID.match(key):
            return (
                f"{key} is not a term of CL {self.version} (from {self.source}): check the id, "
                "or load the CL release it comes from with CellOntology.load"
            )
        close = self._suggest(text)  # close in spelling, and in the label's lineage
        if close:
            shown = " or ".join(repr(c) for c in close)
            return (
                f"{text!r} is not a CL id, name or synonym in CL {self.version}, nor one "
                f"under the naming rules; did you mean {shown}?"
            )
        return (
            f"{text!r} is not a CL id, name or synonym in CL {self.version}, nor one under "
            "the naming rules (CellOntology.match): map it to a CL id first"
        )

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

    # ---- internals -------------------------------------------------------------------

    def _check(self, term_id: str) -> str:
        if term_id not in self.graph:
            raise KeyError(
                f"{term_id!r} is not a live term of {self!r}: {self.explain(term_id)}. Map "
                "names with CellOntology.resolve() or map_labels()."
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


def _is_obsolete(data: Mapping) -> bool:
    return str(data.get("is_obsolete", "false")).lower() == "true"


def _as_list(value) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def _obo_quote(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


@lru_cache(maxsize=4)
def _load_cached(source: str) -> CellOntology:
    import obonet

    is_url = "://" in source
    if source == "bundled":
        with as_file(files("sc_genept") / "data" / BUNDLED_FILE) as path:
            graph = obonet.read_obo(path, ignore_obsolete=False)
    else:
        if not is_url and not Path(source).is_file():
            what = "is a folder, not a file" if Path(source).is_dir() else "does not exist"
            raise FileNotFoundError(
                f"Cannot load the Cell Ontology: {source} {what}. {_HOW_TO_LOAD}"
            )
        try:
            # obsolete terms are kept apart by CellOntology, to follow or explain old ids
            graph = obonet.read_obo(source, ignore_obsolete=False)
        except (ValueError, UnicodeDecodeError, EOFError, OSError) as err:
            problem = (
                "could not download it"
                if is_url and isinstance(err, OSError)
                else "could not read it as an OBO file"
            )
            raise ValueError(
                f"Cannot load the Cell Ontology from {source}: {problem} "
                f"({type(err).__name__}: {str(err).strip()[:200]}). {_HOW_TO_LOAD}"
            ) from err
    data_version = str(graph.graph.get("data-version", "unknown"))
    match = re.search(r"\d{4}-\d{2}-\d{2}", data_version)
    return CellOntology(graph, version=match.group(0) if match else data_version, source=source)
