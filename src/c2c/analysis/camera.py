"""Meta-World scenes of recorded episodes and the pinhole projection of world points into their camera images.

A Meta-World dataset records each episode's task and placement seed (``Episode.metadata``: ``env``, ``seed``); the
demonstrations replay bit for bit, so resetting :class:`~c2c.envs.metaworld_env.MetaWorldEnv` at that seed and
stepping the recorded actions gives the simulator state of any frame (hand, object and goal positions).

Projection (MuJoCo's fixed cameras): ``cam_xmat`` columns are the camera's right, up and backward axes in world
coordinates, the camera looks along -backward, ``cam_fovy`` is the vertical field of view. A world point ``p`` has
camera coordinates ``d = R^T (p - cam_xpos)`` and lands at ``u = W/2 + f d_x / (-d_z)``, ``v = H/2 - f d_y / (-d_z)``
with ``f = (H/2) / tan(fovy/2)`` (pixel units, ``u`` right, ``v`` down, pixel i covering [i, i+1]). Meta-World's
corner cameras are mounted upside down and ``metaworld_env`` turns their images 180 degrees (both axes flipped), so
their points become ``(W - u, H - v)`` in the images the datasets store.

Example::

    scene = EpisodeScene("pick-place-v3", seed=3, camera="corner2", image_size=96)
    scene.replay(actions[:t])                    # the simulator state at frame t
    uv, in_front = scene.project(np.array([scene.hand, scene.object, scene.goal]))   # (3, 2) pixels, (3,) bool
"""

from __future__ import annotations

from typing import Any

import numpy as np

from c2c.errors import ConfigError

# Meta-World actions move the hand's mocap target by 1/100 m per unit of the xyz action (REFERENCE: "xyz deltas
# (scaled 1/100)"; metaworld's SawyerXYZEnv.action_scale).
METAWORLD_ACTION_SCALE_M = 0.01
# Where each task's target is: the object the hand acts on, or the goal marker for reach.
TARGET_KEY = {"reach-v3": "goal"}


def target_key(task: str) -> str:
    return TARGET_KEY.get(task, "object")


class EpisodeScene:
    """A state-only Meta-World env at an episode's placement, with one camera's projection."""

    def __init__(self, task: str, seed: int, camera: str, image_size: int) -> None:
        import mujoco

        from c2c.envs.metaworld_env import MetaWorldEnv
        from c2c.envs.rendering import is_upside_down

        self.env = MetaWorldEnv(task, cameras=(), image_size=image_size, fast_drawing=False)
        self.seed, self.image_size, self.camera = int(seed), int(image_size), camera
        self.env.reset(self.seed)
        model, data = self.env._env.model, self.env._env.data
        self.camera_id = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, camera)
        if self.camera_id < 0:
            raise ConfigError(f"Meta-World task {task!r} has no camera {camera!r}")
        self.fovy = float(model.cam_fovy[self.camera_id])
        self.position = np.array(data.cam_xpos[self.camera_id], dtype=np.float64)  # (3,)
        self.rotation = np.array(data.cam_xmat[self.camera_id], dtype=np.float64).reshape(3, 3)  # columns r, u, b
        self.rotated_180 = is_upside_down(data, self.camera_id)
        # A camera on a moving body (gripperPOV) has another pose at every frame: only the reset pose is read here.
        self.static = int(model.cam_bodyid[self.camera_id]) == 0

    def replay(self, actions: np.ndarray) -> None:
        """Reset at the episode's seed and step ``actions`` (t, 4): the state of frame t."""
        self.env.reset(self.seed)
        for action in np.asarray(actions):
            self.env.step(action)

    @property
    def hand(self) -> np.ndarray:
        return self.env.raw_state[0:3]

    @property
    def object(self) -> np.ndarray:
        return self.env.raw_state[4:7]

    @property
    def goal(self) -> np.ndarray:
        return self.env.raw_state[36:39]

    def point(self, key: str) -> np.ndarray:
        return {"hand": self.hand, "object": self.object, "goal": self.goal}[key]

    def project(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, 3) world points -> ((N, 2) pixel coordinates (u right, v down) in the stored image, (N,) in front)."""
        points = np.atleast_2d(np.asarray(points, dtype=np.float64))
        local = (points - self.position) @ self.rotation  # (N, 3): right, up, backward components
        depth = -local[:, 2]  # (N,) distance along the viewing direction
        size = self.image_size
        focal = (size / 2) / np.tan(np.radians(self.fovy) / 2)
        with np.errstate(divide="ignore", invalid="ignore"):
            u = size / 2 + focal * local[:, 0] / depth
            v = size / 2 - focal * local[:, 1] / depth
        if self.rotated_180:
            u, v = size - u, size - v
        return np.stack([u, v], axis=1), depth > 0

    def close(self) -> None:
        self.env.close()


def episode_scene(dataset: Any, episode: Any, camera: str) -> EpisodeScene | None:
    """The scene of a Meta-World episode (None when the dataset is not Meta-World or lacks the seed)."""
    info = dataset.extra_info
    if info.get("generator") != "metaworld" or "seed" not in episode.metadata or "env" not in episode.metadata:
        return None
    size = int(dataset.features[f"observation.images.{camera}"]["shape"][0])
    return EpisodeScene(str(episode.metadata["env"]), int(episode.metadata["seed"]), camera, size)


def metaworld_available() -> bool:
    try:
        import metaworld  # noqa: F401
        import mujoco  # noqa: F401
    except ImportError:
        return False
    return True
