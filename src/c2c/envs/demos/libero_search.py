"""LIBERO's demonstration search with the cameras drawn as it goes (``fast_drawing``), in chunks of attempts
spread over worker processes.

With fast drawing the search env itself draws both cameras at every step (it has no robosuite renderer, so its
rollouts are the camera-less ones bit for bit): successful episodes are written to the cache as they finish and
failed ones dropped, with no replay. :class:`ChunkScheduler` hands chunks of a task's attempts to worker lanes;
:class:`TaskSearch` is the parent's view of one task; :func:`search_chunk` runs in a worker.
"""

from __future__ import annotations

import queue as queues
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from c2c.envs.demos.cache import Attempt, WorkDir, save_episode_arrays
from c2c.envs.demos.libero_rollouts import placement_seed, run_expert
from c2c.envs.demos.report import Progress, TaskReport, task_report
from c2c.envs.demos.workers import InlineFuture, ProcessEnv, spawn_context
from c2c.envs.libero_env import DEFAULT_CAMERAS, LiberoEnv


@dataclass(frozen=True)
class ChunkJob:
    """Some attempts of one task, with the cameras drawn as they go (``fast_drawing``), for a worker process."""

    suite: str
    task_id: int
    name: str
    indices: tuple[int, ...]  # attempt indices, ascending
    seed: int
    image_size: int
    max_steps: int | None
    work_root: str
    render_size: int | None = None  # cameras drawn at this size, then resized to image_size


_search_env = ProcessEnv()  # a worker's search env: kept between chunks of one task, rebuilt when the task changes


def close_search_env() -> None:
    _search_env.close()


def search_chunk(job: ChunkJob, progress: Any = None) -> tuple[list[Attempt], int]:
    """Run ``job``'s attempts; every successful episode (its frames drawn during the rollout itself) is written to
    the work directory as it finishes. ``progress`` (a queue) receives ``(task_id, attempt)`` per attempt, so the
    parent, the only writer of the attempts files, can save each outcome at once and an interrupted run resumes.
    Returns the attempts and the frames drawn.

    With fast drawing the env has no robosuite renderer, so its rollouts are the camera-less search's. Soft resets
    make an attempt's last bits depend on the episodes run before it in the same env (see ``LiberoEnv``): bit for
    bit on most tasks, within about 1e-14 on some.
    """
    work = WorkDir.existing(Path(job.work_root))
    env = _search_env.get(
        (job.suite, job.task_id, job.image_size, job.render_size or job.image_size, job.max_steps),
        lambda: LiberoEnv(job.suite, job.task_id, image_size=job.image_size, render_size=job.render_size,
                          cameras=DEFAULT_CAMERAS, max_steps=job.max_steps, fast_drawing=True, hard_reset=False))
    attempts: list[Attempt] = []
    drawn = 0
    for index in job.indices:
        frames: dict[str, list[np.ndarray]] = {camera: [] for camera in DEFAULT_CAMERAS}
        rollout = run_expert(env, placement_seed(job.seed, job.suite, job.name, index), frames)
        outcome = rollout.outcome
        outcome.attempt = index
        if outcome.success:
            drawn += outcome.length
            save_episode_arrays(work.episode_path(job.name, index), {
                "actions": rollout.actions, "states": rollout.states,
                **{camera: np.stack(images) for camera, images in frames.items()}})
        attempts.append(outcome)
        if progress is not None:
            progress.put((job.task_id, outcome))
    return attempts, drawn


class TaskSearch:
    """The parent's view of one task's search: outcomes so far, attempts in flight, the next index to hand out.

    The demonstrations kept are the first ``episodes`` successes in attempt order, as a one-process search would
    keep; attempts past that point (run by other workers meanwhile) are dropped.
    """

    def __init__(self, task_id: int, name: str, episodes: int, max_attempts: int, cached: dict[int, Attempt],
                 recorded: set[int]) -> None:
        self.task_id, self.name, self.episodes, self.max_attempts = task_id, name, episodes, max_attempts
        self.cached = cached  # attempts file contents (saved by the parent)
        self.recorded = recorded  # indices with an episode file
        self.outcomes: dict[int, Attempt] = {}
        self.in_flight = 0
        self.next_index = 0

    def usable_cached(self, index: int) -> Attempt | None:
        outcome = self.cached.get(index)
        if outcome is None or (outcome.success and index not in self.recorded):
            return None  # never run, or its episode file went missing: run it (again)
        return outcome

    def missing(self) -> int:
        """Successes still wanted beyond those found and the attempts in flight (each counted as a success)."""
        return self.episodes - sum(outcome.success for outcome in self.outcomes.values()) - self.in_flight

    def take(self, size: int) -> tuple[int, ...]:
        """Up to ``size`` attempt indices to run, after taking every usable cached outcome on the way."""
        indices: list[int] = []
        while len(indices) < min(size, self.missing()) and self.next_index < self.max_attempts:
            index = self.next_index
            self.next_index += 1
            cached = self.usable_cached(index)
            if cached is not None:
                self.outcomes[index] = cached
            else:
                indices.append(index)
        self.in_flight += len(indices)
        return tuple(indices)

    def finish(self, outcome: Attempt) -> bool:
        """Record one attempt; True when the attempts file changed."""
        self.outcomes[outcome.attempt] = outcome
        self.in_flight -= 1
        if self.cached.get(outcome.attempt) == outcome:
            return False
        self.cached[outcome.attempt] = outcome
        return True

    def kept_attempts(self) -> list[Attempt]:
        """Attempts in order up to the ``episodes``-th success (all of them when there are fewer successes)."""
        attempts, successes = [], 0
        for index in sorted(self.outcomes):
            if successes == self.episodes:
                break
            attempts.append(self.outcomes[index])
            successes += attempts[-1].success
        return attempts


class ChunkScheduler:
    """Hands out chunks of attempts to worker lanes and takes their outcomes (the parent's side of the search).

    Each lane keeps to one task while that needs attempts (a worker keeps its env: making one costs several
    seconds), then takes a task no lane has taken yet, and at the end helps the open task that misses the most.
    Outcomes are saved to the attempts files as they come, so an interrupted run resumes.
    """

    def __init__(self, suite: str, task_ids: list[int], names: dict[int, dict[str, Any]], episodes_per_task: int,
                 max_attempts_factor: int, seed: int, image_size: int, max_steps: int | None, work: WorkDir,
                 progress: Progress, render_size: int | None = None) -> None:
        self.suite, self.seed, self.image_size, self.max_steps = suite, seed, image_size, max_steps
        self.work, self.progress, self.render_size = work, progress, render_size
        self.searches: dict[int, TaskSearch] = {}
        for task_id in task_ids:
            name = names[task_id]["name"]
            self.searches[task_id] = TaskSearch(task_id, name, episodes_per_task,
                                                episodes_per_task * max_attempts_factor, work.load_attempts(name),
                                                work.recorded(name))
        # Chunks of a tenth of a task's episodes: small enough to balance the tail (a chunk takes about 30 s).
        self.chunk = max(1, -(-episodes_per_task // 10))
        self.shown = {task_id: 0 for task_id in task_ids}
        self.lane_task: dict[int, int] = {}  # worker lane -> the task it works on

    def put(self, item: tuple[int, Attempt]) -> None:
        """Take one attempt's outcome (the queue interface of :func:`search_chunk`, for a run in this process)."""
        self.advance(*item)

    def advance(self, task_id: int, outcome: Attempt) -> None:
        search = self.searches[task_id]
        if search.finish(outcome):
            self.work.save_attempts(search.name, search.cached)
        kept = sum(attempt.success for attempt in search.kept_attempts())
        self.progress.advance(kept - self.shown[task_id])
        done = len(search.outcomes)
        self.progress.show(f"task {task_id}", sum(o.success for o in search.outcomes.values()), done)
        self.shown[task_id] = kept

    @staticmethod
    def is_open(search: TaskSearch) -> bool:
        return search.missing() > 0 and search.next_index < search.max_attempts

    def next_job(self, lane: int) -> ChunkJob | None:
        """The next chunk for ``lane``: its own task while that needs attempts, else a task no lane has taken yet,
        else the open task that misses the most."""
        while True:
            current = self.searches.get(self.lane_task.get(lane, -1))
            if current is None or not self.is_open(current):
                taken = set(self.lane_task.values())
                fresh = [search for search in self.searches.values()
                         if search.task_id not in taken and self.is_open(search)]
                helping = [search for search in self.searches.values() if self.is_open(search)]
                if not fresh and not helping:
                    return None
                current = fresh[0] if fresh else max(helping, key=lambda item: (item.missing(), -item.task_id))
                self.lane_task[lane] = current.task_id
            indices = current.take(self.chunk)
            if indices:
                return ChunkJob(self.suite, current.task_id, current.name, indices, self.seed, self.image_size,
                                self.max_steps, str(self.work.root), self.render_size)

    def run(self, workers: int) -> int:
        """Run every task's search over ``workers`` processes (1: in this process); returns the frames drawn."""
        drawn_total = 0
        if workers == 1:
            try:
                while (job := self.next_job(0)) is not None:
                    drawn_total += search_chunk(job, self)[1]
            finally:
                close_search_env()
            return drawn_total
        context = spawn_context()
        with context.Manager() as manager, ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            progress = manager.Queue()
            # One chunk in flight per lane: a finished chunk's process is then the only idle one, so the lane's
            # next chunk goes to it and finds its env ready.
            pending: dict[Future, int] = {}  # future -> lane
            try:
                while True:
                    for lane in sorted(set(range(workers)) - set(pending.values())):
                        if (job := self.next_job(lane)) is not None:
                            pending[pool.submit(search_chunk, job, progress)] = lane
                    if not pending:
                        break
                    finished, _ = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                    while True:  # outcomes before the results of their chunks
                        try:
                            self.advance(*progress.get_nowait())
                        except queues.Empty:
                            break
                    for future in finished:
                        del pending[future]
                        drawn_total += future.result()[1]  # a worker's error is raised here
            except BaseException:
                pool.shutdown(wait=False, cancel_futures=True)
                raise
        return drawn_total


def search_while_drawing(suite: str, task_ids: list[int], names: dict[int, dict[str, Any]], episodes_per_task: int,
                         max_attempts_factor: int, seed: int, image_size: int, max_steps: int | None, work: WorkDir,
                         workers: int, progress: Progress, render_size: int | None = None
                         ) -> tuple[list[TaskReport], list[tuple[int, str, Attempt, Any]], int]:
    """Every task's search with the cameras drawn during the rollouts, in chunks of attempts spread over ``workers``
    processes (:class:`ChunkScheduler`). Each worker lane keeps to one task while it needs attempts (making an env costs several seconds),
    then takes a task nobody has started, and at the end helps the task that misses the most successes. So no core
    idles while a slow task finishes: whole tasks per worker left one core idle for 5.7 of 39.5 minutes on
    libero_spatial.

    Reproducibility: on some tasks a seed's placement also depends on how many resets the env has done (see
    ``LiberoEnv.reset_random``; libero_spatial task 4 moves objects by up to 4 cm), and elsewhere the last bits of a
    soft reset depend on the episodes before it. Attempts of a task that one lane runs alone come in index order in
    one env, as with one worker; attempts of a task two lanes share at the end run in whichever env is free, so
    those few can differ between two runs of the same command. ``workers=1`` is fully reproducible.

    Returns the task reports, the kept attempts (as the replay path gives them) and the frames recorded.
    """
    scheduler = ChunkScheduler(suite, task_ids, names, episodes_per_task, max_attempts_factor, seed, image_size,
                               max_steps, work, progress, render_size)
    drawn_total = scheduler.run(max(1, workers))
    reports, kept = [], []
    for task_id in task_ids:
        search = scheduler.searches[task_id]
        attempts = search.kept_attempts()
        successes = [attempt for attempt in attempts if attempt.success]
        progress.shrink(episodes_per_task - len(successes))
        reports.append(task_report(search.name, attempts))
        kept += [(task_id, search.name, attempt, InlineFuture(0)) for attempt in successes]  # written already
    return reports, kept, drawn_total
