"""Worker processes of the demonstration generators.

- :func:`default_workers`: the usable CPUs, at most one per job.
- :class:`ProcessEnv`: the env a process keeps between jobs (making one costs 0.6 s for Meta-World, several
  seconds for LIBERO), rebuilt when a job needs another.
- :class:`RecordPool`: spawned render processes fed job by job, each job going to the process that has its task's
  env unless that one has fallen far behind; results come back through :meth:`RecordPool.poll`.
"""

from __future__ import annotations

import multiprocessing
import queue
import signal
from typing import Any, Callable, Hashable, Iterator

import numpy as np

from c2c.errors import C2CError
from c2c.utils.threads import usable_cpus


def default_workers(workers: int | None, jobs: int) -> int:
    """``workers`` when given, else the usable CPUs but no more than ``jobs``."""
    return workers if workers is not None else min(usable_cpus(), jobs)


def spawn_context() -> Any:
    """A fresh interpreter per worker: no GL or thread state inherited."""
    return multiprocessing.get_context("spawn")


class ProcessEnv:
    """One env kept by a process (one renderer per process) for the jobs that share its ``key``."""

    def __init__(self) -> None:
        self.env: Any = None
        self.key: Hashable = None

    def get(self, key: Hashable, make: Callable[[], Any]) -> Any:
        """The kept env when it was made for ``key``; else the old one is closed and ``make()`` made."""
        if self.env is None or self.key != key:
            self.close()
            self.env, self.key = make(), key
        return self.env

    def close(self) -> None:
        if self.env is not None:
            self.env.close()
        self.env, self.key = None, None


class InlineFuture:
    """A finished future of a job run in this process (or of nothing to run: ``value`` 0)."""

    def __init__(self, value: int) -> None:
        self._value = value

    def result(self) -> int:
        return self._value


def _worker_loop(index: int, inbox: Any, results: Any, record: Callable[[Any], Any], close: Callable[[], None]
                 ) -> None:
    """A render process: ``record`` jobs from ``inbox`` until ``None``; put ``(index, result or error)``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's to handle
    while (job := inbox.get()) is not None:
        try:
            results.put((index, record(job)))
        except Exception as error:  # noqa: BLE001 - sent back and raised by the main process
            results.put((index, error))
    close()


class RecordPool:
    """Runs record jobs inline (``workers <= 1``) or in spawned render processes; results come from ``poll``.

    ``record(job)`` (a module-level function, so that it reaches a spawned process) returns ``(task, attempt,
    frames)``; jobs have ``task`` and ``frames``. ``close_worker()`` releases a process's env at the end. Making
    an env and its renderer is costly, so a task's jobs stay with one process unless that one has
    :data:`REBALANCE_FRAMES` more frames queued than the least busy one.
    """

    REBALANCE_FRAMES = 400

    def __init__(self, workers: int, record: Callable[[Any], tuple[str, int, int]], close_worker: Callable[[], None]
                 ) -> None:
        self.workers = max(workers, 1)
        self._record, self._close_worker = record, close_worker
        self._inline_results: list[tuple[str, int, int]] = []
        self._processes: list[Any] = []  # started with the first job, so a run with nothing to record starts none
        self._queued_frames = [0] * self.workers
        self._owner: dict[str, int] = {}  # task -> process that has its env
        self.pending = 0

    def _start(self) -> None:
        context = spawn_context()
        self._results = context.Queue()
        self._inboxes = [context.Queue() for _ in range(self.workers)]
        self._processes = [
            context.Process(target=_worker_loop, args=(index, inbox, self._results, self._record,
                                                       self._close_worker), daemon=True)
            for index, inbox in enumerate(self._inboxes)
        ]
        for process in self._processes:
            process.start()

    def submit(self, job: Any) -> None:
        self.pending += 1
        if self.workers == 1:
            self._inline_results.append(self._record(job))
            return
        if not self._processes:
            self._start()
        least_busy = int(np.argmin(self._queued_frames))
        owner = self._owner.get(job.task, least_busy)
        if self._queued_frames[owner] - self._queued_frames[least_busy] > self.REBALANCE_FRAMES:
            owner = least_busy
        self._owner[job.task] = owner
        self._queued_frames[owner] += job.frames
        self._inboxes[owner].put(job)

    def poll(self, block: bool = False) -> Iterator[tuple[str, int, int]]:
        """Finished jobs as (task, attempt, frames); with ``block``, waits for every submitted job."""
        while self._inline_results:
            self.pending -= 1
            yield self._inline_results.pop(0)
        while self.pending and self._processes:
            try:
                index, result = self._results.get(block=block, timeout=5.0 if block else None)
            except queue.Empty:
                if block and not all(process.is_alive() for process in self._processes):
                    raise C2CError("a render process died (out of memory?); rerun the command to resume") from None
                if block:
                    continue
                return
            self.pending -= 1
            if isinstance(result, BaseException):
                raise result
            self._queued_frames[index] -= result[2]
            yield result

    def close(self, *, terminate: bool = False) -> None:
        started = [(index, p) for index, p in enumerate(self._processes) if p.pid is not None]
        for index, process in started:
            if terminate:
                process.terminate()
            else:
                self._inboxes[index].put(None)
        for _, process in started:
            process.join()
        self._processes = []
        self._close_worker()
