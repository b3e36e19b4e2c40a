"""Scripted LIBERO demonstrations (libero_object, libero_spatial, libero_goal, libero_10) as a LeRobot v3 dataset.

Example::

    report = generate_libero_demos(suite="libero_object", tasks="all", episodes_per_task=5, image_size=128,
                                   seed=0, out=Path("data/libero_object_demos"))
    print(report.summary())

How an episode is made:

1. Search, without cameras (about 20 ms a step). Attempt ``a`` of a task resets the env to its own random object
   placement under :func:`~c2c.envs.demos.libero_rollouts.placement_seed` ``(seed, suite, task, a)`` (LIBERO's numpy RNG is seeded, then
   ``env.reset()``; see :meth:`LiberoEnv.reset_random`), takes the settling steps, and lets
   the expert of :func:`~c2c.envs.libero_skills.make_expert` act until LIBERO's own success check passes or the
   suite's step limit (tasks no expert does raise :class:`ConfigError` naming them, see :data:`~c2c.envs.demos.libero_tasks.UNSUPPORTED_TASKS`).
   Failed attempts are dropped; a task stops after ``episodes_per_task`` successes or
   ``episodes_per_task * max_attempts_factor`` attempts. Every attempted seed is recorded. The official init states
   are never used: they are what policies are evaluated on (asking for them raises :class:`ConfigError`).
2. Record. Each kept episode is rendered with both cameras on (agentview -> ``observation.images.image``, wrist
   -> ``observation.images.image2``, upright), in worker processes: after a reset under the same seed (the same
   scene), each recorded simulator state is set and its action taken again (see :func:`~c2c.envs.demos.libero_rollouts.render_rollout`). Pure
   replay of the actions is not used: the env with cameras resets to a state that differs from the camera-less
   one in the last bits (about 1e-14, measured), so it is not bit-for-bit reproducible. Every rendered frame's
   ``observation.state`` is checked against the search's (within 1e-5) and the last step must pass LIBERO's
   success check again. This is the path of ``fast_drawing=False`` (robosuite's cameras).
   With ``fast_drawing`` (the default: our renderer on simplified meshes, see :class:`~c2c.envs.libero_env.LiberoEnv`)
   the search env itself draws both cameras at every step (it has no robosuite renderer, so its rollouts are the
   camera-less ones bit for bit), successful episodes are written as they finish and failed ones dropped: no
   replay. Chunks of attempts then run in parallel worker processes (:mod:`c2c.envs.demos.libero_search`).
3. Write. Episodes go into the dataset task by task in attempt order, with :class:`LeRobotWriter`, atomically;
   ``meta/info.json["c2c"]`` holds the request, ``generator: "libero"``, ``suite`` and ``expert[task_name] =
   {attempts, successes, success_rate, episodes, frames, seeds_attempted}``.

Image size: the cameras are drawn at ``image_size`` px, or at ``render_size`` px and resized to ``image_size`` (PIL
bilinear, :func:`~c2c.envs.libero_env.upright_image`), as robosuite draws LIBERO's own datasets at 128 px and
OpenVLA's regenerated ones (which openpi's and LeRobot's LIBERO datasets come from) at 256 px. ``render_size`` is
recorded in ``meta/info.json["c2c"]`` when given, and ``c2c eval libero`` draws at it by default.

Cache: as for Meta-World (:class:`c2c.envs.demos.cache.WorkDir`): ``<out.parent>/.<out.name>.work/`` keeps
every attempt's outcome and every recorded episode, so a rerun of the same command resumes.
"""


from __future__ import annotations

import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from c2c.data.episodes import Episode
from c2c.envs.demos.cache import Attempt, WorkDir, directory_bytes, save_episode_arrays
from c2c.envs.demos.libero_rollouts import Rollout, placement_seed, render_rollout, run_expert, sim_state
from c2c.envs.demos.libero_search import search_while_drawing
from c2c.envs.demos.libero_tasks import (
    EXPERT_SUITES, check_expert_tasks, check_placements, expert_task_ids, parse_task_ids,
)
from c2c.envs.demos.report import GenerationReport, Progress, TaskReport, check_values, report_existing, task_report
from c2c.envs.demos.workers import InlineFuture, ProcessEnv, default_workers, spawn_context
from c2c.envs.libero_env import (
    ACTION_NAMES, CONTROL_HZ, DEFAULT_CAMERAS, STATE_NAMES, LiberoEnv, check_suite, suite_tasks,
)
from c2c.errors import C2CError, ConfigError

# The entry points, and the names the tests and benchmarks use, importable from here.
__all__ = ["check_expert_tasks", "check_placements", "close_worker_env", "expert_task_ids", "generate_libero_demos",
           "parse_task_ids", "placement_seed", "record_episode", "run_expert", "sim_state"]

WORK_FORMAT = 2  # 2: hopeless attempts stop early (their outcomes are shorter than format 1's)

_worker_env = ProcessEnv()  # a render process keeps its env between jobs of one task


def record_episode(suite: str, task_id: int, image_size: int, rollout: Rollout, path: str, fast_drawing: bool = True,
                   render_size: int | None = None) -> int:
    """Render one episode into ``path`` (a worker keeps its env between jobs of one task); returns its frames."""
    env = _worker_env.get(
        (suite, task_id, image_size, render_size or image_size, fast_drawing),
        lambda: LiberoEnv(suite, task_id, image_size=image_size, render_size=render_size, cameras=DEFAULT_CAMERAS,
                          fast_drawing=fast_drawing, hard_reset=False))
    save_episode_arrays(Path(path), render_rollout(env, rollout.outcome.seed, rollout))
    return len(rollout.actions)


def close_worker_env() -> None:
    _worker_env.close()


def generate_libero_demos(
    *,
    suite: str,
    tasks: str | list[int],
    episodes_per_task: int,
    image_size: int = 128,
    seed: int = 0,
    out: Path,
    placements: str = "random",
    max_attempts_factor: int = 3,
    max_steps: int | None = None,
    workers: int | None = None,
    overwrite: bool = False,
    show_progress: bool = True,
    fast_drawing: bool = True,
    render_size: int | None = None,
) -> GenerationReport:
    """Make ``episodes_per_task`` successful scripted demonstrations per task into a LeRobot dataset at ``out``.

    ``workers``: processes that share the tasks' attempts with fast drawing, or render the kept episodes without it
    (default: the usable CPUs, at most the episodes; 1 runs in this process and is fully reproducible).
    ``fast_drawing``: draw the cameras with our renderer on simplified meshes (recorded in the dataset; evaluations
    draw the same way), or with robosuite's cameras (False). ``render_size``: draw the cameras at this size and resize
    to ``image_size`` (default: draw at ``image_size``).
    See the module docstring for the procedure.
    """
    from c2c.data.lerobot import LeRobotDataset, LeRobotWriter, is_complete_dataset

    started = time.perf_counter()
    check_placements(placements)
    suite = check_suite(suite)
    if suite not in EXPERT_SUITES:
        raise ConfigError(f"the scripted LIBERO expert covers {', '.join(EXPERT_SUITES)}, not {suite!r}")
    task_ids = parse_task_ids(tasks)
    check_expert_tasks(suite, {task["task_id"]: task["name"] for task in suite_tasks(suite)}, task_ids)
    check_values([
        ("episodes_per_task", episodes_per_task, episodes_per_task >= 1, "at least 1"),
        ("image_size", image_size, 8 <= image_size <= 1024, "between 8 and 1024"),
        ("render_size", render_size, render_size is None or 8 <= render_size <= 1024, "between 8 and 1024"),
        ("seed", seed, seed >= 0, "non-negative"),
        ("max_attempts_factor", max_attempts_factor, max_attempts_factor >= 1, "at least 1"),
    ])
    out = Path(out)
    names = {task["task_id"]: task for task in suite_tasks(suite)}
    settings = {"cache_format": WORK_FORMAT, "suite": suite, "seed": seed, "image_size": image_size,
                "max_steps": max_steps, "placements": placements, "fast_drawing": bool(fast_drawing)}
    if render_size is not None and render_size != image_size:  # absent otherwise: earlier caches stay valid
        settings["render_size"] = int(render_size)
    request = {"generator": "libero", "tasks": task_ids, "episodes_per_task": episodes_per_task,
               "max_attempts_factor": max_attempts_factor, **settings}
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file, not a directory")
    if is_complete_dataset(out) and not overwrite:
        existing = LeRobotDataset(out).extra_info
        if all(existing.get(key) == value for key, value in request.items()):
            return report_existing(out, existing, started)
        raise ConfigError(f"{out} already holds a dataset made with other settings; pass --overwrite to replace it "
                          f"or choose another --out")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise ConfigError(f"--out {out} exists and is not empty; pass --overwrite or choose another --out")

    work = WorkDir(out, settings, overwrite=overwrite)
    workers = default_workers(workers, len(task_ids) * episodes_per_task)
    pool = None
    if workers > 1 and not fast_drawing:
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=spawn_context())
    progress = Progress(len(task_ids) * episodes_per_task, show_progress, f"{suite} demos")
    reports: list[TaskReport] = []
    kept: list[tuple[int, str, Attempt, Any]] = []  # (task id, task name, attempt, future of its recording)
    frames_recorded = 0
    try:
        if fast_drawing:  # the cameras are drawn during the search: no replay, tasks in parallel
            reports, kept, frames_recorded = search_while_drawing(
                suite, task_ids, names, episodes_per_task, max_attempts_factor, seed, image_size, max_steps, work,
                workers, progress, settings.get("render_size"))
        else:
            reports, kept = _search_then_replay(suite, task_ids, names, episodes_per_task, max_attempts_factor, seed,
                                                image_size, max_steps, work, pool, progress,
                                                settings.get("render_size"))
        if not kept:
            raise C2CError(f"the scripted expert succeeded on none of its attempts ({suite} tasks {task_ids})")
        with LeRobotWriter(out, fps=CONTROL_HZ, robot_type="panda", state_names=list(STATE_NAMES),
                           action_names=list(ACTION_NAMES), overwrite=overwrite) as writer:
            for task_id, name, attempt, future in kept:
                frames_recorded += future.result()
                with np.load(work.episode_path(name, attempt.attempt)) as arrays:
                    writer.add_episode(Episode(
                        actions=arrays["actions"], states=arrays["states"],
                        images={camera: arrays[camera] for camera in DEFAULT_CAMERAS},
                        task=names[task_id]["instruction"],
                        metadata={"suite": suite, "task_id": task_id, "env": name, "seed": attempt.seed}))
            writer.finalize(extra_info={
                **request, "control_hz": CONTROL_HZ, "cameras": {"image": "agentview", "image2": "robot0_eye_in_hand"},
                "expert": {report.task: report.to_json() for report in reports},
            })
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        close_worker_env()
        progress.close()
    return GenerationReport(
        out=out, work_dir=work.root, tasks=reports, seconds=time.perf_counter() - started,
        frames_recorded=frames_recorded, dataset_bytes=directory_bytes(out), work_bytes=work.size_bytes(),
    )


def _search_then_replay(suite: str, task_ids: list[int], names: dict[int, dict[str, Any]], episodes_per_task: int,
                        max_attempts_factor: int, seed: int, image_size: int, max_steps: int | None, work: WorkDir,
                        pool: ProcessPoolExecutor | None, progress: Progress, render_size: int | None
                        ) -> tuple[list[TaskReport], list[tuple[int, str, Attempt, Any]]]:
    """The search without cameras, task by task; each kept episode is rendered by robosuite's cameras in ``pool``
    (or in this process) with :func:`record_episode`. Returns the task reports and the kept attempts with the
    futures of their recordings."""
    reports: list[TaskReport] = []
    kept: list[tuple[int, str, Attempt, Any]] = []  # (task id, task name, attempt, future of its recording)
    for task_id in task_ids:
        name = names[task_id]["name"]
        cached = work.load_attempts(name)
        recorded = work.recorded(name)
        attempts: list[Attempt] = []
        env: LiberoEnv | None = None
        try:
            for index in range(episodes_per_task * max_attempts_factor):
                if sum(attempt.success for attempt in attempts) == episodes_per_task:
                    break
                outcome = cached.get(index)
                future: Any = None
                if outcome is None or (outcome.success and index not in recorded):
                    env = env or LiberoEnv(suite, task_id, cameras=(), max_steps=max_steps, hard_reset=False)
                    rollout = run_expert(env, placement_seed(seed, suite, name, index))
                    outcome = rollout.outcome  # redone: replaces a cached one
                    outcome.attempt = index
                    if outcome.success:
                        job = (suite, task_id, image_size, rollout, str(work.episode_path(name, index)),
                               False, render_size)
                        future = pool.submit(record_episode, *job) if pool else InlineFuture(record_episode(*job))
                elif outcome.success:
                    future = InlineFuture(0)  # recorded by an earlier run
                if cached.get(index) != outcome:
                    cached[index] = outcome
                    work.save_attempts(name, cached)
                attempts.append(outcome)
                if outcome.success:
                    kept.append((task_id, name, outcome, future))
                    progress.advance()
                progress.show(f"task {task_id}", sum(attempt.success for attempt in attempts), len(attempts))
        finally:
            if env is not None:
                env.close()
        progress.shrink(episodes_per_task - sum(attempt.success for attempt in attempts))
        reports.append(task_report(name, attempts))
    return reports, kept
