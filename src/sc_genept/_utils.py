"""Small helpers shared across the package."""

from __future__ import annotations


def h5ad_safe(value):
    """Drop ``None`` entries from nested dicts, so ``adata.write_h5ad`` can store them in ``uns``."""
    if isinstance(value, dict):
        return {k: h5ad_safe(v) for k, v in value.items() if v is not None}
    return value
