"""Streaming images from the dataset files: the same batches as the in-memory path (PNG and mp4, resized or not),
the same per-step batches for any DataLoader worker count, nothing decoded at start-up, one-line codec errors."""

import re
import shutil

import numpy as np
import pytest
import torch
from conftest import make_smooth_episodes, write_two_camera_dataset_and_tokenizer

from c2c.constants import image_key
from c2c.data import lerobot_read, streaming
from c2c.data.lerobot import LeRobotDataset, LeRobotWriter
from c2c.errors import ConfigError, DatasetError
from c2c.policy.config import policy_config
from c2c.policy.training import data as train_data
from c2c.policy.training.data import batch_loader, draw_frames, load_policy_data
from c2c.tokenizer import load_tokenizer

CAMERAS = ("corner2", "wrist")


def _write(root, image_format, size):
    """Six episodes in several data (PNG) or video files, so that frames are found across files."""
    with LeRobotWriter(root, fps=80, image_format=image_format, data_files_size_mb=1, video_files_size_mb=0.07,
                       action_names=["dx", "dy", "dz", "gripper"], state_names=["x", "y", "z", "gripper"]) as writer:
        for episode in make_smooth_episodes(6, image_size=size):
            episode.images["wrist"] = episode.images["corner2"][:, ::-1].copy()
            writer.add_episode(episode)
        writer.finalize({"generator": "synthetic"})
    column = "data/file_index" if image_format == "image" else f"videos/{image_key('wrist')}/file_index"
    files = [row[column] for row in LeRobotDataset(root)._episodes]
    assert 1 < len(set(files)) < len(files), files  # several files, some holding more than one episode
    return root


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """PNG datasets at 16 px (the model's size) and 20 px, an h264 one at 20 px, and a joint tokenizer."""
    root = tmp_path_factory.mktemp("streaming")
    png16, tokenizer_dir = write_two_camera_dataset_and_tokenizer(root)
    datasets = {"png16": png16, "png20": _write(root / "png20", "image", 20),
                "video20": _write(root / "video20", "video", 20)}
    tokenizer = load_tokenizer(tokenizer_dir)
    config = policy_config("debug", cameras=CAMERAS, state_dim=4, action_dim=4)
    return {"root": root, "datasets": datasets, "tokenizer": tokenizer, "tokenizer_dir": tokenizer_dir,
            "config": config}


def _load(workspace, name, loader, **options):
    return load_policy_data(workspace["datasets"][name], workspace["tokenizer"], workspace["tokenizer_dir"],
                            workspace["config"], workspace["root"] / f"out-{name}", resize_images=True,
                            loader=loader, **options)


def _assert_same_batch(got, want):
    assert list(got) == list(want)
    for key, value in want.items():
        if isinstance(value, list):
            assert got[key] == value, key
        else:
            assert got[key].dtype == value.dtype and got[key].shape == value.shape, key
            np.testing.assert_array_equal(got[key], value, err_msg=key)


@pytest.mark.parametrize("name", ["png16", "png20", "video20"])
def test_streamed_batches_equal_the_in_memory_ones(workspace, name):
    memory, stream = _load(workspace, name, "memory"), _load(workspace, name, "stream")
    assert (memory.info.pop("loader"), stream.info.pop("loader")) == ("memory", "stream")
    assert stream.info == {**memory.info, "codes_computed": False}
    for field in ("states", "tasks", "exec_chunks", "train_frames", "heldout_frames"):
        np.testing.assert_array_equal(getattr(stream, field), getattr(memory, field), err_msg=field)
    assert stream.instructions == memory.instructions
    everything = np.arange(len(memory.states))
    for camera in CAMERAS:  # every frame, 16 px whatever the stored size
        assert stream.images[camera].shape == memory.images[camera].shape == (len(everything), 16, 16, 3)
        np.testing.assert_array_equal(stream.images[camera][everything], memory.images[camera], err_msg=camera)
    frames = np.random.default_rng(0).integers(len(everything), size=12)  # random access, repeats, any order
    _assert_same_batch(stream.batch(frames), memory.batch(frames))
    _assert_same_batch(stream.batch(frames[::-1]), memory.batch(frames[::-1]))
    np.testing.assert_array_equal(stream.images["wrist"][-1], memory.images["wrist"][-1])


def test_step_batches_are_the_same_for_any_worker_count(workspace):
    data = _load(workspace, "video20", "stream")
    data.batch(data.train_frames[:3])  # this process has the files open before the workers fork

    def frames_of_step(step):
        return draw_frames(data.train_frames, 0, step, 4, grad_accum=2, processes=2)[:, 1]

    rng_state = torch.get_rng_state()
    runs = {workers: list(batch_loader(data, frames_of_step, range(3, 9), workers=workers, pin_memory=True))
            for workers in (0, 2)}
    assert torch.equal(torch.get_rng_state(), rng_state)  # worker seeding does not move the global RNG
    assert len(runs[0]) == len(runs[2]) == 6
    for step, (alone, forked) in enumerate(zip(runs[0], runs[2]), start=3):
        assert len(alone) == len(forked) == 2
        for micro, (got, other) in enumerate(zip(alone, forked)):
            want = data.batch(frames_of_step(step)[micro])
            for camera in CAMERAS:
                key = image_key(camera)
                assert isinstance(got[key], torch.Tensor) and got[key].dtype == torch.uint8
                np.testing.assert_array_equal(got[key].numpy(), want[key])
                want[key] = got[key] = other[key] = other[key].numpy()
            _assert_same_batch(got, want)
            _assert_same_batch(other, want)
    with pytest.raises(ConfigError, match=r"frames_of_step\(0\) must give an int \(grad_accum, B\) array"):
        next(batch_loader(data, lambda step: np.zeros(4, dtype=int), range(1)))


@pytest.mark.parametrize("name", ["png20", "video20"])
def test_start_up_decodes_no_frame(workspace, name, monkeypatch):
    calls = {"png": 0, "video": 0, "episode": 0, "check": 0}

    def counting(kind, function):
        def counted(*args, **kwargs):
            calls[kind] += 1
            return function(*args, **kwargs)
        return counted

    monkeypatch.setattr(streaming, "_decode_png", counting("png", streaming._decode_png))
    monkeypatch.setattr(streaming._VideoReader, "frame", counting("video", streaming._VideoReader.frame))
    monkeypatch.setattr(streaming, "_check_file", counting("check", streaming._check_file))
    monkeypatch.setattr(LeRobotDataset, "episode", counting("episode", LeRobotDataset.episode))
    monkeypatch.setattr(lerobot_read, "decode_png_column", counting("episode", lerobot_read.decode_png_column))
    data = _load(workspace, name, "stream")
    videos = len(list(workspace["datasets"][name].glob("videos/*/*/*.mp4")))  # check_decodable: each file's first
    assert calls == {"png": 0, "video": 0, "episode": 0, "check": videos}
    data.batch([0, 5, 300])
    assert calls["png" if videos == 0 else "video"] == 6 and calls["episode"] == 0  # 3 frames x 2 cameras


def test_auto_streams_only_over_the_limit_and_memory_refuses(workspace):
    assert _load(workspace, "png16", "auto").info["loader"] == "memory"
    assert _load(workspace, "png16", "auto", max_image_gb=1e-5).info["loader"] == "stream"
    with pytest.raises(ConfigError, match=r"GiB limit .*loader='stream'"):
        _load(workspace, "png16", "memory", max_image_gb=1e-5)
    with pytest.raises(ConfigError, match=r"loader must be one of memory, stream, auto, got 'disk'"):
        _load(workspace, "png16", "disk")


@pytest.mark.parametrize(("tag", "message"), [
    (b"av01", r"PyAV .* decodes no frame of its av1 \(decoder \w+\) video"),  # h264 bytes labelled AV1
    (b"zzzz", r"PyAV .* has no decoder for its video codec \(h264 per meta/info.json\)"),
])
def test_undecodable_video_is_one_line_naming_file_and_codec(workspace, tmp_path, monkeypatch, tag, message):
    root = shutil.copytree(workspace["datasets"]["video20"], tmp_path / "broken")
    path = root / "videos" / image_key("wrist") / "chunk-000" / "file-000.mp4"
    path.write_bytes(path.read_bytes().replace(b"avc1", tag))
    with pytest.raises(DatasetError, match=f"^{re.escape(str(path))}: {message}$") as caught:
        streaming.check_decodable(LeRobotDataset(root), CAMERAS)
    assert "\n" not in str(caught.value)
    streaming.check_decodable(LeRobotDataset(root), ["corner2"])  # the other camera's file is fine
    calls = []
    monkeypatch.setattr(train_data, "load_or_compute_codes", lambda *a: calls.append(a))
    with pytest.raises(DatasetError, match=re.escape(str(path))):
        load_policy_data(root, workspace["tokenizer"], workspace["tokenizer_dir"], workspace["config"],
                         tmp_path / "out", resize_images=True, loader="stream")
    assert calls == []  # refused before the codes (or any image) were computed


def test_video_frames_by_seek_or_decoding_on_equal_a_full_decode(tmp_path):
    from c2c.data.video import VideoEncoder, decode_video

    path = tmp_path / "gop8.mp4"
    y, x = np.mgrid[0:16, 0:16]  # drifting gradients: P-frames between keyframes (noise would be all scene cuts)
    frames = np.stack([np.stack([(x * 4 + t * 2) % 256, y * 4, (x + y + t) % 256], -1) for t in range(40)])
    frames = frames.astype(np.uint8)
    with VideoEncoder(path, fps=10, height=16, width=16, gop=8) as encoder:
        encoder.write(frames)
    everything = decode_video(path)
    reader = streaming._VideoReader(path, fps=10)
    if reader.keyframes is not None:
        assert 3 <= len(reader.keyframes) <= 6  # a keyframe every 8 frames: most frames need the ones before them
    seeks = []
    seek = reader._seek
    reader._seek = lambda index: seeks.append(index) or seek(index)
    rng = np.random.default_rng(1)
    for number, order in enumerate((np.arange(40), np.arange(40)[::-1], rng.permutation(40), rng.integers(0, 40, 60))):
        for index in order:
            np.testing.assert_array_equal(reader.frame(int(index)), everything[index], err_msg=str(index))
        assert number > 0 or seeks == [0]  # in order: one seek, then decoding on through every keyframe
    assert len(seeks) > 100  # backwards and at random: mostly a seek per frame
    with pytest.raises(DatasetError, match=r"gop8.mp4: frame 40 \(4.0000s\) is missing"):
        reader.frame(40)
