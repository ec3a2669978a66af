"""Peak memory of embedding backed data at two sizes, each in a fresh process, in one run.

Generated counts (CSR, ~1,000 expressed genes per cell of 20,000) are written to ``.h5ad``
files, opened ``backed="r"`` and embedded by ``genept_embed`` with the default 384-d table:
the embedding kept in memory (float32, float16), or written to a ``.npy`` file
(``out_file=``), whose memory is bounded by one block. Each figure is the peak resident
memory of its own process (``ru_maxrss``), beside a process that only opens the file.

    python benchmarks/scale/memory.py                       # 100k and 400k cells
    python benchmarks/scale/memory.py --cells 20000 80000   # quick look

Target (issue 11): 400k cells peak at ≤ 1.2× the memory of 100k cells.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import generate, machine, peak_rss_mib

MODES = {
    "open only": {},
    "in memory, float32": {"embed": True},
    "in memory, float16": {"embed": True, "dtype": "float16"},
    "out_file (.npy)": {"embed": True, "out_file": True},
}


def child(path: str, mode: str) -> None:
    """Open ``path`` backed, embed it as ``mode`` says; print peak RSS and seconds as JSON."""
    import scanpy as sc

    import sc_genept  # noqa: F401 (adds sc.tl.genept_embed)

    options = MODES[mode]
    start = time.perf_counter()
    adata = sc.read_h5ad(path, backed="r")
    if options.get("embed"):
        out_file = Path(path).with_suffix(".npy") if options.get("out_file") else None
        sc.tl.genept_embed(adata, dtype=options.get("dtype", "float32"), out_file=out_file)
    print(json.dumps({"peak": peak_rss_mib(), "seconds": time.perf_counter() - start}))


def measure(path: Path, mode: str) -> dict:
    done = subprocess.run(
        [sys.executable, __file__, "--child", str(path), mode],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cells", type=int, nargs=2, default=[100_000, 400_000])
    parser.add_argument("--genes", type=int, default=20_000)
    parser.add_argument("--per-cell", type=int, default=1_000, help="expressed genes per cell")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return

    print(f"{machine()}; {args.genes:,} genes, ~{args.per_cell:,} expressed per cell, backed h5ad")
    with tempfile.TemporaryDirectory() as folder:
        results = {}
        for n_cells in args.cells:
            path = Path(folder) / f"cells_{n_cells}.h5ad"
            generate(n_cells, args.genes, args.per_cell, counts=True).write_h5ad(path)
            for mode in MODES:
                results[n_cells, mode] = measure(path, mode)
            path.unlink()
    small, large = args.cells
    print(
        f"{'mode':<20} {f'{small:,} cells MiB':>16} {f'{large:,} cells MiB':>16} {'ratio':>6} "
        f"{f'{large:,} cells/s':>16}"
    )
    for mode in MODES:
        a, b = results[small, mode], results[large, mode]
        print(
            f"{mode:<20} {a['peak']:>16,.0f} {b['peak']:>16,.0f} {b['peak'] / a['peak']:>5.2f}× "
            f"{large / b['seconds']:>16,.0f}"
        )


if __name__ == "__main__":
    main()
