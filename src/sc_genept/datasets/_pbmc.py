"""scanpy's bundled ``pbmc68k_reduced``."""

from __future__ import annotations

from typing import TYPE_CHECKING

import scanpy as sc

if TYPE_CHECKING:
    from anndata import AnnData


def pbmc68k_reduced() -> AnnData:
    """700 PBMCs × 765 genes from 10x Genomics' 68k PBMC data, as bundled with scanpy.

    ``.X`` is scaled (has negative values), ``.raw.X`` is log-normalised over the same 765
    genes, and ``obs["bulk_labels"]`` holds 10 coarse cell-type labels (noisy: they come
    from correlation with sorted bulk populations). No download needed.
    """
    return sc.datasets.pbmc68k_reduced()
