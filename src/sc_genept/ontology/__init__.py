"""The Cell Ontology (CL): load, look up, walk the hierarchy, map labels."""

from ._cell_ontology import ATTRIBUTION, ROOT, CellOntology

__all__ = ["ATTRIBUTION", "ROOT", "CellOntology"]
