"""The Cell Ontology (CL): load, look up, walk the hierarchy, map labels."""

from ._cell_ontology import ATTRIBUTION, ROOT, CellOntology
from ._names import ABBREVIATIONS, IMPLIED_QUALIFIERS, RULES, Match, normalise

__all__ = [
    "ABBREVIATIONS",
    "ATTRIBUTION",
    "IMPLIED_QUALIFIERS",
    "ROOT",
    "RULES",
    "CellOntology",
    "Match",
    "normalise",
]
