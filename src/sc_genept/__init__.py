"""sc_genept: GenePT cell embeddings and Cell Ontology annotation for scanpy.

Importing the package imports scanpy and adds its tools to ``scanpy.tl`` (see
``_scanpy.register``), so after ``import sc_genept``::

    sc.tl.genept_embed(adata)

The heavier submodules load on first use: ``sc_genept.model`` (torch, Lightning,
scvi-tools), ``sc_genept.ontology`` (networkx), the gene-table embedders.
"""

from importlib import import_module
from importlib.metadata import version

from . import _fork  # noqa: F401 (registers the fork handler)
from ._scanpy import register

__all__ = ["datasets", "genes", "metrics", "model", "ontology", "pl", "tl"]
__version__ = version("sc-genept")

register()


def __getattr__(name: str):
    # the other submodules load on first use: the model needs torch, Lightning and
    # scvi-tools, the ontology networkx
    if name in __all__:
        return import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted({*globals(), *__all__})
