"""Cell-type classifiers on cell embeddings."""

from ._model import GenePTClassifier, decode
from ._module import GenePTClassifierModule

__all__ = ["GenePTClassifier", "GenePTClassifierModule", "decode"]
