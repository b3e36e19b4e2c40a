"""A scripted pick-and-place expert for LIBERO that reads privileged simulator state.

Example::

    env = LiberoEnv("libero_object", 0, cameras=())          # state only: no rendering
    env.reset_random(seed=12)                                 # the env's own random placement under a seed
    expert = PickPlaceExpert(env, seed=12)
    done = False
    while not done:
        _, success, done = env.step(expert.act())

The expert handles goals made of one ``In`` or ``On`` predicate (``env.env.parsed_problem['goal_state']``), which
covers libero_object (``In(item, basket_1_contain_region)``) and libero_spatial (``On(akita_black_bowl_1,
plate_1)``), and the single placements of libero_goal. Other goals raise :class:`ConfigError` here;
:func:`c2c.envs.libero_skills.make_expert` picks this expert or a sequence of skills (drawers, the stove knob,
pushing, several placements) from the goal, and :func:`c2c.envs.libero_skills.supported_goal` says beforehand
whether either does it. Geometry and controller gains: :mod:`c2c.envs.libero_geometry`.

How it acts (a small state machine; every waypoint is followed with a proportional controller of gain
:data:`GAIN` on the position error, clipped to 1, i.e. at most 0.05 m a step):

1. plan: the object's box comes from its collision geoms (MuJoCo ``geom_aabb`` turned into world corners).
   Objects narrower than the open fingers are grasped at their centre, wide ones (bowls) at the rim. Candidate
   gripper yaws (and, for rims, the two sides) are scored by how much a model of the fingers and the hand overlaps
   the collision boxes of every other object and fixture; the clearest one wins.
2. approach about 8 cm above the grasp point at that yaw, descend, close the gripper for about 15 steps, lift.
3. if the object did not rise with the hand, open, go back up and plan again (at most :data:`MAX_GRASPS` times).
4. carry above the target high enough to clear every object, steering on the object's own xy (it is rarely held
   at its centre), lower it until its bottom is just above the target, open, retreat upwards.

Seeded noise on waypoints (a few mm), heights and phase timing makes demonstrations from one placement differ.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from c2c.envs.libero_geometry import (
    CLOSE, FINGER_REACH, GAIN, INTEGRAL_GAIN, INTEGRAL_LIMIT, OPEN, R_DOWN, ROT_GAIN, TIP_BELOW_GRIP, Shape,
    body_shape, box_overlap, finger_axis, hand_boxes, matrix_to_axis_angle, near_segment, quat_to_matrix, rot_z,
)
from c2c.errors import ConfigError

APPROACH_HEIGHT = 0.08
MAX_GRASPS = 3
# An episode is hopeless once the expert has given up (grasps exhausted) or has retreated this many steps after a
# release without LIBERO's success check passing (2 s at 20 Hz: objects settle within a few steps). The
# demonstration search then stops it instead of running to the suite's step limit (``finished``).
SETTLE_STEPS = 40
GIVE_UP_STEPS = 10
YAW_CANDIDATES = 12
SUPPORTED_PREDICATES = ("in", "on")


# ---------------------------------------------------------------------------------------------------------------
# Goals.


@dataclass(frozen=True)
class Goal:
    predicate: str  # "in" | "on"
    obj: str  # the object to move
    target: str  # object, fixture or region site


def parse_goal(goal_state: list[list[str]]) -> Goal:
    """The single ``In``/``On`` predicate of a BDDL goal; raises :class:`ConfigError` otherwise."""
    if len(goal_state) != 1 or len(goal_state[0]) != 3 or str(goal_state[0][0]).lower() not in SUPPORTED_PREDICATES:
        raise ConfigError(f"the scripted LIBERO expert handles one In/On goal, not {goal_state}")
    predicate, obj, target = goal_state[0]
    return Goal(str(predicate).lower(), str(obj), str(target))


# ---------------------------------------------------------------------------------------------------------------
# The expert.


@dataclass
class Grasp:
    grip: np.ndarray  # (3,) target of robot0_eef_pos when closing
    yaw: float
    cost: float


class PickPlaceExpert:
    """Scripted pick-and-place on the current episode of a :class:`~c2c.envs.libero_env.LiberoEnv`.

    Make one per episode, after the reset; ``act()`` reads the env's latest raw observation and simulator state.
    ``seed`` draws the waypoint and timing noise (``noise=False`` turns it off). ``goal``: the predicate to
    achieve (default: the task's single ``In``/``On`` goal); ``rng``: a generator to draw the noise from instead
    of ``seed`` (shared by the skills of :class:`~c2c.envs.libero_skills.SkillExpert`).
    """

    def __init__(self, env: Any, seed: int = 0, *, noise: bool = True, goal: Goal | None = None,
                 rng: np.random.Generator | None = None) -> None:
        self.env = env
        self.task_env = env.libero_env.env  # LIBERO's problem env (objects_dict, sim, ...)
        self.goal = goal if goal is not None else parse_goal(self.task_env.parsed_problem["goal_state"])
        if self.goal.obj not in self.task_env.objects_dict:
            raise ConfigError(f"goal object {self.goal.obj!r} is not a movable object of this task")
        self.rng = rng if rng is not None else np.random.default_rng(seed)
        self.noise = noise
        self.phase = "plan"
        self.phase_steps = 0
        self.grasps_tried = 0
        self.grasp: Grasp | None = None
        self.waypoint = np.zeros(3)
        self.yaw = 0.0
        self.gripper = OPEN
        self.lift_start_z = 0.0
        self.close_steps = 15
        self.carry_z = 0.0
        self.hold_offset = 0.0  # object bottom below the grip point while held
        self.integral = np.zeros(3)
        self.home = np.asarray(env.raw_observation["robot0_eef_pos"], dtype=np.float64).copy()  # reachable comfortably

    @property
    def finished(self) -> bool:
        """True when nothing the expert still does can complete the task (see :data:`SETTLE_STEPS`)."""
        return ((self.phase == "give_up" and self.phase_steps > GIVE_UP_STEPS)
                or (self.phase == "retreat" and self.phase_steps > SETTLE_STEPS))

    # -- noise -----------------------------------------------------------------------------------------------

    def _jitter(self, scale: float, size: int | None = None) -> Any:
        if not self.noise:
            return np.zeros(size) if size else 0.0
        return self.rng.uniform(-scale, scale, size)

    # -- state -----------------------------------------------------------------------------------------------

    @property
    def sim(self) -> Any:
        return self.task_env.sim

    def _shape(self, name: str) -> Shape:
        env = self.task_env
        entity = env.objects_dict.get(name) or env.fixtures_dict.get(name)
        return body_shape(self.sim, name, entity.root_body)

    def _obstacles(self) -> np.ndarray:
        env = self.task_env
        boxes = [self._shape(name).boxes for name in list(env.objects_dict) + list(env.fixtures_dict)
                 if name != self.goal.obj]
        return np.concatenate(boxes) if boxes else np.zeros((0, 2, 3))

    def _object_pos(self) -> np.ndarray:
        return np.array(self.sim.data.body_xpos[self.task_env.obj_body_id[self.goal.obj]], dtype=np.float64)

    def _target(self) -> tuple[np.ndarray, float]:
        """(xy the object's origin should reach, height of the surface it should end up just above)."""
        env, name = self.task_env, self.goal.target
        if name in env.object_sites_dict:
            site = env.object_sites_dict[name]
            position = np.array(self.sim.data.get_site_xpos(name), dtype=np.float64)
            half = np.asarray(getattr(site, "size", [0.0, 0.0, 0.0]), dtype=np.float64).reshape(-1)
            half_z = float(half[2]) if half.size >= 3 else 0.0
            if self.goal.predicate == "in":
                parent = getattr(site, "parent_name", None)
                floor = position[2] - half_z
                if parent in env.objects_dict or parent in env.fixtures_dict:
                    floor = max(floor, float(self._shape(parent).lo[2]))
                return position[:2], floor
            return position[:2], position[2] + half_z
        shape = self._shape(name)
        return np.array(self.sim.data.body_xpos[shape.body_id][:2], dtype=np.float64), float(shape.hi[2])

    # -- planning --------------------------------------------------------------------------------------------

    def plan_grasp(self) -> Grasp:
        shape = self._shape(self.goal.obj)
        obstacles = self._obstacles()
        lo, hi = shape.lo, shape.hi
        height = hi[2] - lo[2]
        centre_xy = (lo[:2] + hi[:2]) / 2.0
        yaws = np.linspace(-math.pi / 2, math.pi / 2, YAW_CANDIDATES, endpoint=False)
        spans = [shape.corners[:, :2] @ finger_axis(float(yaw)) for yaw in yaws]
        widths = np.array([span.max() - span.min() for span in spans])
        rim = bool(widths.min() > FINGER_REACH)  # no yaw closes the fingers across it: grasp the rim (bowls)
        candidates: list[Grasp] = []
        for yaw, span, width in zip(yaws, spans, widths):
            axis = finger_axis(float(yaw))
            if not rim and width > FINGER_REACH:
                continue
            if not rim:  # the fingers close across the whole object, at its centre
                z = max(hi[2] - min(0.03, 0.6 * height), lo[2] + TIP_BELOW_GRIP + 0.004)
                grips = [(np.array([centre_xy[0], centre_xy[1], z]), 0.0)]
            else:  # the fingers pinch the wall, on one side or the other
                mid_span = (span.max() + span.min()) / 2.0
                radius = width / 2.0
                z = max(hi[2] - 0.02, lo[2] + TIP_BELOW_GRIP + 0.004)
                centre = centre_xy + axis * (mid_span - centre_xy @ axis)
                grips = [(np.array([*(centre + side * (radius - 0.012) * axis), z]), 0.0) for side in (-1.0, 1.0)]
            for grip, bias in grips:
                fingers, hand = (box_overlap(box_lo, box_hi, obstacles) for box_lo, box_hi in hand_boxes(grip, yaw))
                # Prefer clear grasps (fingers matter most), then small turns of the wrist, grasps nearer where the
                # hand started (the arm is weak and slow at the edge of its workspace) and narrow spans.
                reach = float(np.linalg.norm(grip[:2] - self.home[:2]))
                cost = (4 * fingers + hand) * 1e5 + 0.05 * abs(float(yaw)) + 0.5 * reach + 0.2 * width + bias
                candidates.append(Grasp(grip, float(yaw), cost))
        if not candidates:  # nothing fits: the narrowest axis at the centre
            grip = np.array([centre_xy[0], centre_xy[1], hi[2] - 0.02])
            candidates.append(Grasp(grip, 0.0, 0.0))
        best = min(candidates, key=lambda grasp: grasp.cost)
        best.grip = best.grip + np.concatenate([self._jitter(0.004, 2), [self._jitter(0.003)]])
        return best

    # -- control ---------------------------------------------------------------------------------------------

    def _set_phase(self, phase: str) -> None:
        self.phase = phase
        self.phase_steps = 0
        self.integral = np.zeros(3)

    def _rotation_action(self, raw: dict[str, Any]) -> np.ndarray:
        current = quat_to_matrix(raw["robot0_eef_quat"])
        target = rot_z(self.yaw) @ R_DOWN
        error = matrix_to_axis_angle(target @ current.T)
        return np.clip(ROT_GAIN * error, -1.0, 1.0)

    def _yaw_error(self, raw: dict[str, Any]) -> float:
        current = quat_to_matrix(raw["robot0_eef_quat"])
        return float(np.linalg.norm(matrix_to_axis_angle(rot_z(self.yaw) @ R_DOWN @ current.T)))

    def act(self) -> np.ndarray:
        """The next action (7,) float32 for the env's current state."""
        raw = self.env.raw_observation
        eef = np.asarray(raw["robot0_eef_pos"], dtype=np.float64)
        obj = self._object_pos()
        self.phase_steps += 1
        steer = eef  # the point the position error is measured from
        phase = self.phase

        if phase == "plan":
            self.grasp = self.plan_grasp()
            self.grasps_tried += 1
            self.yaw = self.grasp.yaw
            self.approach_height = APPROACH_HEIGHT + self._jitter(0.01)
            self.close_steps = 15 + int(round(self._jitter(2.49)))
            self._set_phase("approach")
            phase = "approach"
            self.phase_steps = 1
        if phase == "approach":
            self.gripper = OPEN
            self.waypoint = self.grasp.grip + np.array([0.0, 0.0, self.approach_height])
            # Rise first when below the approach height, so the hand does not sweep through objects.
            if eef[2] < self.waypoint[2] - 0.02 and np.linalg.norm(eef[:2] - self.waypoint[:2]) > 0.02:
                self.waypoint = np.array([eef[0], eef[1], self.waypoint[2]])
            elif (np.linalg.norm(self.waypoint - eef) < 0.012 and self._yaw_error(raw) < 0.08) or self.phase_steps > 60:
                self._set_phase("descend")
        if self.phase == "descend":
            self.waypoint = self.grasp.grip.copy()
            if np.linalg.norm(self.waypoint[:2] - eef[:2]) > 0.012:  # off to the side: centre before going down
                self.waypoint[2] = max(eef[2], self.grasp.grip[2])
            if np.linalg.norm(self.waypoint - eef) < 0.007 or self.phase_steps > 30:
                self.lift_start_z = float(obj[2])
                self._set_phase("close")
        if self.phase == "close":
            self.gripper = CLOSE
            if self.phase_steps >= self.close_steps:
                self._set_phase("lift")
        if self.phase == "lift":
            self.waypoint = np.array([eef[0], eef[1], self.grasp.grip[2] + 0.06])
            if self.phase_steps >= 8 or eef[2] > self.waypoint[2] - 0.01:
                if obj[2] - self.lift_start_z < 0.02:  # the object stayed down: try again
                    self._set_phase("regrasp" if self.grasps_tried < MAX_GRASPS else "give_up")
                else:
                    self._plan_carry(eef)
                    self._set_phase("carry")
        if self.phase == "regrasp":
            self.gripper = OPEN
            self.waypoint = np.array([eef[0], eef[1], self.grasp.grip[2] + self.approach_height])
            if self.phase_steps > 6:
                self._set_phase("plan")
        if self.phase == "carry":
            target_xy, _ = self._target()
            self.waypoint = np.array([*(target_xy + self.target_jitter), self.carry_z])
            # Steer the object's own xy onto the target: the grip point rarely is the object's origin.
            steer = np.array([obj[0], obj[1], eef[2]])
            if eef[2] < self.carry_z - 0.03:  # rise before moving sideways
                self.waypoint[:2] = steer[:2]
            if obj[2] - self.lift_start_z < 0.01 and self.phase_steps > 3:  # dropped it
                self._set_phase("regrasp" if self.grasps_tried < MAX_GRASPS else "give_up")
            elif (np.linalg.norm(self.waypoint[:2] - steer[:2]) < 0.01 and abs(self.waypoint[2] - steer[2]) < 0.03) \
                    or self.phase_steps > 80:
                self._set_phase("lower")
        if self.phase == "lower":
            target_xy, surface = self._target()
            bottom_target = surface + self.release_gap
            self.waypoint = np.array([*(target_xy + self.target_jitter), eef[2] - (self._object_bottom() - bottom_target)])
            steer = np.array([obj[0], obj[1], eef[2]])
            if abs(self._object_bottom() - bottom_target) < 0.006 or self.phase_steps > 40:
                self.open_steps = 8 + int(round(self._jitter(2.49)))
                self._set_phase("release")
        if self.phase == "release":
            self.gripper = OPEN
            self.waypoint = eef.copy()
            steer = eef
            if self.phase_steps >= self.open_steps:
                self._set_phase("retreat")
        if self.phase == "retreat":
            self.gripper = OPEN
            self.waypoint = np.array([eef[0], eef[1], self.carry_z])
        if self.phase == "give_up":
            self.gripper = OPEN
            self.waypoint = eef.copy()

        error = self.waypoint - steer
        self.integral = np.clip(self.integral + error, -INTEGRAL_LIMIT / INTEGRAL_GAIN, INTEGRAL_LIMIT / INTEGRAL_GAIN)
        translation = np.clip(GAIN * error + INTEGRAL_GAIN * self.integral, -1.0, 1.0)
        action = np.concatenate([translation, self._rotation_action(raw), [self.gripper]])
        return action.astype(np.float32)

    def _object_bottom(self) -> float:
        return float(self._object_pos()[2] - self.bottom_below_origin)

    def _plan_carry(self, eef: np.ndarray) -> None:
        """Heights for the carry: the object's bottom clears every other object's top by about 4 cm."""
        shape = self._shape(self.goal.obj)
        obj = self._object_pos()
        self.bottom_below_origin = float(obj[2] - shape.lo[2])
        self.hold_offset = float(eef[2] - shape.lo[2])
        target_xy, surface = self._target()
        tops = [float(box[1, 2]) for box in self._obstacles() if near_segment(box, obj[:2], target_xy, 0.06)]
        clearance = max(tops + [surface])
        self.carry_z = clearance + 0.04 + self.hold_offset + abs(self._jitter(0.02))
        self.target_jitter = self._jitter(0.006, 2)
        self.release_gap = 0.02 + self._jitter(0.005) if self.goal.predicate == "in" else 0.008 + abs(self._jitter(0.004))
