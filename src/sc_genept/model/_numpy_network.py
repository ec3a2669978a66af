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
        # float32 whatever was stored, as torch's buffers hold them
        state = {k: v.astype(np.float32) if v.dtype.kind in "fiu" else v for k, v in state.items()}
        self.input_mean, self.input_std = state["input_mean"], state["input_std"]
        self.subtree_matrix = state["subtree"]
        self.temperature = float(state["temperature"])
        self.members = [
            [
                (_weights(state, linear), _weights(state, norm) if norm else None)
                for linear, norm in layer_names(f"members.{m}", n_layers)
            ]
            for m in range(n_members)
        ]
        # absent from folders saved before the novelty check: then it is off
        self.novelty_variance = state.get("novelty_variance")
        self.novelty_centroids = state.get("novelty_centroids")

    @property
    def has_novelty(self) -> bool:
        """Whether the novelty space was fitted (models saved before it existed lack it)."""
        centroids = self.novelty_centroids
        return centroids is not None and bool((~np.isnan(centroids).any(axis=1)).any())

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


def layer_names(prefix: str, n_layers: int) -> list[tuple[str, str | None]]:
    """A member's layers in its state dict: (Linear, LayerNorm) names, then (Linear, None).

    Each hidden layer is Linear, LayerNorm, ReLU, Dropout: 4 modules (``_network._mlp``).
    """
    hidden = [(f"{prefix}.{4 * i}", f"{prefix}.{4 * i + 1}") for i in range(n_layers)]
    return [*hidden, (f"{prefix}.{4 * n_layers}", None)]


def _weights(state, name: str) -> tuple[np.ndarray, np.ndarray]:
    """A module's weight, transposed for ``x @ w`` (a LayerNorm's is 1-D: unchanged), and bias."""
    return state[f"{name}.weight"].T, state[f"{name}.bias"]


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
