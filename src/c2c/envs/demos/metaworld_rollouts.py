"""Meta-World's scripted expert rolled out from a seeded placement, and replayed with the cameras on.

The placement seed of attempt ``a`` of a task is :func:`placement_seed` ``(seed, task, a)``. :func:`run_expert` lets
metaworld's scripted expert act (without rendering) until the first success and :data:`SUCCESS_TAIL_STEPS` more
steps, and hashes every 39-dim state; :func:`replay_with_cameras` replays its actions with the cameras on and checks
that the states repeat bit for bit.
"""

from __future__ import annotations

import hashlib

import numpy as np

from c2c.constants import OBS_STATE, image_key
from c2c.envs.demos.cache import Attempt
from c2c.envs.metaworld_env import STATE_NAMES, MetaWorldEnv
from c2c.errors import C2CError

SUCCESS_TAIL_STEPS = 10  # steps recorded after the first success (1/8 s at 80 Hz)
SEED_BITS = 31  # placement seeds are non-negative int32s


def placement_seed(seed: int, task: str, attempt: int) -> int:
    """The object-placement seed of ``attempt`` of ``task`` under the run seed ``seed`` (a stable hash)."""
    digest = hashlib.sha256(f"c2c/metaworld/{seed}/{task}/{attempt}".encode()).digest()
    return int.from_bytes(digest[:8], "little") % (1 << SEED_BITS)


def noise_rng(seed: int) -> np.random.Generator:
    """The generator of the executed-action noise of placement ``seed`` (independent of the placement itself)."""
    digest = hashlib.sha256(f"c2c/metaworld/action-noise/{seed}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def run_expert(
    env: MetaWorldEnv, seed: int, tail_steps: int = SUCCESS_TAIL_STEPS, action_noise: float = 0.0,
) -> tuple[np.ndarray, np.ndarray, Attempt]:
    """Roll the scripted expert out from placement ``seed`` until success + ``tail_steps`` or ``env.max_steps``.

    ``action_noise`` > 0 (noise injection, as DART, Laskey et al. 2017): until the first success the env executes
    the expert's action plus Gaussian noise of this standard deviation on the three position dims (the action
    range is [-1, 1], 1 = 1 cm per step), clipped to the range; the label stays the expert's own action for the
    state it saw. The expert, a state-feedback controller, then corrects the drift, so the demonstrations show
    recoveries from states a clean rollout never visits. 0 (the default) executes the labels.

    Returns the labels (T, 4), the executed actions (T, 4), both float32, and the outcome (``attempt`` is left at
    -1 for the caller to set).
    """
    env.reset(seed)
    rng = noise_rng(seed) if action_noise > 0 else None
    hasher = hashlib.sha1(env.raw_state.tobytes())
    actions, executed = [], []
    first_success: int | None = None
    done = False
    while not done:
        action = env.expert_action()
        applied = action
        if rng is not None and first_success is None:
            applied = action.copy()
            applied[:3] += rng.normal(0.0, action_noise, 3).astype(np.float32)
            applied = np.clip(applied, -1.0, 1.0).astype(np.float32)
        _, success, done = env.step(applied)
        actions.append(action)
        executed.append(applied)
        hasher.update(env.raw_state.tobytes())
        if success and first_success is None:
            first_success = env.steps
        if first_success is not None and env.steps >= first_success + tail_steps:
            break
    outcome = Attempt(-1, seed, first_success is not None, len(actions), hasher.hexdigest())
    return np.stack(actions).astype(np.float32), np.stack(executed).astype(np.float32), outcome


def replay_with_cameras(
    env: MetaWorldEnv, seed: int, actions: np.ndarray, digest: str, labels: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Replay ``actions`` from placement ``seed`` recording every frame; checks the states reproduce ``digest``.

    Returns ``{"actions": (T, 4), "states": (T, 4), "<camera>": (T, H, W, 3) uint8}``: frame t is the observation
    the expert saw before taking action t. ``labels``: the actions to record instead of the executed ones (the
    expert's own actions of a noise-injected rollout, see :func:`run_expert`).
    """
    length = len(actions)
    size = env.image_size
    images = {camera: np.empty((length, size, size, 3), np.uint8) for camera in env.cameras}
    states = np.empty((length, len(STATE_NAMES)), np.float32)
    obs = env.reset(seed)
    hasher = hashlib.sha1(env.raw_state.tobytes())
    for t, action in enumerate(actions):
        states[t] = obs[OBS_STATE]
        for camera in env.cameras:
            images[camera][t] = obs[image_key(camera)]
        obs, _, _ = env.step(action)
        hasher.update(env.raw_state.tobytes())
    if hasher.hexdigest() != digest:
        raise C2CError(
            f"{env.task} placement seed {seed}: replaying the expert's actions with cameras on did not reproduce "
            f"the states of the rollout (MuJoCo was expected to be deterministic here); please report this"
        )
    recorded = actions if labels is None else labels
    return {"actions": np.asarray(recorded, np.float32), "states": states, **images}
