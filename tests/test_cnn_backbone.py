"""The `cnn` backbone: a plain convolutional chunk regressor for `regress`, through the same training, checkpoint,
policy API, evaluation and serving as every variant; any other variant is refused in one line."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
import torch
from conftest import make_smooth_episodes

from c2c.cli import main
from c2c.errors import ConfigError
from c2c.policy import load_policy
from c2c.policy.cnn import MODEL_TYPE, CNNRegressVLA
from c2c.policy.config import policy_config
from c2c.policy.policy import EMA_WEIGHTS_FILE, PlanExecutePolicy
from c2c.policy.regress import ContinuousActions, RegressPolicy
from c2c.policy.testing import INSTRUCTIONS, random_action_tokenizer, random_observation, torch_threads
from c2c.policy.training.config import PolicyTrainConfig
from c2c.policy.training.loop import train_policy
from c2c.serve.client import PolicyClient
from c2c.serve.server import BackgroundServer, PolicyServer


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """A 6-episode synthetic dataset with two 16-px cameras (no tokenizer: regress fits its statistics)."""
    from c2c.data.lerobot import LeRobotWriter

    directory = tmp_path_factory.mktemp("cnn") / "dataset"
    with LeRobotWriter(directory, fps=80, action_names=["dx", "dy", "dz", "gripper"],
                       state_names=["x", "y", "z", "gripper"]) as writer:
        for episode in make_smooth_episodes(6, image_size=16):
            episode.images["wrist"] = episode.images["corner2"][:, ::-1].copy()
            writer.add_episode(episode)
        writer.finalize({"generator": "synthetic"})
    return directory


def _settings(dataset, out, **overrides):
    settings = dict(dataset=str(dataset), tokenizer=None, out=str(out), variant="regress", preset="cnn", steps=3,
                    batch_size=4, checkpoint_every=3, eval_every=1000, eval_frames=8, decode_frames=4,
                    eval_batch_size=4, image_shift=2, policy={"image_size": 16})
    settings.update(overrides)
    return PolicyTrainConfig(**settings)


def _cnn_policy(**overrides) -> RegressPolicy:
    actions = ContinuousActions(random_action_tokenizer("exec-only").normalizers, exec_horizon=20)
    config = policy_config("cnn", **{"variant": "regress", "cameras": ("corner2", "wrist"), "image_size": 32,
                                     **overrides})
    return PlanExecutePolicy.build(config, actions, INSTRUCTIONS)


def test_cnn_trains_saves_reloads_predicts_and_serves(dataset, tmp_path):
    out = tmp_path / "cnn"
    with torch_threads(1):
        metrics = train_policy(_settings(dataset, out), show_progress=False)
    held = metrics["heldout"]
    assert {"loss/exec", "accuracy/exec", "exec_l1"} <= set(held) and held["exec_l1"] > 0
    saved = json.loads((out / "config.json").read_text())
    assert saved["backbone"]["model_type"] == MODEL_TYPE and saved["backbone"]["cameras"] == 2
    assert json.loads((out / "action_tokenizer" / "config.json").read_text())["type"] == "continuous"
    assert (out / EMA_WEIGHTS_FILE).is_file()

    policy = PlanExecutePolicy.from_pretrained(out, variant="regress", backbone="cnn").eval()
    assert type(policy) is RegressPolicy and type(policy.model) is CNNRegressVLA
    assert policy.action_tokenizer.same_as(ContinuousActions.fit(dataset, exec_horizon=20))
    observation = random_observation(policy.config, seed=3)
    chunk = policy.predict_action_chunk(observation)
    assert chunk.shape == (20, 4) and np.isfinite(chunk).all()
    low, high = policy.normalizers.action.q01, policy.normalizers.action.q99
    assert (chunk >= low - 1e-5).all() and (chunk <= high + 1e-5).all()  # clipped to [-1, 1] before unnormalising
    batch = policy.predict_action_chunk(random_observation(policy.config, batch_size=2), return_plan=True)
    assert batch[0].shape == (2, 20, 4) and batch[1] is None
    policy.config = policy.config.replace(replan_every=3)
    policy.reset()
    steps = [policy.select_action(observation) for _ in range(4)]
    np.testing.assert_allclose(np.stack(steps[:3]), chunk[:3], atol=1e-6)

    served = load_policy(out)  # the loader of `c2c serve`
    assert type(served.model) is CNNRegressVLA
    with BackgroundServer(PolicyServer(served, port=0)) as running, PolicyClient(running.url) as client:
        reply = client.infer(observation)
    np.testing.assert_allclose(reply["actions"], chunk, atol=1e-5)


def test_cnn_overfits_a_tiny_batch_and_reads_every_input():
    torch.manual_seed(0)
    with torch_threads(1):
        policy = _cnn_policy().train()
        actions = policy.action_tokenizer
        batch = random_observation(policy.config, batch_size=4, seed=1)
        chunks = np.random.default_rng(2).uniform(-0.8, 0.8, (4, 20, 4)).astype(np.float32)
        batch["codes.exec"] = actions.encode(actions.normalizers.action.unnormalize(chunks))
        optimizer = torch.optim.AdamW(policy.model.parameters(), lr=3e-3)
        losses = []
        for _ in range(60):
            optimizer.zero_grad()
            loss, metrics = policy(batch)
            loss.backward()
            optimizer.step()
            losses.append(float(metrics["loss/exec"]))
        assert set(metrics) == {"loss", "accuracy", "loss/exec", "accuracy/exec"}
        assert losses[-1] < 0.5 * losses[0], losses[::10]
        policy.eval()
        observation = random_observation(policy.config, seed=4)
        base = policy.predict_action_chunk(observation)
        for key, value in (("task", INSTRUCTIONS[1] if observation["task"] != INSTRUCTIONS[1] else INSTRUCTIONS[2]),
                           ("observation.state", -observation["observation.state"]),
                           ("observation.images.wrist", 255 - observation["observation.images.wrist"])):
            changed = policy.predict_action_chunk({**observation, key: value})
            assert not np.allclose(changed, base), key


def test_cnn_refuses_other_variants_in_one_line(dataset, tmp_path, capsys):
    for variant in ("plan", "noplan", "binning"):
        with pytest.raises(ConfigError, match=rf"serves variant 'regress' only, not '{variant}': use --variant "
                                              "regress"):
            policy_config("cnn", variant=variant)
    with pytest.raises(ConfigError, match="not 'binning'"):  # before any data is encoded or a model built
        train_policy(_settings(dataset, tmp_path / "binning", variant="binning"), show_progress=False)
    code = main(["policy", "train", "--dataset", str(dataset), "--out", str(tmp_path / "cli"), "--variant",
                 "binning", "--preset", "cnn", "--resize-images"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "--variant regress" in err
    assert not (tmp_path / "cli" / "config.json").exists()


def test_cnn_checkpoint_record_must_match(tmp_path):
    policy = _cnn_policy()
    directory = policy.save_pretrained(tmp_path / "policy")
    path = directory / "config.json"
    raw = json.loads(path.read_text())
    record = dict(raw["backbone"])
    raw["backbone"] = {**record, "cameras": 3}
    path.write_text(json.dumps(raw))
    with pytest.raises(ConfigError, match=r"config\.json: backbone record does not match the policy config in "
                                          r"cameras \(cameras=3, expected 2\)"):
        PlanExecutePolicy.from_pretrained(directory, weights="model")
    raw["backbone"] = {**record, "channels": [8, 8, 8, 8]}  # a self-consistent record of other weights
    path.write_text(json.dumps(raw))
    with pytest.raises(ConfigError, match=r"model\.safetensors: weights do not match the config"):
        PlanExecutePolicy.from_pretrained(directory, weights="model")
    raw["backbone"] = {"model_type": "paligemma"}
    path.write_text(json.dumps(raw))
    with pytest.raises(ConfigError, match="backbone model_type is 'paligemma'"):
        PlanExecutePolicy.from_pretrained(directory, weights="model")


@pytest.mark.sim
def test_eval_metaworld_runs_a_cnn_policy(tmp_path, capsys):
    if importlib.util.find_spec("metaworld") is None:
        pytest.skip("metaworld is not installed (pip install -e '.[sim]')")
    import c2c.envs.metaworld_env  # noqa: F401 - before mujoco: it picks OSMesa
    from c2c.envs.metaworld_tasks import instruction

    actions = ContinuousActions(random_action_tokenizer("exec-only").normalizers, exec_horizon=20)
    config = policy_config("cnn", variant="regress", cameras=("corner2",))
    directory = PlanExecutePolicy.build(config, actions, [instruction("reach")]).save_pretrained(tmp_path / "policy")
    out = tmp_path / "eval"
    assert main(["eval", "metaworld", "--policy", str(directory), "--tasks", "reach", "--episodes", "1", "--seed",
                 "0", "--max-steps", "3", "--workers", "1", "--allow-unknown-training-seeds", "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["tasks"]["reach-v3"]["rollouts"][0]["steps"] == 3, capsys.readouterr().err


def test_transformer_only_options_and_token_variants_are_refused_in_one_line():
    from c2c.eval.presets import get_preset
    from c2c.policy.training.memory import MemoryOptions, apply_memory_options

    with pytest.raises(ConfigError, match="has no transformer decoder.*drop --lora-rank"):
        apply_memory_options(_cnn_policy().model, MemoryOptions(lora_rank=4))
    with pytest.raises(ConfigError, match="backbone 'cnn' .* trains variant 'regress' only, got plan, noplan"):
        get_preset("quick").replace(backbone="cnn")
    assert get_preset("quick").replace(backbone="cnn", variants=("regress",)).backbone == "cnn"
