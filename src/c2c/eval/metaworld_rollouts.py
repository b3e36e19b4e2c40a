"""Meta-World rollouts of a policy: episodes one at a time or side by side (:mod:`c2c.eval.metaworld_batch`), in
this process or in spawned worker processes, with the progress of every episode (closest distances to object and
goal). :func:`c2c.eval.metaworld_eval.evaluate_metaworld` checks the request and writes the results; this module
runs the episodes.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from c2c.eval.workers import Progress, WorkerPool
from c2c.policy import load_policy

VIDEO_FPS = 40  # half of the 80 Hz control rate: slow enough to follow the gripper


# Meta-World's (39,) state (partially_observable off): hand xyz, gripper, first object xyz + quaternion, second
# object, the previous frame's 18 values, goal xyz.
HAND, OBJECT, GOAL = slice(0, 3), slice(4, 7), slice(36, 39)
MOVED_CM = 2.0  # an object displaced at least this far counts as moved (grasped, pushed, pulled or pressed)
PROGRESS_KEYS = ("hand_to_object_cm", "object_moved_cm", "object_to_goal_cm", "hand_to_goal_cm")


class EpisodeProgress:
    """How far an episode got: closest hand-object, hand-goal and object-goal distances and the object's largest
    displacement, in cm, from Meta-World's state after every step (the reset state included)."""

    def __init__(self, raw_state: Any) -> None:
        import numpy as np

        self._start = np.asarray(raw_state[OBJECT], dtype=np.float64).copy()
        self._best = {key: math.inf for key in PROGRESS_KEYS}
        self._best["object_moved_cm"] = 0.0
        self.update(raw_state)

    def update(self, raw_state: Any) -> None:
        import numpy as np

        hand, obj, goal = (np.asarray(raw_state[part], dtype=np.float64) for part in (HAND, OBJECT, GOAL))
        best = self._best
        best["hand_to_object_cm"] = min(best["hand_to_object_cm"], 100 * float(np.linalg.norm(hand - obj)))
        best["hand_to_goal_cm"] = min(best["hand_to_goal_cm"], 100 * float(np.linalg.norm(hand - goal)))
        best["object_to_goal_cm"] = min(best["object_to_goal_cm"], 100 * float(np.linalg.norm(obj - goal)))
        best["object_moved_cm"] = max(best["object_moved_cm"], 100 * float(np.linalg.norm(obj - self._start)))

    def result(self) -> dict[str, float]:
        return {key: round(value, 1) for key, value in self._best.items()}


@dataclass(frozen=True)
class Job:
    task: str
    episode: int  # index within the task
    seed: int  # placement seed
    video: Path | None  # where to write this episode's video


@dataclass(frozen=True)
class Settings:
    """What every process needs to load the policy and make envs (picklable)."""

    policy_dir: str
    replan_every: int | None  # override of the policy's config.replan_every
    max_steps: int
    cameras: tuple[str, ...]
    image_size: int
    fast_drawing: bool  # render as the training demonstrations were rendered
    render_size: int | None = None  # the training images' size: render at it, resize as training did (None: policy's)
    envs_per_worker: int = 1  # environments a process steps together, decoding their observations as one batch
    snap_gripper: bool = False  # round the gripper effort to the demonstrations' {-1, 0, +1} (an option, off)
    render_every_step: bool = False  # draw even the steps whose images no one reads (benchmarks of drawing cost)


def must_render(policy: Any, settings: Settings, video: Any) -> bool:
    """Whether the next observation needs its images: when a video records them, or when the policy reads them
    next (it predicts a new chunk; a policy that does not say reads every observation). Skipping the others leaves
    every decision and record unchanged (tests/test_eval_batched.py) and saves most of the drawing."""
    return video is not None or settings.render_every_step or bool(getattr(policy, "needs_observation", True))


GRIPPER_DIM = 3  # Meta-World's action: hand xyz deltas, then the gripper effort


def executed_action(action: Any, settings: Settings) -> Any:
    """The action sent to the env: the policy's, or with ``snap_gripper`` its gripper effort rounded to the
    scripted demonstrations' values {-1, 0, +1} (the decoded chunk is continuous; a half-closed gripper can let the
    object slip)."""
    if not settings.snap_gripper:
        return action
    import numpy as np

    snapped = np.array(action, dtype=np.float32, copy=True)
    snapped[..., GRIPPER_DIM] = np.clip(np.rint(snapped[..., GRIPPER_DIM]), -1.0, 1.0)
    return snapped


def add_decode_counts(results: dict[str, Any], records: list[dict[str, Any]]) -> None:
    """Sum the records' ``decode_counts`` per task (``results["tasks"][task]["decoding"]``) and overall
    (``results["decoding"]``); nothing when the policy counts none."""
    for scope, members in [(results["tasks"][task], [r for r in records if r["task"] == task])
                           for task in results["tasks"]] + [(results, records)]:
        counts = [record["decode_counts"] for record in members if "decode_counts" in record]
        if counts:
            scope["decoding"] = {key: sum(c.get(key, 0) for c in counts) for key in counts[0]}


class EpisodeRunner:
    """Runs episodes of one policy; keeps one env at a time (a process has one renderer)."""

    def __init__(self, policy: Any, settings: Settings) -> None:
        self.policy, self.settings = policy, settings
        self.env: Any = None
        self.batch: Any = None  # the BatchRunner of envs_per_worker > 1

    def _env(self, task: str) -> Any:
        from c2c.envs.metaworld_env import MetaWorldEnv

        if self.env is None or self.env.task != task:
            self.close()
            self.env = MetaWorldEnv(task, cameras=self.settings.cameras,
                                    image_size=self.settings.render_size or self.settings.image_size,
                                    max_steps=self.settings.max_steps, fast_drawing=self.settings.fast_drawing)
        return self.env

    def run(self, job: Job) -> dict[str, Any]:
        """One episode; returns its record (``seconds`` leaves out the video's decodes and encoding)."""
        import torch

        from c2c.constants import image_key
        from c2c.eval.plotting import EpisodeVideo

        env, policy, max_steps = self._env(job.task), self.policy, self.settings.max_steps
        has_plan = policy.config.has_plan
        started = time.perf_counter()  # after making the env: a one-off cost per task and process
        video_seconds = 0.0
        video = None
        if job.video is not None:
            video = EpisodeVideo(job.video, cameras=len(env.cameras), image_size=env.image_size, fps=VIDEO_FPS,
                                 plan_panel=has_plan)
        plan, plan_of = None, None
        try:
            with torch.inference_mode():
                obs = env.reset(job.seed)
                progress = EpisodeProgress(env.raw_state)
                policy.reset()
                success = False
                while True:
                    finished = success or env.steps >= max_steps
                    action = None if finished else policy.select_action(self._as_trained(obs))
                    if video is not None:
                        video_started = time.perf_counter()
                        if has_plan and not finished and policy.last_plan_fresh and policy.last_chunk is not plan_of:
                            plan_of = policy.last_chunk  # the plan the policy just generated, decoded only to draw
                            plan = policy.decode_plan(plan_of)[0]
                        caption = (f"{job.task}  ep {job.episode}  seed {job.seed}  step {env.steps}/{max_steps}"
                                   + ("  SUCCESS" if success else ""))
                        video.add([obs[image_key(camera)] for camera in env.cameras], plan, caption)
                        video_seconds += time.perf_counter() - video_started
                    if finished:
                        break
                    obs, success, _ = env.step(executed_action(action, self.settings),
                                               render=must_render(policy, self.settings, video))
                    progress.update(env.raw_state)
            if video is not None:
                video_started = time.perf_counter()
                video.close()
                video_seconds += time.perf_counter() - video_started
        except BaseException:
            if video is not None:
                video.discard()
            raise
        return {
            "task": job.task, "episode": job.episode, "seed": job.seed, "success": success, "steps": env.steps,
            "seconds": round(time.perf_counter() - started - video_seconds, 4),
            "video": None if job.video is None else f"videos/{job.video.name}", "progress": progress.result(),
        }

    def _as_trained(self, obs: dict[str, Any]) -> dict[str, Any]:
        """Images rendered at the training data's size, resized to the policy's with training's own function."""
        size = self.settings.image_size
        if not self.settings.render_size or self.settings.render_size == size:
            return obs
        from c2c.constants import image_key
        from c2c.data.streaming import resize_frame

        keys = [image_key(camera) for camera in self.settings.cameras]
        return {key: resize_frame(value, size) if key in keys else value for key, value in obs.items()}

    def run_group(self, jobs: list[Job]) -> list[dict[str, Any]]:
        """Episodes of one task: one at a time, or side by side with batched decoding (``envs_per_worker``).

        A policy that counts the chunks its action tokenizer had to repair (``decode_counts``, the fast variant)
        has the group's counts put on the group's first record (``decode_counts``): a task's sum is exact."""
        before = dict(getattr(self.policy, "decode_counts", None) or {})
        if len(jobs) == 1 and self.settings.envs_per_worker == 1:
            records = [self.run(jobs[0])]
        else:
            from c2c.eval.metaworld_batch import BatchRunner

            if self.batch is None:
                self.close()  # the process's one renderer goes to the batch's environments
                self.batch = BatchRunner(self.policy, self.settings, self._as_trained)
            records = self.batch.run(jobs)
        after = getattr(self.policy, "decode_counts", None)
        if after is not None and records:
            records[0]["decode_counts"] = {key: int(after[key]) - int(before.get(key, 0)) for key in after}
        return records

    def close(self) -> None:
        if self.env is not None:
            self.env.close()
        self.env = None
        if getattr(self, "batch", None) is not None:
            self.batch.close()
            self.batch = None


def load_episode_runner(settings: Settings) -> EpisodeRunner:
    """A worker process's runner (:class:`c2c.eval.workers.WorkerPool`): the policy loaded once, its envs."""
    return EpisodeRunner(load_policy(settings.policy_dir, replan_every=settings.replan_every), settings)


def usable_cpus() -> int:
    from c2c.utils.threads import usable_cpus

    return usable_cpus()


def run_jobs(jobs: list[Job], settings: Settings, workers: int, policy: Any, show_progress: bool,
              on_record: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
    """Every job's record, in job order; ``on_record`` gets each one as its episode finishes."""
    progress = Progress(len(jobs), show_progress, on_record, desc="metaworld eval")
    records: list[dict[str, Any]] = []
    try:
        if workers == 1:
            records = _run_inline(jobs, settings, policy, progress)
        else:
            from c2c.eval.metaworld_batch import group_jobs

            with WorkerPool(workers, load_episode_runner, settings) as pool:
                for record in pool.run(group_jobs(jobs, settings.envs_per_worker)):
                    records.append(record)
                    progress.advance(record)
    finally:
        progress.close()
    order = {(job.task, job.episode): index for index, job in enumerate(jobs)}
    return sorted(records, key=lambda record: order[(record["task"], record["episode"])])


def _run_inline(jobs: list[Job], settings: Settings, policy: Any, progress: Progress) -> list[dict[str, Any]]:
    """Run in this process; a passed-in policy gets its config and train/eval mode back afterwards, the process
    its torch thread count. Episodes run on one torch thread, as in every worker process, so that an evaluation's
    episodes do not depend on its worker count (CPU sums are split by thread)."""
    import torch

    if policy is None:
        policy = load_policy(settings.policy_dir, replan_every=settings.replan_every)
    original, was_training, threads = policy.config, policy.training, torch.get_num_threads()
    if settings.replan_every is not None:
        policy.config = policy.config.replace(replan_every=settings.replan_every)
    policy.eval()
    runner = EpisodeRunner(policy, settings)
    records = []
    torch.set_num_threads(1)
    try:
        from c2c.eval.metaworld_batch import group_jobs

        for group in group_jobs(jobs, settings.envs_per_worker):
            for record in runner.run_group(group):
                records.append(record)
                progress.advance(record)
    finally:
        runner.close()
        policy.config = original
        policy.train(was_training)
        torch.set_num_threads(threads)
    return records
