"""Action windows: the executable chunk and the coarse plan (paper Sec. 3.1, Eq. 3-4, Appendix B.3).

For a frame ``t`` of an episode with actions ``A`` (T, D):

- the executable chunk is ``A[t : t + He]`` (He = 20 by default);
- the coarse plan compresses ``A[t : t + Hp]`` (Hp = 160) into K = 20 coarse steps of c = Hp / K = 8 actions:
  motion dimensions are summed over each chunk (Eq. 3), gripper dimensions take the chunk's last value (Eq. 4).

Windows that run past the episode end are hold-padded: zero motion and the episode's last gripper value, i.e.
the robot stays where it ended. Every window comes with a mask of padded steps.

Example::

    spec = WindowSpec(exec_horizon=20, plan_horizon=160, plan_steps=20, gripper_dims=(3,))
    windows = episode_windows(actions, spec)          # all frames of one episode
    windows.exec_chunks.shape                          # (T, 20, 4)
    windows.plans.shape                                # (T, 20, 4)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from c2c.errors import ConfigError, DatasetError

# Action layouts with known gripper dimensions; any other dataset names them (or its action names contain "gripper").
GRIPPER_DIMS_PRESETS: dict[str, tuple[int, ...]] = {
    "metaworld": (3,),  # dx, dy, dz, gripper effort
    "libero": (6,),  # 3 position deltas, 3 rotation deltas, gripper
}


@dataclass(frozen=True)
class WindowSpec:
    """Horizons of the two branches and which action dimensions are gripper dimensions."""

    exec_horizon: int = 20  # He: steps in the executable chunk (paper B.3)
    plan_horizon: int = 160  # Hp: source steps summarised by the coarse plan (paper B.3; ablations 0 and 40)
    plan_steps: int = 20  # K: coarse plan steps (paper B.3)
    gripper_dims: tuple[int, ...] = (-1,)  # action dims reduced with "last value" (Eq. 4); the rest are summed (Eq. 3)

    def __post_init__(self) -> None:
        if self.exec_horizon <= 0:
            raise ConfigError(f"exec_horizon must be positive, got {self.exec_horizon}")
        if self.plan_horizon < 0:
            raise ConfigError(f"plan_horizon must be >= 0 (0 disables the plan), got {self.plan_horizon}")
        if self.plan_horizon > 0:
            if self.plan_steps <= 0:
                raise ConfigError(f"plan_steps must be positive, got {self.plan_steps}")
            if self.plan_horizon % self.plan_steps != 0:
                raise ConfigError(
                    f"plan_horizon (Hp={self.plan_horizon}) must be divisible by plan_steps (K={self.plan_steps}); "
                    f"the chunk size c = Hp / K must be a whole number of steps"
                )
        object.__setattr__(self, "gripper_dims", tuple(int(d) for d in self.gripper_dims))

    @property
    def has_plan(self) -> bool:
        return self.plan_horizon > 0

    @property
    def chunk_size(self) -> int:
        """c = Hp / K: source steps per coarse plan step."""
        return self.plan_horizon // self.plan_steps if self.has_plan else 0

    @property
    def context(self) -> int:
        """Future steps a window reads."""
        return max(self.exec_horizon, self.plan_horizon)

    def gripper_mask(self, action_dim: int) -> np.ndarray:
        """Boolean (action_dim,) mask, True for gripper dimensions."""
        mask = np.zeros(action_dim, dtype=bool)
        for dim in self.gripper_dims:
            if not -action_dim <= dim < action_dim:
                raise ConfigError(f"gripper dim {dim} is out of range for {action_dim}-dim actions")
            mask[dim] = True
        return mask


def resolve_gripper_dims(action_names: Sequence[str] | None, preset: str | None = None) -> tuple[int, ...]:
    """Gripper dimensions from a preset name, else from action names containing "gripper"; never guessed."""
    if preset is not None:
        if preset not in GRIPPER_DIMS_PRESETS:
            raise ConfigError(f"unknown action layout {preset!r}; known: {', '.join(GRIPPER_DIMS_PRESETS)}")
        return GRIPPER_DIMS_PRESETS[preset]
    dims = tuple(i for i, name in enumerate(action_names or ()) if "gripper" in str(name).lower())
    if not dims:
        raise ConfigError(
            f"cannot tell which action dims are gripper dims from the action names {list(action_names or [])}; "
            f"name the layout ({', '.join(GRIPPER_DIMS_PRESETS)}) or give the gripper dims explicitly"
        )
    return dims


def hold_pad(actions: np.ndarray, extra: int, gripper_mask: np.ndarray) -> np.ndarray:
    """Append ``extra`` hold steps to (T, D) actions: zero motion, the last gripper value."""
    if extra <= 0:
        return actions
    tail = np.zeros((extra, actions.shape[1]), dtype=actions.dtype)  # (extra, D)
    tail[:, gripper_mask] = actions[-1, gripper_mask]
    return np.concatenate([actions, tail], axis=0)  # (T + extra, D)


def coarse_plan_from_actions(window: np.ndarray, plan_steps: int, gripper_mask: np.ndarray) -> np.ndarray:
    """Reduce (..., Hp, D) source actions to (..., K, D) coarse plan steps.

    Eq. 3: motion dims are the sum of the c relative actions of each chunk.
    Eq. 4: gripper dims are the chunk's last value.
    """
    *lead, horizon, dim = window.shape
    if horizon % plan_steps != 0:
        raise ConfigError(f"window of {horizon} steps cannot be cut into {plan_steps} equal chunks")
    chunk = horizon // plan_steps
    chunks = window.reshape(*lead, plan_steps, chunk, dim)  # (..., K, c, D)
    summed = chunks.sum(axis=-2)  # Eq. 3: (..., K, D)
    last = chunks[..., -1, :]  # Eq. 4: (..., K, D)
    return np.where(gripper_mask, last, summed).astype(window.dtype, copy=False)


@dataclass
class EpisodeWindows:
    """Windows at every requested frame of one episode."""

    frames: np.ndarray  # (N,) frame indices t
    exec_chunks: np.ndarray  # (N, He, D)
    exec_pad: np.ndarray  # (N, He) True where the step lies past the episode end
    plans: np.ndarray | None  # (N, K, D) coarse plans, None when Hp = 0
    plan_pad: np.ndarray | None  # (N, K) True where the whole coarse step lies past the episode end


def episode_windows(actions: np.ndarray, spec: WindowSpec, frames: np.ndarray | None = None) -> EpisodeWindows:
    """Executable chunks and coarse plans for the given frames (default: every frame) of one episode."""
    if actions.ndim != 2:
        raise DatasetError(f"actions must be (T, D), got shape {tuple(actions.shape)}")
    length, dim = actions.shape
    if length == 0:
        raise DatasetError("cannot make windows from an empty episode")
    frames = np.arange(length) if frames is None else np.asarray(frames, dtype=np.int64)
    if frames.size and (frames.min() < 0 or frames.max() >= length):
        raise DatasetError(f"frame indices must lie in [0, {length}), got {frames.min()}..{frames.max()}")
    gripper = spec.gripper_mask(dim)
    padded = hold_pad(actions, spec.context, gripper)  # (T + context, D)
    is_pad = np.arange(length + spec.context) >= length  # (T + context,)

    def views(horizon: int) -> tuple[np.ndarray, np.ndarray]:
        # sliding_window_view gives (T + context - H + 1, D, H); move time next to the frame axis.
        values = sliding_window_view(padded, horizon, axis=0)[frames].transpose(0, 2, 1)  # (N, H, D)
        pads = sliding_window_view(is_pad, horizon)[frames]  # (N, H)
        return values, pads

    exec_chunks, exec_pad = views(spec.exec_horizon)
    plans = plan_pad = None
    if spec.has_plan:
        source, source_pad = views(spec.plan_horizon)
        plans = coarse_plan_from_actions(source, spec.plan_steps, gripper)  # (N, K, D)
        plan_pad = source_pad.reshape(len(frames), spec.plan_steps, spec.chunk_size).all(axis=-1)  # (N, K)
    return EpisodeWindows(
        frames=frames,
        exec_chunks=np.ascontiguousarray(exec_chunks),
        exec_pad=np.ascontiguousarray(exec_pad),
        plans=None if plans is None else np.ascontiguousarray(plans),
        plan_pad=None if plan_pad is None else np.ascontiguousarray(plan_pad),
    )


def dataset_windows(
    actions: np.ndarray, episode_index: np.ndarray, spec: WindowSpec
) -> EpisodeWindows:
    """Windows at every frame of a whole dataset given its concatenated (N, D) actions and per-frame episode ids.

    Frames must be grouped by episode (as in a LeRobot dataset); windows never cross an episode boundary.
    """
    episode_index = np.asarray(episode_index)
    if len(episode_index) != len(actions):
        raise DatasetError(f"{len(actions)} actions but {len(episode_index)} episode indices")
    starts = np.flatnonzero(np.r_[True, episode_index[1:] != episode_index[:-1]])
    ends = np.r_[starts[1:], len(actions)]
    if len(np.unique(episode_index[starts])) != len(starts):
        raise DatasetError("frames of one episode are not contiguous; sort the dataset by episode first")
    parts = [episode_windows(actions[s:e], spec) for s, e in zip(starts, ends)]
    return EpisodeWindows(
        frames=np.concatenate([p.frames + s for p, s in zip(parts, starts)]),
        exec_chunks=np.concatenate([p.exec_chunks for p in parts]),
        exec_pad=np.concatenate([p.exec_pad for p in parts]),
        plans=np.concatenate([p.plans for p in parts]) if spec.has_plan else None,
        plan_pad=np.concatenate([p.plan_pad for p in parts]) if spec.has_plan else None,
    )
