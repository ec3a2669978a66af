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

from . import _fork  # noqa: F401 (registers the fork handler)
from ._scanpy import register_when_scanpy_loads

__all__ = ["datasets", "genes", "metrics", "model", "ontology", "pl", "tl"]
__version__ = version("sc-genept")

register_when_scanpy_loads()


def __getattr__(name: str):
    # every submodule loads on first use: they need anndata, pandas or scanpy, and the
    # model torch, Lightning and scvi-tools, the ontology networkx
    if name in __all__:
        return import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted({*globals(), *__all__})
