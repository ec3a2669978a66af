"""A second tissue, a second species and gene panels: Baron et al. 2016 pancreas.

    python benchmarks/transfer/pancreas.py                 # ~15 min on 2 cores (3 seeds)
    python benchmarks/transfer/pancreas.py --table FILE --out FILE   # another gene table
    # writes benchmarks/results/pancreas_accuracy.json

Data: ``baron.py`` (human 2,142 cells x 20,125 genes, mouse 1,886 x 14,877, raw counts, CL
ids; one-to-one orthologs). Every figure is macro-F1 under the scTab rule (a predicted
descendant of the true term counts as right) over CL ids, sc_genept's a mean over seeds.

1. Within human (stratified 5-fold): the one-liner trained on four folds annotates the
   fifth; beside it the random-vector control, CellTypist's default recipe (re-implemented
   exactly, ``peers.py``) and logistic regression on log-expression.
2. Across species: human reference -> mouse query, and mouse reference -> human query, with
   the ortholog table (``orthologs=``) and without (genes matched by symbol ignoring case).
   Peers read upper-cased mouse symbols. Only cells of a type the reference has are scored
   (mouse B cells and "leukocyte" cells, human mast and epsilon cells cannot be named).
3. Gene panels (within human, per fold): the test cells measured on a random 50 / 25 / 10 %
   of the genes, and on a marker panel chosen as real targeted panels are: the 20 genes most
   specific to each type in the training folds (t-test, one type against the rest), ~250
   genes. Two ways to annotate them: the fold's model trained on all genes
   (``genept_annotate(query, model)``: missing genes imputed), and the one-liner with the
   reference at hand (trained on the genes the panel has), each with one seed. Peers: CellTypist and logistic
   regression trained on all genes (missing genes 0), and logistic regression retrained on
   the panel's genes.
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

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]
import baron  # noqa: E402
import peers  # noqa: E402
from transfer_accuracy import QUIET, Scorer, _calls, _mean_sd  # noqa: E402

LABELS = "cell_type_ontology_term_id"
RESULTS = HERE.parent / "results" / "pancreas_accuracy.json"
PANELS = (0.5, 0.25, 0.1)
MARKERS_PER_TYPE = 20
SEEDS: list[int] = []


def log_normalised(adata: ad.AnnData) -> ad.AnnData:
    out = adata.copy()
    sc.pp.normalize_total(out, target_sum=1e4)
    sc.pp.log1p(out)
    return out


def expression(adata: ad.AnnData, upper: bool = False) -> pd.DataFrame:
    """Log-normalised expression, cells x genes (mouse symbols upper-cased for the peers)."""
    frame = peers.log_expression(log_normalised(adata), use_raw=False)
    if upper:
        frame.columns = frame.columns.str.upper()
        frame = frame.T.groupby(level=0).first().T
    return frame


def one_liner(ref, query, table, **options) -> list:
    """Finest CL ids of ``query`` from the one-liner trained on ``ref``, one array per seed."""
    return [calls["finest"].to_numpy() for calls in one_liner_calls(ref, query, table, **options)]


def one_liner_calls(
    ref, query, table, *, inputs="genept+expression", orthologs=None, seeds=None
) -> list:
    """The one-liner's calls on ``query`` (finest, reported, confidence), one frame per seed."""
    return [
        _calls(
            sc.tl.genept_annotate(
                query,
                reference=ref,
                labels_key=LABELS,
                gene_embeddings=table,
                inputs=inputs,
                orthologs=orthologs,
                min_gene_overlap=0.0,
                copy=True,
                seed=seed,
                **QUIET,
            )
        )
        for seed in (SEEDS if seeds is None else seeds)
    ]


def fold_models(ref, table) -> list[GenePTClassifier]:
    """What the one-liner trains on ``ref`` (all its genes), one model per seed."""
    ref = ref.copy()
    sc.tl.genept_embed(ref, gene_embeddings=table, expression=True)
    GenePTClassifier.setup_anndata(
        ref, labels_key=LABELS, embedding_keys=("X_genept", "X_genept_expression")
    )
    models = []
    for seed in SEEDS[:1]:  # panels: one seed (the within-dataset figures have them all)
        model = GenePTClassifier(ref)
        model.train(seed=seed, **QUIET)
        models.append(model)
    return models


def predicted(models, query, table) -> list:
    return [
        _calls(
            sc.tl.genept_annotate(
                query, model, gene_embeddings=table, min_gene_overlap=0.0, copy=True
            )
        )["finest"].to_numpy()
        for model in models
    ]


def marker_panel(train: ad.AnnData) -> np.ndarray:
    """The genes most specific to each type of ``train``, as a targeted panel is designed."""
    lognorm = log_normalised(train)
    counts = lognorm.obs[LABELS].value_counts()
    # a t-test needs two cells of a type (fold 4 of 5 has a single Schwann cell)
    testable = [str(t) for t in counts.index[counts >= 2]]
    sc.tl.rank_genes_groups(
        lognorm, LABELS, groups=testable, method="t-test", n_genes=MARKERS_PER_TYPE
    )
    names = pd.DataFrame(lognorm.uns["rank_genes_groups"]["names"])
    return np.unique(names.to_numpy().ravel().astype(str))


def _score(scorer, truth, calls: list) -> float:
    return float(np.mean([scorer.sctab_f1(truth, c) for c in calls]))


def within_human(human, table, random, n_folds: int, only=None) -> tuple[dict, dict]:
    scorer = Scorer()
    y = human.obs[LABELS].astype(str).to_numpy()
    frame = expression(human)
    folds = StratifiedKFold(n_folds, shuffle=True, random_state=0).split(y, y)
    scores: dict = {}
    panel_scores: dict = {}
    for k, (tr, te) in enumerate(folds):
        if only and k + 1 not in only:
            continue
        train, test = human[tr].copy(), human[te].copy()
        fold = {
            "sc_genept": _score(scorer, y[te], one_liner(train, test, table)),
            "random vectors (control)": _score(scorer, y[te], one_liner(train, test, random)),
        }
        celltypist = peers.celltypist_default_model(frame.iloc[tr], y[tr])
        logistic = peers.logistic_model(frame.iloc[tr], y[tr])
        fold["CellTypist (default LR, re-implemented)"] = scorer.sctab_f1(
            y[te], celltypist(frame.iloc[te])
        )
        fold["logistic regression, log-expression"] = scorer.sctab_f1(
            y[te], logistic(frame.iloc[te])
        )
        for contender, value in fold.items():
            scores.setdefault(contender, []).append(value)
        models = {"sc_genept": fold_models(train, table)}
        models["random vectors (control)"] = fold_models(train, random)
        rng = np.random.default_rng(k)
        panels = {
            f"{f:.0%} of genes": np.sort(rng.choice(human.n_vars, int(f * human.n_vars), False))
            for f in PANELS
        }
        markers = marker_panel(train)
        panels[f"marker panel ({len(markers)} genes)"] = np.flatnonzero(
            human.var_names.isin(markers)
        )
        for name, keep in panels.items():
            panel = test[:, keep].copy()
            row = {
                f"{c}, model on all genes": _score(scorer, y[te], predicted(m, panel, t))
                for c, (m, t) in {
                    "sc_genept": (models["sc_genept"], table),
                    "random vectors (control)": (models["random vectors (control)"], random),
                }.items()
            }
            row["sc_genept, one-liner on the panel's genes"] = _score(
                scorer, y[te], one_liner(train, panel, table, seeds=SEEDS[:1])
            )
            row["random vectors, one-liner on the panel's genes"] = _score(
                scorer, y[te], one_liner(train, panel, random, seeds=SEEDS[:1])
            )
            panel_frame = frame.iloc[te, keep]
            row["CellTypist (default LR), trained on all genes"] = scorer.sctab_f1(
                y[te], celltypist(panel_frame)
            )
            row["logistic regression, trained on all genes"] = scorer.sctab_f1(
                y[te], logistic(panel_frame)
            )
            row["logistic regression, retrained on the panel's genes"] = scorer.sctab_f1(
                y[te], peers.logistic_labels(frame.iloc[tr, keep], y[tr], panel_frame)
            )
            key = name if not name.startswith("marker") else "marker panel"
            print(f"    {name}: " + ", ".join(f"{c} {v:.3f}" for c, v in row.items()), flush=True)
            for contender, value in row.items():
                panel_scores.setdefault(key, {}).setdefault(contender, []).append(value)
        print(
            f"  fold {k + 1}/{n_folds}: " + ", ".join(f"{c} {v:.3f}" for c, v in fold.items()),
            flush=True,
        )
    summary = {c: _mean_sd(v) for c, v in scores.items()}
    panels = {p: {c: _mean_sd(v) for c, v in row.items()} for p, row in panel_scores.items()}
    return summary, panels


def across_species(human, mouse, table, random, orthologs: pd.DataFrame) -> dict:
    scorer = Scorer()
    mouse_to_human = orthologs[["mouse", "human"]]
    results = {}
    for name, ref, query, upper in [
        ("human -> mouse", human, mouse, "query"),
        ("mouse -> human", mouse, human, "reference"),
    ]:
        y_ref = ref.obs[LABELS].astype(str).to_numpy()
        truth = query.obs[LABELS].astype(str).to_numpy()
        scored = np.isin(truth, np.unique(y_ref))
        truth_scored = truth[scored]
        scored_query = query[scored].copy()

        def score(calls, truth_scored=truth_scored):
            return _score(scorer, truth_scored, calls)

        default = one_liner_calls(ref, scored_query, table, orthologs=mouse_to_human)
        row = {
            "sc_genept, orthologs=": score([calls["finest"].to_numpy() for calls in default]),
            "sc_genept, orthologs=: ECE of the reported call": float(
                np.mean(
                    [
                        expected_calibration_error(
                            calls["confidence"].to_numpy(),
                            scorer.call_is_true(truth_scored, calls["call"].to_numpy()),
                        )
                        for calls in default
                    ]
                )
            ),
            "sc_genept, symbols ignoring case": score(one_liner(ref, scored_query, table)),
            "random vectors (control), orthologs=": score(
                one_liner(ref, scored_query, random, orthologs=mouse_to_human)
            ),
            "sc_genept, GenePT-w only, orthologs=": score(
                one_liner(ref, scored_query, table, inputs="genept", orthologs=mouse_to_human)
            ),
            "random vectors, GenePT-w only, orthologs=": score(
                one_liner(ref, scored_query, random, inputs="genept", orthologs=mouse_to_human)
            ),
        }
        ref_frame = expression(ref, upper=upper == "reference")
        query_frame = expression(scored_query, upper=upper == "query")
        row["CellTypist (default LR), upper-cased symbols"] = scorer.sctab_f1(
            truth_scored, peers.celltypist_default_labels(ref_frame, y_ref, query_frame)
        )
        row["logistic regression, upper-cased symbols"] = scorer.sctab_f1(
            truth_scored, peers.logistic_labels(ref_frame, y_ref, query_frame)
        )
        row["cells scored"] = int(scored.sum())
        results[name] = row
        print(f"  {name}: " + ", ".join(f"{k} {v:.3f}" for k, v in row.items()), flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--table", default="default", help="gene table: a name or a file")
    parser.add_argument("--skip-within", action="store_true", help="across species only")
    parser.add_argument("--skip-species", action="store_true", help="within human only")
    parser.add_argument(
        "--only-folds", type=int, nargs="+", help="within human: only these folds (1-based)"
    )
    parser.add_argument(
        "--out", type=Path, help="results file (default: results/ for the default table)"
    )
    args = parser.parse_args()
    SEEDS[:] = range(args.seeds)
    for name in ("lightning.pytorch", "lightning.fabric", "scvi", "celltypist"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    sc.settings.verbosity = 0
    start = time.perf_counter()

    human, mouse = baron.read("human"), baron.read("mouse")
    table = sc_genept.genes.load(args.table)
    random = peers.random_table(table)
    results = {"table": args.table, "seeds": args.seeds}
    if not args.skip_species:
        print("Across species (scTab macro-F1 over cells of types the reference has):", flush=True)
        results["across_species_sctab_macro_f1"] = across_species(
            human, mouse, table, random, baron.orthologs()
        )
    if not args.skip_within:
        print(f"Within Baron human ({args.folds}-fold, scTab macro-F1):", flush=True)
        within, panels = within_human(human, table, random, args.folds, args.only_folds)
        results["within_human_sctab_macro_f1"] = within
        results["gene_panels_sctab_macro_f1"] = panels
    results["seconds"] = round(time.perf_counter() - start)
    out = args.out or (RESULTS if args.table == "default" else RESULTS.with_name("sweep.json"))
    out.parent.mkdir(exist_ok=True, parents=True)
    out.write_text(json.dumps(results, indent=1))
    print(json.dumps(results, indent=1))
    print(f"written {out} in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
