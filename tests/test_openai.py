"""The whole OpenAI path through the real ``openai`` client against a local server."""

import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scanpy as sc
from openai_server import (
    FakeOpenAI,
    fake_embedding,
    not_json,
    one_vector_short,
    strings_for_numbers,
    without_data,
    wrong_dimension,
)

import sc_genept
from sc_genept.genes import (
    Cache,
    EmbeddingError,
    OpenAIEmbedder,
    SentenceTransformerEmbedder,
    build_table,
    embed_texts,
    estimate_cost,
    text,
)
from sc_genept.genes._embed_texts import text_key

KEY = "sk-test-DO-NOT-WRITE-3b9f0c"
TEXTS = ["CD3E: CD3 epsilon.", "MS4A1: membrane spanning 4-domains A1.", "LYZ: lysozyme."]


@pytest.fixture
def server():
    with FakeOpenAI() as fake:
        yield fake


@pytest.fixture
def embedder(server):
    return OpenAIEmbedder("text-embedding-3-large", dimensions=16, base_url=server.url, api_key=KEY)


def expected(texts, model="text-embedding-3-large", dims=16):
    return np.asarray([fake_embedding(model, t, dims) for t in texts], dtype=np.float32)


def test_sync_requests_carry_model_dimensions_and_key(server, embedder, tmp_path):
    vectors = embed_texts(TEXTS, embedder, cache_dir=tmp_path)
    np.testing.assert_allclose(vectors, expected(TEXTS), rtol=1e-6)
    (request,) = [r for r in server.requests if r["path"] == "/v1/embeddings"]
    assert request["body"]["model"] == "text-embedding-3-large"
    assert request["body"]["dimensions"] == 16
    assert request["body"]["input"] == TEXTS
    assert request["authorization"] == f"Bearer {KEY}"


def test_warm_cache_sends_no_embedding_request(server, embedder, tmp_path):
    embed_texts(TEXTS, embedder, cache_dir=tmp_path)
    n_before = server.count("POST", "/v1/embeddings")
    again = embed_texts([TEXTS[2], TEXTS[0]], embedder, cache_dir=tmp_path)
    assert server.count("POST", "/v1/embeddings") == n_before == 1
    np.testing.assert_allclose(again, expected([TEXTS[2], TEXTS[0]]), rtol=1e-6)
    # another model or dimensionality is another cache entry
    embed_texts(
        TEXTS[:1],
        OpenAIEmbedder("text-embedding-3-large", dimensions=8, base_url=server.url, api_key=KEY),
        cache_dir=tmp_path,
    )
    assert server.count("POST", "/v1/embeddings") == 2


def test_429_and_500_are_retried(server, embedder, tmp_path):
    server.fail_next = [429, 500, 503]
    vectors = embed_texts(TEXTS, embedder, cache_dir=tmp_path)
    assert server.count("POST", "/v1/embeddings") == 4
    np.testing.assert_allclose(vectors, expected(TEXTS), rtol=1e-6)


def test_requests_are_token_aware(server, tmp_path):
    small = OpenAIEmbedder(
        "text-embedding-3-small", base_url=server.url, api_key=KEY, max_batch_tokens=12
    )
    texts = [f"gene {i} " + "word " * 8 for i in range(5)]  # ~12 tokens each at 4 chars/token
    vectors = embed_texts(texts, small, cache_dir=tmp_path)
    sizes = [len(r["body"]["input"]) for r in server.requests if r["path"] == "/v1/embeddings"]
    assert sizes == [1, 1, 1, 1, 1]
    np.testing.assert_allclose(vectors, expected(texts, "text-embedding-3-small", None), rtol=1e-6)


def test_corrupt_cache_entry_is_recomputed(server, embedder, tmp_path):
    embed_texts(TEXTS, embedder, cache_dir=tmp_path)
    entry = next(p for p in (tmp_path / "embeddings").rglob("*") if p.is_file())
    entry.write_bytes(entry.read_bytes()[:-5] + b"xxxxx")
    vectors = embed_texts(TEXTS, embedder, cache_dir=tmp_path)
    assert server.count("POST", "/v1/embeddings") == 2
    (resent,) = [r["body"]["input"] for r in server.requests if r["path"] == "/v1/embeddings"][1:]
    assert len(resent) == 1
    np.testing.assert_allclose(vectors, expected(TEXTS), rtol=1e-6)


def test_batch_api(server, embedder, tmp_path):
    server.polls_until_done = 2
    vectors = embed_texts(TEXTS, embedder, cache_dir=tmp_path, batch_api=True, poll_interval=0.01)
    np.testing.assert_allclose(vectors, expected(TEXTS), rtol=1e-6)
    assert server.count("POST", "/v1/files") == 1 and server.count("POST", "/v1/batches") == 1
    assert server.count("POST", "/v1/embeddings") == 0
    batch = next(iter(server.batches.values()))
    assert batch["body"]["endpoint"] == "/v1/embeddings"
    assert {line["body"]["dimensions"] for line in batch["lines"]} == {16}
    assert not list((tmp_path / "batches").iterdir())  # the job's state file is gone once done


def test_failed_batch_requests_are_retried_synchronously(server, embedder, tmp_path):
    from sc_genept.genes._embed_texts import text_key

    server.fail_custom_ids = {text_key(embedder, TEXTS[1])}
    vectors = embed_texts(TEXTS, embedder, cache_dir=tmp_path, batch_api=True, poll_interval=0.01)
    (retry,) = [r["body"]["input"] for r in server.requests if r["path"] == "/v1/embeddings"]
    assert retry == [TEXTS[1]]
    np.testing.assert_allclose(vectors, expected(TEXTS), rtol=1e-6)


@pytest.mark.slow
def test_killed_batch_run_resumes_the_same_job(server, tmp_path):
    server.hold_batches = True
    script = textwrap.dedent(
        f"""
        from sc_genept.genes import OpenAIEmbedder, embed_texts
        embedder = OpenAIEmbedder("text-embedding-3-large", dimensions=16, base_url={server.url!r})
        embed_texts({TEXTS!r}, embedder, cache_dir={str(tmp_path)!r}, batch_api=True, poll_interval=0.02)
        """
    )
    env = {**os.environ, "OPENAI_API_KEY": KEY}
    child = subprocess.Popen(
        [sys.executable, "-c", script],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while server.count("GET", r"/v1/batches/[\w-]+") < 3:
        assert child.poll() is None and time.monotonic() < deadline, (
            "the child never started polling"
        )
        time.sleep(0.05)
    child.send_signal(signal.SIGKILL)  # killed mid-poll: no chance to clean up
    child.wait()
    assert len(list((tmp_path / "batches").iterdir())) == 1

    server.hold_batches = False
    embedder = OpenAIEmbedder(
        "text-embedding-3-large", dimensions=16, base_url=server.url, api_key=KEY
    )
    vectors = embed_texts(TEXTS, embedder, cache_dir=tmp_path, batch_api=True, poll_interval=0.01)
    np.testing.assert_allclose(vectors, expected(TEXTS), rtol=1e-6)
    assert server.count("POST", "/v1/files") == 1  # uploaded once
    assert server.count("POST", "/v1/batches") == 1  # submitted once: no duplicate paid job
    assert server.count("POST", "/v1/embeddings") == 0


def test_chat_enrichment_is_cached(server, tmp_path):
    texts = pd.DataFrame({"symbol": ["CD3E", "LYZ"], "text": TEXTS[::2]})
    enriched = text.enrich(
        texts, model="gpt-4o-mini", base_url=server.url, api_key=KEY, cache_dir=tmp_path
    )
    assert enriched["enrichment"].tolist() == [
        "CD3E is documented in T cells (answer by gpt-4o-mini).",
        "LYZ is documented in T cells (answer by gpt-4o-mini).",
    ]
    assert enriched["text"][0] == TEXTS[0] + "\n\n" + enriched["enrichment"][0]
    request = next(r for r in server.requests if r["path"] == "/v1/chat/completions")
    assert request["body"]["model"] == "gpt-4o-mini"
    assert "tissues and cell types" in request["body"]["messages"][1]["content"]
    text.enrich(texts, model="gpt-4o-mini", base_url=server.url, api_key=KEY, cache_dir=tmp_path)
    assert server.count("POST", "/v1/chat/completions") == 2  # the rerun asked nothing


def test_the_api_key_is_written_nowhere(server, tmp_path, caplog, pbmc):
    caplog.set_level(logging.DEBUG)
    embedder = OpenAIEmbedder(
        "text-embedding-3-small", dimensions=16, base_url=server.url, api_key=KEY
    )  # short vectors keep the model below fast
    symbols = list(pbmc.raw.var_names[:200])
    texts = pd.DataFrame({"symbol": symbols, "text": [f"{s}: a gene." for s in symbols]})
    enriched = text.enrich(
        texts[:5],
        model="gpt-4o-mini",
        base_url=server.url,
        api_key=KEY,
        cache_dir=tmp_path / "cache",
    )
    texts = pd.concat([enriched, texts[5:]], ignore_index=True)
    table = build_table(
        texts,
        embedder,
        text_source="test",
        cache_dir=tmp_path / "cache",
        batch_api=True,
        poll_interval=0.01,
    )
    table.save(tmp_path / "table.parquet")
    sc.tl.genept_embed(pbmc, gene_embeddings=table, use_raw=True)
    pbmc.write_h5ad(tmp_path / "pbmc.h5ad")
    model_dir = tmp_path / "model"
    labelled = pbmc.copy()
    sc_genept.model.GenePTClassifier.setup_anndata(
        labelled, labels_key="cell_type_ontology_term_id"
    )
    model = sc_genept.model.GenePTClassifier(labelled, n_layers=0)
    model.train(max_epochs=2, enable_progress_bar=False)
    model.save(model_dir)
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(written) > 5
    for path in written:
        assert KEY.encode() not in path.read_bytes(), path
    assert KEY not in caplog.text
    assert KEY not in repr(embedder) and KEY not in str(pbmc.uns["X_genept"])


def test_local_server_needs_no_key(server, tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    local = OpenAIEmbedder("nomic-embed-text", base_url=server.url)
    assert embed_texts(TEXTS[:1], local, cache_dir=tmp_path).shape == (1, 8)


def test_cost_estimate():
    texts = ["a" * 400, "b" * 40]  # 100 + 10 tokens at 4 chars/token when tiktoken has no encoding
    est = estimate_cost(texts, "text-embedding-3-large")
    assert est.n_texts == 2 and est.n_tokens > 0
    assert est.usd == pytest.approx(est.n_tokens / 1e6 * 0.13)
    assert estimate_cost(texts, "text-embedding-3-large", batch_api=True).usd == pytest.approx(
        est.usd / 2
    )
    assert estimate_cost(texts, "my-local-model").usd is None
    assert estimate_cost(
        texts, "my-local-model", price_per_million_tokens=1.0
    ).usd == pytest.approx(est.n_tokens / 1e6)
    assert "tokens" in str(est)


def test_cli_embeds_with_an_openai_compatible_server(server, tmp_path, monkeypatch, capsys):
    from sc_genept import cli

    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    texts_path = text.write_texts(
        pd.DataFrame({"symbol": ["CD3E", "MS4A1", "LYZ"], "text": TEXTS}), tmp_path / "texts.csv"
    )
    out = tmp_path / "table.parquet"
    argv = [
        "genes",
        "embed",
        str(texts_path),
        "--out",
        str(out),
        "--provider",
        "openai",
        "--base-url",
        server.url,
    ]
    argv += [
        "--model",
        "text-embedding-3-large",
        "--dimensions",
        "16",
        "--cache-dir",
        str(tmp_path / "c"),
    ]
    assert cli.main(argv) == 0  # a server on this machine costs nothing: no question asked
    table = sc_genept.genes.load(out)
    np.testing.assert_allclose(table.embeddings, expected(TEXTS), rtol=1e-6)
    assert table.ensembl_ids[0] == "ENSG00000198851"  # from the bundled NCBI map
    assert "dimensions=16" in table.provenance.embedding_model
    assert KEY.encode() not in Path(out).read_bytes()
    assert "GeneEmbeddings(3 genes" in capsys.readouterr().out


def test_cli_enriches(server, tmp_path, monkeypatch):
    from sc_genept import cli

    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    sample = Path(__file__).parent / "data" / "mygene_sample.json"
    argv = ["genes", "text", "--from", "mygene", str(sample), "--enrich-model", "gpt-4o-mini"]
    argv += ["--base-url", server.url, "--cache-dir", str(tmp_path / "c")]
    assert cli.main([*argv, "--out", str(tmp_path / "t.parquet")]) == 0  # local: nothing to confirm
    enriched = text.read_texts(tmp_path / "t.parquet")
    assert enriched["enrichment"].str.contains("documented").all()
    assert server.count("POST", "/v1/chat/completions") == 2


def test_declined_confirmation_sends_nothing(server, embedder, tmp_path):
    from sc_genept.genes import Cancelled

    questions = []
    with pytest.raises(Cancelled):
        embed_texts(
            TEXTS, embedder, cache_dir=tmp_path, confirm=lambda what: questions.append(what)
        )
    texts = pd.DataFrame({"symbol": ["CD3E"], "text": TEXTS[:1]})
    with pytest.raises(Cancelled):
        text.enrich(
            texts, base_url=server.url, api_key=KEY, cache_dir=tmp_path, confirm=lambda what: False
        )
    assert server.requests == []
    assert "tokens" in questions[0] and "text-embedding-3-large" in questions[0]
    # once everything is cached there is nothing to confirm
    embed_texts(TEXTS, embedder, cache_dir=tmp_path)
    embed_texts(TEXTS, embedder, cache_dir=tmp_path, confirm=lambda what: pytest.fail("asked"))


def test_cli_asks_before_paid_calls_and_declines_without_a_terminal(monkeypatch):
    import argparse
    import io

    from sc_genept import cli

    monkeypatch.setattr("sys.stdin", io.StringIO("y\n"))  # not a terminal: no answer counts
    assert cli._confirmer(argparse.Namespace(yes=False, base_url=None))("embed 3 texts") is False
    assert cli._confirmer(argparse.Namespace(yes=True, base_url=None)) is None
    local = argparse.Namespace(yes=False, base_url="http://127.0.0.1:8000/v1")
    assert cli._confirmer(local) is None


def test_a_crash_while_storing_does_not_pay_twice(server, embedder, tmp_path):
    from sc_genept.genes import Cache
    from sc_genept.genes._embed_texts import embed_batch_api, text_key

    cache = Cache(tmp_path, "embeddings")

    def store_then_crash(key, vector):
        cache.put_vector(key, vector)
        if len(list(cache.path.rglob("*"))) > 2:  # a folder and the first entry exist
            raise KeyboardInterrupt

    jobs = {text_key(embedder, t): t for t in TEXTS}
    with pytest.raises(KeyboardInterrupt):
        embed_batch_api(
            embedder,
            jobs,
            state_dir=tmp_path / "batches",
            store=store_then_crash,
            poll_interval=0.01,
        )
    vectors = embed_texts(TEXTS, embedder, cache_dir=tmp_path, batch_api=True, poll_interval=0.01)
    np.testing.assert_allclose(vectors, expected(TEXTS), rtol=1e-6)
    assert server.count("POST", "/v1/batches") == 1  # the rerun collected the same job
    assert not list((tmp_path / "batches").iterdir())


def cached_files(tmp_path):
    return [p for p in (tmp_path / "embeddings").rglob("*") if p.is_file()]


def test_wrong_dimension_is_refused_and_not_cached(server, embedder, tmp_path):
    server.mangle_next = [wrong_dimension(12)]
    with pytest.raises(
        EmbeddingError, match=r"12-dimensional vectors, expected 16 \(dimensions=16"
    ):
        embed_texts(TEXTS, embedder, cache_dir=tmp_path)
    assert cached_files(tmp_path) == []  # nothing of the bad answer poisons later runs
    np.testing.assert_allclose(embed_texts(TEXTS, embedder, cache_dir=tmp_path), expected(TEXTS))
    # without dimensions=, an OpenAI model's own dimension is expected
    server.mangle_all = wrong_dimension(8)
    small = OpenAIEmbedder("text-embedding-3-small", base_url=server.url, api_key=KEY)
    with pytest.raises(EmbeddingError, match="expected 1536 .the dimension of text-embedding-3"):
        embed_texts(TEXTS, small, cache_dir=tmp_path / "other")
    assert cached_files(tmp_path / "other") == []


def test_unknown_model_vectors_must_agree(server, tmp_path):
    local = OpenAIEmbedder("nomic-embed-text", base_url=server.url)  # 8 dims, not known here
    embed_texts(TEXTS[:1], local, cache_dir=tmp_path)
    server.mangle_all = wrong_dimension(12)  # the server now serves another model
    with pytest.raises(EmbeddingError, match="12-dimensional vectors, expected 8"):
        embed_texts(TEXTS, local, cache_dir=tmp_path)
    assert len(cached_files(tmp_path)) == 1


@pytest.mark.parametrize("stale", ["longer", "nan"])
@pytest.mark.parametrize("local", [False, True])
def test_cached_vectors_of_the_wrong_dimension_are_misses(server, tmp_path, local, stale):
    embedder = (
        OpenAIEmbedder("nomic-embed-text", base_url=server.url)
        if local
        else OpenAIEmbedder("text-embedding-3-large", dimensions=16, base_url=server.url)
    )
    dims = 8 if local else 16
    embed_texts(TEXTS[1:], embedder, cache_dir=tmp_path)
    # a vector of another length (or of NaN) under the key of TEXTS[0], as an older version
    # or a misbehaving server could leave
    left = np.ones(dims + 4) if stale == "longer" else np.full(dims, np.nan)
    Cache(tmp_path, "embeddings").put_vector(text_key(embedder, TEXTS[0]), left)
    vectors = embed_texts(TEXTS, embedder, cache_dir=tmp_path)
    model = "nomic-embed-text" if local else "text-embedding-3-large"
    np.testing.assert_allclose(vectors, expected(TEXTS, model, None if local else 16), rtol=1e-6)
    resent = [r["body"]["input"] for r in server.requests if r["path"] == "/v1/embeddings"][1:]
    assert resent == [[TEXTS[0]]]  # only the stale entry was paid for again


@pytest.mark.parametrize(
    ("mangle", "what"),
    [
        (not_json, "not JSON"),
        (without_data, "no list of embeddings under 'data'"),
        (strings_for_numbers, "not lists of numbers"),
        (one_vector_short, "2 embeddings for 3 texts"),
    ],
)
def test_malformed_answers_are_refused_and_not_cached(server, tmp_path, mangle, what):
    port = server.url.split(":")[-1]
    with_login = f"http://user:s3cret@127.0.0.1:{port}"  # credentials stay out of messages
    embedder = OpenAIEmbedder("text-embedding-3-large", dimensions=16, base_url=with_login)
    server.mangle_next = [mangle]
    with pytest.raises(EmbeddingError) as info:
        embed_texts(TEXTS, embedder, cache_dir=tmp_path)
    message = str(info.value)
    assert f"server at http://127.0.0.1:{port}" in message
    assert "did not answer like the OpenAI embeddings API" in message and what in message
    assert "s3cret" not in message and "user" not in message
    assert cached_files(tmp_path) == []


def test_batch_api_caches_good_vectors_and_refuses_bad_ones(server, embedder, tmp_path):
    texts = [*TEXTS, "NKG7: natural killer cell granule protein 7."]
    server.mangle_next = [wrong_dimension(12), not_json, without_data]  # the job's first three
    with pytest.raises(EmbeddingError, match=r"3 of 4 requests.*12-dimensional vectors"):
        embed_texts(texts, embedder, cache_dir=tmp_path, batch_api=True, poll_interval=0.01)
    assert len(cached_files(tmp_path)) == 1  # the good one, paid for, is kept
    vectors = embed_texts(texts, embedder, cache_dir=tmp_path, batch_api=True, poll_interval=0.01)
    np.testing.assert_allclose(vectors, expected(texts), rtol=1e-6)
    assert [len(b["lines"]) for b in server.batches.values()] == [4, 3]


def test_unreachable_server_is_a_clear_error(tmp_path):
    with FakeOpenAI() as gone:
        url = gone.url
    embedder = OpenAIEmbedder("nomic-embed-text", base_url=url, max_retries=0, timeout=5)
    with pytest.raises(EmbeddingError, match="Could not reach the embeddings server at http"):
        embed_texts(TEXTS, embedder, cache_dir=tmp_path)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"dimensions": 0}, ValueError, "dimensions must be ≥ 1"),
        ({"dimensions": -8}, ValueError, "dimensions must be ≥ 1"),
        ({"dimensions": 16.5}, TypeError, "dimensions must be a whole number"),
        ({"dimensions": 4096}, ValueError, "1 to 3072"),
        ({"max_batch_size": 0}, ValueError, "max_batch_size"),
        ({"max_batch_tokens": -1}, ValueError, "max_batch_tokens"),
        ({"max_retries": -1}, ValueError, "max_retries"),
        ({"timeout": 0}, ValueError, "timeout"),
        ({"model": ""}, ValueError, "model must be a non-empty string"),
    ],
)
def test_nonsense_embedder_options_are_refused(server, kwargs, error, message):
    with pytest.raises(error, match=message):
        OpenAIEmbedder(**{"model": "text-embedding-3-large", **kwargs}, base_url=server.url)


def test_nonsense_embedding_arguments_are_refused(embedder, tmp_path):
    with pytest.raises(ValueError, match="batch_size must be ≥ 1"):
        SentenceTransformerEmbedder(batch_size=0)
    with pytest.raises(ValueError, match="texts is empty"):
        embed_texts([], embedder, cache_dir=tmp_path)
    with pytest.raises(TypeError, match="list of strings"):
        embed_texts("CD3E: CD3 epsilon.", embedder, cache_dir=tmp_path)  # not one per letter
    with pytest.raises(ValueError, match="poll_interval"):
        embed_texts(TEXTS, embedder, cache_dir=tmp_path, poll_interval=-1)
    with pytest.raises(ValueError, match="price_per_million_tokens"):
        estimate_cost(TEXTS, "text-embedding-3-large", price_per_million_tokens=-0.1)


# ---- faults: retries, timeouts, killed runs and interrupted Batch API jobs (issue 19) -------


@pytest.fixture
def fast_backoff(monkeypatch):
    """A 20 ms first backoff (0.5 s in use), so retries are seen without long sleeps."""
    from sc_genept.genes import _embedders

    monkeypatch.setattr(_embedders, "_BACKOFF_BASE", 0.02)
    return 0.02


def _three_500s_then(server, what, embedder, tmp_path):
    if what == "requests":
        return embed_texts(TEXTS, embedder, cache_dir=tmp_path)
    if what == "batch_api":
        return embed_texts(TEXTS, embedder, cache_dir=tmp_path, batch_api=True, poll_interval=0)
    texts = pd.DataFrame({"symbol": ["CD3E"], "text": TEXTS[:1]})
    return text.enrich(texts, base_url=server.url, api_key=KEY, cache_dir=tmp_path, progress=False)


@pytest.mark.parametrize("what", ["requests", "batch_api", "chat"])
def test_three_500s_in_a_row_then_success(
    server, embedder, tmp_path, fast_backoff, what, verbosity, capfd
):
    verbosity("info")
    server.retry_after_ms = None  # no server-directed wait: the backoff is ours
    server.fail_next = [500, 500, 500]
    result = _three_500s_then(server, what, embedder, tmp_path)
    assert "HTTP 500; retry 3 of 8 in" in capfd.readouterr().err  # scanpy-style log line
    if what != "chat":
        np.testing.assert_allclose(result, expected(TEXTS), rtol=1e-6)
    times = [r["time"] for r in server.requests[:4]]
    assert len({r["path"] for r in server.requests[:4]}) == 1  # the same request, 4 times
    gaps = np.diff(times)
    # exponential: each wait at least 3/4 (the jitter) of base * 2**i; short in total
    assert all(gap >= 0.75 * fast_backoff * 2**i for i, gap in enumerate(gaps)), gaps
    assert gaps.sum() < 1.0, gaps


def test_retries_are_bounded(server, tmp_path, fast_backoff):
    server.retry_after_ms = None
    server.fail_next = [500, 500, 500]
    embedder = OpenAIEmbedder(
        "text-embedding-3-large", dimensions=16, base_url=server.url, api_key=KEY, max_retries=2
    )
    with pytest.raises(EmbeddingError, match="HTTP 500"):
        embed_texts(TEXTS, embedder, cache_dir=tmp_path)
    assert server.count("POST", "/v1/embeddings") == 3  # the first try and 2 retries
    assert cached_files(tmp_path) == []


def test_a_server_that_never_answers_times_out(server, tmp_path, fast_backoff):
    assert OpenAIEmbedder("text-embedding-3-large", base_url=server.url).client.timeout == 120
    server.hold_embeddings_from = 1  # accepts the connection, reads the request, says nothing
    embedder = OpenAIEmbedder("nomic-embed-text", base_url=server.url, timeout=0.3, max_retries=5)
    start = time.monotonic()
    with pytest.raises(EmbeddingError, match=r"did not answer within 0.3 s.*timeout="):
        embed_texts(TEXTS, embedder, cache_dir=tmp_path)
    # a timed-out request is tried once more, not max_retries times: each try costs timeout
    assert server.count("POST", "/v1/embeddings") == 2
    assert time.monotonic() - start < 3


def test_killed_mid_request_neither_hangs_nor_pays_twice(server, tmp_path):
    server.hold_embeddings_from = 2  # the second of three requests is in flight at the kill
    script = textwrap.dedent(
        f"""
        from sc_genept.genes import OpenAIEmbedder, embed_texts
        embedder = OpenAIEmbedder("text-embedding-3-large", dimensions=16,
                                  base_url={server.url!r}, max_batch_size=1)
        embed_texts({TEXTS!r}, embedder, cache_dir={str(tmp_path)!r}, progress=False)
        """
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script],
        env={**os.environ, "OPENAI_API_KEY": KEY},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while server.count("POST", "/v1/embeddings") < 2:
        assert child.poll() is None and time.monotonic() < deadline, "no second request came"
        time.sleep(0.02)
    child.send_signal(signal.SIGKILL)  # no chance to clean up
    child.wait()
    assert len(cached_files(tmp_path)) == 1  # the first answer was cached as it came
    server.release()
    embedder = OpenAIEmbedder(
        "text-embedding-3-large", dimensions=16, base_url=server.url, api_key=KEY, max_batch_size=1
    )
    vectors = embed_texts(TEXTS, embedder, cache_dir=tmp_path, progress=False)
    np.testing.assert_allclose(vectors, expected(TEXTS), rtol=1e-6)
    sent = [r["body"]["input"] for r in server.requests if r["path"] == "/v1/embeddings"]
    # the paid first request is not sent again; the one in flight at the kill is redone once
    assert sent == [[TEXTS[0]], [TEXTS[1]], [TEXTS[1]], [TEXTS[2]]]


def interrupt_at(server, method: str, pattern: str, n: int = 1) -> None:
    """Ctrl-C this test's (main) thread when the server receives the n-th such request."""
    import _thread

    def hook(request):
        if server.count(method, pattern) == n:
            server.after_request = None
            _thread.interrupt_main()

    server.after_request = hook


def batch_run(texts, tmp_path, server):
    """A fresh embedder (as a new process would have) through the Batch API."""
    embedder = OpenAIEmbedder(
        "text-embedding-3-large", dimensions=16, base_url=server.url, api_key=KEY
    )
    return embed_texts(texts, embedder, cache_dir=tmp_path, batch_api=True, poll_interval=0.01)


def records(tmp_path) -> dict[str, dict]:
    import json

    return {p.name: json.loads(p.read_text()) for p in (tmp_path / "batches").glob("*.json")}


def test_batch_job_interrupted_while_polling_is_resumed(server, tmp_path):
    import hashlib
    import json

    from sc_genept.genes._cache import cache_key

    server.hold_batches = True
    interrupt_at(server, "GET", r"/v1/batches/[\w-]+", n=2)
    with pytest.raises(KeyboardInterrupt):
        batch_run(TEXTS, tmp_path, server)
    (batch_id,) = server.batches
    ((name, record),) = records(tmp_path).items()
    # durable record of what was submitted, keyed by model, dimensions and the texts' hash
    embedder = OpenAIEmbedder("text-embedding-3-large", dimensions=16, base_url=server.url)
    ids = sorted(text_key(embedder, t) for t in TEXTS)
    texts_sha256 = hashlib.sha256(json.dumps(ids).encode()).hexdigest()
    assert record["batch_id"] == batch_id and record["texts_sha256"] == texts_sha256
    assert (record["model"], record["dimensions"]) == ("text-embedding-3-large", 16)
    assert name == cache_key("text-embedding-3-large", 16, embedder.server, texts_sha256) + ".json"
    assert KEY not in (tmp_path / "batches" / name).read_text()

    server.hold_batches = False
    n_polls = server.count("GET", rf"/v1/batches/{batch_id}")
    np.testing.assert_allclose(batch_run(TEXTS, tmp_path, server), expected(TEXTS), rtol=1e-6)
    assert server.count("POST", "/v1/batches") == 1  # resumed, never resubmitted
    assert server.count("GET", rf"/v1/batches/{batch_id}") > n_polls  # the same job polled
    assert server.count("POST", "/v1/embeddings") == 0
    assert records(tmp_path) == {}


def test_an_outage_while_polling_is_waited_out(server, tmp_path, fast_backoff, monkeypatch):
    from sc_genept.genes import _embedders

    monkeypatch.setattr(_embedders, "_BACKOFF_MAX", 0.05)
    server.polls_until_done = 3

    def outage(request):  # the first poll starts an outage longer than the retries last
        if request["method"] == "GET" and "/v1/batches/" in request["path"]:
            server.after_request = None
            server.fail_next = [503] * 20

    server.after_request = outage
    np.testing.assert_allclose(batch_run(TEXTS, tmp_path, server), expected(TEXTS), rtol=1e-6)
    assert server.count("POST", "/v1/batches") == 1  # waited out, not resubmitted


def test_an_interrupted_job_is_never_mixed_with_other_texts(server, tmp_path):
    server.hold_batches = True
    interrupt_at(server, "GET", r"/v1/batches/[\w-]+", n=1)
    with pytest.raises(KeyboardInterrupt):
        batch_run(TEXTS, tmp_path, server)
    (old,) = server.batches
    server.hold_batches = False
    # other texts: a job of their own; the old one is neither polled nor used, but kept
    others = ["GNLY: granulysin.", "NKG7: natural killer cell granule protein 7."]
    np.testing.assert_allclose(batch_run(others, tmp_path, server), expected(others), rtol=1e-6)
    assert server.count("GET", rf"/v1/batches/{old}") == 1
    assert [r["batch_id"] for r in records(tmp_path).values()] == [old]
    # one text unchanged, one changed: the unchanged one comes from the old job, the
    # changed one gets its own vector from a new job (never its predecessor's)
    changed = [TEXTS[0], "MS4A1: membrane spanning 4-domains A1, a B cell marker."]
    np.testing.assert_allclose(batch_run(changed, tmp_path, server), expected(changed), rtol=1e-6)
    assert server.count("POST", "/v1/batches") == 3
    assert [len(b["lines"]) for b in server.batches.values()] == [3, 2, 1]
    assert server.count("POST", "/v1/embeddings") == 0
    assert records(tmp_path) == {}


def test_a_job_interrupted_before_its_id_was_recorded_is_found_again(server, tmp_path):
    server.hold_batches = True
    interrupt_at(server, "POST", "/v1/batches")  # the job exists; its id never reaches us
    with pytest.raises(KeyboardInterrupt):
        batch_run(TEXTS, tmp_path, server)
    assert len(server.batches) == 1
    server.hold_batches = False
    np.testing.assert_allclose(batch_run(TEXTS, tmp_path, server), expected(TEXTS), rtol=1e-6)
    assert server.count("POST", "/v1/batches") == 1  # found by its metadata, not paid twice
    assert server.count("POST", "/v1/embeddings") == 0


@pytest.mark.parametrize("fate", ["forgotten", "another job"])
def test_a_recorded_job_that_is_not_ours_is_not_used(server, tmp_path, fate, verbosity, capfd):
    server.hold_batches = True
    interrupt_at(server, "GET", r"/v1/batches/[\w-]+", n=1)
    with pytest.raises(KeyboardInterrupt):
        batch_run(TEXTS, tmp_path, server)
    (old,) = server.batches
    server.hold_batches = False
    if fate == "forgotten":  # deleted, expired, or another account's key
        del server.batches[old]
    else:  # a restarted local server reuses the id for someone else's job
        batch_run(["LYZ: lysozyme, another text."], tmp_path / "elsewhere", server)
        server.batches[old] = server.batches.pop(list(server.batches)[-1])
    np.testing.assert_allclose(batch_run(TEXTS, tmp_path, server), expected(TEXTS), rtol=1e-6)
    assert len(cached_files(tmp_path)) == 3  # nothing of another job was cached
    assert server.count("POST", "/v1/embeddings") == 0  # resubmitted at the Batch price
    assert records(tmp_path) == {}
    assert f"Batch API job {old}" in capfd.readouterr().err


def test_lines_of_other_jobs_in_a_batch_output_are_not_cached(server, embedder, tmp_path):
    stranger = text_key(embedder, "LYZ: not asked for.")
    server.extra_batch_output = [
        {
            "custom_id": stranger,
            "response": {
                "status_code": 200,
                "body": server._embeddings(
                    {"model": "text-embedding-3-large", "input": ["x"], "dimensions": 16}
                ),
            },
            "error": None,
        }
    ]
    vectors = embed_texts(TEXTS, embedder, cache_dir=tmp_path, batch_api=True, poll_interval=0)
    np.testing.assert_allclose(vectors, expected(TEXTS), rtol=1e-6)
    assert Cache(tmp_path, "embeddings").get_vector(stranger) is None
    assert len(cached_files(tmp_path)) == 3
