"""Training speed of ``GenePTClassifier.train()`` against a plain torch loop, in one run.

Both train the same module (default size: 5 members × 1 hidden layer of 256) with AdamW
on the same generated cells (100k cells × 384 dims, 8 cell types by default) at the same
batch size; the plain loop shuffles the same tensors per epoch and indexes them, with
no Lightning. Reported: training cells/s per epoch (median over epochs after the
first; validation excluded), and the ratio plain / ``train()`` (target ≤ 1.5).

    python benchmarks/scale/train.py                       # 100k cells, quiet machine
    python benchmarks/scale/train.py --cells 20000         # quick look
    python benchmarks/scale/train.py --busy 2              # 2 CPU-burning processes beside it
    python benchmarks/scale/train.py --threads 2           # train() at 2 threads too

Runs are interleaved, ``--rounds`` times, and the best of each is reported, so that a
moment of load from other programs does not decide the ratio. The runs at the inherited
or a forced thread count train ``--slow-batches`` batches per epoch only: on a busy
machine they crawl.

Measured (2 shared cores, x86_64, torch 2.13 CPU; other programs kept a load of 3 to 6):

- default (100k cells, batch 128): plain loop 1 thread 21,601 cells/s, ``train()``
  (1 thread chosen) 18,119: plain / ``train()`` 1.19x (before ``InMemoryCells``: 2.5x).
  Inherited 2 threads: plain 4,631; ``train(num_threads=2)`` 25,599 in a quiet moment.
- ``--busy 2 --cells 30000``: ``train()`` 7,253 cells/s on its 1 thread, 767 at
  ``num_threads=2`` (9x slower); an earlier run: 3,992 vs 277 (14x), plain 4,368 vs 353.
- GPU: pending (no GPU was lent to this work).

``--busy`` shows why ``train`` chooses its thread count: with every core busy elsewhere,
torch's inherited thread count (one per core) makes small-batch training crawl. On a
machine with CUDA the GPU is measured too (``train(accelerator="gpu")`` and the plain
loop on the GPU).
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time

import anndata as ad
import numpy as np
import pandas as pd
import torch
from lightning.pytorch.callbacks import Callback

from sc_genept.model import GenePTClassifier

#: Real CL terms (PBMC types and their ancestors' level) the generated cells are labelled with.
TERMS = [
    "CL:0000236",  # B cell
    "CL:0000624",  # CD4-positive, alpha-beta T cell
    "CL:0000625",  # CD8-positive, alpha-beta T cell
    "CL:0000623",  # natural killer cell
    "CL:0000576",  # monocyte
    "CL:0000451",  # dendritic cell
    "CL:0000084",  # T cell
    "CL:0000233",  # platelet
]


def generate(n_cells: int, n_dims: int, seed: int = 0) -> ad.AnnData:
    """Cells around one random centre per type, unit-normalised as GenePT-w cells are."""
    rng = np.random.default_rng(seed)
    codes = rng.integers(len(TERMS), size=n_cells)
    centres = rng.normal(size=(len(TERMS), n_dims)).astype(np.float32)
    x = centres[codes] + 2 * rng.normal(size=(n_cells, n_dims)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    obs = pd.DataFrame(
        {"cell_type": np.asarray(TERMS)[codes]}, index=np.arange(n_cells).astype(str)
    )
    adata = ad.AnnData(obs=obs)
    adata.obsm["X_genept"] = x
    return adata


class EpochClock(Callback):
    """Seconds from the start of each training epoch to its last training batch."""

    def __init__(self):
        self.seconds, self.cells = [], 0

    def on_train_epoch_start(self, trainer, pl_module):
        self.start, self.cells = time.perf_counter(), 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.cells += len(batch["labels"])
        if batch_idx == trainer.num_training_batches - 1:
            if trainer.strategy.root_device.type == "cuda":
                torch.cuda.synchronize()
            self.seconds.append(time.perf_counter() - self.start)


def through_train(adata, args, batches: int | None = None, **options) -> tuple[float, int]:
    """Training cells/s per epoch through ``train()``, and the thread count it ran with.

    ``batches``: at most this many training batches per epoch (to bound slow runs).
    """
    GenePTClassifier.setup_anndata(adata, labels_key="cell_type")
    model = GenePTClassifier(adata)
    clock, threads = EpochClock(), []

    class Threads(Callback):
        def on_train_start(self, trainer, pl_module):
            threads.append(torch.get_num_threads())

    model.train(
        max_epochs=args.epochs,
        batch_size=args.batch_size,
        early_stopping=False,
        enable_progress_bar=False,
        callbacks=[clock, Threads()],
        limit_train_batches=batches,
        **options,
    )
    return clock.cells / float(np.median(clock.seconds[1:])), threads[0]


def plain_loop(
    adata, args, batches: int | None = None, threads: int | None = None, device: str = "cpu"
) -> float:
    """Training cells/s per epoch of a plain torch loop over the same module and batches."""
    GenePTClassifier.setup_anndata(adata, labels_key="cell_type")
    model = GenePTClassifier(adata)
    module = model.module.network.to(device).train()
    x = torch.as_tensor(adata.obsm["X_genept"], device=device)
    labels = torch.as_tensor(model._label_codes(), device=device)
    n_train = int(0.81 * len(x))  # as many cells as train()'s default split trains on
    optimizer = torch.optim.AdamW(module.parameters(), lr=1e-3, weight_decay=1e-4)
    seconds, inherited = [], torch.get_num_threads()
    torch.set_num_threads(threads or inherited)
    for epoch in range(args.epochs):
        start = time.perf_counter()
        order = torch.as_tensor(np.random.default_rng(epoch).permutation(n_train), device=device)
        steps = order.split(args.batch_size)[:batches]
        for rows in steps:
            loss = module.loss(module(x[rows]), labels[rows])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        if device != "cpu":
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - start)
    torch.set_num_threads(inherited)
    return sum(len(rows) for rows in steps) / float(np.median(seconds[1:]))


def busy(n: int) -> list[subprocess.Popen]:
    """``n`` processes that keep a core each busy until killed."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cells", type=int, default=100_000)
    parser.add_argument("--dims", type=int, default=384)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=3, help="median over all but the first")
    parser.add_argument("--busy", type=int, default=0, help="CPU-burning processes beside it")
    parser.add_argument(
        "--threads", type=int, nargs="*", default=[], help="also train() at these thread counts"
    )
    parser.add_argument("--rounds", type=int, default=2, help="interleaved; best of them")
    parser.add_argument(
        "--slow-batches",
        type=int,
        default=40,
        help="batches per epoch of the runs at other thread counts (they can crawl)",
    )
    args = parser.parse_args()
    cpus = len(os.sched_getaffinity(0))
    inherited = torch.get_num_threads()
    print(
        f"{platform.processor() or platform.machine()}, {cpus} CPUs, torch {torch.__version__} "
        f"(inherited threads: {inherited}); {args.cells} cells × {args.dims} dims, batch "
        f"{args.batch_size}, {args.busy} busy process(es)"
    )
    adata = generate(args.cells, args.dims)
    # (name, run) pairs, run() -> (cells/s, threads); inherited threads can crawl: bounded
    runs = [
        ("plain torch loop, cpu, 1 thread", lambda: (plain_loop(adata, args, threads=1), 1)),
        ("train(), cpu, threads chosen", lambda: through_train(adata, args, accelerator="cpu")),
        (
            "plain torch loop, cpu, inherited threads",
            lambda: (plain_loop(adata, args, args.slow_batches), inherited),
        ),
        *(
            (
                f"train(), cpu, num_threads={n}",
                lambda n=n: through_train(
                    adata, args, args.slow_batches, accelerator="cpu", num_threads=n
                ),
            )
            for n in args.threads
        ),
    ]
    if torch.cuda.is_available():
        print(f"GPU: {torch.cuda.get_device_name()}")
        runs += [
            ("plain torch loop, gpu", lambda: (plain_loop(adata, args, device="cuda"), 0)),
            ("train(), gpu", lambda: through_train(adata, args, accelerator="gpu", devices=1)),
        ]
    best = {}
    burners = busy(args.busy)
    try:
        for _ in range(args.rounds):  # interleaved, best of rounds: robust to a noisy machine
            for name, run in runs:
                speed, threads = run()
                if speed > best.get(name, (0, 0))[0]:
                    best[name] = (speed, threads)
    finally:
        for p in burners:
            p.kill()
    for name, (speed, threads) in best.items():
        print(f"{name:42s} {speed:10,.0f} cells/s  ({threads} thread(s))")
    plain = max(best["plain torch loop, cpu, 1 thread"][0], best[runs[2][0]][0])
    print(f"plain (best CPU) / train(): {plain / best['train(), cpu, threads chosen'][0]:.2f}x")
    if torch.cuda.is_available():
        print(f"plain / train() on the GPU: {best[runs[-2][0]][0] / best[runs[-1][0]][0]:.2f}x")


if __name__ == "__main__":
    main()
