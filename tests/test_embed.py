import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scanpy as sc
from conftest import assert_unchanged, largest_block
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import sparse

import sc_genept
from sc_genept._genept_w import ScaledDataError
from sc_genept.genes import GeneEmbeddings, match_genes


def embed(adata, **kwargs):
    return sc_genept.tl.genept_embed(adata, copy=True, **kwargs).obsm["X_genept"]


def reference(x_lognorm, names, table):
    """GenePT-w written out: normalize(X[:, matched] @ E[matched])."""
    match = match_genes(names, table)
    out = np.asarray(
        x_lognorm[:, match.var_index] @ table.embeddings[match.table_index].astype(np.float64)
    )
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return np.divide(out, norms, out=np.zeros_like(out), where=norms > 0)


def test_registered_with_scanpy():
    assert sc.tl.genept_embed is sc_genept.tl.genept_embed


def test_pbmc_real_data(pbmc):
    sc.tl.genept_embed(pbmc, use_raw=True)
    emb = pbmc.obsm["X_genept"]
    assert emb.shape == (700, 384) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1, rtol=1e-5)
    info = pbmc.uns["X_genept"]
    assert info["genes"]["fraction_genes_matched"] >= 0.90
    assert info["genes"]["id_type"] == "symbol"
    assert info["log_normalized"] is False  # .raw is already log-normalised
    assert info["params"]["use_raw"] is True
    assert "MiniLM" in info["gene_embeddings"]["embedding_model"]
    np.testing.assert_allclose(
        emb, reference(pbmc.raw.X.toarray(), pbmc.raw.var_names, sc_genept.genes.load()), atol=1e-5
    )


def test_uns_survives_h5ad(pbmc, tmp_path):
    sc.tl.genept_embed(pbmc, use_raw=True)
    pbmc.write_h5ad(tmp_path / "a.h5ad")
    back = ad.read_h5ad(tmp_path / "a.h5ad")
    assert (
        back.uns["X_genept"]["genes"]["n_genes_matched"]
        == pbmc.uns["X_genept"]["genes"]["n_genes_matched"]
    )


def test_ensembl_ids_with_versions_give_the_same_embedding(pbmc, default_table):
    raw = pbmc.raw.to_adata()
    match = match_genes(raw.var_names, default_table)
    ensembl = np.array(raw.var_names, dtype=object)
    for v, r in zip(match.var_index, match.table_index, strict=True):
        if default_table.ensembl_ids[r]:
            ensembl[v] = f"{default_table.ensembl_ids[r]}.{v % 7 + 1}"
    renamed = raw.copy()
    renamed.var_names = ensembl
    assert np.mean([n.startswith("ENSG") for n in ensembl]) > 0.9
    np.testing.assert_allclose(embed(renamed), embed(raw), atol=1e-5)
    assert (
        sc_genept.tl.genept_embed(renamed, copy=True).uns["X_genept"]["genes"]["id_type"]
        == "ensembl"
    )


@pytest.mark.parametrize("form", ["csr", "csc", "float32", "float64", "int32", "uint16"])
def test_input_formats_agree(counts, form):
    expected = embed(counts)
    x = counts.X
    other = counts.copy()
    other.X = (
        sparse.csr_matrix(x)
        if form == "csr"
        else sparse.csc_matrix(x)
        if form == "csc"
        else x.astype(form)
    )
    if form == "csc":  # read by cells, so copied to CSR: said, not silent
        with pytest.warns(UserWarning, match="CSR copy") as record:
            got = embed(other)
        assert record[0].filename == __file__
    else:
        got = embed(other)
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_counts_are_log_normalised(counts, default_table):
    lognorm = counts.copy()
    sc.pp.normalize_total(lognorm, target_sum=1e4)
    sc.pp.log1p(lognorm)
    got = sc_genept.tl.genept_embed(counts, copy=True)
    assert got.uns["X_genept"]["log_normalized"] is True
    np.testing.assert_allclose(got.obsm["X_genept"], embed(lognorm), atol=1e-5)
    np.testing.assert_allclose(
        got.obsm["X_genept"], reference(lognorm.X, counts.var_names, default_table), atol=1e-5
    )
    raw_weights = embed(counts, normalize=False)
    np.testing.assert_allclose(
        raw_weights, reference(counts.X.astype(float), counts.var_names, default_table), atol=1e-5
    )


def test_fraction_of_counts_covered(counts):
    info = sc_genept.tl.genept_embed(counts, copy=True).uns["X_genept"]
    expected = counts.X[:, :300].sum() / counts.X.sum()  # the last 20 genes are not in the table
    assert info["fraction_counts_covered"] == pytest.approx(expected, abs=1e-6)
    assert info["genes"]["n_genes_matched"] == 300


@pytest.mark.parametrize("chunk_size", [1, 7, 1000])
def test_chunking_does_not_change_the_result(counts, chunk_size):
    np.testing.assert_allclose(embed(counts, chunk_size=chunk_size), embed(counts), atol=1e-6)


@pytest.mark.parametrize("form", ["dense", "csr"])
def test_backed_anndata(counts, tmp_path, form):
    if form == "csr":
        counts.X = sparse.csr_matrix(counts.X)
    counts.write_h5ad(tmp_path / "a.h5ad")
    backed = ad.read_h5ad(tmp_path / "a.h5ad", backed="r")
    sc_genept.tl.genept_embed(backed, chunk_size=16)
    np.testing.assert_allclose(backed.obsm["X_genept"], embed(counts), atol=1e-5)
    with pytest.raises(ValueError, match="in-memory"):
        sc_genept.tl.genept_embed(backed, copy=True)


def test_copy_leaves_input_untouched(counts):
    before = counts.copy()
    out = sc_genept.tl.genept_embed(counts, copy=True, key_added="emb")
    assert "emb" in out.obsm and "emb" in out.uns
    assert list(counts.obsm) == [] and list(counts.uns) == []
    np.testing.assert_array_equal(counts.X, before.X)


def test_scaled_data_is_refused_and_adata_unchanged(pbmc):
    before = pbmc.copy()
    with pytest.raises(ScaledDataError, match="use_raw=True"):
        sc_genept.tl.genept_embed(pbmc, use_raw=False)
    assert_unchanged(pbmc, before)
    pbmc.raw = None
    before = pbmc.copy()
    with pytest.raises(ScaledDataError, match="negative values"):
        sc_genept.tl.genept_embed(pbmc)  # use_raw=None, but no .raw to fall back to
    assert_unchanged(pbmc, before)


def test_use_raw_none_falls_back_to_raw_when_x_is_scaled(pbmc):
    """One meaning of use_raw=None (genept_embed and genept_annotate): .X, or .raw when
    .X is scaled."""
    by_default = sc_genept.tl.genept_embed(pbmc, copy=True)
    explicit = sc_genept.tl.genept_embed(pbmc, use_raw=True, copy=True)
    assert by_default.uns["X_genept"]["source"] == "adata.raw.X"
    assert by_default.uns["X_genept"]["params"].get("use_raw") is None  # None is not stored
    np.testing.assert_array_equal(by_default.obsm["X_genept"], explicit.obsm["X_genept"])
    # unscaled .X is used even when .raw exists
    lognorm = pbmc.raw.to_adata()
    lognorm.raw = pbmc.raw.to_adata()[:, :50]
    out = sc_genept.tl.genept_embed(lognorm, copy=True)
    assert out.uns["X_genept"]["source"] == "adata.X"


def test_empty_cells_get_zero_vectors_and_one_warning(counts):
    counts.X[:3] = 0
    counts.X[3, :300] = 0  # expresses only genes without an embedding
    with pytest.warns(UserWarning, match="^4 of 120 cells") as record:
        out = sc_genept.tl.genept_embed(counts, copy=True)
    assert len([w for w in record if "cells express none" in str(w.message)]) == 1
    emb = out.obsm["X_genept"]
    assert not np.isnan(emb).any()
    np.testing.assert_array_equal(emb[:4], 0)
    assert out.uns["X_genept"]["n_cells_empty"] == 4


def test_n_dims_truncates_the_table(counts, default_table):
    short = embed(counts, n_dims=64)
    assert short.shape == (120, 64)
    np.testing.assert_allclose(
        short, embed(counts, gene_embeddings=default_table.truncate(64)), atol=1e-6
    )


def test_layer_and_gene_symbols_column(counts):
    expected = embed(counts)
    other = counts.copy()
    other.layers["counts"] = other.X.copy()
    other.X = np.zeros_like(other.X, dtype=float)
    other.var["symbol"] = other.var_names
    other.var_names = [f"g{i}" for i in range(other.n_vars)]
    np.testing.assert_allclose(
        embed(other, layer="counts", gene_symbols="symbol"), expected, atol=1e-6
    )


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"layer": "counts", "use_raw": True}, ValueError, "either layer"),
        ({"layer": "nope"}, KeyError, "No layer 'nope'"),
        ({"use_raw": True}, ValueError, "adata.raw is None"),
        ({"gene_symbols": "nope"}, KeyError, "not a column"),
    ],
)
def test_bad_arguments(counts, kwargs, error, message):
    with pytest.raises(error, match=message):
        sc_genept.tl.genept_embed(counts, **kwargs)
    assert not counts.obsm and not counts.uns


def test_no_matching_genes_explains(counts):
    counts.var_names = [f"NOTAGENE_{i}" for i in range(counts.n_vars)]
    with pytest.raises(ValueError, match="gene_symbols="):
        sc_genept.tl.genept_embed(counts)


def test_few_matching_genes_warn(counts):
    counts.var_names = [
        *counts.var_names[:10],
        *(f"NOTAGENE_{i}" for i in range(counts.n_vars - 10)),
    ]
    with pytest.warns(UserWarning, match="Only 10 of 320 genes"):
        sc_genept.tl.genept_embed(counts)


@pytest.mark.parametrize("counts_first", [True, False])
def test_mixed_counts_and_normalised_rows_are_refused(counts, counts_first):
    x = counts.X.astype(float)
    rows = slice(50, None) if counts_first else slice(0, 50)
    x[rows] = np.log1p(x[rows])
    counts.X = x
    with pytest.raises(ValueError, match="mixes raw counts"):
        sc_genept.tl.genept_embed(counts, chunk_size=50)
    assert "X_genept" not in counts.obsm


def test_nan_values_are_refused(counts):
    counts.X = counts.X.astype(float)
    counts.X[5, 3] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite"):
        sc_genept.tl.genept_embed(counts)
    assert "X_genept" not in counts.obsm


def test_normalised_but_not_logged_data_warns(counts):
    x = counts.X.astype(float)
    counts.X = x / np.maximum(x.sum(1, keepdims=True), 1) * 1e4
    with pytest.warns(UserWarning, match="not log-transformed"):
        sc_genept.tl.genept_embed(counts)


def test_mouse_symbols_warn(counts):
    counts.var_names = [n.capitalize() for n in counts.var_names]
    with pytest.warns(UserWarning, match="look like mouse genes"):
        sc_genept.tl.genept_embed(counts)


def test_backed_csc_is_refused_with_advice(counts, tmp_path):
    counts.X = sparse.csc_matrix(counts.X)
    counts.write_h5ad(tmp_path / "a.h5ad")
    backed = ad.read_h5ad(tmp_path / "a.h5ad", backed="r")
    with pytest.raises(ValueError, match="Convert it to CSR"):
        sc_genept.tl.genept_embed(backed)


@pytest.mark.slow
@settings(max_examples=25, deadline=None)
@given(
    st.integers(1, 30),
    st.floats(0.0, 1.0),
    st.sampled_from(["dense", "csr", "csc"]),
    st.integers(0, 2**32 - 1),
)
def test_never_nan_and_unit_or_zero_norm(n_cells, density, form, seed):
    rng = np.random.default_rng(seed)
    table = GeneEmbeddings([f"G{i}" for i in range(8)], rng.normal(size=(8, 5)))
    x = rng.poisson(3, size=(n_cells, 10)) * (rng.random((n_cells, 10)) < density)
    if form != "dense":
        x = sparse.csr_matrix(x) if form == "csr" else sparse.csc_matrix(x)
    adata = ad.AnnData(x, var={"g": [f"G{i}" for i in range(10)]})
    adata.var_names = [f"G{i}" for i in range(10)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        emb = embed(adata, gene_embeddings=table, chunk_size=4)
    assert np.isfinite(emb).all()
    norms = np.linalg.norm(emb, axis=1)
    assert np.all(np.isclose(norms, 1, atol=1e-5) | (norms == 0))


def test_low_expression_coverage_warns(counts):
    x = counts.X.copy()
    x[:, 300:] *= 50  # the 20 genes without an embedding now carry most of the counts
    counts.X = x
    with pytest.warns(UserWarning, match="carry only"):
        sc_genept.tl.genept_embed(counts)


def test_genes_restricts_the_embedding_to_a_gene_set(counts):
    genes = list(counts.var_names[:150])  # 150 table genes, in var order
    full = sc_genept.tl.genept_embed(counts, copy=True)
    subset = sc_genept.tl.genept_embed(counts, genes=genes[::-1], copy=True)
    gene_set = subset.uns["X_genept"]["gene_set"]
    assert gene_set["n_genes"] == 150 and sorted(gene_set["names"]) == sorted(genes)
    assert full.uns["X_genept"]["gene_set"]["n_genes"] == 300
    assert gene_set["sha256"] != full.uns["X_genept"]["gene_set"]["sha256"]
    assert 0.3 < gene_set["fraction_of_matched_expression"] < 0.7
    # same as embedding only those genes, normalised by the library size of all genes
    lognorm = counts.copy()
    sc.pp.normalize_total(lognorm, target_sum=1e4)
    sc.pp.log1p(lognorm)
    alone = sc_genept.tl.genept_embed(lognorm[:, genes].copy(), copy=True)
    np.testing.assert_allclose(subset.obsm["X_genept"], alone.obsm["X_genept"], atol=1e-5)
    means = pd.Series(gene_set["mean_expression"], index=gene_set["names"])
    np.testing.assert_allclose(
        means[genes], np.asarray(lognorm[:, genes].X.mean(axis=0)).ravel(), rtol=1e-4
    )


def test_expression_of_the_embedded_genes_is_stored_beside_the_embedding(counts):
    out = sc_genept.tl.genept_embed(counts, expression=True, copy=True)
    names = list(out.uns["X_genept"]["gene_set"]["names"])
    values = out.obsm["X_genept_expression"]
    assert sparse.issparse(values) and values.shape == (counts.n_obs, len(names)) == (120, 300)
    assert out.uns["X_genept_expression"]["gene_set"]["names"].tolist() == names
    lognorm = counts.copy()
    sc.pp.normalize_total(lognorm, target_sum=1e4)
    sc.pp.log1p(lognorm)
    np.testing.assert_allclose(values.toarray(), lognorm[:, names].X, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("form", ["dense", "csr"])
@pytest.mark.parametrize("by", ["var_names", "gene_symbols"])
def test_duplicate_gene_names_are_summed_into_the_gene(counts, form, by):
    """Two columns with one symbol (e.g. two Ensembl ids of one gene) are one gene: split a
    gene's counts over two columns of its name and the embedding must not move."""
    expected = sc_genept.tl.genept_embed(counts, copy=True)
    x = counts.X
    first = x[:, [0, 5]] // 2
    split = np.hstack([x[:, :1] - first[:, :1], x[:, 1:5], x[:, 5:6] - first[:, 1:], x[:, 6:]])
    split = np.hstack([split, first])
    names = [*counts.var_names, counts.var_names[0], counts.var_names[5]]
    dup = ad.AnnData(sparse.csr_matrix(split) if form == "csr" else split, obs=counts.obs[[]])
    if by == "var_names":
        dup.var_names = names
        kwargs = {}
    else:
        dup.var_names = [f"ENSG{i:011d}" for i in range(len(names))]
        dup.var["symbol"] = names
        kwargs = {"gene_symbols": "symbol"}
    with pytest.warns(UserWarning, match="2 matched gene names occur more than once") as record:
        got = sc_genept.tl.genept_embed(dup, copy=True, **kwargs)
    message = str(record[0].message)
    assert repr(counts.var_names[0]) in message and "var_names_make_unique" in message
    assert record[0].filename == __file__
    assert got.uns["X_genept"]["genes"]["n_duplicate_columns_summed"] == 2
    assert got.uns["X_genept"]["fraction_counts_covered"] == pytest.approx(
        expected.uns["X_genept"]["fraction_counts_covered"]
    )
    np.testing.assert_allclose(got.obsm["X_genept"], expected.obsm["X_genept"], atol=1e-6)


def test_numpy_integers_are_good_options(counts):
    out = sc_genept.tl.genept_embed(counts, chunk_size=np.int64(7), n_dims=np.int32(16), copy=True)
    assert out.obsm["X_genept"].shape == (120, 16)


def test_key_added_over_someone_elses_obsm_warns(counts):
    counts.obsm["X_pca"] = np.ones((counts.n_obs, 2))
    with pytest.warns(UserWarning, match=r"overwrites adata.obsm\['X_pca'\]") as record:
        sc_genept.tl.genept_embed(counts, key_added="X_pca")
    assert record[0].filename == __file__
    assert counts.obsm["X_pca"].shape == (120, 384)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # its own key, now: silent
        sc_genept.tl.genept_embed(counts, key_added="X_pca")
        sc_genept.tl.genept_embed(counts, expression=True)
        sc_genept.tl.genept_embed(counts, expression=True)  # and its expression key
    counts.obsm["mine_expression"] = np.ones((counts.n_obs, 2))
    with pytest.warns(UserWarning, match=r"obsm\['mine_expression'\]"):
        sc_genept.tl.genept_embed(counts, key_added="mine", expression=True)


def test_warnings_point_at_the_callers_line(counts):
    counts.var_names = [n.capitalize() for n in counts.var_names]  # mouse-like
    counts.X[:2] = 0
    with pytest.warns(UserWarning) as record:
        sc_genept.tl.genept_embed(counts)
    assert {"look like mouse genes", "cells express none"} <= {
        key
        for w in record
        for key in ("look like mouse genes", "cells express none")
        if key in str(w.message)
    }
    assert all(w.filename == __file__ for w in record)


def _int64_indptr(x: sparse.csr_matrix, indices_dtype) -> sparse.csr_matrix:
    """``x`` with int64 indptr and ``indices_dtype`` indices, as h5ad files of large data
    hold (scipy's constructor would unify them)."""
    out = sparse.csr_matrix(x.shape, dtype=x.dtype)
    out.data, out.indices, out.indptr = (
        x.data,
        x.indices.astype(indices_dtype),
        x.indptr.astype(np.int64),
    )
    return out


@pytest.mark.parametrize("indices_dtype", [np.int32, np.int64])
def test_int64_indptr_is_read_without_copying_the_matrix(indices_dtype):
    """Blocks of a CSR matrix are views: peak memory is a few blocks, not a copy of the
    indices (scipy's row slicing casts all of them when the two index dtypes differ)."""
    import tracemalloc

    from sc_genept._genept_w import genept_w

    rng = np.random.default_rng(0)
    n_cells, n_genes, per_cell = 4000, 2000, 200
    indptr = np.arange(0, (n_cells + 1) * per_cell, per_cell)
    indices = np.concatenate(
        [np.sort(rng.choice(n_genes, per_cell, replace=False)) for _ in range(n_cells)]
    )
    data = rng.poisson(2, size=len(indices)).astype(np.float32) + 1
    x = _int64_indptr(
        sparse.csr_matrix((data, indices, indptr), shape=(n_cells, n_genes)), indices_dtype
    )
    assert x.indptr.dtype == np.int64 and x.indices.dtype == indices_dtype
    vectors = rng.normal(size=(n_genes, 4)).astype(np.float32)
    expected = genept_w(x.copy(), np.arange(n_genes), vectors, block_rows=100)
    # warm up on x itself: the copy may have int32 indices, and compiling the kernels for
    # x's own index dtype inside the measured call would count the compiler's memory
    genept_w(x, np.arange(n_genes), vectors, block_rows=100)
    tracemalloc.start()
    try:
        got = genept_w(x, np.arange(n_genes), vectors, block_rows=100)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    whole_indices = x.nnz * 8  # one int64 copy of the indices
    assert peak < whole_indices / 2, f"peak {peak / 2**20:.1f} MiB"
    np.testing.assert_array_equal(got.embedding, expected.embedding)
    assert x.indptr.dtype == np.int64 and x.indices.dtype == indices_dtype  # user's, unchanged


def test_rows_with_repeated_columns_are_summed(counts):
    x = sparse.csr_matrix(counts.X.astype(np.float32))
    half = x.copy()
    half.data = half.data // 2
    rest = x - half
    # every entry stored twice in its row, unsorted: (half, rest)
    both = sparse.hstack([half, rest]).tocsr()
    twice = sparse.csr_matrix(
        (both.data, both.indices % counts.n_vars, both.indptr), shape=counts.shape
    )
    assert not twice.has_canonical_format
    data_before = twice.data.copy()
    dup = ad.AnnData(twice, obs=counts.obs[[]], var=counts.var[[]])
    assert dup.X is twice
    np.testing.assert_allclose(embed(dup, chunk_size=16), embed(counts), atol=1e-6)
    np.testing.assert_array_equal(twice.data, data_before)


def test_backed_csr_is_read_block_by_block_and_never_written(
    counts, tmp_path, monkeypatch, backed_reads
):
    """Backed X stays on disk: every read of its arrays is a chunk of rows (counted on
    h5py), all of X is never loaded, and the file's bytes do not change."""
    import hashlib

    counts.X = sparse.csr_matrix(counts.X)
    path = tmp_path / "a.h5ad"
    counts.write_h5ad(path)
    digest, mtime = hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns
    backed = ad.read_h5ad(path, backed="r")
    reads = backed_reads(backed)
    chunk = 16
    sc_genept.tl.genept_embed(backed, chunk_size=chunk)
    monkeypatch.undo()
    block = largest_block(counts.X.indptr, chunk)
    assert reads and max(reads) <= block  # never more than a block's rows
    assert sum(reads) <= 2 * counts.X.nnz + 2 * block  # each row about once
    assert backed.isbacked and not isinstance(backed.X, np.ndarray | sparse.spmatrix)
    backed.file.close()
    assert path.stat().st_mtime_ns == mtime
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest
    np.testing.assert_allclose(backed.obsm["X_genept"], embed(counts), atol=1e-5)


def test_memory_is_bounded_by_the_output_and_a_block():
    """Peak numpy allocation: the output plus per-block temporaries, no cells × dims copy
    (row norms over the whole output used to make one)."""
    import tracemalloc

    from sc_genept._genept_w import genept_w

    n_cells, n_genes, n_dims = 20_000, 500, 384
    counts = sparse.random(n_cells, n_genes, density=0.05, format="csr", random_state=0)
    counts.data = np.ceil(counts.data * 10).astype(np.float32)
    vectors = np.random.default_rng(0).normal(size=(n_genes, n_dims)).astype(np.float32)
    tracemalloc.start()
    result = genept_w(counts, np.arange(n_genes), vectors, normalize=True, block_rows=256)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 1.25 * result.embedding.nbytes, peak / result.embedding.nbytes
    norms = np.linalg.norm(result.embedding, axis=1)
    np.testing.assert_allclose(norms[norms > 0], 1, rtol=1e-5)


def test_float16_output_halves_memory_and_agrees(counts):
    """dtype="float16": the embedding is half the memory and within float16 rounding."""
    full = sc_genept.tl.genept_embed(counts, copy=True)
    half = sc_genept.tl.genept_embed(counts, dtype="float16", copy=True, chunk_size=7)
    embedding = half.obsm["X_genept"]
    assert embedding.dtype == np.float16 and half.uns["X_genept"]["params"]["dtype"] == "float16"
    np.testing.assert_allclose(embedding.astype(np.float32), full.obsm["X_genept"], atol=2e-3)
    assert embedding.nbytes * 2 == full.obsm["X_genept"].nbytes
    with pytest.raises(ValueError, match="dtype must be 'float32' or 'float16'"):
        sc_genept.tl.genept_embed(counts, dtype="float64")


def test_paralogs_that_share_one_ortholog_are_summed(default_table):
    """Mouse Ins1 and Ins2 are both human INS: one gene to the embedding, their counts summed."""
    rng = np.random.default_rng(0)
    others = list(rng.choice(np.setdiff1d(default_table.symbols, ["INS"]), 120, replace=False))
    counts = rng.poisson(3, size=(30, 122)).astype(np.float32)
    mouse = ad.AnnData(counts, var=pd.DataFrame(index=["Ins1", "Ins2", *others]))
    human = ad.AnnData(
        np.column_stack([counts[:, 0] + counts[:, 1], counts[:, 2:]]),
        var=pd.DataFrame(index=["INS", *others]),
    )
    # no warning: summing the two is what the ortholog table asks for
    crossed = sc.tl.genept_embed(mouse, orthologs={"Ins1": "INS", "Ins2": "INS"}, copy=True)
    sc.tl.genept_embed(human)
    np.testing.assert_allclose(crossed.obsm["X_genept"], human.obsm["X_genept"], atol=1e-5)
    assert crossed.uns["X_genept"]["genes"]["matched_by"]["ortholog"] == 1
    assert crossed.uns["X_genept"]["gene_set"]["n_genes"] == 121
