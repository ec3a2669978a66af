"""scvi-tools' module contract and training plan around :class:`GenePTNetwork`.

:class:`GenePTClassifierModule` is a :class:`~scvi.module.base.BaseModuleClass`:
``inference`` gives the logits of the cells' concatenated inputs, there is no generative
part, and ``loss`` is the (hierarchical) cross-entropy as a
:class:`~scvi.module.base.LossOutput`, whose ``reconstruction_loss`` is each cell's
loss. :class:`GenePTTrainingPlan` is scvi-tools' :class:`~scvi.train.TrainingPlan`
(AdamW) that also keeps the weights of the best validation epoch.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

import torch
from scvi import REGISTRY_KEYS
from scvi.module.base import BaseModuleClass, LossOutput, auto_move_data
from scvi.train import TrainingPlan

from sc_genept.model._network import GenePTNetwork

if TYPE_CHECKING:
    from collections.abc import Sequence

    import numpy as np


class GenePTClassifierModule(BaseModuleClass):
    """The network behind :class:`~sc_genept.model.GenePTClassifier`, for scvi-tools.

    Parameters
    ----------
    n_input
        Width of the concatenated cell representations.
    subtree
        ``(n_terms, n_terms)`` 0/1 matrix, ``subtree[c, j] = 1`` when term ``j`` is ``c`` or
        below it (see :class:`GenePTNetwork`).
    input_keys
        Batch keys of the inputs, concatenated in this order.
    **network_kwargs
        ``n_hidden``, ``n_layers``, ``dropout``, ``n_members`` of :class:`GenePTNetwork`.
    """

    def __init__(
        self, n_input: int, subtree: np.ndarray, *, input_keys: Sequence[str], **network_kwargs
    ):
        super().__init__()
        self.input_keys = list(input_keys)
        self.network = GenePTNetwork(n_input, subtree, **network_kwargs)

    def _get_inference_input(self, tensors: dict, **kwargs) -> dict:
        return {"x": torch.cat([tensors[k] for k in self.input_keys], dim=1)}

    @auto_move_data
    def inference(self, x: torch.Tensor) -> dict:
        """``{"logits": (n_members, n_cells, n_terms)}``."""
        return {"logits": self.network(x)}

    def _get_generative_input(self, tensors: dict, inference_outputs: dict, **kwargs) -> dict:
        return {}

    def generative(self) -> dict:
        """A classifier generates nothing."""
        return {}

    def loss(
        self,
        tensors: dict,
        inference_outputs: dict,
        generative_outputs: dict,
        *,
        hierarchical: bool = True,
        class_weights: torch.Tensor | None = None,
    ) -> LossOutput:
        """The (class-weighted) loss of :meth:`GenePTNetwork.loss`; each cell's in ``reconstruction_loss``."""
        labels = tensors[REGISTRY_KEYS.LABELS_KEY].view(-1).long()
        logits = inference_outputs["logits"]
        per_cell = self.network.cell_losses(logits, labels, hierarchical=hierarchical)
        loss = self.network.loss(
            logits, labels, hierarchical=hierarchical, class_weights=class_weights
        )
        return LossOutput(loss=loss, reconstruction_loss=per_cell, n_obs_minibatch=len(labels))


class GenePTTrainingPlan(TrainingPlan):
    """scvi-tools' training plan with AdamW; keeps the best validation epoch's weights.

    Parameters
    ----------
    module
        The module to train.
    lr, weight_decay
        AdamW's learning rate and weight decay.
    hierarchical
        Hierarchical (subtree) cross-entropy, else flat.
    class_weights
        Weight of each label code in the loss, or ``None``.
    """

    def __init__(
        self,
        module: GenePTClassifierModule,
        *,
        lr: float,
        weight_decay: float,
        hierarchical: bool,
        class_weights: torch.Tensor | None,
    ):
        # eps: torch's default (scvi-tools' plan defaults to 0.01)
        super().__init__(
            module,
            optimizer="AdamW",
            lr=lr,
            weight_decay=weight_decay,
            eps=1e-8,
            hierarchical=hierarchical,
            class_weights=class_weights,
        )
        self.best_loss, self.best_state = float("inf"), None

    def compute_and_log_metrics(self, loss_output, metrics, mode):
        """Nothing beyond ``train_loss``/``validation_loss``: a classifier has no ELBO.

        scvi-tools' plan would log an ELBO, its reconstruction and KL terms on every step;
        here they would repeat the loss and cost ~15 % of the training time.
        """

    def on_validation_epoch_end(self):
        loss = float(self.trainer.callback_metrics.get("validation_loss", float("inf")))
        if loss < self.best_loss:
            self.best_loss = loss
            self.best_state = copy.deepcopy(self.module.state_dict())

    def on_save_checkpoint(self, checkpoint):
        # the best weights so far survive a crash, not only the latest ones
        checkpoint["genept_best"] = {"loss": self.best_loss, "state": self.best_state}

    def on_load_checkpoint(self, checkpoint):
        best = checkpoint.get("genept_best") or {}
        self.best_loss, self.best_state = best.get("loss", float("inf")), best.get("state")
