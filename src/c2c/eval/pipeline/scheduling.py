"""Where the training stages of `c2c run` run: torch thread counts (pinned, or the cores other jobs leave free) and
several policies trained side by side, one process each, with the cores of a finished one handed on."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from c2c.utils.io import atomic_write_json, atomic_write_text


def use_threads(threads: int) -> None:
    """Pin torch to ``threads`` intra-op threads, or (0) use the cores other jobs leave free."""
    import torch

    if threads:
        warn_if_busy(threads)
        torch.set_num_threads(threads)
    else:
        _use_free_cpus()


def warn_if_busy(threads: int, processes: int = 1) -> None:
    """Say so when pinned multi-thread teams outnumber the free cores: each OpenMP team then stalls on its
    descheduled members (measured 5-12x slower on 2 cores; c2c.utils.threads). One-thread processes do not stall."""
    from c2c.utils.threads import busy_cpus

    cpus = os.cpu_count() or 1
    free = max(0, cpus - busy_cpus())
    if threads > 1 and threads * processes > free:
        print(f"[threads] pinned to {threads} per process x {processes}, but only {free} of {cpus} CPUs are free "
              "now: expect this stage to run several times slower (--threads auto adapts to the free cores, at the "
              "cost of bit-for-bit repeatable weights)")


def _use_free_cpus() -> None:
    """Train on the cores other jobs leave free (see c2c.utils.threads: a stalled OpenMP team is 5-12x slower)."""
    import torch

    from c2c.utils.threads import free_cpus

    threads = free_cpus()
    if threads != torch.get_num_threads():
        print(f"[threads] {threads} (of {os.cpu_count()} CPUs; the others are busy)")
    torch.set_num_threads(threads)


PROGRESS = re.compile(r"(\d+)/(\d+) \[")


def train_in_parallel(configs: dict[str, Any], poll_seconds: float = 2.0, threads: int = 0,
                      on_finish: Callable[[str, int], None] | None = None) -> dict[str, dict[str, Any]]:
    """Train several policies at once, one process each (``python -m c2c.policy.train``); one progress bar over
    all of them; each process's output goes to ``<out>/train.log``.

    ``threads`` 0: each starts with one thread, and the cores of a finished training (or freed by other jobs) go
    to those still running. N: each runs ``max(1, N // len(configs))`` threads throughout (a rerun repeats the
    weights bit for bit), and ``on_finish(variant, its threads)`` is called when one finishes while others still
    run: its cores are free for other work that does not touch the trainings."""
    from tqdm.auto import tqdm

    from c2c.errors import C2CError
    from c2c.policy.training.launch import ENTRY_MODULE
    from c2c.policy.training.loop import THREADS_FILE_ENV
    from c2c.utils.threads import busy_cpus

    running = {}
    start = max(1, threads // len(configs)) if threads else 1
    if threads:
        warn_if_busy(start, len(configs))
    for variant, config in configs.items():
        out = Path(config.out)
        launch = out / "launch_config.json"
        atomic_write_json(launch, {"config": asdict(config), "resume": False})
        atomic_write_text(out / "threads", str(start))
        env = {**os.environ, "OMP_NUM_THREADS": str(start), "MKL_NUM_THREADS": str(start),
               THREADS_FILE_ENV: str(out / "threads")}
        log = open(out / "train.log", "a")  # noqa: SIM115 (closed below); a resumed training appends
        process = subprocess.Popen([sys.executable, "-m", ENTRY_MODULE, str(launch)], stdout=log,
                                   stderr=subprocess.STDOUT, env=env)
        running[variant] = (process, log)
    cpus, assigned, reported = os.cpu_count() or 1, {variant: start for variant in configs}, set()
    total = sum(config.steps for config in configs.values())
    bar = tqdm(total=total, desc=f"policies ({', '.join(configs)}, side by side)", dynamic_ncols=True)
    try:
        while True:
            done = {variant: _logged_step(Path(configs[variant].out) / "train.log") for variant in configs}
            bar.n = sum(done.values())
            bar.set_postfix_str(" ".join(f"{v}={n}" for v, n in done.items()), refresh=True)
            alive = [variant for variant, (process, _) in running.items() if process.poll() is None]
            if not alive:
                break
            if threads:  # pinned: the thread counts never change
                for variant, (process, _) in running.items():
                    if variant not in reported and process.returncode == 0:
                        reported.add(variant)
                        if on_finish is not None:
                            on_finish(variant, start)
                time.sleep(poll_seconds)
                continue
            # Cores not taken by other jobs are shared among the trainings still running (each runs its assigned
            # threads while it trains, so those are not "other" work).
            others = max(0, busy_cpus(samples=3, interval=0.05) - sum(assigned[v] for v in alive))
            share = max(1, (cpus - others) // len(alive))
            for variant in alive:  # the cores of finished trainings go to those still running
                if assigned.get(variant) != share:
                    atomic_write_text(Path(configs[variant].out) / "threads", str(share))
                    assigned[variant] = share
            time.sleep(poll_seconds)
    except BaseException:
        for process, _ in running.values():
            process.terminate()
        raise
    finally:
        bar.close()
        for _, log in running.values():
            log.close()
    failed = {variant: process.returncode for variant, (process, _) in running.items() if process.returncode}
    if failed:
        variant = next(iter(failed))
        tail = (Path(configs[variant].out) / "train.log").read_text(errors="replace").replace("\r", "\n")
        tail = "\n".join(tail.strip().splitlines()[-5:])
        raise C2CError(f"policy training failed for {', '.join(failed)} (see {configs[variant].out}/train.log):\n{tail}")
    return {variant: json.loads((Path(config.out) / "metrics.json").read_text()) for variant, config in configs.items()}


def _logged_step(log: Path) -> int:
    """The last step a training progress bar printed into ``log`` (0 before the first)."""
    try:
        with log.open("rb") as handle:
            handle.seek(max(0, log.stat().st_size - 4096))
            tail = handle.read().decode(errors="replace")
    except FileNotFoundError:
        return 0
    matches = PROGRESS.findall(tail)
    return int(matches[-1][0]) if matches else 0


def thread_schedule(schedule: list[dict[str, int]] | None) -> str:
    """``[{"step": 0, "threads": 1}, {"step": 741, "threads": 2}]`` -> "1, 2 from step 741" ("-": not recorded)."""
    if not schedule:
        return "-"
    words = [str(schedule[0]["threads"])]
    words += [f"{entry['threads']} from step {entry['step']}" for entry in schedule[1:]]
    return ", ".join(words)
