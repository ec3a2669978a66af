"""How many CPU threads training and prediction use (no Lightning; torch only when asked)."""

from __future__ import annotations

import os
from contextlib import contextmanager

#: Cells of a batch per torch CPU thread (see :func:`cpu_threads`). A batch of fewer
#: runs on one thread; at the default 128 two threads trained 1.4× faster than one on a
#: quiet 2-core machine (``benchmarks/scale/train.py``). Busy CPUs are left out by the
#: load term: there a second thread made even 4096-cell batches 3× slower.
CELLS_PER_THREAD = 64


def cpu_threads(batch_size: int, accelerator: str, devices) -> int:
    """Torch CPU threads for training or prediction: one per ``CELLS_PER_THREAD`` cells of a batch.

    At least 1; at most the CPUs this process may run on (``os.sched_getaffinity``, not
    the machine's core count) shared among the training processes on this machine, and
    at most the CPUs that other programs leave idle (CPUs − the 1-minute load average,
    this process's own share counted as idle): a thread waiting for a busy core stalls
    every step.
    """
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cpus = cpus or 1
    share = cpus // _local_processes(accelerator, devices)
    idle = cpus - round(os.getloadavg()[0]) + 1 if hasattr(os, "getloadavg") else cpus
    return max(1, min(share, idle, batch_size // CELLS_PER_THREAD))


def _local_processes(accelerator: str, devices) -> int:
    """How many training processes Lightning starts on this machine for ``devices``."""
    if isinstance(devices, list | tuple):
        return max(1, len(devices))
    if isinstance(devices, str) and devices.strip().lstrip("-").isdigit():
        devices = int(devices)
    if isinstance(devices, int) and devices > 0:
        return devices
    import torch  # here, not above: NumPy prediction asks for CPU threads too

    gpu = accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()
    return max(1, torch.cuda.device_count()) if gpu and devices in (-1, "auto") else 1


@contextmanager
def torch_threads(n: int):
    """Torch's intra-op thread count set to ``n`` for the block, then restored."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
