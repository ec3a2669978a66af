"""Gene texts + an embedder → a :class:`GeneEmbeddings` table with its provenance."""

from __future__ import annotations

import datetime
from importlib.metadata import version

import pandas as pd

from sc_genept._utils import warn_caller
from sc_genept.genes._embed_texts import embed_texts
from sc_genept.genes._embedders import Embedder, OpenAIEmbedder
from sc_genept.genes._table import GeneEmbeddings, Provenance


def build_table(
    texts: pd.DataFrame,
    embedder: Embedder,
    *,
    text_source: str,
    license: str = "see the text source and the embedding model",
    cache_dir=None,
    batch_api: bool = False,
    price_per_million_tokens: float | None = None,
    poll_interval: float = 30.0,
    progress: bool = True,
    confirm=None,
) -> GeneEmbeddings:
    """Embed a texts table (see ``sc_genept.genes.text``) into a gene table.

    Parameters
    ----------
    texts
        Columns ``symbol``, ``text`` and optionally ``ensembl_id``; repeated symbols keep
        their first text.
    embedder
        :class:`~sc_genept.genes.SentenceTransformerEmbedder`,
        :class:`~sc_genept.genes.OpenAIEmbedder` or anything with the same protocol.
    text_source
        What the texts are, for the provenance (e.g. ``"NCBI summaries 2024-05"``).
    license
        Licence notes for the provenance.
    cache_dir, batch_api, price_per_million_tokens, poll_interval, progress, confirm
        See :func:`~sc_genept.genes.embed_texts`.
    """
    lacking = [c for c in ("symbol", "text") if c not in getattr(texts, "columns", ())]
    if lacking:
        raise ValueError(
            f"texts must be a DataFrame with the columns 'symbol' and 'text'; it lacks "
            f"{lacking}. Make one with sc_genept.genes.text (e.g. text.read_texts)."
        )
    if len(texts) == 0:
        raise ValueError("texts has no rows: there are no genes to embed.")
    missing = texts["symbol"].isna() | texts["text"].isna()
    if missing.any():
        raise ValueError(
            f"{int(missing.sum())} rows have no symbol or no text (e.g. row "
            f"{texts.index[missing][0]!r}); drop or fill them before embedding."
        )
    repeated = texts["symbol"].duplicated()
    if repeated.any():
        warn_caller(f"{int(repeated.sum())} repeated symbols: keeping the first text of each.")
        texts = texts[~repeated]
    vectors = embed_texts(
        texts["text"].astype(str).tolist(),
        embedder,
        cache_dir=cache_dir,
        batch_api=batch_api,
        price_per_million_tokens=price_per_million_tokens,
        poll_interval=poll_interval,
        progress=progress,
        confirm=confirm,
    )
    model = embedder.model + (f" (dimensions={embedder.dimensions})" if embedder.dimensions else "")
    extra = {"sc_genept_version": version("sc-genept"), "embedder": type(embedder).__name__}
    if isinstance(embedder, OpenAIEmbedder):
        extra.update(server=embedder.server, batch_api=batch_api)
    return GeneEmbeddings(
        texts["symbol"].astype(str).to_numpy(),
        vectors,
        ensembl_ids=texts["ensembl_id"].to_numpy() if "ensembl_id" in texts else None,
        texts=texts["text"].astype(str).to_numpy(),
        provenance=Provenance(
            text_source=text_source,
            embedding_model=model,
            build_date=datetime.date.today().isoformat(),
            license=license,
            extra=extra,
        ),
    )
