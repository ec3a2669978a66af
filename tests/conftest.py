from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest

import sc_genept
from sc_genept.genes import GeneEmbeddings, Provenance


@pytest.fixture(scope="session")
def default_table() -> GeneEmbeddings:
    return sc_genept.genes.load("default")


@pytest.fixture
def pbmc():
    """scanpy's real PBMCs: scaled .X, log-normalised .raw."""
    return sc_genept.datasets.pbmc68k_reduced()


@pytest.fixture
def counts(default_table) -> ad.AnnData:
    """Integer counts over 300 real genes of the default table plus 20 genes it lacks."""
    rng = np.random.default_rng(0)
    genes = [
        *rng.choice(default_table.symbols, 300, replace=False),
        *(f"NOTAGENE{i}" for i in range(20)),
    ]
    x = rng.negative_binomial(2, 0.7, size=(120, len(genes))) * (
        rng.random((120, len(genes))) < 0.3
    )
    return ad.AnnData(
        X=x.astype(np.int64),
        obs=pd.DataFrame(index=[f"cell{i}" for i in range(120)]),
        var=pd.DataFrame(index=genes),
    )


@pytest.fixture
def tiny_table() -> GeneEmbeddings:
    """Five genes in 4 dims with known vectors."""
    vectors = np.array(
        [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1], [3, 4, 0, 0]], dtype=np.float32
    )
    return GeneEmbeddings(
        ["CD3E", "MS4A1", "LYZ", "NKG7", "GNLY"],
        vectors,
        ensembl_ids=[
            "ENSG00000198851",
            "ENSG00000156738",
            "ENSG00000090382",
            "ENSG00000105374",
            None,
        ],
        texts=["t cell", "b cell", "monocyte", "nk", "granulysin"],
        provenance=Provenance(text_source="hand-written", embedding_model="none", license="CC0"),
    )


@pytest.fixture(scope="session")
def tiny_cl():
    """A hand-written 7-term ontology (see tests/data/tiny_cl.obo) with known answers."""
    from pathlib import Path

    from sc_genept.ontology import CellOntology

    return CellOntology.load(Path(__file__).parent / "data" / "tiny_cl.obo")


@pytest.fixture(scope="session")
def cl():
    from sc_genept.ontology import CellOntology

    return CellOntology.load()


@pytest.fixture(scope="session")
def _pbmc_embedded_once():
    import scanpy as sc

    adata = sc_genept.datasets.pbmc68k_reduced()
    sc.tl.genept_embed(adata, use_raw=True)
    return adata


@pytest.fixture
def pbmc_embedded(_pbmc_embedded_once):
    """Real PBMCs with CL labels and obsm["X_genept"] from the default table."""
    return _pbmc_embedded_once.copy()


@pytest.fixture
def pbmc_split(pbmc_embedded):
    """A fixed, stratified 80/20 split of the embedded PBMCs: (reference, query)."""
    rng = np.random.default_rng(0)
    labels = pbmc_embedded.obs["cell_type_ontology_term_id"].to_numpy()
    test = np.concatenate(
        [rng.permutation(np.flatnonzero(labels == c))[::5] for c in np.unique(labels)]
    )
    is_test = np.isin(np.arange(pbmc_embedded.n_obs), test)
    return pbmc_embedded[~is_test].copy(), pbmc_embedded[is_test].copy()


@pytest.fixture
def backed_reads(monkeypatch):
    """Watch a backed AnnData's X: the sizes of every read of its sparse arrays.

    ``watch(backed)`` returns the list the reads are appended to, and fails the test if
    all of X is loaded into memory (``to_memory``).
    """
    import h5py

    def watch(backed) -> list[int]:
        reads = []
        real_getitem = h5py.Dataset.__getitem__

        def counting_getitem(self, key, *args, **kwargs):
            out = real_getitem(self, key, *args, **kwargs)
            if self.name in ("/X/data", "/X/indices"):
                reads.append(np.size(out))
            return out

        monkeypatch.setattr(h5py.Dataset, "__getitem__", counting_getitem)
        monkeypatch.setattr(
            type(backed.X), "to_memory", lambda *_, **__: pytest.fail("all of X was loaded")
        )
        return reads

    return watch


def largest_block(indptr, rows: int) -> int:
    """The most stored values any ``rows`` consecutive rows of a CSR matrix hold."""
    per_row = np.diff(indptr)
    return max(per_row[i : i + rows].sum() for i in range(len(per_row)))
