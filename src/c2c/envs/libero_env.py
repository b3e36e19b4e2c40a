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
import difflib
import io
import os
import sys
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from c2c.constants import OBS_STATE, TASK, image_key
from c2c.errors import ConfigError

# Policy steps after the settling steps, per suite (openpi; LeRobot uses 280 for libero_spatial).
MAX_STEPS: dict[str, int] = {"libero_spatial": 220, "libero_object": 280, "libero_goal": 300, "libero_10": 520}
SUITES: tuple[str, ...] = tuple(MAX_STEPS)
TASKS_PER_SUITE = 10
INIT_STATES_PER_TASK = 50
NUM_WAIT_STEPS = 10  # settling steps after the init state is set
WAIT_ACTION: tuple[float, ...] = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, -1.0)  # stand still, gripper open
DEFAULT_SEED = 7  # openpi's seed of LIBERO's global numpy RNG
CONTROL_HZ = 20
ROBOSUITE_HORIZON = 1000  # LIBERO's envs refuse to step past this many steps after a reset
STATE_DIM = 8
ACTION_DIM = 7
STATE_NAMES = ("x", "y", "z", "axis_angle_x", "axis_angle_y", "axis_angle_z", "gripper_left", "gripper_right")
ACTION_NAMES = ("dx", "dy", "dz", "droll", "dpitch", "dyaw", "gripper")
# Our camera name -> (robosuite camera, key of its image in LIBERO's observation).
CAMERAS: dict[str, tuple[str, str]] = {
    "image": ("agentview", "agentview_image"),
    "image2": ("robot0_eye_in_hand", "robot0_eye_in_hand_image"),
}
DEFAULT_CAMERAS: tuple[str, ...] = ("image", "image2")
SETUP_HINT = "make setup-libero"
CONFIG_DIR_NAME = "libero-config"


# ---------------------------------------------------------------------------------------------------------------
# Pure conversions (no LIBERO needed).


def quat_to_axis_angle(quat: Sequence[float] | np.ndarray) -> np.ndarray:
    """(3,) float64 axis-angle (unit axis times angle) of a robosuite quaternion ``(x, y, z, w)``.

    The formula robosuite (``transform_utils.quat2axisangle``), LIBERO's datasets and openpi use: angle
    ``2 acos(w)`` in [0, 2 pi] without choosing the shorter of q and -q, so the state matches theirs exactly. A
    (near) identity rotation gives zeros; ``w`` is clipped to [-1, 1] first.
    """
    q = np.asarray(quat, dtype=np.float64).reshape(-1)
    if q.shape != (4,):
        raise ValueError(f"expected a quaternion (x, y, z, w) of 4 numbers, got shape {np.shape(quat)}")
    w = float(np.clip(q[3], -1.0, 1.0))
    sin_half = np.sqrt(1.0 - w * w)
    if np.isclose(sin_half, 0.0):
        return np.zeros(3, dtype=np.float64)
    return q[:3] * (2.0 * np.arccos(w)) / sin_half


def libero_state(raw: Mapping[str, Any]) -> np.ndarray:
    """(8,) float32 state of a raw LIBERO observation: eef pos (3), axis-angle of eef quat (3), gripper qpos (2)."""
    parts = []
    for key, size in (("robot0_eef_pos", 3), ("robot0_eef_quat", 4), ("robot0_gripper_qpos", 2)):
        if key not in raw:
            raise ConfigError(f"LIBERO observation lacks {key!r} (have: {', '.join(sorted(raw))})")
        value = np.asarray(raw[key], dtype=np.float64).reshape(-1)
        if value.shape != (size,):
            raise ConfigError(f"LIBERO observation {key!r}: expected {size} numbers, got shape {value.shape}")
        parts.append(quat_to_axis_angle(value) if key == "robot0_eef_quat" else value)
    return np.concatenate(parts).astype(np.float32)


def upright_image(raw_image: np.ndarray, image_size: int | None = None, key: str = "image") -> np.ndarray:
    """A robosuite camera image turned 180 degrees (upright), as a new C-contiguous (H, W, 3) uint8 array.

    With ``image_size``, the upright image is resized to a square of that side (PIL bilinear, antialiased when
    shrinking) unless it already has that size.
    """
    image = np.asarray(raw_image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ConfigError(f"{key}: expected a uint8 (H, W, 3) image, got {image.dtype} {tuple(image.shape)}")
    upright = np.ascontiguousarray(image[::-1, ::-1])
    if image_size is not None and upright.shape[:2] != (image_size, image_size):
        from PIL import Image

        resized = Image.fromarray(upright).resize((image_size, image_size), Image.Resampling.BILINEAR)
        upright = np.asarray(resized, dtype=np.uint8).copy()
    return upright


def convert_observation(raw: Mapping[str, Any], instruction: str, cameras: Sequence[str] = DEFAULT_CAMERAS,
                        image_size: int | None = None) -> dict[str, Any]:
    """A raw LIBERO observation -> ``{"observation.images.<cam>", "observation.state", "task"}``.

    ``cameras``: our names (``image``, ``image2``; see :data:`CAMERAS`); each one's raw image must be present.
    ``image_size``: resize the upright images to this square side (None: keep the rendered size).
    """
    obs: dict[str, Any] = {}
    for camera in check_cameras(cameras):
        raw_key = CAMERAS[camera][1]
        if raw_key not in raw:
            raise ConfigError(f"LIBERO observation lacks {raw_key!r} (camera {camera!r}; was the env made with it?)")
        obs[image_key(camera)] = upright_image(raw[raw_key], image_size, key=raw_key)
    obs[OBS_STATE] = libero_state(raw)
    obs[TASK] = str(instruction)
    return obs


# ---------------------------------------------------------------------------------------------------------------
# Checks of names and numbers (no LIBERO needed).


def check_suite(suite: str) -> str:
    """The suite name; raises :class:`ConfigError` naming an unknown one (with a "did you mean")."""
    if suite not in MAX_STEPS:
        close = difflib.get_close_matches(str(suite), SUITES, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"unknown LIBERO suite {suite!r} (known: {', '.join(SUITES)}){hint}")
    return suite


def check_task_id(suite: str, task_id: Any) -> int:
    """The task id as an int in [0, 10); raises :class:`ConfigError` naming a bad one."""
    if isinstance(task_id, bool) or not isinstance(task_id, (int, np.integer)):
        raise ConfigError(f"LIBERO task id must be an integer in 0..{TASKS_PER_SUITE - 1}, got {task_id!r}")
    value = int(task_id)
    if not 0 <= value < TASKS_PER_SUITE:
        raise ConfigError(f"unknown task id {value} for suite {suite!r} (valid: 0..{TASKS_PER_SUITE - 1})")
    return value


def check_cameras(cameras: Sequence[str]) -> tuple[str, ...]:
    """The cameras as a tuple; raises :class:`ConfigError` naming an unknown or repeated camera."""
    cameras = tuple(cameras)
    for camera in cameras:
        if camera not in CAMERAS:
            raise ConfigError(f"unknown LIBERO camera {camera!r} (known: 'image' = agentview, 'image2' = wrist)")
    if len(set(cameras)) != len(cameras):
        raise ConfigError(f"cameras are repeated: {', '.join(cameras)}")
    return cameras


def suite_max_steps(suite: str) -> int:
    """Policy steps allowed per episode in ``suite`` (after the settling steps)."""
    return MAX_STEPS[check_suite(suite)]


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


def _configure_rendering() -> None:
    # The GL backend is chosen when mujoco/robosuite is imported: OSMesa renders on the CPU (EGL needs a GPU).
    if "MUJOCO_GL" not in os.environ:
        os.environ["MUJOCO_GL"] = "osmesa"
    if os.environ["MUJOCO_GL"] == "osmesa":
        os.environ.setdefault("PYOPENGL_PLATFORM", "osmesa")


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
    _configure_rendering()
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
        self._drawing: _Drawing | None = None
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

    def step(self, action: Sequence[float] | np.ndarray) -> tuple[dict[str, Any], bool, bool]:
        """Apply ``action`` (7,); returns ``(observation, success, done)``.

        ``success`` is LIBERO's goal check after the step; ``done`` is True on success or once ``max_steps``
        actions were taken; stepping further raises. Actions are passed on unclipped (robosuite clips to [-1, 1]).
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
        return self.observation(), self._success, self._done

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

    def observation(self) -> dict[str, Any]:
        """The latest observation in our keys (see :func:`convert_observation`)."""
        return self.observe(self.raw_observation)

    def observe(self, raw: Mapping[str, Any]) -> dict[str, Any]:
        """A raw LIBERO observation of this env's simulator in our keys; with ``fast_drawing`` the cameras are drawn
        from the simulator's current state (``raw`` then carries no images)."""
        if self.fast_drawing:
            raw = {**raw, **self._draw()}
        return convert_observation(raw, self.instruction, self.cameras, self.image_size)

    def _draw(self) -> dict[str, np.ndarray]:
        """LIBERO's raw camera images (robosuite's orientation) drawn by our renderer."""
        sim = self.libero_env.env.sim
        model, data = sim.model._model, sim.data._data
        if self._drawing is None or not self._drawing.fits(model):
            self._drawing = _Drawing(model, self.cameras, self.render_size)
        return self._drawing.render(data)

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


class _Drawing:
    """Our renderer on a copy of a LIBERO model whose visual meshes are simplified (``fast_drawing``).

    With ``hard_reset=True`` robosuite compiles a new model on every reset; the copy, its simplification (2-3 s) and
    the renderer are reused as long as the new model has the same structure (a hash of its sizes, geoms, meshes and
    cameras), which holds for every reset of one task: only the placement (the state) changes.
    """

    def __init__(self, model: Any, cameras: Sequence[str], size: int) -> None:
        import copy

        import mujoco

        from c2c.envs.metaworld_env import mesh_cell_size, simplify_visual_meshes

        self.key = _model_structure(model)
        self.model = copy.deepcopy(model)
        simplify_visual_meshes(self.model, mesh_cell_size(size))
        self.size = int(size)
        self.raw_keys = [CAMERAS[camera][1] for camera in cameras]
        self.camera_ids = []
        for camera in cameras:
            camera_id = mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_CAMERA, CAMERAS[camera][0])
            if camera_id < 0:
                raise ConfigError(f"the LIBERO scene has no camera {CAMERAS[camera][0]!r} (camera {camera!r})")
            self.camera_ids.append(camera_id)
        self.option = mujoco.MjvOption()
        self.option.geomgroup[0] = 0  # robosuite's collision geoms (group 0) are not drawn, as by its own renderer

    def fits(self, model: Any) -> bool:
        return _model_structure(model) == self.key

    def render(self, data: Any) -> dict[str, np.ndarray]:
        from c2c.envs.metaworld_env import renderer_for

        renderer = renderer_for(self.model, self.size)
        # Our renderer gives upright images; robosuite's raw images are upright ones turned 180 degrees and
        # mirrored, i.e. flipped top to bottom (``upright_image`` turns them back).
        return {key: renderer.render(data, camera_id, self.option)[::-1]
                for key, camera_id in zip(self.raw_keys, self.camera_ids, strict=True)}

    def close(self) -> None:
        from c2c.envs.metaworld_env import close_renderer

        close_renderer(self.model)


def _model_structure(model: Any) -> str:
    """A hash of what drawing depends on besides the state: sizes, geoms, meshes, materials and cameras."""
    import hashlib

    digest = hashlib.sha1()
    digest.update(np.array([model.nq, model.nv, model.nbody, model.ngeom, model.nmesh, model.nmat, model.ntex,
                            model.ncam], dtype=np.int64).tobytes())
    for name in ("geom_type", "geom_dataid", "geom_bodyid", "geom_size", "geom_rgba", "geom_matid", "geom_group",
                 "mesh_vertnum", "mesh_facenum", "mat_rgba", "cam_fovy", "cam_bodyid", "cam_pos", "cam_quat"):
        digest.update(np.ascontiguousarray(getattr(model, name)).tobytes())
    return digest.hexdigest()
