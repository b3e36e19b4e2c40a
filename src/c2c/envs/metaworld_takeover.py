"""Expert takeover from the states a trained policy reaches (DAgger-style aggregation) for Meta-World: the
simulator's and the expert's side; :mod:`c2c.eval.takeover` runs the policy and writes the dataset.

The policy acts from a new placement (:func:`takeover_seed`) for :func:`takeover_step` steps (a multiple of
:data:`TAKEOVER_PERIOD`), then metaworld's scripted expert takes over and finishes the task
(:func:`expert_takeover`); the frames from the takeover on, labelled with the expert's actions, are the recorded
:class:`Takeover`.

The scripted experts assume an open gripper where they have not grasped; a policy may have closed it. While the
gripper reads less than :data:`OPEN_GRIPPER` and the expert asks for no grip (effort <= 0), the label opens it
(effort -1) instead (without this the pick-place expert presses the closed fingers onto the puck forever).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from c2c.constants import OBS_STATE, image_key
from c2c.envs.demos.metaworld_rollouts import SEED_BITS, SUCCESS_TAIL_STEPS
from c2c.envs.metaworld_env import MetaWorldEnv

TAKEOVER_PERIOD = 10  # the policy acts a multiple of this many steps before the expert takes over
OPEN_GRIPPER = 0.8  # gripper reading (obs[3], 1 = fully open) under which a non-grasping expert reopens it


def takeover_seed(seed: int, task: str, index: int) -> int:
    """The placement seed of takeover ``index`` of ``task`` under ``seed`` (a namespace apart from the demos')."""
    digest = hashlib.sha256(f"c2c/metaworld-takeover/{seed}/{task}/{index}".encode()).digest()
    return int.from_bytes(digest[:8], "little") % (1 << SEED_BITS)


def takeover_step(placement: int, policy_steps: int) -> int:
    """How many steps the policy acts on ``placement``: a multiple of TAKEOVER_PERIOD in [period, policy_steps]."""
    choices = policy_steps // TAKEOVER_PERIOD
    rng = np.random.default_rng(placement)
    return int(rng.integers(1, choices + 1)) * TAKEOVER_PERIOD


def corrective_expert_action(env: MetaWorldEnv) -> np.ndarray:
    """The scripted expert's action, opening a gripper the expert expects open (see the module docstring)."""
    action = env.expert_action()
    if env.raw_state[3] < OPEN_GRIPPER and action[3] <= 0.0:
        action = action.copy()
        action[3] = -1.0
    return action


@dataclass
class Takeover:
    """One placement's outcome; ``arrays`` holds the recorded frames when ``status`` is "recorded"."""

    task: str
    index: int
    seed: int
    takeover_step: int
    status: str  # "recorded" | "policy-success" (nothing to correct) | "expert-failed"
    frames: int = 0
    arrays: dict[str, np.ndarray] | None = field(default=None, repr=False)


def expert_takeover(env: MetaWorldEnv, obs: dict[str, Any], task: str, index: int, seed: int, handover: int
                    ) -> Takeover:
    """The scripted expert (:func:`corrective_expert_action`) finishes the episode from observation ``obs``, the
    state another controller reached on placement ``seed`` after ``handover`` steps; the frames from here on, with
    the expert's actions, are recorded until the first success and :data:`SUCCESS_TAIL_STEPS` more steps."""
    actions, states = [], []
    images: dict[str, list[np.ndarray]] = {camera: [] for camera in env.cameras}
    first_success: int | None = None
    done = False
    while not done:
        action = corrective_expert_action(env)
        states.append(obs[OBS_STATE])
        for camera in env.cameras:
            images[camera].append(obs[image_key(camera)])
        actions.append(action)
        obs, success, done = env.step(action)
        if success and first_success is None:
            first_success = env.steps
        if first_success is not None and env.steps >= first_success + SUCCESS_TAIL_STEPS:
            break
    if first_success is None:
        return Takeover(task, index, seed, handover, "expert-failed")
    arrays = {"actions": np.stack(actions).astype(np.float32), "states": np.stack(states).astype(np.float32),
              **{camera: np.stack(frames) for camera, frames in images.items()}}
    return Takeover(task, index, seed, handover, "recorded", len(actions), arrays)
