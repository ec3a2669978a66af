"""A GenePTClassifier written as a model folder, and rebuilt from one.

What a folder holds and how it is checked (safetensors, JSON, sha256 manifest) is in
``_folder``; these functions turn a model into the folder's weights and metadata, and back.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from sc_genept._checks import check_adata
from sc_genept.model._folder import OWN_ONTOLOGY, ModelFolderError, read_folder, write_folder
from sc_genept.model._meta import check_meta
from sc_genept.ontology import CellOntology

if TYPE_CHECKING:
    from anndata import AnnData

    from sc_genept.model._model import GenePTClassifier
    from sc_genept.model._trained import TrainedClassifier


def save_folder(model: GenePTClassifier, dir_path: str | Path, overwrite: bool) -> None:
    """Write ``model`` to the folder ``dir_path``: see :meth:`GenePTClassifier.save`."""
    path = Path(dir_path)
    if path.exists() and not path.is_dir():
        raise FileExistsError(f"{path} is a file; pass a folder to save the model in.")
    if path.exists() and any(path.iterdir()) and not overwrite:
        raise FileExistsError(f"{path} exists and is not empty; pass overwrite=True.")
    registry = _to_plain(model.registry_)
    registry["setup_args"]["ontology"] = OWN_ONTOLOGY
    meta = {
        "model": type(model).__name__,
        "sc_genept_version": _version(),
        "init_params": model.init_params_,
        "registry": registry,
        "embedding_provenance": model.embedding_provenance_,
        "gene_sets": model.gene_sets_,
        "ontology": {
            "version": model.ontology.version,
            "terms": model.ontology.to_dict(model.terms),
        },
        "is_trained": model.is_trained_,
        "calibration": model.calibration_,
        "history": {
            k: v.reset_index().to_dict(orient="list") for k, v in (model.history_ or {}).items()
        },
    }
    write_folder(
        path,
        model.network.state_dict(),
        json.loads(json.dumps(meta, default=_json_default)),
        overwrite=overwrite,
    )


def torch_device(accelerator: str | None, device: str | int | None) -> str:
    """The torch device of an scvi-tools-style ``accelerator`` and ``device`` pair.

    Neither given: the CPU. ``device`` may be a torch device (``"cuda:1"``), used as it is
    (an ``accelerator`` that contradicts it is an error); ``"auto"``, an index or nothing
    lets ``accelerator`` choose (``"auto"``: a GPU when torch sees one).
    """
    if accelerator not in (None, "auto", "cpu", "gpu", "cuda"):
        raise ValueError(
            f"accelerator must be 'auto', 'cpu', 'gpu' or 'cuda', got {accelerator!r}."
        )
    if isinstance(device, str) and device != "auto":
        kind = device.partition(":")[0]
        wanted = {"cpu": "cpu", "gpu": "cuda", "cuda": "cuda"}.get(accelerator, kind)
        if wanted != kind:
            raise ValueError(
                f"accelerator={accelerator!r} and device={device!r} contradict each other: "
                "pass one of them, or device='auto' to let the accelerator choose."
            )
        return device if device == "cpu" else _checked_device(device)
    if (
        device is not None
        and device != "auto"
        and (isinstance(device, bool) or not isinstance(device, int))
    ):
        raise ValueError(f"device must be a torch device, 'auto' or a GPU index, got {device!r}.")
    if accelerator is None or accelerator == "cpu":
        return "cpu"
    import torch  # only here: a SavedClassifier runs on NumPy

    if accelerator == "auto" and not torch.cuda.is_available():
        return "cpu"
    if not torch.cuda.is_available():
        raise ValueError(f"accelerator={accelerator!r}, but torch sees no CUDA GPU here.")
    return "cuda" if device in (None, "auto") else _checked_device(f"cuda:{device}")


def _checked_device(device: str) -> str:
    import torch

    try:
        torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(
            f"device={device!r} is not a torch device: pass 'cpu', 'cuda' or "
            f"'cuda:<index>' ({err})."
        ) from None
    return device


def load_folder(
    cls: type[TrainedClassifier], dir_path: str | Path, adata: AnnData | None, device: str
) -> TrainedClassifier:
    """Rebuild a ``cls`` from the folder ``dir_path``: see :meth:`GenePTClassifier.load`."""
    if not isinstance(dir_path, str | os.PathLike):
        raise TypeError(
            "dir_path must be the folder GenePTClassifier.save wrote (a str or Path), got "
            f"{type(dir_path).__name__}."
        )
    if adata is not None:
        check_adata(adata)
    path = Path(dir_path)
    meta, state = read_folder(path)
    if meta.get("model") != cls._folder_model():
        raise ModelFolderError(
            f"{path} holds a {meta.get('model')!r}, not a {cls._folder_model()}."
        )
    options = check_meta(meta, state, str(path / "model.json"))  # before any work
    try:
        ontology = CellOntology.from_dict(
            meta["ontology"]["terms"],
            version=str(meta["ontology"]["version"]),
            source=f"the model folder {path.name}",
        )
        registry = _from_plain(meta["registry"])
        model = cls._from_registry(registry, ontology, options)
        model._take_weights(state)
        model.calibration_ = meta.get("calibration")  # absent from older folders
        model.embedding_provenance_ = meta["embedding_provenance"]
        model.gene_sets_ = meta["gene_sets"]
        model.is_trained_ = meta["is_trained"]
        model.history_ = {k: pd.DataFrame(v).set_index("epoch") for k, v in meta["history"].items()}
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        if isinstance(err, ModelFolderError):
            raise
        raise ModelFolderError(
            f"{path / 'model.json'} and its weights do not describe a GenePTClassifier "
            f"this sc_genept can rebuild ({type(err).__name__}: {err}). Save it again with "
            "this version."
        ) from err
    model._place(device)  # out of the try: a GPU's errors are not the folder's
    if adata is not None:
        model._query(adata)
        model._attached = adata
    return model


def _to_plain(value):
    """JSON-able copy of a registry: numpy arrays and scalars become tagged lists / numbers."""
    if isinstance(value, dict):
        return {str(k): _to_plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_to_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return {"__ndarray__": value.tolist(), "dtype": str(value.dtype)}
    if isinstance(value, np.generic):
        return value.item()
    return value


def _from_plain(value):
    if isinstance(value, dict):
        if "__ndarray__" in value:
            return np.asarray(
                value["__ndarray__"], dtype=value["dtype"] if value["dtype"] != "object" else object
            )
        return {k: _from_plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_plain(v) for v in value]
    return value


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"Cannot store {type(value).__name__} in model.json")


def _version() -> str:
    from importlib.metadata import version

    return version("sc-genept")
