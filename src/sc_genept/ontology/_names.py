"""How a cell-type name that a person typed is compared with CL's names and synonyms.

One normalisation (:func:`normalise`) is applied to both sides: the label, and every CL
name and synonym. Then each rewrite rule of ``RULES`` is a further function of that
normalised text, again applied to both sides, and the rules add up: the key of the
third rule is ``rule3(rule2(rule1(normalise(text))))``. Each rule only merges names that
were apart before, so the terms a label matches can only grow from one rule to the next;
:meth:`CellOntology.match` stops at the first rule under which the label matches anything,
and takes the match only if it names a single term.
"""

from __future__ import annotations

import re
import unicodedata
from typing import NamedTuple

from ._vocabulary import EVERYDAY_WORDS, MARKER_GENES, T_CELL_STATES

__all__ = ["ABBREVIATIONS", "IMPLIED_QUALIFIERS", "RULES", "Match", "normalise", "rule_keys"]


class Match(NamedTuple):
    """The CL term a label resolves to, and how it was found.

    Attributes
    ----------
    term_id
        The live CL id, e.g. ``"CL:0001054"``.
    name
        Its CL name, e.g. ``"CD14-positive monocyte"``.
    how
        How the label was matched: ``"id"``, ``"name"``, ``"synonym"`` (exact synonym),
        ``"related synonym"``/``"broad synonym"``/``"narrow synonym"`` (other OBO synonym
        scopes, where the loaded file has them), ``"obsolete id"``/``"obsolete name"``
        (followed through ``replaced_by``), ``"everyday name"`` (a population name of
        ``EVERYDAY_NAMES``), the name of the rewrite rule in ``RULES`` under which it
        matched (earlier rules apply too), or ``"subcluster"`` (``"CD4 TEM_1"``: the
        population before ``_1`` matched).
    matched
        The CL id, name or synonym that the label matched, as CL writes it.
    """

    term_id: str
    name: str
    how: str
    matched: str


_GREEK = {"α": " alpha ", "β": " beta ", "γ": " gamma ", "δ": " delta ", "κ": " kappa "}
# a minus after a marker is a sign, not a word hyphen, when it ends the word or is followed
# by another marker: "CD25-", "CD4-CD8- T cell", "CD16-CD56bright"; "T-cell" and
# "CD4-positive" are word hyphens
_MINUS_SIGN = re.compile(r"(?<=[a-z0-9])-(?=$|[\s/,;:+\-)\]]|cd\d)")
# a prime after a letter or digit is part of a name ("Bm2' B cell" is not "Bm2 B cell");
# an apostrophe before a letter is not ("Deiter's cell")
_PRIME = re.compile(r"(?<=[a-z0-9])'(?=\s|$)")
_NOT_WORD = re.compile(r"[^a-z0-9+\u2212\u2032]+")
_LONE_SIGN = re.compile(r" ([+\u2212])(?= |$)")


def normalise(text: str) -> str:
    """The comparable form of a name: the same for case, spacing and punctuation variants.

    Unicode-normalised (NFKC) and case-folded; Greek letters spelt out ("γδ" → "gamma
    delta"); underscores, word hyphens ("T-cell", "CD4-positive"), slashes, commas and
    brackets become single spaces; a prime stays ("Bm2'"). Marker signs stay attached to their marker: ``"CD14+"``
    → ``"cd14+"``, ``"CD25-"`` and the first minus of ``"CD4-CD8-"`` → ``"cd25-"``,
    ``"cd4- cd8-"``.
    """
    text = unicodedata.normalize("NFKC", str(text)).casefold()
    text = text.replace("\u2212", "-").replace("\u2013", "-")  # minus sign, en dash
    for letter, spelt in _GREEK.items():
        text = text.replace(letter, spelt)
    text = _PRIME.sub("\u2032", text.replace("\u2019", "'"))
    text = _MINUS_SIGN.sub("\u2212 ", text).replace("+", "+ ")
    text = " ".join(_NOT_WORD.sub(" ", text).split())
    return _LONE_SIGN.sub(r"\1", text).replace("\u2212", "-").replace("\u2032", "'")


# ---- rewrite rules: each a function of the normalised text, applied to both sides ----------

_SIGN_WORD = re.compile(r"(?<=[a-z0-9]) (positive|negative)\b")
_MARKER_LEVEL = re.compile(
    r"\b([a-z]+\d[a-z0-9]*) (low|lo|high|hi|bright|dim|int|intermediate|alpha|beta)\b"
)
# "CD4 T cell" means CD4-positive (after the marker-form rule, "CD8 alpha" or "CD56 bright"
# are one word and not bare markers)
_BARE_MARKER = re.compile(r"\b(cd\d+[a-z]?)(?= [a-z])")
_MARKER_GENE = re.compile(r"\b(" + "|".join(MARKER_GENES) + r")\b")
#: Abbreviations expanded by the ``"abbreviation"`` rule. Each is one that CL itself uses in
#: exact synonyms of the terms it abbreviates ("NK cell" for natural killer cell, "type 2 DC"
#: for plasmacytoid dendritic cell, "ILC2", "LT-HSC", "mature NKT cell", "CD8+ Treg"): the
#: tests check that. Seurat's and Azimuth's own shorthand is in ``EVERYDAY_WORDS``.
ABBREVIATIONS = {
    "dc": "dendritic cell",
    "nk": "natural killer",
    "nkt": "natural killer t",
    "ilc": "innate lymphoid cell",
    "hsc": "hematopoietic stem cell",
    "treg": "regulatory t",
}
_ABBREVIATION = re.compile(r"\b(" + "|".join(ABBREVIATIONS) + r")\b(?![+-])")
#: Qualifiers that CL adds where everyday names leave them out: CD4 and CD8 T cells are
#: alpha-beta T cells (CL has no plain "CD4-positive T cell"), and CL's naive CD4/CD8 T cells
#: are "naive thymus-derived".
IMPLIED_QUALIFIERS = ("alpha beta", "thymus derived")
_IMPLIED = re.compile(r"\b(?:" + "|".join(IMPLIED_QUALIFIERS) + r")\b ?")
_EVERYDAY_WORD = re.compile(r"\b(" + "|".join(EVERYDAY_WORDS) + r")\b(?![+-])")
_CORECEPTORS = ("cd4+", "cd8+")


def _marker_form(key: str) -> str:
    """``"cd14 positive"`` (from "CD14-positive") → ``"cd14+"``, ``"negative"`` → ``-``.

    A marker written as its gene is its CD name (``"fcgr3a+"`` → ``"cd16+"``,
    :data:`~sc_genept.ontology.MARKER_GENES`). A level or chain stays glued to its marker
    (``"cd27 low"`` → ``"cd27low"``, ``"cd56 bright"`` → ``"cd56bright"``, ``"cd8 alpha"``
    → ``"cd8alpha"``), so that no later rule (word order) can move it to another marker.
    """
    key = _MARKER_GENE.sub(lambda m: MARKER_GENES[m.group(1)], key)
    key = _SIGN_WORD.sub(lambda m: "+" if m.group(1) == "positive" else "-", key)
    return _MARKER_LEVEL.sub(r"\1\2", key)


def _bare_marker(key: str) -> str:
    """``"cd4 t cell"`` → ``"cd4+ t cell"``: a CD marker named before a cell word."""
    return _BARE_MARKER.sub(r"\1+", key)


def _singular(word: str) -> str:
    if len(word) >= 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1] if word[-2].isalpha() else word
    return word


def _plural(key: str) -> str:
    """Every word in the singular: ``"b cells"`` → ``"b cell"``, ``"tregs"`` → ``"treg"``."""
    return " ".join(_singular(word) for word in key.split())


def _abbreviation(key: str) -> str:
    """``"dc"`` → ``"dendritic cell"``, ``"nk"`` → ``"natural killer"`` (:data:`ABBREVIATIONS`)."""
    return _ABBREVIATION.sub(lambda m: ABBREVIATIONS[m.group(1)], key)


def _everyday_word(key: str) -> str:
    """``"cd8+ tem"`` → ``"cd8+ effector memory"``, ``"mono"`` → ``"monocyte"``.

    Seurat's and Azimuth's shorthand, :data:`~sc_genept.ontology.EVERYDAY_WORDS`.
    """
    return " ".join(_EVERYDAY_WORD.sub(lambda m: EVERYDAY_WORDS[m.group(1)], key).split())


def _implied_t_cell(key: str) -> str:
    """``"cd4+ naive"`` → ``"cd4+ naive t"``: CD4 or CD8 with T-cell states only is a T cell.

    Azimuth writes "CD4 Naive", "CD8 TEM", "CD4 Proliferating"
    (:data:`~sc_genept.ontology.T_CELL_STATES`); a marker alone ("CD4") stays no cell type.
    """
    words = key.split()
    rest = [w for w in words if w not in _CORECEPTORS]
    if rest and len(rest) < len(words) and all(w in T_CELL_STATES for w in rest):
        return f"{key} t"
    return key


def _cell_suffix(key: str) -> str:
    """Without a trailing word "cell": ``"dendritic"`` and ``"dendritic cell"`` meet."""
    return key.removesuffix(" cell")


def _implied_qualifier(key: str) -> str:
    """Without :data:`IMPLIED_QUALIFIERS`: ``"cd4+ alpha beta t cell"`` → ``"cd4+ t cell"``."""
    return " ".join(_IMPLIED.sub("", key).split())


def _word_order(key: str) -> str:
    """The words sorted: ``"memory cd4+ t"`` and ``"cd4+ memory t"`` meet."""
    return " ".join(sorted(key.split()))


#: The rewrite rules, in the order they are tried, by the name :class:`Match` reports.
RULES = {
    "marker form": _marker_form,
    "bare marker": _bare_marker,
    "plural": _plural,
    "abbreviation": _abbreviation,
    "everyday word": _everyday_word,
    "cell suffix": _cell_suffix,
    "implied qualifier": _implied_qualifier,
    "implied T cell": _implied_t_cell,
    "word order": _word_order,
}


def rule_keys(normalised: str) -> list[str]:
    """The key of ``normalised`` under each rule of ``RULES``, cumulatively, in order."""
    keys = []
    for rule in RULES.values():
        normalised = rule(normalised)
        keys.append(normalised)
    return keys
