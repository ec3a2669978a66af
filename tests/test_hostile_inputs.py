"""Hostile and careless inputs outside the model: files that are not what their name says,
values no embedding can use, labels in the wrong form. Each is refused with sc_genept's own
error naming the file or the argument, or handled so that nothing is silently wrong.
"""

from __future__ import annotations

import pickle

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from scipy import sparse

import sc_genept
from sc_genept import metrics
from sc_genept._embedding import cell_embedding
from sc_genept.genes import GeneEmbeddings, from_frame, read_genept_pickle
from sc_genept.genes._readers import H5adFileError, read_h5ad

# ---- files named .h5ad that are not AnnData files -------------------------------------------


def _small_h5ad(path):
    adata = ad.AnnData(np.ones((3, 2), dtype=np.float32))
    adata.write_h5ad(path)
    return path


def _csv(path):
    path.write_text("gene,cell1,cell2\nCD3E,1,0\nLYZ,0,4\n")


def _truncated(path):
    whole = _small_h5ad(path).read_bytes()
    path.write_bytes(whole[: len(whole) // 2])


def _empty(path):
    path.write_bytes(b"")


def _other_hdf5(path):
    with h5py.File(path, "w") as file:
        file["counts"] = np.arange(6).reshape(2, 3)


def _undecodable_anndata(path):
    with h5py.File(path, "w") as file:
        file.attrs["encoding-type"] = "anndata"
        file["obs"], file["var"] = np.arange(3), np.arange(2)


def _tenx_h5(path):
    with h5py.File(path, "w") as file:
        file.create_group("matrix")["data"] = np.arange(3)


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (_csv, r"not an HDF5 file.*looks like text \(a CSV"),
        (_truncated, r"damaged or truncated"),
        (_empty, r"is empty"),
        (_other_hdf5, r"HDF5 file but not an AnnData.*\['counts'\]"),
        (_tenx_h5, r"not an AnnData.*read_10x_h5"),
        (_undecodable_anndata, r"AnnData's layout but anndata .* cannot read it"),
    ],
    ids=["csv", "truncated", "empty", "other-hdf5", "10x-h5", "undecodable"],
)
def test_a_file_named_h5ad_that_is_not_one_is_named_and_described(tmp_path, make, match):
    path = tmp_path / "cells.h5ad"
    make(path)
    before = path.read_bytes()
    with pytest.raises(H5adFileError, match=match) as info:
        read_h5ad(path, what="--reference")
    message = str(info.value)
    assert str(path) in message and "--reference" in message
    assert "synchronously" not in message  # not h5py's raw words
    assert isinstance(info.value, OSError) and isinstance(info.value, ValueError)
    assert path.read_bytes() == before  # the file is left as it was


def test_reading_a_good_h5ad_and_a_missing_one(tmp_path):
    adata = read_h5ad(_small_h5ad(tmp_path / "ok.h5ad"))
    assert adata.shape == (3, 2)
    backed = read_h5ad(tmp_path / "ok.h5ad", backed="r")
    assert backed.isbacked
    backed.file.close()
    with pytest.raises(FileNotFoundError, match=r"INPUT .*nope\.h5ad.*does not exist"):
        read_h5ad(tmp_path / "nope.h5ad", what="INPUT")
    with pytest.raises(H5adFileError, match="is a folder"):
        read_h5ad(tmp_path)


# ---- values no embedding can use ------------------------------------------------------------


@pytest.mark.parametrize(
    "values",
    [
        np.array([["1", "0"], ["2", "3"]], dtype=object),
        np.array([[1, 0], [2, 3]], dtype=object),
        np.array([["1", "0"], ["2", "3"]]),  # numpy strings
    ],
    ids=["object-strings", "object-numbers", "unicode"],
)
def test_x_of_non_numbers_names_the_matrix_and_the_fix(values, tiny_table):
    adata = ad.AnnData(values, var=pd.DataFrame(index=["CD3E", "LYZ"]))
    x = adata.X
    with pytest.raises(TypeError, match=r"adata\.X has dtype .*astype\(np\.float32\)"):
        sc_genept.tl.genept_embed(adata, gene_embeddings=tiny_table)
    assert adata.X is x and not adata.obsm and "X_genept" not in adata.uns
    adata.layers["counts"] = np.ones((2, 2), dtype=np.float32)
    adata.layers["text"] = values
    with pytest.raises(TypeError, match=r"adata\.layers\['text'\] has dtype"):
        sc_genept.tl.genept_embed(adata, gene_embeddings=tiny_table, layer="text")


@pytest.mark.filterwarnings("ignore:Only 2 of 2 genes")
def test_imputed_values_that_are_not_finite_are_refused(tiny_table):
    adata = ad.AnnData(np.ones((2, 2), dtype=np.float32), var=pd.DataFrame(index=["CD3E", "LYZ"]))
    with pytest.raises(ValueError, match=r"missing_values.*MS4A1.*nan"):
        cell_embedding(
            adata,
            gene_embeddings=tiny_table,
            genes=["CD3E", "LYZ", "MS4A1"],
            missing_values={"MS4A1": float("nan")},
        )


@pytest.mark.parametrize(
    "write",
    [
        lambda p: pd.DataFrame(
            {"symbol": ["CD3E", "LYZ"], "d0": [np.nan, 1.0], "d1": [0, 1]}
        ).to_csv(p.with_suffix(".csv"), index=False),
        lambda p: p.with_suffix(".csv").write_text("symbol,d0,d1\nCD3E,1,inf\nLYZ,0,1\n"),
        lambda p: p.with_suffix(".pkl").write_bytes(
            pickle.dumps({"CD3E": [1.0, float("nan")], "LYZ": [0.0, 1.0]})
        ),
        lambda p: pd.DataFrame(
            {"symbol": ["CD3E", "LYZ"], "embedding": [[1.0, np.inf], [0, 1]]}
        ).to_parquet(p.with_suffix(".parquet")),
    ],
    ids=["csv-nan", "csv-inf", "pickle-nan", "parquet-inf"],
)
def test_tables_with_nan_or_inf_vectors_are_refused(tmp_path, write):
    # regression: worked before issue 19 (the table refuses them when it is made)
    write(tmp_path / "table")
    path = next(tmp_path.iterdir())
    with pytest.raises(ValueError, match=r"NaN or infinite values in 1 genes .*CD3E"):
        sc_genept.genes.read_table_file(path)


def test_a_table_made_by_hand_with_nan_is_refused():
    # regression, as above
    with pytest.raises(ValueError, match="NaN or infinite"):
        GeneEmbeddings(["A", "B"], [[0.0, 1.0], [np.nan, 1.0]])
    with pytest.raises(ValueError, match="NaN or infinite"):
        from_frame(pd.DataFrame({"symbol": ["A"], "embedding": [[np.nan, 1.0]]}))
    assert read_genept_pickle  # the pickle reader goes through the same check (above)


# ---- genes whose names differ only in case --------------------------------------------------


def _case_clash_table() -> GeneEmbeddings:
    rng = np.random.default_rng(0)
    symbols = ["CD3E", "cd3e", "LYZ", "MS4A1"]
    return GeneEmbeddings(symbols, rng.normal(size=(4, 8)).astype(np.float32))


def test_a_case_clash_in_the_table_never_silently_drops_the_exact_match():
    table = _case_clash_table()
    adata = ad.AnnData(
        np.arange(1, 7, dtype=np.float32).reshape(2, 3),
        var=pd.DataFrame(index=["CD3E", "LYZ", "MS4A1"]),
    )
    embedded = cell_embedding(adata, gene_embeddings=table)
    assert list(embedded.record.gene_set.names) == ["CD3E", "LYZ", "MS4A1"]  # exact case wins
    # a name in a third case matches neither: that is said, naming both table genes
    other = adata.copy()
    other.var_names = ["Cd3e", "LYZ", "MS4A1"]
    with pytest.warns(UserWarning, match="differ only in case") as caught:
        embedded = cell_embedding(other, gene_embeddings=table)
    assert "Cd3e" not in embedded.record.gene_set.names
    assert any("CD3E, cd3e" in str(w.message) for w in caught)


def test_a_reference_sharing_no_gene_with_the_table_is_named(tiny_table):
    import scanpy as sc

    reference = ad.AnnData(
        np.ones((4, 2), dtype=np.float32),
        obs=pd.DataFrame({"cell_type": ["T cell", "B cell"] * 2}, index=list("abcd")),
        var=pd.DataFrame(index=["NOPE1", "NOPE2"]),
    )
    query = ad.AnnData(np.ones((2, 3), dtype=np.float32), var=pd.DataFrame(index=["A", "B", "C"]))
    with pytest.raises(ValueError, match=r"genes of reference\.X"):
        sc.tl.genept_annotate(
            query, reference=reference, labels_key="cell_type", gene_embeddings=tiny_table
        )


# ---- the matrix a message names --------------------------------------------------------------


def test_an_embedding_named_reference_says_reference(tiny_table):
    reference = ad.AnnData(
        np.ones((2, 2), dtype=np.float32), var=pd.DataFrame(index=["GENE1", "GENE2"])
    )
    with pytest.raises(ValueError, match=r"None of the 2 genes of reference\.X"):
        cell_embedding(reference, gene_embeddings=tiny_table, name="reference")
    with pytest.raises(ValueError, match=r"reference has no cells"):
        cell_embedding(reference[:0], gene_embeddings=tiny_table, name="reference")


# ---- metrics: labels in two forms -------------------------------------------------------------


IDS = ["CL:0000236", "CL:0000576", "CL:0000236", "CL:0000623"]
NAMES = ["B cell", "monocyte", "B cell", "natural killer cell"]


@pytest.mark.parametrize("score", [metrics.accuracy, metrics.macro_f1, metrics.per_class_f1])
@pytest.mark.parametrize(("y_true", "y_pred"), [(IDS, NAMES), (NAMES, IDS)], ids=["ids", "names"])
def test_flat_metrics_refuse_ids_against_names(score, y_true, y_pred):
    with pytest.raises(ValueError, match=r"CL ids .* names.*map_labels.*evaluate"):
        score(y_true, y_pred)


def test_flat_metrics_still_compare_other_labels_as_given_and_evaluate_maps_names(cl):
    assert metrics.accuracy(["T", "B"], ["T", "NK"]) == 0.5
    # a few predictions in another form among ids: compared as given (they count as wrong)
    assert metrics.accuracy(IDS, [*IDS[:3], "unassigned"]) == 0.75
    table = metrics.evaluate(IDS, NAMES, cl)
    assert table.loc["accuracy", "value"] == 1.0
    assert table.loc["macro_f1", "value"] == 1.0


# ---- SOMA: stored embeddings with NaN rows ------------------------------------------------------


class _FakeSomaArray:
    """Just what read_rows uses of a SOMA sparse array: read(coords=...).tables().concat()."""

    uri = "file:///tmp/exp/ms/RNA/obsm/X_genept"

    def __init__(self, dense: np.ndarray):
        coo = sparse.coo_matrix(dense)
        self._table = pa.table(
            {
                "soma_dim_0": pa.array(coo.row.astype(np.int64)),
                "soma_dim_1": pa.array(coo.col.astype(np.int64)),
                "soma_data": pa.array(coo.data.astype(np.float32)),
            }
        )

    def read(self, coords):
        wanted = set(np.asarray(coords[0]).tolist())
        keep = [r in wanted for r in self._table["soma_dim_0"].to_pylist()]
        table = self._table.filter(pa.array(keep))

        class _Read:
            def tables(self):
                return self

            def concat(self):
                return table

        return _Read()


def test_soma_rows_with_nan_or_inf_are_refused_naming_the_array_and_cells():
    from sc_genept.model._soma_stream import read_rows

    values = np.arange(1, 13, dtype=np.float32).reshape(4, 3)
    values[2, 1] = np.nan
    values[3, 0] = np.inf
    array = _FakeSomaArray(values)
    good = read_rows(array, np.array([1, 0]), np.arange(3))
    np.testing.assert_array_equal(good.toarray(), values[[1, 0]])
    with pytest.raises(ValueError, match=r"X_genept holds NaN or infinite.*soma_joinid \[2, 3\]"):
        read_rows(array, np.array([3, 0, 2]), np.arange(3))


def test_soma_batches_of_another_kind_than_the_prototype_are_refused(tiny_table):
    from sc_genept.model._soma_stream import Embedder

    counts = sparse.csr_matrix(np.array([[3, 0, 1], [0, 2, 5]], dtype=np.float32))
    values = counts.copy()
    values.data = np.log1p(values.data)
    embedder = Embedder(np.arange(3), tiny_table.embeddings[:3], None)
    embedder.normalize = False  # as SomaCells sets it after a prototype of normalised values
    embedder(values)
    with pytest.raises(ValueError, match=r"prototype's cells .* hold non-integer .*later batch"):
        embedder(counts)
    embedder.normalize = True  # a prototype of counts
    np.testing.assert_allclose(
        embedder(counts)[0],
        embedder.__class__(np.arange(3), tiny_table.embeddings[:3], None)(counts)[0],
    )
    with pytest.raises(ValueError, match="mixes raw counts with normalised values"):
        embedder(values)
    embedder.normalize = None  # normalize=False: the values as they are, unchecked
    embedder(counts)
    embedder(values)


# ---- caches of the wrong kind ---------------------------------------------------------------


def test_a_cache_folder_that_is_a_file_is_named(tmp_path):
    from sc_genept.genes._cache import Cache, JobRecords

    (tmp_path / "cache").write_text("not a folder")
    for make in (lambda: Cache(tmp_path / "cache"), lambda: JobRecords(tmp_path / "cache" / "b")):
        with pytest.raises(NotADirectoryError, match=r"cache.* is a file\. Pass another cache_dir"):
            make()


def test_a_cache_entry_that_is_a_folder_is_named(tmp_path):
    from sc_genept.genes._cache import Cache, cache_key

    cache = Cache(tmp_path)
    key = cache_key("model", "text")
    cache.put_vector(key, [1.0, 2.0])
    entry = cache.path / key[:2] / key
    entry.unlink()
    entry.mkdir()
    with pytest.raises(IsADirectoryError, match=rf"cache entry {entry} is a folder"):
        cache.get_vector(key)


def test_a_cache_folder_behind_a_broken_link_is_named(tmp_path):
    from sc_genept.genes._cache import Cache

    (tmp_path / "cache").symlink_to(tmp_path / "gone")
    with pytest.raises(NotADirectoryError, match="is a file"):  # was a bare StopIteration
        Cache(tmp_path / "cache" / "sub")
