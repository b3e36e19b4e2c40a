"""The per-episode columns and the meta files of a LeRobot v3.0 dataset, as
:class:`~c2c.data.lerobot_write.LeRobotWriter` writes them: ``stats/<feature>/<stat>`` and ``c2c/<name>`` episode
columns, ``meta/stats.json`` (exact global quantiles, see :mod:`c2c.data.stats`), ``meta/tasks.parquet`` and
``meta/episodes/chunk-000/file-000.parquet``, and ``meta/info.json`` last (its presence means the rest is there).

Example::

    stats = EpisodeStats()
    row.update(stats.add_episode(columns, episode))  # per episode
    write_meta(staging, info=info, stats=stats.global_stats(), tasks={"reach": 0}, episode_rows=[row])
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from c2c.constants import TASK_INDEX, image_key
from c2c.data.episodes import Episode
from c2c.data.lerobot_read import EPISODES_PATH, INFO_PATH, METADATA_PREFIX, STATS_PATH, TASKS_PATH
from c2c.data.stats import ImageStatsAccumulator, Stats, compute_feature_stats, sample_frame_indices, stats_to_json
from c2c.errors import DatasetError


class EpisodeStats:
    """Per-episode stats columns, keeping what the exact global stats of all episodes need."""

    def __init__(self) -> None:
        self.columns: dict[str, list[np.ndarray]] = {}  # non-image features, kept for exact global stats
        self.image_stats: dict[str, ImageStatsAccumulator] = {}

    def add_episode(self, columns: dict[str, np.ndarray], episode: Episode) -> dict[str, Any]:
        """Per-episode ``stats/<feature>/<stat>`` columns; also keeps what the global stats need."""
        stats: dict[str, Stats] = {}
        for key, values in columns.items():
            self.columns.setdefault(key, []).append(values)
            stats[key] = compute_feature_stats(values)
        for camera, frames in episode.images.items():
            accumulator = ImageStatsAccumulator()
            accumulator.update(frames[sample_frame_indices(frames.shape[0])])
            self.image_stats.setdefault(image_key(camera), ImageStatsAccumulator()).merge(accumulator)
            stats[image_key(camera)] = accumulator.result()
        return {
            f"stats/{key}/{name}": value.tolist()
            for key, feature_stats in stats.items()
            for name, value in feature_stats.items()
        }

    def global_stats(self) -> dict[str, Stats]:
        stats = {key: compute_feature_stats(np.concatenate(parts)) for key, parts in self.columns.items()}
        stats.update({key: accumulator.result() for key, accumulator in self.image_stats.items()})
        return stats


def metadata_columns(metadata: dict[str, Any], index: int) -> dict[str, Any]:
    """Scalar entries of ``Episode.metadata`` as ``c2c/<name>`` columns (others are warned about and dropped)."""
    columns: dict[str, Any] = {}
    for name, value in metadata.items():
        if isinstance(value, np.generic):
            value = value.item()
        if isinstance(value, (bool, int, float, str)):
            columns[METADATA_PREFIX + name] = value
        else:
            kind = type(value).__name__
            warnings.warn(f"episode {index}: metadata '{name}' is a {kind}, not a scalar; not stored")
    return columns


def write_meta(root: Path, *, info: dict[str, Any], stats: dict[str, Stats], tasks: dict[str, int],
               episode_rows: list[dict[str, Any]]) -> None:
    """The meta files of the dataset at ``root``; ``meta/info.json`` last."""
    meta = root / "meta"
    meta.mkdir(exist_ok=True)
    (root / STATS_PATH).write_text(json.dumps(stats_to_json(stats), indent=2))
    pq.write_table(tasks_table(tasks), root / TASKS_PATH)
    episodes_path = root / EPISODES_PATH.format(chunk_index=0, file_index=0)
    episodes_path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(episodes_table(episode_rows), episodes_path)
    try:
        info_text = json.dumps(info, indent=4)
    except TypeError as error:
        raise DatasetError(f"extra_info must be JSON-serialisable ({error})") from None
    (root / INFO_PATH).write_text(info_text)  # last: its presence means the rest is there


def tasks_table(tasks: dict[str, int]) -> pa.Table:
    """meta/tasks.parquet as pandas writes LeRobot's task frame: task_index plus the task text as index."""
    ordered = sorted(tasks, key=tasks.__getitem__)
    table = pa.table({
        TASK_INDEX: pa.array([tasks[task] for task in ordered], pa.int64()),
        "__index_level_0__": pa.array(ordered, pa.string()),
    })
    pandas_note = {
        "index_columns": ["__index_level_0__"],
        "column_indexes": [{
            "name": None, "field_name": None, "pandas_type": "unicode", "numpy_type": "object",
            "metadata": {"encoding": "UTF-8"},
        }],
        "columns": [
            {"name": TASK_INDEX, "field_name": TASK_INDEX, "pandas_type": "int64", "numpy_type": "int64",
             "metadata": None},
            {"name": None, "field_name": "__index_level_0__", "pandas_type": "unicode", "numpy_type": "object",
             "metadata": None},
        ],
        "creator": {"library": "pyarrow", "version": pa.__version__},
        "pandas_version": "2.2.0",
    }
    return table.replace_schema_metadata({b"pandas": json.dumps(pandas_note).encode()})


def episodes_table(rows: list[dict[str, Any]]) -> pa.Table:
    """One row per episode; metadata columns missing from some episodes are null there."""
    names: list[str] = []
    for row in rows:
        names.extend(name for name in row if name not in names)
    names += ["meta/episodes/chunk_index", "meta/episodes/file_index"]
    columns: dict[str, list[Any]] = {name: [row.get(name) for row in rows] for name in names}
    columns["meta/episodes/chunk_index"] = [0] * len(rows)
    columns["meta/episodes/file_index"] = [0] * len(rows)
    arrays = {}
    for name, values in columns.items():
        try:
            arrays[name] = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as error:
            raise DatasetError(f"episode metadata '{name}' mixes value types across episodes ({error})") from None
    return pa.table(arrays)
