"""Training cells/s streamed from a TileDB-SOMA experiment against training from memory.

Generated counts (default 20k cells × 5,000 genes, ~500 expressed genes per cell, 8 CL
types) are written with ``tiledbsoma.io.from_anndata``, with their GenePT-w embedding in
``obsm``. The same GenePT-w-only model (5 members × 1 hidden layer of 256) is trained:

- from memory: ``train()`` on the embedding made beforehand by ``genept_embed``;
- from SOMA, stored embedding: ``SomaCells(embedding="X_genept")``, the I/O path alone;
- from SOMA, on the fly: ``SomaCells`` embedding each batch from the counts.

Reported: training cells/s per epoch (median over the epochs after the first, validation
excluded) and each one's ratio to memory; and ``genept_embed``'s own cells/s, the cost the
on-the-fly path pays inside every epoch.

    python benchmarks/scale/train_soma.py
    python benchmarks/scale/train_soma.py --cells 100000 --io-batch-size 65536
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import scanpy as sc
import tiledbsoma.io
from common import generate, machine
from train import TERMS, EpochClock

from sc_genept.model import GenePTClassifier, SomaCells


def cells_per_second(model: GenePTClassifier, args, **options) -> float:
    clock = EpochClock()
    model.train(
        max_epochs=args.epochs,
        early_stopping=False,
        enable_progress_bar=False,
        callbacks=[clock],
        **options,
    )
    return clock.cells / float(np.median(clock.seconds[1:]))


def from_soma(uri: str, args, **options) -> float:
    cells = SomaCells(
        uri,
        labels_key="cell_type",
        layer="data",
        inputs="genept",
        batch_size=args.batch_size,
        io_batch_size=args.io_batch_size,
        validation_size=0.1,
        calibration_size=0.0,
        **options,
    )
    reference = cells.prototype()
    GenePTClassifier.setup_anndata(reference, labels_key="cell_type", embedding_keys=cells.keys)
    return cells_per_second(GenePTClassifier(reference), args, datamodule=cells)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cells", type=int, default=20_000)
    parser.add_argument("--genes", type=int, default=5_000)
    parser.add_argument("--per-cell", type=int, default=500)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--io-batch-size", type=int, default=2**14)
    parser.add_argument("--epochs", type=int, default=3, help="median over all but the first")
    args = parser.parse_args()
    print(
        f"{machine()}; {args.cells} cells × {args.genes} genes (~{args.per_cell} per cell), "
        f"batch {args.batch_size}, io_batch_size {args.io_batch_size}, {args.epochs} epochs"
    )
    adata = generate(args.cells, args.genes, args.per_cell, counts=True)
    adata.obs["cell_type"] = np.random.default_rng(0).choice(TERMS, adata.n_obs)
    start = time.perf_counter()
    sc.tl.genept_embed(adata)
    embed_rate = adata.n_obs / (time.perf_counter() - start)
    with tempfile.TemporaryDirectory() as folder, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        uri = str(Path(folder) / "experiment")
        stored = adata.copy()
        stored.uns = {}
        tiledbsoma.io.from_anndata(uri, stored, measurement_name="RNA")
        GenePTClassifier.setup_anndata(adata, labels_key="cell_type")
        rates = {
            "memory (embedding made beforehand)": cells_per_second(
                GenePTClassifier(adata),
                args,
                batch_size=args.batch_size,
                train_size=0.9,
                calibration_size=0.0,
            ),
            "SOMA, stored embedding": from_soma(uri, args, embedding="X_genept"),
            "SOMA, embedded on the fly": from_soma(uri, args),
        }
    memory = rates["memory (embedding made beforehand)"]
    print(f"genept_embed alone: {embed_rate:,.0f} cells/s")
    for name, rate in rates.items():
        print(f"{name:<36} {rate:>9,.0f} training cells/s per epoch  ({rate / memory:.2f}× memory)")


if __name__ == "__main__":
    main()
