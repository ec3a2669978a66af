"""The typed ``uns`` record of genept_embed: it writes, and reads back, exactly today's dict."""

from __future__ import annotations

import copy

import anndata as ad
import numpy as np
import pytest

import sc_genept
from sc_genept._record import EmbeddingRecord, GeneSet, gene_set_hash


@pytest.fixture(scope="module")
def embedded() -> ad.AnnData:
    """Real PBMCs embedded from their log-normalised ``.raw``, with the expression input."""
    adata = sc_genept.datasets.pbmc68k_reduced()
    sc_genept.tl.genept_embed(adata, use_raw=True, expression=True)
    return adata


def assert_same(got, want, path="uns"):
    """``got`` is ``want``: same keys in the same order, same types, same values and dtypes."""
    assert type(got) is type(want), f"{path}: {type(got).__name__} != {type(want).__name__}"
    if isinstance(want, dict):
        assert list(got) == list(want), f"{path}: keys {list(got)} != {list(want)}"
        for key in want:
            assert_same(got[key], want[key], f"{path}[{key!r}]")
    elif isinstance(want, np.ndarray):
        assert got.dtype == want.dtype, f"{path}: dtype {got.dtype} != {want.dtype}"
        np.testing.assert_array_equal(got, want, err_msg=path)
    else:
        assert got == want, f"{path}: {got!r} != {want!r}"


def test_round_trip_gives_what_genept_embed_wrote(embedded):
    written = embedded.uns["X_genept"]
    record = EmbeddingRecord.read(embedded, "X_genept")
    assert_same(record.to_uns(), written)
    assert_same(EmbeddingRecord.from_uns(record.to_uns()).to_uns(), written)
    assert record.kind == "embedding" and record.source == "adata.raw.X"
    assert record.log_normalized is False and record.lazy is False
    assert record.gene_set.n_genes == len(written["gene_set"]["names"]) == 741
    assert record.gene_set.mean_expression.dtype == np.float32
    assert record.genes["n_genes_matched"] == written["genes"]["n_genes_matched"]


def test_the_written_record_keeps_its_format(embedded):
    """Saved h5ad files and model folders hold this dict: its keys and types do not change."""
    written = embedded.uns["X_genept"]
    assert list(written) == [
        "params",
        "source",
        "gene_embeddings",
        "genes",
        "gene_set",
        "fraction_counts_covered",
        "log_normalized",
        "n_cells_empty",
    ]
    assert None not in written["params"].values()  # options not given are left out
    gene_set = written["gene_set"]
    assert list(gene_set) == [
        "n_genes",
        "sha256",
        "names",
        "mean_expression",
        "fraction_of_matched_expression",
        "n_imputed",
    ]
    names = gene_set["names"]
    assert names.dtype.kind == "U" and names.tolist() == sorted(names.tolist())
    assert type(gene_set["n_genes"]) is int and gene_set["n_genes"] == len(names)
    assert gene_set["sha256"] == gene_set_hash(names)
    assert gene_set["mean_expression"].dtype == np.float32
    assert gene_set["mean_expression"].shape == names.shape
    assert type(gene_set["fraction_of_matched_expression"]) is float
    assert type(gene_set["n_imputed"]) is int
    assert type(written["n_cells_empty"]) is int and type(written["log_normalized"]) is bool
    expression = embedded.uns["X_genept_expression"]
    assert list(expression) == ["kind", "values", "gene_set", "gene_embeddings"]
    assert expression["kind"] == "expression"


def test_round_trip_through_h5ad(embedded, tmp_path):
    embedded.write_h5ad(tmp_path / "a.h5ad")
    back = ad.read_h5ad(tmp_path / "a.h5ad")
    record = EmbeddingRecord.read(back, "X_genept")
    got, want = record.to_uns(), embedded.uns["X_genept"]
    assert list(got) == list(want)
    for field in ("source", "fraction_counts_covered", "log_normalized", "n_cells_empty"):
        assert_same(got[field], want[field], field)
    assert_same(got["gene_set"], want["gene_set"], "gene_set")
    assert got["genes"] == want["genes"] and got["params"] == want["params"]
    assert got["gene_embeddings"]["sha256"] == want["gene_embeddings"]["sha256"]


def test_numpy_scalars_read_back_as_plain_values(embedded):
    """Some anndata versions read h5ad scalars as NumPy ones; the record is as written."""
    written = embedded.uns["X_genept"]
    as_read = copy.deepcopy(written)
    as_read["n_cells_empty"] = np.int64(written["n_cells_empty"])
    as_read["log_normalized"] = np.bool_(written["log_normalized"])
    as_read["fraction_counts_covered"] = np.float64(written["fraction_counts_covered"])
    as_read["gene_set"]["n_imputed"] = np.int64(0)
    as_read["gene_set"]["names"] = written["gene_set"]["names"].astype(object)
    assert_same(EmbeddingRecord.from_uns(as_read).to_uns(), written)


def test_read_of_an_absent_key_is_none(embedded):
    assert EmbeddingRecord.read(embedded, "X_other") is None


def _without(field):
    return lambda record: record.pop(field)


def _set(field, value, inside=None):
    def change(record):
        (record if inside is None else record[inside])[field] = value

    return change


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (_without("gene_set"), "no 'gene_set'"),
        (_without("gene_embeddings"), "no 'gene_embeddings'"),
        (_set("gene_set", "CD3E"), "'gene_set' is a str, not a dict"),
        (_set("gene_embeddings", [1, 2]), "'gene_embeddings' is a list, not a dict"),
        (lambda r: r["gene_set"].pop("names"), "no gene_set['names']"),
        (lambda r: r["gene_set"].pop("sha256"), "no gene_set['sha256']"),
        (
            _set("names", "CD3E", inside="gene_set"),
            "gene_set['names'] is a str, not a list of names",
        ),
        (
            _set("mean_expression", np.zeros(3), inside="gene_set"),
            "gene_set['names'] has 741 genes but gene_set['mean_expression'] 3 values",
        ),
        (_set("log_normalized", "yes"), "'log_normalized' is a str, not a bool"),
        (_set("n_cells_empty", "none"), "'n_cells_empty' is a str, not a number"),
        (_set("kind", "umap"), "'kind' is 'umap', not 'embedding' or 'expression'"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_a_malformed_record_names_the_key_and_the_field(embedded, change, problem):
    record = copy.deepcopy(embedded.uns["X_genept"])
    change(record)
    with pytest.raises(ValueError) as raised:
        EmbeddingRecord.read(ad.AnnData(uns={"X_genept": record}), "X_genept")
    assert str(raised.value) == (
        f"adata.uns['X_genept'] is not a genept_embed record ({problem}): run "
        "sc.tl.genept_embed again."
    )


def test_a_record_that_is_not_a_dict_is_refused():
    with pytest.raises(ValueError, match=r"adata\.uns\['X_pca'\] is not a genept_embed record "):
        EmbeddingRecord.read(ad.AnnData(uns={"X_pca": np.zeros(3)}), "X_pca")
    with pytest.raises(ValueError, match=r"Not a genept_embed gene set \(no gene_set\['sha256'\]"):
        GeneSet.from_uns({"names": ["CD3E"]})


def test_expression_record_is_what_genept_embed_writes(embedded):
    written = embedded.uns["X_genept_expression"]
    record = EmbeddingRecord.read(embedded, "X_genept")
    assert_same(record.expression().to_uns(), written)
    expression = EmbeddingRecord.read(embedded, "X_genept_expression")
    assert expression.kind == "expression" and expression.values == "as given"
    assert_same(expression.to_uns(), written)
    assert expression.gene_set.n_genes == embedded.obsm["X_genept_expression"].shape[1]


def test_gene_set_is_sorted_by_name_with_its_means():
    gene_set = GeneSet.sorted_by_name(
        ["CD3E", "ACTB", "MS4A1"], [1.0, 2.0, 3.0], fraction_of_matched_expression=0.12345678
    )
    assert gene_set.names.tolist() == ["ACTB", "CD3E", "MS4A1"]
    assert gene_set.mean_expression.tolist() == [2.0, 1.0, 3.0]
    assert gene_set.mean_expression.dtype == np.float32
    assert gene_set.sha256 == gene_set_hash(["MS4A1", "CD3E", "ACTB"])
    assert gene_set.fraction_of_matched_expression == 0.123457 and gene_set.n_genes == 3
    assert_same(GeneSet.from_uns(gene_set.to_uns()).to_uns(), gene_set.to_uns())


def test_lazy_record_round_trip(counts):
    da = pytest.importorskip("dask.array")
    counts.X = da.from_array(counts.X, chunks=(40, -1))
    sc_genept.tl.genept_embed(counts)
    written = counts.uns["X_genept"]
    record = EmbeddingRecord.read(counts, "X_genept")
    assert record.lazy is True and record.gene_set.mean_expression is None
    assert record.fraction_counts_covered is None and record.n_cells_empty is None
    assert_same(record.to_uns(), written)
