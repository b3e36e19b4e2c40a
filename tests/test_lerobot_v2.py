"""LeRobot v2.0 / v2.1 input: openpi's and LeRobot's LIBERO layouts convert to our v3.0 exactly, train, and bad input
fails with one line naming it."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_CODEC, make_smooth_episodes
from lerobot_v2_fixtures import TASKS, make_source_episodes, write_v2_dataset

from c2c.cli import main
from c2c.data.lerobot import LeRobotDataset, LeRobotWriter
from c2c.data.lerobot_v2 import LeRobotSource, convert_dataset, parse_key_map, resize_frames
from c2c.errors import ConfigError, DatasetError

VIDEO_TOLERANCE = 8.0  # mean absolute error in uint8 levels after a lossy video round trip


@pytest.fixture(scope="module")
def openpi(tmp_path_factory):
    """openpi's LIBERO layout (v2.0, PNG image columns), 16 px, two episodes per chunk."""
    root = tmp_path_factory.mktemp("openpi") / "libero"
    episodes = make_source_episodes(5, 16)
    return write_v2_dataset(root, episodes, version="v2.0", keys="openpi", video=False, chunks_size=2), episodes


@pytest.fixture(scope="module")
def lerobot(tmp_path_factory):
    """LeRobot's LIBERO layout (v2.1, mp4 per episode and camera, episodes_stats.jsonl), 32 px."""
    root = tmp_path_factory.mktemp("lerobot") / "libero"
    episodes = make_source_episodes(3, 32, seed=1)
    return write_v2_dataset(root, episodes, version="v2.1", keys="lerobot", video=True), episodes


def _fingerprint(root: Path) -> dict[str, str]:
    return {str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(root.rglob("*")) if path.is_file()}


def _check_vectors_and_tasks(dataset: LeRobotDataset, episodes) -> None:
    assert dataset.num_episodes == len(episodes)
    assert dataset.num_frames == sum(len(episode.action) for episode in episodes)
    for index, source in enumerate(episodes):
        episode = dataset.episode(index, load_images=False)
        np.testing.assert_array_equal(episode.actions, source.action)
        np.testing.assert_array_equal(episode.states, source.state)
        assert episode.task == source.task
        assert episode.metadata["source_episode_index"] == index
    assert sorted(dataset.tasks) == sorted(TASKS)


def test_openpi_v20_converts_exactly(openpi, tmp_path):
    src, episodes = openpi
    before = _fingerprint(src)
    out = convert_dataset(src, tmp_path / "out", "openpi-libero", show_progress=False)
    dataset = LeRobotDataset(out)
    _check_vectors_and_tasks(dataset, episodes)
    assert dataset.camera_keys == ["observation.images.image", "observation.images.image2"]
    assert dataset.features["observation.images.image"]["dtype"] == "image"
    for index, source in enumerate(episodes):
        images = dataset.episode(index).images
        np.testing.assert_array_equal(images["image"], source.image)  # PNG: lossless, not flipped
        np.testing.assert_array_equal(images["image2"], source.wrist)
    assert dataset.fps == 10 and dataset.info["robot_type"] == "panda"
    extra = dataset.extra_info
    assert extra["action_layout"] == "libero"
    assert extra["source"]["codebase_version"] == "v2.0" and extra["source"]["key_map"] == "openpi-libero"
    assert extra["source"]["keys"] == {"image": "observation.images.image", "wrist_image": "observation.images.image2",
                                       "state": "observation.state", "actions": "action"}
    assert extra["source"]["path"] == str(src.resolve())
    assert dataset.features["action"]["names"][-1] == "gripper"  # openpi names ["actions"]: LIBERO's names instead
    np.testing.assert_allclose(dataset.stats["action"]["mean"],
                               np.concatenate([episode.action for episode in episodes]).mean(0), rtol=1e-5, atol=1e-6)
    assert _fingerprint(src) == before  # the source is only read
    assert LeRobotSource(src).key_map.name == "openpi-libero"  # auto picks the preset


def test_lerobot_v21_video_converts_through_the_cli_with_resize(lerobot, tmp_path, capsys):
    src, episodes = lerobot
    out = tmp_path / "out"
    assert main(["data", "convert", "--src", str(src), "--out", str(out), "--key-map", "lerobot-libero",
                 "--resize", "16"]) == 0
    assert "3 episodes" in capsys.readouterr().out
    dataset = LeRobotDataset(out)
    _check_vectors_and_tasks(dataset, episodes)
    assert dataset.features["observation.images.image"]["shape"] == [16, 16, 3]
    assert dataset.features["observation.images.image"]["dtype"] == "video"  # as the source
    assert dataset.features["observation.state"]["names"] == ["x", "y", "z", "axis_angle1", "axis_angle2",
                                                              "axis_angle3", "gripper", "gripper"]
    assert "observation.states.ee_state" not in dataset.features
    assert dataset.extra_info["source"]["resize"] == 16 and dataset.extra_info["source"]["codebase_version"] == "v2.1"
    for index, source in enumerate(episodes):
        images = dataset.episode(index).images
        for camera, frames in (("image", source.image), ("image2", source.wrist)):
            error = np.abs(images[camera].astype(float) - resize_frames(frames, 16)).mean()
            assert error < VIDEO_TOLERANCE, (index, camera, error)


def test_lerobot_v21_to_png_at_full_size(lerobot, tmp_path):
    src, episodes = lerobot
    out = convert_dataset(src, tmp_path / "out", image_format="image", show_progress=False)
    dataset = LeRobotDataset(out)
    assert dataset.features["observation.images.image2"] == {"dtype": "image", "shape": [32, 32, 3],
                                                             "names": ["height", "width", "channels"]}
    images = dataset.episode(2).images
    assert np.abs(images["image"].astype(float) - episodes[2].image).mean() < VIDEO_TOLERANCE
    assert np.abs(images["image2"].astype(float) - episodes[2].wrist).mean() < VIDEO_TOLERANCE


def test_v30_input_with_a_key_map_renames(tmp_path):
    src = tmp_path / "v3"
    with LeRobotWriter(src, fps=20) as writer:
        for episode in make_smooth_episodes(2, image_size=8):
            writer.add_episode(episode)
        writer.finalize()
    out = convert_dataset(src, tmp_path / "out", "observation.images.corner2->front,observation.state->"
                          "observation.state,action->action", action_layout="metaworld", show_progress=False)
    dataset, original = LeRobotDataset(out), LeRobotDataset(src)
    assert dataset.camera_keys == ["observation.images.front"] and dataset.extra_info["action_layout"] == "metaworld"
    np.testing.assert_array_equal(dataset.episode(1).images["front"], original.episode(1).images["corner2"])
    np.testing.assert_array_equal(dataset.episode(1).actions, original.episode(1).actions)


def test_converted_dataset_trains(openpi, tmp_path):
    from c2c.policy.testing import torch_threads
    from c2c.policy.training.config import PolicyTrainConfig
    from c2c.policy.training.loop import train_policy
    from c2c.tokenizer.train import TokenizerTrainConfig, train_tokenizer

    dataset = convert_dataset(openpi[0], tmp_path / "dataset", show_progress=False)
    tokenizer = tmp_path / "tokenizer"
    with torch_threads(1):
        train_tokenizer(TokenizerTrainConfig(dataset=str(dataset), out=str(tokenizer), steps=4, batch_size=32,
                                             kmeans_samples=256, eval_every=1000, codec=TINY_CODEC),
                        show_progress=False)
        metrics = train_policy(PolicyTrainConfig(
            dataset=str(dataset), tokenizer=str(tokenizer), out=str(tmp_path / "policy"), preset="debug", steps=2,
            batch_size=4, checkpoint_every=2, eval_every=1000, eval_frames=8, decode_frames=4, eval_batch_size=4),
            show_progress=False)
    assert metrics["steps"] == 2
    assert json.loads((tokenizer / "train_config.json").read_text())["window_spec"]["gripper_dims"] == [6]


# ---- bad input ---------------------------------------------------------------------------------------------------
def _cli_error(capsys, *argv: str) -> str:
    assert main(["data", "convert", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("c2c: error: ") and "\n" not in err, err
    return err


def test_unreadable_version_names_it_and_the_supported_ones(openpi, tmp_path, capsys):
    src = tmp_path / "old"
    (src / "meta").mkdir(parents=True)
    info = json.loads((openpi[0] / "meta/info.json").read_text())
    (src / "meta/info.json").write_text(json.dumps({**info, "codebase_version": "v1.6"}))
    err = _cli_error(capsys, "--src", str(src), "--out", str(tmp_path / "out"))
    assert "'v1.6'" in err and "v2.0, v2.1, v3.0" in err and "info.json" in err
    assert not (tmp_path / "out").exists()
    with pytest.raises(DatasetError, match="not a LeRobot dataset"):
        LeRobotSource(tmp_path / "nothing")


def test_key_map_naming_a_missing_key(openpi, tmp_path, capsys):
    err = _cli_error(capsys, "--src", str(openpi[0]), "--out", str(tmp_path / "out"),
                     "--key-map", "image->image,wrist->image2,state->observation.state,actions->action")
    assert "'wrist'" in err and "'wrist_image'" in err and "--key-map" in err
    err = _cli_error(capsys, "--src", str(openpi[0]), "--out", str(tmp_path / "out"), "--key-map", "lerobot-libero")
    assert "'observation.images.image'" in err and "'image'" in err  # the features it does have
    err = _cli_error(capsys, "--src", str(openpi[0]), "--out", str(tmp_path / "out"),
                     "--key-map", "state->image,image->observation.state,actions->action")
    assert "'state'" in err and "camera" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("text, problem", [
    ("image=image,state->observation.state,actions->action", "'image=image' is not SOURCE->TARGET"),
    ("image->,state->observation.state,actions->action", "'image->' is not SOURCE->TARGET"),
    ("image->image,state->observation.state", "no entry maps to action"),
    ("image->a,image->b,state->observation.state,actions->action", "'image' appears twice"),
    ("image->cam,wrist_image->cam,state->observation.state,actions->action", "'cam' appears twice"),
    ("image->my/cam,state->observation.state,actions->action", "'my/cam' is neither"),
])
def test_malformed_key_map(text, problem, openpi, tmp_path, capsys):
    with pytest.raises(ConfigError, match="SOURCE->TARGET pairs") as info:
        parse_key_map(text)
    assert problem in str(info.value) and "openpi-libero" in str(info.value)
    err = _cli_error(capsys, "--src", str(openpi[0]), "--out", str(tmp_path / "out"), "--key-map", text)
    assert problem in err


def test_existing_out_needs_overwrite_and_src_is_never_the_target(openpi, tmp_path, capsys):
    src = openpi[0]
    out = convert_dataset(src, tmp_path / "out", show_progress=False)
    err = _cli_error(capsys, "--src", str(src), "--out", str(out))
    assert str(out) in err and "--overwrite" in err
    (tmp_path / "file").write_text("x")
    assert "--overwrite" in _cli_error(capsys, "--src", str(src), "--out", str(tmp_path / "file"))
    before = _fingerprint(src)
    for target in (src, src / "inside", src.parent):
        err = _cli_error(capsys, "--src", str(src), "--out", str(target), "--overwrite")
        assert "overlaps --src" in err
    assert _fingerprint(src) == before
    assert main(["data", "convert", "--src", str(src), "--out", str(out), "--overwrite", "--resize", "8"]) == 0
    assert LeRobotDataset(out).features["observation.images.image"]["shape"] == [8, 8, 3]
    with pytest.raises(ConfigError, match="--resize must be a positive"):
        convert_dataset(src, tmp_path / "other", resize=0)
    with pytest.raises(ConfigError, match="action layout 'franka' is unknown"):
        convert_dataset(src, tmp_path / "other", action_layout="franka")
