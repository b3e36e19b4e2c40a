"""Tokenizer training data: normalized exec chunks and coarse plans from a dataset, with held-out episodes."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from c2c.constants import ACTION, EPISODE_INDEX, OBS_STATE
from c2c.data.normalize import ActionNormalizers
from c2c.data.windows import EpisodeWindows, WindowSpec, dataset_windows, resolve_gripper_dims
from c2c.errors import ConfigError


@dataclass
class ChunkSplit:
    """Raw (dataset-unit) chunks of one split."""

    exec_chunks: np.ndarray  # (N, He, A)
    plans: np.ndarray | None  # (N, K, A)
    episodes: np.ndarray  # (E,) episode indices in this split


def split_episodes(episode_ids: np.ndarray, holdout_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic train / held-out split of episode ids (at least one held out when there are two or more)."""
    unique = np.unique(episode_ids)
    rng = np.random.default_rng(seed)
    shuffled = rng.permutation(unique)
    count = int(round(holdout_fraction * len(unique)))
    count = min(max(count, 1 if len(unique) > 1 and holdout_fraction > 0 else 0), len(unique) - 1)
    return np.sort(shuffled[count:]), np.sort(shuffled[:count])


def _select(windows: EpisodeWindows, frame_episode: np.ndarray, episodes: np.ndarray) -> ChunkSplit:
    keep = np.isin(frame_episode[windows.frames], episodes)
    return ChunkSplit(
        exec_chunks=windows.exec_chunks[keep],
        plans=None if windows.plans is None else windows.plans[keep],
        episodes=episodes,
    )


def load_chunks(
    dataset_dir: Path, spec: WindowSpec, holdout_fraction: float = 0.1, seed: int = 0
) -> tuple[ChunkSplit, ChunkSplit, ActionNormalizers, dict]:
    """Windows of a LeRobot dataset split by episode; normalizers fitted on the training episodes only."""
    from c2c.data.lerobot import LeRobotDataset

    dataset = LeRobotDataset(dataset_dir)
    arrays = dataset.frame_arrays([ACTION, OBS_STATE, EPISODE_INDEX])
    actions, states, frame_episode = arrays[ACTION], arrays[OBS_STATE], arrays[EPISODE_INDEX]
    windows = dataset_windows(actions, frame_episode, spec)
    train_eps, held_eps = split_episodes(frame_episode, holdout_fraction, seed)
    train, held = _select(windows, frame_episode, train_eps), _select(windows, frame_episode, held_eps)
    train_frames = np.isin(frame_episode, train_eps)
    train_windows = EpisodeWindows(
        frames=windows.frames[train_frames],
        exec_chunks=train.exec_chunks,
        exec_pad=windows.exec_pad[train_frames],
        plans=train.plans,
        plan_pad=None if windows.plan_pad is None else windows.plan_pad[train_frames],
    )
    normalizers = ActionNormalizers.fit(actions[train_frames], states[train_frames], train_windows)
    info = {"dataset": str(dataset_dir), "fps": dataset.fps, "num_frames": int(len(actions)),
            "train_episodes": train_eps.tolist(), "heldout_episodes": held_eps.tolist()}
    return train, held, normalizers, info


def default_spec(dataset_dir: Path, exec_horizon: int, plan_horizon: int, plan_steps: int,
                 action_layout: str | None = None) -> WindowSpec:
    """A WindowSpec whose gripper dims come from the layout name or the dataset's action names."""
    from c2c.data.lerobot import LeRobotDataset

    dataset = LeRobotDataset(dataset_dir)
    names = dataset.features.get(ACTION, {}).get("names")
    if isinstance(names, dict):  # LeRobot sometimes nests names: {"motors": [...]}
        names = next(iter(names.values()), None)
    layout = action_layout or (dataset.extra_info.get("action_layout") if dataset.extra_info else None)
    try:
        gripper = resolve_gripper_dims(names, preset=layout)
    except ConfigError as err:
        raise ConfigError(f"{dataset_dir}: {err}") from None
    return WindowSpec(exec_horizon=exec_horizon, plan_horizon=plan_horizon, plan_steps=plan_steps, gripper_dims=gripper)
