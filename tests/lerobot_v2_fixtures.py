"""Small LeRobot v2.0 / v2.1 datasets written in LeRobot's own layout, as the LIBERO datasets on the Hub have it.

``openpi`` keys (openpi's LIBERO, v2.0): ``image``, ``wrist_image`` (dtype image: PNG structs in the parquet),
``state`` (8), ``actions`` (7), ``meta/stats.json``. ``lerobot`` keys (LeRobot's LIBERO, v2.1):
``observation.images.image``, ``observation.images.wrist_image`` (dtype video: one mp4 per episode and camera, AV1
as LeRobot encodes when PyAV has SVT-AV1), ``observation.state``, ``action``, an extra
``observation.states.ee_state``, and ``meta/episodes_stats.jsonl``.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from c2c.data.video import encode_video

DATA_PATH = "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet"
VIDEO_PATH = "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4"
TASKS = ["put the bowl on the plate", "open the top drawer"]
KEYS = {
    "openpi": {"image": "image", "wrist": "wrist_image", "state": "state", "action": "actions"},
    "lerobot": {"image": "observation.images.image", "wrist": "observation.images.wrist_image",
                "state": "observation.state", "action": "action"},
}
MOTORS = ["x", "y", "z", "axis_angle1", "axis_angle2", "axis_angle3"]


@dataclass
class SourceEpisode:
    image: np.ndarray  # (T, H, W, 3) uint8
    wrist: np.ndarray
    state: np.ndarray  # (T, 8) float32
    action: np.ndarray  # (T, 7) float32
    task: str


def make_source_episodes(count: int, size: int, seed: int = 0) -> list[SourceEpisode]:
    """LIBERO-shaped episodes with smooth images (video-compressible) and a gripper that closes once."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:size, 0:size]
    episodes = []
    for index in range(count):
        length = int(rng.integers(30, 45))
        steps = np.arange(length)[:, None, None]
        base = np.stack([(cols * 7 + index * 40)[None] + steps * 3, (rows * 5)[None] + steps * 2,
                         np.broadcast_to(steps * 4 + index * 20, (length, size, size))], axis=-1)
        image = (base % 180 + 40).astype(np.uint8)
        wrist = (255 - image[:, :, ::-1]).astype(np.uint8)
        t = np.linspace(0, 1, length)[:, None]
        action = np.concatenate([np.sin(2 * np.pi * (t * rng.uniform(0.5, 1.5, (1, 6)) + rng.uniform(0, 1, (1, 6)))),
                                 np.where(t > 0.5, 1.0, -1.0)], axis=1).astype(np.float32)
        state = np.concatenate([np.cumsum(action[:, :6], axis=0) * 0.01, np.abs(action[:, 6:]) * 0.04 * [[1, -1]]],
                               axis=1).astype(np.float32)
        episodes.append(SourceEpisode(image, wrist, state, action, TASKS[index % 2]))
    return episodes


def _png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def _vector_stats(values: np.ndarray) -> dict:
    return {"min": values.min(0).tolist(), "max": values.max(0).tolist(), "mean": values.mean(0).tolist(),
            "std": values.std(0).tolist(), "count": [len(values)]}


def _image_stats(frames: np.ndarray) -> dict:
    channels = frames.reshape(-1, 3) / 255.0
    as_c11 = lambda values: values.reshape(3, 1, 1).tolist()  # noqa: E731 - LeRobot's (C, 1, 1) layout
    return {"min": as_c11(channels.min(0)), "max": as_c11(channels.max(0)), "mean": as_c11(channels.mean(0)),
            "std": as_c11(channels.std(0)), "count": [len(frames)]}


def write_v2_dataset(root: Path, episodes: list[SourceEpisode], *, version: str, keys: str, video: bool,
                     fps: int = 10, chunks_size: int = 1000) -> Path:
    """Write ``episodes`` as a LeRobot ``version`` ("v2.0" or "v2.1") dataset with ``keys`` ("openpi"/"lerobot")."""
    names = KEYS[keys]
    size = episodes[0].image.shape[1]
    camera_dtype = "video" if video else "image"
    camera_spec = {"dtype": camera_dtype, "shape": [size, size, 3], "names": ["height", "width", "channel"]}
    if video:
        camera_spec["info"] = {"video.fps": float(fps), "video.height": size, "video.width": size,
                               "video.channels": 3, "video.codec": "av1", "video.pix_fmt": "yuv420p",
                               "video.is_depth_map": False, "has_audio": False}
    if keys == "openpi":
        state_spec = {"dtype": "float32", "shape": [8], "names": ["state"]}
        action_spec = {"dtype": "float32", "shape": [7], "names": ["actions"]}
    else:
        state_spec = {"dtype": "float32", "shape": [8], "names": {"motors": MOTORS + ["gripper", "gripper"]}}
        action_spec = {"dtype": "float32", "shape": [7], "names": {"motors": MOTORS + ["gripper"]}}
    features = {names["image"]: camera_spec, names["wrist"]: dict(camera_spec), names["state"]: state_spec}
    if keys == "lerobot":
        features["observation.states.ee_state"] = {"dtype": "float32", "shape": [6], "names": {"motors": MOTORS}}
    features[names["action"]] = action_spec
    for key, dtype in (("timestamp", "float32"), ("frame_index", "int64"), ("episode_index", "int64"),
                       ("index", "int64"), ("task_index", "int64")):
        features[key] = {"dtype": dtype, "shape": [1], "names": None}
    tasks = {task: index for index, task in enumerate(dict.fromkeys(episode.task for episode in episodes))}
    total_frames = sum(len(episode.action) for episode in episodes)
    info = {
        "codebase_version": version, "robot_type": "panda", "total_episodes": len(episodes),
        "total_frames": total_frames, "total_tasks": len(tasks), "total_videos": 2 * len(episodes) if video else 0,
        "total_chunks": (len(episodes) - 1) // chunks_size + 1, "chunks_size": chunks_size, "fps": fps,
        "splits": {"train": f"0:{len(episodes)}"}, "data_path": DATA_PATH, "video_path": VIDEO_PATH,
        "features": features,
    }
    (root / "meta").mkdir(parents=True)
    (root / "meta/info.json").write_text(json.dumps(info, indent=4))
    (root / "meta/tasks.jsonl").write_text("".join(json.dumps({"task_index": index, "task": task}) + "\n"
                                                   for task, index in tasks.items()))
    (root / "meta/episodes.jsonl").write_text("".join(
        json.dumps({"episode_index": index, "tasks": [episode.task], "length": len(episode.action)}) + "\n"
        for index, episode in enumerate(episodes)))
    hf_features = {names["state"]: {"feature": {"dtype": "float32", "_type": "Value"}, "length": 8,
                                    "_type": "Sequence"},
                   names["action"]: {"feature": {"dtype": "float32", "_type": "Value"}, "length": 7,
                                     "_type": "Sequence"}}
    if not video:
        hf_features.update({names["image"]: {"_type": "Image"}, names["wrist"]: {"_type": "Image"}})
    start, episode_stats = 0, []
    for index, episode in enumerate(episodes):
        chunk, length = index // chunks_size, len(episode.action)
        columns: dict[str, pa.Array] = {}
        for part in ("image", "wrist"):
            frames = getattr(episode, part)
            if video:
                path = root / VIDEO_PATH.format(episode_chunk=chunk, video_key=names[part], episode_index=index)
                path.parent.mkdir(parents=True, exist_ok=True)
                encode_video(frames, path, fps=fps, codec="libsvtav1" if "libsvtav1" in av.codecs_available else None)
            else:
                columns[names[part]] = pa.array(
                    [{"bytes": _png(frame), "path": f"frame_{k:06d}.png"} for k, frame in enumerate(frames)],
                    type=pa.struct([("bytes", pa.binary()), ("path", pa.string())]))
        # v2.0 as older `datasets` wrote Sequence(length=N) (a list); v2.1 as a fixed-size list.
        for part, width in (("state", 8), ("action", 7)):
            values = pa.array(getattr(episode, part).ravel())
            columns[names[part]] = pa.FixedSizeListArray.from_arrays(values, width) if version == "v2.1" else \
                pa.array(list(getattr(episode, part)), type=pa.list_(pa.float32()))
        if keys == "lerobot":
            columns["observation.states.ee_state"] = pa.FixedSizeListArray.from_arrays(
                pa.array(episode.state[:, :6].ravel()), 6)
        frame_index = np.arange(length)
        columns.update(timestamp=pa.array((frame_index / fps).astype(np.float32)), frame_index=pa.array(frame_index),
                       episode_index=pa.array(np.full(length, index)), index=pa.array(start + frame_index),
                       task_index=pa.array(np.full(length, tasks[episode.task])))
        path = root / DATA_PATH.format(episode_chunk=chunk, episode_index=index)
        path.parent.mkdir(parents=True, exist_ok=True)
        table = pa.table(columns).replace_schema_metadata(
            {b"huggingface": json.dumps({"info": {"features": hf_features}}).encode()})
        pq.write_table(table, path)
        stats = {names["state"]: _vector_stats(episode.state), names["action"]: _vector_stats(episode.action),
                 names["image"]: _image_stats(episode.image), names["wrist"]: _image_stats(episode.wrist)}
        episode_stats.append({"episode_index": index, "stats": stats})
        start += length
    if version == "v2.1":
        (root / "meta/episodes_stats.jsonl").write_text("".join(json.dumps(row) + "\n" for row in episode_stats))
    else:
        every = {key: np.concatenate([getattr(episode, part) for episode in episodes])
                 for part, key in (("state", names["state"]), ("action", names["action"]))}
        stats = {key: _vector_stats(values) for key, values in every.items()}
        stats.update({names[part]: _image_stats(np.concatenate([getattr(episode, part) for episode in episodes]))
                      for part in ("image", "wrist")})
        (root / "meta/stats.json").write_text(json.dumps(stats, indent=4))
    return root
