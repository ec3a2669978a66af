"""Where to fit the temperature: the experiment behind ``train(calibration_size=...)``.

    python benchmarks/calibration.py        # ~1 min on 2 cores

5-fold CV on ``pbmc68k_reduced`` (GenePT-w input). In each fold 15 % of the training cells
are held out before training; the model trains (with its own validation split for early
stopping) and no temperature is fitted by it (``calibration_size=0``). Then temperatures
are compared: none (T = 1); fitted on the validation cells that also chose the best epoch;
fitted on the held-out cells with the hierarchical or the flat likelihood; and, as a
bound, fitted on the test fold itself ("oracle"). Expected calibration error (15 bins) of
the reported call (is the called term the truth, an ancestor, or a descendant?) and of the
most probable term under the scTab rule, pooled over the folds.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pandas as pd
import scanpy as sc
import torch
from sklearn.model_selection import StratifiedKFold

import sc_genept
from sc_genept.metrics import expected_calibration_error
from sc_genept.model import GenePTClassifier
from sc_genept.model._data import stratified_split as _stratified_split

LABELS = "cell_type_ontology_term_id"
QUIET = {"enable_progress_bar": False, "enable_model_summary": False}


def main() -> None:
    for name in ("lightning.pytorch", "scvi", "sc_genept"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    cl = sc_genept.ontology.CellOntology.load()
    adata = sc_genept.datasets.pbmc68k_reduced()
    sc.tl.genept_embed(adata, use_raw=True)
    y = adata.obs[LABELS].astype(str).to_numpy()
    pooled: dict[str, list[pd.DataFrame]] = {}
    for k, (tr, te) in enumerate(StratifiedKFold(5, shuffle=True, random_state=0).split(y, y)):
        held = np.random.default_rng(k).random(len(tr)) < 0.15
        ref, calibration, test = adata[tr[~held]].copy(), adata[tr[held]].copy(), adata[te].copy()
        GenePTClassifier.setup_anndata(ref, labels_key=LABELS)
        model = GenePTClassifier(ref)
        model.train(calibration_size=0.0, **QUIET)
        codes = model._label_codes()
        _, validation = _stratified_split(codes, 0.9, np.random.default_rng(0))  # train()'s

        def fit(cells, hierarchical, model=model):
            inputs = torch.as_tensor(model._inputs(cells))
            labels = torch.as_tensor([model.terms.index(t) for t in cells.obs[LABELS]])
            return model.module.network.calibrate(inputs, labels, hierarchical=hierarchical)

        temperatures = {
            "none (T = 1)": 1.0,
            "validation cells (also chose the epoch)": model.module.network.calibrate(
                torch.as_tensor(model._inputs(model.adata, validation)),
                torch.as_tensor(codes[validation]),
                hierarchical=True,
            ),
            "held-out cells, hierarchical likelihood": fit(calibration, True),
            "held-out cells, flat likelihood": fit(calibration, False),
            "oracle: the test fold itself": fit(test, True),
        }
        for name, temperature in temperatures.items():
            model.module.network.temperature.fill_(temperature)
            p = model.predict(test)
            pooled.setdefault(name, []).append(
                pd.DataFrame(
                    {
                        "temperature": temperature,
                        "finest": p["finest_probability"].to_numpy(),
                        "finest_right": [
                            cl.is_ancestor(t, f)
                            for t, f in zip(y[te], p["finest_ontology_term_id"], strict=True)
                        ],
                        "call": p["confidence"].to_numpy(),
                        "call_true": [
                            cl.is_ancestor(c, t) or cl.is_ancestor(t, c)
                            for t, c in zip(y[te], p["ontology_term_id"], strict=True)
                        ],
                    }
                )
            )
    print(f"{'temperature fitted on':<42} {'mean T':>7} {'ECE call':>9} {'ECE finest':>11}")
    for name, frames in pooled.items():
        d = pd.concat(frames)
        print(
            f"{name:<42} {d['temperature'].mean():>7.2f} "
            f"{expected_calibration_error(d['call'], d['call_true']):>9.3f} "
            f"{expected_calibration_error(d['finest'], d['finest_right']):>11.3f}"
        )


if __name__ == "__main__":
    main()
