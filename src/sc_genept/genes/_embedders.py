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
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable
from urllib.parse import urlsplit, urlunsplit

import numpy as np
from tqdm.auto import tqdm

from sc_genept._checks import (
    non_empty_str,
    non_negative_int,
    positive_int,
    positive_number,
)
from sc_genept._utils import write_atomic

logger = logging.getLogger(__name__)

#: USD per million input tokens, standard (synchronous) API, as published by OpenAI in 2025.
#: The Batch API costs half. Pass ``price_per_million_tokens`` where these are out of date.
OPENAI_PRICES = {
    "text-embedding-3-small": 0.02,
    "text-embedding-3-large": 0.13,
    "text-embedding-ada-002": 0.10,
}
#: Output dimension of OpenAI's models when ``dimensions`` is not given: every vector an
#: answer holds must have it (a server answering otherwise serves another model).
OPENAI_DIMENSIONS = {
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
}
#: OpenAI's rule of thumb, used when tiktoken's encoding is unavailable.
_CHARS_PER_TOKEN = 4
#: Requests per Batch API job (OpenAI's limit).
MAX_BATCH_REQUESTS = 50_000


class Cancelled(Exception):
    """The user declined a paid call; nothing was sent."""


class BatchJobError(RuntimeError):
    """A Batch API job failed, expired or was cancelled; what it finished is cached."""


class EmbeddingError(RuntimeError):
    """An embedder or server answered with something other than the vectors asked for.

    Malformed JSON, missing fields, a wrong count of vectors, vectors of the wrong
    dimension, NaN, or an unreachable or refusing server. Nothing from such an answer is cached, so a fixed rerun pays only for it.
    """


@runtime_checkable
class Embedder(Protocol):
    """What :func:`~sc_genept.genes.embed_texts` needs from an embedder."""

    #: Identifies the model in cache keys and table provenance (no secrets).
    model: str
    #: Output dimensions requested, or ``None`` for the model's own.
    dimensions: int | None
    # Optional: ``expected_dimensions`` (int or None), the length every vector must have;
    # when absent or None, the first vectors of a run (or the cache) decide.

    def embed(self, texts: list[str]) -> np.ndarray:
        """Embed a batch of texts, one row each, no caching."""

    def batches(self, texts: list[str]) -> list[list[int]]:
        """Split texts (by index) into requests."""


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
        non_empty_str("model", model)
        positive_int("dimensions", dimensions, allow_none=True)
        known = OPENAI_DIMENSIONS.get(model)
        if dimensions is not None and known is not None and dimensions > known:
            raise ValueError(
                f"{model} makes {known}-dimensional vectors; dimensions= can shorten them "
                f"(1 to {known}), not lengthen them to {dimensions}."
            )
        non_negative_int("max_retries", max_retries)
        positive_int("max_batch_tokens", max_batch_tokens)
        positive_int("max_batch_size", max_batch_size)
        positive_number("timeout", timeout)
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

    @property
    def expected_dimensions(self) -> int | None:
        """The length every vector must have.

        ``dimensions``, else the model's own when known (see ``OPENAI_DIMENSIONS``).
        """
        return self.dimensions if self.dimensions is not None else OPENAI_DIMENSIONS.get(self.model)

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
        """One synchronous request (the client retries 429/5xx with backoff).

        The answer is read and checked here, not by the client, which accepts any JSON
        object: one vector per text, all numbers, all of :attr:`expected_dimensions`;
        otherwise :class:`EmbeddingError`.
        """
        import openai

        try:
            raw = self.client.embeddings.with_raw_response.create(**self._body(texts))
        except openai.APIConnectionError as err:  # timeouts too
            raise EmbeddingError(
                f"Could not reach the embeddings server at {self.server} "
                f"({type(err).__name__}). Check base_url and that the server is running."
            ) from err
        except openai.APIStatusError as err:
            raise EmbeddingError(
                f"The server at {self.server} answered HTTP {err.status_code} to an embeddings "
                f"request for {self.model!r}: {str(err.message)[:300]}"
            ) from err
        vectors = _parse_embeddings(raw.http_response.content, len(texts), self._bad_answer)
        expected = self.expected_dimensions
        if expected is not None and vectors.shape[1] != expected:
            raise EmbeddingError(self._wrong_dimension(vectors.shape[1], expected))
        return vectors

    def _bad_answer(self, what: str) -> EmbeddingError:
        return EmbeddingError(
            f"The server at {self.server} did not answer like the OpenAI embeddings API: "
            f"{what}. Check that base_url is its OpenAI-compatible root (usually ending in "
            f"/v1) and that it serves embeddings for {self.model!r}. Nothing from this answer "
            "was cached."
        )

    def _wrong_dimension(self, got: int, expected: int) -> str:
        why = (
            f"dimensions={self.dimensions}"
            if self.dimensions is not None
            else f"the dimension of {self.model}"
        )
        return (
            f"{self.model!r} at {self.server} answered with {got}-dimensional vectors, expected "
            f"{expected} ({why}). Nothing from this answer was cached. Check that the server "
            "serves this model under this name, or pass dimensions= matching what it makes."
        )

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
        vectors, problems = self._collect(batch)
        for cid, vector in vectors.items():
            store(cid, vector)
        state_file.unlink(missing_ok=True)  # the job is over either way: a rerun submits anew
        if problems:
            raise EmbeddingError(
                f"Batch API job {batch.id}: the server at {self.server} answered "
                f"{len(problems)} of {len(texts)} requests with no usable vector "
                f"({'; '.join(sorted(set(problems))[:3])}). The {len(vectors)} good vectors were "
                f"cached; those were not. Check that the server serves {self.model!r} under "
                "this name (or pass dimensions=), then run again to resubmit the rest."
            )
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

    def _collect(self, batch) -> tuple[dict[str, np.ndarray], list[str]]:
        """Checked vectors of a job's output by custom id, and what was wrong with the rest.

        A request the job reports as failed is neither: it is retried. A request answered
        with something unusable (not JSON, no vector, wrong dimension) is a problem and is
        never stored.
        """
        if not batch.output_file_id:
            return {}, []
        vectors, problems = {}, []

        def bad(what: str) -> EmbeddingError:
            return EmbeddingError(what)

        for line in self.client.files.content(batch.output_file_id).text.splitlines():
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                response = record.get("response") or {}
                cid = record["custom_id"]
            except (ValueError, AttributeError, KeyError, TypeError):
                problems.append("an output line is not a JSON object with a custom_id")
                continue
            if response.get("status_code") == 200 and not record.get("error"):
                body = response.get("body")
                try:
                    data = body.get("data") if isinstance(body, dict) else None
                    vectors[cid] = _rows(data, 1, bad)[0]
                except EmbeddingError as err:
                    problems.append(f"not like the OpenAI embeddings API: {err}")
        expected = self.expected_dimensions
        if expected is None and vectors:  # unknown model: one job, one dimension (the usual one)
            expected = Counter(len(v) for v in vectors.values()).most_common(1)[0][0]
        for cid in [c for c, v in vectors.items() if len(v) != expected]:
            problems.append(f"{len(vectors.pop(cid))}-dimensional vectors, expected {expected}")
        return vectors, problems


def _parse_embeddings(content: bytes, n_texts: int, bad: Callable[[str], Exception]) -> np.ndarray:
    """The ``(n_texts, d)`` float32 vectors of an embeddings answer, or ``bad(what is wrong)``."""
    try:
        payload = json.loads(content)
    except ValueError as err:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise bad("the answer is not JSON") from err
    return _rows(payload.get("data") if isinstance(payload, dict) else None, n_texts, bad)


def _rows(data, n_texts: int, bad: Callable[[str], Exception]) -> np.ndarray:
    """Check the ``data`` list of an embeddings answer and stack its vectors in input order."""
    if not isinstance(data, list):
        raise bad("no list of embeddings under 'data'")
    if len(data) != n_texts:
        raise bad(f"{len(data)} embeddings for {n_texts} texts")
    if not all(isinstance(d, dict) and "embedding" in d for d in data):
        raise bad("an item of 'data' has no 'embedding'")
    indexes = [d.get("index") for d in data]
    if all(isinstance(i, int) for i in indexes):
        if sorted(indexes) != list(range(n_texts)):
            raise bad(f"the indexes {sorted(indexes)[:10]} are not 0 to {n_texts - 1}")
        data = sorted(data, key=lambda d: d["index"])
    elif any(i is not None for i in indexes):
        raise bad("'index' is not a whole number")
    try:
        vectors = np.array([d["embedding"] for d in data])
    except ValueError as err:  # NumPy refuses ragged nesting
        raise bad("the embeddings are not lists of numbers of one length") from err
    if vectors.ndim != 2 or vectors.dtype.kind not in "fiu" or vectors.shape[1] == 0:
        raise bad("the embeddings are not lists of numbers of one length")
    vectors = vectors.astype(np.float32)
    if not np.isfinite(vectors).all():
        raise bad("the embeddings hold NaN or infinite values")
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
    if price_per_million_tokens is not None:
        positive_number("price_per_million_tokens", price_per_million_tokens, allow_zero=True)
    counts, exact = count_tokens(texts, model)
    price = (
        price_per_million_tokens
        if price_per_million_tokens is not None
        else OPENAI_PRICES.get(model)
    )
    usd = None if price is None else sum(counts) / 1e6 * price * (0.5 if batch_api else 1.0)
    return CostEstimate(len(texts), sum(counts), exact, usd)


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
