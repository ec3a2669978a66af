"""Whether this process was forked from one that had started numba's OpenMP threads.

Registered when ``sc_genept`` is imported (standard library only): GNU OpenMP terminates a
forked child that starts threads again, so such a child runs the serial kernels of
:mod:`sc_genept._numba_kernels` instead.
"""

from __future__ import annotations

import os
import sys

#: Set in a forked child whose parent had started numba's OpenMP threading layer.
after_openmp = False


def _forked() -> None:
    global after_openmp
    numba = sys.modules.get("numba")
    if numba is None:
        return
    try:
        after_openmp = after_openmp or numba.threading_layer() == "omp"
    except ValueError:  # no parallel loop had run: nothing started
        pass


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forked)
