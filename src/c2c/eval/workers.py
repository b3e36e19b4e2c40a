"""Spawned worker processes of the closed-loop evaluations (Meta-World and LIBERO), and their progress bar.

- :class:`WorkerPool`: processes started with :func:`spawn_context` (a fresh interpreter each: no GL or thread
  state is inherited), each making its runner once with ``make_runner(settings)`` (a module-level function or
  class and picklable settings, so that they reach a spawned process) on one torch thread, then running job groups
  from one shared queue until there are none left. A runner has ``run_group(group)`` (a list of results) and
  ``close()``. Results come back through :meth:`WorkerPool.run` in the order the groups finish.
- A worker's error comes back as plain strings (any exception pickles that way): a :class:`C2CError` is raised
  again in the main process as a ``C2CError`` with its message, any other error as a ``RuntimeError`` with the
  worker's message and traceback. When every worker process has died (out of memory?), ``run`` says so instead of
  waiting forever.
- :class:`Progress`: a tqdm bar over episodes with the running success rate, handing every record to an
  ``on_record`` callback as it comes.

Example::

    with WorkerPool(2, load_runner, settings) as pool:   # left early (an error, Ctrl-C): the processes terminated
        for record in pool.run(groups):
            progress.advance(record)
"""

from __future__ import annotations

import multiprocessing
import queue
import signal
import traceback
from collections.abc import Callable, Iterator, Sequence
from types import TracebackType
from typing import Any, Self

from c2c.errors import C2CError

RESULT_TIMEOUT_S = 5.0  # how often the main process checks that its workers are alive


def spawn_context() -> Any:
    """A fresh interpreter per worker: no GL or thread state inherited."""
    return multiprocessing.get_context("spawn")


def _worker_main(make_runner: Callable[[Any], Any], settings: Any, inbox: Any, results: Any) -> None:
    """A worker process: make the runner, run groups from ``inbox`` until ``None``, put results or failures."""
    import torch

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's to handle
    torch.set_num_threads(1)
    try:
        runner = make_runner(settings)
    except Exception as error:  # noqa: BLE001 - reported by the main process
        results.put(_failure(error))
        return
    try:
        while (group := inbox.get()) is not None:
            try:
                results.put(("ok", list(runner.run_group(group))))
            except Exception as error:  # noqa: BLE001 - reported by the main process
                results.put(_failure(error))
    finally:
        runner.close()


def _failure(error: Exception) -> tuple[str, str, bool, str]:
    """An error as plain strings (any exception pickles this way)."""
    return ("error", f"{type(error).__name__}: {error}" if not isinstance(error, C2CError) else str(error),
            isinstance(error, C2CError), traceback.format_exc())


class WorkerPool:
    """``count`` spawned processes sharing one queue of job groups; use as a context manager, or call
    :meth:`close` (``terminate=True`` after an error)."""

    def __init__(self, count: int, make_runner: Callable[[Any], Any], settings: Any) -> None:
        context = spawn_context()
        self._inbox, self._results = context.Queue(), context.Queue()
        self._processes = [
            context.Process(target=_worker_main, args=(make_runner, settings, self._inbox, self._results),
                            daemon=True)
            for _ in range(count)
        ]
        for process in self._processes:
            process.start()

    def run(self, groups: Sequence[Any]) -> Iterator[Any]:
        """Every group's results, group by group in the order the groups finish; call it once."""
        for group in groups:
            self._inbox.put(group)
        for _ in self._processes:
            self._inbox.put(None)
        for _ in groups:
            while True:
                try:
                    result = self._results.get(timeout=RESULT_TIMEOUT_S)
                    break
                except queue.Empty:
                    if not any(process.is_alive() for process in self._processes):
                        raise C2CError("every evaluation worker process died (out of memory?)") from None
            if result[0] == "error":
                _, message, is_c2c, trace = result
                if is_c2c:
                    raise C2CError(message)
                raise RuntimeError(f"an evaluation worker failed: {message}\n{trace}")
            yield from result[1]

    def close(self, *, terminate: bool = False) -> None:
        for process in self._processes:
            if terminate:
                process.terminate()
            process.join()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, error_type: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close(terminate=error_type is not None)


class Progress:
    """A tqdm bar over episodes with the running success rate, or nothing; ``on_record`` gets every record."""

    def __init__(self, total: int, enabled: bool, on_record: Callable[[dict[str, Any]], None] | None = None, *,
                 desc: str = "eval", label: str = "task") -> None:
        self.bar = None
        self.successes = self.done = 0
        self.on_record = on_record  # e.g. PartialRecords.add: every record written as it comes
        self.label = label  # the record's key shown before the success rate
        if enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc=desc, unit="ep", dynamic_ncols=True)

    def advance(self, record: dict[str, Any]) -> None:
        if self.on_record is not None:
            self.on_record(record)
        self.done += 1
        self.successes += record["success"]
        if self.bar is not None:
            rate = self.successes / self.done
            self.bar.set_postfix_str(f"{record[self.label]}  success {self.successes}/{self.done} ({rate:.0%})",
                                     refresh=False)
            self.bar.update()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
