"""Check c2c's LeRobot v3.0 writer and reader against LeRobot itself, in both directions.

(a) writes small datasets with ``c2c.data.lerobot.LeRobotWriter`` (cameras as "image", then as "video"),
    opens them with ``lerobot.datasets.lerobot_dataset.LeRobotDataset`` and compares every frame (keys,
    dtypes, values, tasks), the stats LeRobot loads, and LeRobot's action-chunk padding at episode ends;
(b) writes datasets with LeRobot's own ``LeRobotDataset.create / add_frame / save_episode / finalize``
    ("image", then "video" with LeRobot's default AV1 encoder) and reads them with
    ``c2c.data.lerobot.LeRobotDataset``, comparing values with what was added.
It prints one PASS/FAIL line per check and a summary, and exits 1 if anything failed.

Run it in a throwaway environment that has ``lerobot`` (never a dependency of this project), from the
repository root::

    PYTHONPATH=src .venv-lerobot/bin/python scripts/check_lerobot_compat.py [--workdir DIR] [--keep]

The environment that worked (Python 3.11, Debian 12, CPU only; lerobot 0.4.4 is the last release that
supports Python 3.11)::

    python3.11 -m venv .venv-lerobot
    .venv-lerobot/bin/pip install torch==2.13.0                  # the CPU build
    .venv-lerobot/bin/pip install --no-deps torchvision==0.28.0 lerobot==0.4.4
    printf 'torch==2.13.0\ntorchvision==0.28.0\n' > lerobot-constraints.txt
    .venv-lerobot/bin/pip install -c lerobot-constraints.txt "datasets>=4,<5" \
        "huggingface-hub>=0.34.2,<0.36" "av>=15,<16" "jsonlines>=4,<5" "draccus==0.10.0" "einops>=0.8,<0.9" \
        "imageio[ffmpeg]>=2.34,<3" "packaging>=24.2,<26" "deepdiff>=7,<9" "termcolor>=2.4,<4" \
        "accelerate>=1.10,<2" pandas pyarrow pillow
    # LeRobot decodes videos with torchcodec (torchvision 0.28 no longer has the PyAV VideoReader it
    # falls back to); torchcodec 0.13 loads beside torch 2.13 and needs FFmpeg's shared libraries:
    apt-get install -y --no-install-recommends libavcodec59 libavformat59 libavutil57 libswscale6 \
        libswresample4 libavdevice59 libavfilter8
    .venv-lerobot/bin/pip install --no-deps torchcodec==0.13.0

pip then reports lerobot's pins on torch<2.11 and torchvision<0.26 as unmet; the dataset code works with
the newer ones. torchvision's compiled ops do not load beside the CPU torch, so this script registers the
two operator schemas that ``import torchvision`` needs (``torchvision::nms``, ``torchvision::qnms``)
before importing lerobot. ``HF_HUB_OFFLINE=1`` is set so a dataset LeRobot cannot read locally fails
here instead of reaching for the hub.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Any, Callable

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")

FPS = 10
HEIGHT, WIDTH = 32, 48  # even, as yuv420p video needs
CAMERAS = ("front", "wrist")
VIDEO_MEAN_ABS_TOLERANCE = 6.0  # uint8 levels; lossy h264/AV1 of smooth test images stays well below


def register_torchvision_schemas() -> None:
    """Let ``import torchvision`` succeed although its compiled ops do not load beside the CPU torch."""
    import torch

    library = torch.library.Library("torchvision", "DEF")
    for name in ("nms", "qnms"):
        library.define(f"{name}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    register_torchvision_schemas.library = library  # keep the registration alive


class Report:
    """Collects PASS/FAIL lines."""

    def __init__(self) -> None:
        self.results: list[tuple[str, bool, str]] = []

    def check(self, name: str, ok: bool, detail: str = "") -> bool:
        self.results.append((name, bool(ok), detail))
        print(f"{'PASS' if ok else 'FAIL'}  {name}{'  -- ' + detail if detail else ''}", flush=True)
        return bool(ok)

    def run(self, name: str, section: Callable[[], None]) -> None:
        """Run a section; an exception counts as one failure and does not stop the other sections."""
        try:
            section()
        except Exception as error:  # a crash inside LeRobot or our reader is a finding, not a stop
            traceback.print_exc()
            self.check(name, False, f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}")

    @property
    def failed(self) -> list[str]:
        return [name for name, ok, _ in self.results if not ok]


def smooth_frames(length: int, seed: int) -> np.ndarray:
    """(T, H, W, 3) uint8 gradients that move over time: realistic for a video codec, distinct per frame."""
    rows, cols = np.mgrid[0:HEIGHT, 0:WIDTH]
    frames = [
        np.stack([(cols * 4 + step * 3 + seed * 20) % 200 + 20, (rows * 5 + step * 2) % 200 + 20,
                  np.full_like(cols, (seed * 40 + step * 5) % 200 + 20)], axis=-1)
        for step in range(length)
    ]
    return np.stack(frames).astype(np.uint8)


def make_episodes() -> list[Any]:
    from c2c.data.episodes import Episode

    rng = np.random.default_rng(0)
    episodes = []
    for index, (length, task) in enumerate([(12, "pick the cube"), (9, "open the drawer"), (15, "pick the cube")]):
        episodes.append(Episode(
            actions=rng.normal(index * 3.0, 1.0 + index, (length, 4)).astype(np.float32),
            states=rng.normal(size=(length, 6)).astype(np.float32),
            images={camera: smooth_frames(length, seed=index * 2 + k) for k, camera in enumerate(CAMERAS)},
            task=task,
            metadata={"seed": index, "success": True},
        ))
    return episodes


def lerobot_open(root: Path, **kwargs: Any) -> Any:
    from lerobot.datasets.lerobot_dataset import LeRobotDataset as LeRobotsDataset

    return LeRobotsDataset(f"c2c/{root.name}", root=root, **kwargs)


# ---- (a) written by c2c, read by LeRobot ---------------------------------------------------------------
def check_c2c_to_lerobot(report: Report, workdir: Path, image_format: str) -> None:
    from c2c.constants import image_key
    from c2c.data.lerobot import LeRobotDataset, LeRobotWriter

    name = f"c2c->lerobot [{image_format}]"
    root = workdir / f"c2c_{image_format}"
    episodes = make_episodes()
    # A tiny data-file limit: every episode rolls over to a new parquet file, two files per chunk, so
    # LeRobot has to follow the chunk/file indices. Videos keep the default limit, so all episodes share
    # one mp4 per camera and LeRobot has to use from_timestamp to find an episode inside it.
    with LeRobotWriter(root, fps=FPS, robot_type="test_arm", image_format=image_format,
                       action_names=[f"a{i}" for i in range(4)], chunks_size=2, data_files_size_mb=0.001) as writer:
        for episode in episodes:
            writer.add_episode(episode)
        writer.finalize(extra_info={"source": "check_lerobot_compat", "seed": 0})

    dataset = lerobot_open(root)
    total = sum(episode.length for episode in episodes)
    report.check(f"{name} opens, {total} frames, {len(episodes)} episodes",
                 len(dataset) == total and dataset.num_episodes == len(episodes),
                 f"len={len(dataset)} episodes={dataset.num_episodes}")
    expected_keys = {"action", "observation.state", *(image_key(c) for c in CAMERAS),
                     "timestamp", "frame_index", "episode_index", "index", "task_index"}
    report.check(f"{name} feature keys", set(dataset.features) == expected_keys, str(sorted(dataset.features)))

    data_files = sorted(str(p.relative_to(root)) for p in (root / "data").rglob("*.parquet"))
    video_files = sorted(str(p.relative_to(root)) for p in root.glob("videos/*/*/*.mp4"))
    if image_format == "video":
        report.check(f"{name} one mp4 per camera holds all episodes", len(video_files) == len(CAMERAS),
                     str(video_files))
    rolled = len(data_files) == 3 and "data/chunk-001/file-000.parquet" in data_files
    report.check(f"{name} rolled over to several data files", rolled, str(data_files))
    our_reader = LeRobotDataset(root)
    worst_image_error, worst_decoder_gap, mismatches, offset = 0.0, 0.0, [], 0
    for episode_index, episode in enumerate(episodes):
        our_images = our_reader.episode(episode_index).images
        for t in range(episode.length):
            item = dataset[offset + t]
            mismatches += _compare_lerobot_item(item, episode, episode_index, t, offset + t)
            for camera in CAMERAS:
                image = item[image_key(camera)]  # (3, H, W) float32 in [0, 1]
                if tuple(image.shape) != (3, HEIGHT, WIDTH) or str(image.dtype) != "torch.float32":
                    mismatches.append(f"{camera} frame {offset + t}: {tuple(image.shape)} {image.dtype}")
                    continue
                ours = episode.images[camera][t].transpose(2, 0, 1).astype(np.float64)
                theirs = image.numpy().astype(np.float64) * 255.0
                worst_image_error = max(worst_image_error, float(np.abs(theirs - ours).mean()))
                decoded_by_us = our_images[camera][t].transpose(2, 0, 1).astype(np.float64)
                worst_decoder_gap = max(worst_decoder_gap, float(np.abs(theirs - decoded_by_us).max()))
        offset += episode.length
    report.check(f"{name} actions/states/indices/tasks equal frame by frame", not mismatches, "; ".join(mismatches[:3]))
    tolerance = 1e-3 if image_format == "image" else VIDEO_MEAN_ABS_TOLERANCE
    report.check(f"{name} images match (mean abs error {worst_image_error:.3f} <= {tolerance})",
                 worst_image_error <= tolerance)
    report.check(f"{name} LeRobot decodes the same pixels as c2c's reader (max gap {worst_decoder_gap:.3f} <= 1)",
                 worst_decoder_gap <= 1.0)

    ours = our_reader.stats
    theirs = dataset.meta.stats
    same = all(np.allclose(np.asarray(theirs[key][stat]), ours[key][stat])
               for key in ("action", "observation.state", image_key(CAMERAS[0]))
               for stat in ("min", "max", "mean", "std", "q01", "q99"))
    report.check(f"{name} stats.json loads in LeRobot with our global values", same)
    report.check(f"{name} extra key 'c2c' in info.json tolerated", dataset.meta.info.get("c2c", {}).get("seed") == 0)
    _check_padding(report, name, root, episodes)


def _compare_lerobot_item(item: dict, episode: Any, episode_index: int, t: int, index: int) -> list[str]:
    problems = []
    checks = {
        "action": np.array_equal(item["action"].numpy(), episode.actions[t]),
        "observation.state": np.array_equal(item["observation.state"].numpy(), episode.states[t]),
        "action dtype": str(item["action"].dtype) == "torch.float32",
        "timestamp": abs(float(item["timestamp"]) - t / FPS) < 1e-6,
        "frame_index": int(item["frame_index"]) == t,
        "episode_index": int(item["episode_index"]) == episode_index,
        "index": int(item["index"]) == index,
        "task": item["task"] == episode.task,
    }
    for key, ok in checks.items():
        if not ok:
            problems.append(f"{key} at frame {index}")
    return problems


def _check_padding(report: Report, name: str, root: Path, episodes: list[Any]) -> None:
    """LeRobot's action chunks near an episode's end repeat the last action and flag the padding."""
    horizon = 5
    dataset = lerobot_open(root, delta_timestamps={"action": [i / FPS for i in range(horizon)]})
    last = episodes[0].length - 2  # two real steps left in episode 0
    item = dataset[last]
    want = np.stack([episodes[0].actions[min(last + i, episodes[0].length - 1)] for i in range(horizon)])
    pad = item["action_is_pad"].numpy().tolist()
    ok = np.array_equal(item["action"].numpy(), want) and pad == [False, False, True, True, True]
    report.check(f"{name} delta_timestamps chunk at the episode end", ok, f"is_pad={pad}")


# ---- (b) written by LeRobot, read by c2c ---------------------------------------------------------------
def check_lerobot_to_c2c(report: Report, workdir: Path, image_format: str) -> None:
    from lerobot.datasets.lerobot_dataset import LeRobotDataset as LeRobotsDataset

    from c2c.constants import image_key
    from c2c.data.lerobot import LeRobotDataset

    name = f"lerobot->c2c [{image_format}]"
    root = workdir / f"lerobot_{image_format}"
    episodes = make_episodes()
    features = {
        "action": {"dtype": "float32", "shape": (4,), "names": [f"a{i}" for i in range(4)]},
        "observation.state": {"dtype": "float32", "shape": (6,), "names": None},
        **{image_key(c): {"dtype": image_format, "shape": (HEIGHT, WIDTH, 3), "names": ["height", "width", "channels"]}
           for c in CAMERAS},
    }
    created = LeRobotsDataset.create(f"c2c/{root.name}", fps=FPS, features=features, root=root,
                                     use_videos=image_format == "video")
    for episode in episodes:
        for t in range(episode.length):
            frame = {"action": episode.actions[t], "observation.state": episode.states[t], "task": episode.task}
            frame.update({image_key(c): episode.images[c][t] for c in CAMERAS})
            created.add_frame(frame)
        created.save_episode()
    created.finalize()

    dataset = LeRobotDataset(root)
    report.check(f"{name} opens with {len(episodes)} episodes", dataset.num_episodes == len(episodes),
                 f"episodes={dataset.num_episodes} frames={dataset.num_frames} tasks={dataset.tasks}")
    report.check(f"{name} tasks in order", dataset.tasks == ["pick the cube", "open the drawer"], str(dataset.tasks))
    exact, worst_image_error = True, 0.0
    for index, episode in enumerate(episodes):
        read = dataset.episode(index)
        exact &= np.array_equal(read.actions, episode.actions) and np.array_equal(read.states, episode.states)
        exact &= read.task == episode.task and read.actions.dtype == np.float32
        for camera in CAMERAS:
            if read.images[camera].shape != episode.images[camera].shape:
                report.check(f"{name} image shape {camera}", False, f"{read.images[camera].shape}")
                return
            error = np.abs(read.images[camera].astype(np.float64) - episode.images[camera]).mean()
            worst_image_error = max(worst_image_error, float(error))
    report.check(f"{name} actions/states/tasks equal", exact)
    tolerance = 0.0 if image_format == "image" else VIDEO_MEAN_ABS_TOLERANCE
    report.check(f"{name} images match (mean abs error {worst_image_error:.3f} <= {tolerance})",
                 worst_image_error <= tolerance)
    columns = dataset.frame_arrays(["action", "episode_index"])
    same_actions = np.array_equal(columns["action"], np.concatenate([e.actions for e in episodes]))
    same_episodes = columns["episode_index"].tolist() == sum(([i] * e.length for i, e in enumerate(episodes)), [])
    report.check(f"{name} frame_arrays", same_actions and same_episodes)
    stats = dataset.stats
    report.check(f"{name} stats.json readable", stats["action"]["mean"].shape == (4,)
                 and stats[image_key(CAMERAS[0])]["mean"].shape == (3, 1, 1))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, help="where to write the datasets (default: a temporary folder)")
    parser.add_argument("--keep", action="store_true", help="keep the datasets for inspection")
    args = parser.parse_args()
    register_torchvision_schemas()
    import lerobot

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="c2c-lerobot-compat-"))
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"lerobot {getattr(lerobot, '__version__', '?')}, datasets in {workdir}")
    report = Report()
    try:
        for image_format in ("image", "video"):
            report.run(f"c2c->lerobot [{image_format}]", lambda: check_c2c_to_lerobot(report, workdir, image_format))
            report.run(f"lerobot->c2c [{image_format}]", lambda: check_lerobot_to_c2c(report, workdir, image_format))
    finally:
        if not args.keep and args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    failed = report.failed
    print(f"\n{len(report.results) - len(failed)} of {len(report.results)} LeRobot compatibility checks passed")
    print("RESULT: " + ("PASS" if not failed else "FAIL (" + ", ".join(failed) + ")"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
