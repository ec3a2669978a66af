"""The block product kernels of GenePT-w: each gives the same embedding, and the output
can go to a file with memory bounded by a block."""

from __future__ import annotations

import multiprocessing
import os
import tracemalloc

import numpy as np
import pytest
import scanpy as sc
import torch
from scipy import sparse

from sc_genept import _kernels
from sc_genept._genept_w import genept_w
from sc_genept._kernels import SparseBlock

CPU_KERNELS = ["sparse", "dense", "scipy", "torch"]


def _random_csr(rng, n_rows, n_genes, density):
    x = sparse.random(
        n_rows, n_genes, density=density, format="csr", random_state=rng, dtype=np.float32
    )
    x.data = np.ceil(x.data * 20)  # counts
    return x


def _reference(x: sparse.csr_matrix, vectors: np.ndarray) -> np.ndarray:
    """scipy's product of the log-normalised counts, normalised: GenePT-w written plainly."""
    library = np.asarray(x.sum(axis=1)).ravel()
    scaled = sparse.diags(np.divide(1e4, library, out=np.zeros_like(library), where=library > 0))
    y = (scaled @ x).tocsr()
    y.data = np.log1p(y.data)
    out = np.asarray(y @ vectors.astype(np.float64))
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return np.divide(out, norms, out=np.zeros_like(out), where=norms > 0)


@pytest.mark.parametrize("kernel", CPU_KERNELS)
@pytest.mark.parametrize(("n_genes", "d", "density"), [(300, 8, 0.3), (5000, 96, 0.02)])
def test_every_kernel_gives_the_plain_product(kernel, n_genes, d, density):
    """Also across several gene tiles and tasks, with empty rows and a shuffled gene order."""
    rng = np.random.default_rng(0)
    x = _random_csr(rng, 700, n_genes, density)
    x[::7] = 0  # empty rows
    x.eliminate_zeros()
    var_index = rng.permutation(n_genes)  # matched genes in another order than the columns
    vectors = rng.normal(size=(n_genes, d)).astype(np.float32)
    got = genept_w(x, var_index, vectors, kernel=kernel, block_rows=300).embedding
    expected = _reference(x[:, var_index], vectors)
    np.testing.assert_allclose(got, expected, atol=2e-5)


def test_small_matrices_in_memory_take_no_compiled_loop():
    """numba's first call costs more than it saves below COMPILED_FROM stored values."""
    small = sparse.random(10, 10, density=0.5, format="csr", random_state=0)
    assert _kernels.kernel_for(small) == _kernels.kernel_for(small.toarray()) == "scipy"
    large = sparse.csr_matrix(
        (
            np.ones(_kernels.COMPILED_FROM),
            np.zeros(_kernels.COMPILED_FROM, int),
            [0, _kernels.COMPILED_FROM],
        ),
        shape=(1, 1),
    )
    assert _kernels.kernel_for(large) == "auto"


@pytest.mark.parametrize("compiled", [True, False])
def test_value_checks_agree_with_and_without_compiled_loops(compiled):
    for values, expected in [
        (np.array([0, 2, 3.0], np.float32), (True, 0.0, 3.0, True, True)),
        (np.array([0, 0.5], np.float16), (True, 0.0, 0.5, True, False)),
        (np.zeros(3), (True, 0.0, 0.0, False, True)),
    ]:
        assert tuple(_kernels.value_stats(values, compiled=compiled)) == expected
    assert not _kernels.value_stats(np.array([1.0, np.nan]), compiled=compiled).finite


def test_rows_with_unsorted_genes_are_multiplied_whole():
    """The tiled kernel walks gene tiles in order; a row's entries out of order are still
    all multiplied (later tiles pick them up), none skipped or counted twice."""
    rng = np.random.default_rng(1)
    n_rows, n_genes, d = 40, 2000, 16  # gene tiles of 4096 at d=16: use a wider table
    table = rng.normal(size=(n_genes, 512)).astype(np.float32)[:, :d].copy()
    table = np.ascontiguousarray(np.repeat(table, 32, axis=1))  # d = 512: tiles of 128 genes
    row_of = np.repeat(np.arange(n_rows), 50)
    columns = rng.integers(0, n_genes, size=len(row_of))  # not sorted within rows
    values = rng.random(len(row_of)).astype(np.float32)
    block = SparseBlock.from_entries(row_of, columns, values, n_rows)
    out = np.empty((n_rows, table.shape[1]), dtype=np.float32)
    _kernels.sparse_product(block, table, out)
    dense = sparse.coo_matrix((values, (row_of, columns)), shape=(n_rows, n_genes)).toarray()
    np.testing.assert_allclose(out, dense @ table, rtol=1e-4, atol=1e-4)


def test_the_kernel_is_chosen_by_measurement_and_remembered(monkeypatch):
    """The first block of a shape class is timed both ways; later ones reuse the choice
    and get the same product."""
    monkeypatch.setattr(_kernels, "_CHOSEN", {})
    rng = np.random.default_rng(2)
    x = _random_csr(rng, 900, 400, 0.1)
    vectors = rng.normal(size=(400, 32)).astype(np.float32)
    first = genept_w(x, np.arange(400), vectors, block_rows=300).embedding
    assert list(_kernels._CHOSEN.values())[0] in ("sparse", "dense")
    assert len(_kernels._CHOSEN) == 1
    again = genept_w(x, np.arange(400), vectors, block_rows=300).embedding
    np.testing.assert_array_equal(first, again)
    np.testing.assert_allclose(first, _reference(x, vectors), atol=2e-5)


def test_embedding_to_a_file_matches_memory_and_is_bounded_by_a_block(tmp_path, counts):
    big = sc.concat([counts] * 80)  # 9,600 cells, CSR as atlases are stored
    big.X = sparse.csr_matrix(big.X)
    big.obs_names_make_unique()
    in_memory = sc.tl.genept_embed(big, copy=True, chunk_size=200).obsm["X_genept"]
    path = tmp_path / "embedding.npy"
    tracemalloc.start()
    try:
        sc.tl.genept_embed(big, out_file=path, chunk_size=200)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    stored = big.obsm["X_genept"]
    assert type(stored) is np.ndarray and not stored.flags.writeable  # a plain, mapped array
    np.testing.assert_array_equal(stored, in_memory)
    np.testing.assert_array_equal(np.load(path), in_memory)
    assert peak < in_memory.nbytes / 3, f"peak {peak / 2**20:.1f} MiB"
    assert big.uns["X_genept"]["params"]["out_file"] == str(path)
    big.write_h5ad(tmp_path / "with_embedding.h5ad")  # AnnData can write what it holds
    reread = sc.read_h5ad(tmp_path / "with_embedding.h5ad")
    np.testing.assert_array_equal(reread.obsm["X_genept"], in_memory)


def test_a_failed_embedding_leaves_no_file(tmp_path, counts, unchanged):
    x = counts.X.astype(np.float32)
    x[100:] *= 0.5  # the last block is not counts: an error raised in the block pass
    counts.X = x
    unchanged(counts)
    path = tmp_path / "embedding.npy"
    with pytest.raises(ValueError, match="mixes raw counts with normalised values"):
        sc.tl.genept_embed(counts, out_file=path, chunk_size=50)
    assert list(tmp_path.iterdir()) == []


def test_float16_file(tmp_path, counts):
    path = tmp_path / "half.npy"
    sc.tl.genept_embed(counts, out_file=path, dtype="float16")
    full = sc.tl.genept_embed(counts, copy=True).obsm["X_genept"]
    assert np.load(path).dtype == np.float16
    np.testing.assert_allclose(counts.obsm["X_genept"], full, atol=2e-3)


def _embed_in_child(connection, x, vectors):
    connection.send(genept_w(x, np.arange(x.shape[1]), vectors).embedding)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork: POSIX only")
def test_a_process_forked_after_the_parallel_kernels_still_embeds():
    """GNU OpenMP kills a child forked after it started (a DataLoader worker, a fork
    pool): such a child runs the serial loops."""
    rng = np.random.default_rng(4)
    x = _random_csr(rng, 600, 300, 0.1)
    vectors = rng.normal(size=(300, 16)).astype(np.float32)
    expected = genept_w(x, np.arange(300), vectors, kernel="sparse").embedding  # threads start
    context = multiprocessing.get_context("fork")
    receive, send = context.Pipe(duplex=False)
    child = context.Process(target=_embed_in_child, args=(send, x, vectors))
    child.start()
    send.close()  # the child's end only: a dead child closes the pipe
    try:
        try:
            got = receive.recv() if receive.poll(120) else None
        except EOFError:
            got = None
        child.join(10)
        assert got is not None, f"the child died (exit code {child.exitcode})"
        np.testing.assert_allclose(got, expected, atol=1e-6)
    finally:
        child.join(10)
        child.kill()
    assert child.exitcode == 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_embedding_matches_cpu(pbmc):
    cpu = sc.tl.genept_embed(pbmc, use_raw=True, device="cpu", copy=True).obsm["X_genept"]
    for device in ("cuda", "auto"):
        gpu = sc.tl.genept_embed(pbmc, use_raw=True, device=device, copy=True).obsm["X_genept"]
        np.testing.assert_allclose(gpu, cpu, atol=1e-5)


@pytest.mark.parametrize("normalize", [True, False])
def test_the_compiled_pass_matches_the_numpy_one(normalize):
    """CSR blocks take one compiled pass; dense blocks the NumPy one. Same embedding,
    expression, gene totals and coverage, with unmatched columns and a gene set smaller
    than the matched genes."""
    rng = np.random.default_rng(3)
    x = _random_csr(rng, 500, 600, 0.1)
    var_index = rng.permutation(600)[:450]  # 150 columns match no gene
    vectors = rng.normal(size=(300, 24)).astype(np.float32)  # the set: first 300 matched
    options = {"normalize": normalize, "block_rows": 128, "return_expression": True}
    compiled = genept_w(x, var_index, vectors, **options)
    numpy_pass = genept_w(x.toarray(), var_index, vectors, **options)
    np.testing.assert_allclose(compiled.embedding, numpy_pass.embedding, atol=1e-6)
    np.testing.assert_allclose(
        compiled.expression.toarray(), numpy_pass.expression.toarray(), rtol=1e-6
    )
    np.testing.assert_allclose(compiled.gene_totals, numpy_pass.gene_totals, rtol=1e-6)
    assert compiled.fraction_counts_covered == pytest.approx(numpy_pass.fraction_counts_covered)
    assert 0.5 < compiled.fraction_counts_covered < 0.95
