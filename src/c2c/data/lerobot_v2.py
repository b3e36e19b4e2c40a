"""Read LeRobot v2.0 / v2.1 datasets (and v3.0 ones with other key names) and convert them to our v3.0 layout.

v2.x layout (LeRobot's ``lerobot/common/datasets/utils.py`` before v3.0)::

    meta/info.json               codebase_version "v2.0" | "v2.1", fps, features, chunks_size, data_path, video_path
    meta/episodes.jsonl          one JSON object a line: episode_index, tasks (list of strings), length
    meta/tasks.jsonl             one JSON object a line: task_index, task
    meta/stats.json              v2.0: global stats;  meta/episodes_stats.jsonl  v2.1: per-episode stats
    data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet            one row per frame
    videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4   one per episode and camera

with ``episode_chunk = episode_index // chunks_size``. A feature of dtype "image" is a parquet column of
``{"bytes", "path"}`` structs holding PNG (or JPEG) bytes; one of dtype "video" is an mp4 per episode whose frame
k is stamped k / fps. The source's stats are not read: the writer computes ours from the frames.

A key map says which source features are our cameras, state and action::

    image->image,wrist_image->image2,state->observation.state,actions->action

A target ``action`` or ``observation.state`` names that feature; any other target is a camera name, stored as
``observation.images.<name>`` (``observation.images.<name>`` is accepted as a target too).

Example::

    source = LeRobotSource(Path("libero"), "openpi-libero")
    episode = source.episode(0)  # Episode: actions (T, 7), states (T, 8), images {"image", "image2"}, task
    convert_dataset(Path("libero"), Path("data/libero"), "openpi-libero", resize=128)
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
from PIL import Image

from c2c.constants import ACTION, EPISODE_INDEX, OBS_IMAGES_PREFIX, OBS_STATE, TASK_INDEX, image_key
from c2c.data.episodes import Episode
from c2c.data.lerobot_read import (
    INFO_PATH, VISUAL_DTYPES, column_to_numpy, decode_png_column, read_episode_rows, read_parquet,
    read_parquet_schema, read_tasks,
)
from c2c.data.video import decode_video_span
from c2c.errors import ConfigError, DatasetError

SUPPORTED_VERSIONS = ("v2.0", "v2.1", "v3.0")
V2_EPISODES_PATH = "meta/episodes.jsonl"
V2_TASKS_PATH = "meta/tasks.jsonl"
V2_STATS_PATH = "meta/stats.json"  # v2.0
V2_EPISODES_STATS_PATH = "meta/episodes_stats.jsonl"  # v2.1
V2_DATA_PATH = "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet"
V2_VIDEO_PATH = "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4"
V2_CHUNKS_SIZE = 1000  # LeRobot's default when info.json does not say

KEY_MAP_PRESETS: dict[str, str] = {
    # openpi's LIBERO dataset (v2.0): PNG images in the parquet, 8-dim state, 7-dim actions.
    "openpi-libero": "image->image,wrist_image->image2,state->observation.state,actions->action",
    # LeRobot's LIBERO dataset (v2.1): mp4 videos, LeRobot's key names.
    "lerobot-libero": "observation.images.image->image,observation.images.wrist_image->image2,"
                      "observation.state->observation.state,action->action",
}
PRESET_ACTION_LAYOUTS = {"openpi-libero": "libero", "lerobot-libero": "libero"}  # see c2c.data.windows
KEY_MAP_EXAMPLE = KEY_MAP_PRESETS["openpi-libero"]
CAMERA_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]*$")


@dataclass(frozen=True)
class KeyMap:
    """Which source features are our action, state and cameras (source key -> camera name)."""

    action: str
    state: str
    cameras: dict[str, str]
    name: str  # the preset's name, "auto: ..." or the map as given

    def targets(self) -> dict[str, str]:
        """Source key -> our feature key, as recorded in the converted dataset."""
        mapping = {source: image_key(camera) for source, camera in self.cameras.items()}
        return {**mapping, self.state: OBS_STATE, self.action: ACTION}


def parse_key_map(text: str) -> KeyMap:
    """A preset name or ``SOURCE->TARGET`` pairs separated by commas; a ConfigError names what is wrong."""
    preset = text.strip()
    spec = KEY_MAP_PRESETS.get(preset, preset)

    def bad(problem: str) -> ConfigError:
        return ConfigError(f"--key-map {text!r}: {problem}; expected SOURCE->TARGET pairs separated by commas "
                           f"(e.g. {KEY_MAP_EXAMPLE}) or a preset ({', '.join(KEY_MAP_PRESETS)})")

    action = state = None
    cameras: dict[str, str] = {}
    seen_sources: set[str] = set()
    seen_targets: set[str] = set()
    for entry in spec.split(","):
        parts = [part.strip() for part in entry.split("->")]
        if len(parts) != 2 or not all(parts):
            raise bad(f"entry {entry.strip()!r} is not SOURCE->TARGET")
        source, target = parts
        target = target.removeprefix(OBS_IMAGES_PREFIX)
        if source in seen_sources:
            raise bad(f"source key {source!r} appears twice")
        if target in seen_targets:
            raise bad(f"target {target!r} appears twice")
        seen_sources.add(source)
        seen_targets.add(target)
        if target == ACTION:
            action = source
        elif target == OBS_STATE:
            state = source
        elif CAMERA_NAME.match(target):
            cameras[source] = target
        else:
            raise bad(f"target {target!r} is neither {ACTION}, {OBS_STATE} nor a camera name (letters, digits, _ -)")
    if action is None or state is None:
        raise bad(f"no entry maps to {ACTION if action is None else OBS_STATE}")
    return KeyMap(action=action, state=state, cameras=cameras, name=preset if preset in KEY_MAP_PRESETS else spec)


def auto_key_map(features: dict[str, Any], where: Path) -> KeyMap:
    """The first preset whose keys the dataset has, else our own names (``observation.images.<camera>``)."""
    for name in KEY_MAP_PRESETS:
        key_map = parse_key_map(name)
        if set(key_map.targets()) <= set(features):
            return key_map
    if ACTION in features and OBS_STATE in features:
        cameras = {key: key.removeprefix(OBS_IMAGES_PREFIX) for key, spec in features.items()
                   if key.startswith(OBS_IMAGES_PREFIX) and spec.get("dtype") in VISUAL_DTYPES}
        return KeyMap(action=ACTION, state=OBS_STATE, cameras=cameras, name="auto: the dataset's own key names")
    raise DatasetError(f"{where}: cannot tell which features are the cameras, state and action (features: "
                       f"{sorted(features)}); pass --key-map SOURCE->TARGET,... (e.g. {KEY_MAP_EXAMPLE})")


def read_source_info(root: Path) -> dict[str, Any]:
    """meta/info.json of a v2.0, v2.1 or v3.0 dataset, checked; the version is named when it is not one of those."""
    path = root / INFO_PATH
    if not path.is_file():
        raise DatasetError(f"{path}: missing; {root} is not a LeRobot dataset of version "
                           f"{', '.join(SUPPORTED_VERSIONS)} (v1.x keeps meta_data/info.json: convert it with LeRobot)")
    try:
        info = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DatasetError(f"{path}: malformed JSON ({error})") from None
    if not isinstance(info, dict):
        raise DatasetError(f"{path}: expected a JSON object, got {type(info).__name__}")
    version = info.get("codebase_version")
    if version not in SUPPORTED_VERSIONS:
        raise DatasetError(f"{path}: codebase_version is {version!r}; readable versions are "
                           f"{', '.join(SUPPORTED_VERSIONS)} (convert the dataset to v2.1 or v3.0 with LeRobot first)")
    for key in ("fps", "features", "data_path"):
        if key not in info:
            raise DatasetError(f"{path}: missing key '{key}'")
    if not isinstance(info["features"], dict):
        raise DatasetError(f"{path}: 'features' must be an object of feature specs")
    return info


def image_shape(spec: dict[str, Any], where: str) -> tuple[int, int, int]:
    """(H, W, 3) of a camera feature declared [H, W, 3] or channel first [3, H, W] (names are not trusted)."""
    shape = [int(size) for size in spec.get("shape") or []]
    if len(shape) == 3 and shape[2] == 3:
        return shape[0], shape[1], 3
    if len(shape) == 3 and shape[0] == 3:
        return shape[1], shape[2], 3
    raise DatasetError(f"{where}: camera shape {shape} is neither [H, W, 3] nor [3, H, W]")


def _vector_names(spec: dict[str, Any], dim: int) -> list[str] | None:
    names = spec.get("names")
    if isinstance(names, dict) and len(names) == 1:  # LeRobot's {"motors": [...]}
        names = next(iter(names.values()))
    if isinstance(names, list) and len(names) == dim and all(isinstance(name, str) for name in names):
        return list(names)
    return None


def _read_jsonl(path: Path, what: str) -> list[dict[str, Any]]:
    if not path.is_file():
        raise DatasetError(f"{path}: {what} file is missing")
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise DatasetError(f"{path}:{number}: malformed JSON ({error})") from None
        if not isinstance(row, dict):
            raise DatasetError(f"{path}:{number}: expected a JSON object, got {type(row).__name__}")
        rows.append(row)
    return rows


class LeRobotSource:
    """A LeRobot v2.0, v2.1 or v3.0 dataset read episode by episode through a key map.

    Episodes come out with our names: images keyed by camera name (as stored, no flipping), ``states``,
    ``actions`` as float32, the task string, and ``metadata["source_episode_index"]``.
    """

    def __init__(self, root: Path | str, key_map: KeyMap | str = "auto") -> None:
        self.root = Path(root)
        self.info = read_source_info(self.root)
        self.version: str = self.info["codebase_version"]
        self.features: dict[str, dict[str, Any]] = self.info["features"]
        if isinstance(key_map, str):
            key_map = auto_key_map(self.features, self.root / INFO_PATH) if key_map == "auto" else \
                parse_key_map(key_map)
        self.key_map = key_map
        self._check_key_map()
        if self.version == "v3.0":
            self.tasks = dict(enumerate(read_tasks(self.root)))
            self._rows = read_episode_rows(self.root)
        else:
            self.tasks = self._read_v2_tasks()
            self._rows = self._read_v2_episodes()
        if not self._rows:
            raise DatasetError(f"{self.root}: the dataset has no episodes")

    # ---- metadata -------------------------------------------------------------------------------------
    @property
    def fps(self) -> int:
        return round(float(self.info["fps"]))

    @property
    def num_episodes(self) -> int:
        return len(self._rows)

    @property
    def num_frames(self) -> int:
        return int(sum(row["length"] for row in self._rows))

    @property
    def image_format(self) -> str:
        """"video" when any mapped camera is a video feature, else "image"."""
        dtypes = {self.features[key]["dtype"] for key in self.key_map.cameras}
        return "video" if "video" in dtypes else "image"

    def vector_names(self, key: str) -> list[str] | None:
        """The per-dimension names of a state/action feature when the dataset gives one per dimension."""
        return _vector_names(self.features[key], self.dim(key))

    def __len__(self) -> int:
        return self.num_episodes

    def __iter__(self) -> Iterator[Episode]:
        for position in range(self.num_episodes):
            yield self.episode(position)

    def dim(self, key: str) -> int:
        """The width of a vector feature."""
        return int(self.features[key]["shape"][0])

    def _check_key_map(self) -> None:
        where = self.root / INFO_PATH
        for source, target in self.key_map.targets().items():
            if source not in self.features:
                raise ConfigError(f"key map ({self.key_map.name}): {where} has no feature {source!r} "
                                  f"(features: {sorted(self.features)}); fix --key-map")
            spec = self.features[source]
            if target.startswith(OBS_IMAGES_PREFIX):
                if spec.get("dtype") not in VISUAL_DTYPES:
                    raise ConfigError(f"key map: {where} feature {source!r} is {spec.get('dtype')!r}, not a camera "
                                      f"(image or video); map it to {ACTION} or {OBS_STATE}, or fix --key-map")
                image_shape(spec, f"{where} feature {source!r}")
            elif spec.get("dtype") in VISUAL_DTYPES or spec.get("dtype") == "string" or \
                    len(spec.get("shape") or []) != 1:
                raise ConfigError(f"key map: {where} feature {source!r} ({spec.get('dtype')} {spec.get('shape')}) "
                                  f"cannot be {target}: it needs a numeric vector feature of shape [D]")

    def _read_v2_tasks(self) -> dict[int, str]:
        path = self.root / V2_TASKS_PATH
        tasks = {}
        for row in _read_jsonl(path, "tasks"):
            if not isinstance(row.get("task_index"), int) or not isinstance(row.get("task"), str):
                raise DatasetError(f"{path}: every line needs an integer 'task_index' and a string 'task', got {row}")
            tasks[row["task_index"]] = row["task"]
        return tasks

    def _read_v2_episodes(self) -> list[dict[str, Any]]:
        path = self.root / V2_EPISODES_PATH
        rows = _read_jsonl(path, "episodes")
        for row in rows:
            if not isinstance(row.get(EPISODE_INDEX), int) or not isinstance(row.get("length"), int):
                raise DatasetError(f"{path}: every line needs integer '{EPISODE_INDEX}' and 'length', got {row}")
        return sorted(rows, key=lambda row: row[EPISODE_INDEX])

    # ---- episodes -------------------------------------------------------------------------------------
    def _data_file(self, row: dict[str, Any]) -> tuple[Path, list[tuple[str, str, int]] | None]:
        """The parquet file holding the episode's frames, and the row filter that picks them out."""
        index = row[EPISODE_INDEX]
        if self.version == "v3.0":
            path = self.info["data_path"].format(chunk_index=row["data/chunk_index"], file_index=row["data/file_index"])
            return self.root / path, [(EPISODE_INDEX, "==", index)]
        chunk = index // int(self.info.get("chunks_size") or V2_CHUNKS_SIZE)
        return self.root / self.info["data_path"].format(episode_chunk=chunk, episode_index=index), None

    def _video(self, key: str, row: dict[str, Any], where: str) -> np.ndarray:
        template, index = self.info.get("video_path"), row[EPISODE_INDEX]
        if not template:
            raise DatasetError(f"{self.root / INFO_PATH}: '{key}' is a video feature but 'video_path' is not set")
        if self.version == "v3.0":
            columns = [f"videos/{key}/{name}" for name in ("chunk_index", "file_index", "from_timestamp")]
            if any(row.get(column) is None for column in columns):
                raise DatasetError(f"{where}: the episode row lacks {columns}")
            chunk_index, file_index, start = (row[column] for column in columns)
            path = self.root / template.format(video_key=key, chunk_index=chunk_index, file_index=file_index)
        else:
            chunk = index // int(self.info.get("chunks_size") or V2_CHUNKS_SIZE)
            path, start = self.root / template.format(episode_chunk=chunk, video_key=key, episode_index=index), 0.0
        frames = decode_video_span(path, fps=self.fps, start_s=float(start), num_frames=row["length"],
                                   what=f"episode {index} '{key}'")
        expected = image_shape(self.features[key], where)
        if frames.shape[1:] != expected:
            raise DatasetError(f"{path}: frames are {list(frames.shape[1:])} but info.json declares {list(expected)}")
        return frames

    def episode(self, position: int) -> Episode:
        """The ``position``-th episode (by episode_index); errors name the file, episode and key."""
        if not 0 <= position < self.num_episodes:
            raise IndexError(f"episode {position} is out of range (dataset has {self.num_episodes})")
        row = self._rows[position]
        index = row[EPISODE_INDEX]
        path, filters = self._data_file(row)
        where = f"{path} episode {index}"
        if not path.is_file():
            raise DatasetError(f"{path}: data file of episode {index} is missing")
        names = read_parquet_schema(path, "data").names
        image_keys = [key for key in self.key_map.cameras if self.features[key]["dtype"] == "image"]
        wanted = [self.key_map.action, self.key_map.state, *image_keys]
        missing = [key for key in wanted if key not in names]
        if missing:
            raise DatasetError(f"{path}: columns {missing} are missing (columns: {names})")
        columns = wanted + ([TASK_INDEX] if TASK_INDEX in names else [])
        table = read_parquet(path, "data", columns=columns, filters=filters)
        if table.num_rows != row["length"]:
            raise DatasetError(f"{where}: {table.num_rows} frames in the data file but the episode list says "
                               f"{row['length']}")
        actions = column_to_numpy(table[self.key_map.action], self.dim(self.key_map.action),
                                  f"{where} '{self.key_map.action}'")
        states = column_to_numpy(table[self.key_map.state], self.dim(self.key_map.state),
                                 f"{where} '{self.key_map.state}'")
        images = {}
        for key, camera in self.key_map.cameras.items():
            if self.features[key]["dtype"] == "image":
                shape = image_shape(self.features[key], where)
                images[camera] = decode_png_column(table[key], self.root, shape, f"{where} '{key}'")
            else:
                images[camera] = self._video(key, row, where)
        episode = Episode(actions=actions.astype(np.float32), states=states.astype(np.float32), images=images,
                          task=self._task(table, row, where), metadata={"source_episode_index": int(index)})
        return episode.validate(source=where)

    def _task(self, table: Any, row: dict[str, Any], where: str) -> str:
        if TASK_INDEX in table.column_names:
            task_index = int(table[TASK_INDEX][0].as_py())
            if task_index not in self.tasks:
                raise DatasetError(f"{where}: task_index {task_index} is not in the dataset's task list "
                                   f"({len(self.tasks)} tasks)")
            return self.tasks[task_index]
        tasks = row.get("tasks") or []
        if not tasks or not isinstance(tasks[0], str):
            raise DatasetError(f"{where}: no task_index column and no 'tasks' in the episode list")
        return tasks[0]


def resize_frames(frames: np.ndarray, size: int) -> np.ndarray:
    """(T, H, W, 3) uint8 frames as (T, size, size, 3), bilinear (Pillow antialiases when shrinking)."""
    if frames.shape[1:3] == (size, size):
        return frames
    return np.stack([np.asarray(Image.fromarray(frame).resize((size, size), Image.Resampling.BILINEAR))
                     for frame in frames])


def _check_paths(src: Path, out: Path, overwrite: bool) -> None:
    source, target = src.resolve(), out.resolve()
    if target == source or source in target.parents or target in source.parents:
        raise ConfigError(f"--out {out} overlaps --src {src}; write the converted dataset elsewhere "
                          "(the source is never modified)")
    if out.exists() and not overwrite and (not out.is_dir() or any(out.iterdir())):
        raise DatasetError(f"{out}: already exists; pass --overwrite to replace it, or choose another --out")


def convert_dataset(
    src: Path | str, out: Path | str, key_map: KeyMap | str = "auto", *, resize: int | None = None,
    image_format: str | None = None, action_layout: str | None = None, overwrite: bool = False,
    show_progress: bool = True,
) -> Path:
    """Write the LeRobot dataset at ``src`` (v2.0, v2.1 or v3.0) as our v3.0 dataset at ``out``; returns ``out``.

    ``key_map``: a preset (``openpi-libero``, ``lerobot-libero``), ``SOURCE->TARGET,...`` or ``auto`` (the first
    preset the dataset fits, else its own ``observation.images.*``/``observation.state``/``action``).
    ``resize``: store images at ``resize`` x ``resize`` px. ``image_format``: "image" (PNG) or "video" (default:
    video when the source has videos). ``action_layout``: which action dims are grippers (see
    :data:`c2c.data.windows.GRIPPER_DIMS_PRESETS`; the LIBERO presets imply "libero"). Written atomically through
    :class:`~c2c.data.lerobot_write.LeRobotWriter`; ``src`` is only read.
    """
    from tqdm.auto import tqdm

    from c2c.data.lerobot_write import LeRobotWriter
    from c2c.data.windows import GRIPPER_DIMS_PRESETS

    src, out = Path(src), Path(out)
    if resize is not None and resize <= 0:
        raise ConfigError(f"--resize must be a positive number of pixels, got {resize}")
    if image_format not in (None, "image", "video"):
        raise ConfigError(f"image format must be 'image' or 'video', got {image_format!r}")
    if action_layout is not None and action_layout not in GRIPPER_DIMS_PRESETS:
        raise ConfigError(f"action layout {action_layout!r} is unknown; known: {', '.join(GRIPPER_DIMS_PRESETS)}")
    _check_paths(src, out, overwrite)
    source = LeRobotSource(src, key_map)
    layout = action_layout or PRESET_ACTION_LAYOUTS.get(source.key_map.name)
    action_names, state_names = source.vector_names(source.key_map.action), source.vector_names(source.key_map.state)
    if layout == "libero":
        from c2c.envs.libero_env import ACTION_NAMES, STATE_NAMES

        if action_names is None and source.dim(source.key_map.action) == len(ACTION_NAMES):
            action_names = list(ACTION_NAMES)
        if state_names is None and source.dim(source.key_map.state) == len(STATE_NAMES):
            state_names = list(STATE_NAMES)
    extra_info: dict[str, Any] = {
        "generator": "lerobot-convert",
        "source": {"path": str(src.resolve()), "codebase_version": source.version, "key_map": source.key_map.name,
                   "keys": source.key_map.targets(), "episodes": source.num_episodes, "frames": source.num_frames,
                   "resize": resize},
    }
    if layout is not None:
        extra_info["action_layout"] = layout
    with LeRobotWriter(out, fps=source.fps, robot_type=source.info.get("robot_type"),
                       image_format=image_format or source.image_format, action_names=action_names,
                       state_names=state_names, overwrite=overwrite) as writer:
        with tqdm(total=source.num_episodes, desc=f"convert {source.version}", unit="ep", disable=not show_progress,
                  dynamic_ncols=True) as bar:
            for position in range(source.num_episodes):
                episode = source.episode(position)
                if resize is not None:
                    episode.images = {name: resize_frames(frames, resize) for name, frames in episode.images.items()}
                writer.add_episode(episode)
                bar.update(1)
        writer.finalize(extra_info)
    return out
