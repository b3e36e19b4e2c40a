"""LeRobot v3.0 writer and reader: round trips, file rollover, atomicity, stats and bad input."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from c2c.data.episodes import Episode
from c2c.data.lerobot import LeRobotDataset, LeRobotWriter, is_complete_dataset
from c2c.data.video import VideoEncoder, decode_video_span
from c2c.errors import DatasetError

REPO_ROOT = Path(__file__).resolve().parents[1]
FPS = 10
VIDEO_TOLERANCE = 6.0  # mean absolute error in uint8 levels for h264 of smooth images


def smooth_frames(length: int, seed: int, height: int = 16, width: int = 24) -> np.ndarray:
    """(T, H, W, 3) uint8 gradients that change every frame (compressible, unlike noise)."""
    rows, cols = np.mgrid[0:height, 0:width]
    frames = [
        np.stack([(cols * 6 + step * 4 + seed * 30) % 200 + 20, (rows * 8 + step * 3) % 200 + 20,
                  np.full_like(cols, (seed * 50 + step * 7) % 200 + 20)], axis=-1)
        for step in range(length)
    ]
    return np.stack(frames).astype(np.uint8)


def make_episode(length: int, seed: int, *, action_dim: int = 3, task: str = "reach", cameras=("front",),
                 action_mean: float = 0.0, action_scale: float = 1.0, metadata=None) -> Episode:
    rng = np.random.default_rng(seed)
    return Episode(
        actions=rng.normal(action_mean, action_scale, size=(length, action_dim)).astype(np.float32),
        states=rng.normal(size=(length, 2)).astype(np.float32),
        images={camera: smooth_frames(length, seed + k) for k, camera in enumerate(cameras)},
        task=task,
        metadata=metadata if metadata is not None else {"seed": seed},
    )


def write(root: Path, episodes: list[Episode], **writer_options) -> Path:
    with LeRobotWriter(root, fps=FPS, **writer_options) as writer:
        for episode in episodes:
            writer.add_episode(episode)
        return writer.finalize()


@pytest.fixture
def three_episodes() -> list[Episode]:
    return [
        make_episode(6, 0, task="reach", cameras=("front", "wrist"),
                     metadata={"seed": 0, "success": True, "env": "reach-v3", "return": 1.5}),
        make_episode(8, 1, task="push", cameras=("front", "wrist"), metadata={"seed": 1, "success": False}),
        make_episode(5, 2, task="reach", cameras=("front", "wrist"), metadata={"seed": 2}),
    ]


# ---- round trips -----------------------------------------------------------------------------------------
def test_image_round_trip_is_exact(tmp_path: Path, three_episodes: list[Episode]) -> None:
    root = tmp_path / "ds"
    with LeRobotWriter(root, fps=FPS, robot_type="sawyer", action_names=["x", "y", "z"]) as writer:
        assert [writer.add_episode(e) for e in three_episodes] == [0, 1, 2]
        assert writer.finalize(extra_info={"suite": "metaworld", "n": 3}) == root

    dataset = LeRobotDataset(root)
    assert (len(dataset), dataset.num_frames, dataset.fps) == (3, 19, FPS)
    assert dataset.tasks == ["reach", "push"]
    assert dataset.camera_keys == ["observation.images.front", "observation.images.wrist"]
    assert dataset.extra_info == {"suite": "metaworld", "n": 3}
    assert dataset.features["action"] == {"dtype": "float32", "shape": [3], "names": ["x", "y", "z"]}
    assert dataset.features["observation.images.front"] == {
        "dtype": "image", "shape": [16, 24, 3], "names": ["height", "width", "channels"]}
    info = dataset.info
    totals = (info["total_episodes"], info["total_frames"], info["total_tasks"])
    assert info["codebase_version"] == "v3.0" and totals == (3, 19, 2)
    assert info["splits"] == {"train": "0:3"} and info["video_path"] is None and info["robot_type"] == "sawyer"
    for index, (read, written) in enumerate(zip(dataset, three_episodes)):
        np.testing.assert_array_equal(read.actions, written.actions)
        np.testing.assert_array_equal(read.states, written.states)
        for camera in ("front", "wrist"):
            np.testing.assert_array_equal(read.images[camera], written.images[camera])
        assert read.task == written.task
        assert read.metadata == written.metadata, f"episode {index}"
    assert dataset.episode(1, load_images=False).images == {}


def test_frame_arrays_return_whole_columns(tmp_path: Path, three_episodes: list[Episode]) -> None:
    dataset = LeRobotDataset(write(tmp_path / "ds", three_episodes))
    arrays = dataset.frame_arrays(["action", "observation.state", "episode_index", "index", "timestamp"])
    np.testing.assert_array_equal(arrays["action"], np.concatenate([e.actions for e in three_episodes]))
    assert arrays["observation.state"].shape == (19, 2) and arrays["action"].dtype == np.float32
    assert arrays["episode_index"].tolist() == [0] * 6 + [1] * 8 + [2] * 5
    assert arrays["index"].tolist() == list(range(19))
    np.testing.assert_allclose(arrays["timestamp"][6:8], [0.0, 0.1])
    with pytest.raises(DatasetError, match="'observation.images.front' is a camera"):
        dataset.frame_arrays(["observation.images.front"])
    with pytest.raises(DatasetError, match="no feature 'reward'"):
        dataset.frame_arrays(["reward"])


def test_video_round_trip_is_close(tmp_path: Path, three_episodes: list[Episode]) -> None:
    root = write(tmp_path / "ds", three_episodes, image_format="video")
    dataset = LeRobotDataset(root)
    assert dataset.features["observation.images.wrist"]["dtype"] == "video"
    assert dataset.features["observation.images.wrist"]["info"]["video.pix_fmt"] == "yuv420p"
    assert dataset.info["video_path"] == "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
    assert sorted(p.name for p in root.rglob("*.mp4")) == ["file-000.mp4", "file-000.mp4"]  # all episodes in one file
    for read, written in zip(dataset, three_episodes):
        np.testing.assert_array_equal(read.actions, written.actions)
        for camera in ("front", "wrist"):
            assert read.images[camera].shape == written.images[camera].shape
            error = np.abs(read.images[camera].astype(float) - written.images[camera]).mean()
            assert error < VIDEO_TOLERANCE, f"{camera}: mean abs error {error}"
    row = pq.read_table(root / "meta/episodes/chunk-000/file-000.parquet").to_pylist()[1]
    assert row["videos/observation.images.front/from_timestamp"] == pytest.approx(0.6)  # after episode 0's 6 frames
    assert row["videos/observation.images.front/to_timestamp"] == pytest.approx(1.4)


def test_video_span_outside_the_file_names_it(tmp_path: Path) -> None:
    path = tmp_path / "clip.mp4"
    with VideoEncoder(path, fps=FPS, height=16, width=24) as encoder:
        encoder.write(smooth_frames(5, 0))
    assert decode_video_span(path, fps=FPS, start_s=0.2, num_frames=3).shape == (3, 16, 24, 3)
    with pytest.raises(DatasetError, match="clip.mp4: frames .* missing"):
        decode_video_span(path, fps=FPS, start_s=0.3, num_frames=4)
    with pytest.raises(DatasetError, match="even height and width"):
        VideoEncoder(tmp_path / "odd.mp4", fps=FPS, height=15, width=24)


# ---- rollover --------------------------------------------------------------------------------------------
def test_tiny_size_limit_rolls_over_to_new_files_and_chunks(tmp_path: Path, three_episodes: list[Episode]) -> None:
    root = write(tmp_path / "ds", three_episodes, data_files_size_mb=0.001, chunks_size=2)
    files = sorted(str(p.relative_to(root)) for p in (root / "data").rglob("*.parquet"))
    assert files == ["data/chunk-000/file-000.parquet", "data/chunk-000/file-001.parquet",
                     "data/chunk-001/file-000.parquet"]
    rows = pq.read_table(root / "meta/episodes/chunk-000/file-000.parquet").to_pylist()
    assert [(r["data/chunk_index"], r["data/file_index"]) for r in rows] == [(0, 0), (0, 1), (1, 0)]
    assert [(r["dataset_from_index"], r["dataset_to_index"]) for r in rows] == [(0, 6), (6, 14), (14, 19)]
    dataset = LeRobotDataset(root)
    for read, written in zip(dataset, three_episodes):
        np.testing.assert_array_equal(read.images["front"], written.images["front"])
    assert dataset.frame_arrays(["index"])["index"].tolist() == list(range(19))


def test_default_limit_keeps_one_data_file(tmp_path: Path, three_episodes: list[Episode]) -> None:
    root = write(tmp_path / "ds", three_episodes)
    assert [p.name for p in (root / "data").rglob("*.parquet")] == ["file-000.parquet"]
    assert pq.ParquetFile(root / "data/chunk-000/file-000.parquet").metadata.num_row_groups == 3  # one per episode


def test_tiny_video_limit_rolls_over_to_a_second_mp4(tmp_path: Path) -> None:
    episodes = [make_episode(12, seed) for seed in range(3)]
    root = write(tmp_path / "ds", episodes, image_format="video", video_files_size_mb=0.0001)
    videos = sorted(str(p.relative_to(root)) for p in root.rglob("*.mp4"))
    assert len(videos) >= 2 and "videos/observation.images.front/chunk-000/file-001.mp4" in videos
    for read, written in zip(LeRobotDataset(root), episodes):
        assert np.abs(read.images["front"].astype(float) - written.images["front"]).mean() < VIDEO_TOLERANCE


# ---- atomicity -------------------------------------------------------------------------------------------
def _leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if ".partial-" in p.name or ".old-" in p.name)


def test_exception_inside_with_leaves_no_dataset(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    with pytest.raises(RuntimeError, match="simulator crashed"):
        with LeRobotWriter(root, fps=FPS) as writer:
            writer.add_episode(make_episode(5, 0))
            raise RuntimeError("simulator crashed")
    assert not root.exists()
    assert _leftovers(tmp_path) == []


def test_exception_inside_with_keeps_the_old_dataset(tmp_path: Path) -> None:
    root = write(tmp_path / "ds", [make_episode(5, 0)])
    with pytest.raises(RuntimeError):
        with LeRobotWriter(root, fps=FPS, overwrite=True) as writer:
            writer.add_episode(make_episode(7, 1))
            raise RuntimeError("interrupted")
    assert LeRobotDataset(root).num_frames == 5


def test_staging_directory_is_never_read_as_a_dataset(tmp_path: Path) -> None:
    finished = write(tmp_path / "finished", [make_episode(5, 0)])
    writer = LeRobotWriter(tmp_path / "ds", fps=FPS)
    writer.add_episode(make_episode(5, 0))
    assert writer.staging.parent == tmp_path and writer.staging.name.startswith(".ds.partial-")
    assert not (tmp_path / "ds").exists()
    # Even with every file present (a crash between writing info.json and the rename), the marker says no.
    for name in ("meta/info.json", "meta/tasks.parquet", "meta/episodes/chunk-000/file-000.parquet"):
        (writer.staging / name).parent.mkdir(parents=True, exist_ok=True)
        (writer.staging / name).write_bytes((finished / name).read_bytes())
    assert not is_complete_dataset(writer.staging)
    with pytest.raises(DatasetError, match="unfinished write"):
        LeRobotDataset(writer.staging)
    writer.abort()
    assert _leftovers(tmp_path) == [] and not (tmp_path / "ds").exists()


def test_stale_staging_of_a_dead_writer_is_cleaned_up(tmp_path: Path) -> None:
    dead = tmp_path / ".ds.partial-4194305-0000aaaa"  # above Linux's largest pid: that process cannot exist
    alive = tmp_path / f".ds.partial-{os.getpid()}-0000bbbb"  # another writer of this very process
    dead.mkdir()
    alive.mkdir()
    write(tmp_path / "ds", [make_episode(5, 0)])
    assert not dead.exists() and alive.exists()


def test_empty_with_block_raises_and_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="no episodes"):
        with LeRobotWriter(tmp_path / "ds", fps=FPS):
            pass
    assert list(tmp_path.iterdir()) == []


def test_existing_dataset_is_not_overwritten_unless_asked(tmp_path: Path) -> None:
    root = write(tmp_path / "ds", [make_episode(5, 0)])
    with pytest.raises(DatasetError, match=f"{root}: a dataset already exists"):
        LeRobotWriter(root, fps=FPS)
    write(root, [make_episode(9, 1)], overwrite=True)
    assert LeRobotDataset(root).num_frames == 9
    assert _leftovers(tmp_path) == []


def test_non_empty_foreign_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "notes.txt").write_text("mine")
    with pytest.raises(DatasetError, match="not an empty directory"):
        LeRobotWriter(tmp_path / "ds", fps=FPS)


def test_finalize_without_episodes_is_refused(tmp_path: Path) -> None:
    writer = LeRobotWriter(tmp_path / "ds", fps=FPS)
    with pytest.raises(DatasetError, match="no episodes"):
        writer.finalize()
    writer.abort()
    assert _leftovers(tmp_path) == []


# ---- stats -----------------------------------------------------------------------------------------------
def test_stats_json_has_true_global_quantiles(tmp_path: Path) -> None:
    calm = make_episode(60, 0, action_mean=0.0, action_scale=0.05, cameras=())
    wild = make_episode(20, 1, action_mean=4.0, action_scale=3.0, cameras=())
    root = write(tmp_path / "ds", [calm, wild])
    stats = LeRobotDataset(root).stats
    both = np.concatenate([calm.actions, wild.actions]).astype(np.float64)
    for name, level in {"q01": 0.01, "q10": 0.1, "q50": 0.5, "q90": 0.9, "q99": 0.99}.items():
        np.testing.assert_allclose(stats["action"][name], np.quantile(both, level, axis=0))
    np.testing.assert_allclose(stats["action"]["std"], both.std(axis=0))
    assert stats["action"]["count"].tolist() == [80]
    # LeRobot's count-weighted average of per-episode quantiles would be far off here.
    rows = pq.read_table(root / "meta/episodes/chunk-000/file-000.parquet").to_pylist()
    np.testing.assert_allclose(rows[1]["stats/action/q99"], np.quantile(wild.actions.astype(np.float64), 0.99, axis=0))
    averaged = (np.array(rows[0]["stats/action/q99"]) * 60 + np.array(rows[1]["stats/action/q99"]) * 20) / 80
    assert np.abs(averaged - stats["action"]["q99"]).max() > 1.0


def test_image_stats_use_lerobots_layout(tmp_path: Path, three_episodes: list[Episode]) -> None:
    root = write(tmp_path / "ds", three_episodes)
    image_stats = LeRobotDataset(root).stats["observation.images.front"]
    for name in ("min", "max", "mean", "std", "q01", "q50", "q99"):
        assert image_stats[name].shape == (3, 1, 1)
        assert 0.0 <= image_stats[name].min() and image_stats[name].max() <= 1.0
    pixels = np.concatenate([e.images["front"] for e in three_episodes]).reshape(-1, 3) / 255.0
    np.testing.assert_allclose(image_stats["mean"].ravel(), pixels.mean(axis=0))
    np.testing.assert_allclose(image_stats["q50"].ravel(), np.quantile(pixels, 0.5, axis=0))
    columns = pq.read_schema(root / "meta/episodes/chunk-000/file-000.parquet").names
    wanted = {"stats/observation.images.front/mean", "stats/action/q01", "stats/timestamp/max", "c2c/seed"}
    assert wanted <= set(columns)


# ---- what the writer refuses ----------------------------------------------------------------------------
def test_nan_in_actions_is_refused_by_the_writer(tmp_path: Path) -> None:
    episode = make_episode(5, 0)
    episode.actions[2, 1] = np.nan
    with pytest.raises(DatasetError, match="episode 0: 'action' has a non-finite value"):
        with LeRobotWriter(tmp_path / "ds", fps=FPS) as writer:
            writer.add_episode(episode)
    assert not (tmp_path / "ds").exists()


def test_inconsistent_shapes_between_episodes_name_key_and_shapes(tmp_path: Path) -> None:
    with LeRobotWriter(tmp_path / "ds", fps=FPS) as writer:
        writer.add_episode(make_episode(5, 0, action_dim=3))
        with pytest.raises(DatasetError, match=r"episode 1: 'action' has per-frame shape \[4\] .* had \[3\]"):
            writer.add_episode(make_episode(5, 1, action_dim=4))
        wrist = r"'observation.images.wrist' has per-frame shape \[16, 24, 3\] .* had none \(no such key\)"
        with pytest.raises(DatasetError, match=wrist):
            writer.add_episode(make_episode(5, 1, cameras=("front", "wrist")))
        writer.add_episode(make_episode(6, 2))
    assert LeRobotDataset(tmp_path / "ds").num_episodes == 2


def test_odd_video_size_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    odd = make_episode(5, 0, cameras=())
    odd.images = {"front": np.zeros((5, 15, 24, 3), dtype=np.uint8)}
    writer = LeRobotWriter(tmp_path / "ds", fps=FPS, image_format="video")
    with pytest.raises(DatasetError, match="camera 'front' is 15x24; yuv420p video needs an even height"):
        writer.add_episode(odd)
    assert writer.add_episode(make_episode(5, 1)) == 0  # still usable
    writer.finalize()
    assert LeRobotDataset(tmp_path / "ds").episode(0).images["front"].shape == (5, 16, 24, 3)


def test_non_scalar_metadata_is_warned_about_and_skipped(tmp_path: Path) -> None:
    episode = make_episode(5, 0, metadata={"seed": np.int64(3), "trajectory": [1, 2]})
    with pytest.warns(UserWarning, match="'trajectory' is a list"):
        root = write(tmp_path / "ds", [episode])
    assert LeRobotDataset(root).episode(0).metadata == {"seed": 3}


# ---- what the reader refuses ----------------------------------------------------------------------------
@pytest.fixture
def small_dataset(tmp_path: Path) -> Path:
    return write(tmp_path / "ds", [make_episode(5, 0), make_episode(4, 1)])


def _edit_info(root: Path, **changes) -> None:
    path = root / "meta/info.json"
    info = json.loads(path.read_text())
    for key, value in changes.items():
        if value is None:
            info.pop(key)
        else:
            info[key] = value
    path.write_text(json.dumps(info))


def test_missing_info_json(small_dataset: Path) -> None:
    (small_dataset / "meta/info.json").unlink()
    with pytest.raises(DatasetError, match=r"meta/info.json: missing"):
        LeRobotDataset(small_dataset)


def test_malformed_info_json(small_dataset: Path) -> None:
    (small_dataset / "meta/info.json").write_text('{"codebase_version": "v3.0",')
    with pytest.raises(DatasetError, match=r"meta/info.json: malformed JSON"):
        LeRobotDataset(small_dataset)


def test_unknown_codebase_version_says_which(small_dataset: Path) -> None:
    _edit_info(small_dataset, codebase_version="v2.1")
    with pytest.raises(DatasetError, match=r"info.json: codebase_version is 'v2.1'; only 'v3.0'"):
        LeRobotDataset(small_dataset)


def test_missing_features(small_dataset: Path) -> None:
    _edit_info(small_dataset, features=None)
    with pytest.raises(DatasetError, match=r"info.json: missing key 'features'"):
        LeRobotDataset(small_dataset)
    info = json.loads((small_dataset / "meta/info.json").read_text())
    info["features"] = {"observation.state": {"dtype": "float32", "shape": [2], "names": None}}
    (small_dataset / "meta/info.json").write_text(json.dumps(info))
    with pytest.raises(DatasetError, match=r"feature 'action' is missing"):
        LeRobotDataset(small_dataset)


def test_missing_data_file_is_named(small_dataset: Path) -> None:
    data = small_dataset / "data/chunk-000/file-000.parquet"
    data.unlink()
    dataset = LeRobotDataset(small_dataset)
    with pytest.raises(DatasetError, match=f"{data}: data file is missing"):
        dataset.episode(0)


def test_missing_tasks_file_is_named(small_dataset: Path) -> None:
    (small_dataset / "meta/tasks.parquet").unlink()
    with pytest.raises(DatasetError, match=r"meta/tasks.parquet: tasks file is missing"):
        LeRobotDataset(small_dataset)


def test_declared_shape_that_the_data_does_not_have(small_dataset: Path) -> None:
    info = json.loads((small_dataset / "meta/info.json").read_text())
    info["features"]["action"]["shape"] = [5]
    (small_dataset / "meta/info.json").write_text(json.dumps(info))
    with pytest.raises(DatasetError, match=r"file-000.parquet episode 0 'action': .* declares shape \[5\]"):
        LeRobotDataset(small_dataset).episode(0)


def test_nan_on_disk_names_the_episode(small_dataset: Path) -> None:
    path = small_dataset / "data/chunk-000/file-000.parquet"
    table = pq.read_table(path)
    actions = np.stack(table["action"].to_pylist()).astype(np.float32)
    actions[6, 0] = np.inf  # frame 1 of episode 1
    column = pa.FixedSizeListArray.from_arrays(pa.array(actions.ravel()), actions.shape[1])
    pq.write_table(table.set_column(table.schema.get_field_index("action"), "action", column), path)
    dataset = LeRobotDataset(small_dataset)
    dataset.episode(0)  # the clean episode still reads
    message = r"file-000.parquet episode 1: 'action' has a non-finite value \(inf\) at frame 1"
    with pytest.raises(DatasetError, match=message):
        dataset.episode(1)


# ---- against LeRobot itself -----------------------------------------------------------------------------
@pytest.mark.lerobot
def test_lerobot_reads_our_datasets_and_we_read_theirs() -> None:
    interpreter = os.environ.get("C2C_LEROBOT_PYTHON")
    if not interpreter:
        pytest.skip("C2C_LEROBOT_PYTHON is not set: it names a Python with lerobot installed "
                    "(recipe in scripts/check_lerobot_compat.py)")
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "src")}
    result = subprocess.run([interpreter, str(REPO_ROOT / "scripts/check_lerobot_compat.py")], env=env,
                            capture_output=True, text=True, timeout=600)
    summary = [line for line in result.stdout.splitlines() if line.startswith(("FAIL", "RESULT"))]
    assert result.returncode == 0, "\n".join(summary) or result.stderr[-3000:]
    assert "RESULT: PASS" in result.stdout


def test_image_datasets_need_no_pyav(tmp_path: Path, three_episodes: list[Episode], monkeypatch) -> None:
    """PyAV is imported on first use of a video: without it, image datasets are written, read and trained on, and
    a video feature fails with an error that names PyAV."""
    blocked = "import sys; sys.modules['av'] = None; import c2c.data.lerobot, c2c.policy.train, c2c.eval.pipeline"
    subprocess.run([os.sys.executable, "-c", blocked], check=True, cwd=REPO_ROOT)
    monkeypatch.setitem(os.sys.modules, "av", None)  # `import av` now raises ImportError
    with LeRobotWriter(tmp_path / "ds", fps=FPS) as writer:
        writer.add_episode(three_episodes[0])
        writer.finalize()
    assert LeRobotDataset(tmp_path / "ds").episode(0).images["front"].shape[1:] == (16, 24, 3)
    with pytest.raises(DatasetError, match=r"video features need PyAV \(pip install av\)"):
        VideoEncoder(tmp_path / "v.mp4", fps=FPS, height=16, width=24)
