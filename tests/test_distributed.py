"""Data-parallel training on two CPU processes (gloo): DDP and FSDP2 follow the one-process loss curve at the same
global batch, resume from their sharded checkpoints, and save a policy that loads on one process."""

import json

import numpy as np
import pytest
import torch
from conftest import write_two_camera_dataset_and_tokenizer

from c2c.errors import ConfigError
from c2c.policy.policy import PlanExecutePolicy
from c2c.policy.testing import torch_threads
from c2c.policy.training.checkpoint import read_state
from c2c.policy.training.config import PolicyTrainConfig
from c2c.policy.training.launch import launch_processes
from c2c.policy.training.loop import train_policy


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("distributed")
    dataset, tokenizer = write_two_camera_dataset_and_tokenizer(root)
    return {"root": root, "dataset": dataset, "tokenizer": tokenizer}


def _config(workspace, out, **overrides):
    settings = dict(dataset=str(workspace["dataset"]), tokenizer=str(workspace["tokenizer"]),
                    out=str(workspace["root"] / out), preset="debug", steps=4, global_batch_size=8,
                    checkpoint_every=2, eval_every=1000, eval_frames=8, decode_frames=4, eval_batch_size=4)
    settings.update(overrides)
    return PolicyTrainConfig(**settings)


def _losses(out):
    return np.array([row["loss"] for row in json.loads((out / "checkpoint" / "history.json").read_text())["train"]])


def test_ddp_and_fsdp_on_two_processes_follow_one_process(workspace):
    with torch_threads(1):
        single = train_policy(_config(workspace, "one"), show_progress=False)
    reference = _losses(workspace["root"] / "one")
    weights = PlanExecutePolicy.from_pretrained(workspace["root"] / "one", weights="model").model.state_dict()
    for strategy in ("ddp", "fsdp"):
        out = workspace["root"] / strategy
        metrics = launch_processes(_config(workspace, strategy, parallel=strategy), 2)
        assert metrics["processes"] == 2 and metrics["strategy"] == strategy
        assert metrics["effective_batch_size"] == single["effective_batch_size"] == 8
        np.testing.assert_allclose(_losses(out), reference, rtol=2e-4, err_msg=strategy)
        # The saved policy is whole (FSDP's shards gathered) and loads in one process, close to the one-process run.
        policy = PlanExecutePolicy.from_pretrained(out, weights="model")
        for name, value in policy.model.state_dict().items():
            torch.testing.assert_close(value, weights[name], rtol=1e-3, atol=1e-4, msg=f"{strategy}: {name}")
        assert read_state(out)["strategy"] == strategy and read_state(out)["world_size"] == 2


def test_an_fsdp_checkpoint_resumes_in_one_process(workspace):
    """Stopped after 2 of 4 steps on two processes, resumed on one: the straight run's curve (DCP reshards)."""
    straight = _losses(workspace["root"] / "fsdp")  # written by the test above (4 steps, 2 processes)
    config = _config(workspace, "fsdp-stopped", parallel="fsdp")
    assert launch_processes(config, 2, stop_after=2) is None
    assert read_state(workspace["root"] / "fsdp-stopped")["step"] == 2
    with torch_threads(1):  # resumed in one process: the shards are read into whole tensors
        train_policy(config, show_progress=False, resume=True)
    np.testing.assert_allclose(_losses(workspace["root"] / "fsdp-stopped"), straight, rtol=2e-4)


def test_launch_is_checked_before_any_data_is_read(workspace, tmp_path):
    missing = dict(dataset=str(tmp_path / "nope"), tokenizer=str(tmp_path / "nope"), out=str(tmp_path / "o"),
                   preset="debug")
    with pytest.raises(ConfigError, match="--global-batch-size 9 is not divisible by 2 processes"):
        launch_processes(PolicyTrainConfig(**missing, global_batch_size=9), 2)
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="sees no CUDA GPU"):
            launch_processes(PolicyTrainConfig(**missing, device="cuda"), 2)
    with pytest.raises(ConfigError, match="--parallel must be one of"):
        train_policy(PolicyTrainConfig(**missing, parallel="zero"))
    assert not (tmp_path / "o").exists()


def test_fsdp_shards_the_multistream_decoder_with_bf16_and_checkpointing(workspace):
    out = workspace["root"] / "fsdp-multistream"
    config = _config(workspace, "fsdp-multistream", parallel="fsdp", preset="debug-multistream", steps=2,
                     precision="bf16", gradient_checkpointing=True, ema="bf16")
    metrics = launch_processes(config, 2)
    assert metrics["strategy"] == "fsdp" and metrics["memory"]["checkpointed_parts"] >= 1
    policy = PlanExecutePolicy.from_pretrained(out)
    assert all(p.dtype == torch.float32 for p in policy.model.parameters())  # saved whole, loads in fp32


def test_bf16_weights_and_a_cpu_ema_are_refused_with_fsdp(workspace, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(ConfigError, match="bf16-weights with FSDP"):
        _config(workspace, "x", parallel="fsdp", precision="bf16-weights").launch()
    with pytest.raises(ConfigError, match="--ema cpu with FSDP"):
        _config(workspace, "x", parallel="fsdp", ema="cpu").launch()
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "bf16")
    with pytest.raises(ConfigError, match="accelerate's config asks for mixed precision 'bf16'"):
        _config(workspace, "x").launch()
