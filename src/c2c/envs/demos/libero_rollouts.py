"""LIBERO's scripted expert rolled out from a seeded random reset, and rendered again with the cameras on.

Attempt ``a`` of a task resets the env under :func:`placement_seed` ``(seed, suite, task, a)``; :func:`run_expert`
lets the expert of :func:`~c2c.envs.libero_skills.make_expert` act and keeps every simulator state, and
:func:`render_rollout` draws that rollout in an env with cameras (see its docstring for why the states are set
rather than the actions replayed).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from c2c.constants import OBS_STATE, image_key
from c2c.envs.demos.cache import Attempt
from c2c.envs.libero_env import LiberoEnv
from c2c.errors import C2CError

SEED_BITS = 31
# Largest observation.state difference between a set state and the rollout's. Setting a state and stepping is not
# bit-for-bit continuous stepping (the solver's warm start is not part of the state): up to 1.1e-5 was seen on
# libero_object; 1e-4 (m, rad) is far below what a camera shows and far above that noise.
STATE_TOLERANCE = 1e-4


def placement_seed(seed: int, suite: str, task: str, attempt: int) -> int:
    """The reset seed of ``attempt`` of ``task`` under the run seed ``seed`` (a stable hash, < 2**31)."""
    digest = hashlib.sha256(f"c2c/libero/{seed}/{suite}/{task}/{attempt}".encode()).digest()
    return int.from_bytes(digest[:8], "little") % (1 << SEED_BITS)


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
    from c2c.envs.libero_skills import make_expert

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
