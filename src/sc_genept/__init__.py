"""sc_genept: GenePT cell embeddings and Cell Ontology annotation for scanpy.

Importing the package registers its tools with scanpy, so after ``import sc_genept``::

    sc.tl.genept_embed(adata)
"""

from importlib.metadata import version

from . import datasets, genes, metrics, model, ontology, tl
from ._scanpy import register

__all__ = ["datasets", "genes", "metrics", "model", "ontology", "tl"]
__version__ = version("sc-genept")

register()
