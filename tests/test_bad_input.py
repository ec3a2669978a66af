"""Bad input at every public entry point: a clear error (or a documented warning), never a
raw library exception, and the user's AnnData left exactly as it was.

Each table row is ``(call, expected, match)``: ``call(env)`` makes the bad call, ``expected``
is the exception (or warning) class and ``match`` a regex that the message must contain,
naming what is wrong *and* what to do. Every AnnData a call is given comes from ``env``,
which snapshots it; the ``unchanged`` fixture compares X, obs, var, obsm, varm, obsp, uns,
layers and raw value by value at teardown.
"""

from __future__ import annotations

import copy
import json
import os
import pickle
import re
import shutil
import subprocess
import sys
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scanpy as sc
from conftest import _FIELDS, _fields, assert_same

import sc_genept
from sc_genept import cli
from sc_genept.genes import (
    GeneEmbeddings,
    OpenAIEmbedder,
    SentenceTransformerEmbedder,
    UnsafePickleError,
    build_table,
    embed_texts,
    estimate_cost,
    from_frame,
    from_mapping,
    match_genes,
    read_genept_pickle,
    read_table_file,
    text,
)
from sc_genept.metrics import (
    accuracy,
    evaluate,
    expected_calibration_error,
    hierarchical_prf,
    macro_f1,
    sctab_correct,
)
from sc_genept.model import GenePTClassifier, ModelFolderError
from sc_genept.ontology import CellOntology

LABELS = "cell_type_ontology_term_id"
FAST = {"max_epochs": 1, "enable_progress_bar": False}
NAN, INF = float("nan"), float("inf")
#: Options of GenePTClassifier.train that go in its plan_kwargs.
PLAN_OPTIONS = ("lr", "weight_decay", "balance_classes", "gene_dropout")


def _train_option(key: str, value) -> dict:
    """``key=value`` as train() takes it: a plan option inside ``plan_kwargs``."""
    return {"plan_kwargs": {key: value}} if key in PLAN_OPTIONS else {key: value}


#: Obsolete CL ids of the bundled release: replaced by a live term, and replaced by none.
OBSOLETE_REPLACED, OBSOLETE_GONE = "CL:0000003", "CL:0000002"


# ---- the AnnData must be unchanged (the check lives in conftest.py) -------------------


def test_the_unchanged_check_sees_every_kind_of_change(pbmc):
    """The helper itself: each of these edits must be caught."""
    edits = {
        "X value": lambda a: a.X.__setitem__((0, 0), a.X[0, 0] + 1),
        "NaN in X": lambda a: a.X.__setitem__((1, 1), np.nan),
        "obs column": lambda a: a.obs.__setitem__("new", 1),
        "category order": lambda a: a.obs.__setitem__(
            "louvain",
            a.obs["louvain"].cat.reorder_categories(a.obs["louvain"].cat.categories[::-1]),
        ),
        "obsm entry": lambda a: a.obsm.__setitem__("X_genept", np.zeros((a.n_obs, 2))),
        "obsp value": lambda a: a.obsp["distances"].data.__setitem__(0, 5.0),
        "varm value": lambda a: a.varm["PCs"].__setitem__((0, 0), 9.0),
        "nested uns array": lambda a: a.uns["pca"]["variance"].__setitem__(0, -1.0),
        "nested uns key": lambda a: a.uns["neighbors"]["params"].__setitem__("n", 3),
        "layer": lambda a: a.layers.__setitem__("counts", a.X.copy()),
        "raw": lambda a: a.raw.X.__setitem__((0, 0), 42.0),
        "var": lambda a: a.var.__setitem__("means", 0.0),
    }
    a = pbmc.copy()
    for what, edit in edits.items():
        adata = a.copy()
        before = copy.deepcopy(_fields(adata))
        assert_same(before["X"], _fields(adata)["X"])
        edit(adata)
        after = _fields(adata)
        try:
            for field in _FIELDS:
                assert_same(before[field], after[field], field)
        except AssertionError:
            continue
        pytest.fail(f"the unchanged check missed a change: {what}")


# ---- shared data -----------------------------------------------------------------------


@pytest.fixture(scope="session")
def split(_pbmc_embedded_once):
    """(reference, query) of the embedded PBMCs, every fifth cell a query cell (session-wide)."""
    adata = _pbmc_embedded_once.copy()
    is_query = np.arange(adata.n_obs) % 5 == 0
    return adata[~is_query].copy(), adata[is_query].copy()


@pytest.fixture(scope="session")
def trained(split):
    """One small model trained once: two epochs of a one-member MLP."""
    ref = split[0].copy()
    GenePTClassifier.setup_anndata(ref, labels_key=LABELS)
    model = GenePTClassifier(ref, n_hidden=16, n_members=1)
    model.train(max_epochs=2, enable_progress_bar=False)
    return model


@pytest.fixture(scope="session")
def saved(trained, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("model") / "m"
    trained.save(folder)
    return folder


class Env:
    """What the bad calls need; every AnnData it hands out is watched by ``unchanged``."""

    def __init__(self, request, watch, tmp_path: Path):
        self._request, self.watch, self.tmp = request, watch, tmp_path

    def fixture(self, name: str):
        return self._request.getfixturevalue(name)

    # fresh objects, watched: pass them as they are
    @property
    def pbmc(self) -> ad.AnnData:
        """Real PBMCs: scaled .X, log-normalised .raw, rich obs/uns/obsm/obsp/varm."""
        return self.watch(self.fixture("pbmc").copy())

    @property
    def counts(self) -> ad.AnnData:
        return self.watch(self.fixture("counts").copy())

    @property
    def ref(self) -> ad.AnnData:
        return self.watch(self.fixture("split")[0].copy())

    @property
    def query(self) -> ad.AnnData:
        return self.watch(self.fixture("split")[1].copy())

    def changed(self, name: str, change) -> ad.AnnData:
        """A fresh ``name`` (pbmc, counts, ref, query) after ``change(adata)``, then watched."""
        fresh = {
            "pbmc": lambda: self.fixture("pbmc").copy(),
            "counts": lambda: self.fixture("counts").copy(),
            "ref": lambda: self.fixture("split")[0].copy(),
            "query": lambda: self.fixture("split")[1].copy(),
        }[name]()
        out = change(fresh)
        return self.watch(out if isinstance(out, ad.AnnData) else fresh)

    @property
    def model(self):
        return self.fixture("trained")

    @property
    def table(self) -> GeneEmbeddings:
        return self.fixture("default_table")

    def untrained(self):
        """A fresh set-up, untrained model and its (watched, registered) reference."""
        ref = self.fixture("split")[0].copy()
        GenePTClassifier.setup_anndata(ref, labels_key=LABELS)
        model = GenePTClassifier(ref, n_hidden=8, n_members=1)
        self.watch(ref)
        return model

    def folder(self, damage=None) -> Path:
        """A copy of the saved model folder, optionally damaged by ``damage(folder)``."""
        folder = self.tmp / "model"
        shutil.copytree(self.fixture("saved"), folder)
        if damage is not None:
            damage(folder)
        return folder

    def file(self, name: str, content: str | bytes = "") -> Path:
        path = self.tmp / name
        (path.write_bytes if isinstance(content, bytes) else path.write_text)(content)
        return path


@pytest.fixture
def env(request, unchanged, tmp_path) -> Env:
    return Env(request, unchanged, tmp_path)


def check(env: Env, call, expected: type[BaseException], match: str) -> None:
    """``call(env)`` raises ``expected`` (or warns it) with a message matching ``match``."""
    if issubclass(expected, Warning):
        with pytest.warns(expected, match=match):
            call(env)
    else:
        with pytest.raises(expected, match=match):
            call(env)


def xfail(reason: str):
    return pytest.mark.xfail(reason=reason, strict=True)


# ---- modified data -----------------------------------------------------------------------


def _set(row, col, value):
    def change(a):
        a.X = np.asarray(a.X, dtype=np.float64)
        a.X[row, col] = value

    return change


def _unscaled_raw_dropped(a):
    return ad.AnnData(a.X.copy(), obs=a.obs.copy(), var=a.var.copy())


def _renamed(a):
    a.var_names = [f"FEATURE_{i}" for i in range(a.n_vars)]


def _duplicated_names(a):
    names = list(a.var_names)
    names[1] = names[0]
    a.var_names = names


def _mixed_counts(a):
    a.X = a.X.astype(np.float64)
    a.X[60:] = a.X[60:] / 3.3


def _as_mouse(a):
    a.var_names = [n.capitalize() for n in a.var_names]


def _from_raw(a, n_genes=None):
    raw = a.raw.to_adata()
    return raw[:, :n_genes].copy() if n_genes else raw


def _raw_with_nan(a):
    raw = a.raw.to_adata()
    raw.X[0, 0] = np.nan
    a.raw = raw


def _labels(values):
    def change(a):
        a.obs[LABELS] = pd.Categorical(values(a))

    return change


def _embedded_with(**kwargs):
    def change(a):
        sc.tl.genept_embed(a, use_raw=True, **kwargs)

    return change


def _on_other_genes(a):
    raw = a.raw.to_adata()
    raw.var_names = [*raw.var_names[:-1], "CD19" if "CD19" not in raw.var_names else "CD4"]
    sc.tl.genept_embed(raw)
    return raw


def _backed(a, path):
    a.write_h5ad(path)
    return ad.read_h5ad(path, backed="r")


# ---- sc.tl.genept_embed / sc_genept.tl.genept_embed ----------------------------------------

EMBED = [
    pytest.param(
        lambda e: sc.tl.genept_embed([e.counts]),
        TypeError,
        r"adata must be an AnnData.*got list",
        id="list-instead-of-adata",
    ),
    pytest.param(
        lambda e: sc_genept.tl.genept_embed(e.counts.X),
        TypeError,
        r"adata must be an AnnData.*got ndarray",
        id="array-instead-of-adata",
    ),
    *(
        pytest.param(
            lambda e, v=value: sc.tl.genept_embed(e.counts, chunk_size=v),
            error,
            r"chunk_size must be (a whole number )?≥ 1 \(or None for the default\)",
            id=f"chunk_size={value!r}",
        )
        for value, error in [(0, ValueError), (-5, ValueError)]
        + [(v, TypeError) for v in (2.5, NAN, INF, "100", True)]
    ),
    *(
        pytest.param(
            lambda e, v=value: sc.tl.genept_embed(e.counts, n_dims=v),
            error,
            r"n_dims must be (a whole number )?≥ 1 \(or None for the default\)",
            id=f"n_dims={value!r}",
        )
        for value, error in [(0, ValueError), (-1, ValueError), (NAN, TypeError), ("64", TypeError)]
    ),
    pytest.param(
        lambda e: sc.tl.genept_embed(e.counts, n_dims=10_000),
        ValueError,
        r"n_dims=10000 but the gene table .* has 384 dimensions: pass n_dims from 1 to 384",
        id="n_dims-above-table",
    ),
    pytest.param(
        lambda e: sc.tl.genept_embed(e.counts, layer="counts"),
        KeyError,
        r"No layer 'counts' in adata\.layers; it has \[\]",
        id="unknown-layer",
    ),
    pytest.param(
        lambda e: sc.tl.genept_embed(e.counts, use_raw=True),
        ValueError,
        r"use_raw=True but adata\.raw is None\. Pass layer= or use adata\.X",
        id="use_raw-without-raw",
    ),
    pytest.param(
        lambda e: sc.tl.genept_embed(e.pbmc, use_raw="yes"),
        ValueError,
        r"use_raw must be True, False or None, got 'yes'",
        id="use_raw-not-bool",
    ),
    pytest.param(
        lambda e: sc.tl.genept_embed(e.pbmc, use_raw=True, layer="counts"),
        ValueError,
        r"either layer= or use_raw=True, not both",
        id="layer-and-use_raw",
    ),
    pytest.param(
        lambda e: sc.tl.genept_embed(e.changed("pbmc", _unscaled_raw_dropped)),
        ValueError,
        r"adata\.X has negative values .*looks scaled .*Pass the unscaled",
        id="scaled-without-raw",
    ),
    pytest.param(
        lambda e: sc.tl.genept_embed(e.pbmc, use_raw=False),
        ValueError,
        r"adata\.X has negative values .*Pass use_raw=True \(adata\.raw holds the unscaled",
        id="scaled-with-use_raw=False",
    ),
    pytest.param(
        lambda e: sc.tl.genept_embed(e.changed("counts", _set(3, 4, -1))),
        ValueError,
        r"negative values .*must be non-negative\. Pass",
        id="negative-counts",
    ),
    pytest.param(
        lambda e: sc.tl.genept_embed(e.changed("counts", _set(5, 0, np.nan))),
        ValueError,
        r"NaN or infinite values in rows 0–120; remove or fill them",
        id="NaN-in-X",
    ),
    pytest.param(
        lambda e: sc.tl.genept_embed(e.changed("counts", _set(5, 0, np.inf))),
        ValueError,
        r"NaN or infinite values .*remove or fill them",
        id="inf-in-X",
    ),
    pytest.param(
        lambda e: sc.tl.genept_embed(e.changed("pbmc", _raw_with_nan)),
        ValueError,
        r"NaN or infinite values .*remove or fill them",
        id="NaN-in-raw",
    ),
    pytest.param(
        lambda e: sc.tl.genept_embed(e.changed("counts", _renamed)),
        ValueError,
        r"None of the 320 genes of adata\.X is in the gene table .*pass gene_symbols=<column>",
        id="no-gene-matches",
    ),
    pytest.param(
        lambda e: sc.tl.genept_embed(e.counts, gene_symbols="symbol"),
        KeyError,
        r"gene_symbols='symbol' is not a column of the var of adata\.X; columns: \[\]",
        id="unknown-gene_symbols-column",
    ),
    pytest.param(
        lambda e: sc.tl.genept_embed(e.changed("counts", lambda a: a[:0].copy())),
        ValueError,
        r"no cells.*",
        id="zero-cells",
    ),
    pytest.param(
        lambda e: sc.tl.genept_embed(e.changed("counts", lambda a: a[:, :0].copy())),
        ValueError,
        r"None of the 0 genes of adata\.X is in the gene table",
        id="zero-genes",
    ),
    pytest.param(
        lambda e: sc.tl.genept_embed(e.changed("counts", _duplicated_names), copy=True),
        UserWarning,
        r"occur more than once in the var_names .*summed.*make the names unique first",
        id="duplicate-var_names-warn",
    ),
    pytest.param(
        lambda e: sc.tl.genept_embed(e.changed("counts", _mixed_counts), chunk_size=60),
        ValueError,
        r"mixes raw counts with normalised values\. Pass normalize=False .*or a layer",
        id="counts-mixed-with-normalised",
    ),
    pytest.param(
        lambda e: sc.tl.genept_embed(e.changed("counts", _as_mouse), copy=True),
        UserWarning,
        r"look like mouse genes.*pass orthologs=",
        id="mouse-genes-warn",
    ),
    pytest.param(
        lambda e: sc.tl.genept_embed(e.changed("counts", lambda a: a[:, :50].copy()), copy=True),
        UserWarning,
        r"Only \d+ of 50 genes .*matched .*pass gene_symbols=<column>",
        id="few-genes-warn",
    ),
    pytest.param(
        lambda e: sc.tl.genept_embed(e.pbmc, key_added="X_pca", copy=True),
        UserWarning,
        r"key_added overwrites adata\.obsm\['X_pca'\].*Pass another key_added",
        id="key_added-collision-warn",
    ),
    pytest.param(
        lambda e: sc.tl.genept_embed(e.pbmc, key_added=""),
        ValueError,
        r"key_added must be a non-empty string, got ''",
        id="key_added-empty",
    ),
    pytest.param(
        lambda e: sc.tl.genept_embed(e.pbmc, gene_embeddings="no-such-table"),
        FileNotFoundError,
        r"No gene table named 'no-such-table': pass one of \[.*'default'",
        id="unknown-gene-table",
    ),
    pytest.param(
        lambda e: sc.tl.genept_embed(e.pbmc, gene_embeddings=42),
        TypeError,
        r"name_or_path must be a table name .* or a file path, got int",
        id="gene-table-wrong-type",
    ),
    pytest.param(
        lambda e: sc.tl.genept_embed(e.pbmc, genes="CD3E"),
        ValueError,
        r"genes must be a list of gene symbols, got the string 'CD3E': pass \['CD3E'\]",
        id="genes-a-string",
    ),
    pytest.param(
        lambda e: sc.tl.genept_embed(e.pbmc, normalize="yes"),
        ValueError,
        r"normalize must be True or False, got 'yes'",
        id="normalize-not-bool",
    ),
    pytest.param(
        lambda e: sc.tl.genept_embed(
            e.watch(_backed(e.fixture("counts"), e.tmp / "c.h5ad")), copy=True
        ),
        ValueError,
        r"copy=True needs an in-memory AnnData; .*adata\.to_memory\(\)",
        id="copy-of-backed",
    ),
    pytest.param(
        lambda e: sc.tl.genept_embed(e.counts, device="tpu"),
        ValueError,
        r"device='tpu' cannot be used here .*Use 'cpu', or 'auto'",
        id="device-unknown",
    ),
    pytest.param(
        lambda e: sc.tl.genept_embed(e.counts, device=0),
        ValueError,
        r"device must be 'auto', 'cpu' or a torch device such as 'cuda', got 0",
        id="device-not-a-string",
    ),
    pytest.param(
        lambda e: sc.tl.genept_embed(e.counts, out_file=e.tmp / "embedding.zarr"),
        ValueError,
        r"out_file must end in \.npy",
        id="out-file-not-npy",
    ),
    pytest.param(
        lambda e: sc.tl.genept_embed(e.counts, out_file=e.tmp / "nowhere" / "e.npy"),
        FileNotFoundError,
        r"out_file's folder .*nowhere' does not exist; create it first",
        id="out-file-folder-missing",
    ),
]


@pytest.mark.parametrize(("call", "expected", "match"), EMBED)
def test_genept_embed(env, call, expected, match):
    check(env, call, expected, match)


# ---- sc.tl.genept_annotate --------------------------------------------------------------


def _annotate(e, query=None, **kwargs):
    """genept_annotate on a fresh PBMC query with a fresh PBMC reference unless given."""
    query = e.pbmc if query is None else query
    if "model" not in kwargs and "reference" not in kwargs:
        kwargs.setdefault("labels_key", LABELS)
        kwargs["reference"] = e.pbmc
    return sc.tl.genept_annotate(query, **kwargs)


ANNOTATE = [
    pytest.param(
        lambda e: sc.tl.genept_annotate(e.pbmc),
        ValueError,
        r"Pass either model= \(trained or saved\) or reference= with labels_key=",
        id="neither-model-nor-reference",
    ),
    pytest.param(
        lambda e: sc.tl.genept_annotate(e.pbmc, e.folder(), reference=e.pbmc, labels_key=LABELS),
        ValueError,
        r"Pass either model= .* not both",
        id="model-and-reference",
    ),
    pytest.param(
        lambda e: sc.tl.genept_annotate(e.pbmc, reference=e.pbmc),
        ValueError,
        r"reference= needs labels_key=: the obs column with its cell types",
        id="reference-without-labels_key",
    ),
    pytest.param(
        lambda e: _annotate(e, labels_key="celltype"),
        KeyError,
        r"No column 'celltype' in reference\.obs; columns: \[.*'cell_type_ontology_term_id'",
        id="unknown-labels_key",
    ),
    pytest.param(
        lambda e: sc.tl.genept_annotate([e.pbmc], reference=e.pbmc, labels_key=LABELS),
        TypeError,
        r"adata must be an AnnData \(cells × genes\), got list: pass the AnnData object itself",
        id="query-a-list",
    ),
    pytest.param(
        lambda e: sc.tl.genept_annotate(e.pbmc, reference=e.pbmc.obs, labels_key=LABELS),
        TypeError,
        r"reference must be an AnnData .*got DataFrame",
        id="reference-a-dataframe",
    ),
    pytest.param(
        lambda e: sc.tl.genept_annotate(e.pbmc, 42),
        TypeError,
        r"model must be a GenePTClassifier or the folder .*got int",
        id="model-an-int",
    ),
    *(
        pytest.param(
            lambda e, v=value: _annotate(e, min_confidence=v),
            ValueError,
            r"min_confidence must be .*\(0, 1\]",
            id=f"min_confidence={value!r}",
        )
        for value in (0, -0.1, 1.5, NAN)
    ),
    pytest.param(
        lambda e: _annotate(e, min_confidence="0.5"),
        TypeError,
        r"min_confidence must be a number in \(0, 1\], got '0\.5'",
        id="min_confidence-a-string",
    ),
    *(
        pytest.param(
            lambda e, v=value: _annotate(e, min_gene_overlap=v),
            ValueError,
            r"min_gene_overlap must be a number in \[0, 1\]",
            id=f"min_gene_overlap={value!r}",
        )
        for value in (-0.1, 1.5, NAN)
    ),
    pytest.param(
        lambda e: _annotate(e, inputs="expression"),
        ValueError,
        r"inputs must be one of \['genept\+expression', 'genept'\], not 'expression'",
        id="unknown-inputs",
    ),
    pytest.param(
        lambda e: _annotate(e, n_dims=0),
        ValueError,
        r"n_dims must be ≥ 1 \(or None for the default\), got 0",
        id="n_dims=0",
    ),
    pytest.param(
        lambda e: _annotate(e, key_added="cell_type"),
        ValueError,
        r"key_added='cell_type' would overwrite adata\.obs\['cell_type'\].*pass another key_added",
        id="key_added-overwrites-user-column",
    ),
    pytest.param(
        lambda e: _annotate(e, key_added=""),
        ValueError,
        r"key_added must be a non-empty string, got ''",
        id="key_added-empty",
    ),
    pytest.param(
        lambda e: _annotate(e, e.counts, use_raw=True),
        ValueError,
        r"use_raw=True but adata\.raw is None",
        id="query-use_raw-without-raw",
    ),
    pytest.param(
        lambda e: _annotate(e, layer="counts"),
        KeyError,
        r"No layer 'counts' in adata\.layers",
        id="query-unknown-layer",
    ),
    pytest.param(
        lambda e: _annotate(e, reference_layer="counts"),
        KeyError,
        r"No layer 'counts' in reference\.layers",
        id="reference-unknown-layer",
    ),
    pytest.param(
        lambda e: _annotate(
            e, reference=e.changed("pbmc", _unscaled_raw_dropped), labels_key=LABELS
        ),
        ValueError,
        r"looks scaled .*Pass",
        id="reference-scaled-without-raw",
    ),
    pytest.param(
        lambda e: _annotate(e, e.changed("pbmc", _raw_with_nan)),
        ValueError,
        r"NaN or infinite values .*remove or fill them",
        id="query-NaN",
    ),
    pytest.param(
        lambda e: _annotate(e, e.changed("counts", _renamed)),
        ValueError,
        r"None of the 320 genes .*pass gene_symbols=<column>",
        id="query-no-gene-matches",
    ),
    pytest.param(
        lambda e: _annotate(e, e.changed("pbmc", lambda a: _from_raw(a, 8))),
        ValueError,
        r"share 8 genes .*fewer than 10, too few to train on.*pass a lower min_gene_overlap",
        id="query-too-few-reference-genes",
        marks=pytest.mark.filterwarnings("ignore:Only 8"),
    ),
    pytest.param(
        lambda e: _annotate(e, e.changed("pbmc", lambda a: a[:0].copy())),
        ValueError,
        r"no cells",
        id="query-zero-cells",
    ),
    pytest.param(
        lambda e: _annotate(
            e,
            reference=e.changed(
                "pbmc",
                _labels(
                    lambda a: a.obs[LABELS].astype(object).where(a.obs_names != a.obs_names[3])
                ),
            ),
            labels_key=LABELS,
        ),
        ValueError,
        r"1 cells have no label in obs\['cell_type_ontology_term_id'\]: train on the labelled",
        id="reference-NaN-label",
    ),
    pytest.param(
        lambda e: _annotate(
            e,
            reference=e.changed(
                "pbmc", _labels(lambda a: ["T-ish cell"] * 5 + list(a.obs[LABELS][5:]))
            ),
            labels_key=LABELS,
        ),
        ValueError,
        r"1 labels in obs\[.*\] match no single term.*'T-ish cell'.*Map them to CL ids",
        id="reference-unknown-label",
    ),
    pytest.param(
        lambda e: _annotate(
            e,
            reference=e.changed(
                "pbmc", _labels(lambda a: [OBSOLETE_GONE] * 5 + list(a.obs[LABELS][5:]))
            ),
            labels_key=LABELS,
        ),
        ValueError,
        r"CL:0000002 .*is obsolete .*relabel these cells with a live CL term",
        id="reference-obsolete-label",
    ),
    pytest.param(
        lambda e: _annotate(
            e,
            reference=e.changed("pbmc", _labels(lambda a: ["CL:0000236"] * a.n_obs)),
            labels_key=LABELS,
        ),
        ValueError,
        r"have one label \(B cell\): a classifier needs at least two cell types",
        id="reference-single-label",
    ),
    pytest.param(
        lambda e: _annotate(
            e, reference=e.changed("pbmc", lambda a: a[:0].copy()), labels_key=LABELS
        ),
        ValueError,
        r"reference has no cells",
        id="reference-zero-cells",
    ),
    pytest.param(
        lambda e: _annotate(e, max_epochs=0),
        ValueError,
        r"max_epochs must be ≥ 1, got 0",
        id="train-max_epochs=0",
    ),
    pytest.param(
        lambda e: _annotate(e, plan_kwargs={"lr": NAN}),
        ValueError,
        r"plan_kwargs\['lr'\] must be a finite number > 0, got nan",
        id="train-lr=nan",
    ),
    pytest.param(
        lambda e: _annotate(e, lr=0.01),
        TypeError,
        r"lr is an option of the training plan: pass plan_kwargs=\{'lr': \.\.\.\}",
        id="train-lr-outside-plan_kwargs",
    ),
    pytest.param(
        lambda e: _annotate(e, plan_kwargs={"learning_rate": 0.01}),
        TypeError,
        r"plan_kwargs takes \['balance_classes', 'gene_dropout', 'lr', 'weight_decay'\], not \['learning_rate'\]",
        id="train-plan_kwargs-unknown",
    ),
    pytest.param(
        lambda e: _annotate(e, max_epoch=5),
        TypeError,
        r"max_epoch is not an argument of GenePTClassifier\.train .*did you mean 'max_epochs'",
        id="train-argument-typo",
    ),
    pytest.param(
        lambda e: _annotate(e, model=e.folder(), max_epochs=5),
        TypeError,
        r"\['max_epochs'\] with model=: they apply only when training on reference=",
        id="training-arguments-with-model",
    ),
    pytest.param(
        lambda e: _annotate(e, model=e.folder(), reference_use_raw=True),
        TypeError,
        r"\['reference_use_raw'\] with model=",
        id="reference-options-with-model",
    ),
    pytest.param(
        lambda e: _annotate(e, model=e.tmp / "no-model"),
        ValueError,
        r"no-model is not a folder: pass the folder that GenePTClassifier\.save wrote",
        id="model-folder-missing",
    ),
    pytest.param(
        lambda e: _annotate(e, model=e.folder() / "model.json"),
        ValueError,
        r"model\.json is not a folder: pass the folder",
        id="model-path-is-a-file",
    ),
    pytest.param(
        lambda e: _annotate(e, model=e.folder(), n_dims=64),
        ValueError,
        r"n_dims=64, but the model was trained on 384 dimensions .*leave n_dims out",
        id="model-with-other-n_dims",
    ),
    pytest.param(
        lambda e: _annotate(e, model=e.folder(), gene_embeddings=e.table.truncate(64)),
        ValueError,
        r"gene_embeddings=.* is another table\. Pass that table as gene_embeddings=",
        id="model-with-other-gene-table",
    ),
    pytest.param(
        lambda e: _annotate(e, model=e.folder(), min_gene_overlap=2),
        ValueError,
        r"min_gene_overlap must be a number in \[0, 1\], got 2",
        id="model-min_gene_overlap=2",
    ),
]


@pytest.mark.parametrize(("call", "expected", "match"), ANNOTATE)
def test_genept_annotate(env, call, expected, match, monkeypatch, saved):
    monkeypatch.setattr("lightning.pytorch.Trainer.fit", _no_fit)  # refused before training
    check(env, call, expected, match)


def _no_fit(*args, **kwargs):
    raise AssertionError("training started on a bad call; it must be refused before")


# ---- sc_genept.model.GenePTClassifier ---------------------------------------------------


def _setup(adata, **kwargs):
    kwargs.setdefault("labels_key", LABELS)
    GenePTClassifier.setup_anndata(adata, **kwargs)


def _new(e, **kwargs):
    ref = e.changed("ref", lambda a: _setup(a))
    return GenePTClassifier(ref, **kwargs)


def _load(folder, **kwargs):
    return GenePTClassifier.load(folder, **kwargs)


def _edit_json(folder):
    meta = json.loads((folder / "model.json").read_text())
    meta["ontology"]["terms"]["CL:0000236"]["name"] = "T cell"
    (folder / "model.json").write_text(json.dumps(meta))


def _truncate_weights(folder):
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])


CLASSIFIER = [
    pytest.param(
        lambda e: _setup([e.ref]),
        TypeError,
        r"adata must be an AnnData \(cells × genes\), got list: pass the AnnData object itself",
        id="setup-list-instead-of-adata",
    ),
    pytest.param(
        lambda e: _setup(e.ref, labels_key="celltype"),
        KeyError,
        r"No column 'celltype' in adata\.obs; columns: \[",
        id="setup-unknown-labels_key",
    ),
    pytest.param(
        lambda e: _setup(e.ref, embedding_keys=("X_genept", "X_scvi")),
        KeyError,
        r"No obsm\['X_scvi'\] in adata; it has \[.*'X_genept'.*\]\. Compute it",
        id="setup-unknown-obsm-key",
    ),
    pytest.param(
        lambda e: _setup(e.ref, embedding_keys="X_genept"),
        TypeError,
        r"embedding_keys must be a list of obsm keys, not the string 'X_genept': pass \['X_genept'\]",
        id="setup-embedding_keys-a-string",
    ),
    pytest.param(
        lambda e: _setup(
            e.changed("ref", lambda a: a.obsm["X_genept"].__setitem__((0, 0), np.nan))
        ),
        ValueError,
        r"obsm\['X_genept'\] has NaN or infinite values in 1 cells.*embed again or drop those cells",
        id="setup-NaN-in-obsm",
    ),
    pytest.param(
        lambda e: _setup(
            e.changed(
                "ref", _labels(lambda a: a.obs[LABELS].astype(object).where(np.arange(a.n_obs) > 0))
            )
        ),
        ValueError,
        r"1 cells have no label in obs\[.*\]: train on the labelled cells only",
        id="setup-NaN-label",
    ),
    pytest.param(
        lambda e: _setup(e.changed("ref", _labels(lambda a: ["Tcell"] + list(a.obs[LABELS][1:])))),
        ValueError,
        r"match no single term .*'Tcell'.*did you mean 'T-cell'.*Map them to CL ids",
        id="setup-unknown-label",
    ),
    pytest.param(
        lambda e: _setup(
            e.changed("ref", _labels(lambda a: [OBSOLETE_GONE] + list(a.obs[LABELS][1:])))
        ),
        ValueError,
        r"CL:0000002 .*is obsolete .*relabel these cells",
        id="setup-obsolete-label",
    ),
    pytest.param(
        lambda e: _setup(e.changed("ref", _labels(lambda a: ["B cell"] * a.n_obs))),
        ValueError,
        r"one label \(B cell\): a classifier needs at least two cell types",
        id="setup-single-label",
    ),
    pytest.param(
        lambda e: _setup(e.changed("ref", lambda a: a[:0].copy())),
        ValueError,
        r"adata has no cells: train on a reference with labelled cells",
        id="setup-zero-cells",
    ),
    pytest.param(
        lambda e: _setup(e.ref, ontology=str(e.tmp / "cl.obo")),
        FileNotFoundError,
        r"Cannot load the Cell Ontology: .*cl\.obo does not exist",
        id="setup-missing-ontology",
    ),
    pytest.param(
        lambda e: GenePTClassifier(e.ref),
        ValueError,
        r"setup_anndata",
        id="model-on-unregistered-adata",
    ),
    pytest.param(
        lambda e: GenePTClassifier(),
        ValueError,
        r"Pass adata registered with GenePTClassifier\.setup_anndata",
        id="model-without-adata",
    ),
    pytest.param(
        lambda e: GenePTClassifier([e.ref]),
        TypeError,
        r"adata must be an AnnData .*got list",
        id="model-list-instead-of-adata",
    ),
    *(
        pytest.param(
            lambda e, k=key, v=value: _new(e, **{k: v}),
            error,
            match,
            id=f"{key}={value!r}",
        )
        for key, value, error, match in (
            ("n_members", 0, ValueError, r"n_members must be ≥ 1, got 0"),
            ("n_members", 2.5, TypeError, r"n_members must be a whole number ≥ 1, got 2\.5"),
            ("n_hidden", 0, ValueError, r"n_hidden must be ≥ 1, got 0"),
            ("n_hidden", -8, ValueError, r"n_hidden must be ≥ 1, got -8"),
            ("n_hidden", "64", TypeError, r"n_hidden must be a whole number ≥ 1, got '64'"),
            ("n_layers", -1, ValueError, r"n_layers must be ≥ 0, got -1"),
            ("n_layers", NAN, TypeError, r"n_layers must be a whole number ≥ 0, got nan"),
            ("dropout", 1.0, ValueError, r"dropout must be a number in \[0, 1\), got 1\.0"),
            ("dropout", -0.2, ValueError, r"dropout must be a number in \[0, 1\), got -0\.2"),
            ("dropout", NAN, ValueError, r"dropout must be a number in \[0, 1\), got nan"),
            ("loss", "focal", ValueError, r"loss must be 'hierarchical' or 'flat', not 'focal'"),
        )
    ),
    *(
        pytest.param(
            lambda e, k=key, v=value: e.untrained().train(**{**FAST, **_train_option(k, v)}),
            error,
            match.replace(f"{key} must", rf"plan_kwargs\['{key}'\] must", 1)
            if key in PLAN_OPTIONS
            else match,
            id=f"train-{key}={value!r}",
        )
        for key, value, error, match in (
            ("max_epochs", 0, ValueError, r"max_epochs must be ≥ 1, got 0"),
            ("max_epochs", -3, ValueError, r"max_epochs must be ≥ 1, got -3"),
            ("max_epochs", "10", TypeError, r"max_epochs must be a whole number ≥ 1, got '10'"),
            ("max_epochs", NAN, TypeError, r"max_epochs must be a whole number ≥ 1, got nan"),
            ("batch_size", 0, ValueError, r"batch_size must be ≥ 1, got 0"),
            ("batch_size", 12.5, TypeError, r"batch_size must be a whole number ≥ 1"),
            ("lr", 0, ValueError, r"lr must be a finite number > 0, got 0"),
            ("lr", -1e-3, ValueError, r"lr must be a finite number > 0, got -0\.001"),
            ("lr", INF, ValueError, r"lr must be a finite number > 0, got inf"),
            ("lr", "1e-3", TypeError, r"lr must be a number, got '1e-3'"),
            ("weight_decay", -1, ValueError, r"weight_decay must be a finite number ≥ 0, got -1"),
            ("train_size", 0, ValueError, r"train_size must be a number in \(0, 1\], got 0"),
            ("train_size", 1.5, ValueError, r"train_size must be a number in \(0, 1\], got 1\.5"),
            ("train_size", NAN, ValueError, r"train_size must be a number in \(0, 1\], got nan"),
            ("calibration_size", 1, ValueError, r"calibration_size must be a number in \[0, 1\)"),
            (
                "calibration_size",
                -0.1,
                ValueError,
                r"calibration_size must be a number in \[0, 1\)",
            ),
            ("gene_dropout", 1, ValueError, r"gene_dropout must be a number in \[0, 1\), got 1"),
            (
                "gene_dropout",
                NAN,
                ValueError,
                r"gene_dropout must be a number in \[0, 1\), got nan",
            ),
            (
                "gene_dropout",
                "0.1",
                TypeError,
                r"gene_dropout must be a number in \[0, 1\), got '0\.1'",
            ),
            ("balance_classes", "yes", TypeError, r"balance_classes must be True or False"),
            ("early_stopping_patience", -1, ValueError, r"early_stopping_patience must be ≥ 0"),
            (
                "max_epoch",
                3,
                TypeError,
                r"max_epoch is not an argument .*did you mean 'max_epochs'",
            ),
        )
    ),
    pytest.param(
        lambda e: e.untrained().predict(e.query),
        RuntimeError,
        r"not been trained: call model\.train\(\) first",
        id="predict-untrained",
    ),
    pytest.param(
        lambda e: e.untrained().predict_proba(e.query),
        RuntimeError,
        r"not been trained: call model\.train\(\) first",
        id="predict_proba-untrained",
    ),
    pytest.param(
        lambda e: e.model.predict([e.query]),
        TypeError,
        r"adata must be an AnnData .*got list",
        id="predict-list-instead-of-adata",
    ),
    *(
        pytest.param(
            lambda e, k=key, v=value, f=method: getattr(e.model, f)(e.query, **{k: v}),
            error,
            match,
            id=f"{method}-{key}={value!r}",
        )
        for method, key, value, error, match in (
            (
                "predict",
                "min_confidence",
                0,
                ValueError,
                r"min_confidence must be a number in \(0, 1\], got 0",
            ),
            (
                "predict",
                "min_confidence",
                1.2,
                ValueError,
                r"min_confidence must be a number in \(0, 1\]",
            ),
            (
                "predict",
                "min_confidence",
                "0.5",
                TypeError,
                r"min_confidence must be a number in \(0, 1\], got '0\.5'",
            ),
            ("predict", "batch_size", 0, ValueError, r"batch_size must be ≥ 1, got 0"),
            ("predict_proba", "batch_size", -1, ValueError, r"batch_size must be ≥ 1, got -1"),
            (
                "predict_proba",
                "min_gene_overlap",
                NAN,
                ValueError,
                r"min_gene_overlap must be a number in \[0, 1\]",
            ),
        )
    ),
    pytest.param(
        lambda e: e.model.predict(e.changed("query", lambda a: a.obsm.pop("X_genept"))),
        KeyError,
        r"No obsm\['X_genept'\] in adata; .*Run sc\.tl\.genept_embed\(adata\) first",
        id="predict-query-not-embedded",
        marks=pytest.mark.filterwarnings("ignore:adata.uns"),
    ),
    pytest.param(
        lambda e: e.model.predict(
            e.changed("query", _embedded_with(gene_embeddings=e.table.truncate(64)))
        ),
        ValueError,
        r"made with another gene table than the model's training data .*Re-embed with the model's table",
        id="predict-query-of-another-gene-table",
    ),
    pytest.param(
        lambda e: e.model.predict(e.changed("query", _on_other_genes)),
        ValueError,
        r"the model was not trained on .*sc\.tl\.genept_embed\(adata, genes=model\.genes",
        id="predict-query-on-other-genes",
    ),
    pytest.param(
        lambda e: e.model.predict(
            e.changed("query", lambda a: a.obsm["X_genept"].__setitem__((2, 0), np.inf))
        ),
        ValueError,
        r"obsm\['X_genept'\] has NaN or infinite values in 1 cells",
        id="predict-inf-in-obsm",
    ),
    pytest.param(
        lambda e: e.model.save(e.file("model.txt", "x")),
        FileExistsError,
        r"model\.txt is a file; pass a folder to save the model in",
        id="save-to-a-file",
    ),
    pytest.param(
        lambda e: e.model.save(e.folder()),
        FileExistsError,
        r"exists and is not empty; pass overwrite=True",
        id="save-over-a-model",
    ),
    pytest.param(
        lambda e: _load(e.tmp / "nowhere"),
        ModelFolderError,
        r"nowhere is not a folder: pass the folder that GenePTClassifier\.save wrote",
        id="load-missing-folder",
    ),
    pytest.param(
        lambda e: _load(e.file("model.json", "{}")),
        ModelFolderError,
        r"is not a folder: pass the folder",
        id="load-a-file",
    ),
    pytest.param(
        lambda e: _load(e.folder(_edit_json)),
        ModelFolderError,
        r"model\.json in .* changed after the model was saved .*Fetch or save the model again",
        id="load-edited-json",
    ),
    pytest.param(
        lambda e: _load(e.folder(_truncate_weights)),
        ModelFolderError,
        r"model\.safetensors in .* changed after the model was saved",
        id="load-truncated-weights",
    ),
    pytest.param(
        lambda e: _load(e.folder(lambda f: (f / "manifest.json").unlink())),
        ModelFolderError,
        r"has no manifest\.json .*not a complete model folder",
        id="load-manifest-missing",
    ),
    pytest.param(
        lambda e: _load(None),
        TypeError,
        r"dir_path must be the folder .* got NoneType",
        id="load-None",
    ),
    pytest.param(
        lambda e: _load(e.folder(), device="gpu0"),
        ValueError,
        r"device='gpu0' is not a torch device: pass 'cpu', 'cuda' or 'cuda:<index>'",
        id="load-bad-device",
    ),
    pytest.param(
        lambda e: _load(e.folder(), adata=e.changed("query", _embedded_with(n_dims=32))),
        ValueError,
        r"made with another gene table .*Re-embed with the model's table",
        id="load-with-query-of-another-table",
    ),
]


@pytest.mark.parametrize(("call", "expected", "match"), CLASSIFIER)
@pytest.mark.filterwarnings("ignore:.*does not have many workers:UserWarning")
def test_classifier(env, call, expected, match, monkeypatch, saved):
    monkeypatch.setattr("lightning.pytorch.Trainer.fit", _no_fit)
    check(env, call, expected, match)


# ---- sc_genept.genes --------------------------------------------------------------------


def _csv(e, body: str, name="table.csv"):
    return e.file(name, body)


def _parquet_with_null_vector(e):
    path = e.tmp / "t.parquet"
    pd.DataFrame({"symbol": ["CD3E", "MS4A1"], "embedding": [[0.1, 0.2], None]}).to_parquet(path)
    return path


def _pickle(e, obj, name="t.pickle"):
    return e.file(name, pickle.dumps(obj))


GENES = [
    pytest.param(
        lambda e: sc_genept.genes.load("no-such-table"),
        FileNotFoundError,
        r"No gene table named 'no-such-table': pass one of .* or the path of a table file",
        id="load-unknown-name",
    ),
    pytest.param(
        lambda e: sc_genept.genes.load(None),
        TypeError,
        r"name_or_path must be a table name .* or a file path, got NoneType",
        id="load-None",
    ),
    pytest.param(
        lambda e: sc_genept.genes.load(_csv(e, "symbol,d1,d2\nCD3E,0.1,0.2\nMS4A1,0.3,abc\n")),
        ValueError,
        r"not a number.*'abc'",
        id="csv-non-numeric-cell",
    ),
    pytest.param(
        lambda e: read_table_file(_csv(e, "symbol,d1,d2\nCD3E,0.1,0.2\nMS4A1,0.3,0.4,0.5\n")),
        ValueError,
        r"is not a readable CSV gene table: .*Every row needs a symbol and the same number",
        id="csv-ragged-row",
    ),
    pytest.param(
        lambda e: read_table_file(_csv(e, "")),
        ValueError,
        r"is not a readable CSV gene table",
        id="csv-empty-file",
    ),
    pytest.param(
        lambda e: read_table_file(_csv(e, "name,d1\nCD3E,0.1\n")),
        ValueError,
        r"No column of gene symbols found .*pass symbol_column=",
        id="csv-without-symbol-column",
    ),
    pytest.param(
        lambda e: read_table_file(e.tmp / "missing.csv"),
        FileNotFoundError,
        r"missing\.csv.*(does not exist|no such)",
        id="read-missing-csv",
    ),
    pytest.param(
        lambda e: read_table_file(_parquet_with_null_vector(e)),
        ValueError,
        r"1 of 2 rows of the gene table have no vector \(rows \[1\]\): drop those genes",
        id="parquet-null-vector",
    ),
    pytest.param(
        lambda e: read_table_file(e.file("t.parquet", b"not parquet at all")),
        ValueError,
        r"is not a readable parquet file",
        id="parquet-not-parquet",
    ),
    pytest.param(
        lambda e: read_genept_pickle(_pickle(e, [1.0, 2.0])),
        UnsafePickleError,
        r"does not hold a dict of gene symbols \(got list\)",
        id="pickle-holds-list",
    ),
    pytest.param(
        lambda e: read_genept_pickle(_pickle(e, {"CD3E": os.getcwd})),
        UnsafePickleError,
        r"Refusing to load .*getcwd from the pickle",
        id="pickle-holds-code",
    ),
    pytest.param(
        lambda e: read_genept_pickle(_pickle(e, {"CD3E": [0.1, 0.2], "CD4": [0.3]})),
        ValueError,
        r"Gene vectors have different lengths: .*Every gene needs a vector of the same length",
        id="pickle-ragged-vectors",
    ),
    pytest.param(
        lambda e: read_table_file(e.file("t.xlsx", b"PK")),
        ValueError,
        r"Unknown gene-table format '\.xlsx': use \.parquet, \.pickle/\.pkl, \.csv or \.tsv",
        id="unknown-extension",
    ),
    pytest.param(
        lambda e: GeneEmbeddings(["A", "B"], np.ones((3, 4))),
        ValueError,
        r"Need one symbol per embedding row",
        id="table-rows-mismatch",
    ),
    pytest.param(
        lambda e: GeneEmbeddings([], np.ones((0, 4))),
        ValueError,
        r"needs at least one gene and one dimension.*Is the source file empty",
        id="table-empty",
    ),
    pytest.param(
        lambda e: GeneEmbeddings(["A", "A"], np.ones((2, 4))),
        ValueError,
        r"Gene symbols must be unique.*drop_duplicates",
        id="table-duplicate-symbols",
    ),
    pytest.param(
        lambda e: GeneEmbeddings(["A", " "], np.ones((2, 4))),
        ValueError,
        r"non-empty strings.*fill in their symbols",
        id="table-blank-symbol",
    ),
    pytest.param(
        lambda e: GeneEmbeddings(["A", "B"], [[1.0, np.nan], [0.0, 1.0]]),
        ValueError,
        r"NaN or infinite values in 1 genes .*Drop those genes or re-embed",
        id="table-NaN-vector",
    ),
    pytest.param(
        lambda e: GeneEmbeddings(["A", "B"], [["x", 1.0], [0.0, 1.0]]),
        ValueError,
        r"must be a \(n_genes, n_dims\) matrix of numbers",
        id="table-non-numeric-vector",
    ),
    pytest.param(
        lambda e: GeneEmbeddings(["A", "B"], np.ones((2, 4)), ensembl_ids=["ENSG1"]),
        ValueError,
        r"ensembl_ids must have one entry per gene \(2\)",
        id="table-ensembl_ids-length",
    ),
    *(
        pytest.param(
            lambda e, v=value: e.table.truncate(v),
            error,
            match,
            id=f"truncate({value!r})",
        )
        for value, error, match in (
            (0, ValueError, r"n_dims must be ≥ 1, got 0"),
            (-4, ValueError, r"n_dims must be ≥ 1, got -4"),
            (1000, ValueError, r"n_dims must be between 1 and 384, got 1000"),
            ("64", TypeError, r"n_dims must be a whole number ≥ 1, got '64'"),
            (NAN, TypeError, r"n_dims must be a whole number ≥ 1, got nan"),
        )
    ),
    pytest.param(
        lambda e: e.table.save(e.tmp / "t.parquet", dtype="float64"),
        ValueError,
        r'dtype must be "float32" or "float16", got \'float64\'',
        id="save-dtype",
    ),
    pytest.param(
        lambda e: match_genes(["CD3E"], "default"),
        TypeError,
        r"table must be a GeneEmbeddings.*sc_genept\.genes\.load",
        id="match_genes-table-a-string",
    ),
    pytest.param(
        lambda e: match_genes("CD3E", e.table),
        TypeError,
        r"names must be a list of gene names.*\['CD3E'\]",
        id="match_genes-names-a-string",
    ),
    pytest.param(
        lambda e: from_frame(pd.DataFrame({"symbol": ["A"], "v": [1.0]}), symbol_column="gene"),
        ValueError,
        r"symbol_column='gene' is not a column of the table; it has \['symbol', 'v'\]",
        id="from_frame-unknown-column",
    ),
    pytest.param(
        lambda e: from_mapping({}),
        ValueError,
        r"The mapping holds no genes",
        id="from_mapping-empty",
    ),
    pytest.param(
        lambda e: text.read_texts(_csv(e, "gene,description\nCD3E,t cell\n", "texts.csv")),
        ValueError,
        r"lacks the column\(s\) \['symbol', 'text'\]; a texts table has symbol and text",
        id="read_texts-missing-columns",
    ),
    pytest.param(
        lambda e: text.read_mygene_json(e.file("hits.json", "not json")),
        ValueError,
        r"hits\.json is not mygene.*JSON",
        id="read_mygene_json-not-json",
    ),
    pytest.param(
        lambda e: text.read_ncbi_gene_info(_csv(e, "a\tb\n1\t2\n", "gene_info.tsv")),
        ValueError,
        r"gene_info.*lacks the column",
        id="read_ncbi_gene_info-wrong-columns",
    ),
    *(
        pytest.param(
            lambda e, kw=kwargs: OpenAIEmbedder("text-embedding-3-small", api_key="unused", **kw),
            error,
            match,
            id=f"OpenAIEmbedder-{next(iter(kwargs))}={next(iter(kwargs.values()))!r}",
        )
        for kwargs, error, match in (
            (
                {"dimensions": 0},
                ValueError,
                r"dimensions must be ≥ 1 \(or None for the default\), got 0",
            ),
            (
                {"dimensions": "256"},
                TypeError,
                r"dimensions must be a whole number ≥ 1 \(or None for the default\), got '256'",
            ),
            (
                {"dimensions": 4096},
                ValueError,
                r"makes 1536-dimensional vectors; dimensions= can shorten them",
            ),
            ({"max_retries": -1}, ValueError, r"max_retries must be ≥ 0, got -1"),
            ({"timeout": 0}, ValueError, r"timeout must be a finite number > 0, got 0"),
            ({"timeout": NAN}, ValueError, r"timeout must be a finite number > 0, got nan"),
            ({"max_batch_size": 0}, ValueError, r"max_batch_size must be ≥ 1, got 0"),
        )
    ),
    pytest.param(
        lambda e: OpenAIEmbedder("", api_key="unused"),
        ValueError,
        r"model must be a non-empty string, got ''",
        id="OpenAIEmbedder-empty-model",
    ),
    pytest.param(
        lambda e: SentenceTransformerEmbedder(batch_size=0),
        ValueError,
        r"batch_size must be ≥ 1, got 0",
        id="SentenceTransformerEmbedder-batch_size=0",
    ),
    pytest.param(
        lambda e: embed_texts("CD3E: T cell", SentenceTransformerEmbedder()),
        TypeError,
        r"texts must be a list of strings, one per vector wanted",
        id="embed_texts-a-string",
    ),
    pytest.param(
        lambda e: embed_texts([], SentenceTransformerEmbedder()),
        ValueError,
        r"texts is empty: there is nothing to embed",
        id="embed_texts-empty",
    ),
    pytest.param(
        lambda e: embed_texts(
            ["x"], SentenceTransformerEmbedder(), poll_interval=-1, cache_dir=e.tmp
        ),
        ValueError,
        r"poll_interval must be a finite number ≥ 0, got -1",
        id="embed_texts-poll_interval=-1",
    ),
    pytest.param(
        lambda e: estimate_cost(["x"], "text-embedding-3-small", price_per_million_tokens=-1),
        ValueError,
        r"price_per_million_tokens must be a finite number ≥ 0, got -1",
        id="estimate_cost-negative-price",
    ),
    pytest.param(
        lambda e: build_table(
            pd.DataFrame({"gene": ["A"]}), SentenceTransformerEmbedder(), text_source="t"
        ),
        ValueError,
        r"lacks \['symbol', 'text'\]\. Make one with sc_genept\.genes\.text",
        id="build_table-missing-columns",
    ),
    pytest.param(
        lambda e: build_table(
            pd.DataFrame({"symbol": ["A", None], "text": ["a", "b"]}),
            SentenceTransformerEmbedder(),
            text_source="t",
        ),
        ValueError,
        r"1 rows have no symbol or no text .*drop or fill them",
        id="build_table-missing-symbol",
    ),
]


@pytest.mark.parametrize(("call", "expected", "match"), GENES)
def test_genes(env, call, expected, match):
    check(env, call, expected, match)


# ---- sc_genept.ontology.CellOntology ------------------------------------------------------


def _from_dict(terms):
    return CellOntology.from_dict(terms, version="test")


ONTOLOGY = [
    pytest.param(
        lambda e: CellOntology.load(e.tmp / "cl.obo"),
        FileNotFoundError,
        r"Cannot load the Cell Ontology: .*cl\.obo does not exist",
        id="load-missing-file",
    ),
    pytest.param(
        lambda e: CellOntology.load(e.tmp),
        FileNotFoundError,
        r"is a folder, not a file",
        id="load-a-folder",
    ),
    pytest.param(
        lambda e: CellOntology.load(e.file("cells.csv", "id,name\nCL:0000000,cell\n")),
        ValueError,
        r"(?s)cells\.csv: could not read it as an OBO file .*Pass 'bundled' .*or a path or URL of a Cell Ontology OBO file",
        id="load-not-obo",
    ),
    pytest.param(
        lambda e: CellOntology.load(e.file("cl.obo.gz", b"\x1f\x8b\x08garbage")),
        ValueError,
        r"could not read it as an OBO file",
        id="load-damaged-gzip",
    ),
    pytest.param(
        lambda e: CellOntology.load(42),
        TypeError,
        r"CellOntology\.load takes a path or URL, got int",
        id="load-an-int",
    ),
    pytest.param(
        lambda e: e.fixture("cl").resolve(OBSOLETE_REPLACED),
        UserWarning,
        r"CL:0000003 is obsolete in CL .*; using its replacement CL:0000000 'cell'",
        id="resolve-obsolete-warns",
    ),
    pytest.param(
        lambda e: e.fixture("cl").map_labels(["T cell", OBSOLETE_REPLACED]),
        UserWarning,
        r"CL:0000003 is obsolete .*using its replacement",
        id="map_labels-obsolete-warns",
    ),
    pytest.param(
        lambda e: e.fixture("cl").ancestors("CL:9999999"),
        KeyError,
        r"'CL:9999999' is not a live term of CellOntology.*Map names with CellOntology\.resolve",
        id="ancestors-unknown-id",
    ),
    pytest.param(
        lambda e: e.fixture("cl").ancestors(OBSOLETE_GONE),
        KeyError,
        r"CL:0000002 .*is obsolete .*relabel these cells with a live CL term",
        id="ancestors-obsolete-id",
    ),
    pytest.param(
        lambda e: e.fixture("cl").name("T cell"),
        KeyError,
        r"'T cell' is not a live term .*Map names with CellOntology\.resolve\(\)",
        id="name-of-a-name",
    ),
    pytest.param(
        lambda e: e.fixture("tiny_cl").distance("CL:0000002", "CL:0000099"),
        KeyError,
        r"'CL:0000099' is not a live term",
        id="distance-unknown-id",
    ),
    pytest.param(
        lambda e: e.fixture("tiny_cl").depth("CL:0000007"),
        KeyError,
        r"CL:0000007 'retired cell' is obsolete .*relabel",
        id="depth-obsolete-id",
    ),
    pytest.param(
        lambda e: _from_dict([("CL:0000000", {"name": "cell"})]),
        TypeError,
        r"from_dict takes a dict \{term_id: \{'name': …, 'parents': \[…\]\}\}, got list",
        id="from_dict-a-list",
    ),
    pytest.param(
        lambda e: _from_dict(
            {"CL:0000000": {"name": "cell"}, "CL:0000001": {"parents": ["CL:0000000"]}}
        ),
        ValueError,
        r"CL:0000001 has no 'name' string.*Pass a dict closed under ancestors",
        id="from_dict-missing-name",
    ),
    pytest.param(
        lambda e: _from_dict(
            {"CL:0000000": {"name": "cell"}, "CL:0000001": {"name": "x", "parents": ["CL:0000009"]}}
        ),
        ValueError,
        r"has parent 'CL:0000009', which is not a key.*as CellOntology\.to_dict\(terms\) returns",
        id="from_dict-unknown-parent",
    ),
    pytest.param(
        lambda e: _from_dict(
            {
                "CL:0000000": {"name": "cell"},
                "CL:0000001": {"name": "a", "parents": ["CL:0000002"]},
                "CL:0000002": {"name": "b", "parents": ["CL:0000001"]},
            }
        ),
        ValueError,
        r"the parents form a cycle",
        id="from_dict-cycle",
    ),
    pytest.param(
        lambda e: _from_dict({"CL:0000001": {"name": "T cell"}}),
        ValueError,
        r"has no live term CL:0000000 \('cell'\)",
        id="from_dict-without-root",
    ),
    pytest.param(
        lambda e: _from_dict({"CL:0000000": {"name": "cell", "parents": "CL:0000001"}}),
        ValueError,
        r"'parents' and 'synonyms' must be lists, not strings",
        id="from_dict-parents-a-string",
    ),
]


@pytest.mark.parametrize(("call", "expected", "match"), ONTOLOGY)
def test_ontology(env, call, expected, match):
    check(env, call, expected, match)


# ---- sc_genept.metrics ---------------------------------------------------------------------

T_CELL, B_CELL = "CL:0000084", "CL:0000236"

METRICS = [
    pytest.param(
        lambda e: evaluate([T_CELL, np.nan], [T_CELL, B_CELL]),
        ValueError,
        r"1 of 2 cells have no label in y_true .*Drop them from both y_true and y_pred",
        id="evaluate-NaN-truth",
    ),
    pytest.param(
        lambda e: evaluate([T_CELL, B_CELL], [T_CELL, "nan"]),
        ValueError,
        r"1 of 2 cells have no label in y_pred .*predict the root 'CL:0000000'",
        id="evaluate-nan-text-prediction",
    ),
    pytest.param(
        lambda e: evaluate([T_CELL, B_CELL], [T_CELL]),
        ValueError,
        r"must be equally long .*2 vs 1 labels\. Pass truth and prediction for the same cells",
        id="evaluate-unequal-lengths",
    ),
    pytest.param(
        lambda e: evaluate([], []),
        ValueError,
        r"y_true and y_pred are empty: there are no cells to score",
        id="evaluate-empty",
    ),
    pytest.param(
        lambda e: evaluate([T_CELL, "Tcell"], [T_CELL, T_CELL]),
        ValueError,
        r"1 labels in y_true .*map to no live term .*'Tcell'.*Relabel or drop those cells",
        id="evaluate-unknown-label",
    ),
    pytest.param(
        lambda e: evaluate([T_CELL, OBSOLETE_GONE], [T_CELL, T_CELL]),
        ValueError,
        r"CL:0000002 .*is obsolete .*relabel these cells with a live CL term",
        id="evaluate-obsolete-label",
    ),
    pytest.param(
        lambda e: evaluate(T_CELL, T_CELL),
        TypeError,
        r"y_true must be one label per cell, not a single string",
        id="evaluate-a-string",
    ),
    pytest.param(
        lambda e: evaluate([T_CELL], [T_CELL], ontology="bundled"),
        TypeError,
        r"ontology must be a CellOntology.*CellOntology\.load",
        id="evaluate-ontology-a-string",
    ),
    pytest.param(
        lambda e: hierarchical_prf([T_CELL], [T_CELL], e.fixture("cl"), exclude=T_CELL),
        ValueError,
        r"exclude must be 'shared' or a list of CL ids.*pass \['CL:0000084'\]",
        id="hierarchical_prf-exclude-a-string",
    ),
    pytest.param(
        lambda e: sctab_correct([T_CELL, None], [T_CELL, T_CELL], e.fixture("cl")),
        ValueError,
        r"1 of 2 cells have no label in y_true",
        id="sctab_correct-None-truth",
    ),
    pytest.param(
        lambda e: macro_f1(["a", "b"], ["a"]),
        ValueError,
        r"must be equally long",
        id="macro_f1-unequal-lengths",
    ),
    pytest.param(
        lambda e: macro_f1([], []),
        ValueError,
        r"are empty: there are no cells to score",
        id="macro_f1-empty",
    ),
    pytest.param(
        lambda e: accuracy([["a", "b"]], [["a", "b"]]),
        ValueError,
        r"y_true must be 1-D, one label per cell; got shape \(1, 2\)",
        id="accuracy-2d",
    ),
    pytest.param(
        lambda e: expected_calibration_error([0.5, NAN], [True, False]),
        ValueError,
        r"confidence must be probabilities in \[0, 1\] \(no NaN\)",
        id="ece-NaN-confidence",
    ),
    pytest.param(
        lambda e: expected_calibration_error([0.5, 1.5], [True, False]),
        ValueError,
        r"confidence must be probabilities in \[0, 1\]",
        id="ece-confidence-above-1",
    ),
    pytest.param(
        lambda e: expected_calibration_error([0.5], [True, False]),
        ValueError,
        r"must be 1-D and equally long: \(1,\) vs \(2,\)",
        id="ece-unequal-lengths",
    ),
    pytest.param(
        lambda e: expected_calibration_error([], []),
        ValueError,
        r"are empty: there is nothing to calibrate",
        id="ece-empty",
    ),
    pytest.param(
        lambda e: expected_calibration_error([0.5], [True], n_bins=0),
        ValueError,
        r"n_bins must be ≥ 1, got 0",
        id="ece-n_bins=0",
    ),
    pytest.param(
        lambda e: expected_calibration_error([0.5], [True], n_bins="15"),
        TypeError,
        r"n_bins must be a whole number ≥ 1",
        id="ece-n_bins-a-string",
    ),
    pytest.param(
        lambda e: expected_calibration_error([0.5, 0.9], [True, NAN]),
        ValueError,
        r"correct .*NaN",
        id="ece-NaN-correct",
    ),
]


@pytest.mark.parametrize(("call", "expected", "match"), METRICS)
def test_metrics(env, call, expected, match):
    check(env, call, expected, match)


# ---- the sc-genept command ----------------------------------------------------------------


def _texts_csv(tmp: Path) -> Path:
    path = tmp / "texts.csv"
    path.write_text("symbol,text\nCD3E,T cell receptor\n")
    return path


CLI = [
    # (argv, exit code, stream, match)
    pytest.param(["bogus"], 2, "err", r"invalid choice: 'bogus'", id="unknown-subcommand"),
    pytest.param(
        [], 2, "err", r"the following arguments are required: command", id="no-subcommand"
    ),
    pytest.param(["genes"], 2, "err", r"required: genes_command", id="genes-without-subcommand"),
    pytest.param(
        ["genes", "info", "{tmp}/missing.parquet"],
        1,
        "err",
        r"sc-genept: error: No gene table named '.*missing\.parquet': pass one of",
        id="info-missing-table",
    ),
    pytest.param(
        ["genes", "info", "{tmp}/texts.csv"],
        1,
        "err",
        r"sc-genept: error: No embedding column .* and no numeric columns in the table",
        id="info-not-a-gene-table",
    ),
    pytest.param(
        ["genes", "embed", "{tmp}/missing.csv", "--out", "{tmp}/t.parquet"],
        2,
        "err",
        r"TEXTS .*missing\.csv does not exist: pass the path of an existing file",
        id="embed-missing-input",
    ),
    pytest.param(
        ["genes", "embed", "{tmp}/texts.csv", "--out", "{tmp}/t.parquet", "--dimensions", "abc"],
        2,
        "err",
        r"argument --dimensions: must be a whole number ≥ 1, got 'abc'",
        id="embed-dimensions-not-int",
    ),
    pytest.param(
        [
            "genes",
            "embed",
            "{tmp}/texts.csv",
            "--out",
            "{tmp}/t.parquet",
            "--dimensions",
            "0",
            "--provider",
            "openai",
        ],
        2,
        "err",
        r"argument --dimensions: must be a whole number ≥ 1, got '0'",
        id="embed-dimensions-zero",
    ),
    pytest.param(
        ["genes", "embed", "{tmp}/texts.csv", "--out", "{tmp}/t.parquet", "--dimensions", "256"],
        2,
        "err",
        r"--dimensions applies to --provider openai only",
        id="embed-dimensions-with-local",
    ),
    pytest.param(
        ["genes", "embed", "{tmp}/texts.csv", "--out", "{tmp}/t.parquet", "--poll-interval", "-1"],
        2,
        "err",
        r"argument --poll-interval: must be a finite number ≥ 0, got '-1'",
        id="embed-negative-poll-interval",
    ),
    pytest.param(
        ["genes", "embed", "{tmp}/texts.csv", "--out", "{tmp}/t.parquet", "--price", "nan"],
        2,
        "err",
        r"argument --price: must be a finite number ≥ 0, got 'nan'",
        id="embed-price-nan",
    ),
    pytest.param(
        ["genes", "embed", "{tmp}/texts.csv", "--out", "{tmp}/t.parquet", "--provider", "cohere"],
        2,
        "err",
        r"--provider: invalid choice: 'cohere'",
        id="embed-unknown-provider",
    ),
    pytest.param(
        ["genes", "text", "--from", "ncbi", "--out", "{tmp}/t.csv"],
        2,
        "err",
        r"--from ncbi needs a PATH to read",
        id="text-ncbi-without-path",
    ),
    pytest.param(
        ["genes", "text", "--from", "ncbi", "{tmp}/gene_info.tsv", "--out", "{tmp}/t.csv"],
        2,
        "err",
        r"PATH .*gene_info\.tsv does not exist: pass the path of an existing file",
        id="text-missing-input",
    ),
    pytest.param(
        ["genes", "text", "--from", "mygene", "{tmp}/texts.csv", "--out", "{tmp}/t.csv"],
        1,
        "err",
        r"sc-genept: error: cannot read .*texts\.csv as mygene input \(ValueError: texts\.csv is not mygene\.info JSON.*--from mygene takes mygene\.info JSON",
        id="text-unreadable-input",
    ),
    pytest.param(
        ["genes", "text", "--out", "{tmp}/t.xlsx"],
        2,
        "err",
        r"--out must end in \.parquet, \.csv, \.tsv or \.txt",
        id="text-out-unknown-format",
    ),
    pytest.param(
        ["genes", "text"],
        2,
        "err",
        r"the following arguments are required: --out",
        id="text-without-out",
    ),
    pytest.param(
        ["demo", "--out", "{tmp}/texts.csv"],
        2,
        "err",
        r"--out .*texts\.csv is a file; pass a folder",
        id="demo-out-is-a-file",
    ),
    pytest.param(["--help"], 0, "out", r"usage: sc-genept .*\{demo,annotate,genes\}", id="help"),
    pytest.param(
        ["genes", "embed", "--help"],
        0,
        "out",
        r"usage: sc-genept genes embed .*--provider \{local,openai\}",
        id="genes-embed-help",
    ),
]


@pytest.mark.parametrize(("argv", "code", "stream", "match"), CLI)
def test_cli(argv, code, stream, match, tmp_path, capsys):
    _texts_csv(tmp_path)
    argv = [a.format(tmp=tmp_path) for a in argv]
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    captured = capsys.readouterr()
    assert exit_.value.code == code, captured
    text_ = captured.out if stream == "out" else captured.err
    assert "Traceback" not in captured.err
    assert re.search(match, " ".join(text_.split()), re.S), text_


SCRIPT = Path(sys.executable).with_name("sc-genept")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("command", "code", "stream", "match"),
    [
        pytest.param(
            [sys.executable, "-m", "sc_genept.cli", "--help"],
            0,
            "out",
            r"usage: sc-genept",
            id="module-help",
        ),
        pytest.param(
            [str(SCRIPT), "frobnicate"],
            2,
            "err",
            r"invalid choice: 'frobnicate'",
            id="script-unknown-subcommand",
        ),
        pytest.param(
            [str(SCRIPT), "genes", "info", "{tmp}/missing.parquet"],
            1,
            "err",
            r"sc-genept: error: No gene table named",
            id="script-missing-table",
        ),
    ],
)
def test_cli_process(command, code, stream, match, tmp_path):
    if not Path(command[0]).exists():
        pytest.skip(f"{command[0]} is not installed")
    command = [c.format(tmp=tmp_path) for c in command]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == code, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert re.search(match, done.stdout if stream == "out" else done.stderr), done
