"""The image size LIBERO policies are drawn at: `c2c eval libero` takes it from the policy's training record and
resizes as the training images were resized; `c2c data libero --render-size` draws demonstrations at another size.

The tests marked ``libero_sim`` need LIBERO (`make setup-libero`); the others run without it.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from c2c.constants import OBS_STATE, TASK, image_key
from c2c.data.streaming import resize_frame
from c2c.errors import ConfigError
from c2c.eval.libero_rendering import RenderPlan, ResizedEnv, training_render_plan

CAMERAS = ("image", "image2")


def _dataset(root, size=None, c2c=None, shape=None):
    """A dataset directory holding only meta/info.json with LIBERO's two cameras at ``size`` px."""
    features = {OBS_STATE: {"dtype": "float32", "shape": [8]}, "action": {"dtype": "float32", "shape": [7]}}
    if size is not None:
        for camera in CAMERAS:
            features[image_key(camera)] = {"dtype": "video", "shape": shape or [size, size, 3],
                                           "names": ["height", "width", "channels"]}
    info = {"codebase_version": "v3.0", "fps": 20, "features": features}
    if c2c is not None:
        info["c2c"] = c2c
    (root / "meta").mkdir(parents=True)
    (root / "meta" / "info.json").write_text(json.dumps(info))
    return root


def _policy_dir(root, dataset, c2c=None):
    root.mkdir()
    (root / "training_data.json").write_text(json.dumps({"dataset": str(dataset), "c2c": c2c or {}}))
    return root


def test_render_plan_from_a_lerobot_dataset(tmp_path):
    """LeRobot's or openpi's LIBERO (256 px) trained at 16 px: drawn at 256, resized once, as training did."""
    dataset = _dataset(tmp_path / "libero", 256)
    plan = training_render_plan(_policy_dir(tmp_path / "p", dataset), CAMERAS, 16)
    assert (plan.render_size, plan.resizes) == (256, (16,)) and "cameras stored at 256 px" in plan.source
    # LIBERO's original HDF5 files (128 px) written as a dataset, channels first: 128.
    dataset = _dataset(tmp_path / "hdf5", 128, shape=[3, 128, 128])
    assert training_render_plan(_policy_dir(tmp_path / "q", dataset), CAMERAS, 128) == RenderPlan(
        128, (), f"{dataset}/meta/info.json: cameras stored at 128 px")
    # The dataset path from train_config.json when there is no training_data.json.
    policy = tmp_path / "r"
    policy.mkdir()
    (policy / "train_config.json").write_text(json.dumps({"dataset": str(tmp_path / "libero")}))
    assert training_render_plan(policy, ["image"], 96).resizes == (96,)


def test_render_plan_from_our_libero_demonstrations(tmp_path):
    plain = {"generator": "libero", "image_size": 96, "fast_drawing": True}
    gone = tmp_path / "deleted-dataset"
    assert training_render_plan(_policy_dir(tmp_path / "a", gone, plain), CAMERAS, 96) == RenderPlan(
        96, (), f"{gone}: drawn at 96 px, stored at 96 px (c2c data libero)")
    assert training_render_plan(_policy_dir(tmp_path / "b", gone, plain), CAMERAS, 64).resizes == (64,)
    drawn_large = {**plain, "image_size": 128, "render_size": 256}
    plan = training_render_plan(_policy_dir(tmp_path / "c", gone, drawn_large), CAMERAS, 96)
    assert (plan.render_size, plan.resizes) == (256, (128, 96))  # drawn 256 -> stored 128 -> trained 96
    assert plan.describe() == "rendered at 256 px, resized to 128 px, resized to 96 px"


def test_render_plan_from_a_converted_dataset(tmp_path):
    """`c2c data convert --resize 96` of openpi's LIBERO (256 px), trained at 16 px: 256 -> 96 -> 16."""
    source = _dataset(tmp_path / "openpi-libero", None)
    info = json.loads((source / "meta" / "info.json").read_text())
    info["features"].update({"image": {"dtype": "image", "shape": [256, 256, 3]},
                             "wrist_image": {"dtype": "image", "shape": [256, 256, 3]}})
    (source / "meta" / "info.json").write_text(json.dumps(info))
    record = {"generator": "lerobot-convert", "source": {
        "path": str(source), "key_map": "openpi-libero", "resize": 96,
        "keys": {"image": image_key("image"), "wrist_image": image_key("image2"), "state": OBS_STATE,
                 "actions": "action"}}}
    converted = _dataset(tmp_path / "converted", 96, c2c=record)
    plan = training_render_plan(_policy_dir(tmp_path / "p", converted, record), CAMERAS, 16)
    assert (plan.render_size, plan.resizes) == (256, (96, 16))
    assert plan.source.startswith(f"{converted} converted from 256 px cameras ({source}/meta/info.json")
    # The source deleted: openpi's LIBERO is known to be 256 px.
    record["source"]["path"] = str(tmp_path / "gone")
    plan = training_render_plan(_policy_dir(tmp_path / "q", converted, record), CAMERAS, 16)
    assert (plan.render_size, plan.resizes) == (256, (96, 16)) and "openpi-libero datasets" in plan.source


def test_render_plan_without_a_record(tmp_path):
    assert training_render_plan(None, CAMERAS, 32) == RenderPlan(32, (), "the policy's image size (32 px): a policy "
                                                                          "object")
    (tmp_path / "empty").mkdir()
    assert training_render_plan(tmp_path / "empty", CAMERAS, 32).render_size == 32
    plan = training_render_plan(_policy_dir(tmp_path / "p", tmp_path / "nowhere"), CAMERAS, 32)
    assert plan == RenderPlan(32, (), f"the policy's image size (32 px): {tmp_path / 'nowhere'} is not readable")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "training_data.json").write_text("[1, 2")
    with pytest.raises(ConfigError, match=r"bad/training_data.json: not a JSON object"):
        training_render_plan(tmp_path / "bad", CAMERAS, 32)


class _FakeEnv:
    cameras, image_size, task_id = ("image",), 32, 7

    def __init__(self):
        self.frame, self.closed = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8), False

    def _obs(self):
        return {image_key("image"): self.frame.copy(), OBS_STATE: np.zeros(8, np.float32), TASK: "t"}

    def reset(self, index):
        return self._obs()

    def step(self, action, render=True):
        return self._obs(), False, True

    def close(self):
        self.closed = True


def test_resized_env_resizes_as_training_did():
    fake = _FakeEnv()
    env = ResizedEnv(fake, (24, 16))
    expected = resize_frame(resize_frame(fake.frame, 24), 16)
    np.testing.assert_array_equal(env.reset(0)[image_key("image")], expected)
    obs, success, done = env.step(np.zeros(7))
    np.testing.assert_array_equal(obs[image_key("image")], expected)
    assert env.image_size == 16 and env.task_id == 7 and (success, done) == (False, True)
    env.close()
    assert fake.closed


def test_data_libero_render_size_reaches_the_generator(monkeypatch):
    import c2c.envs.libero_demos as demos
    from c2c.cli import main

    seen = {}

    class Report:
        def summary(self):
            return "ok"

    monkeypatch.setattr(demos, "generate_libero_demos", lambda **kwargs: seen.update(kwargs) or Report())
    assert main(["data", "libero", "--suite", "libero_object", "--episodes", "1", "--image-size", "96",
                 "--render-size", "256", "--out", "unused"]) == 0
    assert seen["render_size"] == 256 and seen["image_size"] == 96
    assert main(["data", "libero", "--suite", "libero_object", "--episodes", "1", "--out", "unused"]) == 0
    assert seen["render_size"] is None


# ---------------------------------------------------------------------------------------------------------------
# The real simulator.


@pytest.mark.libero_sim
def test_demonstrations_and_evaluation_draw_at_the_render_size(tmp_path, libero_installed):
    """robosuite's cameras at 32 px: `c2c data libero --render-size 32 --image-size 16 --no-fast-drawing` records
    them resized to 16 px (shown on a short rollout recorded the way kept episodes are), and an evaluation env whose
    plan is 32 -> 24 -> 16 hands the policy the renders resized twice (PIL bilinear each time)."""
    from c2c.envs.libero_demos import close_worker_env, record_episode, run_expert
    from c2c.envs.libero_env import LiberoEnv
    from c2c.eval.libero_rendering import make_env

    seed = 11
    with LiberoEnv("libero_object", 2, cameras=(), max_steps=3, hard_reset=False) as env:
        rollout = run_expert(env, seed)
    path = tmp_path / "episode.npz"
    try:
        assert record_episode("libero_object", 2, 16, rollout, str(path), fast_drawing=False, render_size=32) == 3
    finally:
        close_worker_env()
    with np.load(path) as arrays:
        frames = {camera: arrays[camera] for camera in CAMERAS}
    assert frames["image"].shape == (3, 16, 16, 3) and frames["image2"].shape == (3, 16, 16, 3)

    env = make_env("libero_object", 2, CAMERAS, RenderPlan(32, (24, 16), "test"), max_steps=3, seed=0,
                   fast_drawing=False)
    try:
        assert isinstance(env, ResizedEnv) and env.image_size == 16 and env.render_size == 32
        env.env.reset_random(seed)  # the rollout's first scene, drawn by robosuite at 32 px
        raw = env.raw_observation
        upright = {camera: np.ascontiguousarray(raw[key][::-1, ::-1])
                   for camera, key in (("image", "agentview_image"), ("image2", "robot0_eye_in_hand_image"))}
        for camera in CAMERAS:
            assert upright[camera].shape == (32, 32, 3)
            np.testing.assert_array_equal(frames[camera][0], resize_frame(upright[camera], 16))
        obs = env.reset(0)
        raw = env.raw_observation
        for camera, key in (("image", "agentview_image"), ("image2", "robot0_eye_in_hand_image")):
            upright = np.ascontiguousarray(raw[key][::-1, ::-1])
            np.testing.assert_array_equal(obs[image_key(camera)], resize_frame(resize_frame(upright, 24), 16))
        obs, _, _ = env.step(np.zeros(7))
        assert obs[image_key("image")].shape == (16, 16, 3)
    finally:
        env.close()


@pytest.mark.libero_sim
def test_eval_draws_at_the_training_datas_size(tmp_path, libero_installed):
    from c2c.eval.libero_eval import evaluate_libero
    from c2c.policy.policy import PlanExecutePolicy
    from c2c.policy.testing import INSTRUCTIONS, debug_config, random_action_tokenizer

    config = debug_config("plan", cameras=("image",), state_dim=8, action_dim=7)
    policy = PlanExecutePolicy.build(config, random_action_tokenizer("joint", action_dim=7, state_dim=8),
                                     INSTRUCTIONS).eval()
    directory = policy.save_pretrained(tmp_path / "policy")
    dataset = _dataset(tmp_path / "libero", 40)
    (directory / "training_data.json").write_text(json.dumps({"dataset": str(dataset), "c2c": {}}))
    results = evaluate_libero(directory, "libero_object", tasks=[2], trials=1, out=tmp_path / "eval", max_steps=2,
                              log=None, workers=1, fast_drawing=True)
    settings = results["settings"]
    assert (settings["render_size"], settings["resizes"], settings["image_size"]) == (40, [16], 16)
    assert settings["render_size_from"] == f"{dataset}/meta/info.json: cameras stored at 40 px"
    assert "--render-size" not in results["command"] and results["tasks"][0]["episodes"][0]["steps"] == 2
    assert "rendered at 40 px, resized to 16 px" in (tmp_path / "eval" / "report.md").read_text()


def test_render_plan_of_a_policy_trained_on_a_converted_dataset(tmp_path):
    """The record a real training run leaves: openpi's LIBERO layout (16 px here) converted with --resize 8 and
    trained at the debug preset's 16 px (--resize-images): drawn at 16, resized to 8, then back to 16."""
    from conftest import TINY_CODEC
    from lerobot_v2_fixtures import make_source_episodes, write_v2_dataset

    from c2c.data.lerobot_v2 import convert_dataset
    from c2c.policy.training.config import PolicyTrainConfig
    from c2c.policy.training.loop import train_policy
    from c2c.tokenizer.train import TokenizerTrainConfig, train_tokenizer

    source = write_v2_dataset(tmp_path / "openpi", make_source_episodes(3, 16), version="v2.0", keys="openpi",
                              video=False)
    dataset = convert_dataset(source, tmp_path / "dataset", "openpi-libero", resize=8, show_progress=False)
    tokenizer, policy = tmp_path / "tokenizer", tmp_path / "policy"
    train_tokenizer(TokenizerTrainConfig(dataset=str(dataset), out=str(tokenizer), steps=2, batch_size=32,
                                         kmeans_samples=256, eval_every=1000, codec=TINY_CODEC), show_progress=False)
    train_policy(PolicyTrainConfig(dataset=str(dataset), tokenizer=str(tokenizer), out=str(policy), preset="debug",
                                   steps=1, batch_size=4, checkpoint_every=1, eval_every=1000, eval_frames=8,
                                   decode_frames=4, eval_batch_size=4, resize_images=True), show_progress=False)
    plan = training_render_plan(policy, CAMERAS, 16)
    assert (plan.render_size, plan.resizes) == (16, (8, 16)), plan
    assert plan.source == f"{dataset} converted from 16 px cameras ({source.resolve()}/meta/info.json)"
