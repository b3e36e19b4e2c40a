"""Single frames of a LeRobot v3 dataset's cameras, decoded on demand, and per-step batches built in DataLoader workers.

Training on a dataset whose images do not fit in memory (LIBERO at 224 px: ~77 GiB) decodes only the frames a batch
needs. :class:`FrameStore` answers (camera, global frame index) with the uint8 (H, W, 3) image, resized to the
model's size by :func:`resize_frame` (the in-memory path resizes with the same function, so both give identical
pixels). Building a store decodes nothing: the episode rows that :class:`LeRobotDataset` already read locate every
frame. Files are opened lazily, once per process (keyed by pid), so a store made before a DataLoader forks its
workers opens its own handles in each worker:

- video features: the mp4 stays open; a frame is reached by seeking to the keyframe at or before it and decoding
  forward, or by decoding on from the last frame decoded when that decodes no more frames;
- image features: the PNG bytes come from the parquet row group that holds the frame's row (a few kept per process).

Example::

    store = FrameStore(LeRobotDataset(root), ["image", "image2"], size=224)
    store.frames("image", np.array([5, 9000]))          # (2, 224, 224, 3) uint8
    check_decodable(dataset, ["image", "image2"])        # DatasetError naming the file and codec, or nothing
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from c2c.constants import EPISODE_INDEX, FRAME_INDEX, OBS_IMAGES_PREFIX, camera_name, image_key
from c2c.data.video import RGBConverter, import_pyav
from c2c.errors import ConfigError, DatasetError

ROW_GROUP_CACHE = 4  # parquet row groups of PNG bytes kept per process (one per episode for our writer)
DECODER_THREADS = 1  # per video decoder: DataLoader workers give the parallelism


def resize_frame(frame: np.ndarray, size: int) -> np.ndarray:
    """(H, W, 3) uint8 -> (size, size, 3) with PIL's bilinear filter (what both loading paths use)."""
    from PIL import Image

    return np.asarray(Image.fromarray(frame).resize((size, size), Image.Resampling.BILINEAR))


def _decode_png(data: bytes, where: str) -> np.ndarray:
    from c2c.data.lerobot_read import decode_image

    return decode_image(data, where)


class _VideoReader:
    """One open mp4 of one process: frame k of the file, seeking only when decoding on would cost more."""

    def __init__(self, path: Path, fps: int) -> None:
        av = import_pyav()
        self.path, self.fps = path, fps
        try:
            self.container = av.open(str(path))
        except (av.error.FFmpegError, OSError) as error:
            raise DatasetError(f"{path}: cannot open video ({error})") from None
        self.stream = self.container.streams.video[0]
        if self.stream.codec_context is not None:
            self.stream.codec_context.thread_count = DECODER_THREADS
        self.keyframes = self._keyframe_indices()
        self.to_rgb = RGBConverter()  # kept: a fresh reformatter per frame costs ~5 ms at 256 px
        self.frames: Iterator[Any] | None = None  # the running decode
        self.position = -1  # index of the last frame it decoded

    def _keyframe_indices(self) -> np.ndarray | None:
        entries = getattr(self.stream, "index_entries", None)  # the demuxer's index (newer PyAV only)
        if entries is None:
            return None
        scale = float(self.stream.time_base) * self.fps
        return np.array(sorted(round(entry.timestamp * scale) for entry in entries if entry.is_keyframe), np.int64)

    def _decodes_on(self, index: int) -> bool:
        """Whether decoding on from the current position reaches ``index`` in no more frames than a seek would."""
        if self.frames is None or index <= self.position:
            return False
        if self.keyframes is None or not len(self.keyframes):
            return index - self.position <= 2
        before = np.searchsorted(self.keyframes, index, side="right") - 1  # a seek decodes from keyframes[before]
        return before < 0 or self.keyframes[before] <= self.position + 1

    def frame(self, index: int) -> np.ndarray:
        """Frame ``index`` of the file (stamped index / fps) as (H, W, 3) uint8."""
        av = import_pyav()
        try:
            found = self._decode_until(index) if self._decodes_on(index) else None
            if found is None:
                self._seek(index)
                found = self._decode_until(index)
            if found is None and index > 0:  # an unusual keyframe layout: decode from the start instead
                self._seek(0)
                found = self._decode_until(index)
        except av.error.FFmpegError as error:
            self.frames = None
            raise DatasetError(f"{self.path}: cannot decode frame {index} ({error})") from None
        if found is None:
            raise DatasetError(f"{self.path}: frame {index} ({index / self.fps:.4f}s) is missing")
        return found

    def _seek(self, index: int) -> None:
        target = round(index / self.fps / float(self.stream.time_base))  # the frame's pts; lands on a keyframe
        self.container.seek(target, stream=self.stream, backward=True, any_frame=False)
        self.frames = self.container.decode(self.stream)
        self.position = -1

    def _rgb(self, frame: Any) -> np.ndarray:
        """The pixels of ``frame.to_ndarray(format="rgb24")`` (what the in-memory path reads)."""
        return self.to_rgb(frame)

    def _decode_until(self, index: int) -> np.ndarray | None:
        assert self.frames is not None
        for frame in self.frames:
            self.position = round(float(frame.pts * self.stream.time_base) * self.fps)
            if self.position == index:
                return self._rgb(frame)
            if self.position > index:
                break  # the seek landed past it
        else:
            self.frames = None  # the end of the file
        return None


class _Handles:
    """What one process has open: video readers, parquet files, recently read row groups."""

    def __init__(self) -> None:
        self.videos: dict[Path, _VideoReader] = {}
        self.parquets: dict[Path, tuple[Any, np.ndarray]] = {}  # path -> (ParquetFile, first row of each group)
        self.row_groups: OrderedDict[tuple[Path, int, str], Any] = OrderedDict()


class FrameStore:
    """uint8 images of (camera, global frame index), decoded when asked for and resized to ``size`` (None: as stored).

    Global frame indices follow the episodes in episode order, as ``LeRobotDataset.frame_arrays`` does.
    """

    def __init__(self, dataset: Any, cameras: Sequence[str], size: int | None = None) -> None:
        rows = dataset._episodes  # the episodes parquet rows, read once by LeRobotDataset
        self.root, self.fps, self.size = Path(dataset.root), dataset.fps, size
        self.cameras = tuple(cameras)
        self.lengths = np.array([row["length"] for row in rows], dtype=np.int64)
        self.starts = np.concatenate([[0], np.cumsum(self.lengths)[:-1]]).astype(np.int64)
        self.num_frames = int(self.lengths.sum())
        self.kinds: dict[str, str] = {}  # camera -> "image" or "video"
        self.shapes: dict[str, tuple[int, ...]] = {}  # camera -> stored (H, W, 3)
        self.paths: dict[str, list[Path]] = {}  # camera -> files it is stored in
        self.file_of: dict[str, np.ndarray] = {}  # camera -> per episode: which of those files
        self.first_of: dict[str, np.ndarray] = {}  # camera -> per episode: its first frame's row / frame in that file
        for camera in self.cameras:
            key = image_key(camera)
            spec = dataset.features.get(key)
            if spec is None or spec.get("dtype") not in ("image", "video"):
                raise ConfigError(f"camera {camera!r} is not in the dataset at {self.root} "
                                  f"(cameras: {[camera_name(k) for k in dataset.camera_keys]})")
            self.kinds[camera], self.shapes[camera] = spec["dtype"], tuple(spec["shape"])
            files = [episode_file(dataset, row, key) for row in rows]
            if spec["dtype"] == "video":
                firsts = [round(row[f"videos/{key}/from_timestamp"] * self.fps) for row in rows]
            else:  # rows of an episode follow those of the episodes before it in the same file
                firsts, seen = [], {}
                for path, length in zip(files, self.lengths):
                    firsts.append(seen.get(path, 0))
                    seen[path] = firsts[-1] + int(length)
            self.paths[camera] = sorted(set(files))
            number = {path: i for i, path in enumerate(self.paths[camera])}
            self.file_of[camera] = np.array([number[path] for path in files], dtype=np.int64)
            self.first_of[camera] = np.array(firsts, dtype=np.int64)
        self._handles: dict[int, _Handles] = {}

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_handles": {}}  # open files stay with the process that opened them

    @property
    def handles(self) -> _Handles:
        # Keyed by pid: a forked worker opens its own files and never touches (or closes) its parent's.
        return self._handles.setdefault(os.getpid(), _Handles())

    def locate(self, camera: str, index: int) -> tuple[int, Path, int]:
        """(episode, file, row or frame in that file) of global frame ``index``."""
        if not 0 <= index < self.num_frames:
            raise IndexError(f"frame {index} is out of range (the dataset has {self.num_frames})")
        episode = int(np.searchsorted(self.starts, index, side="right") - 1)
        offset = index - int(self.starts[episode])
        return episode, self.paths[camera][self.file_of[camera][episode]], int(self.first_of[camera][episode]) + offset

    def frame(self, camera: str, index: int) -> np.ndarray:
        """The (size, size, 3) uint8 image of ``camera`` at global frame ``index``."""
        episode, path, position = self.locate(camera, int(index))
        frame_index = int(index - self.starts[episode])
        if self.kinds[camera] == "video":
            try:
                image = self._video(path).frame(position)
            except DatasetError as error:
                where = f"episode {episode} frame {frame_index} of '{image_key(camera)}'"
                raise DatasetError(f"{error} ({where})") from None
        else:
            image = _decode_png(self._png_bytes(camera, path, position, episode, frame_index),
                                f"{path} episode {episode} frame {frame_index} '{image_key(camera)}'")
        if image.shape != self.shapes[camera]:
            raise DatasetError(f"{path}: '{image_key(camera)}' frames are {list(image.shape)} but info.json "
                               f"declares {list(self.shapes[camera])}")
        if self.size is not None and image.shape[:2] != (self.size, self.size):
            image = resize_frame(image, self.size)
        return image

    def frames(self, camera: str, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """(B, size, size, 3) uint8 images of ``indices``, decoded in frame order (neighbours share seeks)."""
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        shape = (self.size, self.size, 3) if self.size is not None else self.shapes[camera]
        out = np.empty((len(indices), *shape), dtype=np.uint8)
        for position in np.argsort(indices, kind="stable"):
            out[position] = self.frame(camera, int(indices[position]))
        return out

    def camera(self, camera: str) -> "CameraFrames":
        return CameraFrames(self, camera)

    def _video(self, path: Path) -> _VideoReader:
        videos = self.handles.videos
        if path not in videos:
            videos[path] = _VideoReader(path, self.fps)
        return videos[path]

    def _png_bytes(self, camera: str, path: Path, row: int, episode: int, frame_index: int) -> bytes:
        import pyarrow as pa
        import pyarrow.parquet as pq

        handles, key = self.handles, image_key(camera)
        try:
            if path not in handles.parquets:
                parquet = pq.ParquetFile(path)
                sizes = [parquet.metadata.row_group(i).num_rows for i in range(parquet.metadata.num_row_groups)]
                handles.parquets[path] = (parquet, np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64))
            parquet, bounds = handles.parquets[path]
            group = int(np.searchsorted(bounds, row, side="right") - 1)
            if not 0 <= group < len(bounds) - 1:
                raise DatasetError(f"{path}: has {bounds[-1]} rows, but episode {episode} needs row {row}")
            cache_key = (path, group, key)
            if cache_key not in handles.row_groups:
                columns = [key, EPISODE_INDEX, FRAME_INDEX]
                handles.row_groups[cache_key] = parquet.read_row_group(group, columns=columns, use_threads=False)
        except (pa.ArrowException, OSError) as error:
            raise DatasetError(f"{path}: cannot read '{key}' ({str(error).splitlines()[0]})") from None
        handles.row_groups.move_to_end(cache_key)
        while len(handles.row_groups) > ROW_GROUP_CACHE:
            handles.row_groups.popitem(last=False)
        table, at = handles.row_groups[cache_key], row - int(bounds[group])
        found = (table[EPISODE_INDEX][at].as_py(), table[FRAME_INDEX][at].as_py())
        if found != (episode, frame_index):
            raise DatasetError(f"{path}: row {row} holds episode {found[0]} frame {found[1]}, expected episode "
                               f"{episode} frame {frame_index} (rows are not in episode order)")
        item = table[key][at].as_py() or {}
        data = item.get("bytes")
        if data is None and item.get("path"):
            try:
                data = (self.root / item["path"]).read_bytes()
            except OSError as error:
                raise DatasetError(f"{path} episode {episode} frame {frame_index}: cannot read "
                                   f"{self.root / item['path']} ({error.strerror})") from None
        if data is None:
            raise DatasetError(f"{path}: episode {episode} frame {frame_index} has no '{key}' image bytes")
        return data


class CameraFrames:
    """The (N, size, size, 3) uint8 images of one camera, read lazily: indexing decodes only those frames."""

    def __init__(self, store: FrameStore, camera: str) -> None:
        self.store, self.camera = store, camera
        side = store.size
        self.shape = (store.num_frames, *((side, side, 3) if side is not None else store.shapes[camera]))
        self.dtype = np.dtype(np.uint8)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index: int | slice | Sequence[int] | np.ndarray) -> np.ndarray:
        if isinstance(index, (int, np.integer)):
            return self.store.frame(self.camera, int(index) % len(self) if index < 0 else int(index))
        if isinstance(index, slice):
            index = np.arange(len(self))[index]
        indices = np.asarray(index)
        if indices.dtype == bool:
            indices = np.flatnonzero(indices)
        indices = np.where(indices < 0, indices + len(self), indices)
        return self.store.frames(self.camera, indices).reshape(*indices.shape, *self.shape[1:])

    def __repr__(self) -> str:
        return f"CameraFrames({self.camera!r}, shape={self.shape}, lazy)"


def episode_file(dataset: Any, row: dict[str, Any], key: str) -> Path:
    """The file that holds ``key`` of one episode row: its mp4 (video features) or its data parquet (images)."""
    if dataset.features[key]["dtype"] == "image":
        return dataset._data_path(row)
    template = dataset.info.get("video_path")
    columns = [f"videos/{key}/{name}" for name in ("chunk_index", "file_index", "from_timestamp")]
    if template is None or any(row.get(column) is None for column in columns):
        raise DatasetError(f"{dataset.root} episode {row[EPISODE_INDEX]}: '{key}' is a video feature but "
                           f"video_path or {columns} are missing")
    return dataset.root / template.format(video_key=key, chunk_index=row[columns[0]], file_index=row[columns[1]])


def check_decodable(dataset: Any, cameras: Sequence[str]) -> None:
    """Open every video file the cameras use and decode its first frame; a DatasetError names a file (and its codec)
    that this PyAV build cannot decode. Image (PNG) cameras need no check."""
    keys = [image_key(camera) for camera in cameras]
    keys = [key for key in keys if dataset.features.get(key, {}).get("dtype") == "video"]
    av = import_pyav() if keys else None
    for key in keys:
        declared = (dataset.features[key].get("info") or {}).get("video.codec")
        for path in sorted({episode_file(dataset, row, key) for row in dataset._episodes}):
            if not path.is_file():
                raise DatasetError(f"{path}: video file of '{key}' is missing")
            _check_file(av, path, declared)


def _check_file(av: Any, path: Path, declared: str | None) -> None:
    build = f"PyAV {av.__version__}"
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise DatasetError(f"{path}: holds no video stream")
            context = container.streams.video[0].codec_context
            if context is None:
                codec = f"{declared} per meta/info.json" if declared else "unknown to FFmpeg"
                raise DatasetError(f"{path}: {build} has no decoder for its video codec ({codec})")
            codec = f"{context.codec.canonical_name} (decoder {context.codec.name})"
            try:
                frame = next(iter(container.decode(video=0)), None)
            except av.error.FFmpegError as error:
                raise DatasetError(f"{path}: {build} cannot decode its {codec} video: {error}") from None
            if frame is None:
                raise DatasetError(f"{path}: {build} decodes no frame of its {codec} video")
    except av.error.FFmpegError as error:
        raise DatasetError(f"{path}: {build} cannot open it ({error})") from None


# --- per-step batches, built in DataLoader workers ------------------------------------------------------------
def _tensor_images(batch: dict[str, Any]) -> dict[str, Any]:
    import torch

    return {key: torch.from_numpy(np.ascontiguousarray(value)) if key.startswith(OBS_IMAGES_PREFIX) else value
            for key, value in batch.items()}


class StepBatches:
    """Map-style dataset over step positions: item i is the list of grad_accum batches of step ``steps[i]``."""

    def __init__(self, make_batch: Callable[[np.ndarray], dict[str, Any]],
                 frames_of_step: Callable[[int], np.ndarray], steps: range) -> None:
        self.make_batch, self.frames_of_step, self.steps = make_batch, frames_of_step, steps

    def __len__(self) -> int:
        return len(self.steps)

    def __getitem__(self, position: int) -> list[dict[str, Any]]:
        step = self.steps[position]
        frames = np.asarray(self.frames_of_step(step))
        if frames.ndim != 2 or not np.issubdtype(frames.dtype, np.integer):
            raise ConfigError(f"frames_of_step({step}) must give an int (grad_accum, B) array, got "
                              f"{frames.dtype} {frames.shape}")
        return [_tensor_images(self.make_batch(row)) for row in frames]


def _as_is(item: Any) -> Any:
    return item


def step_batch_iterator(make_batch: Callable[[np.ndarray], dict[str, Any]], frames_of_step: Callable[[int], np.ndarray],
                        steps: range, *, workers: int = 0, pin_memory: bool = False,
                        prefetch_factor: int = 2) -> Iterator[list[dict[str, Any]]]:
    """Per step, in order: the batches of ``frames_of_step(step)``, built in-process (workers=0) or by a DataLoader's
    persistent workers (forked where the platform allows). Images become torch uint8 tensors (pinned when asked and a
    GPU is present); the rest is as ``make_batch`` returns it. The torch global RNG is left untouched."""
    import torch

    if workers < 0 or prefetch_factor < 1:
        raise ConfigError(f"workers must be >= 0 and prefetch_factor >= 1, got {workers} and {prefetch_factor}")
    dataset = StepBatches(make_batch, frames_of_step, steps)
    pin = pin_memory and torch.cuda.is_available()
    if workers == 0:
        return (_pinned(dataset[i]) if pin else dataset[i] for i in range(len(dataset)))
    import multiprocessing

    context = "fork" if "fork" in multiprocessing.get_all_start_methods() else None
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=None, shuffle=False, num_workers=workers, collate_fn=_as_is, pin_memory=pin,
        prefetch_factor=prefetch_factor, persistent_workers=True, multiprocessing_context=context,
        generator=torch.Generator().manual_seed(0))  # its own generator: worker seeds leave the global RNG alone
    return iter(loader)


def _pinned(batches: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{key: value.pin_memory() if key.startswith(OBS_IMAGES_PREFIX) else value for key, value in batch.items()}
            for batch in batches]
