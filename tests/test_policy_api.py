"""PlanExecutePolicy: forward, predict_action_chunk, select_action with replanning and plan caching, save/load."""

import json

import numpy as np
import pytest
import torch

from c2c.errors import ConfigError
from c2c.policy import load_policy
from c2c.policy.policy import EMA_WEIGHTS_FILE, PlanExecutePolicy
from c2c.policy.testing import (
    debug_policy,
    random_action_tokenizer,
    random_batch,
    random_observation,
)

_policy = debug_policy


@pytest.mark.parametrize("variant", ["plan", "plan-hp40", "noplan", "separate"])
def test_forward_reports_loss_and_branch_metrics(variant):
    policy = _policy(variant)
    loss, metrics = policy(random_batch(policy.config, 3))
    assert loss.ndim == 0 and torch.isfinite(loss) and loss.requires_grad
    branches = ["exec", "end"] + (["plan"] if policy.config.has_plan else [])
    assert {f"loss/{b}" for b in branches} | {f"accuracy/{b}" for b in branches} <= set(metrics)
    assert ("loss/plan" in metrics) == policy.config.has_plan
    assert all(not v.requires_grad for v in metrics.values())


def test_predict_action_chunk_single_and_batched():
    policy = _policy("plan")
    single = random_observation(policy.config)
    actions, plan = policy.predict_action_chunk(single, return_plan=True)
    assert actions.shape == (20, 4) and plan.shape == (20, 4) and actions.dtype == np.float32
    batch = random_observation(policy.config, batch_size=3)
    batched = policy.predict_action_chunk(batch)
    assert batched.shape == (3, 20, 4)
    # Batched decoding gives each observation what it would get alone (greedy).
    alone = policy.predict_action_chunk({key: value[1] for key, value in batch.items()})
    np.testing.assert_allclose(batched[1], alone, atol=1e-5)
    # Only exec codes drive the robot: the actions are the exec decode of the generated suffix.
    chunk, _ = policy.generate(batch)
    exec_codes = policy.suffix.ids_to_codes(chunk.suffix_ids)["exec"].numpy()
    np.testing.assert_array_equal(policy.action_tokenizer.decode(exec_codes, "exec"), batched)


def test_noplan_returns_no_plan():
    policy = _policy("noplan")
    actions, plan = policy.predict_action_chunk(random_observation(policy.config), return_plan=True)
    assert actions.shape == (20, 4) and plan is None


def _count_generations(policy):
    calls = []
    original = policy.generate

    def counted(observation, **kwargs):
        calls.append(kwargs.get("plan_ids"))
        return original(observation, **kwargs)

    policy.generate = counted
    return calls


def test_select_action_replans_every_k_steps_and_reset_clears_the_queue():
    policy = _policy("plan", replan_every=5)
    calls = _count_generations(policy)
    observation = random_observation(policy.config)
    chunk = policy.predict_action_chunk(observation)
    actions = [policy.select_action(observation) for _ in range(12)]
    assert len(calls) == 1 + 3  # the explicit chunk, then steps 0, 5 and 10
    np.testing.assert_allclose(np.stack(actions[:5]), chunk[:5], atol=1e-6)  # the first five of the chunk
    policy.reset()
    policy.select_action(observation)
    assert len(calls) == 5  # a fresh chunk right after reset
    batch_action = _policy("plan").select_action(random_observation(policy.config, batch_size=2))
    assert batch_action.shape == (2, 4)


def test_select_action_reuses_plans_when_asked():
    policy = _policy("plan", replan_every=4, plan_reuse=3)
    calls = _count_generations(policy)
    observation = random_observation(policy.config)
    for _ in range(4 * 7):
        policy.select_action(observation)
    reused = [plan is not None for plan in calls]
    # Chunks 0, 3, 6 generate a fresh plan; the two after each reuse it.
    assert reused == [False, True, True, False, True, True, False]


def test_save_and_load_give_identical_actions(tmp_path):
    policy = _policy("separate", token_order="latent-major")
    observation = random_observation(policy.config, batch_size=2)
    before = policy.predict_action_chunk(observation)
    directory = policy.save_pretrained(tmp_path / "ckpt")
    assert {p.name for p in directory.iterdir()} >= {"config.json", "model.safetensors", "action_tokenizer",
                                                     "instruction_tokenizer"}
    loaded = PlanExecutePolicy.from_pretrained(directory, variant="separate", action_dim=4)
    np.testing.assert_array_equal(loaded.predict_action_chunk(observation), before)
    assert loaded.config == policy.config
    for (name, a), (_, b) in zip(policy.model.state_dict().items(), loaded.model.state_dict().items(), strict=True):
        assert torch.equal(a, b), name


def test_ema_weights_win_when_present(tmp_path):
    policy = _policy("plan")
    directory = policy.save_pretrained(tmp_path / "ckpt")
    with torch.no_grad():
        for parameter in policy.model.parameters():
            parameter.add_(0.01)
    policy.save_pretrained(directory, weights_file=EMA_WEIGHTS_FILE)  # what the training task's EMA will write
    shifted = next(iter(policy.model.parameters()))
    auto = PlanExecutePolicy.from_pretrained(directory)
    raw = PlanExecutePolicy.from_pretrained(directory, weights="model")
    assert torch.equal(next(iter(auto.model.parameters())), shifted)
    assert not torch.equal(next(iter(raw.model.parameters())), shifted)


def test_load_policy_gives_the_saved_policy_in_eval_mode_with_its_options(tmp_path):
    directory = _policy("plan").save_pretrained(tmp_path / "ckpt")
    policy = load_policy(directory, weights="model", replan_every=3)
    assert not policy.training and policy.config.replan_every == 3
    assert load_policy(directory).config.replan_every == PlanExecutePolicy.from_pretrained(directory).config.replan_every
    with pytest.raises(ConfigError, match="nothing: policy directory does not exist"):
        load_policy(tmp_path / "nothing")


def test_checkpoint_of_another_variant_or_action_dim_is_refused(tmp_path):
    directory = _policy("noplan").save_pretrained(tmp_path / "noplan")
    with pytest.raises(ConfigError, match="variant='noplan', expected 'plan'"):
        PlanExecutePolicy.from_pretrained(directory, variant="plan")
    with pytest.raises(ConfigError, match="action_dim=4, expected 7"):
        PlanExecutePolicy.from_pretrained(directory, action_dim=7)
    # A tokenizer swapped in from elsewhere is caught by name.
    random_action_tokenizer("exec-only", action_dim=7).save_pretrained(directory / "action_tokenizer")
    with pytest.raises(ConfigError, match="action_dim is 7, the policy config expects 4"):
        PlanExecutePolicy.from_pretrained(directory)


def test_damaged_checkpoints_are_refused(tmp_path):
    policy = _policy("plan")
    directory = policy.save_pretrained(tmp_path / "ckpt")
    with pytest.raises(ConfigError, match="not a saved policy directory"):
        PlanExecutePolicy.from_pretrained(tmp_path / "nothing")
    with pytest.raises(ConfigError, match="weights must be"):
        PlanExecutePolicy.from_pretrained(directory, weights="best")
    config = json.loads((directory / "config.json").read_text())
    config["policy"]["state_encoding"] = "bins"  # the weights no longer fit the architecture
    (directory / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match="vocabulary layout does not match|weights do not match"):
        PlanExecutePolicy.from_pretrained(directory)


@pytest.mark.parametrize("preset", ["nano-conv", "nano-keypoints"])
def test_conv_vision_encoders_train_save_and_load(tmp_path, preset):
    """``nano-conv`` / ``nano-keypoints``: the SigLIP tower replaced by ``ConvVisionTower`` / ``KeypointVisionTower``
    (as many tokens as the patch grid); gradients reach it and a saved policy loads with the same tower and
    weights."""
    from c2c.policy.config import policy_config
    from c2c.policy.testing import INSTRUCTIONS, TOKENIZER_VARIANT
    from c2c.policy.vision import ConvVisionTower, KeypointVisionTower

    kind = {"nano-conv": ConvVisionTower, "nano-keypoints": KeypointVisionTower}[preset]
    config = policy_config(preset, variant="plan", cameras=("front", "wrist"), state_dim=4, action_dim=4,
                           image_size=48)  # a 2 x 2 token grid keeps the test fast
    policy = PlanExecutePolicy.build(config, random_action_tokenizer(TOKENIZER_VARIANT["plan"]), INSTRUCTIONS)
    tower = policy.model.backbone.model.vision_tower
    assert isinstance(tower, kind) and policy.model.image_tokens == 4
    loss, _ = policy(random_batch(config, 2))
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in tower.parameters())
    policy.eval()
    observation = random_observation(config, batch_size=2)
    before = policy.predict_action_chunk(observation)
    loaded = PlanExecutePolicy.from_pretrained(policy.save_pretrained(tmp_path / "ckpt"))
    assert isinstance(loaded.model.backbone.model.vision_tower, kind)
    np.testing.assert_array_equal(loaded.predict_action_chunk(observation), before)


def test_keypoint_tower_reads_the_position_of_its_softmax_peak():
    """A keypoint whose map peaks sharply at one feature cell reports that cell's (x, y) in [-1, 1]."""
    import torch

    from c2c.policy.vision import KeypointVisionTower

    tower = KeypointVisionTower(image_size=32, patch_size=16, hidden_size=8)  # 4 keypoints on an 8 x 8 grid
    captured = {}
    peak = torch.full((1, 4, 8, 8), -30.0)
    peak[0, 0, 2, 6] = 30.0  # keypoint 0: row 2, column 6
    tower.maps.forward = lambda features: peak
    tower.embed.register_forward_hook(lambda module, args, output: captured.update(inputs=args[0]))
    tower(torch.zeros(1, 3, 32, 32))
    axis = torch.linspace(-1, 1, 8)
    torch.testing.assert_close(captured["inputs"][0, 0, :2], torch.stack([axis[6], axis[2]]), atol=1e-4, rtol=0)
    torch.testing.assert_close(captured["inputs"][0, 1, :2], torch.zeros(2), atol=1e-5, rtol=0)  # flat map: centre
