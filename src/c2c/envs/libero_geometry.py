"""Geometry and controller gains shared by the scripted LIBERO experts (:mod:`c2c.envs.libero_experts`,
:mod:`c2c.envs.libero_skills`): rotations, the collision boxes of objects and of the open hand, and the gains of
the proportional-integral controller every waypoint is followed with.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

GAIN = 12.0  # action per metre of position error (1.0 = 0.05 m per step)
INTEGRAL_GAIN = 3.0  # action per metre-step of accumulated error (removes the controller's steady offset)
INTEGRAL_LIMIT = 0.3  # largest integral contribution to an action
ROT_GAIN = 2.0  # action per radian of orientation error (1.0 = 0.5 rad per step)
OPEN, CLOSE = -1.0, 1.0
FINGER_REACH = 0.075  # widest object span the open fingers take (m)
TIP_BELOW_GRIP = 0.013  # fingertips are this far below robot0_eef_pos
# A gripper pointing straight down at yaw 0: its fingers close along world y.
R_DOWN = np.diag([1.0, -1.0, -1.0])


def rot_z(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def quat_to_matrix(quat: np.ndarray) -> np.ndarray:
    """Rotation matrix of a robosuite quaternion ``(x, y, z, w)``."""
    x, y, z, w = np.asarray(quat, dtype=np.float64) / np.linalg.norm(quat)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


def matrix_to_axis_angle(matrix: np.ndarray) -> np.ndarray:
    """(3,) axis times angle of a rotation matrix (angle in [0, pi])."""
    cos = float(np.clip((np.trace(matrix) - 1.0) / 2.0, -1.0, 1.0))
    angle = math.acos(cos)
    if angle < 1e-9:
        return np.zeros(3)
    axis = np.array([matrix[2, 1] - matrix[1, 2], matrix[0, 2] - matrix[2, 0], matrix[1, 0] - matrix[0, 1]])
    norm = np.linalg.norm(axis)
    if norm < 1e-9:  # angle near pi: the axis from the diagonal
        axis = np.sqrt(np.clip((np.diag(matrix) + 1.0) / 2.0, 0.0, None))
        k = int(np.argmax(axis))
        axis = matrix[:, k] + np.eye(3)[k]
        norm = np.linalg.norm(axis)
    return axis / norm * angle


def finger_axis(yaw: float) -> np.ndarray:
    """World xy direction along which the fingers close at gripper yaw ``yaw``."""
    return np.array([-math.sin(yaw), math.cos(yaw)])


def _subtree_bodies(model: Any, root: int) -> list[int]:
    bodies = []
    for body in range(model.nbody):
        node = body
        while node > 0 and node != root:
            node = int(model.body_parentid[node])
        if node == root:
            bodies.append(body)
    return bodies


@dataclass
class Shape:
    """Collision geometry of one object or fixture, in world coordinates at planning time."""

    name: str
    body_id: int
    corners: np.ndarray  # (N, 3) corners of all its collision geoms' boxes
    boxes: np.ndarray  # (G, 2, 3) per geom: (lo, hi) world axis-aligned box

    @property
    def lo(self) -> np.ndarray:
        return self.corners.min(axis=0)

    @property
    def hi(self) -> np.ndarray:
        return self.corners.max(axis=0)


_SIGNS = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], dtype=np.float64)


def body_shape(sim: Any, name: str, root_body: str) -> Shape:
    """The world boxes of the collision geoms under ``root_body`` (all geoms when none collide)."""
    model, data = sim.model, sim.data
    root = int(model.body_name2id(root_body))
    bodies = set(_subtree_bodies(model, root))
    geoms = [g for g in range(model.ngeom) if int(model.geom_bodyid[g]) in bodies]
    colliding = [g for g in geoms if model.geom_contype[g] or model.geom_conaffinity[g]]
    geoms = colliding or geoms
    if not geoms:
        position = np.array(data.body_xpos[root], dtype=np.float64)
        return Shape(name, root, position[None], np.stack([position, position])[None])
    all_corners, boxes = [], []
    for g in geoms:
        centre, half = model.geom_aabb[g][:3], model.geom_aabb[g][3:]
        rotation = np.asarray(data.geom_xmat[g], dtype=np.float64).reshape(3, 3)
        corners = np.asarray(data.geom_xpos[g], dtype=np.float64) + (centre + _SIGNS * half) @ rotation.T
        all_corners.append(corners)
        boxes.append(np.stack([corners.min(axis=0), corners.max(axis=0)]))
    return Shape(name, root, np.concatenate(all_corners), np.stack(boxes))


def box_overlap(lo: np.ndarray, hi: np.ndarray, boxes: np.ndarray) -> float:
    """Summed overlap volume of the box (lo, hi) with each of ``boxes`` (G, 2, 3)."""
    if len(boxes) == 0:
        return 0.0
    extent = np.minimum(hi, boxes[:, 1]) - np.maximum(lo, boxes[:, 0])
    return float(np.prod(np.clip(extent, 0.0, None), axis=1).sum())


def hand_boxes(grip: np.ndarray, yaw: float) -> list[tuple[np.ndarray, np.ndarray]]:
    """Axis-aligned boxes around the open fingers and the hand at grip point ``grip`` and ``yaw``.

    Fingers: 0.10 m along the finger axis, 0.025 m across, from the fingertips to 5 cm above them; hand: 0.21 m
    along, 0.07 m across, from there 10 cm up. (Axis-aligned hulls of the rotated boxes.)
    """
    axis = finger_axis(yaw)
    across = np.array([-axis[1], axis[0]])
    tip = grip[2] - TIP_BELOW_GRIP
    result = []
    for half_along, half_across, z0, z1 in ((0.05, 0.0125, tip, tip + 0.05), (0.105, 0.035, tip + 0.05, tip + 0.15)):
        half_xy = np.abs(axis) * half_along + np.abs(across) * half_across
        result.append((np.array([grip[0] - half_xy[0], grip[1] - half_xy[1], z0]),
                       np.array([grip[0] + half_xy[0], grip[1] + half_xy[1], z1])))
    return result


def near_segment(box: np.ndarray, start: np.ndarray, end: np.ndarray, margin: float) -> bool:
    """Whether the xy of ``box`` (2, 3) comes within ``margin`` of the segment ``start`` -> ``end``."""
    for fraction in np.linspace(0.0, 1.0, 21):
        point = start + fraction * (end - start)
        gap = np.maximum(np.maximum(box[0, :2] - point, point - box[1, :2]), 0.0)
        if np.linalg.norm(gap) < margin:
            return True
    return False


def horizontal_rotation(direction: np.ndarray) -> np.ndarray:
    """Gripper orientation pointing along ``direction`` (horizontal), its fingers closing along world z."""
    z_axis = np.asarray(direction, dtype=np.float64) / np.linalg.norm(direction)
    y_axis = np.array([0.0, 0.0, 1.0])
    x_axis = np.cross(y_axis, z_axis)
    return np.stack([x_axis, y_axis, z_axis], axis=1)


def wrap_yaw(yaw: float) -> float:
    """``yaw`` moved by multiples of pi into [-pi/2, pi/2) (the gripper is symmetric under a half turn)."""
    return (yaw + math.pi / 2) % math.pi - math.pi / 2


def axis_rotation(axis: np.ndarray, angle: float) -> np.ndarray:
    """Rotation matrix of ``angle`` radians about ``axis`` (Rodrigues)."""
    k = np.asarray(axis, dtype=np.float64) / np.linalg.norm(axis)
    cross = np.array([[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]])
    return np.eye(3) + math.sin(angle) * cross + (1.0 - math.cos(angle)) * cross @ cross
