"""``sc-genept annotate --model pbmc68k`` on 559 cells: this tree beside an earlier one, in one run.

The query is CellTypist's sample of real 10x raw counts (559 PBMCs × 32,786 genes),
written as an h5ad. Each round runs the command once with this checkout's ``src`` and
once with the ``src`` of ``--before`` (a git revision, exported with ``git archive``),
each in a fresh interpreter, so that imports count as a user's first call does; the
best of ``--rounds`` is reported for each, and their ratio (issue 19: ≤ 0.40 of the
time before prediction stopped importing scvi-tools and Lightning).

    python benchmarks/scale/cli_annotate.py
    python benchmarks/scale/cli_annotate.py --before 4e1bfce --rounds 5
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
from common import machine
from scipy import sparse

ROOT = Path(__file__).resolve().parents[2]
#: The last commit before ``sc-genept annotate --model`` loaded a SavedClassifier.
BEFORE = "4e1bfce"
RUN = "import sys; from sc_genept.cli import main; sys.argv[0] = 'sc-genept'; main()"


def query_file(folder: Path) -> Path:
    """CellTypist's sample of raw 10x counts as an h5ad."""
    from importlib.util import find_spec

    # found, not imported: importing celltypist warns about scanpy's __version__
    spec = find_spec("celltypist")
    if spec is None:
        raise SystemExit("This benchmark reads CellTypist's sample: pip install celltypist.")
    samples = Path(spec.origin).parent / "data" / "samples"
    counts = pd.read_csv(samples / "sample_cell_by_gene.csv", index_col=0)
    adata = ad.AnnData(
        sparse.csr_matrix(counts.to_numpy(dtype=np.float32)),
        obs=pd.DataFrame(index=counts.index.astype(str)),
        var=pd.DataFrame(index=counts.columns.astype(str)),
    )
    path = folder / "query.h5ad"
    adata.write_h5ad(path)
    return path


def source_of(revision: str, folder: Path) -> Path:
    """The ``src`` folder of ``revision``, exported into ``folder``."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", revision, "src"], capture_output=True, check=True
    ).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(folder, filter="data")
    return folder / "src"


def seconds(src: Path, query: Path, out: Path) -> float:
    """Wall time of one ``sc-genept annotate`` in a fresh interpreter on ``src``."""
    out.unlink(missing_ok=True)
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", RUN, "annotate", str(query), "--model", "pbmc68k", "-o", str(out)],
        env={"PYTHONPATH": str(src), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        check=True,
    )
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("--before", default=BEFORE, help="git revision to compare with")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(machine())
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        query = query_file(tmp)
        trees = {"this tree": ROOT / "src", f"before ({args.before})": source_of(args.before, tmp)}
        best = dict.fromkeys(trees, float("inf"))
        for _ in range(args.rounds):  # interleaved: a moment of load hits both
            for name, src in trees.items():
                best[name] = min(best[name], seconds(src, query, tmp / "out.h5ad"))
    for name, time_s in best.items():
        print(f"{name:<24} {time_s:6.2f} s (best of {args.rounds})")
    now, before = best.values()
    print(f"this tree / before: {now / before:.2f}")


if __name__ == "__main__":
    main()
