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

_PROCS_RUNNING = re.compile(r"^procs_running (\d+)$", re.MULTILINE)


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask; the CPU count off Linux)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def busy_cpus(samples: int = 5, interval: float = 0.1, proc: Path = Path("/proc")) -> int:
    """Runnable threads of other processes (median of a few samples; 0 where ``/proc`` cannot be read).

    Threads of niced processes (nice > 0, e.g. ``nice -n 19 c2c run ...`` in the background) are not counted: the
    scheduler gives them a core only when nothing at normal priority wants it, so they leave a thread team alone
    (a 2-thread tokenizer next to two nice-19 trainings on 2 cores ran at its idle-machine speed).
    """
    counts = []
    for index in range(samples):
        count = _runnable_threads(proc)
        if count is None:
            return 0
        counts.append(count)
        if index + 1 < samples:
            time.sleep(interval)
    return int(statistics.median(counts))


def _runnable_threads(proc: Path) -> int | None:
    """Threads of other processes in state R at nice <= 0, from ``<proc>/<pid>/task/<tid>/stat`` (about 10 ms for
    120 threads; skipped when ``<proc>/stat`` counts no runnable thread but the caller)."""
    try:
        running = _PROCS_RUNNING.search((proc / "stat").read_text())
    except OSError:
        running = None
    if running is not None and int(running.group(1)) <= 1:
        return 0
    own = str(os.getpid())
    try:
        pids = [entry for entry in os.listdir(proc) if entry.isdigit() and entry != own]
    except OSError:
        return None
    count = 0
    for pid in pids:
        try:
            tids = os.listdir(proc / pid / "task")
        except OSError:  # the process ended meanwhile
            continue
        for tid in tids:
            try:
                text = (proc / pid / "task" / tid / "stat").read_text()
            except OSError:
                continue
            fields = text.rsplit(")", 1)[-1].split()  # after "pid (comm)": state is field 3, nice field 19
            if len(fields) > 16 and fields[0] == "R" and int(fields[16]) <= 0:
                count += 1
    return count


def free_cpus() -> int:
    """CPUs not busy with other work right now (at least 1). ``OMP_NUM_THREADS``, when set, wins."""
    if os.environ.get("OMP_NUM_THREADS", "").strip().isdigit():
        return max(1, int(os.environ["OMP_NUM_THREADS"]))
    cpus = os.cpu_count() or 1
    return max(1, min(cpus, cpus - busy_cpus()))
