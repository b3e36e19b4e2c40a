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

Cache: ``<out.parent>/.<out.name>.work/`` holds ``settings.json``, and per task ``attempts.json`` (every attempt's
seed and outcome) and one ``episode-<attempt>.npz`` per recorded episode. A rerun of the same command skips
what is there; asking for more episodes (with ``overwrite``) reuses the recorded ones. The cache is kept after
the dataset is written; delete it when the dataset no longer needs extending.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import queue
import shutil
import signal
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from c2c.constants import OBS_STATE, image_key
from c2c.data.episodes import Episode
from c2c.envs.metaworld_env import (
    ACTION_NAMES, CONTROL_HZ, MAX_EPISODE_STEPS, STATE_NAMES, MetaWorldEnv, check_cameras, mesh_cell_size,
)
from c2c.envs.metaworld_tasks import instruction, resolve_tasks
from c2c.errors import C2CError, ConfigError

SUCCESS_TAIL_STEPS = 10  # steps recorded after the first success (1/8 s at 80 Hz)
WORK_FORMAT = 1  # version of the cache layout
SEED_BITS = 31  # placement seeds are non-negative int32s


def placement_seed(seed: int, task: str, attempt: int) -> int:
    """The object-placement seed of ``attempt`` of ``task`` under the run seed ``seed`` (a stable hash)."""
    digest = hashlib.sha256(f"c2c/metaworld/{seed}/{task}/{attempt}".encode()).digest()
    return int.from_bytes(digest[:8], "little") % (1 << SEED_BITS)


# ---------------------------------------------------------------------------------------------------------------
# Rollouts.


@dataclass
class Attempt:
    """One expert rollout on one placement."""

    attempt: int  # index within the task
    seed: int  # placement seed
    success: bool
    length: int  # actions taken (= frames recorded when kept)
    digest: str  # sha1 of the 39-dim states from reset to the last step


def noise_rng(seed: int) -> np.random.Generator:
    """The generator of the executed-action noise of placement ``seed`` (independent of the placement itself)."""
    digest = hashlib.sha256(f"c2c/metaworld/action-noise/{seed}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def run_expert(
    env: MetaWorldEnv, seed: int, tail_steps: int = SUCCESS_TAIL_STEPS, action_noise: float = 0.0,
) -> tuple[np.ndarray, np.ndarray, Attempt]:
    """Roll the scripted expert out from placement ``seed`` until success + ``tail_steps`` or ``env.max_steps``.

    ``action_noise`` > 0 (noise injection, as DART, Laskey et al. 2017): until the first success the env executes
    the expert's action plus Gaussian noise of this standard deviation on the three position dims (the action
    range is [-1, 1], 1 = 1 cm per step), clipped to the range; the label stays the expert's own action for the
    state it saw. The expert, a state-feedback controller, then corrects the drift, so the demonstrations show
    recoveries from states a clean rollout never visits. 0 (the default) executes the labels.

    Returns the labels (T, 4), the executed actions (T, 4), both float32, and the outcome (``attempt`` is left at
    -1 for the caller to set).
    """
    env.reset(seed)
    rng = noise_rng(seed) if action_noise > 0 else None
    hasher = hashlib.sha1(env.raw_state.tobytes())
    actions, executed = [], []
    first_success: int | None = None
    done = False
    while not done:
        action = env.expert_action()
        applied = action
        if rng is not None and first_success is None:
            applied = action.copy()
            applied[:3] += rng.normal(0.0, action_noise, 3).astype(np.float32)
            applied = np.clip(applied, -1.0, 1.0).astype(np.float32)
        _, success, done = env.step(applied)
        actions.append(action)
        executed.append(applied)
        hasher.update(env.raw_state.tobytes())
        if success and first_success is None:
            first_success = env.steps
        if first_success is not None and env.steps >= first_success + tail_steps:
            break
    outcome = Attempt(-1, seed, first_success is not None, len(actions), hasher.hexdigest())
    return np.stack(actions).astype(np.float32), np.stack(executed).astype(np.float32), outcome


def replay_with_cameras(
    env: MetaWorldEnv, seed: int, actions: np.ndarray, digest: str, labels: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Replay ``actions`` from placement ``seed`` recording every frame; checks the states reproduce ``digest``.

    Returns ``{"actions": (T, 4), "states": (T, 4), "<camera>": (T, H, W, 3) uint8}``: frame t is the observation
    the expert saw before taking action t. ``labels``: the actions to record instead of the executed ones (the
    expert's own actions of a noise-injected rollout, see :func:`run_expert`).
    """
    length = len(actions)
    size = env.image_size
    images = {camera: np.empty((length, size, size, 3), np.uint8) for camera in env.cameras}
    states = np.empty((length, len(STATE_NAMES)), np.float32)
    obs = env.reset(seed)
    hasher = hashlib.sha1(env.raw_state.tobytes())
    for t, action in enumerate(actions):
        states[t] = obs[OBS_STATE]
        for camera in env.cameras:
            images[camera][t] = obs[image_key(camera)]
        obs, _, _ = env.step(action)
        hasher.update(env.raw_state.tobytes())
    if hasher.hexdigest() != digest:
        raise C2CError(
            f"{env.task} placement seed {seed}: replaying the expert's actions with cameras on did not reproduce "
            f"the states of the rollout (MuJoCo was expected to be deterministic here); please report this"
        )
    recorded = actions if labels is None else labels
    return {"actions": np.asarray(recorded, np.float32), "states": states, **images}


# ---------------------------------------------------------------------------------------------------------------
# The cache.


def _write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    write(temporary)
    os.replace(temporary, path)


def save_episode_arrays(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """An .npz with zlib level 1 (about 4x smaller than raw frames, 0.7 ms a frame of two 96-px cameras)."""

    def write(target: Path) -> None:
        with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
            for name, array in arrays.items():
                with archive.open(f"{name}.npy", "w", force_zip64=True) as stream:
                    np.lib.format.write_array(stream, np.ascontiguousarray(array), allow_pickle=False)

    _write_atomic(path, write)


def _write_json(path: Path, value: Any) -> None:
    _write_atomic(path, lambda target: target.write_text(json.dumps(value, indent=1)))


class WorkDir:
    """``<out.parent>/.<out.name>.work``: recorded episodes and attempt outcomes, valid for one ``settings``."""

    def __init__(self, out: Path, settings: dict[str, Any], *, overwrite: bool) -> None:
        self.root = out.parent / f".{out.name}.work"
        self.settings = settings
        settings_path = self.root / "settings.json"
        if settings_path.is_file():
            old = json.loads(settings_path.read_text())
            if old != settings:
                if not overwrite:
                    changed = ", ".join(
                        f"{key}: {old.get(key)!r} -> {settings.get(key)!r}"
                        for key in sorted(set(old) | set(settings))
                        if old.get(key) != settings.get(key)
                    )
                    raise ConfigError(
                        f"{self.root} holds episodes recorded with other settings ({changed}); use a new --out, "
                        f"or --overwrite to discard them"
                    )
                shutil.rmtree(self.root)
        self.root.mkdir(parents=True, exist_ok=True)
        for leftover in self.root.glob("**/.*.tmp-*"):  # from an interrupted write
            leftover.unlink()
        _write_json(settings_path, settings)

    @classmethod
    def existing(cls, root: Path) -> "WorkDir":
        """The work directory at ``root`` as it is (a worker process's handle; its settings were checked already)."""
        work = cls.__new__(cls)
        work.root, work.settings = Path(root), None
        return work

    def episode_path(self, task: str, attempt: int) -> Path:
        (self.root / task).mkdir(exist_ok=True)
        return self.root / task / f"episode-{attempt:05d}.npz"

    def load_attempts(self, task: str) -> dict[int, Attempt]:
        path = self.root / task / "attempts.json"
        if not path.is_file():
            return {}
        return {record["attempt"]: Attempt(**record) for record in json.loads(path.read_text())}

    def save_attempts(self, task: str, attempts: dict[int, Attempt]) -> None:
        (self.root / task).mkdir(exist_ok=True)
        records = [vars(attempts[index]) for index in sorted(attempts)]
        _write_json(self.root / task / "attempts.json", records)

    def load_episode(self, task: str, attempt: Attempt, cameras: tuple[str, ...]) -> Episode:
        with np.load(self.episode_path(task, attempt.attempt)) as arrays:
            images = {camera: arrays[camera] for camera in cameras}
            return Episode(
                actions=arrays["actions"], states=arrays["states"], images=images, task=instruction(task),
                metadata={"env": task, "seed": attempt.seed},
            )

    def size_bytes(self) -> int:
        return _directory_bytes(self.root)


def _directory_bytes(root: Path) -> int:
    return sum(path.stat().st_size for path in root.rglob("*") if path.is_file()) if root.exists() else 0


# ---------------------------------------------------------------------------------------------------------------
# Recording in worker processes.


@dataclass(frozen=True)
class _RecordJob:
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


_worker_env: MetaWorldEnv | None = None  # a process keeps one env (and so one renderer) at a time


def _record(job: _RecordJob) -> tuple[str, int, int]:
    """Render and cache one episode; returns (task, attempt, frames)."""
    global _worker_env
    env = _worker_env
    wanted = (job.task, job.cameras, job.image_size, job.max_steps)
    if env is None or (env.task, env.cameras, env.image_size, env.max_steps) != wanted:
        if env is not None:
            env.close()
        env = _worker_env = MetaWorldEnv(
            job.task, cameras=job.cameras, image_size=job.image_size, max_steps=job.max_steps,
            fast_drawing=job.fast_drawing,
        )
    arrays = replay_with_cameras(env, job.seed, job.actions, job.digest, job.labels)
    save_episode_arrays(job.path, arrays)
    return job.task, job.attempt, len(job.actions)


def _worker_loop(index: int, inbox: Any, results: Any) -> None:
    """A render process: record jobs from ``inbox`` until ``None``; put ``(index, result or error)``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's to handle
    while (job := inbox.get()) is not None:
        try:
            results.put((index, _record(job)))
        except Exception as error:  # noqa: BLE001 - sent back and raised by the main process
            results.put((index, error))
    _close_worker_env()


def _close_worker_env() -> None:
    global _worker_env
    if _worker_env is not None:
        _worker_env.close()
    _worker_env = None


class _Recorder:
    """Runs record jobs inline (``workers <= 1``) or in spawned render processes; results come from ``poll``.

    Making an env and its renderer costs about 0.6 s, so a task's jobs stay with one process unless that one
    has :data:`REBALANCE_FRAMES` more frames queued than the least busy one.
    """

    REBALANCE_FRAMES = 400

    def __init__(self, workers: int) -> None:
        self.workers = max(workers, 1)
        self._inline_results: list[tuple[str, int, int]] = []
        self._processes: list[Any] = []  # started with the first job, so a run with nothing to record starts none
        self._queued_frames = [0] * self.workers
        self._owner: dict[str, int] = {}  # task -> process that has its env
        self.pending = 0

    def _start(self) -> None:
        context = multiprocessing.get_context("spawn")  # a fresh interpreter: no GL or thread state inherited
        self._results = context.Queue()
        self._inboxes = [context.Queue() for _ in range(self.workers)]
        self._processes = [
            context.Process(target=_worker_loop, args=(index, inbox, self._results), daemon=True)
            for index, inbox in enumerate(self._inboxes)
        ]
        for process in self._processes:
            process.start()

    def submit(self, job: _RecordJob) -> None:
        self.pending += 1
        if self.workers == 1:
            self._inline_results.append(_record(job))
            return
        if not self._processes:
            self._start()
        least_busy = int(np.argmin(self._queued_frames))
        owner = self._owner.get(job.task, least_busy)
        if self._queued_frames[owner] - self._queued_frames[least_busy] > self.REBALANCE_FRAMES:
            owner = least_busy
        self._owner[job.task] = owner
        self._queued_frames[owner] += len(job.actions)
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
        _close_worker_env()


# ---------------------------------------------------------------------------------------------------------------
# The report.


@dataclass
class TaskReport:
    """The expert's record on one task and what went into the dataset."""

    task: str
    attempts: int
    successes: int
    episodes: int  # kept in the dataset
    frames: int
    seeds_attempted: list[int] = field(default_factory=list)

    @property
    def success_rate(self) -> float:
        return self.successes / self.attempts if self.attempts else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "attempts": self.attempts, "successes": self.successes, "success_rate": round(self.success_rate, 4),
            "episodes": self.episodes, "frames": self.frames, "seeds_attempted": self.seeds_attempted,
        }


@dataclass
class GenerationReport:
    """What :func:`generate_metaworld_demos` did; ``summary()`` is the table the command line prints."""

    out: Path
    work_dir: Path
    tasks: list[TaskReport]
    seconds: float  # wall time of this call
    frames_recorded: int  # frames rendered by this call (the rest came from the cache)
    dataset_bytes: int
    work_bytes: int
    already_complete: bool = False  # the dataset existed with the same settings; nothing was done

    @property
    def total_frames(self) -> int:
        return sum(task.frames for task in self.tasks)

    @property
    def total_episodes(self) -> int:
        return sum(task.episodes for task in self.tasks)

    def summary(self) -> str:
        width = max([len("task")] + [len(task.task) for task in self.tasks])
        lines = [f"{'task':<{width}}  expert success  episodes  frames", "-" * (width + 35)]
        for task in self.tasks:
            rate = f"{100 * task.success_rate:5.1f}% ({task.successes}/{task.attempts})"
            lines.append(f"{task.task:<{width}}  {rate:>14}  {task.episodes:>8}  {task.frames:>6}")
        lines.append("-" * (width + 35))
        lines.append(f"{'total':<{width}}  {'':>14}  {self.total_episodes:>8}  {self.total_frames:>6}")
        if self.already_complete:
            lines.append(f"{self.out}: already complete with these settings; nothing to do")
        else:
            rate = self.frames_recorded / self.seconds if self.seconds > 0 else 0.0
            lines.append(
                f"recorded {self.frames_recorded} frames in {self.seconds:.1f} s ({rate:.1f} frames/s); "
                f"{self.total_frames - self.frames_recorded} came from the cache"
            )
        per_1000 = self.dataset_bytes / max(self.total_frames, 1) * 1000
        lines.append(f"dataset: {self.out} ({_megabytes(self.dataset_bytes)}, {_megabytes(per_1000)} per 1000 frames)")
        lines.append(f"cache: {self.work_dir} ({_megabytes(self.work_bytes)}; delete it when done adding episodes)")
        return "\n".join(lines)


def _megabytes(count: float) -> str:
    return f"{count / 1024**2:.1f} MB"


# ---------------------------------------------------------------------------------------------------------------
# Generation.


def _usable_cpus() -> int:
    from c2c.utils.threads import usable_cpus

    return usable_cpus()


def _check_request(
    episodes_per_task: int, image_size: int, seed: int, max_steps: int, max_attempts_factor: int
) -> None:
    checks = [
        ("episodes_per_task", episodes_per_task, episodes_per_task >= 1, "at least 1"),
        ("image_size", image_size, 8 <= image_size <= 1024, "between 8 and 1024"),
        ("seed", seed, seed >= 0, "non-negative"),
        ("max_steps", max_steps, 1 <= max_steps <= MAX_EPISODE_STEPS, f"in 1..{MAX_EPISODE_STEPS} (metaworld's limit)"),
        ("max_attempts_factor", max_attempts_factor, max_attempts_factor >= 1, "at least 1"),
    ]
    for name, value, ok, expected in checks:
        if not ok:
            raise ConfigError(f"{name} must be {expected}, got {value}")


class _Progress:
    """A tqdm bar over kept episodes, or nothing."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.bar = None
        if enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc="metaworld demos", unit="ep", dynamic_ncols=True)

    def show(self, task: str, successes: int, attempts: int) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(f"{task} expert {successes}/{attempts}", refresh=True)

    def advance(self, count: int = 1) -> None:
        if self.bar is not None:
            self.bar.update(count)

    def shrink(self, count: int) -> None:
        if self.bar is not None and count:
            self.bar.total -= count
            self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


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
    _check_request(episodes_per_task, image_size, seed, max_steps, max_attempts_factor)
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
            return _report_existing(out, existing, started)
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
        frames_recorded=run.frames_recorded, dataset_bytes=_directory_bytes(out), work_bytes=run.work.size_bytes(),
    )


class _Generation:
    """One run's state: search tasks, hand successes to the recorder, write finished episodes in dataset order."""

    def __init__(
        self, work: WorkDir, cameras: tuple[str, ...], fast_drawing: bool, workers: int | None, show_progress: bool,
        *, total_episodes: int,
    ) -> None:
        self.work, self.cameras, self.fast_drawing = work, cameras, fast_drawing
        self.progress = _Progress(total_episodes, show_progress)
        self.recorder = _Recorder(workers if workers is not None else min(_usable_cpus(), total_episodes))
        self.writer: Any = None  # the LeRobotWriter, set once it is open
        self.kept: list[tuple[str, Attempt]] = []  # dataset order: task by task, attempts in order
        self.recorded = {  # (task, attempt) of the episodes in the cache
            (path.parent.name, int(path.stem.split("-")[1])) for path in work.root.glob("*/episode-*.npz")
        }
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
            self.writer.add_episode(self.work.load_episode(task, attempt, self.cameras))
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
        return TaskReport(
            task=task, attempts=len(attempts), successes=len(kept), episodes=len(kept),
            frames=sum(attempt.length for attempt in kept), seeds_attempted=[attempt.seed for attempt in attempts],
        )

    def _roll_out(self, env: MetaWorldEnv, index: int, cached: Attempt | None) -> Attempt:
        seed = placement_seed(self.work.settings["seed"], env.task, index)
        noise = float(self.work.settings.get("action_noise", 0.0))
        labels, actions, outcome = run_expert(env, seed, action_noise=noise)
        outcome.attempt = index
        if cached is not None and cached != outcome:
            raise C2CError(f"{env.task} attempt {index}: the rollout differs from the one cached in {self.work.root}")
        if outcome.success:
            self.recorder.submit(_RecordJob(
                env.task, index, seed, actions, labels if noise > 0 else None, outcome.digest, self.cameras,
                self.work.settings["image_size"], env.max_steps, self.fast_drawing,
                self.work.episode_path(env.task, index),
            ))
        return outcome

    def close(self, interrupted: bool = False) -> None:
        self.recorder.close(terminate=interrupted)
        self.progress.close()


def _report_existing(out: Path, extra_info: dict[str, Any], started: float) -> GenerationReport:
    work_dir = out.parent / f".{out.name}.work"
    reports = [
        TaskReport(
            task=task, attempts=stats["attempts"], successes=stats["successes"], episodes=stats["episodes"],
            frames=stats["frames"], seeds_attempted=list(stats["seeds_attempted"]),
        )
        for task, stats in extra_info["expert"].items()
    ]
    return GenerationReport(
        out=out, work_dir=work_dir, tasks=reports, seconds=time.perf_counter() - started, frames_recorded=0,
        dataset_bytes=_directory_bytes(out), work_bytes=_directory_bytes(work_dir), already_complete=True,
    )
