"""The Cell Ontology (CL): load, look up, walk the hierarchy, map labels."""

from ._cell_ontology import ATTRIBUTION, ROOT, CellOntology
from ._names import ABBREVIATIONS, IMPLIED_QUALIFIERS, RULES, Match, normalise
from ._vocabulary import (
    EVERYDAY_NAMES,
    EVERYDAY_WORDS,
    LINEAGE_MARKERS,
    LINEAGES,
    MARKER_GENES,
    T_CELL_STATES,
)

__all__ = [
    "ABBREVIATIONS",
    "ATTRIBUTION",
    "EVERYDAY_NAMES",
    "EVERYDAY_WORDS",
    "IMPLIED_QUALIFIERS",
    "LINEAGES",
    "LINEAGE_MARKERS",
    "MARKER_GENES",
    "ROOT",
    "RULES",
    "T_CELL_STATES",
    "CellOntology",
    "Match",
    "normalise",
]
