"""What the scripted LIBERO skills read from a scene, and the plan of skills that reaches a task's goal.

:func:`plan_skills` turns the goal's predicates (``env.env.parsed_problem['goal_state']``) into a list of
:class:`Step` (see :mod:`c2c.envs.libero_skills` for the skills and their order); the scene queries find drawers
(their slide joint, opening direction, handle and floor), whether a drawer is open, and whether an object is pushed
rather than carried.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from c2c.envs.libero_geometry import FINGER_REACH, body_shape
from c2c.errors import ConfigError

PUSH_MAX_HEIGHT = 0.025  # objects lower than this and wider than the open fingers are pushed, not carried


@dataclass(frozen=True)
class Step:
    """One skill of a plan: ``kind`` in open | close | turn_on | push | place."""

    kind: str
    target: str  # region site or fixture (open, close, turn_on, push/place target)
    obj: str = ""  # the object moved (push, place)
    predicate: str = ""  # in | on (place, push)
    slot: int = 0  # index among the objects bound for the same target
    slots: int = 1


# ---------------------------------------------------------------------------------------------------------------
# Scene queries.


def articulation(task_env: Any, name: str) -> dict[str, Any]:
    entity = task_env.get_object(name)
    props = getattr(entity, "object_properties", {}) or {}
    return props.get("articulation", {}) if isinstance(props, dict) else {}


def drawer_joint(task_env: Any, region: str) -> tuple[str, Any] | None:
    """(slide joint name, parent fixture) of a drawer region site, or None when ``region`` is no drawer."""
    site = task_env.object_sites_dict.get(region)
    if site is None or not getattr(site, "joints", None):
        return None
    parent = task_env.get_object(site.parent_name)
    model = task_env.sim.model
    joint = site.joints[0]
    if parent is None or int(model.jnt_type[model.joint_name2id(joint)]) != 2:  # 2: slide
        return None
    if not articulation(task_env, site.parent_name).get("default_open_ranges"):
        return None
    return joint, parent


def joint_qpos(sim: Any, joint: str) -> float:
    return float(sim.data.qpos[sim.model.get_joint_qpos_addr(joint)])


def joint_body_geoms(sim: Any, joint: str) -> tuple[int, list[int]]:
    model = sim.model
    body = int(model.jnt_bodyid[model.joint_name2id(joint)])
    geoms = [g for g in range(model.ngeom) if int(model.geom_bodyid[g]) == body
             and (model.geom_contype[g] or model.geom_conaffinity[g])]
    return body, geoms


def geom_box(sim: Any, geom: int) -> np.ndarray:
    model, data = sim.model, sim.data
    signs = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], dtype=np.float64)
    centre, half = model.geom_aabb[geom][:3], model.geom_aabb[geom][3:]
    rotation = np.asarray(data.geom_xmat[geom], dtype=np.float64).reshape(3, 3)
    corners = np.asarray(data.geom_xpos[geom], dtype=np.float64) + (centre + signs * half) @ rotation.T
    return np.stack([corners.min(axis=0), corners.max(axis=0)])


def drawer_direction(task_env: Any, region: str) -> np.ndarray:
    """(3,) unit world direction in which the drawer of ``region`` opens."""
    joint, parent = drawer_joint(task_env, region)
    sim = task_env.sim
    model = sim.model
    jid = model.joint_name2id(joint)
    body = int(model.jnt_bodyid[jid])
    axis = np.asarray(sim.data.body_xmat[body], dtype=np.float64).reshape(3, 3) @ model.jnt_axis[jid]
    ranges = parent.object_properties["articulation"]["default_open_ranges"]
    direction = axis * math.copysign(1.0, float(np.mean(ranges)))
    direction[2] = 0.0
    return direction / np.linalg.norm(direction)


def handle_box(task_env: Any, region: str) -> np.ndarray:
    """(2, 3) world box of the drawer's handle: its geoms that stick out furthest along the opening direction."""
    joint, _ = drawer_joint(task_env, region)
    sim = task_env.sim
    _, geoms = joint_body_geoms(sim, joint)
    direction = drawer_direction(task_env, region)
    boxes = [geom_box(sim, g) for g in geoms]
    reach = [float(max(box[0] @ direction, box[1] @ direction)) for box in boxes]
    front = max(reach)
    handle = [box for box, value in zip(boxes, reach) if value > front - 0.004]
    stacked = np.stack(handle)
    return np.stack([stacked[:, 0].min(axis=0), stacked[:, 1].max(axis=0)])


def drawer_floor(task_env: Any, region: str) -> float:
    """Height of the inner floor of a drawer region: the highest top of its drawer's geoms under the site."""
    joint, _ = drawer_joint(task_env, region)
    sim = task_env.sim
    _, geoms = joint_body_geoms(sim, joint)
    centre = np.asarray(sim.data.get_site_xpos(region), dtype=np.float64)
    tops = []
    for g in geoms:
        box = geom_box(sim, g)
        if np.all(box[0, :2] <= centre[:2]) and np.all(centre[:2] <= box[1, :2]) and box[1, 2] < centre[2]:
            tops.append(float(box[1, 2]))
    return max(tops) if tops else float(centre[2] - 0.05)


def is_open(task_env: Any, region: str) -> bool:
    joint, parent = drawer_joint(task_env, region)
    return bool(parent.is_open(joint_qpos(task_env.sim, joint)))


def is_pushed(task_env: Any, obj: str) -> bool:
    """Whether ``obj`` is flat and wider than the open fingers every way (a plate): it is pushed, not carried."""
    entity = task_env.objects_dict[obj]
    shape = body_shape(task_env.sim, obj, entity.root_body)
    size = shape.hi - shape.lo
    return bool(size[2] < PUSH_MAX_HEIGHT and min(size[0], size[1]) > FINGER_REACH)


def _has_turn_on(task_env: Any, name: str) -> bool:
    entity = task_env.get_object(name)
    return entity is not None and hasattr(entity, "turn_on") and bool(getattr(entity, "joints", None))


def plan_skills(task_env: Any) -> list[Step]:
    """The skills that reach the goal of ``task_env`` (LIBERO's problem env), in order.

    Raises :class:`ConfigError` for predicates no skill achieves.
    """
    goal = [[str(item) for item in predicate] for predicate in task_env.parsed_problem["goal_state"]]
    first: list[Step] = []
    middle: list[Step] = []
    last: list[Step] = []
    moves = [predicate for predicate in goal if predicate[0].lower() in ("in", "on") and len(predicate) == 3]
    for predicate in goal:
        kind = predicate[0].lower()
        if kind == "open" and len(predicate) == 2 and drawer_joint(task_env, predicate[1]):
            first.append(Step("open", predicate[1]))
        elif kind == "close" and len(predicate) == 2 and drawer_joint(task_env, predicate[1]):
            last.append(Step("close", predicate[1]))
        elif kind == "turnon" and len(predicate) == 2 and _has_turn_on(task_env, predicate[1]):
            first.append(Step("turn_on", predicate[1]))
        elif predicate in moves:
            _, obj, target = predicate
            if obj not in task_env.objects_dict:
                raise ConfigError(f"goal object {obj!r} is not a movable object of this task")
            same = [other for other in moves if other[2] == target]
            slot = same.index(predicate)
            if drawer_joint(task_env, target) and not is_open(task_env, target):
                step = Step("open", target)
                if step not in first:
                    first.append(step)
            pushed = kind == "on" and is_pushed(task_env, obj) and target in task_env.object_sites_dict
            middle.append(Step("push" if pushed else "place", target, obj, kind, slot, len(same)))
        else:
            raise ConfigError(f"no scripted skill achieves the goal predicate {predicate}")
    return first + middle + last
