"""The network of :class:`~sc_genept.model.GenePTClassifier`, in plain PyTorch.

Everything a trained model needs to answer (the standardisation, the members, the
temperature, the novelty space) lives here; ``_module`` wraps it in scvi-tools' module
contract for training. A saved model predicts with the same weights in NumPy
(``_numpy_network``), without torch.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from sc_genept.model._calls import novelty_scores
from sc_genept.model._numpy_network import INPUT_CLIP, LAYER_NORM_EPS
from sc_genept.model._threads import torch_threads


class GenePTNetwork(nn.Module):
    """Standardise the inputs, then MLPs that score every term of the label set.

    Parameters
    ----------
    n_input
        Width of the concatenated cell representations.
    subtree
        ``(n_terms, n_terms)`` 0/1 matrix, ``subtree[c, j] = 1`` when term ``j`` is ``c`` or
        below it: turns term probabilities into subtree masses.
    n_hidden, n_layers, dropout
        Hidden width, number of hidden layers (0: a linear model) and dropout.
    n_members
        Independently initialised MLPs trained side by side; predictions average their
        probabilities (a deep ensemble).
    """

    def __init__(
        self,
        n_input: int,
        subtree: np.ndarray,
        *,
        n_hidden: int,
        n_layers: int,
        dropout: float,
        n_members: int = 1,
    ):
        super().__init__()
        n_terms = subtree.shape[0]
        # learned from the training cells by GenePTClassifier.train and saved with the weights:
        # raw GenePT-w embeddings are nearly collinear and train poorly without it
        self.register_buffer("input_mean", torch.zeros(n_input))
        self.register_buffer("input_std", torch.ones(n_input))
        self.register_buffer("subtree", torch.as_tensor(subtree, dtype=torch.float32))
        # logits are divided by it at prediction; fitted on held-out cells after training
        self.register_buffer("temperature", torch.ones(()))
        # set by GenePTClassifier.train: in training, this share of the gene (expression)
        # inputs is set to 0, the reference mean, without rescaling: as a missing gene is
        self.gene_dropout = 0.0
        self.register_buffer("is_gene", torch.zeros(n_input, dtype=torch.bool))
        self.members = nn.ModuleList(
            _mlp(n_input, n_terms, n_hidden, n_layers, dropout) for _ in range(n_members)
        )
        # the novelty space of sc_genept.model._calls, fitted after training (NaN: not yet)
        self.register_buffer("novelty_variance", torch.ones(n_input))
        self.register_buffer("novelty_centroids", torch.full((n_terms, n_input), float("nan")))

    def reset_parameters(self, seed: int) -> None:
        """Re-draw the weights from a seeded generator (reproducible training)."""
        with torch.random.fork_rng(devices=[]):  # weights are on the CPU here; leave CUDA alone
            torch.manual_seed(seed)
            for member in self.members:
                for layer in member:
                    if hasattr(layer, "reset_parameters"):
                        layer.reset_parameters()

    def set_standardization(self, batches) -> None:
        """Learn the per-feature mean and standard deviation from batches of training inputs."""
        n, total, squares = 0, 0.0, 0.0
        for x in batches:
            x = np.asarray(x, dtype=np.float64)
            n, total, squares = n + len(x), total + x.sum(axis=0), squares + (x**2).sum(axis=0)
        mean = total / max(n, 1)
        std = np.sqrt(np.maximum(squares / max(n, 1) - mean**2, 0))
        self.input_mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.input_std.copy_(torch.as_tensor(np.maximum(std, 1e-6), dtype=torch.float32))

    #: Standardised inputs are capped at ± this (see ``_numpy_network.INPUT_CLIP``).
    input_clip = INPUT_CLIP

    def standardized(self, x: torch.Tensor) -> torch.Tensor:
        """Inputs in units of the training cells' spread, capped at ± :attr:`input_clip`."""
        return ((x - self.input_mean) / self.input_std).clamp(-self.input_clip, self.input_clip)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits over the label set, one row per member: ``(n_members, n_cells, n_terms)``."""
        z = self.standardized(x.to(self.input_mean.device))
        if self.training and self.gene_dropout:
            z = z.masked_fill(self.is_gene & (torch.rand_like(z) < self.gene_dropout), 0.0)
        return torch.stack([member(z) for member in self.members])

    def loss(
        self,
        logits: torch.Tensor,
        labels: torch.Tensor,
        *,
        hierarchical: bool = True,
        class_weights: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Hierarchical cross-entropy ``-log Σ_{j under y} p_j`` (flat: ``-log p_y``).

        Each member's own loss, averaged over members: they learn independently.
        """
        per_cell = self.cell_losses(logits, labels, hierarchical=hierarchical)
        return _weighted_mean(per_cell, labels, class_weights)

    def cell_losses(
        self, logits: torch.Tensor, labels: torch.Tensor, *, hierarchical: bool = True
    ) -> torch.Tensor:
        """Each cell's loss (see :meth:`loss`), averaged over members, unweighted."""
        log_p = torch.log_softmax(logits, dim=-1)
        per_cell = self._nll(log_p, labels, hierarchical=hierarchical)
        return per_cell.reshape(-1, len(labels)).mean(0)

    def log_probabilities(self, logits: torch.Tensor, temperature=1.0) -> torch.Tensor:
        """Log of the members' mean probabilities of the tempered logits, cells × terms."""
        log_p = torch.log_softmax(logits / temperature, dim=-1)
        return torch.logsumexp(log_p, dim=0) - np.log(log_p.shape[0])

    @torch.no_grad()
    def probabilities(self, x: torch.Tensor) -> torch.Tensor:
        """Calibrated probability of each term (members' mean, tempered)."""
        return self.log_probabilities(self(x), self.temperature).exp()

    def score(
        self, x: np.ndarray, *, novelty: bool, threads: int = 1
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """:meth:`probabilities` and (with ``novelty``) :meth:`novelty` of ``x`` as arrays.

        On ``threads`` torch CPU threads; ``NumpyNetwork.score`` answers the same.
        """
        self.eval()
        with torch.inference_mode(), torch_threads(threads):
            x = torch.as_tensor(x)
            probs = self.probabilities(x).cpu().numpy()
            return probs, self.novelty(x).cpu().numpy() if novelty else None

    @property
    def subtree_matrix(self) -> np.ndarray:
        """The ``subtree`` matrix (term → the terms at or below it) as an array."""
        return self.subtree.cpu().numpy()

    @property
    def has_novelty(self) -> bool:
        """Whether the novelty space was fitted (models saved before it existed lack it)."""
        return bool((~torch.isnan(self.novelty_centroids).any(dim=1)).any())

    def set_novelty(self, space: dict[str, np.ndarray]) -> None:
        """Keep a fitted novelty space (``_calls.NoveltyFit.fit``)."""
        self.novelty_centroids.copy_(torch.as_tensor(space["centroids"]))
        self.novelty_variance.copy_(torch.as_tensor(space["variance"]))

    @torch.no_grad()
    def novelty(self, x: torch.Tensor) -> torch.Tensor:
        """Each cell's distance to the nearest reference type (see ``_calls.novelty_scores``)."""
        x = x.to(self.input_mean.device)
        return novelty_scores(self.standardized(x), self.novelty_centroids, self.novelty_variance)

    def _nll(self, log_p: torch.Tensor, labels: torch.Tensor, *, hierarchical: bool):
        """Per-cell negative log-likelihood of the label (of its subtree when hierarchical)."""
        labels = labels.to(log_p.device)
        if hierarchical:
            under_label = self.subtree[labels] > 0
            return -torch.logsumexp(log_p.masked_fill(~under_label, float("-inf")), dim=-1)
        return -log_p.gather(-1, labels.expand(*log_p.shape[:-1])[..., None])[..., 0]

    def calibrate(self, x: torch.Tensor, labels: torch.Tensor, *, hierarchical: bool) -> float:
        """Fit the temperature on held-out cells (minimum negative log-likelihood).

        Temperature scaling :cite:p:`Guo2017` changes confidences, never the ranking of
        terms, so predictions stay the same. Returns the temperature.
        """
        self.eval()
        with torch.no_grad():
            logits = self(x)
        labels = labels.to(logits.device)
        log_t = torch.zeros((), device=logits.device, requires_grad=True)
        optimizer = torch.optim.LBFGS([log_t], lr=0.1, max_iter=200)

        def nll():
            optimizer.zero_grad()
            log_p = self.log_probabilities(logits, log_t.exp())
            loss = self._nll(log_p, labels, hierarchical=hierarchical).mean()
            loss.backward()
            return loss

        optimizer.step(nll)
        # bounded: a handful of held-out cells must not make every prediction certain
        self.temperature.fill_(float(log_t.detach().exp().clamp(0.05, 20.0)))
        return float(self.temperature)


def _mlp(n_input: int, n_terms: int, n_hidden: int, n_layers: int, dropout: float):
    # the state dict's names follow this layout: _numpy_network.layer_names
    layers, width = [], n_input
    for _ in range(n_layers):
        layers += [
            nn.Linear(width, n_hidden),
            nn.LayerNorm(n_hidden, eps=LAYER_NORM_EPS),
            nn.ReLU(),
            nn.Dropout(dropout),
        ]
        width = n_hidden
    layers.append(nn.Linear(width, n_terms))
    return nn.Sequential(*layers)


def _weighted_mean(per_cell: torch.Tensor, labels: torch.Tensor, class_weights) -> torch.Tensor:
    if class_weights is None:
        return per_cell.mean()
    weights = class_weights.to(per_cell.device)[labels]
    return (per_cell * weights).sum() / weights.sum()
