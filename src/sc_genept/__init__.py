"""sc_genept: GenePT cell embeddings and Cell Ontology annotation for scanpy.

Importing the package registers its tools with scanpy, so after ``import sc_genept``::

    sc.tl.genept_embed(adata)
"""

from importlib import import_module
from importlib.metadata import version

from . import datasets, genes, metrics, tl
from ._scanpy import register

__all__ = ["datasets", "genes", "metrics", "model", "ontology", "pl", "tl"]
__version__ = version("sc-genept")

register()


def __getattr__(name: str):
    # the model (torch, Lightning, scvi-tools), the ontology (networkx) and the plots load
    # on first use
    if name in ("model", "ontology", "pl"):
        return import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
