"""Cell-type classifiers on cell embeddings.

Loaded on first use: the classifier needs torch, Lightning and scvi-tools, which
``import sc_genept`` should not pay for.
"""

from importlib import import_module

_LAZY = {
    "GenePTClassifier": "._model",
    "decode": "._calls",
    "GenePTClassifierModule": "._module",
    "GenePTNetwork": "._network",
    "GenePTTrainingPlan": "._module",
    "SavedClassifier": "._saved",
    "ModelFolderError": "._folder",
    "available_models": "._pretrained",
    "register_pretrained": "._pretrained",
    "unregister_pretrained": "._pretrained",
    "PretrainedModel": "._pretrained",
    "PretrainedModelError": "._pretrained",
    "SomaCells": "._soma",
    "CellData": "._data",
    "InMemoryCells": "._data",
}

__all__ = [
    "CellData",
    "GenePTClassifier",
    "GenePTClassifierModule",
    "GenePTNetwork",
    "GenePTTrainingPlan",
    "InMemoryCells",
    "ModelFolderError",
    "PretrainedModel",
    "PretrainedModelError",
    "SavedClassifier",
    "SomaCells",
    "available_models",
    "decode",
    "register_pretrained",
    "unregister_pretrained",
]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
