"""Read a LeRobot v3.0 dataset from disk with pyarrow (the ``lerobot`` package is not needed).

Layout (shared with :mod:`c2c.data.lerobot_write`)::

    meta/info.json                               fps, features, totals, path templates ("c2c": our extra info)
    meta/stats.json                              per feature: min, max, mean, std, count, q01 ... q99
    meta/tasks.parquet                           task_index + the task string (pandas index column)
    meta/episodes/chunk-000/file-000.parquet     one row per episode: length, file indices, stats/..., c2c/...
    data/chunk-XXX/file-YYY.parquet              one row per frame
    videos/<key>/chunk-XXX/file-YYY.mp4          for features of dtype "video"

Example::

    dataset = LeRobotDataset(Path("data/reach"))
    episode = dataset.episode(0)  # Episode with actions (T, A), states (T, S), images {camera: (T, H, W, 3)}
    columns = dataset.frame_arrays(["action", "episode_index"])  # whole-dataset arrays for training
"""

from __future__ import annotations

import io
import json
import zlib
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from PIL import Image, UnidentifiedImageError

from c2c.constants import ACTION, EPISODE_INDEX, FRAME_INDEX, OBS_STATE, TASK_INDEX, camera_name
from c2c.data.episodes import Episode
from c2c.data.stats import Stats, load_stats_json
from c2c.data.video import decode_video_span
from c2c.errors import DatasetError

CODEBASE_VERSION = "v3.0"
INFO_PATH = "meta/info.json"
STATS_PATH = "meta/stats.json"
TASKS_PATH = "meta/tasks.parquet"
EPISODES_DIR = "meta/episodes"
CHUNK_FILE = "chunk-{chunk_index:03d}/file-{file_index:03d}"
EPISODES_PATH = EPISODES_DIR + "/" + CHUNK_FILE + ".parquet"
DATA_PATH = "data/" + CHUNK_FILE + ".parquet"
VIDEO_PATH = "videos/{video_key}/" + CHUNK_FILE + ".mp4"
EXTRA_INFO_KEY = "c2c"  # our key in meta/info.json (LeRobot ignores keys it does not know)
METADATA_PREFIX = "c2c/"  # Episode.metadata columns in the episodes parquet
# A writer's staging directory holds this file until the moment it is renamed into place.
PARTIAL_MARKER = ".c2c-partial"
VISUAL_DTYPES = ("image", "video")
# What PIL raises on damaged image bytes: truncated data, bad chunks (SyntaxError), bad zlib streams, odd headers.
IMAGE_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, zlib.error, Image.DecompressionBombError)
DAMAGED_FIX = "the file is damaged: write the dataset again (or download it again)"


def is_complete_dataset(root: Path) -> bool:
    """True when ``root`` holds a finished dataset: meta/info.json present and no unfinished-write marker."""
    return (root / INFO_PATH).is_file() and not (root / PARTIAL_MARKER).exists()


def read_info(root: Path) -> dict[str, Any]:
    """meta/info.json, checked: JSON object, codebase_version "v3.0", a features object."""
    path = root / INFO_PATH
    if (root / PARTIAL_MARKER).exists():
        raise DatasetError(f"{root}: unfinished write (found {PARTIAL_MARKER}); this is not a usable dataset")
    if not path.is_file():
        raise DatasetError(f"{path}: missing; {root} is not a LeRobot dataset")
    try:
        info = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DatasetError(f"{path}: malformed JSON ({error})") from None
    if not isinstance(info, dict):
        raise DatasetError(f"{path}: expected a JSON object, got {type(info).__name__}")
    version = info.get("codebase_version")
    if version != CODEBASE_VERSION:
        raise DatasetError(f"{path}: codebase_version is {version!r}; only {CODEBASE_VERSION!r} is supported")
    for key in ("fps", "features", "data_path"):
        if key not in info:
            raise DatasetError(f"{path}: missing key '{key}'")
    if not isinstance(info["features"], dict):
        raise DatasetError(f"{path}: 'features' must be an object of feature specs")
    for key in (ACTION, OBS_STATE):
        if key not in info["features"]:
            raise DatasetError(f"{path}: feature '{key}' is missing (features: {sorted(info['features'])})")
    return info


def _first_line(error: BaseException) -> str:
    return next((line.strip() for line in str(error).splitlines() if line.strip()), type(error).__name__)


def read_parquet(path: Path, what: str, **kwargs: Any) -> pa.Table:
    """``pq.read_table`` with a one-line DatasetError naming the file when it is missing or unreadable."""
    if not path.is_file():
        raise DatasetError(f"{path}: {what} file is missing")
    try:
        return pq.read_table(path, **kwargs)
    except (pa.ArrowException, OSError) as error:
        raise DatasetError(f"{path}: cannot read {what} ({_first_line(error)}); {DAMAGED_FIX}") from None


def read_parquet_schema(path: Path, what: str) -> pa.Schema:
    """``pq.read_schema`` with a one-line DatasetError naming the file when it is missing or unreadable."""
    if not path.is_file():
        raise DatasetError(f"{path}: {what} file is missing")
    try:
        return pq.read_schema(path)
    except (pa.ArrowException, OSError) as error:
        raise DatasetError(f"{path}: cannot read {what} ({_first_line(error)}); {DAMAGED_FIX}") from None


def decode_image(data: bytes, where: str) -> np.ndarray:
    """PNG or JPEG bytes as (H, W, 3) uint8; a DatasetError naming ``where`` when they cannot be decoded."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return np.asarray(image.convert("RGB"))
    except IMAGE_DECODE_ERRORS as error:
        reason = "no PNG or JPEG header, or cut short" if isinstance(error, UnidentifiedImageError) else \
            _first_line(error)
        raise DatasetError(f"{where}: cannot decode the image ({reason}); {DAMAGED_FIX}") from None


def read_tasks(root: Path) -> list[str]:
    """Task strings ordered by task_index; the string is a ``task`` column or the pandas index column."""
    path = root / TASKS_PATH
    table = read_parquet(path, "tasks")
    text_column = "task" if "task" in table.column_names else _pandas_index_column(table)
    if text_column is None or TASK_INDEX not in table.column_names:
        raise DatasetError(f"{path}: expected columns '{TASK_INDEX}' and the task text, got {table.column_names}")
    by_index = dict(zip(table[TASK_INDEX].to_pylist(), table[text_column].to_pylist()))
    if sorted(by_index) != list(range(len(by_index))):
        raise DatasetError(f"{path}: task_index values are not 0..{len(by_index) - 1}")
    return [by_index[index] for index in range(len(by_index))]


def _pandas_index_column(table: pa.Table) -> str | None:
    metadata = table.schema.metadata or {}
    if b"pandas" not in metadata:
        return None
    index_columns = json.loads(metadata[b"pandas"]).get("index_columns", [])
    names = [name for name in index_columns if isinstance(name, str) and name in table.column_names]
    return names[0] if names else None


def read_episode_rows(root: Path) -> list[dict[str, Any]]:
    """Rows of meta/episodes/*/*.parquet (without the stats/ columns), sorted by episode_index."""
    paths = sorted((root / EPISODES_DIR).glob("chunk-*/file-*.parquet"))
    if not paths:
        raise DatasetError(f"{root / EPISODES_DIR}: no episodes parquet file")
    rows: list[dict[str, Any]] = []
    for path in paths:
        names = read_parquet_schema(path, "episodes").names
        columns = [name for name in names if not name.startswith("stats/")]
        rows.extend(read_parquet(path, "episodes", columns=columns).to_pylist())
    rows.sort(key=lambda row: row[EPISODE_INDEX])
    return rows


def column_to_numpy(column: pa.ChunkedArray, width: int, where: str) -> np.ndarray:
    """A list column (fixed or variable size) as an (N, width) array, or a scalar column as (N,)."""
    array = column.combine_chunks()
    if not pa.types.is_list(array.type) and not pa.types.is_fixed_size_list(array.type) \
            and not pa.types.is_large_list(array.type):
        return array.to_numpy(zero_copy_only=False)
    if array.null_count:
        raise DatasetError(f"{where}: {array.null_count} rows are null")
    values = array.flatten().to_numpy(zero_copy_only=False)
    if values.size != len(array) * width:
        lengths = set(pc.list_value_length(array).to_pylist())
        raise DatasetError(f"{where}: rows have {sorted(lengths)} values but info.json declares shape [{width}]")
    return values.reshape(len(array), width)


def decode_png_column(column: pa.ChunkedArray, root: Path, shape: tuple[int, ...], where: str) -> np.ndarray:
    """An image column ({"bytes", "path"} structs of PNG/JPEG) as (T, H, W, 3) uint8; errors name ``where`` and the
    frame."""
    frames = []
    for frame_index, item in enumerate(column.to_pylist()):
        data = (item or {}).get("bytes")
        if data is None and (item or {}).get("path"):
            image_path = root / item["path"]  # older layouts keep images beside the parquet
            try:
                data = image_path.read_bytes()
            except OSError as error:
                raise DatasetError(f"{where} frame {frame_index}: cannot read {image_path} ({error.strerror})") \
                    from None
        if data is None:
            raise DatasetError(f"{where}: frame {frame_index} has no image bytes")
        frames.append(decode_image(data, f"{where} frame {frame_index}"))
    images = np.stack(frames)
    if images.shape[1:] != tuple(shape):
        raise DatasetError(f"{where}: images are {list(images.shape[1:])} but info.json declares {list(shape)}")
    return images


class LeRobotDataset:
    """A LeRobot v3.0 dataset on disk, read episode by episode or as whole-dataset columns.

    Example::

        dataset = LeRobotDataset(Path("data/reach"))
        print(dataset.num_episodes, dataset.fps, dataset.camera_keys, dataset.stats["action"]["q99"])
        for episode in dataset:  # Episode objects, images decoded (PNG or mp4)
            ...
        arrays = dataset.frame_arrays(["action", "observation.state", "episode_index"])
    """

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self.info = read_info(self.root)
        self.features: dict[str, dict[str, Any]] = self.info["features"]
        self.tasks = read_tasks(self.root)
        self.stats: dict[str, Stats] = load_stats_json(self.root / STATS_PATH)
        self._episodes = read_episode_rows(self.root)
        self._check_episode_rows()

    # ---- metadata -------------------------------------------------------------------------------------
    @property
    def fps(self) -> int:
        return int(self.info["fps"])

    @property
    def camera_keys(self) -> list[str]:
        return [key for key, spec in self.features.items() if spec.get("dtype") in VISUAL_DTYPES]

    @property
    def num_episodes(self) -> int:
        return len(self._episodes)

    @property
    def num_frames(self) -> int:
        return int(sum(row["length"] for row in self._episodes))

    @property
    def extra_info(self) -> dict[str, Any]:
        return dict(self.info.get(EXTRA_INFO_KEY) or {})

    def __len__(self) -> int:
        return self.num_episodes

    def __iter__(self) -> Iterator[Episode]:
        for index in range(self.num_episodes):
            yield self.episode(index)

    def _check_episode_rows(self) -> None:
        where = self.root / EPISODES_DIR
        indices = [row[EPISODE_INDEX] for row in self._episodes]
        if indices != list(range(len(indices))):
            raise DatasetError(f"{where}: episode_index values are not 0..{len(indices) - 1}")
        declared = self.info.get("total_episodes")
        if declared is not None and declared != len(indices):
            raise DatasetError(f"{self.root / INFO_PATH}: total_episodes is {declared} but {where} has {len(indices)}")

    # ---- frames ---------------------------------------------------------------------------------------
    def _shape(self, key: str) -> tuple[int, ...]:
        return tuple(self.features[key]["shape"])

    def _data_path(self, row: dict[str, Any]) -> Path:
        return self.root / self.info["data_path"].format(
            chunk_index=row["data/chunk_index"], file_index=row["data/file_index"]
        )

    def episode(self, index: int, load_images: bool = True) -> Episode:
        """Episode ``index`` (0-based); NaN/inf or bad shapes raise a DatasetError naming file and episode."""
        if not 0 <= index < self.num_episodes:
            raise IndexError(f"episode {index} is out of range (dataset has {self.num_episodes})")
        row = self._episodes[index]
        path = self._data_path(row)
        image_keys = [key for key in self.camera_keys if self.features[key]["dtype"] == "image"]
        columns = [ACTION, OBS_STATE, TASK_INDEX] + (image_keys if load_images else [])
        table = read_parquet(path, "data", columns=columns, filters=[(EPISODE_INDEX, "==", index)])
        where = f"{path} episode {index}"
        if table.num_rows != row["length"]:
            raise DatasetError(
                f"{where}: {table.num_rows} frames in the data file but the episode row says {row['length']}"
            )
        actions = column_to_numpy(table[ACTION], self._shape(ACTION)[0], f"{where} '{ACTION}'")
        states = column_to_numpy(table[OBS_STATE], self._shape(OBS_STATE)[0], f"{where} '{OBS_STATE}'")
        images = self._episode_images(row, table, where) if load_images else {}
        episode = Episode(
            actions=actions.astype(np.float32, copy=False),
            states=states.astype(np.float32, copy=False),
            images=images,
            task=self._episode_task(table, row, where),
            metadata={
                name[len(METADATA_PREFIX):]: value
                for name, value in row.items()
                if name.startswith(METADATA_PREFIX) and value is not None
            },
        )
        return episode.validate(source=where)

    def _episode_task(self, table: pa.Table, row: dict[str, Any], where: str) -> str:
        task_index = int(table[TASK_INDEX][0].as_py())
        if not 0 <= task_index < len(self.tasks):
            raise DatasetError(f"{where}: task_index {task_index} is not in {self.root / TASKS_PATH}")
        return self.tasks[task_index]

    def _episode_images(self, row: dict[str, Any], table: pa.Table, where: str) -> dict[str, np.ndarray]:
        images: dict[str, np.ndarray] = {}
        for key in self.camera_keys:
            if self.features[key]["dtype"] == "image":
                frames = decode_png_column(table[key], self.root, self._shape(key), f"{where} '{key}'")
                images[camera_name(key)] = frames
            else:
                images[camera_name(key)] = self._episode_video(key, row, where)
        return images

    def _episode_video(self, key: str, row: dict[str, Any], where: str) -> np.ndarray:
        template = self.info.get("video_path")
        columns = [f"videos/{key}/{name}" for name in ("chunk_index", "file_index", "from_timestamp")]
        if template is None or any(row.get(column) is None for column in columns):
            raise DatasetError(f"{where}: '{key}' is a video feature but video_path or {columns} are missing")
        chunk_index, file_index, from_timestamp = (row[column] for column in columns)
        path = self.root / template.format(video_key=key, chunk_index=chunk_index, file_index=file_index)
        frames = decode_video_span(path, fps=self.fps, start_s=from_timestamp, num_frames=row["length"],
                                   what=f"episode {row[EPISODE_INDEX]} '{key}'")
        if frames.shape[1:] != self._shape(key):
            declared = list(self._shape(key))
            raise DatasetError(f"{path}: frames are {list(frames.shape[1:])} but info.json declares {declared}")
        return frames

    def frame_arrays(self, keys: list[str]) -> dict[str, np.ndarray]:
        """Whole-dataset columns in frame order: vector features as (N, D), scalar columns as (N,)."""
        for key in keys:
            if key not in self.features:
                raise DatasetError(f"{self.root / INFO_PATH}: no feature '{key}' (features: {sorted(self.features)})")
            if self.features[key].get("dtype") in VISUAL_DTYPES:
                raise DatasetError(f"'{key}' is a camera; read images per episode with episode(i)")
        files = sorted({(row["data/chunk_index"], row["data/file_index"]) for row in self._episodes})
        parts: dict[str, list[np.ndarray]] = {key: [] for key in keys}
        for chunk_index, file_index in files:
            path = self._data_path({"data/chunk_index": chunk_index, "data/file_index": file_index})
            table = read_parquet(path, "data", columns=list(keys))
            for key in keys:
                shape = self._shape(key)
                width = shape[0] if len(shape) == 1 else int(np.prod(shape))
                values = column_to_numpy(table[key], width, f"{path} '{key}'")
                if np.issubdtype(values.dtype, np.floating) and not np.isfinite(values).all():
                    raise DatasetError(self._non_finite(path, key, values))
                parts[key].append(values)
        return {key: np.concatenate(arrays) for key, arrays in parts.items()}

    def _non_finite(self, path: Path, key: str, values: np.ndarray) -> str:
        """The message naming the file, episode, frame and dim of the first NaN or inf of ``values``."""
        first = np.argwhere(~np.isfinite(values.reshape(len(values), -1)))[0]
        row, dim = int(first[0]), int(first[1])
        where = f"row {row}"
        try:
            rows = read_parquet(path, "data", columns=[EPISODE_INDEX, FRAME_INDEX])
            where = f"episode {rows[EPISODE_INDEX][row].as_py()}, frame {rows[FRAME_INDEX][row].as_py()}"
        except (DatasetError, KeyError, IndexError, pa.ArrowException):
            pass  # the row number is all there is
        return (f"{path}: '{key}' has a non-finite value ({values.reshape(len(values), -1)[row, dim]}) at {where}, "
                f"dim {dim}; drop or repair that episode and write the dataset again")
