"""LIBERO trials in one process: one env at a time (:func:`run_trial`), or several envs of a task stepped together
with their observations decoded as one batch (:func:`run_batch`, ``c2c eval libero --envs-per-worker N``).
:class:`TrialRunner` runs a task's trials either way and keeps its envs between calls for the same task; it is
what :func:`c2c.eval.libero_eval.evaluate_libero` and its worker processes use.

Side by side: the trials of a group start together (each env resets to its own init state and takes the protocol's
settling steps), and whenever some of them have no queued action left, their observations are stacked and decoded
in one ``policy.generate`` call; each env then executes its own row for ``replan_every`` steps (plan caching as
``select_action`` does it, per env). Step limits, success checks and videos stay per env, and a finished trial
drops out of later batches. With greedy decoding the trials are the ones run one at a time
(tests/test_libero_batched.py). Sampled decoding draws from one torch RNG per group (seeded from the group's
first trial), so sampled trials reproduce for a given ``envs_per_worker`` but differ from one at a time. In a
record, ``seconds`` is the time from the group's start to the trial's end and ``inference_seconds`` the trial's
share of the batched decodes (each decode's time split evenly among its rows).

Fast-drawing envs of a task draw with one renderer (:meth:`~c2c.envs.libero_env.LiberoEnv.share_drawing`): a
process keeps one live renderer, which the envs would otherwise remake at every switch.

Both runners draw only the observations that are read (``env.step(render=...)``; only fast-drawing envs can skip,
robosuite's cameras draw inside its step): every step of a trial recorded as video, else the steps before the
policy decodes a new chunk for that env (``policy.needs_observation`` one at a time, an empty queue of the
:class:`~c2c.eval.batch_decoding.BatchDecoder` side by side; a policy that does not say reads every observation),
not the last step of a trial. The records are the same as when every step is drawn (``render_every_step``, for
benchmarks; tests/test_libero_batched.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from c2c.envs.libero_env import CONTROL_HZ
from c2c.eval.batch_decoding import BatchDecoder


def trial_seed(seed: int, task_id: int, trial: int) -> int:
    """The torch seed of a trial (of a group's first trial when trials run side by side)."""
    return int(np.random.SeedSequence([seed, task_id, trial]).generate_state(1)[0])


def _caption(env: Any, trial: int, success: bool) -> str:
    return (f"{env.suite} task {env.task_id} trial {trial} step {env.steps}/{env.max_steps}"
            + ("  SUCCESS" if success else ""))


def _video(env: Any, path: Path | None) -> Any:
    if path is None:
        return None
    from c2c.eval.plotting import EpisodeVideo

    return EpisodeVideo(path, cameras=len(env.cameras), image_size=env.image_size, fps=CONTROL_HZ, plan_panel=False)


def _record(env: Any, trial: int, success: bool, seconds: float, inference: float, path: Path | None) -> dict:
    return {
        "trial": trial, "init_state": trial, "success": bool(success), "steps": env.steps,
        "seconds": round(seconds, 3), "inference_seconds": round(inference, 3),
        "video": None if path is None else f"videos/{path.name}",
    }


def must_draw(env: Any, video: Any, read_next: bool, render_every_step: bool) -> bool:
    """Whether ``env``'s next step must draw its observation: when a video records it, when every step is drawn,
    or when ``read_next`` (the policy decodes a new chunk from it) and the step is not the trial's last."""
    return video is not None or render_every_step or (bool(read_next) and env.steps + 1 < env.max_steps)


def run_trial(env: Any, policy: Any, trial: int, seed: int, video_path: Path | None = None,
              render_every_step: bool = False) -> dict[str, Any]:
    """One episode from init state ``trial``; returns its record (success, steps, seconds, inference seconds).

    Only the observations the policy or the video reads are drawn (see the module docstring); ``render_every_step``
    draws them all."""
    import torch

    from c2c.constants import image_key

    started = time.perf_counter()
    inference = 0.0
    video = _video(env, video_path)
    try:
        with torch.inference_mode():
            torch.manual_seed(trial_seed(seed, env.task_id, trial))
            obs = env.reset(trial)
            policy.reset()
            success = done = False
            while True:
                if video is not None:
                    video.add([obs[image_key(camera)] for camera in env.cameras], None, _caption(env, trial, success))
                if done:
                    break
                tick = time.perf_counter()
                action = policy.select_action(obs)
                inference += time.perf_counter() - tick
                reads = getattr(policy, "needs_observation", True)  # a remote policy reads every observation
                obs, success, done = env.step(action, render=must_draw(env, video, reads, render_every_step))
        if video is not None:
            video.close()
    except BaseException:
        if video is not None:
            video.discard()
        raise
    return _record(env, trial, success, time.perf_counter() - started, inference, video_path)


def run_batch(envs: Sequence[Any], policy: Any, trials: Sequence[int], seed: int,
              video_paths: Sequence[Path | None], render_every_step: bool = False) -> list[dict[str, Any]]:
    """Trials ``trials`` of one task side by side, trial ``k`` in ``envs[k]``; their records in trial order.

    An env draws the observations its video or the next batched decode reads (the decoder fills the running envs
    whose queue is empty); ``render_every_step`` draws them all."""
    import torch

    from c2c.constants import image_key

    count = len(trials)
    started = time.perf_counter()
    videos = [_video(env, path) for env, path in zip(envs, video_paths)]
    decoder = BatchDecoder(policy, count)
    success, done, records = [False] * count, [False] * count, [None] * count
    try:
        with torch.inference_mode():
            torch.manual_seed(trial_seed(seed, envs[0].task_id, trials[0]))
            obs = [env.reset(trial) for env, trial in zip(envs, trials)]
            while any(record is None for record in records):
                running = [i for i in range(count) if records[i] is None]
                for i in running:
                    if videos[i] is not None:
                        videos[i].add([obs[i][image_key(camera)] for camera in envs[i].cameras], None,
                                      _caption(envs[i], trials[i], success[i]))
                    if done[i]:
                        if videos[i] is not None:
                            videos[i].close()
                        records[i] = _record(envs[i], trials[i], success[i], time.perf_counter() - started,
                                             decoder.inference[i], video_paths[i])
                decoder.fill([i for i in running if not done[i]], obs)
                for i in running:
                    if not done[i]:
                        action = decoder.queues[i].popleft()
                        drawn = must_draw(envs[i], videos[i], not decoder.queues[i], render_every_step)
                        obs[i], success[i], done[i] = envs[i].step(action, render=drawn)
    except BaseException:
        for video in videos:
            if video is not None:
                video.discard()
        raise
    return records


class TrialRunner:
    """Runs trials of one task at a time in this process, ``envs_per_worker`` of them side by side (1: one at a
    time, :func:`run_trial`); keeps the envs of the last task until a call for another task or :meth:`close`.

    ``make_env(task_id)`` makes an env of the task; ``video_path(task_id, trial)`` says where a trial's video goes
    (None: no video). ``render_every_step``: draw every observation, also those nobody reads (benchmarks).
    """

    def __init__(self, policy: Any, make_env: Callable[[int], Any], seed: int, envs_per_worker: int,
                 video_path: Callable[[int, int], Path | None], render_every_step: bool = False) -> None:
        self.policy, self.make_env, self.seed = policy, make_env, seed
        self.envs_per_worker, self.video_path = int(envs_per_worker), video_path
        self.render_every_step = bool(render_every_step)
        self.envs: list[Any] = []

    def _envs(self, task_id: int, count: int) -> list[Any]:
        if self.envs and self.envs[0].task_id != task_id:
            self.close()
        while len(self.envs) < count:
            env = self.make_env(task_id)
            if self.envs and hasattr(env, "share_drawing"):
                env.share_drawing(self.envs[0])
            self.envs.append(env)
        return self.envs[:count]

    def run(self, task_id: int, trials: Sequence[int],
            on_record: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
        """The records of ``trials`` of task ``task_id``, in trial order; ``on_record`` gets each group's records
        as the group finishes."""
        size = self.envs_per_worker
        records: list[dict[str, Any]] = []
        for start in range(0, len(trials), size):
            group = list(trials[start:start + size])
            envs = self._envs(task_id, len(group))
            paths = [self.video_path(task_id, trial) for trial in group]
            if size == 1:
                done = [run_trial(envs[0], self.policy, group[0], self.seed, paths[0], self.render_every_step)]
            else:
                done = run_batch(envs, self.policy, group, self.seed, paths, self.render_every_step)
            for record in done:
                records.append(record)
                if on_record is not None:
                    on_record(record)
        return records

    def close(self) -> None:
        for env in reversed(self.envs):  # the first one made the shared drawing
            env.close()
        self.envs = []
