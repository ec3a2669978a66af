"""The steps of GenePTClassifier.train: options for Lightning, the fit, the calibration after it.

How Lightning's output, checkpoints and torch's threads are handled is in ``_training``;
what is fitted on held-out cells to make calls honest is in ``_calls``.
"""

from __future__ import annotations

import difflib
import inspect
from typing import TYPE_CHECKING

import numpy as np
import torch
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import EarlyStopping
from scanpy import logging as logg
from scvi import REGISTRY_KEYS
from scvi.train import Trainer as ScviTrainer
from scvi.train import TrainRunner

from sc_genept._checks import check_fraction, positive_number
from sc_genept._utils import warn_caller
from sc_genept.model._calls import (
    _MAX_CALIBRATION_CELLS,
    NoveltyFit,
    error_coverage,
    novelty_reference,
)
from sc_genept.model._inputs import _input_keys
from sc_genept.model._module import GenePTTrainingPlan
from sc_genept.model._training import (
    checkpoint_callbacks,
    lightning_output,
    output_options,
)

if TYPE_CHECKING:
    from sc_genept.model._data import CellData
    from sc_genept.model._model import GenePTClassifier


def prepare_module(
    model: GenePTClassifier, datamodule: CellData, seed: int, gene_dropout: float
) -> None:
    """Seed, draw the weights of an untrained model, learn the input standardisation."""
    torch.manual_seed(seed)  # dropout
    model.network.gene_dropout = gene_dropout
    if not model.is_trained_:
        model.network.reset_parameters(seed)
    model.network.set_standardization(datamodule.standardization_batches())


def check_validation(datamodule: CellData, early_stopping: bool) -> tuple[bool, bool]:
    """Whether ``datamodule`` has validation cells, and early stopping: off without them."""
    validates = _has_batches(datamodule.val_dataloader())
    if not validates and early_stopping:
        warn_caller(
            "No validation cells (train_size=1, or a datamodule without validation): "
            "early stopping is off."
        )
        early_stopping = False
    return validates, early_stopping


#: Training cells a label needs for the model to learn it at all.
_FEW_CELLS = 3


def warn_rare_labels(model: GenePTClassifier, counts: np.ndarray) -> None:
    """Warn, by CL name, about labels with fewer than ``_FEW_CELLS`` training cells.

    Terms with none are the labels' ancestors, scored by design.
    """
    rare = [(t, int(n)) for t, n in zip(model.terms, counts, strict=True) if 0 < n < _FEW_CELLS]
    if rare:
        listed = ", ".join(f"{model.ontology.name(t)} ({t}): {n}" for t, n in rare)
        warn_caller(
            f"{len(rare)} cell types have fewer than {_FEW_CELLS} training cells ({listed}): "
            "the model can hardly learn them, so expect their calls to be unreliable. Add "
            "cells of these types, or relabel them with a coarser term."
        )


def training_plan(
    model: GenePTClassifier,
    datamodule: CellData,
    lr: float,
    weight_decay: float,
    balance_classes: bool,
) -> GenePTTrainingPlan:
    """The training plan of ``model.module``: AdamW, with its loss."""
    counts = datamodule.label_counts()
    warn_rare_labels(model, counts)
    return GenePTTrainingPlan(
        model.module,
        lr=lr,
        weight_decay=weight_decay,
        hierarchical=model.loss_kind == "hierarchical",
        class_weights=_class_weights(counts) if balance_classes else None,
    )


def run_trainer(
    model: GenePTClassifier, plan, datamodule, checkpoint_dir, verbose: bool, trainer_kwargs: dict
):
    """Run Lightning, then keep the best weights the validation found."""
    checkpoints = checkpoint_callbacks(trainer_kwargs, checkpoint_dir)
    output_options(trainer_kwargs, verbose)
    with lightning_output(verbose):
        # the device banner is logged when the Trainer is made
        runner = TrainRunner(model, training_plan=plan, data_splitter=datamodule, **trainer_kwargs)
        # added once scvi-tools' Trainer is built: asked for checkpoints, it would put its
        # own SaveCheckpoint in place of Lightning's, which saves scvi-format model folders
        runner.trainer.callbacks.extend(checkpoints)
        result = runner()
    if plan.best_state is not None:
        model.module.load_state_dict(plan.best_state)
    return result


def calibrate(model: GenePTClassifier, datamodule: CellData, seed: int) -> None:
    """Fit what makes calls honest on cells the weights were not fitted to (``_calls``).

    The novelty space from the training cells; then, on the held-out cells (the
    calibration cells and the validation cells, which only chose the epoch), the
    temperature, the error and coverage of the calls at each level, and the novelty
    scores. Both sets together: a small reference's calibration cells alone (56 of
    700) make the error at each level too uncertain to bound. Without held-out cells
    confidences stay uncalibrated and ``max_error`` and the novelty check are
    unavailable.
    """
    network = model.network
    network.temperature.fill_(1.0)
    network.eval()
    model.calibration_ = None
    fit = NoveltyFit(len(model.terms))
    for x, codes in _batches(model, datamodule.train_dataloader()):
        fit.add(network.standardized(x).cpu().numpy(), codes.cpu().numpy())
    space = fit.fit()
    if space is not None:
        network.set_novelty(space)
    held_out = _held_out(model, datamodule, seed)
    if held_out is None:
        return
    inputs, codes = held_out
    hierarchical = model.loss_kind == "hierarchical"
    temperature = network.calibrate(inputs, codes, hierarchical=hierarchical)
    probs = network.probabilities(inputs).cpu().numpy().astype(np.float64)
    labelled = [t for t, n in zip(model.terms, datamodule.label_counts(), strict=True) if n]
    model.calibration_ = {"labelled_terms": labelled}
    model.calibration_["error_coverage"] = error_coverage(
        probs, codes.cpu().numpy(), network.subtree.cpu().numpy(), model._labelled()
    )
    model.calibration_["novelty"] = (
        novelty_reference(network.novelty(inputs).cpu().numpy()) if network.has_novelty else None
    )
    logg.info(
        f"confidences calibrated on {len(codes)} held-out cells: temperature {temperature:.2f}"
    )
    network.eval()


def _held_out(model: GenePTClassifier, datamodule: CellData, seed: int):
    """Inputs and label codes of the calibration and validation cells (at most 20,000)."""
    parts = list(_batches(model, datamodule.val_dataloader()))
    calibration = datamodule.calibration_set()
    if calibration is not None and len(calibration[1]):
        parts.append(tuple(torch.as_tensor(a) for a in calibration))
    if not parts:
        return None
    inputs, codes = (torch.cat([p[i].cpu() for p in parts]) for i in (0, 1))
    if len(codes) > _MAX_CALIBRATION_CELLS:  # bounded time; a random subset is as good
        rows = np.random.default_rng(seed).choice(len(codes), _MAX_CALIBRATION_CELLS, False)
        rows = torch.as_tensor(np.sort(rows))
        inputs, codes = inputs[rows], codes[rows]
    return inputs, codes.long()


def _batches(model: GenePTClassifier, loader):
    """``(inputs, label codes)`` of each batch of a data loader, on the module's device."""
    keys = _input_keys(model.embedding_keys)
    device = model.network.input_mean.device
    for batch in loader:
        x = torch.cat([batch[k] for k in keys], dim=1).to(device)
        yield x, batch[REGISTRY_KEYS.LABELS_KEY].view(-1).long().to(device)


def _train_arguments() -> set[str]:
    """What ``train(**trainer_kwargs)`` may pass on: scvi-tools' and Lightning's Trainer."""
    names = {"ckpt_path", "callbacks", "enable_checkpointing"}
    for function in (ScviTrainer.__init__, Trainer.__init__):
        names |= {
            p.name
            for p in inspect.signature(function).parameters.values()
            if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL) and p.name != "self"
        }
    return names


#: What ``train(plan_kwargs=...)`` sets, and the default of each: the training plan's
#: optimiser and loss, grouped as scvi-tools' models group them.
PLAN_DEFAULTS = {"lr": 1e-3, "weight_decay": 1e-4, "balance_classes": True, "gene_dropout": 0.0}


def plan_options(plan_kwargs: dict | None) -> dict:
    """``PLAN_DEFAULTS`` updated with ``plan_kwargs``, each value checked."""
    if plan_kwargs is None:
        plan_kwargs = {}
    if not isinstance(plan_kwargs, dict):
        raise TypeError(
            f"plan_kwargs must be a dict such as {{'lr': 1e-3}}, got {type(plan_kwargs).__name__}."
        )
    unknown = sorted(set(plan_kwargs) - set(PLAN_DEFAULTS))
    if unknown:
        raise TypeError(
            f"plan_kwargs takes {sorted(PLAN_DEFAULTS)}, not {unknown}. Lightning's Trainer "
            "arguments go to train() itself."
        )
    options = {**PLAN_DEFAULTS, **plan_kwargs}
    positive_number("plan_kwargs['lr']", options["lr"])
    positive_number("plan_kwargs['weight_decay']", options["weight_decay"], allow_zero=True)
    check_fraction("plan_kwargs['gene_dropout']", options["gene_dropout"], "[0, 1)")
    if not isinstance(options["balance_classes"], bool | np.bool_):
        raise TypeError(
            f"plan_kwargs['balance_classes'] must be True or False, got "
            f"{options['balance_classes']!r}."
        )
    return options


def _check_trainer_kwargs(trainer_kwargs: dict) -> None:
    """Refuse a misspelt training argument by name, before anything trains."""
    from sc_genept.model._model import GenePTClassifier

    known = _train_arguments()
    own = [p for p in inspect.signature(GenePTClassifier.train).parameters if p != "self"]
    for name in trainer_kwargs:
        if name in PLAN_DEFAULTS:
            raise TypeError(
                f"{name} is an option of the training plan: pass plan_kwargs={{{name!r}: ...}} "
                "(as scvi-tools' models take it)."
            )
        if name not in known:
            close = difflib.get_close_matches(name, [*own, *known], n=1)
            hint = f"; did you mean {close[0]!r}?" if close else "."
            raise TypeError(
                f"{name} is not an argument of GenePTClassifier.train or of Lightning's "
                f"Trainer{hint} See help(GenePTClassifier.train) for what it takes."
            )


def _stopping_options(
    trainer_kwargs: dict, early_stopping: bool, patience: int, validates: bool, verbose: bool
) -> None:
    """Early stopping on the validation loss, Lightning's (which says why it stopped if verbose)."""
    if validates:
        trainer_kwargs.setdefault("check_val_every_n_epoch", 1)
    if early_stopping:
        trainer_kwargs["callbacks"].append(
            EarlyStopping(monitor="validation_loss", patience=patience, mode="min", verbose=verbose)
        )


def _class_weights(counts: np.ndarray) -> torch.Tensor:
    """Each label's weight: inverse to its training cells (0 for a label without any)."""
    counts = np.asarray(counts, dtype=np.float32)
    return torch.as_tensor(np.where(counts > 0, counts.sum() / np.maximum(counts, 1), 0.0))


def _has_batches(loader) -> bool:
    """Whether a data module's ``val_dataloader()`` answer holds any batch."""
    if loader is None:
        return False
    return len(loader) > 0 if hasattr(loader, "__len__") else True
