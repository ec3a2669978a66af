"""Honest answers: cell types the reference lacks, an error rate the user chooses, calibration.

    python benchmarks/honesty.py                 # pbmc68k_reduced, 3 seeds (~10 min on 2 cores)
    python benchmarks/honesty.py --baron         # and Baron human pancreas (fetched via pip)
    # writes benchmarks/results/honesty.json and honesty_error_coverage.png

1. Leave one type out. For each cell type with at least 10 cells, in turn: the reference
   is the training part of a stratified 80/20 split without that type; the query is the
   split's test cells of the other types and every cell of the held-out type. A held-out
   cell's call is a *wrong specific call* when it is one of the reference's own types and
   not the cell's true type or above it (a held-out naive CD8 T cell called "CD8 T cell"
   is right). Reported per type and as the mean over types, with the scTab macro-F1 of
   the reported calls on the known-type cells, with ``genept_annotate``'s defaults and with
   the novelty check on (``novelty_rate=0.02``).
   Beside it: CellTypist (its own code, SGD mode) in "prob match" mode with
   ``p_thres=0.5`` (a cell no type reaches 0.5 is "Unassigned", several: a multi-label,
   neither counted as a specific call), and the random-vector control through the same
   pipeline.
2. ``max_error``: 5-fold cross-validation; on each test fold, the realised error of the
   reported calls (a call is wrong when it is neither the true term nor above or below
   it) and the coverage (share of cells called at one of the reference's own types), at
   ``max_error`` 0.05, 0.1 and 0.2, and the error-coverage curve of fold 1's model on its
   held-out calibration cells and on its test fold.
3. Calibration: expected calibration error (15 bins) of the reported call's confidence,
   pooled over the test folds.

The models are what ``genept_annotate(query, reference=ref, labels_key=...)`` trains (the
default gene table, GenePT-w and the 2,000 most variable genes' expression), kept as
objects so that one model answers every option.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scanpy as sc
from sklearn.model_selection import StratifiedKFold

import sc_genept
from sc_genept.metrics import expected_calibration_error
from sc_genept.model import GenePTClassifier
from sc_genept.tl._inputs import keep_expression_genes, most_variable

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE / "transfer")]
import peers  # noqa: E402
from transfer_accuracy import QUIET, Scorer, _mean_sd  # noqa: E402

LABELS = "cell_type_ontology_term_id"
KEY = "genept_cell_type"
RESULTS = HERE / "results" / "honesty.json"
FIGURE = HERE / "results" / "honesty_error_coverage.png"
MIN_CELLS = 10
MAX_ERRORS = (0.05, 0.1, 0.2)
KEYS = ("X_genept", "X_genept_expression")


def trained(ref: ad.AnnData, table, *, use_raw: bool, seed: int) -> GenePTClassifier:
    """The model the one-liner trains on ``ref`` (its own genes), as an object."""
    ref = ref.copy()
    sc.tl.genept_embed(ref, gene_embeddings=table, use_raw=use_raw, expression=True)
    keep_expression_genes(ref, most_variable(ref, 2000))
    GenePTClassifier.setup_anndata(ref, labels_key=LABELS, embedding_keys=KEYS)
    model = GenePTClassifier(ref)
    model.train(seed=seed, **QUIET)
    return model


def annotate(model, query: ad.AnnData, table, *, use_raw: bool, **options) -> pd.DataFrame:
    out = sc.tl.genept_annotate(
        query,
        model,
        gene_embeddings=table,
        use_raw=use_raw,
        min_gene_overlap=0.0,
        copy=True,
        **options,
    )
    return out.obs.filter(like=KEY).rename(columns=lambda c: c.removeprefix(KEY) or "call_name")


def celltypist_prob_match(ref, query, *, use_raw: bool) -> np.ndarray:
    """CellTypist's own annotate in "prob match" mode (p_thres=0.5) on an SGD model."""
    import celltypist

    ref_x = peers.log_expression(_log_normalised(ref, use_raw), use_raw=False)
    query_x = peers.log_expression(_log_normalised(query, use_raw), use_raw=False)
    model = celltypist.train(
        ad.AnnData(ref_x.astype(np.float32)),
        labels=ref.obs[LABELS].astype(str).to_numpy(),
        check_expression=False,
        feature_selection=False,
        use_SGD=True,
        n_jobs=2,
        random_state=0,
    )
    result = celltypist.annotate(
        ad.AnnData(query_x.astype(np.float32)), model=model, mode="prob match", p_thres=0.5
    )
    return result.predicted_labels["predicted_labels"].astype(str).to_numpy()


def as_terms(labels: np.ndarray, cl) -> np.ndarray:
    """CellTypist's prob-match labels as CL ids: "Unassigned" is "cell", "A|B" their LCA."""

    def term(label: str) -> str:
        if label == "Unassigned":
            return "CL:0000000"
        parts = label.split("|")
        common = parts[0]
        for other in parts[1:]:
            common = cl.lowest_common_ancestor(common, other)
        return common

    return np.array([term(label) for label in labels], dtype=object)


def _log_normalised(adata, use_raw: bool) -> ad.AnnData:
    if use_raw:  # pbmc68k_reduced: .raw holds log-normalised values
        return ad.AnnData(adata.raw.X, obs=adata.obs[[]], var=adata.raw.var[[]])
    out = adata.copy()
    sc.pp.normalize_total(out, target_sum=1e4)
    sc.pp.log1p(out)
    return out


# ---- 1. leave one type out -----------------------------------------------------------------


def leave_one_type_out(adata, table, random, *, use_raw: bool, seeds) -> dict:
    scorer = Scorer()
    cl = scorer.cl
    y = adata.obs[LABELS].astype(str).to_numpy()
    types, counts = np.unique(y, return_counts=True)
    tr, te = next(StratifiedKFold(5, shuffle=True, random_state=0).split(y, y))
    rows = {}
    for held_out in types[counts >= MIN_CELLS]:
        train = tr[y[tr] != held_out]
        query_rows = np.concatenate([te[y[te] != held_out], np.flatnonzero(y == held_out)])
        novel = y[query_rows] == held_out
        truth = y[query_rows]
        reference_types = set(y[train])

        def wrong_specific(calls, truth=truth, novel=novel, reference_types=reference_types):
            specific = np.isin(calls, list(reference_types))
            right = np.array(
                [c == t or cl.is_ancestor(c, t) for c, t in zip(calls, truth, strict=True)]
            )
            return float(np.mean((specific & ~right)[novel]))

        def known_f1(calls, truth=truth, novel=novel):
            return scorer.sctab_f1(truth[~novel], np.asarray(calls)[~novel])

        row: dict = {}
        query = adata[query_rows].copy()
        for contender, gene_table in (("sc_genept", table), ("random vectors", random)):
            for seed in seeds:
                model = trained(adata[train], gene_table, use_raw=use_raw, seed=seed)
                for option, rate in (("", {}), (", novelty_rate=0.02", {"novelty_rate": 0.02})):
                    calls = annotate(model, query, gene_table, use_raw=use_raw, **rate)
                    ids = calls["_ontology_term_id"].astype(str).to_numpy()
                    for metric, value in (
                        ("wrong specific call, held-out type", wrong_specific(ids)),
                        ("macro-F1, known types", known_f1(ids)),
                    ):
                        row.setdefault(f"{contender}{option}: {metric}", []).append(value)
                    if option:
                        flagged = calls["_reason"].astype(str).str.startswith("unlike").to_numpy()
                        row.setdefault(f"{contender}{option}: flagged, held-out type", []).append(
                            float(flagged[novel].mean())
                        )
                        row.setdefault(f"{contender}{option}: flagged, known types", []).append(
                            float(flagged[~novel].mean())
                        )
        labels = celltypist_prob_match(adata[train], query, use_raw=use_raw)
        terms = as_terms(labels, cl)
        row["CellTypist prob match: wrong specific call, held-out type"] = wrong_specific(terms)
        row["CellTypist prob match: macro-F1, known types"] = known_f1(terms)
        row["CellTypist prob match: unassigned or several, held-out type"] = float(
            np.mean((labels == "Unassigned") | (np.char.find(labels.astype(str), "|") >= 0))
        )
        rows[f"{held_out} {cl.name(held_out)}"] = {k: float(np.mean(v)) for k, v in row.items()} | {
            "held-out cells": int(novel.sum())
        }
        print(
            f"  {held_out} {cl.name(held_out)}: {_brief(rows[f'{held_out} {cl.name(held_out)}'])}"
        )
    contenders = [k for k in next(iter(rows.values())) if k != "held-out cells"]
    mean = {k: float(np.mean([r[k] for r in rows.values()])) for k in contenders}
    for name in ("sc_genept", "random vectors"):
        mean[f"{name}: known-type macro-F1 kept (with / without the check)"] = (
            mean[f"{name}, novelty_rate=0.02: macro-F1, known types"]
            / mean[f"{name}: macro-F1, known types"]
        )
    return {"mean over held-out types": mean, "per held-out type": rows}


def _brief(row: dict) -> str:
    return ", ".join(f"{k} {v:.2f}" for k, v in row.items() if "wrong" in k or "flagged" in k)


# ---- 2 and 3. max_error and calibration on held-out folds ----------------------------------


def error_rates(adata, table, *, use_raw: bool, seeds, figure: Path | None) -> dict:
    scorer = Scorer()
    y = adata.obs[LABELS].astype(str).to_numpy()
    folds = StratifiedKFold(5, shuffle=True, random_state=0).split(y, y)
    realised: dict = {}
    pooled = []
    for k, (tr, te) in enumerate(folds):
        test = adata[te].copy()
        for seed in seeds:
            model = trained(adata[tr], table, use_raw=use_raw, seed=seed)
            default = annotate(model, test, table, use_raw=use_raw)
            calls = default["_ontology_term_id"].astype(str).to_numpy()
            pooled.append((default["_confidence"].to_numpy(), scorer.call_is_true(y[te], calls)))
            labelled = set(model.calibration_["labelled_terms"])
            for target in MAX_ERRORS:
                out = annotate(model, test, table, use_raw=use_raw, max_error=target)
                calls = out["_ontology_term_id"].astype(str).to_numpy()
                entry = realised.setdefault(f"max_error={target}", {"error": [], "coverage": []})
                entry["error"].append(1 - scorer.call_is_true(y[te], calls).mean())
                entry["coverage"].append(float(np.isin(calls, list(labelled)).mean()))
            if k == 0 and seed == seeds[0] and figure is not None:
                embedded = sc.tl.genept_embed(
                    test, gene_embeddings=table, use_raw=use_raw, expression=True, copy=True
                )
                _plot(model, embedded, figure)
        print(f"  fold {k + 1}/5 done", flush=True)
    confidence, correct = (np.concatenate(p) for p in zip(*pooled, strict=True))
    return {
        "realised on test folds": {
            t: {m: _mean_sd(v) for m, v in e.items()} for t, e in realised.items()
        },
        "ECE of the reported call (pooled test folds)": expected_calibration_error(
            confidence, correct
        ),
    }


def _plot(model, test, figure: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    sc_genept.pl.error_coverage(model, ax=axes[0], show=False, title="held-out reference cells")
    sc_genept.pl.error_coverage(
        model, test, labels_key=LABELS, ax=axes[1], show=False, title="test fold"
    )
    fig.tight_layout()
    figure.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(figure, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--baron", action="store_true", help="also Baron human pancreas")
    parser.add_argument("--skip-pbmc", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    for name in ("lightning.pytorch", "lightning.fabric", "scvi", "celltypist"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    sc.settings.verbosity = 0
    start = time.perf_counter()
    seeds = list(range(args.seeds))
    table = sc_genept.genes.load("default")
    random = peers.random_table(table)
    datasets = {}
    if not args.skip_pbmc:
        datasets["pbmc68k_reduced"] = (sc_genept.datasets.pbmc68k_reduced(), True)
    if args.baron:
        sys.path.insert(0, str(HERE / "transfer"))
        import baron

        datasets["Baron human pancreas"] = (baron.read("human"), False)
    results: dict = {"seeds": args.seeds}
    for name, (adata, use_raw) in datasets.items():
        print(f"{name}: leave one type out", flush=True)
        loto = leave_one_type_out(adata, table, random, use_raw=use_raw, seeds=seeds)
        print(f"{name}: max_error and calibration on held-out folds", flush=True)
        figure = FIGURE if name == "pbmc68k_reduced" else None
        results[name] = {
            "leave one type out": loto,
            "held-out folds": error_rates(
                adata, table, use_raw=use_raw, seeds=seeds, figure=figure
            ),
        }
        print(json.dumps(results[name]["leave one type out"]["mean over held-out types"], indent=1))
        print(json.dumps(results[name]["held-out folds"], indent=1), flush=True)
    results["seconds"] = round(time.perf_counter() - start)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1))
    print(f"wrote {args.out} ({results['seconds']} s)")


if __name__ == "__main__":
    main()
