"""genept_embed on Dask arrays: lazy, chunk-wise, equal to the in-memory embedding."""

import time

import numpy as np
import pytest
from scipy import sparse

import sc_genept
from sc_genept._genept_w import ScaledDataError

da = pytest.importorskip("dask.array")

CHUNK = 25  # 120 cells: 5 chunks


def counted(x: np.ndarray, *, as_sparse: bool, chunks=(CHUNK, -1)):
    """A Dask array of ``x`` whose chunks count, in ``reads``, each time they are made."""
    reads = []

    def make(block, block_info=None):
        reads.append(block_info[0]["array-location"][0])
        return sparse.csr_matrix(block) if as_sparse else block

    meta = sparse.csr_matrix((0, 0), dtype=x.dtype) if as_sparse else np.empty((0, 0), x.dtype)
    return da.from_array(x, chunks=chunks).map_blocks(make, dtype=x.dtype, meta=meta), reads


@pytest.mark.parametrize("as_sparse", [False, True], ids=["dense", "sparse-chunks"])
def test_dask_embedding_is_lazy_and_equals_in_memory(counts, as_sparse):
    expected = sc_genept.tl.genept_embed(counts, copy=True)
    lazy = counts.copy()
    lazy.X, reads = counted(counts.X, as_sparse=as_sparse)
    n_chunks = lazy.X.numblocks[0]
    sc_genept.tl.genept_embed(lazy)
    emb = lazy.obsm["X_genept"]
    assert isinstance(emb, da.Array)
    assert emb.chunks[0] == lazy.X.chunks[0]
    assert len(reads) < n_chunks  # only the first chunk is probed before compute
    computed = emb.compute()
    assert len(reads) >= n_chunks
    assert computed.dtype == np.float32
    np.testing.assert_allclose(computed, expected.obsm["X_genept"], atol=1e-6)
    record, full = lazy.uns["X_genept"], expected.uns["X_genept"]
    assert record["genes"] == full["genes"]
    assert record["log_normalized"] is full["log_normalized"] is True
    np.testing.assert_array_equal(record["gene_set"]["names"], full["gene_set"]["names"])
    assert record["gene_set"]["sha256"] == full["gene_set"]["sha256"]
    for stat in ("fraction_counts_covered", "n_cells_empty"):  # need a pass: not recorded
        assert stat not in record
    assert "mean_expression" not in record["gene_set"]


def test_dask_chunked_along_genes_is_rechunked(counts):
    expected = sc_genept.tl.genept_embed(counts, copy=True).obsm["X_genept"]
    lazy = counts.copy()
    lazy.X = da.from_array(counts.X, chunks=(40, 100))
    sc_genept.tl.genept_embed(lazy)
    emb = lazy.obsm["X_genept"]
    assert isinstance(emb, da.Array)
    np.testing.assert_allclose(emb.compute(), expected, atol=1e-6)


def test_dask_negative_chunk_raises_scaled_data_error_at_compute(counts):
    x = counts.X.astype(np.float32)
    x[100, 3] = -1.0  # in the fifth chunk only: the up-front probe cannot see it
    bad = counts.copy()
    bad.X = da.from_array(x, chunks=(CHUNK, -1))
    sc_genept.tl.genept_embed(bad, use_raw=None)
    assert isinstance(bad.obsm["X_genept"], da.Array)
    with pytest.raises(ScaledDataError, match=r"negative values.*rows 100–120"):
        bad.obsm["X_genept"].compute()


def test_dask_expression_refused(counts):
    lazy = counts.copy()
    lazy.X = da.from_array(counts.X, chunks=(CHUNK, -1))
    x = lazy.X
    with pytest.raises(NotImplementedError, match="expression=False"):
        sc_genept.tl.genept_embed(lazy, expression=True)
    assert lazy.X is x and not lazy.obsm and not lazy.uns  # left as it was


@pytest.mark.parametrize(
    ("option", "match"),
    [
        ({"out_file": "e.npy"}, r"out_file is for in-memory or backed data.*to_zarr"),
        ({"device": "cuda"}, r"device='cuda' with a Dask array.*their CPUs"),
    ],
    ids=["out_file", "gpu"],
)
def test_dask_output_options_refused(counts, tmp_path, option, match):
    lazy = counts.copy()
    lazy.X, _ = counted(counts.X, as_sparse=True)
    option = {k: tmp_path / v if k == "out_file" else v for k, v in option.items()}
    with pytest.raises(ValueError, match=match):
        sc_genept.tl.genept_embed(lazy, **option)
    assert "X_genept" not in lazy.obsm and not list(tmp_path.iterdir())


@pytest.fixture(scope="module")
def client():
    distributed = pytest.importorskip("distributed")
    try:
        cluster = distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        )
    except Exception as err:  # noqa: BLE001 - any failure to start worker processes
        pytest.skip(f"distributed cannot start worker processes here: {err!r}")
    client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()


@pytest.mark.slow
@pytest.mark.parametrize("as_sparse", [False, True], ids=["dense", "sparse-chunks"])
def test_dask_on_local_cluster(client, counts, as_sparse):
    expected = sc_genept.tl.genept_embed(counts, copy=True).obsm["X_genept"]
    lazy = counts.copy()
    x = sparse.csr_matrix(counts.X) if as_sparse else counts.X
    lazy.X = da.from_array(x, chunks=(CHUNK, -1), asarray=False)
    start = time.perf_counter()
    sc_genept.tl.genept_embed(lazy)
    future = client.compute(lazy.obsm["X_genept"])
    computed = future.result()
    print(f"LocalCluster embed+compute: {time.perf_counter() - start:.2f} s")
    # the chunks ran on the two worker processes
    assert client.who_has(future) and len(client.scheduler_info()["workers"]) == 2
    np.testing.assert_allclose(computed, expected, atol=1e-6)


def test_dask_float16_output(counts):
    expected = sc_genept.tl.genept_embed(counts, dtype="float16", copy=True)
    lazy = counts.copy()
    lazy.X, _ = counted(counts.X, as_sparse=True)
    sc_genept.tl.genept_embed(lazy, dtype="float16")
    assert lazy.obsm["X_genept"].dtype == np.float16
    np.testing.assert_allclose(
        lazy.obsm["X_genept"].compute().astype(np.float32), expected.obsm["X_genept"], atol=1e-4
    )


def _chunks_of(x: np.ndarray, convert):
    """A Dask array of ``x`` whose row chunks are ``convert(chunk)`` (another sparse format)."""
    meta = convert(np.zeros((0, x.shape[1]), x.dtype))
    return da.from_array(x, chunks=(CHUNK, -1)).map_blocks(convert, dtype=x.dtype, meta=meta)


def _pydata_coo(block):
    return pytest.importorskip("sparse").COO.from_numpy(block)


@pytest.mark.parametrize(
    "convert",
    [sparse.coo_matrix, sparse.csc_matrix, sparse.coo_array, _pydata_coo],
    ids=["scipy-coo", "scipy-csc", "scipy-coo-array", "pydata-coo"],
)
def test_dask_chunks_of_other_sparse_formats_are_read_as_csr(counts, convert, recwarn):
    expected = sc_genept.tl.genept_embed(counts, copy=True).obsm["X_genept"]
    lazy = counts.copy()
    lazy.X = _chunks_of(counts.X.astype(np.float32), convert)
    sc_genept.tl.genept_embed(lazy)
    np.testing.assert_allclose(lazy.obsm["X_genept"].compute(), expected, atol=1e-6)
    # converted per chunk, quietly: no "not CSR, a copy is made" warning per chunk
    assert not [w for w in recwarn if "not CSR" in str(w.message)]


def test_dask_refuses_counts_mixed_with_normalised_values_as_memory_does(counts):
    x = counts.X.astype(np.float32)
    x[:CHUNK] = 0  # the first chunk has no values: the next one decides
    x[75:100] = np.log1p(x[75:100])  # normalised values in the fourth chunk
    in_memory = counts.copy()
    in_memory.X = x
    with pytest.raises(ValueError, match=r"Rows 25–50 hold integer counts but rows 75–100"):
        sc_genept.tl.genept_embed(in_memory, chunk_size=CHUNK)
    lazy = counts.copy()
    lazy.X = da.from_array(x, chunks=(CHUNK, -1))
    sc_genept.tl.genept_embed(lazy)
    assert lazy.uns["X_genept"]["log_normalized"] is True  # as the second chunk decided
    with pytest.raises(ValueError, match=r"[Rr]ows 25–50 .*integer counts but rows 75–100"):
        lazy.obsm["X_genept"].compute()
