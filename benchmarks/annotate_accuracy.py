"""Accuracy of GenePTClassifier on real cells: 5-fold stratified CV on pbmc68k_reduced.

    python benchmarks/annotate_accuracy.py            # ~2 min on 2 cores

Part 1 — inputs. Macro-F1 over the 10 CL labels, exact and under the scTab rule (a
predicted descendant of the true term counts as right: "CD8-positive, alpha-beta T cell"
contains "naive thymus-derived CD8-positive, alpha-beta T cell", and hierarchical
cross-entropy lets cells of the first label sit in the second), of
- GenePTClassifier (defaults) on X_genept (default table), X_pca, and both concatenated,
  and with flat cross-entropy on X_genept;
- logistic regression on the same standardised X_genept and X_pca (the baselines);
- both on GenePT-w of *random* gene vectors (control: what does the text add?);
- CellTypist on the log-expression itself (a published peer).
GenePTClassifier's label is its most probable of the 10 terms.

Part 2 — mixed granularity. In each training fold 40 % of the cells get their label's CL
parent instead. Hierarchical vs flat cross-entropy: fine-level macro-F1 on the test fold
(most probable of the 10 original terms) as a share of the same loss's full-label score, and the
scTab-rule F1 of every coarse term that appears in training (test labels coarsened the
same way; predictions by hierarchical decoding at min_confidence 0.5).

X_pca is scanpy's bundled PCA of the whole dataset (unsupervised, so fit on all folds).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import scanpy as sc
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import sc_genept
from sc_genept.metrics import macro_f1, per_class_f1, sctab_adjusted
from sc_genept.model import GenePTClassifier

sys.path.insert(0, str(Path(__file__).resolve().parent))
import peers

LABELS = "cell_type_ontology_term_id"
TRAIN = {"max_epochs": 200, "enable_progress_bar": False, "enable_model_summary": False}
RESULTS = Path(__file__).parent / "results" / "annotate_accuracy.json"


def fit_predict(
    train, test, keys, labels_key=LABELS, **model_kwargs
) -> tuple[GenePTClassifier, pd.DataFrame]:
    train = train.copy()
    GenePTClassifier.setup_anndata(train, labels_key=labels_key, embedding_keys=keys)
    model = GenePTClassifier(train, **model_kwargs)
    model.train(**TRAIN)
    return model, model.predict_proba(test)


def finest_of(probs: pd.DataFrame, allowed) -> np.ndarray:
    allowed = [t for t in probs.columns if t in set(allowed)]
    return probs[allowed].idxmax(axis=1).to_numpy()


def logistic(train, test, key) -> np.ndarray:
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000))
    clf.fit(train.obsm[key], train.obs[LABELS].astype(str))
    return clf.predict(test.obsm[key])


def celltypist_predict(train, test) -> np.ndarray:
    """CellTypist (SGD mode) on the fold's log-expression; all 765 genes."""
    expression = peers.log_expression(train, use_raw=True)
    return peers.celltypist_labels(
        expression, train.obs[LABELS].astype(str), peers.log_expression(test, use_raw=True)
    )


def coarsen(labels: np.ndarray, fraction: float, cl, rng) -> np.ndarray:
    """Replace ``fraction`` of the labels by their deepest CL parent (ties: smallest id)."""
    out = labels.astype(object).copy()
    chosen = rng.choice(len(labels), int(round(fraction * len(labels))), replace=False)
    for i in chosen:
        out[i] = min(cl.parents(labels[i]), key=lambda p: (-cl.depth(p), p))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--coarse-fraction", type=float, default=0.4)
    args = parser.parse_args()
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    logging.getLogger("scvi").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    sc.settings.verbosity = 0
    start = time.perf_counter()

    adata = sc_genept.datasets.pbmc68k_reduced()
    cl = sc_genept.ontology.CellOntology.load()
    sc.tl.genept_embed(adata, use_raw=True)
    sc.tl.genept_embed(
        adata,
        use_raw=True,
        gene_embeddings=peers.random_table(sc_genept.genes.load()),
        key_added="X_random",
    )
    y = adata.obs[LABELS].astype(str).to_numpy()
    fine_terms = sorted(set(y))
    folds = StratifiedKFold(args.folds, shuffle=True, random_state=0).split(y, y)

    scores: dict[str, list[tuple[float, float]]] = {}
    coarse_f1: dict[str, list[pd.Series]] = {"hierarchical": [], "flat": []}

    def record(name, truth, predicted):
        exact = macro_f1(truth, predicted)
        sctab = macro_f1(truth, sctab_adjusted(truth, predicted, cl))
        scores.setdefault(name, []).append((exact, sctab))

    for k, (tr, te) in enumerate(folds):
        train, test = adata[tr].copy(), adata[te].copy()
        for name, keys, loss in [
            ("GenePTClassifier X_genept", ["X_genept"], "hierarchical"),
            ("GenePTClassifier X_genept, flat loss", ["X_genept"], "flat"),
            ("GenePTClassifier X_pca", ["X_pca"], "hierarchical"),
            ("GenePTClassifier X_genept + X_pca", ["X_genept", "X_pca"], "hierarchical"),
            ("GenePTClassifier random-vector GenePT-w", ["X_random"], "hierarchical"),
        ]:
            _, probs = fit_predict(train, test, keys, loss=loss)
            record(name, y[te], finest_of(probs, fine_terms))
        record("logistic regression X_genept", y[te], logistic(train, test, "X_genept"))
        record("logistic regression X_pca", y[te], logistic(train, test, "X_pca"))
        record(
            "logistic regression random-vector GenePT-w", y[te], logistic(train, test, "X_random")
        )
        record("CellTypist, log-expression (peer)", y[te], celltypist_predict(train, test))

        train.obs["mixed"] = coarsen(y[tr], args.coarse_fraction, cl, np.random.default_rng(k))
        test_mixed = coarsen(y[te], args.coarse_fraction, cl, np.random.default_rng(100 + k))
        coarse_terms = sorted(set(train.obs["mixed"]) - set(fine_terms))
        for loss in ("hierarchical", "flat"):
            model, probs = fit_predict(train, test, ["X_genept"], labels_key="mixed", loss=loss)
            record(f"mixed labels, {loss} loss", y[te], finest_of(probs, fine_terms))
            decoded = sc_genept.model.decode(probs, model.module.network.subtree.numpy(), 0.5, cl)[
                "ontology_term_id"
            ]
            f1 = per_class_f1(test_mixed, sctab_adjusted(test_mixed, decoded.to_numpy(), cl))
            coarse_f1[loss].append(f1.reindex(coarse_terms))
        print(f"fold {k + 1}/{args.folds} done ({time.perf_counter() - start:.0f} s)", flush=True)

    rows = {}
    for name, values in scores.items():
        values = np.asarray(values)
        rows[name] = {
            "exact_macro_f1": values[:, 0].mean(),
            "exact_sd": values[:, 0].std(),
            "sctab_macro_f1": values[:, 1].mean(),
            "sctab_sd": values[:, 1].std(),
        }
    summary = pd.DataFrame(rows).T
    for loss, full in [
        ("hierarchical", "GenePTClassifier X_genept"),
        ("flat", "GenePTClassifier X_genept, flat loss"),
    ]:
        summary.loc[f"mixed labels, {loss} loss", "share_of_full_label_exact_f1"] = (
            summary.loc[f"mixed labels, {loss} loss", "exact_macro_f1"]
            / summary.loc[full, "exact_macro_f1"]
        )
    print(
        f"\nMacro-F1 over the 10 labels, {args.folds}-fold stratified CV on pbmc68k_reduced (mean ± sd over folds);"
    )
    print(
        "'scTab': a predicted descendant of the true term counts as right (one label is nested in another)"
    )
    print(f"  {'':<46} {'exact':>13} {'scTab':>13}")
    for name, row in summary.iterrows():
        share = row.get("share_of_full_label_exact_f1")
        extra = f"  {share:.0%} of the same loss on full labels" if share == share else ""
        print(
            f"  {name:<46} {row['exact_macro_f1']:.3f} ± {row['exact_sd']:.3f} "
            f"{row['sctab_macro_f1']:.3f} ± {row['sctab_sd']:.3f}{extra}"
        )
    coarse_table = pd.DataFrame(
        {loss: pd.concat(v, axis=1).mean(axis=1) for loss, v in coarse_f1.items()}
    )
    coarse_table.index = [f"{t} {cl.name(t)}" for t in coarse_table.index]
    print(
        f"\nscTab-rule F1 of the coarse terms in training ({args.coarse_fraction:.0%} of labels coarsened), mean over folds"
    )
    print(coarse_table.round(3).to_string())
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "macro_f1": summary.round(4).to_dict(orient="index"),
                "coarse_term_sctab_f1": coarse_table.round(4).to_dict(),
                "folds": args.folds,
                "coarse_fraction": args.coarse_fraction,
                "seconds": round(time.perf_counter() - start),
            },
            indent=1,
        )
    )
    print(f"\nwritten {RESULTS} in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
