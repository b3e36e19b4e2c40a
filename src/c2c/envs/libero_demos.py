"""Scripted LIBERO demonstrations (libero_object, libero_spatial, libero_goal, libero_10) as a LeRobot v3 dataset.

Example::

    report = generate_libero_demos(suite="libero_object", tasks="all", episodes_per_task=5, image_size=128,
                                   seed=0, out=Path("data/libero_object_demos"))
    print(report.summary())

How an episode is made:

1. Search, without cameras (about 20 ms a step). Attempt ``a`` of a task resets the env to its own random object
   placement under :func:`placement_seed` ``(seed, suite, task, a)`` (LIBERO's numpy RNG is seeded, then
   ``env.reset()``; see :meth:`LiberoEnv.reset_random`), takes the settling steps, and lets
   the expert of :func:`~c2c.envs.libero_experts.make_expert` act until LIBERO's own success check passes or the
   suite's step limit (tasks no expert does raise :class:`ConfigError` naming them, see :data:`UNSUPPORTED_TASKS`).
   Failed attempts are dropped; a task stops after ``episodes_per_task`` successes or
   ``episodes_per_task * max_attempts_factor`` attempts. Every attempted seed is recorded. The official init states
   are never used: they are what policies are evaluated on (asking for them raises :class:`ConfigError`).
2. Record. Each kept episode is rendered with both cameras on (agentview -> ``observation.images.image``, wrist
   -> ``observation.images.image2``, upright), in worker processes: after a reset under the same seed (the same
   scene), each recorded simulator state is set and its action taken again (see :func:`render_rollout`). Pure
   replay of the actions is not used: the env with cameras resets to a state that differs from the camera-less
   one in the last bits (about 1e-14, measured), so it is not bit-for-bit reproducible. Every rendered frame's
   ``observation.state`` is checked against the search's (within 1e-5) and the last step must pass LIBERO's
   success check again. This is the path of ``fast_drawing=False`` (robosuite's cameras).
   With ``fast_drawing`` (the default: our renderer on simplified meshes, see :class:`~c2c.envs.libero_env.LiberoEnv`)
   the search env itself draws both cameras at every step (it has no robosuite renderer, so its rollouts are the
   camera-less ones bit for bit), successful episodes are written as they finish and failed ones dropped: no
   replay. Chunks of attempts then run in parallel worker processes (:func:`_search_chunk`).
3. Write. Episodes go into the dataset task by task in attempt order, with :class:`LeRobotWriter`, atomically;
   ``meta/info.json["c2c"]`` holds the request, ``generator: "libero"``, ``suite`` and ``expert[task_name] =
   {attempts, successes, success_rate, episodes, frames, seeds_attempted}``.

Image size: the cameras are drawn at ``image_size`` px, or at ``render_size`` px and resized to ``image_size`` (PIL
bilinear, :func:`~c2c.envs.libero_env.upright_image`), as robosuite draws LIBERO's own datasets at 128 px and
OpenVLA's regenerated ones (which openpi's and LeRobot's LIBERO datasets come from) at 256 px. ``render_size`` is
recorded in ``meta/info.json["c2c"]`` when given, and ``c2c eval libero`` draws at it by default.

Cache: as for Meta-World (:class:`c2c.envs.metaworld_demos.WorkDir`): ``<out.parent>/.<out.name>.work/`` keeps
every attempt's outcome and every recorded episode, so a rerun of the same command resumes.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from c2c.constants import OBS_STATE, image_key
from c2c.data.episodes import Episode
from c2c.envs.libero_env import (
    ACTION_NAMES, CONTROL_HZ, DEFAULT_CAMERAS, STATE_NAMES, TASKS_PER_SUITE, LiberoEnv, check_suite,
    suite_tasks,
)
from c2c.envs.metaworld_demos import (
    Attempt, GenerationReport, TaskReport, WorkDir, _directory_bytes, _usable_cpus, save_episode_arrays,
)
from c2c.errors import C2CError, ConfigError

WORK_FORMAT = 2  # 2: hopeless attempts stop early (their outcomes are shorter than format 1's)
SEED_BITS = 31
EXPERT_SUITES = ("libero_object", "libero_spatial", "libero_goal", "libero_10")  # suites the scripted experts cover
# Tasks of those suites no scripted expert does (see c2c.envs.libero_skills), with the reason.
UNSUPPORTED_TASKS: dict[str, dict[str, str]] = {
    "libero_goal": {
        "open_the_top_drawer_and_put_the_bowl_inside":
            "the drawer opens, but fetching the bowl from under it pushes it back and the bowl is not placed (0/10)",
    },
    "libero_10": {
        "KITCHEN_SCENE3_turn_on_the_stove_and_put_the_moka_pot_on_it":
            "the stove turns on, but the moka pot is not grasped (its handle and spout defeat the box grasp; 0/3)",
        "KITCHEN_SCENE4_put_the_black_bowl_in_the_bottom_drawer_of_the_cabinet_and_close_it":
            "the bowl goes in, but pushing the drawer shut stalls half way (0/3)",
        "KITCHEN_SCENE8_put_both_moka_pots_on_the_stove":
            "the moka pots are not grasped (0/3)",
        "KITCHEN_SCENE6_put_the_yellow_and_white_mug_in_the_microwave_and_close_it":
            "the mug must go sideways into the microwave and its hinged door be swung shut; no skill does either",
    },
}
PLACEMENTS = ("random",)  # official init states are for evaluation only
# Largest observation.state difference between a set state and the rollout's. Setting a state and stepping is not
# bit-for-bit continuous stepping (the solver's warm start is not part of the state): up to 1.1e-5 was seen on
# libero_object; 1e-4 (m, rad) is far below what a camera shows and far above that noise.
STATE_TOLERANCE = 1e-4


def placement_seed(seed: int, suite: str, task: str, attempt: int) -> int:
    """The reset seed of ``attempt`` of ``task`` under the run seed ``seed`` (a stable hash, < 2**31)."""
    digest = hashlib.sha256(f"c2c/libero/{seed}/{suite}/{task}/{attempt}".encode()).digest()
    return int.from_bytes(digest[:8], "little") % (1 << SEED_BITS)


def parse_task_ids(tasks: str | list[int] | tuple[int, ...]) -> list[int]:
    """``"all"``, ``"0,3"`` or a list of ints -> sorted unique task ids in 0..9."""
    if isinstance(tasks, str):
        if tasks.strip() == "all":
            return list(range(TASKS_PER_SUITE))
        try:
            ids = [int(item) for item in tasks.split(",") if item.strip()]
        except ValueError:
            raise ConfigError(f"--tasks must be 'all' or a comma list of task ids (0..9), got {tasks!r}") from None
    else:
        ids = [int(item) for item in tasks]
    if not ids:
        raise ConfigError("no tasks given")
    bad = [task for task in ids if not 0 <= task < TASKS_PER_SUITE]
    if bad:
        raise ConfigError(f"unknown task ids {bad} (valid: 0..{TASKS_PER_SUITE - 1})")
    return sorted(set(ids))


def check_expert_tasks(suite: str, names: dict[int, str], task_ids: list[int]) -> None:
    """Raise :class:`ConfigError` naming each requested task of ``suite`` that no scripted expert does."""
    unsupported = UNSUPPORTED_TASKS.get(suite, {})
    bad = [f"task {task_id} {names[task_id]!r} ({unsupported[names[task_id]]})" for task_id in task_ids
           if names[task_id] in unsupported]
    if bad:
        raise ConfigError(f"the scripted LIBERO experts cannot do {suite} {'; '.join(bad)}; leave it out of --tasks")


def expert_task_ids(suite: str) -> tuple[list[int], dict[int, str]]:
    """The task ids of ``suite`` a scripted expert does, and ``{task id: reason}`` for the others."""
    unsupported = UNSUPPORTED_TASKS.get(suite, {})
    supported, skipped = [], {}
    for task in suite_tasks(suite):
        if task["name"] in unsupported:
            skipped[task["task_id"]] = unsupported[task["name"]]
        else:
            supported.append(task["task_id"])
    return supported, skipped


def check_placements(placements: str) -> str:
    if placements in ("official", "init_states", "init-states"):
        raise ConfigError("demonstrations are never generated from LIBERO's official init states: those are held "
                          "out for evaluation; demonstrations use the env's own random resets (--placements random)")
    if placements not in PLACEMENTS:
        raise ConfigError(f"unknown placements {placements!r} (known: {', '.join(PLACEMENTS)})")
    return placements


# ---------------------------------------------------------------------------------------------------------------
# Rollouts.


def sim_state(env: LiberoEnv) -> np.ndarray:
    """The simulator's flattened MuJoCo state (time, qpos, qvel, ...)."""
    return np.asarray(env.libero_env.env.sim.get_state().flatten(), dtype=np.float64)


@dataclass
class Rollout:
    """What the camera-less search keeps of one episode."""

    actions: np.ndarray  # (T, 7) float32
    states: np.ndarray  # (T, 8) float32: observation.state before each action
    sim_states: np.ndarray  # (T + 1, S) float64: flattened MuJoCo state before each action and after the last
    outcome: Attempt


def run_expert(env: LiberoEnv, seed: int, images: dict[str, list[np.ndarray]] | None = None) -> Rollout:
    """Roll the expert out from the random reset under ``seed`` until LIBERO's success, ``env.max_steps``, or the
    expert's ``finished`` (it gave up, or its work is done and the success check did not pass: a failure).

    ``outcome.attempt`` is left at -1 for the caller to set; ``outcome.digest`` hashes every simulator state.
    ``images``: camera -> list that receives the frame the expert saw before each action (an env with cameras).
    """
    from c2c.envs.libero_experts import make_expert

    obs = env.reset_random(seed)
    expert = make_expert(env, seed)
    sim_states = [sim_state(env)]
    actions, states = [], []
    success = done = False
    while not done and not expert.finished:  # a hopeless attempt stops early (see libero_experts.SETTLE_STEPS)
        action = expert.act()
        states.append(obs[OBS_STATE])
        for camera, frames in (images or {}).items():
            frames.append(obs[image_key(camera)])
        obs, success, done = env.step(action)
        actions.append(action)
        sim_states.append(sim_state(env))
    sim_array = np.stack(sim_states)
    outcome = Attempt(-1, seed, bool(success), len(actions), hashlib.sha1(sim_array.tobytes()).hexdigest())
    return Rollout(np.stack(actions).astype(np.float32), np.stack(states).astype(np.float32), sim_array, outcome)


def render_rollout(env: LiberoEnv, seed: int, rollout: Rollout) -> dict[str, np.ndarray]:
    """Render ``rollout`` (found from the reset under ``seed``) with the cameras of ``env``.

    Frame 0 is the env's own reset under ``seed``; frame t + 1 comes from setting the recorded simulator state t and
    taking action t. Replaying the actions alone is not bit-for-bit: the env with cameras compiles the same scene
    to a model whose seeded reset differs from the camera-less one's in the last bits (about 1e-14, measured), and
    contacts can grow that over an episode; setting each state keeps every frame within one step of the rollout.
    (Setting state t + 1 directly would not do either: a step's observation is read before MuJoCo's last kinematics
    update, so it lags the state by one 2 ms substep.) Checks each frame's ``observation.state`` against the
    rollout's (:data:`STATE_TOLERANCE`) and that the last step passes LIBERO's success check.
    Returns ``{"actions": (T, 7), "states": (T, 8), "image": (T, H, W, 3), "image2": ...}``: frame t is what the
    expert saw before taking action t.
    """
    length = len(rollout.actions)
    images = {camera: np.empty((length, env.image_size, env.image_size, 3), np.uint8) for camera in env.cameras}
    obs = env.reset_random(seed)  # the same scene
    simulator = env.libero_env
    if sim_state(env).shape != rollout.sim_states.shape[1:]:
        raise C2CError(f"{env.task_name} seed {seed}: the env with cameras has a simulator state of "
                       f"{sim_state(env).shape[0]} numbers, the rollout {rollout.sim_states.shape[1]}")
    success = False
    for t in range(length):
        gap = float(np.abs(obs[OBS_STATE] - rollout.states[t]).max())
        if gap > STATE_TOLERANCE:
            raise C2CError(f"{env.task_name} seed {seed}, frame {t}: the observation.state rendered differs from the "
                           f"rollout's by {gap:.2e}; please report this")
        for camera in env.cameras:
            images[camera][t] = obs[image_key(camera)]
        simulator.set_state(rollout.sim_states[t])
        simulator.env.sim.forward()
        raw, _reward, success, _info = simulator.step(rollout.actions[t].astype(np.float64).tolist())
        obs = env.observe(raw)
    if rollout.outcome.success and not success:
        raise C2CError(f"{env.task_name} seed {seed}: the last step does not pass LIBERO's success check in the env "
                       f"with cameras; please report this")
    return {"actions": rollout.actions, "states": rollout.states, **images}


_worker_env: LiberoEnv | None = None


def _record(suite: str, task_id: int, image_size: int, rollout: Rollout, path: str, fast_drawing: bool = True,
            render_size: int | None = None) -> int:
    """Render one episode into ``path`` (a worker keeps its env between jobs of one task); returns its frames."""
    global _worker_env
    env = _worker_env
    wanted = (suite, task_id, image_size, render_size or image_size, fast_drawing)
    if env is None or (env.suite, env.task_id, env.image_size, env.render_size, env.fast_drawing) != wanted:
        if env is not None:
            env.close()
        env = _worker_env = LiberoEnv(suite, task_id, image_size=image_size, render_size=render_size,
                                      cameras=DEFAULT_CAMERAS, fast_drawing=fast_drawing, hard_reset=False)
    save_episode_arrays(Path(path), render_rollout(env, rollout.outcome.seed, rollout))
    return len(rollout.actions)


def _close_worker_env() -> None:
    global _worker_env
    if _worker_env is not None:
        _worker_env.close()
    _worker_env = None


class _InlineFuture:
    def __init__(self, value: int) -> None:
        self._value = value

    def result(self) -> int:
        return self._value


# ---------------------------------------------------------------------------------------------------------------
# Generation.


@dataclass(frozen=True)
class _ChunkJob:
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


_search_env: LiberoEnv | None = None


def _chunk_env(job: _ChunkJob) -> LiberoEnv:
    """The worker's search env for ``job``'s task: kept between chunks of one task, rebuilt when the task changes."""
    global _search_env
    env = _search_env
    if env is None or (env.suite, env.task_id, env.image_size, env.render_size, env.max_steps) != (
            job.suite, job.task_id, job.image_size, job.render_size or job.image_size, job.max_steps or env.max_steps):
        if env is not None:
            env.close()
        env = _search_env = LiberoEnv(job.suite, job.task_id, image_size=job.image_size, render_size=job.render_size,
                                      cameras=DEFAULT_CAMERAS, max_steps=job.max_steps, fast_drawing=True,
                                      hard_reset=False)
    return env


def _close_search_env() -> None:
    global _search_env
    if _search_env is not None:
        _search_env.close()
    _search_env = None


def _search_chunk(job: _ChunkJob, progress: Any = None) -> tuple[list[Attempt], int]:
    """Run ``job``'s attempts; every successful episode (its frames drawn during the rollout itself) is written to
    the work directory as it finishes. ``progress`` (a queue) receives ``(task_id, attempt)`` per attempt, so the
    parent, the only writer of the attempts files, can save each outcome at once and an interrupted run resumes.
    Returns the attempts and the frames drawn.

    With fast drawing the env has no robosuite renderer, so its rollouts are the camera-less search's. Soft resets
    make an attempt's last bits depend on the episodes run before it in the same env (see ``LiberoEnv``): bit for
    bit on most tasks, within about 1e-14 on some.
    """
    work = WorkDir.existing(Path(job.work_root))
    env = _chunk_env(job)
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


class _TaskSearch:
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


def _search_while_drawing(suite: str, task_ids: list[int], names: dict[int, dict[str, Any]], episodes_per_task: int,
                          max_attempts_factor: int, seed: int, image_size: int, max_steps: int | None, work: WorkDir,
                          workers: int, bar: Any, render_size: int | None = None
                          ) -> tuple[list[TaskReport], list[tuple[int, str, Attempt, Any]], int]:
    """Every task's search with the cameras drawn during the rollouts, in chunks of attempts spread over ``workers``
    processes. Each worker lane keeps to one task while it needs attempts (making an env costs several seconds),
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
    import queue as queues
    from concurrent.futures import FIRST_COMPLETED, Future, wait

    searches = {}
    for task_id in task_ids:
        name = names[task_id]["name"]
        recorded = {int(path.stem.split("-")[1]) for path in (work.root / name).glob("episode-*.npz")}
        searches[task_id] = _TaskSearch(task_id, name, episodes_per_task, episodes_per_task * max_attempts_factor,
                                        work.load_attempts(name), recorded)
    # Chunks of a tenth of a task's episodes: small enough to balance the tail (a chunk takes about 30 s).
    chunk = max(1, -(-episodes_per_task // 10))
    shown = {task_id: 0 for task_id in task_ids}

    def advance(task_id: int, outcome: Attempt) -> None:
        search = searches[task_id]
        if search.finish(outcome):
            work.save_attempts(search.name, search.cached)
        kept = sum(attempt.success for attempt in search.kept_attempts())
        if bar is not None:
            bar.update(kept - shown[task_id])
            done = len(search.outcomes)
            bar.set_postfix_str(f"task {task_id} expert {sum(o.success for o in search.outcomes.values())}/{done}",
                                refresh=True)
        shown[task_id] = kept

    lane_task: dict[int, int] = {}  # worker lane -> the task it works on

    def is_open(search: _TaskSearch) -> bool:
        return search.missing() > 0 and search.next_index < search.max_attempts

    def next_job(lane: int) -> _ChunkJob | None:
        """The next chunk for ``lane``: its own task while that needs attempts (a worker keeps its env: making one
        costs several seconds), else a task no lane has taken yet, else the open task that misses the most."""
        while True:
            current = searches.get(lane_task.get(lane, -1))
            if current is None or not is_open(current):
                taken = set(lane_task.values())
                fresh = [search for search in searches.values() if search.task_id not in taken and is_open(search)]
                helping = [search for search in searches.values() if is_open(search)]
                if not fresh and not helping:
                    return None
                current = fresh[0] if fresh else max(helping, key=lambda item: (item.missing(), -item.task_id))
                lane_task[lane] = current.task_id
            indices = current.take(chunk)
            if indices:
                return _ChunkJob(suite, current.task_id, current.name, indices, seed, image_size, max_steps,
                                 str(work.root), render_size)

    drawn_total = 0
    workers = max(1, workers)
    if workers == 1:
        class _Inline:
            @staticmethod
            def put(item: tuple[int, Attempt]) -> None:
                advance(*item)

        try:
            while (job := next_job(0)) is not None:
                drawn_total += _search_chunk(job, _Inline)[1]
        finally:
            _close_search_env()
    else:
        context = multiprocessing.get_context("spawn")
        with context.Manager() as manager, ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            progress = manager.Queue()
            # One chunk in flight per lane: a finished chunk's process is then the only idle one, so the lane's
            # next chunk goes to it and finds its env ready.
            pending: dict[Future, int] = {}  # future -> lane
            try:
                while True:
                    for lane in sorted(set(range(workers)) - set(pending.values())):
                        if (job := next_job(lane)) is not None:
                            pending[pool.submit(_search_chunk, job, progress)] = lane
                    if not pending:
                        break
                    finished, _ = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                    while True:  # outcomes before the results of their chunks
                        try:
                            advance(*progress.get_nowait())
                        except queues.Empty:
                            break
                    for future in finished:
                        del pending[future]
                        drawn_total += future.result()[1]  # a worker's error is raised here
            except BaseException:
                pool.shutdown(wait=False, cancel_futures=True)
                raise
    reports, kept = [], []
    for task_id in task_ids:
        search = searches[task_id]
        attempts = search.kept_attempts()
        successes = [attempt for attempt in attempts if attempt.success]
        if bar is not None and len(successes) < episodes_per_task:
            bar.total -= episodes_per_task - len(successes)
            bar.refresh()
        reports.append(TaskReport(task=search.name, attempts=len(attempts), successes=len(successes),
                                  episodes=len(successes), frames=sum(attempt.length for attempt in successes),
                                  seeds_attempted=[attempt.seed for attempt in attempts]))
        kept += [(task_id, search.name, attempt, _InlineFuture(0)) for attempt in successes]  # written already
    return reports, kept, drawn_total


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
    for name, value, ok, expected in (
        ("episodes_per_task", episodes_per_task, episodes_per_task >= 1, "at least 1"),
        ("image_size", image_size, 8 <= image_size <= 1024, "between 8 and 1024"),
        ("render_size", render_size, render_size is None or 8 <= render_size <= 1024, "between 8 and 1024"),
        ("seed", seed, seed >= 0, "non-negative"),
        ("max_attempts_factor", max_attempts_factor, max_attempts_factor >= 1, "at least 1"),
    ):
        if not ok:
            raise ConfigError(f"{name} must be {expected}, got {value}")
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
            return _report_existing(out, existing, started)
        raise ConfigError(f"{out} already holds a dataset made with other settings; pass --overwrite to replace it "
                          f"or choose another --out")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise ConfigError(f"--out {out} exists and is not empty; pass --overwrite or choose another --out")

    work = WorkDir(out, settings, overwrite=overwrite)
    workers = workers if workers is not None else min(_usable_cpus(), len(task_ids) * episodes_per_task)
    pool = None
    if workers > 1 and not fast_drawing:
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))
    bar = None
    if show_progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(task_ids) * episodes_per_task, desc=f"{suite} demos", unit="ep", dynamic_ncols=True)
    reports: list[TaskReport] = []
    kept: list[tuple[int, str, Attempt, Any]] = []  # (task id, task name, attempt, future of its recording)
    frames_recorded = 0
    try:
        if fast_drawing:  # the cameras are drawn during the search: no replay, tasks in parallel
            reports, kept, frames_recorded = _search_while_drawing(
                suite, task_ids, names, episodes_per_task, max_attempts_factor, seed, image_size, max_steps, work,
                workers, bar, settings.get("render_size"))
        else:
            for task_id in task_ids:
                name = names[task_id]["name"]
                cached = work.load_attempts(name)
                recorded = {int(path.stem.split("-")[1]) for path in (work.root / name).glob("episode-*.npz")}
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
                            outcome = rollout.outcome  # redone: replaces a cached one (see _search_task)
                            outcome.attempt = index
                            if outcome.success:
                                job = (suite, task_id, image_size, rollout, str(work.episode_path(name, index)),
                                       bool(fast_drawing), settings.get("render_size"))
                                future = pool.submit(_record, *job) if pool else _InlineFuture(_record(*job))
                        elif outcome.success:
                            future = _InlineFuture(0)  # recorded by an earlier run
                        if cached.get(index) != outcome:
                            cached[index] = outcome
                            work.save_attempts(name, cached)
                        attempts.append(outcome)
                        if outcome.success:
                            kept.append((task_id, name, outcome, future))
                            if bar is not None:
                                bar.update(1)
                        if bar is not None:
                            successes = sum(attempt.success for attempt in attempts)
                            bar.set_postfix_str(f"task {task_id} expert {successes}/{len(attempts)}", refresh=True)
                finally:
                    if env is not None:
                        env.close()
                successes = [attempt for attempt in attempts if attempt.success]
                if bar is not None and len(successes) < episodes_per_task:
                    bar.total -= episodes_per_task - len(successes)
                    bar.refresh()
                reports.append(TaskReport(
                    task=name, attempts=len(attempts), successes=len(successes), episodes=len(successes),
                    frames=sum(attempt.length for attempt in successes),
                    seeds_attempted=[attempt.seed for attempt in attempts]))
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
        _close_worker_env()
        if bar is not None:
            bar.close()
    return GenerationReport(
        out=out, work_dir=work.root, tasks=reports, seconds=time.perf_counter() - started,
        frames_recorded=frames_recorded, dataset_bytes=_directory_bytes(out), work_bytes=work.size_bytes(),
    )


def _report_existing(out: Path, extra_info: dict[str, Any], started: float) -> GenerationReport:
    work_dir = out.parent / f".{out.name}.work"
    reports = [TaskReport(task=task, attempts=stats["attempts"], successes=stats["successes"],
                          episodes=stats["episodes"], frames=stats["frames"],
                          seeds_attempted=list(stats["seeds_attempted"]))
               for task, stats in extra_info["expert"].items()]
    return GenerationReport(out=out, work_dir=work_dir, tasks=reports, seconds=time.perf_counter() - started,
                            frames_recorded=0, dataset_bytes=_directory_bytes(out),
                            work_bytes=_directory_bytes(work_dir), already_complete=True)
