"""Baselines through the token policies' code path: `regress` (continuous chunk head, L1) and `binning` (exec tokens
of 256 bins per dimension) train, save, reload, act and serve like `plan`; bad tokenizers fail in one line."""

from __future__ import annotations

import dataclasses
import importlib.util
import json

import numpy as np
import pytest
import torch
from conftest import serve_in_a_process, write_two_camera_dataset_and_tokenizer

from c2c.cli import main
from c2c.errors import ConfigError
from c2c.policy import config as config_module
from c2c.policy import load_policy
from c2c.policy.policy import EMA_WEIGHTS_FILE, PlanExecutePolicy
from c2c.policy.regress import ContinuousActions, RegressPolicy
from c2c.policy.testing import INSTRUCTIONS, debug_config, random_action_tokenizer, random_observation
from c2c.policy.training.config import PolicyTrainConfig
from c2c.policy.training.loop import train_policy
from c2c.serve.client import PolicyClient
from c2c.serve.server import BackgroundServer, PolicyServer


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A 6-episode two-camera dataset at the debug preset's 16 px and a joint RVQ tokenizer trained on it."""
    root = tmp_path_factory.mktemp("baselines")
    dataset, tokenizer = write_two_camera_dataset_and_tokenizer(root)
    return {"root": root, "dataset": dataset, "tokenizer": tokenizer}


def _train(workspace, out, variant, tokenizer=None, **overrides):
    settings = dict(dataset=str(workspace["dataset"]), tokenizer=tokenizer, out=str(workspace["root"] / out),
                    variant=variant, preset="debug", steps=2, batch_size=4, checkpoint_every=2, eval_every=1000,
                    eval_frames=8, decode_frames=4, eval_batch_size=4)
    settings.update(overrides)
    return train_policy(PolicyTrainConfig(**settings), show_progress=False)


def _acts_like_a_policy(directory, variant, expected_class):
    """Reload, predict a chunk, queue actions with replan_every, and serve the same chunk over a websocket."""
    policy = PlanExecutePolicy.from_pretrained(directory, variant=variant).eval()
    assert type(policy) is expected_class and policy.config.exec_horizon == 20
    observation = random_observation(policy.config, seed=3)
    chunk = policy.predict_action_chunk(observation)
    assert chunk.shape == (20, 4) and np.isfinite(chunk).all()
    batch = policy.predict_action_chunk(random_observation(policy.config, batch_size=2), return_plan=True)
    assert batch[0].shape == (2, 20, 4) and batch[1] is None
    policy.config = policy.config.replace(replan_every=3)
    policy.reset()
    steps = [policy.select_action(observation) for _ in range(4)]
    np.testing.assert_allclose(np.stack(steps[:3]), chunk[:3], atol=1e-6)
    np.testing.assert_allclose(steps[3], chunk[0], atol=1e-6)  # a fresh chunk after three steps
    served = load_policy(directory)  # the loader of `c2c serve`: no flag names the variant
    assert type(served) is expected_class
    with BackgroundServer(PolicyServer(served, port=0)) as running, PolicyClient(running.url) as client:
        meta = client.metadata
        assert (meta["variant"], meta["has_plan"]) == (variant, False)
        reply = client.infer(observation)
    np.testing.assert_allclose(reply["actions"], chunk, atol=1e-5)
    return policy


def test_regress_trains_saves_reloads_acts_and_serves(workspace):
    metrics = _train(workspace, "regress", "regress")
    out = workspace["root"] / "regress"
    held = metrics["heldout"]
    assert {"loss/exec", "accuracy/exec", "exec_l1", "exec_l1_tokenizer"} <= set(held) and held["exec_l1"] > 0
    assert held["exec_l1_tokenizer"] < 0.2  # fixed-point targets: only the [q01, q99] clipping is lost
    assert json.loads((out / "action_tokenizer" / "config.json").read_text())["type"] == "continuous"
    assert (out / EMA_WEIGHTS_FILE).is_file()
    policy = _acts_like_a_policy(out, "regress", RegressPolicy)
    # The statistics are those of the training episodes, fitted as the tokenizer fits them.
    fitted = ContinuousActions.fit(workspace["dataset"], exec_horizon=20)
    assert policy.action_tokenizer.same_as(fitted)
    # `c2c serve --policy DIR` itself, in its own process.
    observation = random_observation(policy.config, seed=5)
    np.testing.assert_allclose(serve_in_a_process(out, observation), policy.predict_action_chunk(observation), atol=1e-5)


def test_regress_on_a_conv_vision_backbone(workspace, monkeypatch):
    """The `cnn` row: regress on a convolutional image encoder (debug sizes; nano-conv at full size)."""
    conv = dataclasses.replace(config_module.PRESETS["debug"], vision_encoder="conv")
    monkeypatch.setitem(config_module.PRESETS, "debug", conv)
    _train(workspace, "regress-conv", "regress")
    policy = _acts_like_a_policy(workspace["root"] / "regress-conv", "regress", RegressPolicy)
    assert type(policy.model.backbone.model.vision_tower).__name__ == "ConvVisionTower"


def test_binning_trains_saves_reloads_acts_and_serves(workspace):
    metrics = _train(workspace, "binning", "binning")
    out = workspace["root"] / "binning"
    assert metrics["heldout"]["exec_l1_tokenizer"] < 0.05  # 256 bins: at most half a bin (1/256) inside [q01, q99]
    policy = _acts_like_a_policy(out, "binning", PlanExecutePolicy)
    branch = policy.suffix.branch("exec")
    assert (branch.positions, branch.levels, branch.codebook_size) == (20 * 4, 1, 256)
    assert policy.suffix.length == 20 * 4 + 1 and {b.name for b in policy.suffix.branches} == {"exec"}
    # A saved binning tokenizer is accepted too (and its codes are cached, keyed by its files).
    policy.action_tokenizer.save_pretrained(workspace["root"] / "binning-tokenizer")
    again = _train(workspace, "binning-saved", "binning", tokenizer=str(workspace["root"] / "binning-tokenizer"))
    assert again["codes_computed_this_run"] is True
    assert any((workspace["root"] / "binning-saved" / "codes").glob("*.npz"))


def test_regress_queries_see_each_other_and_the_prefix_does_not_see_them():
    actions = ContinuousActions(random_action_tokenizer("exec-only").normalizers, exec_horizon=20)
    policy = PlanExecutePolicy.build(debug_config("regress"), actions, INSTRUCTIONS).eval()
    inputs, _ = policy.processor.prefix_inputs(random_observation(policy.config, batch_size=2))
    with torch.no_grad():
        before = policy.model.predict(inputs)
        policy.model.action_queries[-1].add_(1.0)  # the last query only
        after = policy.model.predict(inputs)
    assert before.shape == (2, 20, 4)
    assert not torch.allclose(before[:, 0], after[:, 0])  # bidirectional: the first step sees the last query


def test_bad_inputs_fail_in_one_line(workspace, capsys):
    with pytest.raises(ConfigError, match=r"variant 'regress' regresses continuous actions and takes no tokenizer.*"
                                          r"drop --tokenizer"):
        _train(workspace, "bad-regress", "regress", tokenizer=str(workspace["tokenizer"]))
    with pytest.raises(ConfigError, match=r"a 'rvq' tokenizer; variant 'binning' needs a binning tokenizer"):
        _train(workspace, "bad-binning", "binning", tokenizer=str(workspace["tokenizer"]))
    from c2c.tokenizer.binning import BinningTokenizer

    binning = BinningTokenizer(random_action_tokenizer("exec-only").normalizers, action_dim=4)
    binning_dir = binning.save_pretrained(workspace["root"] / "bad-binning-tokenizer")
    with pytest.raises(ConfigError, match=r"a 'binning' tokenizer; variant 'plan' needs an RVQ tokenizer \(c2c "
                                          r"tokenizer train --variant joint\)"):
        _train(workspace, "bad-plan", "plan", tokenizer=str(binning_dir))
    with pytest.raises(ConfigError, match=r"variant 'noplan' needs --tokenizer: a trained exec-only or joint RVQ"):
        _train(workspace, "bad-noplan", "noplan")
    with pytest.raises(ConfigError, match="variant 'regress' has no multi-stream form"):
        debug_config("regress", backbone="debug-multistream")
    with pytest.raises(ConfigError, match=r"variant 'joint' does not serve policy variant 'binning'"):
        PlanExecutePolicy.build(debug_config("binning"), random_action_tokenizer("joint"), INSTRUCTIONS)
    code = main(["policy", "train", "--dataset", str(workspace["dataset"]), "--tokenizer", str(workspace["tokenizer"]),
                 "--out", str(workspace["root"] / "cli-regress"), "--variant", "regress", "--preset", "debug"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "--tokenizer" in err and "drop --tokenizer" in err


def test_pipeline_trains_baselines_without_a_tokenizer_stage(tmp_path):
    from c2c.eval.pipeline import TOKENIZER_FOR_VARIANT, policy_configs
    from c2c.eval.presets import get_preset

    preset = dataclasses.replace(get_preset("quick"), variants=("regress", "binning", "noplan"))
    configs = policy_configs(preset, tmp_path / "data", tmp_path)
    assert configs["regress"].tokenizer is None and configs["binning"].tokenizer is None
    assert configs["noplan"].tokenizer.endswith("joint")
    assert {TOKENIZER_FOR_VARIANT[v] for v in preset.variants} - {None} == {("joint", 160)}


@pytest.mark.sim
@pytest.mark.parametrize("variant", ["regress", "binning"])
def test_eval_metaworld_loads_the_baseline_without_a_flag(variant, tmp_path, capsys):
    if importlib.util.find_spec("metaworld") is None:
        pytest.skip("metaworld is not installed (pip install -e '.[sim]')")
    import c2c.envs.metaworld_env  # noqa: F401 - before mujoco: it picks OSMesa
    from c2c.envs.metaworld_tasks import instruction
    from c2c.tokenizer.binning import BinningTokenizer

    normalizers = random_action_tokenizer("exec-only").normalizers
    actions = (ContinuousActions(normalizers, exec_horizon=20) if variant == "regress"
               else BinningTokenizer(normalizers, action_dim=4))
    policy = PlanExecutePolicy.build(debug_config(variant, cameras=("corner2", "gripperPOV")), actions,
                                     instructions=[instruction("reach")])
    directory = policy.save_pretrained(tmp_path / "policy")
    out = tmp_path / "eval"
    assert main(["eval", "metaworld", "--policy", str(directory), "--tasks", "reach", "--episodes", "1", "--seed",
                 "0", "--max-steps", "3", "--workers", "1", "--allow-unknown-training-seeds", "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["tasks"]["reach-v3"]["rollouts"][0]["steps"] == 3, capsys.readouterr().err
