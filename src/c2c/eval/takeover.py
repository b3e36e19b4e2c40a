"""Expert takeover from the states a trained policy reaches (DAgger-style aggregation) for Meta-World.

A policy trained on clean scripted demonstrations drifts into states the demonstrations never show and cannot
recover from them. Here the policy acts from a new placement for ``K`` steps (``K`` drawn per placement, a
multiple of :data:`~c2c.envs.metaworld_takeover.TAKEOVER_PERIOD` up to ``policy_steps``), then metaworld's
scripted expert takes over and finishes the task; the frames from the takeover on, labelled with the expert's
actions, are added to the demonstrations (Ross et al. 2011's data aggregation, with the expert's own continuation
as the label, so every action chunk and coarse plan is a real expert trajectory from a state the policy reached).

Example::

    report = collect_takeovers(policy_dir=Path("runs/quick/policy/plan"),
                               dataset=Path("runs/quick/data/metaworld-ec1b8b81d5"),
                               episodes_per_task=25, seed=100, out=Path("data/quick-takeover"))
    print(report.summary())

The output dataset holds the base dataset's episodes, then the takeover episodes task by task; its metadata
is the base's with every takeover placement added to the tasks' ``seeds_attempted`` (so evaluation refuses
them) and a ``takeover`` entry with the settings and counts. Placements where the policy succeeds before the
takeover add nothing, nor do those the expert cannot finish within the env's step limit.

The placements, the takeover step and the expert's side (which reopens a gripper the policy closed) are
:mod:`c2c.envs.metaworld_takeover`'s; this module runs the policy, in worker processes, and writes the dataset.
"""

from __future__ import annotations

import json
import multiprocessing
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from c2c.data.episodes import Episode
from c2c.envs.metaworld_env import ACTION_NAMES, CONTROL_HZ, MAX_EPISODE_STEPS, STATE_NAMES, MetaWorldEnv
from c2c.envs.metaworld_takeover import TAKEOVER_PERIOD, Takeover, expert_takeover, takeover_seed, takeover_step
from c2c.envs.metaworld_tasks import instruction, resolve_tasks
from c2c.errors import ConfigError, DatasetError


def run_takeover(env: MetaWorldEnv, policy: Any, task: str, index: int, seed: int, policy_steps: int) -> Takeover:
    """The policy acts for :func:`takeover_step` steps from placement ``seed``, then the expert finishes."""
    import torch

    handover = takeover_step(seed, policy_steps)
    obs = env.reset(seed)
    policy.reset()
    success = False
    with torch.inference_mode():
        while env.steps < handover and not success:
            obs, success, _ = env.step(policy.select_action(obs))
    if success:
        return Takeover(task, index, seed, handover, "policy-success")
    return expert_takeover(env, obs, task, index, seed, handover)


# ---------------------------------------------------------------------------------------------------------------
# Worker processes (one policy and one renderer each).


@dataclass(frozen=True)
class _Settings:
    """What a worker needs (picklable); ``policy_dir`` and ``replan_every`` as the evaluation's settings."""

    policy_dir: str
    replan_every: int | None
    cameras: tuple[str, ...]
    image_size: int
    fast_drawing: bool
    policy_steps: int


_worker: dict[str, Any] = {}


def _init_worker(settings: _Settings, in_process: bool = False) -> None:
    import torch

    from c2c.policy import load_policy

    if not in_process:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's to handle
    torch.set_num_threads(1)
    _worker.clear()
    _worker.update(settings=settings, policy=load_policy(settings.policy_dir, replan_every=settings.replan_every),
                   env=None)


def _run_job(job: tuple[str, int, int]) -> Takeover:
    import torch

    task, index, seed = job
    settings: _Settings = _worker["settings"]
    env = _worker["env"]
    if env is None or env.task != task:
        if env is not None:
            env.close()
        env = _worker["env"] = MetaWorldEnv(task, cameras=settings.cameras, image_size=settings.image_size,
                                            max_steps=MAX_EPISODE_STEPS, fast_drawing=settings.fast_drawing)
    torch.manual_seed(seed)  # sampling policies (temperature > 0) repeat too
    return run_takeover(env, _worker["policy"], task, index, seed, settings.policy_steps)


def _close_worker() -> None:
    if _worker.get("env") is not None:
        _worker["env"].close()
    _worker.clear()


# ---------------------------------------------------------------------------------------------------------------
# The command.


@dataclass
class TakeoverReport:
    out: Path
    takeovers: list[Takeover]
    base_episodes: int
    seconds: float
    reused: bool = False

    def counts(self) -> dict[str, dict[str, int]]:
        table: dict[str, dict[str, int]] = {}
        for item in self.takeovers:
            row = table.setdefault(item.task, {"recorded": 0, "policy-success": 0, "expert-failed": 0, "frames": 0})
            row[item.status] += 1
            row["frames"] += item.frames
        return table

    def summary(self) -> str:
        if self.reused:
            return f"{self.out} already holds these takeovers; nothing to do"
        lines = [f"{'task':28s} {'recorded':>9s} {'policy ok':>10s} {'expert fail':>12s} {'frames':>7s}"]
        for task, row in self.counts().items():
            lines.append(f"{task:28s} {row['recorded']:9d} {row['policy-success']:10d} {row['expert-failed']:12d} "
                         f"{row['frames']:7d}")
        recorded = sum(item.status == "recorded" for item in self.takeovers)
        lines.append(f"dataset: {self.out} ({self.base_episodes} base + {recorded} takeover episodes) "
                     f"in {self.seconds:.0f} s")
        return "\n".join(lines)


def _check_request(episodes: int, policy_steps: int, workers: int | None) -> None:
    if episodes < 1:
        raise ConfigError(f"--episodes must be at least 1 (takeover placements per task), got {episodes}")
    if not TAKEOVER_PERIOD <= policy_steps < MAX_EPISODE_STEPS:
        raise ConfigError(f"--policy-steps must lie in {TAKEOVER_PERIOD}..{MAX_EPISODE_STEPS - 1} (the expert needs "
                          f"steps left to finish), got {policy_steps}")
    if workers is not None and workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {workers}")


def _base_info(dataset: Path) -> dict[str, Any]:
    from c2c.data.lerobot import LeRobotDataset, is_complete_dataset

    if not is_complete_dataset(dataset):
        raise DatasetError(f"--dataset {dataset}: not a complete LeRobot dataset (make one with `c2c data metaworld`)")
    info = dict(LeRobotDataset(dataset).extra_info)
    if info.get("generator") != "metaworld" or not isinstance(info.get("expert"), dict):
        raise ConfigError(f"--dataset {dataset}: not made by `c2c data metaworld` (its meta/info.json has no c2c "
                          f"Meta-World record), so the takeover placements cannot be kept apart from the demos'")
    return info


def _check_policy(policy_dir: Path, info: dict[str, Any], dataset: Path) -> None:
    from c2c.eval.metaworld_eval import check_metaworld_policy, read_policy_config

    config = read_policy_config(policy_dir)
    check_metaworld_policy(config, f"--policy {policy_dir}")
    if list(config.cameras) != list(info["cameras"]) or config.image_size != info["image_size"]:
        raise ConfigError(
            f"--policy {policy_dir} reads cameras {list(config.cameras)} at {config.image_size} px but --dataset "
            f"{dataset} holds {info['cameras']} at {info['image_size']} px; use the dataset the policy was trained on"
        )


def collect_takeovers(
    *,
    policy_dir: Path,
    dataset: Path,
    episodes_per_task: int,
    seed: int,
    out: Path,
    tasks: str | list[str] | None = None,
    policy_steps: int = 150,
    replan_every: int | None = None,
    workers: int | None = None,
    overwrite: bool = False,
    show_progress: bool = True,
) -> TakeoverReport:
    """Write ``dataset``'s episodes plus expert takeovers from ``policy_dir``'s rollouts to a new dataset ``out``.

    ``episodes_per_task`` placements per task (seeds from :func:`takeover_seed`); the policy acts up to
    ``policy_steps`` steps, replanning every ``replan_every`` (default: its config's). ``workers`` processes
    (default: the usable CPUs; 1 runs in this process).
    """
    from c2c.data.lerobot import LeRobotDataset, LeRobotWriter, is_complete_dataset

    started = time.perf_counter()
    policy_dir, dataset, out = Path(policy_dir), Path(dataset), Path(out)
    _check_request(episodes_per_task, policy_steps, workers)
    info = _base_info(dataset)
    _check_policy(policy_dir, info, dataset)
    task_names = list(info["tasks"]) if tasks is None else resolve_tasks(tasks)
    unknown = [task for task in task_names if task not in info["expert"]]
    if unknown:
        raise ConfigError(f"--tasks {','.join(unknown)}: not in --dataset {dataset} (it has {','.join(info['tasks'])})")
    if out.resolve() == dataset.resolve():
        raise ConfigError(f"--out {out} is --dataset; write the aggregated dataset to another directory")
    request = {"policy": str(policy_dir), "base": str(dataset), "tasks": task_names, "seed": seed,
               "episodes_per_task": episodes_per_task, "policy_steps": policy_steps, "replan_every": replan_every}
    if is_complete_dataset(out) and not overwrite:
        existing = LeRobotDataset(out).extra_info.get("takeover") or {}
        if all(existing.get(key) == value for key, value in request.items()):
            return TakeoverReport(out, [], 0, time.perf_counter() - started, reused=True)
        raise ConfigError(f"{out} already holds a dataset made otherwise; pass --overwrite or choose another --out")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file, not a directory")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise ConfigError(f"--out {out} exists and is not empty; pass --overwrite or choose another --out")

    demo_seeds = {int(value) for stats in info["expert"].values() for value in stats["seeds_attempted"]}
    jobs = [(task, index, takeover_seed(seed, task, index))
            for task in task_names for index in range(episodes_per_task)]
    clashes = [job for job in jobs if job[2] in demo_seeds]
    if clashes:
        task, index, placement = clashes[0]
        raise ConfigError(f"takeover {index} of {task} would reuse the demonstration placement {placement} of "
                          f"{dataset}; choose another --seed")
    settings = _Settings(str(policy_dir), replan_every, tuple(info["cameras"]), int(info["image_size"]),
                         bool(info.get("fast_drawing", True)), policy_steps)
    takeovers = _run_all(jobs, settings, workers, show_progress)

    base = LeRobotDataset(dataset)
    with LeRobotWriter(out, fps=CONTROL_HZ, robot_type="sawyer", state_names=list(STATE_NAMES),
                       action_names=list(ACTION_NAMES), overwrite=overwrite) as writer:
        for index in range(base.num_episodes):
            writer.add_episode(base.episode(index))
        for item in takeovers:
            if item.arrays is None:
                continue
            writer.add_episode(Episode(
                actions=item.arrays["actions"], states=item.arrays["states"],
                images={camera: item.arrays[camera] for camera in settings.cameras}, task=instruction(item.task),
                metadata={"env": item.task, "seed": item.seed, "takeover_step": item.takeover_step},
            ))
        report = TakeoverReport(out, takeovers, base.num_episodes, 0.0)
        expert = json.loads(json.dumps(info["expert"]))  # a deep copy
        for item in takeovers:
            expert[item.task]["seeds_attempted"].append(item.seed)
        writer.finalize(extra_info={**info, "expert": expert, "takeover": {**request, "counts": report.counts()}})
    report.seconds = time.perf_counter() - started
    return report


def _run_all(jobs: list[tuple[str, int, int]], settings: _Settings, workers: int | None,
             show_progress: bool) -> list[Takeover]:
    from tqdm import tqdm

    from c2c.utils.threads import usable_cpus

    count = min(workers or usable_cpus(), len(jobs))
    results: list[Takeover] = []
    with tqdm(total=len(jobs), desc="takeovers", unit="ep", disable=not show_progress, dynamic_ncols=True) as bar:
        def advance(item: Takeover) -> None:
            results.append(item)
            recorded = sum(result.status == "recorded" for result in results)
            bar.set_postfix_str(f"{item.task} recorded {recorded}/{len(results)}")
            bar.update()

        if count == 1:  # in this process, on one torch thread as a worker (the data do not depend on workers)
            import torch

            threads = torch.get_num_threads()
            _init_worker(settings, in_process=True)
            try:
                for job in jobs:
                    advance(_run_job(job))
            finally:
                _close_worker()
                torch.set_num_threads(threads)
            return results
        context = multiprocessing.get_context("spawn")
        with context.Pool(count, initializer=_init_worker, initargs=(settings,)) as pool:
            for item in pool.imap(_run_job, jobs):  # in job order: the dataset does not depend on the workers
                advance(item)
    return results
