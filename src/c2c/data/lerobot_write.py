"""Write a LeRobot v3.0 dataset with pyarrow and PyAV, atomically.

Everything is written into a sibling staging directory ``.<name>.partial-<pid>-<token>`` that carries an
unfinished-write marker; :meth:`LeRobotWriter.finalize` writes the meta files (:mod:`c2c.data.lerobot_meta`),
removes the marker and renames the directory into place, so ``root`` is either absent (or the old dataset) or
complete.

Example::

    with LeRobotWriter(Path("data/reach"), fps=80, robot_type="sawyer") as writer:
        for episode in episodes:  # c2c.data.episodes.Episode
            writer.add_episode(episode)
        writer.finalize(extra_info={"env": "reach-v3"})
"""

from __future__ import annotations

import io
import json
import os
import secrets
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from c2c.constants import ACTION, DEFAULT_COLUMNS, EPISODE_INDEX, FRAME_INDEX, INDEX, OBS_STATE, TASK_INDEX
from c2c.constants import TIMESTAMP, camera_name, image_key
from c2c.data.episodes import Episode
from c2c.data.lerobot_meta import EpisodeStats, metadata_columns, write_meta
from c2c.data.lerobot_read import (
    CODEBASE_VERSION, DATA_PATH, EXTRA_INFO_KEY, PARTIAL_MARKER, VIDEO_PATH, is_complete_dataset,
)
from c2c.data.video import VideoEncoder, video_stream_info
from c2c.utils.threads import usable_cpus
from c2c.errors import DatasetError

# PNG is lossless at any level; level 1 is several times faster than the default 6 on 2 cores.
PNG_COMPRESS_LEVEL = 1
IMAGE_NAMES = ["height", "width", "channels"]
BYTES_PER_MB = 1024**2


def _next_chunk_file(chunk_index: int, file_index: int, chunks_size: int) -> tuple[int, int]:
    """LeRobot's rollover: the next file index, and a new chunk after ``chunks_size`` files."""
    return (chunk_index + 1, 0) if file_index == chunks_size - 1 else (chunk_index, file_index + 1)


@dataclass
class _Rollover:
    """Which (chunk, file) an appended stream writes to, and when to start the next one.

    Like LeRobot, a new file starts when the current size plus the episode's estimated size (the
    file's average bytes per frame so far) would reach the limit; a file always gets at least one episode.
    """

    limit_bytes: float
    chunks_size: int
    chunk_index: int = 0
    file_index: int = 0
    frames_in_file: int = 0

    def needs_new_file(self, bytes_in_file: float, episode_frames: int) -> bool:
        if self.frames_in_file == 0:
            return False
        estimate = bytes_in_file / self.frames_in_file * episode_frames
        return bytes_in_file + estimate >= self.limit_bytes

    def advance(self) -> None:
        self.chunk_index, self.file_index = _next_chunk_file(self.chunk_index, self.file_index, self.chunks_size)
        self.frames_in_file = 0


def _encode_png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return buffer.getvalue()


_png_pool: tuple[int, ThreadPoolExecutor] | None = None  # (threads, pool), made on first use


def _encode_pngs(frames: np.ndarray) -> list[bytes]:
    """Every frame as PNG bytes, in order, on one thread per usable core (Pillow's encoder releases the GIL)."""
    global _png_pool
    threads = min(usable_cpus(), 8)
    if threads < 2 or len(frames) < 8:
        return [_encode_png(image) for image in frames]
    if _png_pool is None or _png_pool[0] != threads:
        _png_pool = (threads, ThreadPoolExecutor(max_workers=threads, thread_name_prefix="png"))
    return list(_png_pool[1].map(_encode_png, frames, chunksize=max(1, len(frames) // (4 * threads))))


def _vector_feature(dim: int, names: list[str] | None, key: str) -> dict[str, Any]:
    if names is not None and len(names) != dim:
        raise DatasetError(f"'{key}' has {dim} dims but {len(names)} names were given: {names}")
    return {"dtype": "float32", "shape": [dim], "names": list(names) if names is not None else None}


class LeRobotWriter:
    """Streams :class:`Episode` objects into a LeRobot v3.0 dataset at ``root``.

    Features come from the first episode: ``action`` float32 [A], ``observation.state`` float32 [S],
    ``observation.images.<camera>`` ("image": PNG bytes in the parquet; "video": one mp4 stream per
    file), and LeRobot's timestamp/frame_index/episode_index/index/task_index columns. Scalar entries of
    ``Episode.metadata`` become ``c2c/<name>`` columns of the episodes parquet. ``meta/stats.json`` holds
    exact global quantiles (see :mod:`c2c.data.stats`).

    Example::

        with LeRobotWriter(Path("data/demo"), fps=10, image_format="video") as writer:
            writer.add_episode(episode)
            writer.finalize()
        LeRobotDataset(Path("data/demo")).episode(0)
    """

    def __init__(
        self, root: Path | str, *, fps: int, robot_type: str | None = None,
        image_format: Literal["image", "video"] = "image", chunks_size: int = 1000,
        data_files_size_mb: float = 100, video_files_size_mb: float = 200,
        state_names: list[str] | None = None, action_names: list[str] | None = None, overwrite: bool = False,
    ) -> None:
        if image_format not in ("image", "video"):
            raise DatasetError(f"image_format must be 'image' or 'video', got {image_format!r}")
        if fps <= 0 or chunks_size <= 0:
            raise DatasetError(f"fps and chunks_size must be positive, got fps={fps}, chunks_size={chunks_size}")
        self.root = Path(root)
        self.fps, self.robot_type, self.image_format = fps, robot_type, image_format
        self.chunks_size = chunks_size
        self.data_files_size_mb, self.video_files_size_mb = data_files_size_mb, video_files_size_mb
        self.state_names, self.action_names = state_names, action_names
        self.overwrite = overwrite
        self._check_target()
        _remove_stale_staging(self.root)
        # pid: tells later writers whether the owner still runs; token: two writers in one process differ.
        self.staging = self.root.parent / f".{self.root.name}.partial-{os.getpid()}-{secrets.token_hex(4)}"
        self.staging.mkdir(parents=True)
        (self.staging / PARTIAL_MARKER).write_text("written by c2c.data.lerobot.LeRobotWriter; not finished\n")

        self.features: dict[str, dict[str, Any]] | None = None  # set by the first episode
        self._tasks: dict[str, int] = {}
        self._episode_rows: list[dict[str, Any]] = []
        self._stats = EpisodeStats()
        self._data_rollover = _Rollover(data_files_size_mb * BYTES_PER_MB, chunks_size)
        self._data_writer: pq.ParquetWriter | None = None
        self._video_rollover: dict[str, _Rollover] = {}
        self._video_encoders: dict[str, VideoEncoder] = {}
        self._num_frames = 0
        self._finished = False

    # ---- public API -----------------------------------------------------------------------------------
    def add_episode(self, episode: Episode) -> int:
        """Validate and append one episode; returns its episode index.

        A DatasetError from validation (NaN, shapes unlike the first episode's) leaves the writer usable;
        a failure while writing files discards the whole dataset, since the files would be inconsistent.
        """
        if self._finished:
            raise DatasetError(f"{self.root}: the writer is already finalized or aborted")
        index = len(self._episode_rows)
        episode.validate(source=f"episode {index}")
        features = self.features or self._infer_features(episode)
        self._check_matches(episode, index, features)
        extra_columns = metadata_columns(episode.metadata, index)
        self.features = features
        try:
            row = self._write_episode(episode, index)
        except BaseException:
            self.abort()
            raise
        row.update(extra_columns)
        self._episode_rows.append(row)
        self._num_frames += episode.length
        return index

    def _write_episode(self, episode: Episode, index: int) -> dict[str, Any]:
        task_index = self._tasks.setdefault(episode.task, len(self._tasks))
        columns = self._frame_columns(episode, index, task_index)
        row: dict[str, Any] = {EPISODE_INDEX: index, "tasks": [episode.task], "length": episode.length}
        row.update(self._write_data(columns, episode))
        if self.image_format == "video":
            for camera, frames in episode.images.items():
                row.update(self._write_video(image_key(camera), frames))
        row.update(self._stats.add_episode(columns, episode))
        return row

    def finalize(self, extra_info: dict[str, Any] | None = None) -> Path:
        """Write the meta files and move the dataset into place; returns ``root``."""
        if self._finished:
            raise DatasetError(f"{self.root}: the writer is already finalized or aborted")
        if not self._episode_rows:
            raise DatasetError(f"{self.root}: no episodes were added; nothing to finalize")
        try:
            self._close_streams()
            self._write_meta(extra_info or {})
            self._move_into_place()
        except BaseException:
            self.abort()
            raise
        self._finished = True
        return self.root

    def abort(self) -> None:
        """Discard everything written so far; ``root`` is left as it was."""
        self._finished = True
        try:
            self._close_streams()
        finally:
            shutil.rmtree(self.staging, ignore_errors=True)

    def __enter__(self) -> "LeRobotWriter":
        return self

    def __exit__(self, exc_type: type | None, exc: BaseException | None, traceback: object) -> None:
        if exc_type is not None:
            self.abort()
            return
        if not self._finished:
            try:
                self.finalize()  # leaving the block normally means the episodes are all there
            finally:
                if not self._finished:  # e.g. no episodes: nothing to keep
                    self.abort()

    # ---- checks ---------------------------------------------------------------------------------------
    def _check_target(self) -> None:
        if not self.root.exists() or self.overwrite:
            return
        if is_complete_dataset(self.root):
            raise DatasetError(f"{self.root}: a dataset already exists there (pass overwrite=True to replace it)")
        if not self.root.is_dir() or any(self.root.iterdir()):
            raise DatasetError(f"{self.root}: exists and is not an empty directory (pass overwrite=True to replace it)")

    def _infer_features(self, episode: Episode) -> dict[str, dict[str, Any]]:
        features = {
            ACTION: _vector_feature(episode.actions.shape[1], self.action_names, ACTION),
            OBS_STATE: _vector_feature(episode.states.shape[1], self.state_names, OBS_STATE),
        }
        for camera, frames in episode.images.items():
            height, width = frames.shape[1:3]
            if self.image_format == "video" and (height % 2 or width % 2):
                raise DatasetError(
                    f"episode 0: camera '{camera}' is {height}x{width}; yuv420p video needs an even height and "
                    "width (use image_format='image' or crop a row/column)"
                )
            features[image_key(camera)] = {
                "dtype": self.image_format, "shape": list(frames.shape[1:]), "names": IMAGE_NAMES,
            }
        features[TIMESTAMP] = {"dtype": "float32", "shape": [1], "names": None}
        for key in (FRAME_INDEX, EPISODE_INDEX, INDEX, TASK_INDEX):
            features[key] = {"dtype": "int64", "shape": [1], "names": None}
        return features

    def _check_matches(self, episode: Episode, index: int, features: dict[str, dict[str, Any]]) -> None:
        given = {ACTION: list(episode.actions.shape[1:]), OBS_STATE: list(episode.states.shape[1:])}
        given.update({image_key(camera): list(frames.shape[1:]) for camera, frames in episode.images.items()})
        expected = {key: spec["shape"] for key, spec in features.items() if key not in DEFAULT_COLUMNS}
        for key in sorted(set(given) | set(expected)):
            if given.get(key) != expected.get(key):
                raise DatasetError(
                    f"episode {index}: '{key}' has per-frame shape {given.get(key, 'none (no such key)')} but "
                    f"the dataset's first episode had {expected.get(key, 'none (no such key)')}"
                )

    # ---- frames ---------------------------------------------------------------------------------------
    def _frame_columns(self, episode: Episode, index: int, task_index: int) -> dict[str, np.ndarray]:
        frame_index = np.arange(episode.length, dtype=np.int64)
        return {
            ACTION: episode.actions.astype(np.float32),
            OBS_STATE: episode.states.astype(np.float32),
            TIMESTAMP: (frame_index / self.fps).astype(np.float32),
            FRAME_INDEX: frame_index,
            EPISODE_INDEX: np.full(episode.length, index, dtype=np.int64),
            INDEX: self._num_frames + frame_index,
            TASK_INDEX: np.full(episode.length, task_index, dtype=np.int64),
        }

    def _frame_table(self, columns: dict[str, np.ndarray], episode: Episode) -> pa.Table:
        assert self.features is not None
        arrays: dict[str, pa.Array] = {}
        for key, spec in self.features.items():  # info.json order, as LeRobot writes it
            if spec["dtype"] == "video":
                continue
            if spec["dtype"] == "image":
                frames = episode.images[camera_name(key)]
                arrays[key] = pa.array(
                    [{"bytes": data, "path": f"frame-{i:06d}.png"} for i, data in enumerate(_encode_pngs(frames))],
                    type=pa.struct([("bytes", pa.binary()), ("path", pa.string())]),
                )
            elif key in (ACTION, OBS_STATE):
                values = columns[key]
                arrays[key] = pa.FixedSizeListArray.from_arrays(pa.array(values.ravel()), values.shape[1])
            else:
                arrays[key] = pa.array(columns[key])
        return pa.table(arrays).replace_schema_metadata({b"huggingface": json.dumps(self._hf_features()).encode()})

    def _hf_features(self) -> dict[str, Any]:
        """The schema note Hugging Face ``datasets`` reads to decode image structs (LeRobot writes it too)."""
        assert self.features is not None
        described: dict[str, Any] = {}
        for key, spec in self.features.items():
            if spec["dtype"] == "image":
                described[key] = {"_type": "Image"}
            elif spec["dtype"] != "video" and key in (ACTION, OBS_STATE):
                element = {"dtype": spec["dtype"], "_type": "Value"}
                described[key] = {"feature": element, "length": spec["shape"][0], "_type": "List"}
            elif spec["dtype"] != "video":
                described[key] = {"dtype": spec["dtype"], "_type": "Value"}
        return {"info": {"features": described}}

    def _write_data(self, columns: dict[str, np.ndarray], episode: Episode) -> dict[str, Any]:
        rollover = self._data_rollover
        path = self.staging / DATA_PATH.format(chunk_index=rollover.chunk_index, file_index=rollover.file_index)
        if self._data_writer is not None and rollover.needs_new_file(path.stat().st_size, episode.length):
            self._data_writer.close()
            self._data_writer = None
            rollover.advance()
        table = self._frame_table(columns, episode)
        if self._data_writer is None:
            path = self.staging / DATA_PATH.format(chunk_index=rollover.chunk_index, file_index=rollover.file_index)
            path.parent.mkdir(parents=True, exist_ok=True)
            self._data_writer = pq.ParquetWriter(path, table.schema, compression="snappy")
        self._data_writer.write_table(table)  # one row group per episode: readers can skip by episode_index
        start = self._num_frames
        rollover.frames_in_file += episode.length
        return {
            "data/chunk_index": rollover.chunk_index, "data/file_index": rollover.file_index,
            "dataset_from_index": start, "dataset_to_index": start + episode.length,
        }

    def _write_video(self, key: str, frames: np.ndarray) -> dict[str, Any]:
        rollover = self._video_rollover.setdefault(
            key, _Rollover(self.video_files_size_mb * BYTES_PER_MB, self.chunks_size)
        )
        encoder = self._video_encoders.get(key)
        if encoder is not None and rollover.needs_new_file(encoder.bytes_written, frames.shape[0]):
            encoder.close()
            encoder = None
            rollover.advance()
        if encoder is None:
            path = self.staging / VIDEO_PATH.format(
                video_key=key, chunk_index=rollover.chunk_index, file_index=rollover.file_index
            )
            encoder = VideoEncoder(path, fps=self.fps, height=frames.shape[1], width=frames.shape[2])
            self._video_encoders[key] = encoder
        start = encoder.num_frames
        encoder.write(frames)
        rollover.frames_in_file += frames.shape[0]
        prefix = f"videos/{key}/"
        return {
            prefix + "chunk_index": rollover.chunk_index, prefix + "file_index": rollover.file_index,
            prefix + "from_timestamp": start / self.fps, prefix + "to_timestamp": encoder.num_frames / self.fps,
        }

    def _close_streams(self) -> None:
        if self._data_writer is not None:
            self._data_writer.close()
            self._data_writer = None
        for encoder in self._video_encoders.values():
            encoder.close()
        self._video_encoders.clear()

    # ---- meta files -----------------------------------------------------------------------------------
    def _info(self, extra_info: dict[str, Any]) -> dict[str, Any]:
        assert self.features is not None
        features = json.loads(json.dumps(self.features))  # a copy
        for key, encoder_path in self._first_video_files().items():
            features[key]["info"] = video_stream_info(encoder_path)
        info = {
            "codebase_version": CODEBASE_VERSION,
            "robot_type": self.robot_type,
            "total_episodes": len(self._episode_rows),
            "total_frames": self._num_frames,
            "total_tasks": len(self._tasks),
            "chunks_size": self.chunks_size,
            "data_files_size_in_mb": self.data_files_size_mb,
            "video_files_size_in_mb": self.video_files_size_mb,
            "fps": self.fps,
            "splits": {"train": f"0:{len(self._episode_rows)}"},
            "data_path": DATA_PATH,
            "video_path": VIDEO_PATH if self._video_rollover else None,
            "features": features,
        }
        if extra_info:
            info[EXTRA_INFO_KEY] = extra_info
        return info

    def _first_video_files(self) -> dict[str, Path]:
        return {
            key: self.staging / VIDEO_PATH.format(video_key=key, chunk_index=0, file_index=0)
            for key in self._video_rollover
        }

    def _write_meta(self, extra_info: dict[str, Any]) -> None:
        write_meta(self.staging, info=self._info(extra_info), stats=self._stats.global_stats(), tasks=self._tasks,
                   episode_rows=self._episode_rows)

    def _move_into_place(self) -> None:
        self._check_target()  # someone may have written there since __init__
        old = self.root.parent / f".{self.root.name}.old-{os.getpid()}"
        if self.root.exists():
            self.root.rename(old)  # overwrite=True (or an empty directory): keep it until the new one is in place
        (self.staging / PARTIAL_MARKER).unlink()
        self.staging.rename(self.root)
        if old.exists():
            shutil.rmtree(old) if old.is_dir() else old.unlink()


def _remove_stale_staging(root: Path) -> None:
    """Delete staging directories for ``root`` whose writing process no longer runs (a crash or a kill)."""
    for staging in root.parent.glob(f".{root.name}.partial-*"):
        pid_text = staging.name.rsplit(".partial-", 1)[1].split("-")[0]
        if pid_text.isdigit() and not _process_running(int(pid_text)):
            shutil.rmtree(staging, ignore_errors=True)


def _process_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists but belongs to someone else
    return True
