"""Observation and batch keys shared by datasets, evaluation and serving (one schema, one place)."""

from __future__ import annotations

OBS_STATE = "observation.state"
OBS_IMAGES_PREFIX = "observation.images."
ACTION = "action"
TASK = "task"

# Per-frame bookkeeping columns of a LeRobot v3 dataset.
TIMESTAMP = "timestamp"
FRAME_INDEX = "frame_index"
EPISODE_INDEX = "episode_index"
INDEX = "index"
TASK_INDEX = "task_index"
DEFAULT_COLUMNS = (TIMESTAMP, FRAME_INDEX, EPISODE_INDEX, INDEX, TASK_INDEX)


def image_key(camera: str) -> str:
    """``observation.images.<camera>``: the dataset/observation key of one camera."""
    return f"{OBS_IMAGES_PREFIX}{camera}"


def camera_name(key: str) -> str:
    """Inverse of :func:`image_key`."""
    if not key.startswith(OBS_IMAGES_PREFIX):
        raise ValueError(f"{key!r} is not an image key (expected the prefix {OBS_IMAGES_PREFIX!r})")
    return key[len(OBS_IMAGES_PREFIX):]
