"""Label transfer across datasets and gene panels: sc_genept beside its peers and controls.

    python benchmarks/transfer/transfer_accuracy.py     # ~4 min on 2 cores (3 seeds)
    # writes benchmarks/results/transfer_accuracy.json

1. Across studies. Reference: scanpy's ``pbmc68k_reduced`` (700 cells, 765 genes, 10x v1,
   Zheng et al. 2017; ``sc_genept.datasets.pbmc68k_reduced`` for its CL labels). Queries:
   Kang et al. 2018 PBMCs, control and IFN-beta stimulated (raw counts, 14,053 genes,
   another lab and 10x chemistry; ``kang.py`` fetches them and labels them from canonical
   markers: ``kang_labels.csv``). Scored at the coarse level both label sets support: CD4 T,
   CD8 T, B, NK, monocyte, dendritic cell (a prediction counts for the coarse class it lies
   under; one under none of them is wrong). Query cells the markers left unassigned
   (platelets, erythrocytes, doublets) are not scored.
2. Within ``pbmc68k_reduced``: stratified 5-fold cross-validation, macro-F1 under the scTab
   rule (a predicted descendant of the true term counts as right: "CD8-positive, alpha-beta
   T cell" holds "naive thymus-derived CD8-positive, alpha-beta T cell").
3. Gene panels: the fold's test cells with only a random 50 / 25 / 10 % of the genes,
   annotated by the fold's model trained on all genes (missing genes take their reference
   mean) and by the one-liner with the fold's training cells as reference (trained on the
   genes the panel has); logistic regression both ways.

Contenders, in the same run (see ``peers.py``): the sc_genept one-liner with its defaults
(``sc.tl.genept_annotate(query, reference=ref, labels_key=...)``; within a dataset and for
panels, the same model through ``genept_annotate(query, model)``), the same pipeline on
random gene vectors (control), CellTypist (SGD mode) on the reference's log-expression,
logistic regression on the log-expression of shared genes, and cosine 15-NN on the
GenePT-w embedding; across studies also the one-liner with ``majority_voting=True``. Calibration: expected calibration error (15 bins) of the confidence
sc_genept reports for its call, against whether the call is true of the cell (the true
term, one of its ancestors, or, under the scTab rule, a descendant), pooled over folds.
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
from sc_genept.metrics import expected_calibration_error, macro_f1, sctab_adjusted
from sc_genept.model import GenePTClassifier
from sc_genept.tl._inputs import INPUTS

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]
import kang  # noqa: E402
import peers  # noqa: E402

LABELS = "cell_type_ontology_term_id"
RESULTS = HERE.parent / "results" / "transfer_accuracy.json"
QUIET = {"enable_progress_bar": False, "enable_model_summary": False}
TRAIN: dict = {}  # extra train() arguments for sc_genept (--train-kwargs; sweeps only)
PANELS = (0.5, 0.25, 0.1)
KEY = "genept_cell_type"
DEFAULT = "genept+expression"  # genept_annotate's default inputs
INPUT = DEFAULT  # inputs of the within-dataset models (--inputs; sweeps only)


# ---- the contenders ------------------------------------------------------------------------


def sc_genept_transfer(
    ref: ad.AnnData, query: ad.AnnData, table, inputs=DEFAULT, **options
) -> pd.DataFrame:
    """The one-liner: train on the reference, annotate the query (both embedded on shared genes)."""
    out = sc.tl.genept_annotate(
        query,
        reference=ref,
        labels_key=LABELS,
        gene_embeddings=table,
        inputs=inputs,
        copy=True,
        **options,
        **QUIET,
        **TRAIN,
    )
    calls = _calls(out)
    if options.get("majority_voting"):
        calls["finest"] = out.obs[f"{KEY}_majority_voting_ontology_term_id"].astype(str)
    return calls


def _calls(out: ad.AnnData) -> pd.DataFrame:
    columns = {
        "finest": f"{KEY}_finest_ontology_term_id",
        "call": f"{KEY}_ontology_term_id",
        "confidence": f"{KEY}_confidence",
    }
    frame = pd.DataFrame({k: out.obs[c].to_numpy() for k, c in columns.items()}, out.obs_names)
    frame = frame.astype({"finest": str, "call": str, "confidence": float})
    frame.attrs["embedding"] = out.obsm["X_genept"]
    frame.attrs["genes"] = out.uns["X_genept"]["gene_set"]["names"]
    return frame


def trained_model(ref: ad.AnnData, table, inputs=DEFAULT) -> GenePTClassifier:
    """What ``genept_annotate(reference=...)`` trains, kept for reuse on several queries."""
    ref = ref.copy()
    keys = INPUTS[inputs]
    sc.tl.genept_embed(
        ref, use_raw=True, gene_embeddings=table, expression="X_genept_expression" in keys
    )
    GenePTClassifier.setup_anndata(ref, labels_key=LABELS, embedding_keys=keys)
    model = GenePTClassifier(ref)
    model.train(**QUIET, **TRAIN)
    return model


def sc_genept_predict(model, query: ad.AnnData, table) -> pd.DataFrame:
    out = sc.tl.genept_annotate(
        query, model, gene_embeddings=table, min_gene_overlap=0.01, copy=True
    )
    return _calls(out)


# ---- scoring -------------------------------------------------------------------------------


class Scorer:
    """Scores CL-id predictions against truth; coarse classes for cross-dataset scoring."""

    def __init__(self, coarse_classes=None):
        self.cl = sc_genept.ontology.CellOntology.load()
        self.coarse_classes = list(coarse_classes or [])

    def coarse(self, term: str) -> str:
        hits = [c for c in self.coarse_classes if self.cl.is_ancestor(c, term)]
        return hits[0] if len(hits) == 1 else "other"

    def coarse_f1(self, truth, predicted) -> float:
        return macro_f1(np.asarray(truth), np.array([self.coarse(t) for t in predicted]))

    def sctab_f1(self, truth, predicted) -> float:
        truth = np.asarray(truth, dtype=object)
        return macro_f1(truth, sctab_adjusted(truth, np.asarray(predicted, dtype=object), self.cl))

    def call_is_true(self, truth, calls) -> np.ndarray:
        """A call is true of a cell when it is the truth, an ancestor, or (scTab) a descendant."""
        return np.array(
            [
                self.cl.is_ancestor(c, t) or self.cl.is_ancestor(t, c)
                for t, c in zip(truth, calls, strict=True)
            ]
        )


# ---- the three settings --------------------------------------------------------------------


def across_studies(ref, table, random) -> dict:
    scorer = Scorer(kang.CL.values())
    labels = pd.read_csv(kang.LABELS_CSV)
    ref_expression = peers.log_expression(ref, use_raw=True)
    y_ref = ref.obs[LABELS].astype(str).to_numpy()
    results = {}
    for name, path in kang.fetch().items():
        query = kang.read(path)
        truth = (
            labels[labels["dataset"] == name].set_index("barcode")["label"].reindex(query.obs_names)
        )
        scored = (truth != kang.UNASSIGNED).to_numpy()
        truth = truth.to_numpy()[scored]
        lognorm = query.copy()
        sc.pp.normalize_total(lognorm, target_sum=1e4)
        sc.pp.log1p(lognorm)
        query_expression = peers.log_expression(lognorm, use_raw=False)

        row = {}
        for contender, gene_table, inputs in [
            ("sc_genept", table, DEFAULT),
            ("random vectors (control)", random, DEFAULT),
            ("sc_genept, GenePT-w only", table, "genept"),
            ("random vectors, GenePT-w only", random, "genept"),
        ]:
            calls = sc_genept_transfer(ref, query, gene_table, inputs)
            row[contender] = scorer.coarse_f1(truth, calls["finest"].to_numpy()[scored])
            row[f"{contender}: reported call"] = scorer.coarse_f1(
                truth, calls["call"].to_numpy()[scored]
            )
            row[f"{contender}: ECE"] = expected_calibration_error(
                calls["confidence"].to_numpy()[scored],
                scorer.call_is_true(truth, calls["call"].to_numpy()[scored]),
            )
            if contender == "sc_genept":  # cosine kNN on the same aligned embedding
                ref_embedding = sc.tl.genept_embed(
                    ref,
                    use_raw=True,
                    gene_embeddings=gene_table,
                    genes=calls.attrs["genes"],
                    copy=True,
                ).obsm["X_genept"]
                knn = peers.knn_labels(ref_embedding, y_ref, calls.attrs["embedding"])
                row["cosine 15-NN, X_genept"] = scorer.coarse_f1(truth, knn[scored])
        voted = sc_genept_transfer(ref, query, table, majority_voting=True)["finest"]
        row["sc_genept, majority voting (Leiden over-clustering)"] = scorer.coarse_f1(
            truth, voted.to_numpy()[scored]
        )
        row["CellTypist (SGD)"] = scorer.coarse_f1(
            truth, peers.celltypist_labels(ref_expression, y_ref, query_expression)[scored]
        )
        row["CellTypist (default LR, re-implemented)"] = scorer.coarse_f1(
            truth,
            peers.celltypist_default_labels(ref_expression, y_ref, query_expression)[scored],
        )
        row["logistic regression, log-expression"] = scorer.coarse_f1(
            truth, peers.logistic_labels(ref_expression, y_ref, query_expression)[scored]
        )
        results[f"Kang {name}"] = row
        print(f"  Kang {name}: " + ", ".join(f"{k} {v:.3f}" for k, v in row.items()), flush=True)
    return results


def within_dataset(adata, table, random, n_folds: int) -> tuple[dict, dict]:
    scorer = Scorer()
    y = adata.obs[LABELS].astype(str).to_numpy()
    expression = peers.log_expression(adata, use_raw=True)
    folds = StratifiedKFold(n_folds, shuffle=True, random_state=0).split(y, y)
    scores, panel_scores, pooled = {}, {}, []
    for k, (tr, te) in enumerate(folds):
        train, test = adata[tr].copy(), adata[te].copy()
        fold = {}
        models = {"sc_genept": (trained_model(train, table, INPUT), table)}
        models["random vectors (control)"] = (trained_model(train, random, INPUT), random)
        for contender, (model, gene_table) in models.items():
            calls = sc_genept_predict(model, test, gene_table)
            fold[contender] = scorer.sctab_f1(y[te], calls["finest"])
            if gene_table is table:
                pooled.append((calls["confidence"], scorer.call_is_true(y[te], calls["call"])))
                knn = peers.knn_labels(
                    train_embedding(train, model, table), y[tr], calls.attrs["embedding"]
                )
                fold["cosine 15-NN, X_genept"] = scorer.sctab_f1(y[te], knn)
        fold["CellTypist (SGD)"] = scorer.sctab_f1(
            y[te], peers.celltypist_labels(expression.iloc[tr], y[tr], expression.iloc[te])
        )
        fold["CellTypist (default LR, re-implemented)"] = scorer.sctab_f1(
            y[te],
            peers.celltypist_default_labels(expression.iloc[tr], y[tr], expression.iloc[te]),
        )
        fold["logistic regression, log-expression"] = scorer.sctab_f1(
            y[te], peers.logistic_labels(expression.iloc[tr], y[tr], expression.iloc[te])
        )
        for contender, value in fold.items():
            scores.setdefault(contender, []).append(value)

        rng = np.random.default_rng(k)
        for fraction in PANELS:
            keep = np.sort(rng.choice(adata.raw.n_vars, int(fraction * adata.raw.n_vars), False))
            panel = ad.AnnData(
                test.raw.X[:, keep], obs=test.obs[[]], var=test.raw.var.iloc[keep][[]]
            )
            panel_fold = {
                contender: scorer.sctab_f1(
                    y[te], sc_genept_predict(model, panel, gene_table)["finest"]
                )
                for contender, (model, gene_table) in models.items()
            }
            # with the reference at hand the one-liner trains on the genes the panel has
            panel_fold["sc_genept, one-liner on the panel's genes"] = scorer.sctab_f1(
                y[te], sc_genept_transfer(train, panel, table)["finest"]
            )
            panel_fold["random vectors, one-liner on the panel's genes"] = scorer.sctab_f1(
                y[te], sc_genept_transfer(train, panel, random)["finest"]
            )
            panel_expression = expression.iloc[te, keep]
            panel_fold["logistic regression, retrained on the panel's genes"] = scorer.sctab_f1(
                y[te], peers.logistic_labels(expression.iloc[tr, keep], y[tr], panel_expression)
            )
            panel_fold["CellTypist (SGD)"] = scorer.sctab_f1(
                y[te], peers.celltypist_labels(expression.iloc[tr], y[tr], panel_expression)
            )
            panel_fold["CellTypist (default LR, re-implemented)"] = scorer.sctab_f1(
                y[te],
                peers.celltypist_default_labels(expression.iloc[tr], y[tr], panel_expression),
            )
            panel_fold["logistic regression, log-expression"] = scorer.sctab_f1(
                y[te], peers.logistic_labels(expression.iloc[tr], y[tr], panel_expression)
            )
            for contender, value in panel_fold.items():
                panel_scores.setdefault(f"{fraction:.0%} of genes", {}).setdefault(
                    contender, []
                ).append(value)
        print(f"  fold {k + 1}/{n_folds}: " + ", ".join(f"{c} {v:.3f}" for c, v in fold.items()))
    confidence, correct = (np.concatenate(p) for p in zip(*pooled, strict=True))
    summary = {c: _mean_sd(v) for c, v in scores.items()}
    summary["sc_genept: ECE of the reported call (pooled)"] = expected_calibration_error(
        confidence, correct
    )
    panels = {p: {c: _mean_sd(v) for c, v in row.items()} for p, row in panel_scores.items()}
    return summary, panels


def train_embedding(train, model, table) -> np.ndarray:
    return sc.tl.genept_embed(
        train, use_raw=True, gene_embeddings=table, genes=model.genes, copy=True
    ).obsm["X_genept"]


def _over_seeds(runs: list[dict]):
    """Mean over seeds of every figure; across studies also the sd over seeds."""
    first = runs[0]
    if isinstance(first, dict):
        if set(first) == {"mean", "sd"}:  # a fold mean ± sd: average both over seeds
            return {k: float(np.mean([r[k] for r in runs])) for k in first}
        return {k: _over_seeds([r[k] for r in runs]) for k in first}
    values = [float(r) for r in runs]
    return float(np.mean(values)) if len(values) == 1 else _mean_sd(values)


def _mean_sd(values) -> dict:
    return {"mean": float(np.mean(values)), "sd": float(np.std(values))}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--skip-within", action="store_true", help="cross-dataset part only")
    parser.add_argument("--within-only", action="store_true", help="pbmc68k parts only")
    parser.add_argument(
        "--train-kwargs",
        type=json.loads,
        default={},
        help="JSON of extra train() arguments for sc_genept, e.g. '{\"input_dropout\": 0.5}' "
        "(for sweeps; results/ holds the defaults, and writes go to results/sweep.json)",
    )
    parser.add_argument("--inputs", default=DEFAULT, help="inputs of the within-dataset models")
    parser.add_argument(
        "--table",
        default="default",
        help="gene table: a registry name or a file (GenePT pickle, parquet, CSV), e.g. GenePT's "
        "published ada-002 table; results from a non-default table go to results/sweep.json",
    )
    parser.add_argument(
        "--seeds", type=int, default=3, help="training seeds; sc_genept figures are their mean"
    )
    parser.add_argument("--out", type=Path, help="results file (default: see --table)")
    args = parser.parse_args()
    TRAIN.update(args.train_kwargs)
    global INPUT
    INPUT = args.inputs
    for name in ("lightning.pytorch", "lightning.fabric", "scvi", "celltypist"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    sc.settings.verbosity = 0
    start = time.perf_counter()

    ref = sc_genept.datasets.pbmc68k_reduced()
    table = sc_genept.genes.load(args.table)
    random = peers.random_table(table)
    runs = []
    for seed in range(args.seeds):  # the peers are deterministic; sc_genept varies by seed
        TRAIN["seed"] = args.train_kwargs.get("seed", seed)
        run = {}
        if not args.within_only:
            print(f"Across studies (coarse macro-F1), seed {seed}:", flush=True)
            run["across_studies_coarse_macro_f1"] = across_studies(ref, table, random)
        if not args.skip_within:
            print(f"Within pbmc68k_reduced ({args.folds}-fold, scTab macro-F1):", flush=True)
            within, panels = within_dataset(ref, table, random, args.folds)
            run["within_pbmc68k_sctab_macro_f1"] = within
            run["gene_panels_sctab_macro_f1"] = panels
        runs.append(run)
    results = {
        "train_kwargs": {k: v for k, v in TRAIN.items() if k != "seed"},
        "inputs": INPUT,
        "table": args.table,
        "seeds": args.seeds,
        **_over_seeds(runs),
        "seconds": round(time.perf_counter() - start),
    }
    defaults = not args.train_kwargs and INPUT == DEFAULT and args.table == "default"
    out = args.out or (RESULTS if defaults else RESULTS.with_name("sweep.json"))
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    print(json.dumps(results, indent=1))
    print(f"written {out} in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
