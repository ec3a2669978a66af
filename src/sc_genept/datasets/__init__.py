"""Real labelled single-cell data, bundled or shipped with scanpy."""

from ._pbmc import pbmc68k_cell_types, pbmc68k_reduced

__all__ = ["pbmc68k_cell_types", "pbmc68k_reduced"]
