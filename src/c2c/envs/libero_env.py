"""LIBERO behind our observation convention, with the openpi evaluation protocol built in.

Example::

    env = LiberoEnv("libero_spatial", task_id=0, image_size=128)
    obs = env.reset(init_state_index=0)        # official init state 0, then 10 settling steps (gripper open)
    # (or env.reset_random(seed): the env's own random placement under a seed, for making demonstrations)
    done = False
    while not done:
        obs, success, done = env.step(policy.select_action(obs))   # done: success, or the suite's step limit
    obs["observation.images.image"]    # (128, 128, 3) uint8 agentview, upright
    obs["observation.images.image2"]   # (128, 128, 3) uint8 wrist camera, upright
    obs["observation.state"]           # (8,) float32: eef xyz, eef axis-angle (3), gripper finger qpos (2)
    obs["task"]                        # the task's language instruction
    env.close()

Conventions (the same as :mod:`c2c.data.libero_hdf5` and LeRobot's/openpi's LIBERO data): cameras ``image`` =
``agentview`` and ``image2`` = ``robot0_eye_in_hand``; robosuite renders both upside down, so images are turned 180
degrees (``[::-1, ::-1]``); the state is the end-effector position, the axis-angle of its quaternion and the two
gripper finger positions; actions are 7-dim (delta position, delta axis-angle, gripper -1 open / +1 close) at 20 Hz.

Protocol (openpi's LIBERO example): each episode starts from one of the suite's 50 official init states, then takes
:data:`NUM_WAIT_STEPS` steps of :data:`WAIT_ACTION` while objects settle; after that the policy gets at most
:data:`MAX_STEPS` steps (per suite), and an episode succeeds when LIBERO's ``done`` (its goal check) turns true.

LIBERO is optional (``make setup-libero``). Importing this module does not import it; constructing a
:class:`LiberoEnv` does, and says how to install it when it is missing. LIBERO reads its paths from
``$LIBERO_CONFIG_PATH/config.yaml`` and asks questions on stdin when that file is missing; :func:`import_libero`
points the variable at ``<venv>/libero-config`` (written by the setup script) when it is unset.

Cost on 2 CPU cores (OSMesa), measured with another job using about 1.3 of the cores (an idle machine was seen at
about 0.12 s per step with two 128 px cameras):
making the env 3-7 s; a reset 6-10 s with cameras when robosuite rebuilds the model on every reset
(``hard_reset=True``, plus the 10 settling steps), 2.3 s without; about 0.5 s plus the settling steps with the
soft resets of the demonstration generator (the same starting states, see :class:`LiberoEnv`); a step 320-390 ms with both
cameras at 64, 128 or 224 px (the image size barely matters: per-render overhead and the scene's 300k mesh
triangles dominate), 180 ms with one camera, 22 ms without cameras. Turning off multisampling (``offsamples=0``)
was measured 1.5x faster per step but changes the images (aliasing), so the defaults, which LIBERO's datasets were
rendered with, are kept.

``fast_drawing=True`` (our own demonstrations and the policies trained on them) draws the cameras with our own
MuJoCo renderer instead of robosuite's: visual meshes simplified to the image size (LIBERO's scenes carry about
380k mesh triangles, 33k after simplification at 96 px), no multisampling, shadows or reflections. The simulation
is the same (robosuite runs without any renderer; only a copy of the model that is used for drawing changes). The
images keep LIBERO's orientation but are not identical to robosuite's (mean difference 4.7 grey levels at 96 px),
so a policy is evaluated with the drawing its training data was made with (``c2c eval libero`` reads it from the
dataset record). ``benchmarks/bench_libero_drawing.py --size 96`` (both cameras, another job busy on the machine):
83 ms per step with fast drawing, 296 ms with robosuite's cameras, 36 ms without cameras.
Keep fast-drawing envs and robosuite camera envs in separate processes: a robosuite reset frees its previous
OpenGL context, and with OSMesa that can delete the objects of whichever context is current (seen as wrong images).
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from c2c.envs.libero_conventions import (  # the names of LIBERO's conventions are importable from here too
    ACTION_DIM, ACTION_NAMES, CAMERAS, CONTROL_HZ, DEFAULT_CAMERAS, DEFAULT_SEED, INIT_STATES_PER_TASK, MAX_STEPS,
    NUM_WAIT_STEPS, ROBOSUITE_HORIZON, STATE_DIM, STATE_NAMES, SUITES, TASKS_PER_SUITE, WAIT_ACTION, check_cameras,
    check_suite, check_task_id, convert_observation, libero_state, quat_to_axis_angle, suite_max_steps,
    upright_image,
)
from c2c.errors import ConfigError

__all__ = [
    "ACTION_DIM", "ACTION_NAMES", "CAMERAS", "CONFIG_DIR_NAME", "CONTROL_HZ", "DEFAULT_CAMERAS", "DEFAULT_SEED",
    "INIT_STATES_PER_TASK", "MAX_STEPS", "NUM_WAIT_STEPS", "ROBOSUITE_HORIZON", "SETUP_HINT", "STATE_DIM",
    "STATE_NAMES", "SUITES", "TASKS_PER_SUITE", "WAIT_ACTION", "LiberoEnv", "check_cameras", "check_suite",
    "check_task_id", "configure_libero_paths", "convert_observation", "default_config_dir", "get_suite",
    "import_libero", "libero_available", "libero_state", "quat_to_axis_angle", "suite_max_steps", "suite_tasks",
    "upright_image",
]

SETUP_HINT = "make setup-libero"
CONFIG_DIR_NAME = "libero-config"


# ---------------------------------------------------------------------------------------------------------------
# Importing LIBERO.


def default_config_dir() -> Path:
    """Where ``make setup-libero`` writes LIBERO's config.yaml: ``<this Python's prefix>/libero-config``."""
    return Path(sys.prefix) / CONFIG_DIR_NAME


def configure_libero_paths() -> Path:
    """Set ``LIBERO_CONFIG_PATH`` to :func:`default_config_dir` when unset; returns the config folder in use.

    Raises :class:`ConfigError` when its config.yaml is missing: LIBERO would otherwise stop to ask on stdin.
    """
    if not os.environ.get("LIBERO_CONFIG_PATH"):
        os.environ["LIBERO_CONFIG_PATH"] = str(default_config_dir())
    folder = Path(os.environ["LIBERO_CONFIG_PATH"])
    if not (folder / "config.yaml").is_file():
        raise ConfigError(f"LIBERO config {folder / 'config.yaml'} is missing (LIBERO_CONFIG_PATH={folder}); "
                          f"write it with `{SETUP_HINT}`")
    return folder


def _not_a_macro_notice(record: Any) -> bool:
    """Logging filter: drop robosuite's import-time advice to write a private macro file (we need none)."""
    return "macro" not in record.getMessage()


def libero_available() -> bool:
    """True when the ``libero`` package can be found (nothing is imported)."""
    import importlib.util

    return importlib.util.find_spec("libero") is not None


_LIBERO: SimpleNamespace | None = None


def import_libero() -> SimpleNamespace:
    """LIBERO's ``benchmark`` module and env classes (``OffScreenRenderEnv``, ``ControlEnv``), imported once.

    Raises :class:`ConfigError` naming the fix (``make setup-libero``) when LIBERO or its config is missing.
    """
    global _LIBERO
    if _LIBERO is not None:
        return _LIBERO
    if not libero_available():
        raise ConfigError(f"LIBERO is not installed in this Python environment ({sys.prefix}); install it with "
                          f"`{SETUP_HINT}`")
    configure_libero_paths()
    from c2c.envs.rendering import select_gl_backend  # before robosuite imports mujoco

    select_gl_backend()
    import logging

    logging.getLogger("robosuite_logs").addFilter(_not_a_macro_notice)
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # robosuite's logger.warn calls
            from libero.libero import benchmark
            from libero.libero.envs.env_wrapper import ControlEnv, OffScreenRenderEnv
    except ImportError as err:
        raise ConfigError(f"LIBERO is installed but does not import ({err}); reinstall it with "
                          f"`{SETUP_HINT}`") from None
    _LIBERO = SimpleNamespace(benchmark=benchmark, OffScreenRenderEnv=OffScreenRenderEnv, ControlEnv=ControlEnv)
    return _LIBERO


def get_suite(suite: str) -> Any:
    """LIBERO's benchmark object of ``suite`` (tasks in their natural order, task order index 0)."""
    libero = import_libero()
    with contextlib.redirect_stdout(io.StringIO()):  # "[info] using task orders ..."
        return libero.benchmark.get_benchmark_dict()[check_suite(suite)]()


def suite_tasks(suite: str) -> list[dict[str, Any]]:
    """``[{"task_id", "name", "instruction"}]`` of the suite's tasks (needs LIBERO)."""
    bench = get_suite(suite)
    return [{"task_id": i, "name": bench.get_task(i).name, "instruction": bench.get_task(i).language}
            for i in range(bench.n_tasks)]


# ---------------------------------------------------------------------------------------------------------------
# The environment.


class LiberoEnv:
    """One LIBERO task: ``reset(init_state_index)`` and ``step(action) -> (obs, success, done)`` in our keys."""

    def __init__(
        self,
        suite: str,
        task_id: int,
        *,
        image_size: int = 128,
        render_size: int | None = None,
        cameras: Sequence[str] = DEFAULT_CAMERAS,
        max_steps: int | None = None,
        num_wait_steps: int = NUM_WAIT_STEPS,
        seed: int = DEFAULT_SEED,
        fast_drawing: bool = False,
        hard_reset: bool = True,
    ) -> None:
        """Make the task's simulator (4-16 s).

        ``image_size``: side of the square images handed out; ``render_size``: side LIBERO renders at (None: the
        same, no resizing; e.g. 128, the size of LIBERO's datasets, with a smaller ``image_size`` resizes like a
        dataset converted to that size would be). ``cameras=()`` makes a state-only env that never renders.
        ``max_steps``: policy steps per episode (default: the suite's, :data:`MAX_STEPS`). ``seed``: LIBERO's global
        numpy RNG is seeded with it before every reset, so an episode depends only on (seed, init state, actions).
        ``fast_drawing``: draw the cameras with our renderer on simplified meshes (see the module docstring).
        ``hard_reset``: True (the default: robosuite's, used by LIBERO's own evaluation) compiles the scene anew
        on every reset, about 2 s; False (our demonstration generator) does so on the first reset only, then keeps the compiled
        model, rebuilds the scene's Python objects and resets the simulator's data, about 0.5 s. What a soft reset
        would carry over is put back as a hard reset has it (see :meth:`_reset_simulator`), so both give the same
        placements and starting states, random and official alike: bit for bit on the first reset and on many tasks,
        otherwise within 1e-12 (the constraint solver's last bits differ between a reset MjData and a fresh one;
        contacts can grow such a difference over an episode, as any perturbation). ``make test-slow`` checks every
        task.
        """
        self.suite = check_suite(suite)
        self.task_id = check_task_id(self.suite, task_id)
        self.cameras = check_cameras(cameras)
        if int(image_size) < 8:
            raise ConfigError(f"image_size must be at least 8 pixels, got {image_size}")
        self.image_size = int(image_size)
        self.render_size = self.image_size if render_size is None else int(render_size)
        if self.render_size < 8:
            raise ConfigError(f"render_size must be at least 8 pixels, got {render_size}")
        self.max_steps = suite_max_steps(self.suite) if max_steps is None else int(max_steps)
        if int(num_wait_steps) < 0:
            raise ConfigError(f"num_wait_steps must be >= 0, got {num_wait_steps}")
        self.num_wait_steps = int(num_wait_steps)
        if not 1 <= self.max_steps <= ROBOSUITE_HORIZON - self.num_wait_steps:
            raise ConfigError(f"max_steps must be in 1..{ROBOSUITE_HORIZON - self.num_wait_steps} (robosuite's "
                              f"horizon of {ROBOSUITE_HORIZON} steps less the settling steps), got {max_steps}")
        self.seed = int(seed)
        self.hard_reset = bool(hard_reset)

        libero = import_libero()
        bench = get_suite(self.suite)
        if self.task_id >= bench.n_tasks:
            raise ConfigError(f"unknown task id {self.task_id} for suite {self.suite!r} (valid: 0..{bench.n_tasks - 1})")
        task = bench.get_task(self.task_id)
        self.task_name: str = task.name
        self.instruction: str = task.language
        self.bddl_file = Path(bench.get_task_bddl_file_path(self.task_id))
        self._init_states = np.asarray(bench.get_task_init_states(self.task_id))
        self.fast_drawing = bool(fast_drawing) and bool(self.cameras)
        self._drawing: Any = None  # a c2c.envs.rendering.SimplifiedDrawing once drawn
        self._drawing_source: LiberoEnv | None = None  # the env whose drawing this one uses (share_drawing)
        self._compiled_poses: tuple[np.ndarray, np.ndarray] | None = None  # body_pos, body_quat (soft resets)
        if self.cameras and not self.fast_drawing:
            self._env = libero.OffScreenRenderEnv(
                bddl_file_name=str(self.bddl_file), camera_heights=self.render_size, camera_widths=self.render_size,
                camera_names=[CAMERAS[camera][0] for camera in self.cameras], hard_reset=self.hard_reset)
        else:
            self._env = libero.ControlEnv(
                bddl_file_name=str(self.bddl_file), has_renderer=False, has_offscreen_renderer=False,
                use_camera_obs=False, hard_reset=self.hard_reset)
        self._raw: dict[str, Any] | None = None
        self._steps = 0
        self._done = False
        self._success = False

    # -- episode ---------------------------------------------------------------------------------------------

    @property
    def num_init_states(self) -> int:
        """How many official init states the task has (50)."""
        return len(self._init_states)

    def reset(self, init_state_index: int = 0) -> dict[str, Any]:
        """Start an episode from official init state ``init_state_index``, then take the settling steps.

        Returns the observation after the settling steps (what the policy sees first).
        """
        if self._env is None:
            raise RuntimeError("the env is closed")
        index = int(init_state_index)
        if not 0 <= index < self.num_init_states:
            raise ConfigError(f"init_state_index {init_state_index} out of range for {self.suite} task "
                              f"{self.task_id} (valid: 0..{self.num_init_states - 1})")
        self._env.seed(self.seed)
        self._reset_simulator()
        return self._settle(self._env.set_init_state(self._init_states[index]))

    def reset_random(self, seed: int) -> dict[str, Any]:
        """Start an episode from the env's own random object placement under ``seed``, then the settling steps.

        LIBERO's global numpy RNG (which its placement samplers draw from) is seeded with ``seed`` before the reset;
        the official init states are not used (they are kept for evaluation). Returns the observation after the
        settling steps.

        On most tasks the placement depends only on ``seed``. On some it also depends on how many resets the env
        has done, with robosuite's hard resets and with soft ones alike (the same sequence): on libero_spatial task
        4, seed 99 on an env's 1st to 6th reset placed every object and the drawer up to 4 cm apart (the seeds of the
        earlier resets do not matter). A recorded seed therefore reproduces its scene in an env that has done as
        many resets before it.
        """
        if self._env is None:
            raise RuntimeError("the env is closed")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= int(seed) < 2**32:
            raise ConfigError(f"reset_random needs a seed in 0..2**32-1, got {seed!r}")
        self._env.seed(int(seed))
        return self._settle(self._reset_simulator())

    def _reset_simulator(self) -> dict[str, Any]:
        """LIBERO's reset (a random placement), soft unless ``hard_reset``: what a soft reset would carry over is
        first put back as robosuite's hard reset has it; only the compile (about 2 s) is skipped.

        - robosuite's hard reset first rebuilds the scene's Python objects (``_load_model``: the MJCF, the objects,
          the robots with their grippers and LIBERO's placement samplers), then compiles them. The rebuild is kept
          (about 0.3 s). Without it the samplers drew other placements for the same seed on some tasks
          (libero_spatial task 4: fixtures 1 cm and the bowl 4 cm elsewhere), and the Panda gripper's integrated
          command (``current_action``) carried the last episode's grip into the settling steps.
        - Fixtures (stove, cabinet, ...) are placed by writing ``model.body_pos`` / ``body_quat``, and LIBERO places
          objects that stand on a fixture relative to where the fixture is *before* its new placement: the compiled
          position after a hard reset, the last episode's after a soft one (the bowl then missed the stove and the
          expert failed every libero_spatial task 7 attempt). Those two arrays, the only model arrays a reset
          changes (checked on tasks of three suites), get the compiled values back, taken from a second compile of
          the XML that the first (hard) reset compiled (about 2 s, once).
        """
        robosuite_env = self._env.env
        if self.hard_reset:
            return self._env.reset()
        if self._compiled_poses is None:  # the first reset is a hard one: that episode is bit for bit robosuite's
            import mujoco

            robosuite_env.hard_reset = True
            try:
                raw = self._env.reset()
            finally:
                robosuite_env.hard_reset = False
            compiled = mujoco.MjModel.from_xml_string(robosuite_env.model.get_xml())  # what that reset compiled
            self._compiled_poses = (compiled.body_pos.copy(), compiled.body_quat.copy())
            return raw
        model = robosuite_env.sim.model._model
        model.body_pos[:], model.body_quat[:] = self._compiled_poses
        robosuite_env._load_model()  # the scene's Python objects and samplers, as a hard reset rebuilds them
        return self._env.reset()

    def _settle(self, raw: Any) -> dict[str, Any]:
        """The protocol's wait steps (gripper open, no motion) after a reset; starts the episode's counters."""
        for _ in range(self.num_wait_steps):
            raw, _reward, _done, _info = self._env.step(list(WAIT_ACTION))
        self._raw = raw
        self._steps = 0
        self._done = False
        self._success = False
        return self.observation()

    @property
    def libero_env(self) -> Any:
        """LIBERO's env object (``ControlEnv`` or ``OffScreenRenderEnv``); its ``.env`` holds the simulator."""
        if self._env is None:
            raise RuntimeError("the env is closed")
        return self._env

    def step(self, action: Sequence[float] | np.ndarray, render: bool = True) -> tuple[dict[str, Any], bool, bool]:
        """Apply ``action`` (7,); returns ``(observation, success, done)``.

        ``success`` is LIBERO's goal check after the step; ``done`` is True on success or once ``max_steps``
        actions were taken; stepping further raises. Actions are passed on unclipped (robosuite clips to [-1, 1]).
        ``render=False`` with ``fast_drawing`` leaves the images out of the observation (state and instruction only;
        :meth:`observation` draws them later from the same state if wanted): for the steps whose images nobody
        reads, e.g. those a policy fills from an already predicted chunk. Drawing never changes the simulation.
        Without ``fast_drawing`` robosuite draws the cameras inside its own step, so ``render`` changes nothing.
        """
        if self._raw is None:
            raise RuntimeError("call reset(init_state_index) or reset_random(seed) before step()")
        if self._done:
            raise RuntimeError(f"the episode ended after {self._steps} steps; call reset(init_state_index) first")
        values = np.asarray(action, dtype=np.float64).reshape(-1)
        if values.shape != (ACTION_DIM,):
            raise ConfigError(f"LIBERO actions have {ACTION_DIM} values (dx dy dz droll dpitch dyaw gripper), got "
                              f"shape {np.shape(action)}")
        if not np.isfinite(values).all():
            raise ConfigError(f"LIBERO action has non-finite values: {values.tolist()}")
        raw, _reward, done, _info = self._env.step(values.tolist())
        self._raw = raw
        self._steps += 1
        self._success = bool(done)
        self._done = self._success or self._steps >= self.max_steps
        return self.observation(images=render), self._success, self._done

    # -- observations ----------------------------------------------------------------------------------------

    @property
    def steps(self) -> int:
        """Policy steps taken since the last reset (settling steps not counted)."""
        return self._steps

    @property
    def raw_observation(self) -> dict[str, Any]:
        """LIBERO's latest observation dict, as it came (images upside down)."""
        if self._raw is None:
            raise RuntimeError("call reset(init_state_index) first")
        return self._raw

    def observation(self, images: bool = True) -> dict[str, Any]:
        """The latest observation in our keys (see :func:`convert_observation`; ``images``: see :meth:`observe`)."""
        return self.observe(self.raw_observation, images=images)

    def observe(self, raw: Mapping[str, Any], images: bool = True) -> dict[str, Any]:
        """A raw LIBERO observation of this env's simulator in our keys; with ``fast_drawing`` the cameras are drawn
        from the simulator's current state (``raw`` then carries no images), or, when ``images`` is False, not
        drawn: the observation then has no image entries. Without ``fast_drawing`` the images come with ``raw``
        and are always converted."""
        if self.fast_drawing:
            if not images:
                return convert_observation(raw, self.instruction, (), self.image_size)
            raw = {**raw, **self._draw()}
        return convert_observation(raw, self.instruction, self.cameras, self.image_size)

    def _draw(self) -> dict[str, np.ndarray]:
        """LIBERO's raw camera images (robosuite's orientation) drawn by our renderer."""
        sim = self.libero_env.env.sim
        model, data = sim.model._model, sim.data._data
        if self._drawing is None and self._drawing_source is not None:
            self._drawing = self._drawing_source._drawing
        if self._drawing is None or not self._drawing.fits(model):
            import mujoco

            from c2c.envs.rendering import SimplifiedDrawing

            option = mujoco.MjvOption()
            option.geomgroup[0] = 0  # robosuite's collision geoms (group 0) are not drawn, as by its own renderer
            self._drawing = SimplifiedDrawing(model, {camera: CAMERAS[camera][0] for camera in self.cameras},
                                              self.render_size, option)
        # Our renderer gives upright images; robosuite's raw images are upright ones turned 180 degrees and
        # mirrored, i.e. flipped top to bottom (``upright_image`` turns them back).
        return {CAMERAS[camera][1]: image[::-1] for camera, image in self._drawing.render(data).items()}

    def share_drawing(self, other: LiberoEnv) -> None:
        """With fast drawing, draw with ``other``'s simplified scene once it has drawn (an env of the same task):
        one copy and one renderer for both, not a renderer remade at every switch. Nothing to share otherwise."""
        if self.fast_drawing and other.fast_drawing:
            if (other.suite, other.task_id, other.render_size) != (self.suite, self.task_id, self.render_size):
                raise ConfigError(f"share_drawing: {other.suite} task {other.task_id} at {other.render_size} px is "
                                  f"not {self.suite} task {self.task_id} at {self.render_size} px")
            self._drawing_source = other

    def check_success(self) -> bool:
        """LIBERO's goal check on the current state."""
        return bool(self._env.check_success())

    def close(self) -> None:
        """Release the simulator and its renderer."""
        env, self._env = getattr(self, "_env", None), None
        drawing, self._drawing = getattr(self, "_drawing", None), None
        if drawing is not None:
            drawing.close()
        if env is not None:
            env.close()

    def __enter__(self) -> "LiberoEnv":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
