"""Raw 10x counts from a real experiment: celltypist's sample (559 cells × 32,786 genes)."""

import os
import warnings

import anndata as ad
import celltypist
import numpy as np
import pandas as pd
import pytest
from scipy import sparse

import sc_genept

pytestmark = pytest.mark.slow  # minutes of training or processes: the full lane only

SAMPLES = os.path.join(os.path.dirname(celltypist.__file__), "data", "samples")


@pytest.fixture(scope="module")
def raw_10x():
    counts = pd.read_csv(os.path.join(SAMPLES, "sample_cell_by_gene.csv"), index_col=0)
    return ad.AnnData(
        counts.to_numpy(np.int32),
        obs=pd.DataFrame(index=counts.index),
        var=pd.DataFrame(index=counts.columns),
    )


def test_raw_counts_are_normalised_and_mostly_covered(raw_10x):
    info = sc_genept.tl.genept_embed(raw_10x, copy=True).uns["X_genept"]
    assert info["log_normalized"] is True
    # 10x features include ~13k non-coding genes the protein-coding table lacks, but those
    # carry little of the counts
    assert 0.5 < info["genes"]["fraction_genes_matched"] < 0.65
    assert info["fraction_counts_covered"] > 0.85
    assert info["genes"]["matched_by"]["alias"] > 500  # renamed genes (GENCODE versions differ)


def test_gencode_ids_give_nearly_the_same_cells(raw_10x):
    """Rename every gene GENCODE v44 names unambiguously to its Ensembl id (59 %; the rest
    keep their symbol), as merged datasets end up: the cells barely move."""
    gencode = pd.read_csv(
        os.path.join(SAMPLES, "GENCODEv44_Gene_id2name.csv"), header=None, names=["id", "name"]
    )
    to_ensembl = gencode.drop_duplicates("name", keep=False).set_index("name")["id"]
    renamed = raw_10x.copy()
    renamed.var_names = pd.Index([to_ensembl.get(n, n) for n in raw_10x.var_names])
    renamed.var_names_make_unique()
    by_symbol = sc_genept.tl.genept_embed(raw_10x, copy=True)
    by_id = sc_genept.tl.genept_embed(renamed, copy=True)
    assert by_id.uns["X_genept"]["genes"]["id_type"] == "ensembl"
    assert by_id.uns["X_genept"]["genes"]["matched_by"]["ensembl"] > 17_000
    cosine = (by_symbol.obsm["X_genept"] * by_id.obsm["X_genept"]).sum(axis=1)
    assert cosine.min() > 0.999


def _as(adata, x):
    return ad.AnnData(x, obs=adata.obs[[]], var=adata.var[[]])


def test_float16_counts_whose_library_sizes_overflow_float16(raw_10x):
    """4× deeper cells: library sizes pass float16's 65,504 but every count stays exact
    (multiples of 4 below 8,192); normalisation is scale-free, so nothing may change."""
    deep = raw_10x.X * 4
    assert (deep.sum(axis=1) > np.finfo(np.float16).max).sum() > 40
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "cells express none" for overflowed cells
        got = sc_genept.tl.genept_embed(_as(raw_10x, deep.astype(np.float16)), copy=True)
    expected = sc_genept.tl.genept_embed(raw_10x, copy=True)
    assert got.uns["X_genept"]["log_normalized"] is True
    assert got.uns["X_genept"]["n_cells_empty"] == 0
    np.testing.assert_allclose(got.obsm["X_genept"], expected.obsm["X_genept"], atol=1e-5)


@pytest.mark.parametrize("form", ["dense", "csr"])
def test_int64_counts_whose_library_sizes_overflow_int64(raw_10x, form):
    """Counts × 2**50 (exact in float32): library sizes overflow int64, the embedding may not
    change."""
    huge = raw_10x.X.astype(np.int64) * 2**50
    assert (huge.sum(axis=1) < 0).any()  # int64 wraps round
    huge = sparse.csr_matrix(huge) if form == "csr" else huge
    got = sc_genept.tl.genept_embed(_as(raw_10x, huge), copy=True)
    expected = sc_genept.tl.genept_embed(raw_10x, copy=True)
    assert got.uns["X_genept"]["n_cells_empty"] == 0
    np.testing.assert_allclose(got.obsm["X_genept"], expected.obsm["X_genept"], atol=1e-5)
