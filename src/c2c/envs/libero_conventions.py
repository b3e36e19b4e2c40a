"""LIBERO's conventions, with no LIBERO needed: suites and their step limits, state and action names, cameras,
the conversion of a raw observation to our keys, and checks of suite, task id and camera names.

:mod:`c2c.envs.libero_env` (the environment) uses them and keeps them importable under its own name.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
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
