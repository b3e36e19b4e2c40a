"""Closed-loop LIBERO evaluation of a trained policy (`c2c eval libero`), following openpi's protocol.

Example::

    results = evaluate_libero("runs/plan-libero", "libero_spatial", tasks=[0, 1], trials=50, seed=0,
                              out="runs/eval-libero")
    results["tasks"][0]["success_rate"]          # 0.92
    results["suite_success_rate"]                 # mean of the per-task rates
    print(format_summary(results))

Protocol (see :mod:`c2c.envs.libero_env`): trial ``k`` of a task starts from the suite's official init state ``k``
(so ``trials`` <= 50 and trials 0..trials-1 are the same scenes for every policy), takes 10 settling steps with the
gripper open, then at most the suite's step limit (spatial 220, object 280, goal 300, libero_10 520) of policy
steps; a trial succeeds when LIBERO's goal check turns true. The policy sees its own cameras (``image`` = agentview,
``image2`` = wrist), the 8-dim state and the task's instruction, and acts through ``select_action`` (a new chunk
every ``replan_every`` steps), or with ``envs_per_worker`` > 1 through batched decodes of several trials of a task
stepped together (:mod:`c2c.eval.libero_batch`).

Image size (:func:`training_render_plan`): the cameras are drawn at the size the training images were drawn or
stored at, then resized as they were on the way to training (PIL bilinear at every step), so that a policy trained
on 256 px frames resized to 96 px sees 256 px renders resized to 96 px, not renders drawn at 96 px. The size comes
from the policy's training record: ``training_data.json`` (the dataset path and its ``c2c`` record) and the
dataset's ``meta/info.json`` (the cameras' stored shape): our ``c2c data libero`` datasets record the size they were
drawn at, ``c2c data convert`` datasets their source (openpi's and LeRobot's LIBERO: 256 px), any other LeRobot
dataset its stored size (LIBERO's original HDF5 files: 128 px). ``render_size`` overrides it (render at that size,
resize once to the policy's); without a record the cameras are drawn at the policy's size. ``results.json`` says
which (``settings.render_size_from``).

Seeds: ``seed`` seeds LIBERO's global numpy RNG before every reset (the init state then fixes the scene) and torch's
RNG at the start of every trial (from ``(seed, task, trial)``), so greedy and sampled decoding both reproduce.
Every reset is robosuite's hard one, as in LIBERO's own evaluation: the fixtures' poses, which the init states do not
hold, come from that reset's seeded placement, and the demonstration generator's faster soft resets match it only
within 1e-12 on some tasks (see ``LiberoEnv``).

Checked before any rollout (a :class:`ConfigError` naming the key and the expected value): the suite, the task ids,
``trials`` in 1..50, ``videos``, ``replan_every`` against the policy's exec horizon, and the policy itself: cameras
among ``image``/``image2``, state_dim 8, action_dim 7. Only then is LIBERO imported (missing: the error names
``make setup-libero``).

Output directory ``out``:

``results.json``  per task: instruction, success rate, successes/trials, mean steps of the successes, wall time and
                  every trial's record; the suite mean (mean of the task rates); the settings, the software versions
                  and the command that reproduces the run. Rewritten after every task (``"status": "running"``), so
                  a long run that stops leaves the finished tasks behind; ``"complete"`` at the end.
``report.md``     the same as Markdown.
``success.png``   bar chart of the per-task rates.
``results.partial.jsonl``  every trial's record, written as it finishes; removed once the run is complete, so a run
                  that stops inside a task keeps its finished trials too (:mod:`c2c.eval.partial`).
``videos/task<ii>_trial<kk>.mp4``  the first ``videos`` trials of every task: the policy's cameras side by side.

The summaries, the printed table and the files are made by :mod:`c2c.eval.libero_report`.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from c2c.envs.libero_env import (
    ACTION_DIM, CAMERAS, INIT_STATES_PER_TASK, MAX_STEPS, NUM_WAIT_STEPS, STATE_DIM,
    TASKS_PER_SUITE, check_suite, check_task_id,
)
from c2c.errors import ConfigError
from c2c.eval.libero_batch import TrialRunner
from c2c.eval.libero_rendering import RenderPlan, make_env, training_drawing, training_render_plan
from c2c.eval.libero_report import (  # noqa: F401 (format_summary, markdown_report: re-exported)
    fill_suite_summary, format_summary, markdown_report, software_versions, task_summary, write_outputs,
)
from c2c.eval.partial import PartialRecords
from c2c.eval.workers import WorkerPool
from c2c.policy.loading import load_policy
from c2c.utils.outdir import check_out_dir

FORMAT = "c2c-eval-libero"
FORMAT_VERSION = 1
DEFAULT_TRIALS = 50


# ---------------------------------------------------------------------------------------------------------------
# Checks made before any rollout.


def parse_tasks(tasks: str | Sequence[int] | None, suite: str = "LIBERO") -> list[int]:
    """Task ids from None (all 10), a comma list ("0,3") or a sequence of ints; each checked, no repeats."""
    if tasks is None:
        return list(range(TASKS_PER_SUITE))
    if isinstance(tasks, str):
        items: list[Any] = []
        for word in (w.strip() for w in tasks.split(",")):
            if not word:
                continue
            try:
                items.append(int(word))
            except ValueError:
                raise ConfigError(f"--tasks: {word!r} is not a task id (expected integers 0..{TASKS_PER_SUITE - 1}, "
                                  f"comma separated)") from None
    else:
        items = list(tasks)
    if not items:
        raise ConfigError(f"tasks: no task ids given (expected integers 0..{TASKS_PER_SUITE - 1})")
    ids = [check_task_id(suite, task) for task in items]
    if len(set(ids)) != len(ids):
        raise ConfigError(f"tasks: ids are repeated: {ids}")
    return ids


def check_request(trials: int, seed: int, videos: int, replan_every: int | None, max_steps: int | None,
                  render_size: int | None) -> None:
    """Numbers of the request: a :class:`ConfigError` naming the first bad one and what it must be."""
    checks = [
        ("trials", trials, isinstance(trials, int) and 1 <= trials <= INIT_STATES_PER_TASK,
         f"an integer in 1..{INIT_STATES_PER_TASK} (one official init state per trial)"),
        ("seed", seed, isinstance(seed, int) and seed >= 0, "a non-negative integer"),
        ("videos", videos, isinstance(videos, int) and videos >= 0, "0 or more"),
        ("replan_every", replan_every, replan_every is None or replan_every >= 1, "at least 1"),
        ("max_steps", max_steps, max_steps is None or max_steps >= 1, "at least 1"),
        ("render_size", render_size, render_size is None or render_size >= 8, "at least 8 pixels"),
    ]
    for name, value, ok, expected in checks:
        if not ok:
            raise ConfigError(f"{name} must be {expected}, got {value!r}")


def check_libero_policy(config: Any, where: str = "policy") -> None:
    """Refuse a policy config that cannot act in LIBERO: cameras among image/image2, state_dim 8, action_dim 7."""
    cameras = list(config.cameras)
    if not cameras or any(camera not in CAMERAS for camera in cameras):
        raise ConfigError(f"{where}: cameras are {cameras}; LIBERO offers 'image' (agentview) and 'image2' (wrist): "
                          f"expected ['image', 'image2'] or a subset")
    if config.state_dim != STATE_DIM:
        raise ConfigError(f"{where}: state_dim is {config.state_dim}; LIBERO's state has {STATE_DIM} values "
                          f"(eef pos 3, axis-angle 3, gripper qpos 2)")
    if config.action_dim != ACTION_DIM:
        raise ConfigError(f"{where}: action_dim is {config.action_dim}; LIBERO's actions have {ACTION_DIM} values "
                          f"(delta pos 3, delta axis-angle 3, gripper 1)")
    if config.image_size < 8:
        raise ConfigError(f"{where}: image_size is {config.image_size}; LIBERO renders at least 8 px")


def _resolve_policy(policy: Any) -> tuple[Any, str | None]:
    """(policy object in eval mode, its directory or None): a saved policy directory loaded with
    :func:`c2c.policy.load_policy`, or a policy object (checked for config, select_action and reset) as it is."""
    if isinstance(policy, (str, Path)):
        return load_policy(policy), str(Path(policy))
    if not all(hasattr(policy, name) for name in ("config", "select_action", "reset")):
        raise ConfigError(f"policy must be a saved policy directory or a policy object with config, "
                          f"select_action and reset; got {type(policy).__name__}")
    return policy, None


# ---------------------------------------------------------------------------------------------------------------
# Evaluation.


def evaluate_libero(
    policy: str | Path | Any,
    suite: str,
    tasks: str | Sequence[int] | None = None,
    trials: int = DEFAULT_TRIALS,
    seed: int = 0,
    replan_every: int | None = None,
    videos: int = 0,
    out: str | Path = "runs/eval-libero",
    *,
    max_steps: int | None = None,
    render_size: int | None = None,
    log: Callable[[str], None] | None = print,
    workers: int | None = 1,
    fast_drawing: bool | None = None,
    envs_per_worker: int = 1,
    render_every_step: bool = False,
) -> dict[str, Any]:
    """Run the protocol on ``tasks`` (default: all 10) of ``suite``; write results.json, report.md, success.png.

    ``policy``: a saved policy directory or a loaded policy object (its config is restored afterwards).
    ``replan_every``: actions executed per decoded chunk (default: the policy's). ``videos``: trials recorded per
    task (the first ones). ``max_steps``: override of the suite's step limit (smoke tests only; recorded).
    ``render_size``: render at this size and resize to the policy's (default: as the training images were drawn
    and resized, from the policy's training record; see :func:`training_render_plan`).
    ``fast_drawing``: draw the cameras with our renderer on simplified meshes (see ``LiberoEnv``); None: as the
    policy's training data was drawn (its ``training_data.json``), else robosuite's cameras.
    ``log``: where progress lines go (None: silent). ``workers``: processes rolling trials out at the same time
    (each with its own simulator, renderer and copy of the policy on one thread; None: the usable CPUs, at most 2
    per job list; a policy object always runs in this process). Results do not depend on the worker count: every
    trial resets LIBERO's RNG and the decoding RNG from (seed, task, trial). ``envs_per_worker``: trials of a task
    each process steps side by side, their observations decoded as one batch (:mod:`c2c.eval.libero_batch`; the
    same trials as one at a time with greedy decoding; needs a policy with a batched ``generate``). Returns the
    content of results.json.

    With fast drawing only the steps whose images are read are drawn: those before a new chunk is decoded, and
    every step of a trial recorded as video. ``render_every_step`` draws them all (the same records, slower; for
    benchmarks). robosuite's cameras draw every step in any case.
    """
    started = time.perf_counter()
    suite = check_suite(suite)
    task_ids = parse_tasks(tasks, suite)
    check_request(trials, seed, videos, replan_every, max_steps, render_size)
    if workers is not None and (isinstance(workers, bool) or int(workers) < 1):
        raise ConfigError(f"--workers must be >= 1, got {workers!r}")
    if isinstance(envs_per_worker, bool) or not isinstance(envs_per_worker, int) or envs_per_worker < 1:
        raise ConfigError(f"--envs-per-worker must be 1 or more, got {envs_per_worker!r}")
    if not isinstance(render_every_step, bool):
        raise ConfigError(f"render_every_step must be True or False, got {render_every_step!r}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file, not a directory")
    policy_obj, policy_dir = _resolve_policy(policy)
    where = f"--policy {policy_dir}" if policy_dir else "policy"
    config = policy_obj.config
    check_libero_policy(config, where)
    if envs_per_worker > 1 and not hasattr(policy_obj, "generate"):
        raise ConfigError("--envs-per-worker above 1 needs a local policy (a policy server decodes one observation at "
                          "a time); use --envs-per-worker 1")
    run_config = config.replace(replan_every=replan_every) if replan_every is not None else config  # checked here
    drawing_override = fast_drawing
    if fast_drawing is None:
        fast_drawing = training_drawing(policy_dir)
    if render_size is not None:
        plan = RenderPlan.chain(render_size, config.image_size, source="--render-size")
    else:
        plan = training_render_plan(policy_dir, config.cameras, config.image_size)

    from c2c.envs.libero_env import import_libero, suite_tasks

    import_libero()  # a missing LIBERO is reported before anything is written
    names = {info["task_id"]: info for info in suite_tasks(suite)}
    videos = min(videos, trials)
    video_dir = out / "videos"
    check_out_dir(out)  # writable, before any rollout
    for stale in video_dir.glob("task*_trial*.mp4"):  # videos of an earlier evaluation into this directory
        stale.unlink()
    say = log or (lambda _message: None)
    say(f"[libero] cameras {plan.describe()} ({plan.source})")
    results: dict[str, Any] = {
        "format": FORMAT, "version": FORMAT_VERSION, "status": "running", "suite": suite,
        "policy": policy_dir or "in-memory policy object", "variant": getattr(config, "variant", None),
        "settings": {
            "suite": suite, "tasks": task_ids, "trials": trials, "init_states": f"0..{trials - 1}", "seed": seed,
            "replan_every": run_config.replan_every, "replan_every_override": replan_every,
            "max_steps": max_steps or MAX_STEPS[suite], "max_steps_override": max_steps,
            "num_wait_steps": NUM_WAIT_STEPS, "videos": videos, "cameras": list(config.cameras),
            "image_size": config.image_size, "render_size": plan.render_size, "resizes": list(plan.resizes),
            "render_size_from": plan.source,
            "fast_drawing": bool(fast_drawing), "envs_per_worker": envs_per_worker,
            "exec_horizon": getattr(config, "exec_horizon", None), "temperature": getattr(config, "temperature", None),
        },
        "command": command_line(policy_dir, suite, task_ids, trials, seed, out, replan_every=replan_every,
                                videos=videos, max_steps=max_steps, render_size=render_size,
                                fast_drawing=drawing_override, envs_per_worker=envs_per_worker),
        "versions": software_versions(),
        "tasks": [],
    }
    original_config, was_training = policy_obj.config, getattr(policy_obj, "training", False)
    policy_obj.config = run_config
    if hasattr(policy_obj, "eval"):
        policy_obj.eval()
    jobs = trial_jobs(task_ids, trials, _worker_count(workers, policy_dir, len(task_ids) * trials))
    partial = PartialRecords(out, policy=results["policy"], suite=suite, tasks=task_ids, trials=trials, seed=seed)
    if len(jobs) > 1 and policy_dir is not None:
        settings = _WorkerSettings(policy_dir, suite, run_config.replan_every, seed, max_steps, plan, videos,
                                   str(video_dir), bool(fast_drawing), envs_per_worker, render_every_step)
        try:
            _evaluate_in_workers(jobs, settings, names, results, out, say, started, partial)
        except BaseException:
            partial.keep()
            raise
        finally:
            policy_obj.config = original_config
        results["settings"]["workers"] = len({job.worker for job in jobs})
        results["status"] = "complete"
        fill_suite_summary(results, time.perf_counter() - started)
        with partial.saving():  # the partial records go once results.json is complete
            write_outputs(results, out, final=True)
        return results
    results["settings"]["workers"] = 1
    runner = TrialRunner(policy_obj, lambda task_id: make_env(suite, task_id, config.cameras, plan, max_steps=max_steps,
                                                              seed=seed, fast_drawing=bool(fast_drawing)),
                         seed, envs_per_worker, lambda task_id, trial: _video_path(video_dir, task_id, trial, videos),
                         render_every_step)
    try:
        for task_id in task_ids:
            task_started = time.perf_counter()
            info = names[task_id]
            say(f"[libero] {suite} task {task_id}: {info['instruction']}")
            done: list[dict[str, Any]] = []

            def on_record(record: dict[str, Any], task_id: int = task_id, done: list = done) -> None:
                partial.add({"task_id": task_id, **record})
                done.append(record)
                say(f"[libero]   trial {record['trial']}: {'success' if record['success'] else 'failure'} after "
                    f"{record['steps']} steps ({record['seconds']:.1f} s); {sum(r['success'] for r in done)}/"
                    f"{len(done)}")

            records = runner.run(task_id, range(trials), on_record)
            results["tasks"].append(task_summary(info, records, time.perf_counter() - task_started))
            fill_suite_summary(results, time.perf_counter() - started)
            write_outputs(results, out, final=False)
    except BaseException:
        partial.keep()
        raise
    finally:
        runner.close()
        policy_obj.config = original_config
        if hasattr(policy_obj, "train"):
            policy_obj.train(was_training)
    results["status"] = "complete"
    fill_suite_summary(results, time.perf_counter() - started)
    with partial.saving():  # the partial records go once results.json is complete
        write_outputs(results, out, final=True)
    return results


# ---------------------------------------------------------------------------------------------------------------
# Worker processes.


@dataclass(frozen=True)
class TrialJob:
    """Trials ``trials`` of task ``task_id``, run by worker ``worker`` (one simulator per task it meets)."""

    task_id: int
    trials: tuple[int, ...]
    worker: int


def trial_jobs(task_ids: Sequence[int], trials: int, workers: int) -> list[TrialJob]:
    """Split the (task, trial) grid into one job per task and worker share: whole tasks go round-robin when there
    are at least as many tasks as workers, else each task's trials are cut into ``workers`` contiguous parts."""
    workers = max(1, min(int(workers), len(task_ids) * trials))
    if workers == 1:
        return [TrialJob(task_id, tuple(range(trials)), 0) for task_id in task_ids]
    if len(task_ids) >= workers:
        return [TrialJob(task_id, tuple(range(trials)), index % workers) for index, task_id in enumerate(task_ids)]
    jobs = []
    for task_id in task_ids:
        for worker, part in enumerate(np.array_split(np.arange(trials), workers)):
            if len(part):
                jobs.append(TrialJob(task_id, tuple(int(t) for t in part), worker))
    return jobs


def _worker_count(workers: int | None, policy_dir: str | None, total_trials: int) -> int:
    if policy_dir is None:
        return 1  # a policy object cannot be sent to other processes
    if workers is None:
        from c2c.utils.threads import usable_cpus

        workers = min(usable_cpus(), 2)
    return max(1, min(int(workers), total_trials))


@dataclass(frozen=True)
class _WorkerSettings:
    policy_dir: str
    suite: str
    replan_every: int
    seed: int
    max_steps: int | None
    plan: RenderPlan
    videos: int
    video_dir: str
    fast_drawing: bool = False
    envs_per_worker: int = 1
    render_every_step: bool = False


class TrialJobRunner:
    """A worker process's runner (:class:`c2c.eval.workers.WorkerPool`) of trial jobs: the policy, loaded once,
    and its simulators (kept between jobs)."""

    def __init__(self, settings: _WorkerSettings) -> None:
        self.policy = load_policy(settings.policy_dir, replan_every=settings.replan_every)
        cameras = self.policy.config.cameras
        self.trials = TrialRunner(
            self.policy, lambda task_id: make_env(settings.suite, task_id, cameras, settings.plan,
                                                  max_steps=settings.max_steps, seed=settings.seed,
                                                  fast_drawing=settings.fast_drawing),
            settings.seed, settings.envs_per_worker,
            lambda task_id, trial: _video_path(Path(settings.video_dir), task_id, trial, settings.videos),
            settings.render_every_step)

    def run_group(self, job: TrialJob) -> list[tuple[TrialJob, list[dict[str, Any]], float]]:
        """The job's trials: ``[(job, records, seconds)]``."""
        started = time.perf_counter()
        records = self.trials.run(job.task_id, job.trials)
        return [(job, records, time.perf_counter() - started)]

    def close(self) -> None:
        self.trials.close()


def _video_path(video_dir: Path, task_id: int, trial: int, videos: int) -> Path | None:
    return video_dir / f"task{task_id:02d}_trial{trial:02d}.mp4" if trial < videos else None


def _evaluate_in_workers(jobs: list[TrialJob], settings: _WorkerSettings, names: dict[int, dict[str, Any]],
                         results: dict[str, Any], out: Path, say: Callable[[str], None], started: float,
                         partial: PartialRecords | None = None) -> None:
    """Run ``jobs`` in worker processes (spawned: one renderer per process) and fill ``results`` task by task;
    ``partial`` gets every trial's record as its job finishes."""
    workers = len({job.worker for job in jobs})
    pending: dict[int, int] = {}  # task -> jobs not finished
    for job in jobs:
        pending[job.task_id] = pending.get(job.task_id, 0) + 1
    records: dict[int, list[dict[str, Any]]] = {task_id: [] for task_id in pending}
    seconds: dict[int, float] = {task_id: 0.0 for task_id in pending}
    say(f"[libero] {len(jobs)} jobs on {workers} worker processes")
    with WorkerPool(workers, TrialJobRunner, settings) as pool:
        for job, job_records, job_seconds in pool.run(jobs):
            for record in job_records if partial is not None else ():
                partial.add({"task_id": job.task_id, **record})
            records[job.task_id].extend(job_records)
            seconds[job.task_id] += job_seconds
            pending[job.task_id] -= 1
            done = sum(r["success"] for r in job_records)
            say(f"[libero] {settings.suite} task {job.task_id} trials {job.trials[0]}..{job.trials[-1]}: "
                f"{done}/{len(job_records)} successes ({job_seconds:.0f} s)")
            if pending[job.task_id] == 0:
                task_records = sorted(records[job.task_id], key=lambda r: r["trial"])
                results["tasks"].append(task_summary(names[job.task_id], task_records, seconds[job.task_id]))
                results["tasks"].sort(key=lambda task: task["task_id"])
                fill_suite_summary(results, time.perf_counter() - started)
                write_outputs(results, out, final=False)


def command_line(policy_dir: str | None, suite: str, tasks: list[int], trials: int, seed: int, out: Path, *,
                 replan_every: int | None, videos: int, max_steps: int | None, render_size: int | None,
                 fast_drawing: bool | None = None, envs_per_worker: int = 1) -> str:
    """The `c2c eval libero` command that reproduces an evaluation (``<policy-dir>`` for an in-memory policy)."""
    words = ["c2c", "eval", "libero", "--policy", policy_dir or "<policy-dir>", "--suite", suite]
    if tasks != list(range(TASKS_PER_SUITE)):
        words += ["--tasks", ",".join(map(str, tasks))]
    words += ["--trials", str(trials), "--seed", str(seed)]
    if replan_every is not None:
        words += ["--replan-every", str(replan_every)]
    if videos:
        words += ["--videos", str(videos)]
    if max_steps is not None:
        words += ["--max-steps", str(max_steps)]
    if render_size is not None:
        words += ["--render-size", str(render_size)]
    if fast_drawing is not None:
        words += ["--fast-drawing" if fast_drawing else "--no-fast-drawing"]
    if envs_per_worker != 1:
        words += ["--envs-per-worker", str(envs_per_worker)]
    words += ["--out", str(out)]
    return shlex.join(words)
