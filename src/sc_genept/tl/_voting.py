"""Majority voting over an over-clustering of the query, as CellTypist's ``majority_voting``."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import scanpy as sc

#: Leiden resolution by number of cells, as CellTypist over-clusters (finer for more cells).
_RESOLUTIONS = ((5_000, 5), (20_000, 10), (40_000, 15), (100_000, 20), (200_000, 25))


def over_clustering(embedding: np.ndarray, obs_names, *, seed: int = 0) -> pd.Series:
    """Leiden clusters of the cells' 15 nearest neighbours in ``embedding``, many of them."""
    light = ad.AnnData(obs=pd.DataFrame(index=obs_names), obsm={"X": embedding})
    n_neighbors = min(15, max(light.n_obs - 1, 2))
    sc.pp.neighbors(light, use_rep="X", n_neighbors=n_neighbors, random_state=seed)
    resolution = next((r for n, r in _RESOLUTIONS if light.n_obs < n), 30)
    sc.tl.leiden(
        light,
        resolution=resolution,
        flavor="igraph",
        n_iterations=2,
        random_state=seed,
        key_added="over_clustering",
    )
    return light.obs["over_clustering"]


def majority_vote(calls: np.ndarray, clusters) -> np.ndarray:
    """Each cell's call replaced by the most frequent call of its cluster (ties: first seen)."""
    frame = pd.DataFrame({"call": np.asarray(calls, dtype=object), "cluster": np.asarray(clusters)})
    winner = frame.groupby("cluster", observed=True, sort=False)["call"].agg(
        lambda c: c.value_counts(sort=True).index[0]
    )
    return frame["cluster"].map(winner).to_numpy(dtype=object)
