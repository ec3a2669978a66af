"""How a GenePTClassifier trains: checkpoints, torch's threads, output that follows scanpy.

scvi-tools' Trainer, asked for checkpoints, puts its own ``SaveCheckpoint`` in place of
Lightning's (it saves scvi-format model folders), so Lightning's ``ModelCheckpoint`` is
added after the Trainer is built. Lightning's banners, tips, model summary and warnings
are held back for a quiet call only, and restored after it. torch's CPU thread count is
chosen per call (:func:`cpu_threads`) and restored after it.
"""

from __future__ import annotations

import io
import logging
import sys
import warnings
from contextlib import contextmanager, redirect_stdout
from pathlib import Path
from typing import TYPE_CHECKING

import scanpy as sc
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from scanpy import logging as logg

if TYPE_CHECKING:
    from collections.abc import Sequence


def checkpoint_callbacks(trainer_kwargs: dict, checkpoint_dir: str | Path | None) -> list:
    """Lightning ``ModelCheckpoint`` callbacks the user asked for, taken out of ``trainer_kwargs``.

    ``checkpoint_dir`` adds one that saves ``last.ckpt`` there every epoch and resumes from
    it when it exists; ``enable_checkpointing=True`` alone adds Lightning's default one.
    """
    callbacks = list(trainer_kwargs.pop("callbacks", None) or [])
    checkpoints = [c for c in callbacks if isinstance(c, ModelCheckpoint)]
    trainer_kwargs["callbacks"] = [c for c in callbacks if not isinstance(c, ModelCheckpoint)]
    enable = trainer_kwargs.pop("enable_checkpointing", False)
    if checkpoint_dir is not None:
        folder = Path(checkpoint_dir)
        checkpoints.append(
            ModelCheckpoint(
                dirpath=folder,
                filename="last",
                monitor=None,
                save_top_k=1,
                every_n_epochs=1,
                enable_version_counter=False,
            )
        )
        last = folder / "last.ckpt"
        if last.exists():
            logg.info(f"resuming training from {last}")
            trainer_kwargs["ckpt_path"] = str(last)
    elif enable and not checkpoints:
        checkpoints.append(ModelCheckpoint())
    return checkpoints


#: scanpy's verbosity levels (``sc.settings.verbosity``): 2 is "info", 4 is "debug".
INFO, DEBUG = 2, 4
#: Loggers whose INFO lines (device banner, LitLogger tip, "`Trainer.fit` stopped", model
#: summary) are held back during a quiet training.
_LIGHTNING_LOGGERS = (
    "lightning.pytorch",
    "lightning.fabric",
    "pytorch_lightning",
    "lightning_fabric",
    "scvi",
)
#: Modules whose warnings a quiet training holds back (e.g. "The number of training batches
#: is smaller than the logging interval", "does not have many workers").
_LIGHTNING_MODULES = (
    r"(lightning|pytorch_lightning|lightning_fabric|lightning_utilities|scvi)(\.|$)"
)


def scanpy_verbosity() -> int:
    return int(sc.settings.verbosity)


def output_options(trainer_kwargs: dict, verbose: bool) -> None:
    """Progress bar and model summary: Lightning's own when ``verbose``, else scanpy-like.

    Quiet: one bar (scvi-tools' per-epoch bar, refreshed once an epoch) at verbosity
    "info" or more, and no model summary. Arguments the user gave are kept.
    """
    if verbose:
        trainer_kwargs.setdefault("enable_progress_bar", True)
        trainer_kwargs.setdefault("simple_progress_bar", False)  # Lightning's per-step bar
        trainer_kwargs.setdefault("enable_model_summary", True)
    else:
        trainer_kwargs.setdefault("enable_progress_bar", scanpy_verbosity() >= INFO)
        trainer_kwargs.setdefault("simple_progress_bar", True)
        trainer_kwargs.setdefault("enable_model_summary", False)


@contextmanager
def quiet_loggers(names: Sequence[str], verbose: bool):
    """Raise the loggers ``names`` to WARNING for the block, then restore their levels."""
    if verbose:
        yield
        return
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    try:
        for logger in loggers:
            if logger.getEffectiveLevel() < logging.WARNING:
                logger.setLevel(logging.WARNING)
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


#: What scvi-tools' ``TrainRunner`` prints on stdout before re-raising a training error.
_RUNNER_FAILURE_LINE = "Exception raised during training."


class _DropRunnerFailureLine(io.TextIOBase):
    """Text passed on to ``stream`` as it comes, less scvi-tools' line for a failed training.

    That line is one ``print(message, NameError, error)``: ``print`` writes its first
    argument in one call, then the rest, then its ``end`` (a newline) in a call of its own.
    A write that starts with the message starts dropping, wherever the cursor is (after a
    progress bar's carriage return too), and the ``end`` write stops it, so an error
    message of several lines goes as a whole.
    """

    def __init__(self, stream):
        self.stream = stream
        self._dropping = False

    def writable(self) -> bool:
        return True

    @property
    def encoding(self):  # tqdm picks its bar characters by the stream's encoding
        return getattr(self.stream, "encoding", None)

    @property
    def buffer(self):
        return self.stream.buffer

    def isatty(self) -> bool:
        return self.stream.isatty()

    def fileno(self) -> int:
        return self.stream.fileno()

    def write(self, text: str) -> int:
        if self._dropping:
            self._dropping = text != "\n"
        elif text.startswith(_RUNNER_FAILURE_LINE):
            self._dropping = True
        else:
            self.stream.write(text)
        return len(text)

    def flush(self) -> None:
        self.stream.flush()


@contextmanager
def lightning_output(verbose: bool):
    """Lightning's and scvi-tools' output held back for the block (unless verbose).

    Their INFO log lines, their own warnings, and scvi-tools' stdout line for a failed
    training (the error itself is raised, and says what went wrong). Errors still raise,
    sc_genept's own warnings and anything else printed still show; logger levels and
    warning filters are restored after the block.
    """
    if verbose:
        yield
        return
    from lightning.fabric.utilities.warnings import PossibleUserWarning

    with (
        quiet_loggers(_LIGHTNING_LOGGERS, verbose),
        warnings.catch_warnings(),
        redirect_stdout(_DropRunnerFailureLine(sys.stdout)),
    ):
        warnings.filterwarnings("ignore", module=_LIGHTNING_MODULES)
        warnings.filterwarnings("ignore", category=PossibleUserWarning)
        yield


class KeepThreads(Callback):
    """Sets torch's thread count again once Lightning has started its processes.

    Lightning's multi-process launchers set it to cores / processes themselves (and
    ``OMP_NUM_THREADS`` in the environment); the count ``train`` chose wins.
    """

    def __init__(self, n: int):
        self.n = n

    def setup(self, trainer, pl_module, stage: str) -> None:
        torch.set_num_threads(self.n)
