from __future__ import annotations

import copy
import sys
from collections.abc import Mapping

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scanpy as sc
from scipy import sparse

import sc_genept
from sc_genept.genes import GeneEmbeddings, Provenance

#: The obs columns genept_annotate writes under its default key, in order.
COLUMNS = [
    "genept_cell_type",
    "genept_cell_type_ontology_term_id",
    "genept_cell_type_confidence",
    "genept_cell_type_finest",
    "genept_cell_type_finest_ontology_term_id",
    "genept_cell_type_finest_probability",
    "genept_cell_type_reason",
    "genept_cell_type_typicality",
]


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


def _split(adata):
    rng = np.random.default_rng(0)
    labels = adata.obs["cell_type_ontology_term_id"].to_numpy()
    test = np.concatenate(
        [rng.permutation(np.flatnonzero(labels == c))[::5] for c in np.unique(labels)]
    )
    is_test = np.isin(np.arange(adata.n_obs), test)
    return adata[~is_test].copy(), adata[is_test].copy()


@pytest.fixture
def pbmc_split(pbmc_embedded):
    """A fixed, stratified 80/20 split of the embedded PBMCs: (reference, query)."""
    return _split(pbmc_embedded)


def _train(ref):
    from sc_genept.model import GenePTClassifier

    GenePTClassifier.setup_anndata(ref, labels_key="cell_type_ontology_term_id")
    model = GenePTClassifier(ref)
    model.train(max_epochs=40, enable_progress_bar=False)
    return model


@pytest.fixture
def trained(pbmc_split):
    """A GenePTClassifier trained (40 epochs) on the reference part of ``pbmc_split``."""
    return _train(pbmc_split[0])


@pytest.fixture(scope="session")
def _trained_folder_once(_pbmc_embedded_once, tmp_path_factory):
    folder = tmp_path_factory.mktemp("trained") / "model"
    _train(_split(_pbmc_embedded_once)[0]).save(folder)
    return folder


@pytest.fixture
def trained_folder(_trained_folder_once, tmp_path):
    """The folder ``trained.save`` writes (trained once per session): the test's own copy."""
    import shutil

    return shutil.copytree(_trained_folder_once, tmp_path / "m")


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


def rehash(folder) -> None:
    """Rewrite a model folder's manifest to match its files: what someone crafting one would do."""
    import json
    from hashlib import sha256

    manifest = json.loads((folder / "manifest.json").read_text())
    for name in manifest["sha256"]:
        manifest["sha256"][name] = sha256((folder / name).read_bytes()).hexdigest()
    (folder / "manifest.json").write_text(json.dumps(manifest))


def largest_block(indptr, rows: int) -> int:
    """The most stored values any ``rows`` consecutive rows of a CSR matrix hold."""
    per_row = np.diff(indptr)
    return max(per_row[i : i + rows].sum() for i in range(len(per_row)))


# ---- the user's AnnData must be left as it was ---------------------------------------


_FIELDS = ("X", "obs", "var", "obsm", "varm", "obsp", "uns", "layers", "raw")


def _fields(adata: ad.AnnData) -> dict:
    """What a call must leave as it was (references, not copies)."""
    raw = adata.raw
    return {
        "X": adata.X[:] if adata.isbacked else adata.X,
        "obs": adata.obs,
        "var": adata.var,
        "obsm": dict(adata.obsm),
        "varm": dict(adata.varm),
        "obsp": dict(adata.obsp),
        "uns": dict(adata.uns),
        "layers": dict(adata.layers),
        "raw": None if raw is None else {"X": raw.X, "var": raw.var},
    }


def assert_same(before, after, where: str = "adata") -> None:
    """Value-by-value equality of nested AnnData fields (sparse, NaN, categoricals, dicts)."""
    if isinstance(before, pd.DataFrame):
        assert isinstance(after, pd.DataFrame), where
        pd.testing.assert_frame_equal(after, before, check_exact=True, obj=where)
    elif isinstance(before, pd.Series | pd.Index):
        assert type(after) is type(before), where
        (
            pd.testing.assert_series_equal
            if isinstance(before, pd.Series)
            else pd.testing.assert_index_equal
        )(after, before, check_exact=True, obj=where)
    elif sparse.issparse(before):
        assert sparse.issparse(after), f"{where} is no longer sparse"
        assert (after.format, after.shape, after.dtype) == (
            before.format,
            before.shape,
            before.dtype,
        ), where
        np.testing.assert_array_equal(after.toarray(), before.toarray(), err_msg=where)
    elif isinstance(before, np.ndarray):
        assert isinstance(after, np.ndarray), f"{where} is no longer an array"
        assert (after.shape, after.dtype) == (before.shape, before.dtype), where
        if before.dtype.kind in "fc":
            np.testing.assert_array_equal(after, before, err_msg=where)  # NaN == NaN here
        else:
            assert np.array_equal(after, before), where
    elif isinstance(before, Mapping):
        assert isinstance(after, Mapping), f"{where} is no longer a mapping"
        assert set(after) == set(before), (
            f"{where}: keys {sorted(map(str, set(after) ^ set(before)))} differ"
        )
        for key in before:
            assert_same(before[key], after[key], f"{where}[{key!r}]")
    elif isinstance(before, list | tuple):
        assert type(after) is type(before) and len(after) == len(before), where
        for i, (b, a) in enumerate(zip(before, after, strict=True)):
            assert_same(b, a, f"{where}[{i}]")
    elif isinstance(before, float) and np.isnan(before):
        assert isinstance(after, float) and np.isnan(after), where
    else:
        assert type(after) is type(before) and after == before, f"{where}: {before!r} → {after!r}"


@pytest.fixture
def unchanged():
    """``watch(adata)`` snapshots an AnnData; at teardown every field must be as it was."""
    watched = []

    def watch(adata):
        if isinstance(adata, ad.AnnData):
            watched.append((adata, copy.deepcopy(_fields(adata))))
        return adata

    yield watch
    for i, (adata, before) in enumerate(watched):
        after = _fields(adata)
        for field in _FIELDS:
            assert_same(before[field], after[field], f"adata #{i} .{field}")


def assert_unchanged(adata, before) -> None:
    """Every field of ``adata`` (X, obs, var, obsm, varm, obsp, uns, layers, raw) is as in
    ``before``, its earlier copy, value by value."""
    after, before = _fields(adata), _fields(before)
    for field in _FIELDS:
        assert_same(before[field], after[field], f"adata.{field}")


@pytest.fixture
def server(tmp_path):
    """A real HTTP server on 127.0.0.1 serving ``tmp_path / "served"``."""
    from file_server import FileServer

    root = tmp_path / "served"
    root.mkdir()
    with FileServer(root) as srv:
        yield srv


@pytest.fixture
def verbosity(capfd):
    """Set sc.settings.verbosity for one test; restored after.

    scanpy's log lines go to the stderr captured here (its handler keeps the stream it was
    given, which pytest replaced before this test).
    """
    before, logfile = sc.settings.verbosity, sc.settings.logfile

    def set_to(level):
        sc.settings.verbosity = level

    sc.settings.logfile = sys.stderr
    sc.settings.verbosity = "warning"  # scanpy's default
    yield set_to
    sc.settings.verbosity = before
    sc.settings.logfile = logfile
