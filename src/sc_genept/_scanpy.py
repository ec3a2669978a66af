"""Expose the tools as ``sc.tl.genept_*`` so they read like the rest of a scanpy analysis.

``import sc_genept`` imports scanpy and :mod:`sc_genept.tl` and sets the tools as
attributes of :mod:`scanpy.tl`, as plain assignments: whichever of the two packages is
imported first, ``sc.tl.genept_embed`` exists once ``sc_genept`` is imported. No import
hook and no ``__getattr__`` is installed on scanpy. The price is scanpy's import time on
``import sc_genept`` (and on ``sc-genept --help``): a tool that registers with scanpy
without importing it would need a hook into scanpy's import.
"""

from __future__ import annotations


def register() -> None:
    """Attach every public tool of :mod:`sc_genept.tl` to :mod:`scanpy.tl` (idempotent)."""
    import scanpy as sc

    from . import tl

    for name in tl.__all__:
        setattr(sc.tl, name, getattr(tl, name))
