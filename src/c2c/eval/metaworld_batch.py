"""Several Meta-World environments stepped together, their observations decoded as one batch
(``c2c eval metaworld --envs-per-worker N``).

Episodes of one task start together and replan together (every ``replan_every`` steps), so at each replanning
step the observations of the environments still running are stacked and decoded in one ``policy.generate`` call;
each environment then executes its own row. A finished episode drops out of later batches. Per episode, the record
is the one :class:`~c2c.eval.metaworld_rollouts.EpisodeRunner` writes (success, steps, progress, video), and with
greedy decoding the episodes are the ones stepped one at a time (tests/test_eval_batched.py); ``seconds`` is the
time from the batch's start to the episode's end.

The environments of a batch draw with one renderer: a process keeps one live renderer, and a renderer made for
one task's model draws the other environments of that task (same model file; the states differ) without being
remade at every switch (:meth:`MetaWorldEnv.share_renderer`). An environment draws only the steps whose images
are read: those before a new chunk is decoded for it, and every step of an episode recorded as video.
"""

from __future__ import annotations

import time
from typing import Any

from c2c.eval.batch_decoding import BatchDecoder

VIDEO_FPS = 40  # as the one-at-a-time runner


def group_jobs(jobs: list[Any], size: int) -> list[list[Any]]:
    """Consecutive jobs of the same task in groups of at most ``size`` (job order kept)."""
    groups: list[list[Any]] = []
    for job in jobs:
        if groups and groups[-1][0].task == job.task and len(groups[-1]) < size:
            groups[-1].append(job)
        else:
            groups.append([job])
    return groups


class BatchRunner:
    """Runs groups of episodes of one task side by side; keeps its environments between groups of that task."""

    def __init__(self, policy: Any, settings: Any, as_trained: Any) -> None:
        self.policy, self.settings, self.as_trained = policy, settings, as_trained
        self.envs: list[Any] = []

    def _envs(self, task: str, count: int) -> list[Any]:
        from c2c.envs.metaworld_env import MetaWorldEnv

        if self.envs and self.envs[0].task != task:
            self.close()
        settings = self.settings
        while len(self.envs) < count:
            env = MetaWorldEnv(task, cameras=settings.cameras, image_size=settings.render_size or settings.image_size,
                               max_steps=settings.max_steps, fast_drawing=settings.fast_drawing)
            if self.envs:
                env.share_renderer(self.envs[0])
            self.envs.append(env)
        return self.envs[:count]

    def run(self, jobs: list[Any]) -> list[dict[str, Any]]:
        """One record per job, in job order."""
        import torch

        from c2c.constants import image_key
        from c2c.eval.metaworld_rollouts import EpisodeProgress, executed_action
        from c2c.eval.plotting import EpisodeVideo

        policy, settings = self.policy, self.settings
        envs = self._envs(jobs[0].task, len(jobs))
        has_plan = policy.config.has_plan
        count = len(jobs)
        started = time.perf_counter()
        videos = [None if job.video is None else EpisodeVideo(job.video, cameras=len(env.cameras),
                                                              image_size=env.image_size, fps=VIDEO_FPS,
                                                              plan_panel=has_plan)
                  for job, env in zip(jobs, envs)]
        decoder = BatchDecoder(policy, count, self.as_trained)
        queues = decoder.queues
        shown: list[Any] = [None] * count  # the plan drawn in each video
        success, records = [False] * count, [None] * count
        video_seconds = 0.0
        try:
            with torch.inference_mode():
                obs = [env.reset(job.seed) for env, job in zip(envs, jobs)]
                progress = [EpisodeProgress(env.raw_state) for env in envs]
                while any(record is None for record in records):
                    running = [i for i in range(count) if records[i] is None]
                    finished = {i for i in running if success[i] or envs[i].steps >= settings.max_steps}
                    needing = [i for i in running if i not in finished and not queues[i]]
                    fresh_rows = decoder.fill(needing, obs, decode_plans=any(v is not None for v in videos))
                    for i in running:
                        if videos[i] is not None:
                            video_started = time.perf_counter()
                            if i in fresh_rows:
                                shown[i] = fresh_rows[i]
                            caption = (f"{jobs[i].task}  ep {jobs[i].episode}  seed {jobs[i].seed}  step "
                                       f"{envs[i].steps}/{settings.max_steps}" + ("  SUCCESS" if success[i] else ""))
                            videos[i].add([obs[i][image_key(camera)] for camera in envs[i].cameras], shown[i],
                                          caption)
                            video_seconds += time.perf_counter() - video_started
                        if i in finished:
                            if videos[i] is not None:
                                videos[i].close()
                            records[i] = self._record(jobs[i], envs[i], success[i], progress[i],
                                                      time.perf_counter() - started)
                            continue
                        action = executed_action(queues[i].popleft(), settings)
                        drawn = videos[i] is not None or settings.render_every_step or not queues[i]
                        obs[i], success[i], _ = envs[i].step(action, render=drawn)
                        progress[i].update(envs[i].raw_state)
        except BaseException:
            for video in videos:
                if video is not None:
                    video.discard()
            raise
        return records

    @staticmethod
    def _record(job: Any, env: Any, success: bool, progress: Any, seconds: float) -> dict[str, Any]:
        return {
            "task": job.task, "episode": job.episode, "seed": job.seed, "success": success, "steps": env.steps,
            "seconds": round(seconds, 4), "video": None if job.video is None else f"videos/{job.video.name}",
            "progress": progress.result(),
        }

    def close(self) -> None:
        for env in reversed(self.envs):  # the first one owns the shared renderer
            env.close()
        self.envs = []
