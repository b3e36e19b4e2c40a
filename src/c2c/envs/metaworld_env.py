"""Meta-World behind one observation convention, with a cheap CPU renderer.

Example::

    env = MetaWorldEnv("pick-place-v3", cameras=("corner2", "gripperPOV"), image_size=96)
    obs = env.reset(seed=3)                  # object placement drawn from the seed
    done = success = False
    while not (done or success):
        obs, success, done = env.step(env.expert_action())
    obs["observation.images.corner2"]        # (96, 96, 3) uint8, upright
    obs["observation.state"]                 # (4,) float32: hand xyz + gripper opening
    env.close()

Placements: metaworld draws an object/goal vector on every reset; here it comes from ``env.seed(seed)``, so the
same seed gives the same scene and distinct seeds give distinct scenes (not only metaworld's 50 fixed goals).

Rendering (OSMesa, CPU only; numbers for two 96x96 cameras on 2 cores): the stock settings (4x multisampling,
4096 shadow map, reflections) cost about 250 ms a frame here. The renderer (:mod:`c2c.envs.rendering`) switches
the three off (the floor's reflection is not visible at this size), and with ``fast_drawing`` draws meshes
simplified to the image size and leaves the arm out of the gripper camera, which sees it never: about 10 ms a
frame, 20-25x less. A process has ONE live renderer, so switching environments closes the old renderer and makes
a new one.

Orientation: Meta-World's fixed corner cameras are mounted upside down; their images are turned 180 degrees
(see :func:`~c2c.envs.rendering.is_upside_down`), which puts the table at the bottom without mirroring the scene.
gripperPOV looks down between the fingers with the image top pointing away from the robot (+y), as metaworld mounts it.
"""

from __future__ import annotations

import warnings
from typing import Any

# First: importing c2c.envs.rendering picks the GL backend (OSMesa unless MUJOCO_GL says otherwise) before mujoco.
from c2c.envs.rendering import (  # isort: skip
    close_renderer, is_upside_down, mesh_cell_size, renderer_for, simplify_visual_meshes,
)

import mujoco
import numpy as np

from c2c.constants import OBS_STATE, TASK, image_key
from c2c.envs.metaworld_tasks import check_cameras, instruction, resolve_tasks
from c2c.errors import ConfigError

DEFAULT_CAMERAS = ("corner2", "gripperPOV")
# Cameras between the fingers looking down: the arm above them is never in view, so it is not drawn for them.
CAMERAS_INSIDE_HAND = frozenset({"gripperPOV"})
CULL_GROUP = 5  # a geom group that MuJoCo's default drawing options leave out
CONTROL_HZ = 80  # one env step = 5 physics steps of 2.5 ms
MAX_EPISODE_STEPS = 500  # metaworld raises when stepped past this
RAW_STATE_DIM = 39  # hand xyz, gripper, 2 x (object xyz + quat) = 18; the same 18 one step earlier; goal xyz
STATE_DIM = 4  # hand xyz + gripper opening
ACTION_DIM = 4  # hand xyz deltas (x 1/100 m) + gripper effort, each in [-1, 1]
STATE_NAMES = ("x", "y", "z", "gripper")
ACTION_NAMES = ("dx", "dy", "dz", "gripper")


# ---------------------------------------------------------------------------------------------------------------
# Drawing options.


def _body_subtree(model: mujoco.MjModel, root: int) -> set[int]:
    bodies = {root}
    for body in range(root + 1, model.nbody):  # MuJoCo numbers a parent before its children
        if model.body_parentid[body] in bodies:
            bodies.add(body)
    return bodies


def _scene_options(
    model: mujoco.MjModel, cameras: tuple[str, ...], camera_ids: list[int], *, cull: bool
) -> list[mujoco.MjvOption]:
    """One drawing option per camera; with ``cull``, cameras in :data:`CAMERAS_INSIDE_HAND` skip the arm.

    The skipped geoms (the robot's bodies outside the camera's own body subtree) move to :data:`CULL_GROUP`, a
    geom group the default options do not draw; every other camera is given that group back. Geom groups only
    affect drawing. Checked pixel-identical on 8 tasks x 150 steps; gripperPOV costs about 30% less.
    """
    show_all = mujoco.MjvOption()
    show_all.geomgroup[CULL_GROUP] = 1
    inside_hand = [i for i, camera in enumerate(cameras) if camera in CAMERAS_INSIDE_HAND]
    if not cull or not inside_hand or (model.geom_group == CULL_GROUP).any():
        return [show_all for _ in cameras]
    for index in inside_hand:
        camera_body = int(model.cam_bodyid[camera_ids[index]])
        robot = _body_subtree(model, int(model.body_rootid[camera_body]))
        arm = robot - _body_subtree(model, camera_body)
        model.geom_group[np.isin(model.geom_bodyid, list(arm))] = CULL_GROUP
    without_arm = mujoco.MjvOption()  # groups 0-2 drawn, CULL_GROUP not
    return [without_arm if camera in CAMERAS_INSIDE_HAND else show_all for camera in cameras]


# ---------------------------------------------------------------------------------------------------------------
# The environment.


def _make_metaworld_env(task: str) -> Any:
    """A bare metaworld env of ``task`` whose placements come from ``env.seed`` and whose goal is observed.

    Uses metaworld 3.1.1 internals (pinned): the public ``MT1`` benchmark offers 50 fixed placements per seed and
    builds them with 50 resets; we want one placement per seed, as many as needed.
    """
    from metaworld.env_dict import ALL_V3_ENVIRONMENTS

    env = ALL_V3_ENVIRONMENTS[task]()  # render_mode None: gymnasium's renderer is never made
    # The multi-task convention: the goal position is part of the observation (the scripted experts read it).
    env._partially_observable = False
    env.__dict__.pop("sawyer_observation_space", None)  # cached bounds would clip the goal to zero
    env._set_task_called = True
    # Draw the placement from env.np_random (seeded by env.seed) on each reset instead of a frozen task vector.
    env._freeze_rand_vec = False
    env.seeded_rand_vec = True
    return env


class MetaWorldEnv:
    """One Meta-World task with observations ``{"observation.images.<cam>", "observation.state", "task"}``."""

    def __init__(
        self,
        task: str,
        *,
        cameras: tuple[str, ...] | list[str] = DEFAULT_CAMERAS,
        image_size: int = 96,
        max_steps: int = MAX_EPISODE_STEPS,
        fast_drawing: bool = True,
    ) -> None:
        """``cameras=()`` makes a state-only env that never renders (fast rollouts).

        ``fast_drawing``: draw meshes simplified to the image size (:func:`simplify_visual_meshes`) and leave the
        arm out of gripperPOV (:func:`_scene_options`): about 2x cheaper, no visible change at 96 px, same physics.
        """
        tasks = resolve_tasks([task])
        if len(tasks) != 1:
            raise ConfigError(f"MetaWorldEnv takes one task, got {task!r} ({len(tasks)} tasks)")
        self.task = tasks[0]
        self.cameras = check_cameras(tuple(cameras))
        if image_size < 8:
            raise ConfigError(f"image_size must be at least 8 pixels, got {image_size}")
        if not 1 <= max_steps <= MAX_EPISODE_STEPS:
            raise ConfigError(f"max_steps must be in 1..{MAX_EPISODE_STEPS} (metaworld's limit), got {max_steps}")
        self.image_size = int(image_size)
        self.max_steps = int(max_steps)
        self.instruction = instruction(self.task)
        self._env = _make_metaworld_env(self.task)
        if self.cameras and fast_drawing:
            simplify_visual_meshes(self._env.model, mesh_cell_size(self.image_size))
        self._camera_ids = [mujoco.mj_name2id(self._env.model, mujoco.mjtObj.mjOBJ_CAMERA, c) for c in self.cameras]
        self._scene_options = _scene_options(self._env.model, self.cameras, self._camera_ids, cull=fast_drawing)
        self._upside_down = [False] * len(self.cameras)
        self._expert = None
        self._render_model = self._env.model  # the model the process's renderer is made for (share_renderer)
        self._raw_state: np.ndarray | None = None  # (39,) float64, the latest metaworld observation
        self._steps = 0

    # -- episode ---------------------------------------------------------------------------------------------

    def reset(self, seed: int) -> dict[str, Any]:
        """Start an episode on the placement drawn from ``seed`` (a non-negative int); returns the observation."""
        if int(seed) < 0:
            raise ConfigError(f"placement seeds are non-negative integers, got {seed}")
        env = self._env
        # Clear solver warm-starts and other leftovers so an episode does not depend on what ran before it.
        mujoco.mj_resetData(env.model, env.data)
        env.seed(int(seed))
        raw_state, _ = env.reset()
        self._raw_state = np.asarray(raw_state, dtype=np.float64)
        self._steps = 0
        self._upside_down = [is_upside_down(env.data, cam_id) for cam_id in self._camera_ids]
        return self.observation()

    def step(self, action: np.ndarray, render: bool = True) -> tuple[dict[str, Any], bool, bool]:
        """Apply ``action`` (4,) in [-1, 1]; returns ``(observation, success, done)``.

        ``done`` is True once ``max_steps`` actions were taken (truncation); stepping further raises.
        ``render=False`` leaves the images out of the observation (state and instruction only): for the steps whose
        images nobody reads, e.g. those a policy fills from an already predicted chunk. Drawing is about half of an
        evaluation step on a CPU renderer, and it never changes the simulation.
        """
        if self._raw_state is None:
            raise RuntimeError("call reset(seed) before step()")
        if self._steps >= self.max_steps:
            raise RuntimeError(f"the episode ended after {self.max_steps} steps; call reset(seed) first")
        action = np.clip(np.asarray(action, dtype=np.float32).reshape(ACTION_DIM), -1.0, 1.0)
        raw_state, _reward, _terminated, _truncated, info = self._env.step(action)
        self._raw_state = np.asarray(raw_state, dtype=np.float64)
        self._steps += 1
        return self.observation(images=render), bool(info["success"]), self._steps >= self.max_steps

    def expert_action(self) -> np.ndarray:
        """Metaworld's scripted expert's action (4,) float32 for the current state, clipped to [-1, 1]."""
        if self._raw_state is None:
            raise RuntimeError("call reset(seed) before expert_action()")
        if self._expert is None:
            from metaworld.policies import ENV_POLICY_MAP

            self._expert = ENV_POLICY_MAP[self.task]()
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Constant")  # "Constant(s) may be too high": it clips
            # A copy: some experts shift positions inside the observation they are given (door-open does).
            action = self._expert.get_action(self._raw_state.copy())
        return np.clip(np.asarray(action, dtype=np.float32), -1.0, 1.0)

    # -- observations ----------------------------------------------------------------------------------------

    @property
    def raw_state(self) -> np.ndarray:
        """Metaworld's (39,) observation (see :data:`RAW_STATE_DIM`), a copy; the scripted experts read it."""
        if self._raw_state is None:
            raise RuntimeError("call reset(seed) first")
        return self._raw_state.copy()

    @property
    def state(self) -> np.ndarray:
        """(4,) float32: hand xyz + gripper opening."""
        return self.raw_state[:STATE_DIM].astype(np.float32)

    @property
    def steps(self) -> int:
        """Actions taken since the last reset."""
        return self._steps

    @property
    def placement(self) -> np.ndarray:
        """The object/goal vector metaworld drew at the last reset (a copy)."""
        return np.array(self._env._last_rand_vec, dtype=np.float64)

    def render(self) -> dict[str, np.ndarray]:
        """Camera name -> (H, W, 3) uint8 upright image of the current state."""
        if not self.cameras:
            return {}
        renderer = renderer_for(self._render_model, self.image_size)
        views = zip(self.cameras, self._camera_ids, self._scene_options, self._upside_down, strict=True)
        return {
            camera: renderer.render(self._env.data, camera_id, option, rotate_180=upside_down)
            for camera, camera_id, option, upside_down in views
        }

    def share_renderer(self, other: "MetaWorldEnv") -> None:
        """Draw with the renderer made for ``other``'s model: another env of the same task, cameras, size and
        drawing (the same model file; only the simulation states differ), so that envs stepped side by side in one
        process do not remake the process's one renderer at every switch."""
        same = (other.task, other.cameras, other.image_size, other._scene_options is not None)
        if same != (self.task, self.cameras, self.image_size, self._scene_options is not None) \
                or other._env.model.ngeom != self._env.model.ngeom:
            raise ConfigError(f"share_renderer: {other.task} at {other.image_size} px with cameras {other.cameras} "
                              f"cannot draw {self.task} at {self.image_size} px with cameras {self.cameras}")
        self._render_model = other._render_model

    def observation(self, images: bool = True) -> dict[str, Any]:
        """``{"observation.images.<cam>": (H, W, 3) uint8, "observation.state": (4,) float32, "task": str}``
        (without the images when ``images`` is False)."""
        drawn = self.render() if images else {}
        obs: dict[str, Any] = {image_key(camera): image for camera, image in drawn.items()}
        obs[OBS_STATE] = self.state
        obs[TASK] = self.instruction
        return obs

    def close(self) -> None:
        """Release the renderer if it is this env's, and the simulator."""
        close_renderer(self._env.model)
        self._env.close()

    def __enter__(self) -> "MetaWorldEnv":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
