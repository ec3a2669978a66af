"""Text embedders behind one small protocol, and the cached, resumable way to run them.

- :class:`SentenceTransformerEmbedder`: local models (the bundled all-MiniLM-L6-v2 by default).
- :class:`OpenAIEmbedder`: the official ``openai`` client, against OpenAI or any
  OpenAI-compatible server (vLLM, Ollama, LM Studio) via ``base_url``; synchronous requests
  (token-aware batches) or the Batch API (half price; each job is recorded before it is
  waited on, so an interrupted run resumes it instead of paying again). Every request has a
  timeout and is retried, a bounded number of times, with exponential backoff on 408, 409,
  429, 5xx and lost connections.

:func:`embed_texts` puts a content-addressed cache in front of either: a rerun pays for
nothing already embedded, and a crash loses at most the request in flight.
"""

from __future__ import annotations

import itertools
import json
import math
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable
from urllib.parse import urlsplit, urlunsplit

import numpy as np
from scanpy import logging as logg

from sc_genept._checks import (
    non_empty_str,
    non_negative_int,
    positive_int,
    positive_number,
)
from sc_genept._utils import progress_bar

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
#: Seconds before the first retry of a failed request; each further retry waits twice as long
#: (at most ``_BACKOFF_MAX``), less up to a random quarter so that clients failing together
#: spread out. A server's own ``Retry-After`` wins when it gives one.
_BACKOFF_BASE = 0.5
_BACKOFF_MAX = 8.0
#: A server asking to wait longer than this (``Retry-After``) is not retried: its error is raised.
_RETRY_AFTER_MAX = 60.0
#: Tries of a request that timed out, of ``max_retries + 1``: each try costs ``timeout``.
_TIMEOUT_TRIES = 2
#: Batch API metadata naming a job's record, so a job whose id was never recorded is found.
_JOB_TAG = "sc_genept_job"


class Cancelled(Exception):
    """The user declined a paid call; nothing was sent."""


class BatchJobError(RuntimeError):
    """A Batch API job failed, expired or was cancelled; what it finished is cached."""


class NotOurJob(BatchJobError):
    """A recorded Batch API job id names no job at the server, or another job."""


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
        Retries of a failed request (HTTP 408, 409, 429 or 5xx, or a lost connection), each
        after twice the wait of the one before, from 0.5 s to at most 8 s, or after the wait
        the server asks for (``Retry-After``, up to 60 s). A request that timed out is tried
        at most twice.
    max_batch_tokens, max_batch_size
        Limits of one synchronous request.
    timeout
        Seconds to wait for the server's answer to one request (default 120), so a server
        that never answers fails the run instead of hanging it.
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
        self.max_retries, self.timeout = max_retries, timeout
        self.client = openai_client(api_key=api_key, base_url=base_url, timeout=timeout)
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

    def _call(self, call: Callable, what: str):
        """``call()`` with this embedder's retries; ``what`` names it in log lines."""
        return call_with_retries(call, max_retries=self.max_retries, what=f"{what} ({self.server})")

    def embed(self, texts: list[str]) -> np.ndarray:
        """One synchronous request, retried on 429/5xx with backoff (see ``max_retries``).

        The answer is read and checked here, not by the client, which accepts any JSON
        object: one vector per text, all numbers, all of :attr:`expected_dimensions`;
        otherwise :class:`EmbeddingError`.
        """
        import openai

        try:
            raw = self._call(
                lambda: self.client.embeddings.with_raw_response.create(**self._body(texts)),
                "embeddings request",
            )
        except openai.APITimeoutError as err:
            tries = min(_TIMEOUT_TRIES, self.max_retries + 1)
            raise EmbeddingError(
                f"The embeddings server at {self.server} did not answer within {self.timeout:g} s "
                f"({tries} {'try' if tries == 1 else 'tries'}); nothing was cached from this "
                "request. Check that it is running and not overloaded, or give a slow server "
                "more time with timeout= (seconds)."
            ) from err
        except openai.APIConnectionError as err:
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

    # ---- Batch API: the operations (embed_texts records, resumes and stores) -----------

    def identity(self) -> dict:
        """Model, dimensions and server: what a Batch API job record must match (no key)."""
        return {"model": self.model, "dimensions": self.dimensions, "server": self.server}

    def submit_batch(self, texts: dict[str, str], tag: str, *, since: float) -> dict:
        """Upload ``{custom_id: text}`` and create a Batch API job whose metadata holds ``tag``.

        Returns the job's ``batch_id``, ``input_file_id`` and ``n_requests``. A retried
        creation first looks for the job by ``tag`` (see :meth:`find_batch`): a try that
        failed may still have created it, and a second one would be paid twice.
        """
        lines = [
            json.dumps(
                {"custom_id": cid, "method": "POST", "url": "/v1/embeddings", "body": self._body(t)}
            )
            for cid, t in texts.items()
        ]
        upload = self._call(
            lambda: self.client.files.create(
                file=("requests.jsonl", "\n".join(lines).encode()), purpose="batch"
            ),
            "Batch API upload",
        )
        tries = itertools.count()

        def create():
            if next(tries) and (batch := self.find_batch(tag, since=since)) is not None:
                return batch
            return self.client.batches.create(
                input_file_id=upload.id,
                endpoint="/v1/embeddings",
                completion_window="24h",
                metadata={_JOB_TAG: tag},
            )

        batch = self._call(create, "Batch API submission")
        logg.info(f"submitted Batch API job {batch.id} with {len(lines)} requests")
        return {"batch_id": batch.id, "input_file_id": upload.id, "n_requests": len(lines)}

    def find_batch(self, tag: str, *, since: float):
        """The newest job created with ``tag`` since ``since`` (Unix time), or ``None``."""
        import openai

        try:
            listing = self._call(lambda: self.client.batches.list(limit=100), "Batch API list")
            for batch in listing:  # newest first: stop at those older than asked
                if batch.created_at < since - 24 * 3600:  # a day of clock skew allowed
                    break
                if (batch.metadata or {}).get(_JOB_TAG) == tag:
                    return batch
        except (openai.APIStatusError, openai.APIConnectionError):
            pass  # a server that lists no jobs: none found
        return None

    def wait_batch(
        self, batch_id: str, *, input_file_id: str | None, poll_interval: float, timeout: float
    ):
        """Poll a job until it ends.

        Raises ``NotOurJob`` (a :class:`BatchJobError`) if ``batch_id`` names no job at
        the server, or a job of another input than ``input_file_id``; :class:`TimeoutError`
        after ``timeout`` seconds (the job is still recorded: a rerun resumes it).
        """
        import openai

        deadline = time.monotonic() + timeout
        with progress_bar(desc=f"Batch API {batch_id}", unit="request") as bar:
            while True:
                try:
                    batch = self._call(
                        lambda: self.client.batches.retrieve(batch_id), "Batch API poll"
                    )
                except openai.NotFoundError as err:
                    raise NotOurJob(
                        f"Batch API job {batch_id} is unknown to {self.server} (deleted, or "
                        "submitted with another account's key)"
                    ) from err
                except (openai.APIConnectionError, openai.InternalServerError) as err:
                    # the job runs on at the server for up to a day: an outage of the
                    # network or the server is waited out, not a reason to stop waiting
                    if time.monotonic() > deadline:
                        raise TimeoutError(
                            f"Batch {batch_id}: {self.server} unreachable at the end of the "
                            "wait; the job is recorded, run again later to resume it."
                        ) from err
                    logg.warning(
                        f"Batch API job {batch_id}: {self.server} unreachable "
                        f"({type(err).__name__}); still waiting"
                    )
                    time.sleep(poll_interval)
                    continue
                if input_file_id not in (None, batch.input_file_id):
                    raise NotOurJob(
                        f"Batch API job {batch_id} at {self.server} is another job now (its "
                        "input is not the one submitted: a restarted server reuses ids)"
                    )
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

    def collect_batch(self, batch, ours: set[str]) -> tuple[dict[str, np.ndarray], list[str]]:
        """Checked vectors of a job's output by custom id, and what was wrong with the rest.

        A request the job reports as failed is neither: it is retried. A request answered
        with something unusable (not JSON, no vector, wrong dimension) is a problem and is
        never stored. Lines for custom ids not in ``ours`` (not this job's) are dropped.
        """
        if not batch.output_file_id:
            return {}, []
        vectors, problems, foreign = {}, [], 0

        def bad(what: str) -> EmbeddingError:
            return EmbeddingError(what)

        output = self._call(
            lambda: self.client.files.content(batch.output_file_id), "Batch API download"
        )
        for line in output.text.splitlines():
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                response = record.get("response") or {}
                cid = record["custom_id"]
            except (ValueError, AttributeError, KeyError, TypeError):
                problems.append("an output line is not a JSON object with a custom_id")
                continue
            if cid not in ours:
                foreign += 1  # never stored: it answers no request of this job
            elif response.get("status_code") == 200 and not record.get("error"):
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
        if foreign:
            logg.warning(
                f"Batch API job {batch.id}: {foreign} output lines of {self.server} answer "
                "requests the job was not given; they were ignored"
            )
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


def openai_client(*, api_key: str | None, base_url: str | None, timeout: float = 120.0):
    """The official client; local servers (``base_url`` given) get a placeholder key if none is set.

    It does not retry: :func:`call_with_retries` does, with a backoff tests can shorten.
    """
    import os

    from openai import OpenAI

    if api_key is None and base_url is not None and not os.environ.get("OPENAI_API_KEY"):
        api_key = "no-key-needed"  # vLLM, Ollama, LM Studio ignore it; the client insists on one
    return OpenAI(api_key=api_key, base_url=base_url, max_retries=0, timeout=timeout)


def call_with_retries(call: Callable, *, max_retries: int, what: str):
    """``call()``, retried up to ``max_retries`` times with exponential backoff.

    Retried: HTTP 408, 409, 429 and 5xx answers (unless the server says ``x-should-retry:
    false`` or asks to wait over ``_RETRY_AFTER_MAX`` seconds), lost connections, and one
    timeout (``_TIMEOUT_TRIES``). Anything else, or the last failure, is raised as the
    client raised it.
    """
    import openai

    n_timeouts = 0
    for attempt in itertools.count():
        try:
            return call()
        except openai.APITimeoutError:
            n_timeouts += 1
            if n_timeouts >= _TIMEOUT_TRIES or attempt >= max_retries:
                raise
            why, delay = "no answer in time", _backoff(attempt)
        except openai.APIConnectionError:
            if attempt >= max_retries:
                raise
            why, delay = "connection failed", _backoff(attempt)
        except openai.APIStatusError as err:
            delay = _retry_delay(err.response, attempt)
            if delay is None or attempt >= max_retries:
                raise
            why = f"HTTP {err.status_code}"
        logg.info(f"    {what}: {why}; retry {attempt + 1} of {max_retries} in {delay:.2g} s")
        time.sleep(delay)


def _backoff(attempt: int) -> float:
    """Seconds before retry ``attempt + 1``: doubling from ``_BACKOFF_BASE``, with jitter."""
    return min(_BACKOFF_BASE * 2**attempt, _BACKOFF_MAX) * (1 - 0.25 * random.random())


def _retry_delay(response, attempt: int) -> float | None:
    """Seconds to wait before retrying an HTTP error answer; ``None``: do not retry it."""
    verdict = response.headers.get("x-should-retry")
    status = response.status_code
    if verdict == "false" or (verdict != "true" and status not in (408, 409, 429) and status < 500):
        return None
    for header, seconds in (("retry-after-ms", 1e-3), ("retry-after", 1.0)):
        try:
            asked = float(response.headers.get(header, "")) * seconds
        except ValueError:  # absent, or an HTTP date: our own backoff
            continue
        if math.isfinite(asked) and asked > 0:
            return asked if asked <= _RETRY_AFTER_MAX else None
    return _backoff(attempt)


def _public_url(url: str) -> str:
    """The URL without user info, query or fragment (nothing secret goes into provenance)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))
