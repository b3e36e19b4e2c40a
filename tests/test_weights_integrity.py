"""Saved weights are verified when loaded: flipped bytes, non-finite values, an interrupted save and a missing EMA
file are each refused with one line; a directory is complete or absent."""

import json
import os

import pytest
import torch

from c2c.errors import ConfigError
from c2c.policy.policy import CONFIG_FILE, EMA_WEIGHTS_FILE, WEIGHTS_FILE, PlanExecutePolicy
from c2c.policy.testing import debug_policy
from c2c.utils.weights import WEIGHTS_KEY, sha256_file


def _saved(tmp_path, name="policy"):
    policy = debug_policy("plan")
    directory = tmp_path / name
    policy.save_pretrained(directory, weights={WEIGHTS_FILE: policy.model, EMA_WEIGHTS_FILE: policy.model})
    return policy, directory


def test_each_weights_file_is_recorded_and_verified(tmp_path):
    _, directory = _saved(tmp_path)
    recorded = json.loads((directory / CONFIG_FILE).read_text())[WEIGHTS_KEY]
    assert recorded == {name: sha256_file(directory / name) for name in (EMA_WEIGHTS_FILE, WEIGHTS_FILE)}
    PlanExecutePolicy.from_pretrained(directory)
    # Half of the EMA file's tensor bytes overwritten, the header intact: refused before any parameter is used.
    path = directory / EMA_WEIGHTS_FILE
    data = bytearray(path.read_bytes())
    header = 8 + int.from_bytes(data[:8], "little")
    middle = header + (len(data) - header) // 2
    data[middle:] = bytes(len(data) - middle)
    path.write_bytes(bytes(data))
    with pytest.raises(ConfigError, match=r"ema.safetensors: its sha256 differs"):
        PlanExecutePolicy.from_pretrained(directory)
    PlanExecutePolicy.from_pretrained(directory, weights="model")  # the intact file still loads


def test_a_non_finite_parameter_is_refused_naming_the_tensor(tmp_path):
    policy = debug_policy("plan")
    with torch.no_grad():
        next(iter(policy.model.parameters())).view(-1)[0] = float("nan")
    directory = policy.save_pretrained(tmp_path / "nan")
    with pytest.raises(ConfigError, match=r"model.safetensors: tensor '.+' has 1 non-finite values"):
        PlanExecutePolicy.from_pretrained(directory)


def test_an_interrupted_save_leaves_no_loadable_half(tmp_path, monkeypatch):
    policy, directory = _saved(tmp_path)
    real_replace = os.replace

    def killed_at_config(source, target):  # the process dies before the policy's config is moved into place
        if os.path.basename(source) == CONFIG_FILE and os.path.basename(os.path.dirname(target)) in (
                directory.name, "fresh"):
            raise KeyboardInterrupt
        return real_replace(source, target)

    with torch.no_grad():
        for param in policy.model.parameters():
            param.add_(1.0)
    monkeypatch.setattr(os, "replace", killed_at_config)
    with pytest.raises(KeyboardInterrupt):
        policy.save_pretrained(directory, weights={WEIGHTS_FILE: policy.model, EMA_WEIGHTS_FILE: policy.model})
    monkeypatch.setattr(os, "replace", real_replace)
    # New weights files beside the old config: their digests do not match what the config lists.
    with pytest.raises(ConfigError, match="sha256 differs"):
        PlanExecutePolicy.from_pretrained(directory)
    # A fresh directory interrupted the same way has no config at all: not a policy directory.
    fresh = tmp_path / "fresh"
    monkeypatch.setattr(os, "replace", killed_at_config)
    with pytest.raises(KeyboardInterrupt):
        policy.save_pretrained(fresh)
    monkeypatch.setattr(os, "replace", real_replace)
    with pytest.raises(ConfigError, match="not a saved policy directory"):
        PlanExecutePolicy.from_pretrained(fresh)


def test_a_directory_missing_its_recorded_ema_weights_is_refused(tmp_path):
    _, directory = _saved(tmp_path)
    (directory / EMA_WEIGHTS_FILE).unlink()
    with pytest.raises(ConfigError, match=r"ema.safetensors: missing, but .* lists it; the directory is incomplete"):
        PlanExecutePolicy.from_pretrained(directory)


def test_directories_saved_before_digests_existed_still_load(tmp_path):
    policy, directory = _saved(tmp_path)
    config = json.loads((directory / CONFIG_FILE).read_text())
    del config[WEIGHTS_KEY]
    (directory / CONFIG_FILE).write_text(json.dumps(config))
    loaded = PlanExecutePolicy.from_pretrained(directory)
    saved, read = policy.model.state_dict(), loaded.model.state_dict()
    assert set(read) == set(saved) and all(torch.equal(read[key], saved[key]) for key in saved)


def test_tokenizer_weights_are_verified(tmp_path):
    from c2c.policy.testing import random_action_tokenizer
    from c2c.tokenizer.rvq_tokenizer import RVQTokenizer

    directory = random_action_tokenizer("joint").save_pretrained(tmp_path / "tok")
    RVQTokenizer.from_pretrained(directory)
    path = directory / "model.safetensors"
    data = bytearray(path.read_bytes())
    data[-4:] = b"\xff\xff\xff\xff"  # a NaN where a float was
    path.write_bytes(bytes(data))
    with pytest.raises(ConfigError, match="sha256 differs"):
        RVQTokenizer.from_pretrained(directory)
    config = json.loads((directory / "config.json").read_text())
    del config[WEIGHTS_KEY]  # without the record, the NaN itself is caught
    (directory / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match="non-finite values"):
        RVQTokenizer.from_pretrained(directory)
