"""Expose the tools as ``sc.tl.genept_*`` so they read like the rest of a scanpy analysis."""

from __future__ import annotations

import scanpy as sc

from . import tl


def register() -> None:
    """Attach every public tool of :mod:`sc_genept.tl` to :mod:`scanpy.tl` (idempotent)."""
    for name in tl.__all__:
        setattr(sc.tl, name, getattr(tl, name))
