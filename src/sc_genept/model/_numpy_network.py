"""A trained :class:`~sc_genept.model.GenePTNetwork`'s predictions, in NumPy.

:class:`~sc_genept.model.SavedClassifier` predicts with it, so that annotating with a
saved or pretrained model imports no torch: importing torch is about a second of a
one-line command's start, and the forward pass of a few small MLPs needs none of it.
Training, and prediction on a GPU, use ``GenePTNetwork``; ``tests/test_model.py`` holds
the two to the same probabilities and novelty scores for every shape of network.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from sc_genept.model._calls import novelty_scores

if TYPE_CHECKING:
    from collections.abc import Mapping

#: Standardised inputs are capped at ± this (as ``sc.pp.scale(max_value=10)`` and
#: CellTypist do): a gene nearly constant in the reference must not dominate a query.
INPUT_CLIP = 10.0
#: The ``eps`` of every hidden layer's LayerNorm.
LAYER_NORM_EPS = 1e-5


class NumpyNetwork:
    """The weights of a trained ``GenePTNetwork`` as arrays, and its predictions from them.

    Parameters
    ----------
    state
        The network's state dict as NumPy arrays, as ``_meta.check_meta`` passed it (a
        model folder's ``model.safetensors``).
    n_layers, n_members
        As the network was built (the folder's ``init_params``).
    """

    def __init__(self, state: Mapping[str, np.ndarray], *, n_layers: int, n_members: int):
        self.input_mean, self.input_std = state["input_mean"], state["input_std"]
        self.subtree_matrix = np.asarray(state["subtree"])
        self.temperature = float(state["temperature"])
        self.members = [_member(state, f"members.{m}", n_layers) for m in range(n_members)]
        n_terms, n_input = self.subtree_matrix.shape[0], len(self.input_mean)
        # absent from folders saved before the novelty check: then it is off, as in torch
        self.novelty_variance = state.get("novelty_variance", np.ones(n_input, np.float32))
        self.novelty_centroids = state.get(
            "novelty_centroids", np.full((n_terms, n_input), np.nan, np.float32)
        )

    @property
    def has_novelty(self) -> bool:
        """Whether the novelty space was fitted (models saved before it existed lack it)."""
        return bool((~np.isnan(self.novelty_centroids).any(axis=1)).any())

    def standardized(self, x: np.ndarray) -> np.ndarray:
        """Inputs in units of the training cells' spread, capped at ± :data:`INPUT_CLIP`."""
        return np.clip((x - self.input_mean) / self.input_std, -INPUT_CLIP, INPUT_CLIP)

    def score(
        self, x: np.ndarray, *, novelty: bool, threads: int = 1
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Calibrated term probabilities (members' mean, tempered) and novelty scores.

        As ``GenePTNetwork.score``, with BLAS on ``threads`` threads.
        """
        from threadpoolctl import threadpool_limits

        with threadpool_limits(threads, user_api="blas"):
            z = self.standardized(np.asarray(x, dtype=np.float32))
            probs = [_softmax(_logits(z, layers) / self.temperature) for layers in self.members]
            if not novelty:
                return np.mean(probs, axis=0), None
            return np.mean(probs, axis=0), novelty_scores(
                z, self.novelty_centroids, self.novelty_variance
            )


def _member(state, prefix: str, n_layers: int) -> list[tuple]:
    """One member's layers: (linear weight, bias) and LayerNorm (weight, bias), or None last.

    In the state dict each hidden layer is Linear, LayerNorm, ReLU, Dropout (4 modules,
    see ``_network._mlp``); then a Linear.
    """
    layers = []
    for i in range(n_layers + 1):
        linear, norm = f"{prefix}.{4 * i}", f"{prefix}.{4 * i + 1}"
        weights = (state[f"{linear}.weight"].T, state[f"{linear}.bias"])
        hidden = i < n_layers
        layers.append(
            (weights, (state[f"{norm}.weight"], state[f"{norm}.bias"]) if hidden else None)
        )
    return layers


def _logits(z: np.ndarray, layers: list) -> np.ndarray:
    for (weight, bias), norm in layers:
        z = z @ weight + bias
        if norm is not None:
            mean = z.mean(axis=1, keepdims=True)
            var = ((z - mean) ** 2).mean(axis=1, keepdims=True)
            z = np.maximum((z - mean) / np.sqrt(var + LAYER_NORM_EPS) * norm[0] + norm[1], 0)
    return z


def _softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)
