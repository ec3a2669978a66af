"""Raw 10x counts from a real experiment: celltypist's sample (559 cells × 32,786 genes)."""

import os

import anndata as ad
import celltypist
import numpy as np
import pandas as pd
import pytest

import sc_genept

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
