"""How a label finds its CL term: the lookup behind :meth:`CellOntology.match`.

:class:`LabelLookup` holds the indices of CL's names and synonyms (plain, under each
rewrite rule of ``RULES``, and of obsolete terms) and the steps that try them in order,
follow obsolete terms to their replacement, tell why a label maps to none and suggest
names close to it, in its lineage.
"""

from __future__ import annotations

import difflib
from functools import cached_property
from typing import TYPE_CHECKING

import pandas as pd

from ._names import RULES, Match, normalise, rule_keys
from ._vocabulary import EVERYDAY_NAMES, EVERYDAY_WORDS, LINEAGE_MARKERS, LINEAGES, SUBCLUSTER

if TYPE_CHECKING:
    import networkx as nx

#: OBO synonym scopes besides EXACT, in the order :meth:`CellOntology.match` tries them.
_OTHER_SCOPES = ("RELATED", "NARROW", "BROAD")
#: What a label looks like once a missing value went through ``.astype(str)``.
_MISSING_AS_TEXT = frozenset({"", "nan", "none", "<na>", "nat"})
#: EVERYDAY_NAMES are compared after the rules up to this one (case, markers, plurals).
_NAMES_AFTER_RULE = list(RULES).index("plural")
_ROOT = "CL:0000000"


def _everyday_key(keys: list[str]) -> str:
    """The key of a label in :data:`EVERYDAY_NAMES`, from its keys under ``RULES``.

    Case, marker forms and plurals aside (the rules up to ``"plural"``), and word order, a
    trailing "cell" and the words that :data:`EVERYDAY_WORDS` drops ("B intermediate kappa").
    """
    key = keys[_NAMES_AFTER_RULE].removesuffix(" cell")
    return " ".join(sorted(w for w in key.split() if EVERYDAY_WORDS.get(w) != ""))


#: :data:`EVERYDAY_NAMES` by their key, each with the CL name or synonym it stands for.
_EVERYDAY_NAMES_BY_KEY = {
    _everyday_key(rule_keys(normalise(k))): v for k, v in EVERYDAY_NAMES.items()
}


class LabelLookup:
    """Label lookup for :class:`~sc_genept.ontology.CellOntology`, which inherits it.

    It reads the ontology's ``graph``, ``version``, ``_obsolete`` (obsolete id ->
    ``(name, replaced_by, consider)``), :meth:`name`, :meth:`synonyms` and (for hints)
    :meth:`ancestors`, and caches its indices on the ontology the first time a label is
    looked up.
    """

    graph: nx.DiGraph
    version: str
    _obsolete: dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]]

    def _lookup(self, label) -> tuple[Match | None, tuple[str, frozenset[str]] | None, str | None]:
        """:meth:`match` without the warning.

        Returns the match (or ``None``), the step and candidate terms where several matched
        (else ``None``), and what to warn about, if anything.
        """
        if label is None or (pd.api.types.is_scalar(label) and pd.isna(label)):
            return None, None, None
        text = str(label).strip()
        key = text.upper().replace("_", ":")
        if key in self.graph:
            return Match(key, self.name(key), "id", key), None, None
        if key in self._obsolete:
            return self._follow(key, key, "obsolete id")
        normalised = normalise(text)
        if not normalised or text.casefold() in _MISSING_AS_TEXT:
            return None, None, None
        # names, then exact synonyms, then obsolete names, then the other synonym scopes
        for how, index in (("name", self._names_index), ("synonym", self._synonyms_index)):
            found = index.get(normalised)
            if found:
                return self._pick(how, found)
        obsolete = self._obsolete_by_name.get(normalised)
        if obsolete is not None:
            return self._follow(obsolete, f"{text!r} ({obsolete})", "obsolete name")
        for scope, index in self._other_synonyms_index.items():
            found = index.get(normalised)
            if found:
                return self._pick(f"{scope.lower()} synonym", found)
        keys = rule_keys(normalised)
        everyday = _EVERYDAY_NAMES_BY_KEY.get(_everyday_key(keys))
        if everyday is not None:
            # the CL text it stands for, as CL names it: absent from another release or subset
            for index in (self._names_index, self._synonyms_index):
                if len(found := index.get(normalise(everyday), {})) == 1:
                    return self._pick("everyday name", found)
            return None, None, None
        # the rewrite rules, adding up: the first one under which anything matches decides
        for how, key, index in zip(RULES, keys, self._rule_indices, strict=True):
            found = index.get(key)
            if found:
                return self._pick(how, found)
        return self._subcluster(text)

    def _subcluster(self, text: str):
        """``"CD4 TEM_1"`` as ``"CD4 TEM"``: a numbered subcluster is of its population's type."""
        split = SUBCLUSTER.match(text)
        if split is None:
            return None, None, None
        population = split["population"]
        while (again := SUBCLUSTER.match(population)) is not None:  # "NK_3_1": one lookup
            population = again["population"]
        found, candidates, warning = self._lookup(population)
        if found is not None:
            found = found._replace(how="subcluster")
        return found, candidates, warning

    def _pick(self, how: str, found: dict[str, tuple[bool, str]]):
        """The one term in ``found`` (``{term: (by_name, text)}``); names win over synonyms."""
        by_name = [t for t, (is_name, _) in found.items() if is_name]
        if len(found) == 1 or len(by_name) == 1:
            term = next(iter(found)) if len(found) == 1 else by_name[0]
            return Match(term, self.name(term), how, found[term][1]), None, None
        return None, (how, frozenset(found)), None

    def _follow(self, obsolete: str, told: str, how: str):
        """An obsolete term's live replacement as a match, and the warning that says so."""
        replacement = self._replacement(obsolete)
        if replacement is None:
            return None, None, None
        warning = (
            f"{told} is obsolete in CL {self.version}; using its replacement "
            f"{replacement} {self.name(replacement)!r}."
        )
        name = self._obsolete[obsolete][0] if how == "obsolete name" else obsolete
        return Match(replacement, self.name(replacement), how, name), None, warning

    def _replacement(self, term_id: str) -> str | None:
        """The live term an obsolete id is replaced by, following chains; else ``None``."""
        seen = set()
        while term_id in self._obsolete and term_id not in seen:
            seen.add(term_id)
            replaced_by = self._obsolete[term_id][1]
            # several replacements would be a guess: CL gives them as `consider` instead
            if len(replaced_by) != 1:
                return None
            term_id = replaced_by[0]
        return term_id if term_id in self.graph else None

    def _explain_obsolete(self, term_id: str) -> str:
        name, replaced_by, consider = self._obsolete[term_id]
        told = f"{term_id} {name!r}" if name else term_id  # a few obsolete ids lack a name
        told += f" is obsolete in CL {self.version}"
        replacement = self._replacement(term_id)
        if replacement is not None:
            return f"{told}; CL replaces it with {replacement} {self.name(replacement)!r}"
        if replaced_by:
            return (
                f"{told}; CL replaces it with {', '.join(replaced_by)}, outside the live Cell "
                "Ontology: relabel these cells with a live CL term"
            )
        live = [c for c in consider if c in self.graph]
        if live:
            listed = ", ".join(f"{c} {self.name(c)!r}" for c in live)
            return f"{told}; CL suggests considering {listed}: choose one and relabel"
        return f"{told} and has no replacement: relabel these cells with a live CL term"

    def _labels_of(self, term: str) -> list[tuple[bool, str]]:
        """A term's name and exact synonyms, each with whether it is the name."""
        return [(True, self.name(term))] + [(False, s) for s in self.synonyms(term)]

    @cached_property
    def _names_index(self) -> dict[str, dict[str, tuple[bool, str]]]:
        """Terms by normalised name: ``{key: {term: (True, name)}}``."""
        index: dict[str, dict] = {}
        for term in self.graph:
            name = self.name(term)
            index.setdefault(normalise(name), {})[term] = (True, name)
        return index

    @cached_property
    def _synonyms_index(self) -> dict[str, dict[str, tuple[bool, str]]]:
        """Terms by normalised exact synonym: ``{key: {term: (False, synonym)}}``."""
        index: dict[str, dict] = {}
        for term in self.graph:
            for synonym in self.synonyms(term):
                index.setdefault(normalise(synonym), {}).setdefault(term, (False, synonym))
        return index

    @cached_property
    def _other_synonyms_index(self) -> dict[str, dict[str, dict[str, tuple[bool, str]]]]:
        """Per other OBO scope, terms by normalised synonym."""
        indices: dict[str, dict] = {}
        for scope in _OTHER_SCOPES:
            index: dict[str, dict] = {}
            for term in self.graph:
                for synonym in self.synonyms(term, scope):
                    index.setdefault(normalise(synonym), {}).setdefault(term, (False, synonym))
            if index:
                indices[scope] = index
        return indices

    @cached_property
    def _rule_indices(self) -> list[dict[str, dict[str, tuple[bool, str]]]]:
        """Per rule of ``RULES``, terms by the key of their names and exact synonyms.

        A term's name wins over its synonyms where both give the same key.
        """
        indices: list[dict[str, dict]] = [{} for _ in RULES]
        for term in self.graph:
            for is_name, text in self._labels_of(term):
                for index, key in zip(indices, rule_keys(normalise(text)), strict=True):
                    known = index.setdefault(key, {})
                    if term not in known or (is_name and not known[term][0]):
                        known[term] = (is_name, text)
        return indices

    def _suggest(self, text: str, n: int = 3) -> list[str]:
        """Up to ``n`` CL names or synonyms close to ``text`` in spelling and in lineage.

        The label's lineages are the :data:`LINEAGES` above the terms that its words name by
        themselves ("T" in "CD8 T cellx", "cDC" in "cDC3") or that its markers imply
        (:data:`LINEAGE_MARKERS`: "CD8" is a T cell's). A suggestion must name a term in,
        above or below one of them: "cDC3" is never offered "DC2", CL's synonym of the
        plasmacytoid dendritic cell. A label whose words name nothing gets the closest names.
        """
        labels = self._all_labels
        close = difflib.get_close_matches(text.casefold(), labels, n=20, cutoff=0.8)
        lineages = self._lineages(text)
        if lineages:
            close = [c for c in close if any(self._in_lineage(t, lineages) for t in labels[c][1])]
        return [labels[c][0] for c in close[:n]]

    def _lineages(self, text: str) -> set[str]:
        """The lineages of a label: those of the terms its words and markers name."""
        words = normalise(text).split()
        n = len(words)
        phrases = {" ".join(words[i : i + k]) for k in (1, 2, 3) for i in range(n - k + 1)}
        # "cdc3" names nothing, "cdc" names the conventional dendritic cell
        phrases |= {w.rstrip("0123456789+-") for w in words}
        phrases |= {LINEAGE_MARKERS.get(w.rstrip("+-"), "") for w in words}
        phrases -= {"", " ".join(words)}  # the whole label matched nothing
        found = (self._lookup(phrase)[0] for phrase in phrases)
        terms = {m.term_id for m in found if m is not None and m.term_id != _ROOT}
        lineages = set()
        for term in terms:
            above = self._lineage_roots & self.ancestors(term, include_self=True)
            # the most specific: an NK cell's lineage is not all innate lymphoid cells
            lineages |= {r for r in above if not any(r in self.ancestors(o) for o in above)}
        # a tissue or a broad word ("kidney", "myeloid") gives way to a lineage
        return lineages or terms

    def _in_lineage(self, term: str, lineages: set[str]) -> bool:
        """Whether ``term`` is one of ``lineages``, below one, or above one (less specific)."""
        up = self.ancestors(term, include_self=True)
        return any(lin in up or term in self.ancestors(lin) for lin in lineages)

    @cached_property
    def _lineage_roots(self) -> frozenset[str]:
        """The terms of :data:`LINEAGES` in this ontology."""
        found = (self._names_index.get(normalise(name), {}) for name in LINEAGES)
        return frozenset(t for terms in found for t in terms)

    @cached_property
    def _all_labels(self) -> dict[str, tuple[str, frozenset[str]]]:
        """Names and synonyms by their casefolded form, with the terms they name, for hints."""
        labels: dict[str, tuple[str, set[str]]] = {}
        # names first: where a name and a synonym differ only in case, the name is shown
        for is_name in (True, False):
            for term in self.graph:
                for text in (t for n, t in self._labels_of(term) if n is is_name):
                    labels.setdefault(text.casefold(), (text, set()))[1].add(term)
        return {k: (text, frozenset(terms)) for k, (text, terms) in labels.items()}

    @cached_property
    def _obsolete_by_name(self) -> dict[str, str]:
        """Obsolete ids by normalised name, with and without CL's "obsolete " prefix, if unique."""
        owners: dict[str, set[str]] = {}
        for term, (name, _, _) in self._obsolete.items():
            key = normalise(name)
            for k in {key, key.removeprefix("obsolete ")} - {""}:
                owners.setdefault(k, set()).add(term)
        return {k: next(iter(t)) for k, t in owners.items() if len(t) == 1}
