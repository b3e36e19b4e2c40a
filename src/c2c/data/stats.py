"""Feature statistics for normalization: min, max, mean, std, count and true global quantiles.

LeRobot's dataset-level quantiles are a count-weighted average of per-episode quantiles, which is not a
quantile of the data at all (two episodes with different ranges give a "q01" that neither episode's data
has 1% below). Here quantiles are exact: ``np.quantile`` over every frame for vectors, and exact order
statistics of 256-bin histograms for uint8 images, so image stats cost O(1) memory however many frames
are seen.

Example::

    stats = compute_feature_stats(actions)  # actions: (N, A) float32
    stats["q01"], stats["q99"]  # (A,) each, used for q01/q99 normalization to [-1, 1]

    images = ImageStatsAccumulator()
    images.update(frames)  # frames: (T, H, W, 3) uint8
    images.result()["mean"]  # (3, 1, 1) in [0, 1], LeRobot's layout
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from c2c.errors import DatasetError

# Stat name -> quantile level; the names and levels LeRobot v3 writes.
QUANTILES: dict[str, float] = {"q01": 0.01, "q10": 0.10, "q50": 0.50, "q90": 0.90, "q99": 0.99}
STAT_NAMES: tuple[str, ...] = ("min", "max", "mean", "std", "count", *QUANTILES)

# Frames per episode that image stats look at (evenly spaced); LeRobot samples about as many.
DEFAULT_IMAGE_SAMPLES_PER_EPISODE = 100

Stats = dict[str, np.ndarray]


def compute_feature_stats(values: np.ndarray) -> Stats:
    """Stats of an (N,) or (N, D) array over its first axis, with exact quantiles (``np.quantile``, linear).

    Returns arrays shaped (D,) (or (1,) for 1-D input), ``count`` shaped (1,). Integer input keeps integer
    min/max, as LeRobot does for its index columns; the other stats are float64.
    """
    values = np.asarray(values)
    if values.ndim == 1:
        values = values[:, None]  # (N, 1)
    if values.ndim != 2 or values.shape[0] == 0:
        raise ValueError(f"compute_feature_stats expects a non-empty (N,) or (N, D) array, got {values.shape}")
    as_float = values.astype(np.float64)
    stats: Stats = {
        "min": values.min(axis=0),
        "max": values.max(axis=0),
        "mean": as_float.mean(axis=0),
        "std": as_float.std(axis=0),  # population std (ddof=0), like LeRobot
        "count": np.array([values.shape[0]], dtype=np.int64),
    }
    levels = np.quantile(as_float, list(QUANTILES.values()), axis=0)  # (5, D)
    for name, level_values in zip(QUANTILES, levels):
        stats[name] = level_values
    return stats


def sample_frame_indices(num_frames: int, max_samples: int = DEFAULT_IMAGE_SAMPLES_PER_EPISODE) -> np.ndarray:
    """Up to ``max_samples`` evenly spaced frame indices in ``[0, num_frames)``, first and last included."""
    if num_frames <= max_samples:
        return np.arange(num_frames)
    return np.unique(np.round(np.linspace(0, num_frames - 1, max_samples)).astype(np.int64))


class ImageStatsAccumulator:
    """Exact per-channel stats of uint8 RGB frames, kept as one 256-bin histogram per channel.

    ``merge`` adds another accumulator's histograms, so per-episode accumulators combine into dataset
    stats whose quantiles are still exact over all the pixels seen.
    """

    def __init__(self) -> None:
        self.histogram = np.zeros((3, 256), dtype=np.int64)  # (C, 256) pixel counts
        self.num_frames = 0

    def update(self, frames: np.ndarray) -> None:
        """Add (T, H, W, 3) uint8 frames."""
        if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"expected (T, H, W, 3) uint8 frames, got {frames.dtype} {frames.shape}")
        for channel in range(3):
            self.histogram[channel] += np.bincount(frames[..., channel].ravel(), minlength=256)
        self.num_frames += frames.shape[0]

    def merge(self, other: "ImageStatsAccumulator") -> None:
        self.histogram += other.histogram
        self.num_frames += other.num_frames

    def result(self) -> Stats:
        """Stats in LeRobot's image layout: (3, 1, 1) arrays scaled to [0, 1], ``count`` = frames seen."""
        if self.num_frames == 0:
            raise ValueError("no frames were added to the image stats")
        levels = np.arange(256, dtype=np.float64)
        pixels = self.histogram.sum(axis=1)  # (C,)
        mean = (self.histogram * levels).sum(axis=1) / pixels
        variance = (self.histogram * (levels[None, :] - mean[:, None]) ** 2).sum(axis=1) / pixels
        present = self.histogram > 0
        stats: Stats = {
            "min": np.array([levels[row].min() for row in present]),
            "max": np.array([levels[row].max() for row in present]),
            "mean": mean,
            "std": np.sqrt(variance),
        }
        for name, level in QUANTILES.items():
            stats[name] = np.array([_histogram_quantile(row, level) for row in self.histogram])
        scaled = {name: (value / 255.0).reshape(3, 1, 1) for name, value in stats.items()}
        scaled["count"] = np.array([self.num_frames], dtype=np.int64)
        return {name: scaled[name] for name in STAT_NAMES}


def compute_image_stats(frames: np.ndarray, max_samples: int = DEFAULT_IMAGE_SAMPLES_PER_EPISODE) -> Stats:
    """Per-channel stats of (T, H, W, 3) uint8 frames over up to ``max_samples`` evenly spaced frames."""
    accumulator = ImageStatsAccumulator()
    accumulator.update(frames[sample_frame_indices(frames.shape[0], max_samples)])
    return accumulator.result()


def _histogram_quantile(histogram: np.ndarray, level: float) -> float:
    """``np.quantile(values, level)`` (linear interpolation) of the values a 256-bin count histogram holds."""
    cumulative = np.cumsum(histogram)  # cumulative[b] = how many values are <= b
    position = level * (cumulative[-1] - 1)
    below = int(np.floor(position))
    above = min(below + 1, int(cumulative[-1]) - 1)
    value_below = float(np.searchsorted(cumulative, below, side="right"))  # sorted_values[below]
    value_above = float(np.searchsorted(cumulative, above, side="right"))
    return value_below + (position - below) * (value_above - value_below)


def stats_to_json(stats: Mapping[str, Mapping[str, np.ndarray]]) -> dict[str, dict[str, Any]]:
    """Nested lists (and Python numbers) that ``json.dump`` accepts; the layout of meta/stats.json."""
    return {
        feature: {name: np.asarray(value).tolist() for name, value in feature_stats.items()}
        for feature, feature_stats in stats.items()
    }


def stats_from_json(data: Any, source: str = "stats") -> dict[str, Stats]:
    """Inverse of :func:`stats_to_json`; a one-line :class:`DatasetError` naming ``source`` if malformed."""
    if not isinstance(data, dict):
        raise DatasetError(f"{source}: expected an object of features, got {type(data).__name__}")
    result: dict[str, Stats] = {}
    for feature, feature_stats in data.items():
        if not isinstance(feature_stats, dict):
            raise DatasetError(f"{source}: stats of '{feature}' must be an object of named stats")
        try:
            result[feature] = {name: np.asarray(value) for name, value in feature_stats.items()}
        except ValueError as error:  # ragged lists
            raise DatasetError(f"{source}: stats of '{feature}' are not rectangular arrays ({error})") from None
    return result


def load_stats_json(path: Path) -> dict[str, Stats]:
    """Read a meta/stats.json file (an empty dict if the file does not exist)."""
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise DatasetError(f"{path}: malformed JSON ({error})") from None
    return stats_from_json(data, source=str(path))
