"""How many intra-op threads to give PyTorch on a machine that other jobs may share.

Small models run their matrix products on a team of OpenMP threads that wait for each other at every operation.
When another process holds one of the cores, a two-thread team keeps stalling on its descheduled member; on two
cores we measured 5-12x slower training than with one thread. So a long stage asks how many cores are busy with
other work right now and uses only the rest (at least one).

Example::

    torch.set_num_threads(free_cpus())      # 2 on an idle 2-core machine, 1 when something else is running
"""

from __future__ import annotations

import os
import re
import statistics
import time
from pathlib import Path

_RUNNING = re.compile(r"^procs_running (\d+)$", re.MULTILINE)


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask; the CPU count off Linux)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def busy_cpus(samples: int = 5, interval: float = 0.1) -> int:
    """Runnable threads of other processes (median of a few samples of /proc/stat; 0 where it is unavailable)."""
    counts = []
    for index in range(samples):
        try:
            match = _RUNNING.search(Path("/proc/stat").read_text())
        except OSError:
            return 0
        if match is None:
            return 0
        counts.append(max(0, int(match.group(1)) - 1))  # minus this process, which is running to read the file
        if index + 1 < samples:
            time.sleep(interval)
    return int(statistics.median(counts))


def free_cpus() -> int:
    """CPUs not busy with other work right now (at least 1). ``OMP_NUM_THREADS``, when set, wins."""
    if os.environ.get("OMP_NUM_THREADS", "").strip().isdigit():
        return max(1, int(os.environ["OMP_NUM_THREADS"]))
    cpus = os.cpu_count() or 1
    return max(1, min(cpus, cpus - busy_cpus()))
