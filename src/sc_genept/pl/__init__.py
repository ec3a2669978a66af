"""Plots of a GenePT annotation, scanpy-style: confidence, confusion, errors, colours.

Each plot takes ``adata`` first, draws into ``ax`` (or a new figure), saves through
scanpy (``save=``, into ``sc.settings.figdir``) and returns its Axes (or Figure) when
``show=False``. A CL term has one colour across all of them (:func:`term_colors`), and
:func:`set_term_colors` gives ``sc.pl.umap`` the same.
"""

from ._colors import set_term_colors, term_colors
from ._confidence import confidence
from ._confusion import collapse_terms, confusion, confusion_table
from ._error_coverage import error_coverage
from ._ontology import ontology, ontology_graph

__all__ = [
    "collapse_terms",
    "confidence",
    "confusion",
    "confusion_table",
    "error_coverage",
    "ontology",
    "ontology_graph",
    "set_term_colors",
    "term_colors",
]
