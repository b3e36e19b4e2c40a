"""Scripted skills for LIBERO goals beyond one pick-and-place, run one after another by :class:`SkillExpert`.

Example::

    env = LiberoEnv("libero_goal", 0, cameras=())       # open the middle drawer of the cabinet
    env.reset_random(seed=3)
    expert = make_expert(env, seed=3)                   # PickPlaceExpert or SkillExpert, from the goal
    done = False
    while not done:
        _, success, done = env.step(expert.act())

The goal's predicates (``env.env.parsed_problem['goal_state']``) become a list of skills
(:func:`~c2c.envs.libero_scene.plan_skills`):

- ``Open(drawer region)``: :class:`OpenDrawer` turns the gripper horizontal, pointing into the cabinet, with the
  fingers above and below the handle bar, closes on the bar and pulls along the drawer's slide axis.
- ``In(obj, drawer region)`` with that drawer closed: the drawer is opened first; the object is then placed on the
  drawer's floor (:class:`PlaceSkill`, a :class:`~c2c.envs.libero_experts.PickPlaceExpert` with an explicit goal).
- ``Close(drawer region)``: :class:`CloseDrawer` pushes the handle back along the slide axis with the closed
  gripper, after every placement.
- ``TurnOn(stove)``: :class:`TurnOnKnob` grasps the knob's fin at its hinge and turns the wrist about the vertical.
- ``On(flat wide object, region)`` (a plate): :class:`Push` lowers the closed gripper, leaning forward, behind the
  object and pushes it toward the region, re-aiming every step at the line from the object to the target.
- other ``In``/``On``: :class:`PlaceSkill`. Several objects bound for one region go to spread-out points of it.

Order: turn-on and open first, then placements and pushes in the goal's order, then closes. Goals with other
predicates, or hinged doors (the microwave), raise :class:`ConfigError` naming the task (see :func:`supported_goal`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from c2c.envs.libero_experts import SETTLE_STEPS, Goal, PickPlaceExpert
from c2c.envs.libero_geometry import (
    CLOSE, GAIN, INTEGRAL_GAIN, INTEGRAL_LIMIT, OPEN, R_DOWN, ROT_GAIN, TIP_BELOW_GRIP, axis_rotation, body_shape,
    horizontal_rotation, matrix_to_axis_angle, near_segment, quat_to_matrix, rot_z, wrap_yaw,
)
from c2c.envs.libero_scene import (Step, articulation, drawer_direction, drawer_floor, drawer_joint, geom_box,
                                   handle_box, joint_body_geoms, joint_qpos, plan_skills)
from c2c.errors import ConfigError

PUSH_TILT = 0.6  # radians the gripper leans toward the push
KNOB_TURN = 1.0  # radians the wrist turns a stove knob (LIBERO's FlatStove is on from 0.5)


# ---------------------------------------------------------------------------------------------------------------
# Skills.


class Skill:
    """A small state machine on the shared episode state of a :class:`SkillExpert`; ``act()`` -> (7,) action."""

    def __init__(self, expert: "SkillExpert") -> None:
        self.expert = expert
        self.task_env = expert.task_env
        self.phase = "start"
        self.phase_steps = 0
        self.integral = np.zeros(3)
        self.done = False

    @property
    def sim(self) -> Any:
        return self.task_env.sim

    def jitter(self, scale: float, size: int | None = None) -> Any:
        return self.expert.jitter(scale, size)

    def set_phase(self, phase: str) -> None:
        self.phase = phase
        self.phase_steps = 0
        self.integral = np.zeros(3)

    def servo(self, raw: dict[str, Any], waypoint: np.ndarray, rotation: np.ndarray, gripper: float,
              steer: np.ndarray | None = None, limit: float = 1.0) -> np.ndarray:
        """Proportional-integral step of ``steer`` (default: the grip point) toward ``waypoint`` at ``rotation``."""
        eef = np.asarray(raw["robot0_eef_pos"], dtype=np.float64)
        error = np.asarray(waypoint, dtype=np.float64) - (eef if steer is None else steer)
        self.integral = np.clip(self.integral + error, -INTEGRAL_LIMIT / INTEGRAL_GAIN, INTEGRAL_LIMIT / INTEGRAL_GAIN)
        translation = np.clip(GAIN * error + INTEGRAL_GAIN * self.integral, -limit, limit)
        current = quat_to_matrix(raw["robot0_eef_quat"])
        turn = np.clip(ROT_GAIN * matrix_to_axis_angle(rotation @ current.T), -1.0, 1.0)
        return np.concatenate([translation, turn, [gripper]]).astype(np.float32)

    @staticmethod
    def rotation_error(raw: dict[str, Any], rotation: np.ndarray) -> float:
        current = quat_to_matrix(raw["robot0_eef_quat"])
        return float(np.linalg.norm(matrix_to_axis_angle(rotation @ current.T)))

    def act(self, raw: dict[str, Any]) -> np.ndarray:
        raise NotImplementedError


class OpenDrawer(Skill):
    """Grasp a drawer's handle bar with a horizontal gripper (fingers above and below it) and pull it open."""

    def __init__(self, expert: "SkillExpert", region: str) -> None:
        super().__init__(expert)
        self.region = region
        self.joint, self.parent = drawer_joint(self.task_env, region)
        self.direction = drawer_direction(self.task_env, region)
        box = handle_box(self.task_env, region)
        centre = (box[0] + box[1]) / 2.0
        front = float(max(box[0] @ self.direction, box[1] @ self.direction))
        depth = float(abs((box[1] - box[0]) @ self.direction))
        # The grip point sits TIP_BELOW_GRIP behind the fingertips: tips just past the bar's back face.
        along = front - min(depth, 0.02) / 2.0 + self.jitter(0.002)
        self.grip = centre + self.direction * (along - centre @ self.direction)
        self.grip[2] = centre[2] + self.jitter(0.002)
        self.rotation = horizontal_rotation(-self.direction)
        self.stand_off = 0.10 + self.jitter(0.01)
        ranges = self.parent.object_properties["articulation"]["default_open_ranges"]
        self.open_qpos = float(np.mean(ranges))  # the middle of the open range
        self.start_qpos = joint_qpos(self.sim, self.joint)
        self.close_steps = 12 + int(round(self.jitter(2.49)))

    def act(self, raw: dict[str, Any]) -> np.ndarray:
        eef = np.asarray(raw["robot0_eef_pos"], dtype=np.float64)
        self.phase_steps += 1
        gripper = OPEN
        pre = self.grip + self.direction * self.stand_off
        if self.phase == "start":
            waypoint = pre.copy()
            if np.linalg.norm(eef[:2] - pre[:2]) > 0.03:  # come from above the handle
                waypoint[2] = pre[2] + 0.05
            if (np.linalg.norm(pre - eef) < 0.015 and self.rotation_error(raw, self.rotation) < 0.1) \
                    or self.phase_steps > 80:
                self.set_phase("insert")
            return self.servo(raw, waypoint, self.rotation, gripper)
        if self.phase == "insert":
            if np.linalg.norm(self.grip - eef) < 0.012 or self.phase_steps > 30:
                self.set_phase("close")
            return self.servo(raw, self.grip, self.rotation, gripper)
        if self.phase == "close":
            if self.phase_steps >= self.close_steps:
                self.set_phase("pull")
            return self.servo(raw, self.grip, self.rotation, CLOSE)
        if self.phase == "pull":
            travel = abs(self.open_qpos - self.start_qpos) + 0.03
            target = self.grip + self.direction * travel
            qpos = joint_qpos(self.sim, self.joint)
            pulled = abs(qpos - self.start_qpos) >= abs(self.open_qpos - self.start_qpos) - 0.005
            if (self.parent.is_open(qpos) and pulled) or self.phase_steps > 70:
                self.set_phase("release")
            return self.servo(raw, target, self.rotation, CLOSE, limit=0.8)
        if self.phase == "release":
            if self.phase_steps >= 6:
                self.set_phase("back")
            return self.servo(raw, eef, self.rotation, OPEN)
        # back off along the opening direction, then up and turn the gripper down again
        target = eef + self.direction * 0.05
        if self.phase_steps > 5:
            target = np.array([eef[0], eef[1], self.grip[2] + 0.12])
        rotation = self.rotation if self.phase_steps <= 5 else R_DOWN
        if (self.phase_steps > 12 and self.rotation_error(raw, R_DOWN) < 0.15) or self.phase_steps > 30:
            self.done = True
        return self.servo(raw, target, rotation, OPEN)


class CloseDrawer(Skill):
    """Push a drawer shut: the closed gripper, pointing down, in front of the handle, moved against the slide."""

    def __init__(self, expert: "SkillExpert", region: str) -> None:
        super().__init__(expert)
        self.region = region
        self.joint, self.parent = drawer_joint(self.task_env, region)
        self.direction = drawer_direction(self.task_env, region)
        self.yaw = wrap_yaw(math.atan2(self.direction[1], self.direction[0]))  # fingers across the push
        self.rotation = rot_z(self.yaw) @ R_DOWN
        box = handle_box(self.task_env, region)
        centre = (box[0] + box[1]) / 2.0
        front = float(max(box[0] @ self.direction, box[1] @ self.direction))
        self.start = centre + self.direction * (front + 0.025 - centre @ self.direction)
        self.start[2] = centre[2] + TIP_BELOW_GRIP + self.jitter(0.003)
        self.travel = abs(joint_qpos(self.sim, self.joint)) + 0.03

    def act(self, raw: dict[str, Any]) -> np.ndarray:
        eef = np.asarray(raw["robot0_eef_pos"], dtype=np.float64)
        self.phase_steps += 1
        if self.phase == "start":
            above = self.start + np.array([0.0, 0.0, 0.08])
            waypoint = above if np.linalg.norm(eef[:2] - above[:2]) > 0.015 else self.start
            if eef[2] < above[2] - 0.02 and np.linalg.norm(eef[:2] - above[:2]) > 0.03:
                waypoint = np.array([eef[0], eef[1], above[2]])
            if np.linalg.norm(self.start - eef) < 0.01 or self.phase_steps > 80:
                self.set_phase("push")
            return self.servo(raw, waypoint, self.rotation, CLOSE)
        if self.phase == "push":
            target = self.start - self.direction * self.travel
            if self.parent.is_close(joint_qpos(self.sim, self.joint)) or self.phase_steps > 60:
                self.set_phase("back")
            return self.servo(raw, target, self.rotation, CLOSE, limit=0.7)
        target = eef + self.direction * 0.04
        target[2] = eef[2] + 0.04
        if self.phase_steps >= 8:
            self.done = True
        return self.servo(raw, target, self.rotation, CLOSE)


class TurnOnKnob(Skill):
    """Grasp a stove knob's fin at its hinge and turn the wrist about the vertical until the stove is on."""

    def __init__(self, expert: "SkillExpert", fixture: str) -> None:
        super().__init__(expert)
        self.fixture = self.task_env.get_object(fixture)
        self.joint = self.fixture.joints[0]
        model = self.sim.model
        jid = model.joint_name2id(self.joint)
        body = int(model.jnt_bodyid[jid])
        _, geoms = joint_body_geoms(self.sim, self.joint)
        boxes = [geom_box(self.sim, g) for g in geoms]
        fin = max(boxes, key=lambda box: float(box[1, 2]))  # the tallest part is the fin the fingers take
        axis_xy = np.asarray(self.sim.data.xanchor[jid][:2], dtype=np.float64) if hasattr(self.sim.data, "xanchor") \
            else np.asarray(self.sim.data.body_xpos[body][:2], dtype=np.float64)
        size = fin[1] - fin[0]
        long_axis = np.array([1.0, 0.0]) if size[0] >= size[1] else np.array([0.0, 1.0])
        fin_centre = (fin[0, :2] + fin[1, :2]) / 2.0
        # On the fin's line through the hinge, nudged toward the fin's middle (clear of the knob's other parts).
        along = float((fin_centre - axis_xy) @ long_axis)
        xy = axis_xy + long_axis * (0.35 * along) + self.jitter(0.002, 2)
        z = float(fin[1, 2]) - 0.02 + self.jitter(0.002)
        self.grip = np.array([xy[0], xy[1], z])
        self.yaw = wrap_yaw(math.atan2(long_axis[1], long_axis[0]))  # fingers close across the fin
        self.turn = KNOB_TURN + self.jitter(0.1)
        self.on_qpos = float(min(articulation(self.task_env, fixture).get("default_turnon_ranges", [0.5])))
        self.close_steps = 10 + int(round(self.jitter(2.49)))

    def act(self, raw: dict[str, Any]) -> np.ndarray:
        eef = np.asarray(raw["robot0_eef_pos"], dtype=np.float64)
        self.phase_steps += 1
        down = rot_z(self.yaw) @ R_DOWN
        if self.phase == "start":
            above = self.grip + np.array([0.0, 0.0, 0.07])
            waypoint = above
            if np.linalg.norm(eef[:2] - above[:2]) > 0.03 and eef[2] < above[2] - 0.02:
                waypoint = np.array([eef[0], eef[1], above[2]])
            if (np.linalg.norm(above - eef) < 0.012 and self.rotation_error(raw, down) < 0.08) or self.phase_steps > 70:
                self.set_phase("descend")
            return self.servo(raw, waypoint, down, OPEN)
        if self.phase == "descend":
            if np.linalg.norm(self.grip - eef) < 0.007 or self.phase_steps > 30:
                self.set_phase("close")
            return self.servo(raw, self.grip, down, OPEN)
        if self.phase == "close":
            if self.phase_steps >= self.close_steps:
                self.set_phase("turn")
            return self.servo(raw, self.grip, down, CLOSE)
        if self.phase == "turn":
            turned = rot_z(self.yaw + self.turn) @ R_DOWN
            qpos = joint_qpos(self.sim, self.joint)
            if qpos >= self.on_qpos + 0.25 or self.phase_steps > 40:
                self.set_phase("release")
            return self.servo(raw, self.grip, turned, CLOSE)
        current = quat_to_matrix(raw["robot0_eef_quat"])
        if self.phase == "release":
            if self.phase_steps >= 6:
                self.set_phase("lift")
            return self.servo(raw, self.grip, current, OPEN)
        if self.phase_steps >= 10:
            self.done = True
        return self.servo(raw, self.grip + np.array([0.0, 0.0, 0.10]), current, OPEN)


class Push(Skill):
    """Push a flat object (a plate) along the table onto a region with the closed fingertips low against its rim.

    The gripper leans toward the push by :data:`PUSH_TILT` so the hand stays over the object, clear of what is
    behind it (drawer handles); the push is re-aimed every step at the line from the object to the target.
    """

    def __init__(self, expert: "SkillExpert", step: Step) -> None:
        super().__init__(expert)
        self.obj = step.obj
        self.target_name = step.target
        entity = self.task_env.objects_dict[self.obj]
        shape = body_shape(self.sim, self.obj, entity.root_body)
        self.radius = float(np.max(shape.hi[:2] - shape.lo[:2]) / 2.0)
        self.tip_z = float(shape.lo[2]) + 0.005 + self.jitter(0.0015)
        self.top_z = float(shape.hi[2])
        self.target_jitter = self.jitter(0.008, 2)
        self.lead = 0.02 + self.jitter(0.004)
        self.tilt = PUSH_TILT + self.jitter(0.05)
        self.direction = np.array([1.0, 0.0])
        self.restarts = 0

    def _object_xy(self) -> np.ndarray:
        return np.array(self.sim.data.body_xpos[self.task_env.obj_body_id[self.obj]][:2], dtype=np.float64)

    def _target_xy(self) -> np.ndarray:
        return np.array(self.sim.data.get_site_xpos(self.target_name)[:2], dtype=np.float64) + self.target_jitter

    def _pose(self, direction: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(gripper rotation, grip point minus fingertip point) leaning toward ``direction``."""
        yaw = wrap_yaw(math.atan2(direction[1], direction[0]))  # fingers across the push
        rotation = axis_rotation(np.array([-direction[1], direction[0], 0.0]), self.tilt) @ rot_z(yaw) @ R_DOWN
        return rotation, -rotation[:, 2] * TIP_BELOW_GRIP

    def act(self, raw: dict[str, Any]) -> np.ndarray:
        eef = np.asarray(raw["robot0_eef_pos"], dtype=np.float64)
        self.phase_steps += 1
        obj = self._object_xy()
        offset = self._target_xy() - obj
        distance = float(np.linalg.norm(offset))
        direction = offset / max(distance, 1e-6)
        if self.phase in ("start", "down"):
            direction = self.direction
        rotation, grip_offset = self._pose(direction)
        behind = np.array([*(obj - direction * (self.radius + 0.015)), self.tip_z]) + grip_offset
        if self.phase == "start":
            if self.phase_steps == 1:
                self.direction = offset / max(distance, 1e-6)
                rotation, grip_offset = self._pose(self.direction)
                behind = np.array([*(obj - self.direction * (self.radius + 0.015)), self.tip_z]) + grip_offset
            high = self.top_z + 0.07
            waypoint = np.array([behind[0], behind[1], high])
            if eef[2] < high - 0.02 and np.linalg.norm(eef[:2] - behind[:2]) > 0.02:
                waypoint = np.array([eef[0], eef[1], high])
            if (np.linalg.norm(waypoint - eef) < 0.012 and np.linalg.norm(eef[:2] - behind[:2]) < 0.015
                    and self.rotation_error(raw, rotation) < 0.1) or self.phase_steps > 70:
                self.set_phase("down")
            return self.servo(raw, waypoint, rotation, CLOSE)
        if self.phase == "down":
            if abs(eef[2] - behind[2]) < 0.006 or self.phase_steps > 30:
                self.set_phase("push")
            return self.servo(raw, behind, rotation, CLOSE)
        if self.phase == "push":
            tip = eef - grip_offset
            lateral = (tip[:2] - obj) - ((tip[:2] - obj) @ direction) * direction
            if distance < 0.008 or self.phase_steps > 150:
                self.set_phase("lift")
            elif np.linalg.norm(lateral) > 0.5 * self.radius and self.restarts < 2:  # off the line: start over
                self.restarts += 1
                self.set_phase("start")
            else:
                lead = min(self.lead, distance + 0.005)
                waypoint = behind + np.array([*(direction * lead), 0.0])
                return self.servo(raw, waypoint, rotation, CLOSE, limit=0.5)
            return self.servo(raw, np.array([eef[0], eef[1], self.top_z + 0.07]), rotation, CLOSE)
        if self.phase_steps >= 8:
            self.done = True
        return self.servo(raw, np.array([eef[0], eef[1], self.top_z + 0.08]), rotation, CLOSE)


class PlaceSkill(PickPlaceExpert):
    """:class:`PickPlaceExpert` for one predicate of a longer goal: drawer floors, spread targets, a ``done`` flag."""

    def __init__(self, expert: "SkillExpert", step: Step) -> None:
        super().__init__(expert.env, noise=expert.noise, goal=Goal(step.predicate, step.obj, step.target),
                         rng=expert.rng)
        self.step = step
        self.done = False
        self.drawer = drawer_joint(self.task_env, step.target) is not None
        self.transited = False
        self.safe_z: float | None = None
        self.offset = np.zeros(2)
        if step.slots > 1 and step.target in self.task_env.object_sites_dict:
            self.offset = self._slot_offset(step.slot, step.slots)

    def _transit(self) -> np.ndarray:
        """Move above the grasp at a height clear of everything between (open drawers stick out)."""
        raw = self.env.raw_observation
        eef = np.asarray(raw["robot0_eef_pos"], dtype=np.float64)
        goal = self.grasp.grip + np.array([0.0, 0.0, self.approach_height])
        if self.safe_z is None:
            tops = [float(box[1, 2]) for box in self._obstacles() if near_segment(box, eef[:2], goal[:2], 0.07)]
            self.safe_z = max(tops + [goal[2] - 0.05]) + 0.07
        waypoint = np.array([goal[0], goal[1], max(self.safe_z, goal[2])])
        if eef[2] < self.safe_z - 0.02 and np.linalg.norm(eef[:2] - goal[:2]) > 0.03:
            waypoint = np.array([eef[0], eef[1], self.safe_z])
        self.phase_steps += 1
        if np.linalg.norm(eef[:2] - goal[:2]) < 0.02 or self.phase_steps > 60:
            self.transited = True
            self.phase_steps = 0
        error = waypoint - eef
        translation = np.clip(GAIN * error, -1.0, 1.0)
        return np.concatenate([translation, self._rotation_action(raw), [OPEN]]).astype(np.float32)

    def _slot_offset(self, slot: int, slots: int) -> np.ndarray:
        """Spread points along the longer side of the target region (half the way to its edges)."""
        site = self.task_env.object_sites_dict[self.step.target]
        half = np.abs(np.asarray(self.sim.data.get_site_xmat(self.step.target), dtype=np.float64).reshape(3, 3)
                      @ np.asarray(site.size, dtype=np.float64))[:2]
        axis = int(np.argmax(half))
        fraction = (slot + 0.5) / slots * 2.0 - 1.0
        offset = np.zeros(2)
        offset[axis] = fraction * half[axis] * 0.6
        return offset

    def _target(self) -> tuple[np.ndarray, float]:
        if self.drawer:
            xy = np.array(self.sim.data.get_site_xpos(self.goal.target)[:2], dtype=np.float64)
            # Slightly toward the open end of the drawer, away from the cabinet above it.
            xy = xy + drawer_direction(self.task_env, self.goal.target)[:2] * 0.015
            return xy, drawer_floor(self.task_env, self.goal.target)
        xy, surface = super()._target()
        return xy + self.offset, surface

    def act(self) -> np.ndarray:
        if self.phase == "approach" and not self.transited and self.grasp is not None:
            return self._transit()
        action = super().act()
        if self.phase == "approach" and self.grasps_tried == 1 and not self.transited:
            return self._transit()
        if self.phase == "retreat":
            eef = np.asarray(self.env.raw_observation["robot0_eef_pos"], dtype=np.float64)
            if eef[2] > self.carry_z - 0.02 or self.phase_steps > 20:
                self.done = True
        return action


# ---------------------------------------------------------------------------------------------------------------
# The expert.


class SkillExpert:
    """Runs the skills of :func:`plan_skills` one after another on the current episode of a ``LiberoEnv``.

    Make one per episode, after the reset. Each skill is made when the previous one finishes (it plans from the
    state then). After the last skill the arm holds still with the gripper open.
    """

    def __init__(self, env: Any, seed: int = 0, *, noise: bool = True) -> None:
        self.env = env
        self.task_env = env.libero_env.env
        self.rng = np.random.default_rng(seed)
        self.noise = noise
        self.steps = plan_skills(self.task_env)
        self.index = 0
        self.skill: Any = None
        self.idle_steps = 0  # steps after the last skill finished

    def jitter(self, scale: float, size: int | None = None) -> Any:
        if not self.noise:
            return np.zeros(size) if size else 0.0
        return self.rng.uniform(-scale, scale, size)

    def _make(self, step: Step) -> Any:
        if step.kind == "open":
            return OpenDrawer(self, step.target)
        if step.kind == "close":
            return CloseDrawer(self, step.target)
        if step.kind == "turn_on":
            return TurnOnKnob(self, step.target)
        if step.kind == "push":
            return Push(self, step)
        return PlaceSkill(self, step)

    @property
    def finished(self) -> bool:
        """True when nothing the expert still does can complete the task: a placement gave up, or every skill is
        done and the scene had ``SETTLE_STEPS`` to pass LIBERO's success check."""
        if isinstance(self.skill, PickPlaceExpert) and self.skill.phase == "give_up":
            return self.skill.finished
        return self.idle_steps > SETTLE_STEPS

    def act(self) -> np.ndarray:
        """The next action (7,) float32 for the env's current state."""
        while self.index < len(self.steps):
            if self.skill is None:
                self.skill = self._make(self.steps[self.index])
            if not self.skill.done:
                break
            self.index += 1
            self.skill = None
        raw = self.env.raw_observation
        if self.skill is None:
            self.idle_steps += 1
            return np.array([0, 0, 0, 0, 0, 0, OPEN], dtype=np.float32)
        if isinstance(self.skill, PickPlaceExpert):
            return self.skill.act()
        return self.skill.act(raw)


def make_expert(env: Any, seed: int = 0, *, noise: bool = True) -> Any:
    """The expert for the task of ``env`` (a ``LiberoEnv`` after a reset).

    :class:`PickPlaceExpert` when the goal is one ``In``/``On`` placement needing nothing else, otherwise
    :class:`SkillExpert`; raises :class:`ConfigError` naming the task when no skill reaches its goal.
    """
    task_env = env.libero_env.env
    try:
        steps = plan_skills(task_env)
    except ConfigError as err:
        raise ConfigError(f"the scripted LIBERO experts cannot do task {env.task_name!r}: {err}") from None
    if len(steps) == 1 and steps[0].kind == "place":
        return PickPlaceExpert(env, seed, noise=noise)
    return SkillExpert(env, seed, noise=noise)


def supported_goal(libero_env: Any) -> bool:
    """Whether a scripted expert (:func:`make_expert`) handles the task of ``libero_env`` (a :class:`LiberoEnv`)."""
    try:
        plan_skills(libero_env.libero_env.env)
    except ConfigError:
        return False
    return True
