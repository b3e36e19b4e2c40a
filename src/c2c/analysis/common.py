"""What the analyses share: opening datasets and checking a policy against one (errors that name the bad input),
held-out episodes, observations of dataset frames, and atomic figure writes."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from c2c.constants import ACTION, OBS_STATE, TASK, image_key
from c2c.errors import C2CError, ConfigError


def open_dataset(directory: str | Path) -> Any:
    """A LeRobotDataset, or a ConfigError naming the directory."""
    from c2c.data.lerobot import LeRobotDataset

    directory = Path(directory)
    if not (directory / "meta" / "info.json").is_file():
        raise ConfigError(f"{directory}: not a dataset directory (no meta/info.json)")
    try:
        return LeRobotDataset(directory)
    except C2CError as err:
        raise ConfigError(f"{directory}: cannot read the dataset ({err})") from None


def check_policy_dataset(policy: Any, dataset: Any, policy_dir: Path) -> None:
    """The dataset must have the policy's cameras at its image size and its action and state sizes."""
    config = policy.config
    for camera in config.cameras:
        key = image_key(camera)
        if key not in dataset.features:
            raise ConfigError(f"{dataset.root}: no camera {camera!r}, which policy {policy_dir} reads "
                              f"(dataset cameras: {[k.split('.')[-1] for k in dataset.camera_keys]})")
        shape = tuple(dataset.features[key]["shape"])
        if shape != (config.image_size, config.image_size, 3):
            raise ConfigError(f"{dataset.root}: camera {camera!r} has {shape[0]}x{shape[1]} images, policy "
                              f"{policy_dir} expects {config.image_size}x{config.image_size}")
    for key, expected in ((ACTION, config.action_dim), (OBS_STATE, config.state_dim)):
        found = int(np.prod(dataset.features[key]["shape"]))
        if found != expected:
            raise ConfigError(f"{dataset.root}: {key} has {found} dims, policy {policy_dir} expects {expected}")


def heldout_episodes(policy_dir: Path, dataset: Any) -> list[int]:
    """The policy's held-out episodes: its ``metrics.json`` record, else the split rule of its ``train_config.json``
    (the tokenizer's rule, ``c2c.tokenizer.data.split_episodes``), else every episode."""
    from c2c.tokenizer.data import split_episodes

    metrics = Path(policy_dir) / "metrics.json"
    if metrics.is_file():
        held = json.loads(metrics.read_text()).get("heldout_episodes")
        if held:
            return [int(e) for e in held if int(e) < dataset.num_episodes]
    config_path = Path(policy_dir) / "train_config.json"
    if config_path.is_file():
        config = json.loads(config_path.read_text())
        _, held = split_episodes(np.arange(dataset.num_episodes), float(config.get("holdout_fraction", 0.1)),
                                 int(config.get("holdout_seed", config.get("seed", 0))))
        return held.tolist()
    return list(range(dataset.num_episodes))


def parse_episodes(text: str | None, dataset: Any, default: list[int], count: int = 2) -> list[int]:
    """``"0,3"`` -> [0, 3], checked against the dataset; None -> the first ``count`` of ``default``."""
    if text is None:
        return default[:count] if default else list(range(min(count, dataset.num_episodes)))
    try:
        episodes = [int(item) for item in str(text).split(",") if item.strip()]
    except ValueError:
        raise ConfigError(f"--episodes: expected a comma list of episode indices, got {text!r}") from None
    for episode in episodes:
        if not 0 <= episode < dataset.num_episodes:
            raise ConfigError(f"--episodes: episode {episode} is not in {dataset.root} "
                              f"({dataset.num_episodes} episodes)")
    if not episodes:
        raise ConfigError("--episodes: no episode given")
    return episodes


def spread_frames(length: int, count: int) -> np.ndarray:
    """``count`` frame indices spread evenly over an episode of ``length`` frames, frame 0 first."""
    if count < 1:
        raise ConfigError(f"--frames must be >= 1, got {count}")
    return np.unique(np.linspace(0, max(length - 1, 0), num=min(count, length)).round().astype(np.int64))


def frame_batch(episode: Any, frames: np.ndarray, cameras: tuple[str, ...]) -> dict[str, Any]:
    """A batch of observations (the policy's format) of some frames of one episode."""
    batch: dict[str, Any] = {image_key(c): episode.images[c][frames] for c in cameras}
    batch[OBS_STATE] = episode.states[frames].astype(np.float32)
    batch[TASK] = [episode.task] * len(frames)
    return batch


def save_figure(fig: Any, path: str | Path, dpi: int = 110) -> Path:
    """Write a matplotlib figure as PNG atomically (a temporary name in the same folder, then a rename)."""
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp.png", dir=path.parent)
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=dpi)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    finally:
        plt.close(fig)
    return path


def pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
