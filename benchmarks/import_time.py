"""Import and start-up time of sc_genept against its targets (issue 10, item 4).

Each case runs in a fresh Python process, N times; the best (least disturbed) run counts:

- ``import scanpy``                  the baseline
- ``import scanpy, sc_genept``       target: at most 0.5 s more than the baseline
- ``sc-genept --help``               target: at most 0.5 s more than ``import scanpy``
- ``sc-genept --version``            the same

The help waits for scanpy: ``import sc_genept`` imports it to add the tools to
``scanpy.tl`` without an import hook (issue 18; before, the help took 0.06 s under a hook).

Run: ``python benchmarks/import_time.py [--repeat N]``. Times are wall-clock, process
start included (a bare ``python -c pass`` is printed for reference). To see where the
time goes: ``python -X importtime -c "import sc_genept" 2>&1 | sort -t'|' -k2 -n | tail``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

SCRIPT = Path(sys.executable).with_name("sc-genept")
OVER_SCANPY = 0.5  # s that `import sc_genept` (or the CLI's help) may add to `import scanpy`


def best(command: list[str], repeat: int) -> float:
    """Least wall-clock time of ``repeat`` runs of ``command`` (each must succeed)."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return min(times)


def importtime(code: str, module: str, repeat: int) -> float:
    """Least cumulative time ``python -X importtime`` gives ``module`` while running ``code``.

    It counts the module's own imports only, so it is steadier than a difference of two
    wall-clock times on a busy machine.
    """
    times = []
    for _ in range(repeat):
        done = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", code],
            check=True,
            capture_output=True,
            text=True,
        )
        for line in done.stderr.splitlines():
            fields = [f.strip() for f in line.removeprefix("import time:").split("|")]
            if len(fields) == 3 and fields[2] == module:
                times.append(int(fields[1]) / 1e6)
    return min(times)


def main() -> int:
    """Measure, print a table, and return 1 if a target is missed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7, help="runs per case (default 7)")
    args = parser.parse_args()
    python = [sys.executable, "-c"]
    script = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "sc_genept.cli"]
    # warm the file cache and the bytecode once, so the first case is not penalised
    subprocess.run([*python, "import scanpy, sc_genept"], check=True, capture_output=True)

    t = {
        "python -c pass": best([*python, "pass"], args.repeat),
        "import scanpy": best([*python, "import scanpy"], args.repeat),
        "import scanpy, sc_genept": best([*python, "import scanpy, sc_genept"], args.repeat),
        "import sc_genept (alone)": best([*python, "import sc_genept"], args.repeat),
        "sc-genept --help": best([*script, "--help"], args.repeat),
        "sc-genept --version": best([*script, "--version"], args.repeat),
        "-X importtime: sc_genept after scanpy": importtime(
            "import scanpy, sc_genept", "sc_genept", args.repeat
        ),
    }
    print(
        f"best of {args.repeat} fresh processes; {os.cpu_count()} CPUs; Python {sys.version.split()[0]}"
    )
    for name, seconds in t.items():
        print(f"  {name:38s} {seconds:6.3f} s")

    over = t["import scanpy, sc_genept"] - t["import scanpy"]
    checks = [
        (
            "import sc_genept over import scanpy",
            f"{over:+.3f} s ({t['import scanpy, sc_genept'] / t['import scanpy']:.2f}x)",
            f"≤ +{OVER_SCANPY} s",
            over <= OVER_SCANPY,
        ),
        (
            "the same, by -X importtime",
            f"+{t['-X importtime: sc_genept after scanpy']:.3f} s",
            f"≤ +{OVER_SCANPY} s",
            t["-X importtime: sc_genept after scanpy"] <= OVER_SCANPY,
        ),
        *(
            (
                f"{name} over import scanpy",
                f"{t[name] - t['import scanpy']:+.3f} s",
                f"≤ +{OVER_SCANPY} s",
                t[name] - t["import scanpy"] <= OVER_SCANPY,
            )
            for name in ("sc-genept --help", "sc-genept --version")
        ),
    ]
    print("targets:")
    for name, value, target, ok in checks:
        print(f"  {name:36s} {value:28s} target {target:9s} {'ok' if ok else 'MISSED'}")
    return 0 if all(ok for *_, ok in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
