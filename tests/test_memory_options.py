"""Memory options of policy training: gradient checkpointing changes no number, frozen and LoRA weights stay put
and merge into a plain policy, pi0-FAST's bf16 layout, and an EMA that lives on the CPU, in bf16 or nowhere."""

import json

import pytest
import torch
from conftest import write_two_camera_dataset_and_tokenizer

from c2c.data.lerobot import LeRobotDataset
from c2c.errors import ConfigError
from c2c.policy.policy import EMA_WEIGHTS_FILE, WEIGHTS_FILE, PlanExecutePolicy
from c2c.policy.testing import debug_policy, random_batch, torch_threads
from c2c.policy.training.config import PolicyTrainConfig
from c2c.policy.training.loop import train_policy
from c2c.policy.training.memory import (MemoryOptions, WeightEMA, apply_memory_options, cast_bf16_weights, merge_lora,
                                        stochastic_round_bf16, trainable_parameters, vision_tower)


@pytest.fixture(autouse=True)
def _one_thread():
    with torch_threads(1):
        yield


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("memory")
    dataset, tokenizer = write_two_camera_dataset_and_tokenizer(root)
    return {"root": root, "dataset": dataset, "tokenizer": tokenizer}


def _train(workspace, out, **overrides):
    settings = dict(dataset=str(workspace["dataset"]), tokenizer=str(workspace["tokenizer"]),
                    out=str(workspace["root"] / out), preset="debug", steps=3, batch_size=4, checkpoint_every=3,
                    eval_every=1000, eval_frames=8, decode_frames=4, eval_batch_size=4)
    settings.update(overrides)
    return train_policy(PolicyTrainConfig(**settings), show_progress=False)


def _loss_and_grads(policy, batch):
    policy.zero_grad()
    loss, _ = policy(batch)
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in policy.named_parameters() if p.grad is not None}


def _saved_bytes(policy, batch):
    """Bytes of the activations autograd keeps for the backward pass of one forward."""
    total = [0]

    def pack(tensor):
        total[0] += tensor.numel() * tensor.element_size() if tensor.layout == torch.strided else 0
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        loss, _ = policy(batch)
    loss.backward()
    return total[0]


@pytest.mark.parametrize("variant,preset", [("plan", "debug"), ("noplan", "debug-multistream")])
def test_gradient_checkpointing_keeps_less_and_gives_the_same_loss_and_gradients(variant, preset):
    policy = debug_policy(variant, backbone=preset) if preset != "debug" else debug_policy(variant)
    policy.train()
    batch = random_batch(policy.config, 8)
    loss, grads = _loss_and_grads(policy, batch)
    kept = _saved_bytes(policy, batch)
    report = apply_memory_options(policy.model, MemoryOptions(gradient_checkpointing=True))
    assert report["checkpointed_parts"] >= 1
    loss_again, grads_again = _loss_and_grads(policy, batch)
    assert _saved_bytes(policy, batch) < kept / 3  # measured 6x (debug) and 5x (debug-multistream) less
    torch.testing.assert_close(loss_again, loss)
    assert grads.keys() == grads_again.keys()
    for name in grads:
        torch.testing.assert_close(grads_again[name], grads[name], rtol=1e-5, atol=1e-6, msg=name)


def test_bf16_weights_keep_norms_and_patch_embeddings_in_fp32_and_train():
    policy = debug_policy("plan").train()
    cast_bf16_weights(policy.model)
    dtypes = {name: p.dtype for name, p in policy.model.named_parameters()}
    kept = [n for n in dtypes if "norm" in n or "patch_embedding" in n or "position_embedding" in n]
    assert kept and all(dtypes[n] == torch.float32 for n in kept)
    assert all(dtype == torch.bfloat16 for n, dtype in dtypes.items() if n not in kept)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, grads = _loss_and_grads(policy, random_batch(policy.config, 2))
    assert torch.isfinite(loss) and grads


def test_frozen_vision_tower_is_not_trained(workspace):
    metrics = _train(workspace, "frozen", freeze_vision=True)
    assert metrics["memory"]["trainable_parameters"] < metrics["memory"]["parameters"]
    trained = PlanExecutePolicy.from_pretrained(workspace["root"] / "frozen", weights="model")
    tasks = LeRobotDataset(workspace["dataset"]).tasks  # the same seed and instructions build the same start
    start = PlanExecutePolicy.build(trained.config, trained.action_tokenizer, instructions=tasks)
    before, after = vision_tower(start.model).state_dict(), vision_tower(trained.model).state_dict()
    assert before.keys() == after.keys()
    for name in before:
        torch.testing.assert_close(after[name], before[name], msg=name)


def test_lora_trains_adapters_only_and_saves_a_plain_policy(workspace):
    policy = debug_policy("plan").train()
    report = apply_memory_options(policy.model, MemoryOptions(lora_rank=2))
    trainable = trainable_parameters(policy.model)
    assert report["lora_layers"] > 0 and any("lora_" in n for n in trainable)
    decoder_base = [n for n in trainable if "layers." in n and "lora_" not in n and "vision" not in n]
    assert not decoder_base, decoder_base[:3]  # the decoder's own projections are frozen
    for name, param in policy.model.named_parameters():
        if "lora_B" in name:
            param.data.normal_(0, 0.1)  # non-zero adapters, so that merging changes the base weights
    batch = random_batch(policy.config, 2)
    policy.eval()
    with torch.no_grad():
        adapted, _ = policy(batch)
        assert merge_lora(policy.model) == report["lora_layers"]
        merged, _ = policy(batch)
    torch.testing.assert_close(merged, adapted, rtol=1e-5, atol=1e-5)
    assert not any("lora_" in name for name in policy.model.state_dict())
    # Through training: the saved directory has the plain architecture and loads with from_pretrained.
    _train(workspace, "lora", lora_rank=2)
    loaded = PlanExecutePolicy.from_pretrained(workspace["root"] / "lora")
    assert not any("lora_" in name for name in loaded.model.state_dict())


def test_ema_modes_cpu_bf16_and_off(workspace):
    _train(workspace, "ema-cpu", ema="cpu")
    assert (workspace["root"] / "ema-cpu" / EMA_WEIGHTS_FILE).is_file()
    _train(workspace, "ema-bf16", ema="bf16")
    assert (workspace["root"] / "ema-bf16" / EMA_WEIGHTS_FILE).is_file()
    metrics = _train(workspace, "ema-off", ema="off")
    out = workspace["root"] / "ema-off"
    assert (out / WEIGHTS_FILE).is_file() and not (out / EMA_WEIGHTS_FILE).exists() and metrics["ema"] == "off"
    assert json.loads((out / "train_config.json").read_text())["ema"] == "off"
    with pytest.raises(ConfigError, match="--ema must be one of"):
        PolicyTrainConfig(dataset="d", tokenizer="t", out="o", ema="gpu")


def test_a_bf16_ema_keeps_increments_below_bf16_resolution():
    """At 1.0 bf16 steps by 2^-7; an EMA moving towards 1.001 at decay 0.99 would never leave 1.0 with
    round-to-nearest. Stochastic rounding keeps the average on the fp32 EMA's course."""
    torch.manual_seed(0)
    start = {"w": torch.ones(20000)}
    exact, low = WeightEMA(start, 0.99, "on"), WeightEMA(start, 0.99, "bf16")
    target = {"w": torch.full((20000,), 1.001)}
    for step in range(300):
        exact.update(target, 10_000 + step)  # past the warm-up ramp: the decay is 0.99
        low.update(target, 10_000 + step)
    assert low.averages["w"].dtype == torch.bfloat16
    assert abs(float(exact.averages["w"].mean()) - 1.001) < 1e-4
    assert abs(float(low.averages["w"].float().mean()) - float(exact.averages["w"].mean())) < 1e-4
    nearest = torch.tensor([1.0 + 0.01 * 0.001]).to(torch.bfloat16)
    assert float(nearest) == 1.0  # what round-to-nearest would have kept
    values = torch.full((100000,), 1.0 + 2 ** -9)  # a quarter of the way to the next bf16 value
    assert abs(float(stochastic_round_bf16(values).float().mean()) - (1.0 + 2 ** -9)) < 2e-4


def test_bad_memory_options_are_named():
    with pytest.raises(ConfigError, match="--precision must be one of"):
        PolicyTrainConfig(dataset="d", tokenizer="t", out="o", precision="fp16")
    with pytest.raises(ConfigError, match="--lora-rank must be >= 0"):
        PolicyTrainConfig(dataset="d", tokenizer="t", out="o", lora_rank=-1)
    with pytest.raises(ConfigError, match="--workers must be >= 0"):
        PolicyTrainConfig(dataset="d", tokenizer="t", out="o", workers=-2)
