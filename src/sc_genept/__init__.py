"""sc_genept: GenePT cell embeddings and Cell Ontology annotation for scanpy.

Importing the package registers its tools with scanpy, so after ``import sc_genept``::

    sc.tl.genept_embed(adata)

Fast import (what ``sc-genept --help`` needs): this file imports only the standard
library. The submodules load on first use (``sc_genept.genes``, ``sc_genept.tl``, …), and
the tools join ``scanpy.tl`` as soon as scanpy is imported too, before or after this
package (see ``_scanpy.register_when_scanpy_loads``): with scanpy already imported that
costs what ``sc_genept.tl`` costs (~0.05 s), without it nothing until scanpy is imported.
"""

from importlib import import_module
from importlib.metadata import version

from ._scanpy import register_when_scanpy_loads

__all__ = ["datasets", "genes", "metrics", "model", "ontology", "pl", "tl"]
__version__ = version("sc-genept")

#: Submodules that need anndata, pandas or scanpy: imported on first attribute access.
_SUBMODULES = ("datasets", "genes", "metrics", "tl")

register_when_scanpy_loads()


def __getattr__(name: str):
    if name in _SUBMODULES:
        return import_module(f".{name}", __name__)
    # the model (torch, Lightning, scvi-tools), the ontology (networkx) and the plots load
    # on first use
    if name in ("model", "ontology", "pl"):
        return import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted({*globals(), *__all__})
