"""Embedding texts through a content-addressed cache: :func:`embed_texts`.

Only uncached texts are sent, so a rerun pays for nothing already embedded; each answer
is checked and cached as it comes, so a crash loses at most the request in flight. Batch
API jobs are recorded before they are waited on (:func:`embed_batch_api`), so a run
interrupted while one is pending resumes it instead of paying again.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scanpy import logging as logg

from sc_genept._checks import positive_number
from sc_genept._utils import progress_bar
from sc_genept.genes._cache import Cache, JobRecords, cache_key
from sc_genept.genes._embedders import (
    MAX_BATCH_REQUESTS,
    BatchJobError,
    Cancelled,
    Embedder,
    EmbeddingError,
    NotOurJob,
    OpenAIEmbedder,
    estimate_cost,
)


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
    texts = _text_list(texts)
    if poll_interval is not None:
        positive_number("poll_interval", poll_interval, allow_zero=True)
    cache = Cache(cache_dir, "embeddings")
    keys = [text_key(embedder, t) for t in texts]
    embedded = _cached_vectors(cache, keys, embedder)
    missing = {k: t for k, t in zip(keys, texts, strict=True) if k not in embedded.vectors}
    if missing and isinstance(embedder, OpenAIEmbedder):
        _confirm_cost(
            embedder,
            list(missing.values()),
            price_per_million_tokens=price_per_million_tokens,
            batch_api=batch_api,
            confirm=confirm,
        )
    logg.info(
        f"{len(texts)} texts: {len(texts) - len(missing)} cached, "
        f"{len(missing)} to embed with {embedder!r}"
    )
    if missing and batch_api:
        if not isinstance(embedder, OpenAIEmbedder):
            raise TypeError("batch_api=True needs an OpenAIEmbedder.")
        _embed_by_batch_api(embedder, missing, embedded, poll_interval=poll_interval)
    elif missing:
        _embed_by_requests(embedder, missing, embedded, progress=progress)
    return np.stack([embedded.vectors[k] for k in keys])


@dataclass
class _Embedded:
    """The vectors of one :func:`embed_texts` run by cache key, and the length they must have.

    ``expected`` is ``None`` while nothing says what the model makes; ``why`` says where
    ``expected`` comes from, for messages.
    """

    cache: Cache
    vectors: dict[str, np.ndarray]
    expected: int | None
    why: str | None

    def add(self, key: str, vector: np.ndarray) -> None:
        """Cache ``vector`` under ``key`` at once, and keep it for the result."""
        self.cache.put_vector(key, vector)
        self.vectors[key] = vector


def _text_list(texts: list[str]) -> list[str]:
    """``texts`` as a non-empty list of strings; else a ``TypeError`` or ``ValueError``."""
    if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
        raise TypeError("texts must be a list of strings, one per vector wanted.")
    texts = list(texts)
    if not texts:
        raise ValueError("texts is empty: there is nothing to embed.")
    return texts


def _cached_vectors(cache: Cache, keys: list[str], embedder: Embedder) -> _Embedded:
    """The cached vectors of ``keys`` that have the dimension the embedder makes.

    Cached vectors of another dimension or with NaN or infinite values, like corrupt
    entries, are misses, with a warning.
    """
    expected = getattr(embedder, "expected_dimensions", None) or embedder.dimensions
    why = f"what {embedder.model} makes" if expected is not None else None
    vectors: dict[str, np.ndarray] = {}
    n_stale = 0
    for key in set(keys):
        if (v := cache.get_vector(key)) is not None:
            if (expected is not None and len(v) != expected) or not np.isfinite(v).all():
                n_stale += 1  # left by a misbehaving server or an older version: a miss
            else:
                vectors[key] = v
    if expected is None and vectors:
        # nothing says what the model makes: its cached vectors decide, by majority, so one
        # stray entry is recomputed instead of making every later table ragged
        expected = Counter(len(v) for v in vectors.values()).most_common(1)[0][0]
        why = f"the length of the vectors of {embedder.model} already cached in {cache.path}"
        stale = [k for k, v in vectors.items() if len(v) != expected]
        n_stale += len(stale)
        for key in stale:
            del vectors[key]
    if cache.n_corrupt:
        logg.warning(
            f"{cache.n_corrupt} corrupt cache entries found and removed; they are recomputed"
        )
    if n_stale:
        logg.warning(
            f"{n_stale} cached vectors are not {expected}-dimensional ({why}) or hold NaN or "
            "infinite values; they are recomputed"
        )
    return _Embedded(cache, vectors, expected, why)


def _confirm_cost(
    embedder: OpenAIEmbedder,
    texts: list[str],
    *,
    price_per_million_tokens: float | None,
    batch_api: bool,
    confirm: Callable[[str], bool] | None,
) -> None:
    """Log what sending ``texts`` costs; raise :class:`Cancelled` if ``confirm`` declines."""
    estimate = estimate_cost(
        texts,
        embedder.model,
        price_per_million_tokens=price_per_million_tokens,
        batch_api=batch_api,
    )
    logg.warning(f"embedding with {embedder.model}: {estimate}")
    if confirm is not None and not confirm(f"embed with {embedder!r}: {estimate}"):
        raise Cancelled("Nothing was sent.")


def _embed_by_batch_api(
    embedder: OpenAIEmbedder, missing: dict[str, str], embedded: _Embedded, *, poll_interval: float
) -> None:
    """Embed ``{key: text}`` through the Batch API, adding each vector as it comes."""
    expected = embedded.expected
    refused: list[str] = []

    def store(key: str, vector) -> None:
        vector = np.asarray(vector, dtype=np.float32)
        wrong_shape = expected is not None and vector.shape != (expected,)
        if wrong_shape or not np.isfinite(vector).all():
            refused.append(key)  # never cached: it would make every later table ragged or NaN
            return
        embedded.add(key, vector)  # at once: nothing paid for is lost to a later error

    embed_batch_api(
        embedder,
        missing,
        state_dir=embedded.cache.path.parent / "batches",
        store=store,
        poll_interval=poll_interval,
    )
    if refused:
        raise EmbeddingError(
            f"{len(refused)} vectors from the Batch API are not {expected}-dimensional "
            f"({embedded.why}) or hold NaN or infinite values; they were not cached, the other "
            f"{len(missing) - len(refused)} were."
        )


def embed_batch_api(
    embedder: OpenAIEmbedder,
    texts: dict[str, str],
    *,
    state_dir: Path,
    store: Callable[[str, np.ndarray], None],
    poll_interval: float = 30.0,
    timeout: float = 26 * 3600,
    max_requests: int = MAX_BATCH_REQUESTS,
) -> None:
    """Embed ``{custom_id: text}`` through the Batch API, handing each vector to ``store``.

    Texts go in jobs of at most ``max_requests`` (OpenAI's limit is 50,000). Each job is
    recorded in ``state_dir`` (model, dimensions, server, the hash of its texts' ids; never
    the key) before it is submitted, and again with its id before it is polled, so a run
    interrupted or killed at any point and started again polls the same job instead of
    paying for a new one. A job is only ever used for the texts it was given: each custom
    id is the hash of one text, and output lines for ids the job was not given are dropped.
    The few requests a completed job reports as failed are retried synchronously; a job
    that fails, expires or is cancelled raises :class:`BatchJobError` after what it did
    finish has been stored.
    """
    records = JobRecords(state_dir)
    pending = dict(texts)
    wait = {"poll_interval": poll_interval, "timeout": timeout}
    # first, jobs an earlier run submitted for any of these texts: collect, don't pay again
    for key, record in records.items():
        ids = [cid for cid in _record_ids(record, embedder.identity()) if cid in pending]
        if ids:
            job = {cid: pending.pop(cid) for cid in ids}
            if not _resume_job(embedder, records, key, record, job, store, **wait):
                pending.update(job)
    ids = list(pending)
    for start in range(0, len(ids), max_requests):
        job = {cid: pending[cid] for cid in ids[start : start + max_requests]}
        key, record = _job_record(embedder, job)
        records.put(key, record)  # before paying: a run killed from here on finds the job
        record.update(embedder.submit_batch(job, key, since=record["created_at"]))
        records.put(key, record)  # with the job's id, before polling
        _finish_job(embedder, records, key, record, job, store, **wait)


def _job_record(embedder: OpenAIEmbedder, job: dict[str, str]) -> tuple[str, dict]:
    """Key and record of a job about to be submitted: what it holds, not yet its id."""
    ids = sorted(job)
    texts_sha256 = hashlib.sha256(json.dumps(ids).encode()).hexdigest()
    key = cache_key(embedder.model, embedder.dimensions, embedder.server, texts_sha256)
    record = {**embedder.identity(), "texts_sha256": texts_sha256, "custom_ids": ids}
    return key, {**record, "created_at": time.time(), "batch_id": None, "input_file_id": None}


def _record_ids(record: dict, identity: dict) -> list[str]:
    """The custom ids of a job record made by an embedder of ``identity``; else none."""
    if isinstance(record.get("identity"), list):  # ``batch-{id}.json``, before job keys
        names = ["model", "dimensions", "server"]
        record = {**dict(zip(names, record["identity"], strict=False)), **record}
    if any(record.get(k) != v for k, v in identity.items()):
        return []
    ids = record.get("custom_ids")
    return [i for i in ids if isinstance(i, str)] if isinstance(ids, list) else []


def _resume_job(embedder, records: JobRecords, key: str, record: dict, job, store, **wait) -> bool:
    """Finish a recorded job; ``False`` (record dropped) if there is none to finish."""
    if record.get("batch_id") is None:  # interrupted while submitting: was it submitted?
        batch = embedder.find_batch(key, since=record.get("created_at", 0))
        if batch is None:
            records.remove(key)
            return False
        record.update(batch_id=batch.id, input_file_id=batch.input_file_id)
        records.put(key, record)
    logg.info(f"resuming Batch API job {record['batch_id']}")
    try:
        _finish_job(embedder, records, key, record, job, store, **wait)
    except NotOurJob as err:
        logg.warning(f"{err}; its texts are submitted anew")
        records.remove(key)
        return False
    return True


def _finish_job(
    embedder, records: JobRecords, key: str, record: dict, texts: dict[str, str], store, **wait
) -> None:
    """Wait for a job, store its vectors, retry its failed requests; raise if it died."""
    batch = embedder.wait_batch(
        record["batch_id"], input_file_id=record.get("input_file_id"), **wait
    )
    vectors, problems = embedder.collect_batch(batch, set(record["custom_ids"]))
    for cid, vector in vectors.items():
        store(cid, vector)
    records.remove(key)  # the job is over either way: a rerun submits anew
    if problems:
        raise EmbeddingError(
            f"Batch API job {batch.id}: the server at {embedder.server} answered "
            f"{len(problems)} of {len(texts)} requests with no usable vector "
            f"({'; '.join(sorted(set(problems))[:3])}). The {len(vectors)} good vectors were "
            f"cached; those were not. Check that the server serves {embedder.model!r} under "
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
        logg.warning(
            f"{len(missing)} of {len(texts)} batch requests failed; retrying them synchronously"
        )
        for group in embedder.batches([texts[c] for c in missing]):
            answer = embedder.embed([texts[missing[j]] for j in group])
            for j, vector in zip(group, answer, strict=True):
                store(missing[j], vector)


def _embed_by_requests(
    embedder: Embedder, missing: dict[str, str], embedded: _Embedded, *, progress: bool
) -> None:
    """Embed ``{key: text}`` in the embedder's requests, adding each answer as it comes."""
    order = list(missing)
    groups = embedder.batches([missing[k] for k in order])
    with progress_bar(
        total=len(order),
        desc=f"embedding ({embedder.model})",
        unit="text",
        disable=not progress,
    ) as bar:
        for group in groups:
            batch = _checked(
                embedder.embed([missing[order[j]] for j in group]),
                len(group),
                embedded.expected,
                embedded.why,
                embedder,
            )
            if embedded.expected is None:  # the first answer sets the dimension for the rest
                embedded.expected = batch.shape[1]
                embedded.why = (
                    f"the length of the first vectors {embedder.model} returned in this run"
                )
            for j, vector in zip(group, batch, strict=True):
                embedded.add(order[j], vector)  # cached at once: a crash loses one request
            bar.update(len(group))


def _checked(batch, n_texts: int, expected: int | None, why: str | None, embedder) -> np.ndarray:
    """An embedder's answer to ``n_texts`` texts as float32 rows, checked before anything is cached."""
    try:
        batch = np.asarray(batch, dtype=np.float32)
    except (TypeError, ValueError) as err:  # ragged rows, or not numbers
        raise EmbeddingError(
            f"{embedder!r} returned something other than one vector of numbers per text: {err}."
        ) from err
    if batch.ndim != 2 or len(batch) != n_texts:
        raise EmbeddingError(
            f"{embedder!r} returned an array of shape {batch.shape} for {n_texts} texts; "
            "it must return one vector per text. Nothing from this answer was cached."
        )
    if expected is not None and batch.shape[1] != expected:
        raise EmbeddingError(
            f"{embedder!r} returned {batch.shape[1]}-dimensional vectors, expected {expected} "
            f"({why}). Nothing from this answer was cached. If the model behind this name "
            "changed, embed into another cache_dir."
        )
    if not np.isfinite(batch).all():
        raise EmbeddingError(
            f"{embedder!r} returned NaN or infinite values; nothing from this answer was cached."
        )
    return batch
