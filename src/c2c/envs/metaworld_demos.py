"""Scripted Meta-World demonstrations written as a LeRobot v3 dataset; interrupted runs resume.

Example::

    report = generate_metaworld_demos(tasks="mt10", episodes_per_task=5, image_size=96,
                                      cameras=["corner2", "gripperPOV"], seed=0, out=Path("data/mw10"))
    print(report.summary())

How an episode is made:

1. Search, without rendering (the simulation alone costs about 1 ms a step). Attempt ``a`` of a task uses the
   placement seed :func:`placement_seed` ``(seed, task, a)``. Metaworld's scripted expert acts until the first
   success and then :data:`SUCCESS_TAIL_STEPS` more steps (so a policy also sees the goal being held), or until
   ``max_steps``. Failed attempts are dropped; a task stops after ``episodes_per_task`` successes or
   ``episodes_per_task * max_attempts_factor`` attempts. Every attempted seed is recorded, so evaluation can use
   other placements.
2. Record. Each kept episode's actions are replayed from the same placement with the cameras on, in worker
   processes (one renderer each). MuJoCo replays bit for bit here, which is checked: the digest of the replayed
   39-dim states must equal the search's (measured on all 50 tasks), else the run stops with an error.
3. Write. Episodes go into the dataset task by task in attempt order, with :class:`LeRobotWriter`, atomically.

Cache (:mod:`c2c.envs.demos.cache`): ``<out.parent>/.<out.name>.work/`` holds ``settings.json``, and per task ``attempts.json`` (every attempt's
seed and outcome) and one ``episode-<attempt>.npz`` per recorded episode. A rerun of the same command skips
what is there; asking for more episodes (with ``overwrite``) reuses the recorded ones. The cache is kept after
the dataset is written; delete it when the dataset no longer needs extending.
"""


from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from c2c.data.episodes import Episode
from c2c.envs.demos.cache import Attempt, WorkDir, directory_bytes, save_episode_arrays
from c2c.envs.demos.metaworld_rollouts import SUCCESS_TAIL_STEPS, placement_seed, replay_with_cameras, run_expert
from c2c.envs.demos.report import GenerationReport, Progress, TaskReport, check_values, report_existing, task_report
from c2c.envs.demos.workers import ProcessEnv, RecordPool, default_workers
from c2c.envs.metaworld_env import (
    ACTION_NAMES, CONTROL_HZ, MAX_EPISODE_STEPS, STATE_NAMES, MetaWorldEnv, check_cameras, mesh_cell_size,
)
from c2c.envs.metaworld_tasks import instruction, resolve_tasks
from c2c.errors import C2CError, ConfigError

WORK_FORMAT = 1  # version of the cache layout


# ---------------------------------------------------------------------------------------------------------------
# Recording, in this process or in render processes.


@dataclass(frozen=True)
class RecordJob:
    """One kept episode to render into the cache (picklable, for a render process)."""

    task: str
    attempt: int
    seed: int
    actions: np.ndarray  # (T, 4) float32, executed
    labels: np.ndarray | None  # (T, 4) float32 to record instead (noise injection), else None
    digest: str
    cameras: tuple[str, ...]
    image_size: int
    max_steps: int
    fast_drawing: bool
    path: Path

    @property
    def frames(self) -> int:
        return len(self.actions)


_worker_env = ProcessEnv()  # a process keeps one env (and so one renderer) at a time


def record_episode(job: RecordJob) -> tuple[str, int, int]:
    """Render and cache one episode; returns (task, attempt, frames)."""
    env = _worker_env.get((job.task, job.cameras, job.image_size, job.max_steps), lambda: MetaWorldEnv(
        job.task, cameras=job.cameras, image_size=job.image_size, max_steps=job.max_steps,
        fast_drawing=job.fast_drawing,
    ))
    arrays = replay_with_cameras(env, job.seed, job.actions, job.digest, job.labels)
    save_episode_arrays(job.path, arrays)
    return job.task, job.attempt, len(job.actions)


def close_worker_env() -> None:
    """Release the process's env (and its renderer)."""
    _worker_env.close()


def load_episode(work: WorkDir, task: str, attempt: Attempt, cameras: tuple[str, ...]) -> Episode:
    """The recorded episode of ``attempt`` of ``task`` from the cache, as the dataset takes it."""
    with np.load(work.episode_path(task, attempt.attempt)) as arrays:
        images = {camera: arrays[camera] for camera in cameras}
        return Episode(
            actions=arrays["actions"], states=arrays["states"], images=images, task=instruction(task),
            metadata={"env": task, "seed": attempt.seed},
        )


# ---------------------------------------------------------------------------------------------------------------
# Generation.


def generate_metaworld_demos(
    *,
    tasks: str | list[str],
    episodes_per_task: int,
    image_size: int,
    cameras: str | list[str] | tuple[str, ...],
    seed: int,
    out: Path,
    max_steps: int = MAX_EPISODE_STEPS,
    max_attempts_factor: int = 4,
    overwrite: bool = False,
    show_progress: bool = True,
    workers: int | None = None,
    fast_drawing: bool = True,
    action_noise: float = 0.0,
) -> GenerationReport:
    """Make ``episodes_per_task`` successful scripted demonstrations per task into a LeRobot dataset at ``out``.

    ``workers``: processes that render (default: the usable CPUs; 1 renders in this process).
    ``fast_drawing``: see :class:`c2c.envs.metaworld_env.MetaWorldEnv`.
    ``action_noise``: noise injected into the executed actions (see :func:`run_expert`; 0: none).
    See the module docstring for the procedure and the cache.
    """
    from c2c.data.lerobot import LeRobotDataset, LeRobotWriter, is_complete_dataset

    started = time.perf_counter()
    task_names = resolve_tasks(tasks)
    cameras = check_cameras(cameras.split(",") if isinstance(cameras, str) else cameras)
    if not cameras:
        raise ConfigError("at least one camera is needed (e.g. corner2,gripperPOV)")
    check_values([
        ("episodes_per_task", episodes_per_task, episodes_per_task >= 1, "at least 1"),
        ("image_size", image_size, 8 <= image_size <= 1024, "between 8 and 1024"),
        ("seed", seed, seed >= 0, "non-negative"),
        ("max_steps", max_steps, 1 <= max_steps <= MAX_EPISODE_STEPS, f"in 1..{MAX_EPISODE_STEPS} (metaworld's limit)"),
        ("max_attempts_factor", max_attempts_factor, max_attempts_factor >= 1, "at least 1"),
    ])
    action_noise = float(action_noise)
    if not 0.0 <= action_noise <= 1.0:
        raise ConfigError(f"action_noise must lie in [0, 1] (the action range is [-1, 1]), got {action_noise}")
    out = Path(out)
    settings = {  # what a recorded episode depends on: the cache is valid for these
        "cache_format": WORK_FORMAT, "seed": seed, "image_size": image_size, "cameras": list(cameras),
        "max_steps": max_steps, "success_tail_steps": SUCCESS_TAIL_STEPS, "fast_drawing": fast_drawing,
    }
    if action_noise > 0:  # only then, so that caches and datasets made before the option stay valid
        settings["action_noise"] = action_noise
    request = {
        "generator": "metaworld", "tasks": task_names, "episodes_per_task": episodes_per_task,
        "max_attempts_factor": max_attempts_factor, **settings,
    }

    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file, not a directory")
    if is_complete_dataset(out) and not overwrite:
        existing = LeRobotDataset(out).extra_info
        if (all(existing.get(key) == value for key, value in request.items())
                and existing.get("action_noise", 0.0) == action_noise):
            return report_existing(out, existing, started)
        raise ConfigError(
            f"{out} already holds a dataset made with other settings; pass --overwrite to replace it (recorded "
            f"episodes in the cache are reused where the settings allow) or choose another --out"
        )
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise ConfigError(f"--out {out} exists and is not empty; pass --overwrite or choose another --out")

    run = _Generation(WorkDir(out, settings, overwrite=overwrite), cameras, fast_drawing, workers, show_progress,
                      total_episodes=len(task_names) * episodes_per_task)
    try:
        with LeRobotWriter(
            out, fps=CONTROL_HZ, robot_type="sawyer", state_names=list(STATE_NAMES),
            action_names=list(ACTION_NAMES), overwrite=overwrite,
        ) as writer:
            run.writer = writer
            reports = [
                run.search_task(task, episodes_per_task, episodes_per_task * max_attempts_factor, max_steps)
                for task in task_names
            ]
            run.collect(block=True)
            if not run.kept:
                raise C2CError(f"the scripted experts succeeded on none of their attempts ({', '.join(task_names)})")
            extra_info = {
                **request, "control_hz": CONTROL_HZ,
                "mesh_cell_m": mesh_cell_size(image_size) if fast_drawing else None,
                "expert": {report.task: report.to_json() for report in reports},
            }
            writer.finalize(extra_info=extra_info)
    except BaseException:
        run.close(interrupted=True)
        raise
    run.close()
    return GenerationReport(
        out=out, work_dir=run.work.root, tasks=reports, seconds=time.perf_counter() - started,
        frames_recorded=run.frames_recorded, dataset_bytes=directory_bytes(out), work_bytes=run.work.size_bytes(),
    )


class _Generation:
    """One run's state: search tasks, hand successes to the recorder, write finished episodes in dataset order."""

    def __init__(
        self, work: WorkDir, cameras: tuple[str, ...], fast_drawing: bool, workers: int | None, show_progress: bool,
        *, total_episodes: int,
    ) -> None:
        self.work, self.cameras, self.fast_drawing = work, cameras, fast_drawing
        self.progress = Progress(total_episodes, show_progress, "metaworld demos")
        self.recorder = RecordPool(default_workers(workers, total_episodes), record_episode, close_worker_env)
        self.writer: Any = None  # the LeRobotWriter, set once it is open
        self.kept: list[tuple[str, Attempt]] = []  # dataset order: task by task, attempts in order
        self.recorded = work.recorded_episodes()  # (task, attempt) of the episodes in the cache
        self.frames_recorded = 0  # by this run
        self._written = 0

    def collect(self, block: bool = False) -> None:
        """Take finished recordings; add every episode whose predecessors are all written to the dataset."""
        for task, attempt, frames in self.recorder.poll(block=block):
            self.recorded.add((task, attempt))
            self.frames_recorded += frames
            self.progress.advance()
        while self._written < len(self.kept):
            task, attempt = self.kept[self._written]
            if (task, attempt.attempt) not in self.recorded:
                break
            self.writer.add_episode(load_episode(self.work, task, attempt, self.cameras))
            self._written += 1

    def search_task(self, task: str, episodes: int, max_attempts: int, max_steps: int) -> TaskReport:
        """Attempts until ``episodes`` successes or ``max_attempts``; new successes go to the recorder."""
        cached = self.work.load_attempts(task)
        attempts: list[Attempt] = []
        successes = 0
        env: MetaWorldEnv | None = None  # made only when an attempt must be rolled out
        try:
            for index in range(max_attempts):
                if successes == episodes:
                    break
                outcome = cached.get(index)
                if outcome is None or (outcome.success and (task, index) not in self.recorded):
                    env = env or MetaWorldEnv(task, cameras=(), max_steps=max_steps)
                    outcome = self._roll_out(env, index, outcome)
                elif outcome.success:
                    self.progress.advance()  # recorded by an earlier run
                if index not in cached:
                    cached[index] = outcome
                    self.work.save_attempts(task, cached)
                attempts.append(outcome)
                successes += outcome.success
                self.progress.show(task, successes, len(attempts))
                self.collect()
        finally:
            if env is not None:
                env.close()
        kept = [attempt for attempt in attempts if attempt.success]
        self.kept.extend((task, attempt) for attempt in kept)
        self.progress.shrink(episodes - len(kept))
        self.collect()
        return task_report(task, attempts)

    def _roll_out(self, env: MetaWorldEnv, index: int, cached: Attempt | None) -> Attempt:
        seed = placement_seed(self.work.settings["seed"], env.task, index)
        noise = float(self.work.settings.get("action_noise", 0.0))
        labels, actions, outcome = run_expert(env, seed, action_noise=noise)
        outcome.attempt = index
        if cached is not None and cached != outcome:
            raise C2CError(f"{env.task} attempt {index}: the rollout differs from the one cached in {self.work.root}")
        if outcome.success:
            self.recorder.submit(RecordJob(
                env.task, index, seed, actions, labels if noise > 0 else None, outcome.digest, self.cameras,
                self.work.settings["image_size"], env.max_steps, self.fast_drawing,
                self.work.episode_path(env.task, index),
            ))
        return outcome

    def close(self, interrupted: bool = False) -> None:
        self.recorder.close(terminate=interrupted)
        self.progress.close()
