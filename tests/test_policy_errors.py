"""Bad input fails with a ConfigError that names the key and the expected value."""

import numpy as np
import pytest
import torch

from c2c.errors import ConfigError
from c2c.policy.policy import PlanExecutePolicy
from c2c.policy.testing import (
    INSTRUCTIONS,
    debug_config,
    debug_policy,
    random_action_tokenizer,
    random_batch,
    random_observation,
)


@pytest.fixture(scope="module")
def policy():
    return debug_policy("plan")


def _without(observation, key):
    return {k: v for k, v in observation.items() if k != key}


@pytest.mark.parametrize("change,message", [
    (lambda o: _without(o, "observation.images.wrist"),
     r"lacks 'observation.images.wrist' \(expected a uint8 \(16, 16, 3\) image of camera 'wrist'"),
    (lambda o: _without(o, "observation.state"), r"lacks 'observation.state' \(expected float32 \[4\]"),
    (lambda o: _without(o, "task"), r"lacks 'task'"),
    (lambda o: {**o, "observation.images.front": np.zeros((32, 32, 3), np.uint8)},
     r"observation.images.front: expected shape \(16, 16, 3\), got \(32, 32, 3\)"),
    (lambda o: {**o, "observation.images.front": np.zeros((16, 16, 3), np.float32)},
     r"observation.images.front: expected dtype uint8, got float32"),
    (lambda o: {**o, "observation.images.front": np.zeros((16, 16), np.uint8)},
     r"observation.images.front: expected shape \(16, 16, 3\), got \(16, 16\)"),
    (lambda o: {**o, "observation.state": np.zeros(7, np.float32)},
     r"observation.state: expected float32 \[4\] \(or \[B, 4\]\), got shape \(7,\)"),
    (lambda o: {**o, "observation.state": np.array([0, np.nan, 0, 0], np.float32)},
     r"observation.state: expected finite"),
    (lambda o: {**o, "task": 3}, r"task: expected 1 instruction string"),
])
def test_bad_observations_name_the_key(policy, change, message):
    with pytest.raises(ConfigError, match=message):
        policy.predict_action_chunk(change(random_observation(policy.config)))


def test_batch_rows_must_agree(policy):
    batch = random_observation(policy.config, batch_size=3)
    with pytest.raises(ConfigError, match=r"observation.images.wrist: expected shape \(3, 16, 16, 3\)"):
        policy.predict_action_chunk({**batch, "observation.images.wrist": batch["observation.images.wrist"][:2]})
    with pytest.raises(ConfigError, match="task: expected 3 instruction string"):
        policy.predict_action_chunk({**batch, "task": ["open the drawer"]})


@pytest.mark.parametrize("change,message", [
    (lambda b: _without(b, "codes.plan"), r"batch lacks 'codes.plan' \(expected plan codes of shape \(2, 8, 3\)\)"),
    (lambda b: {**b, "codes.exec": b["codes.exec"][:, :4]}, r"codes.exec: expected shape \(2, 8, 3\), got \(2, 4, 3\)"),
    (lambda b: {**b, "codes.exec": b["codes.exec"] + 16}, r"codes.exec: codes must lie in \[0, 16\)"),
    (lambda b: {**b, "codes.exec": b["codes.exec"].astype(np.float32)}, r"codes.exec: expected integer codes"),
])
def test_bad_training_batches_name_the_key(policy, change, message):
    with pytest.raises(ConfigError, match=message):
        policy(change(random_batch(policy.config, 2)))


def test_forward_needs_a_batch(policy):
    with pytest.raises(ConfigError, match="forward: expected a batch"):
        policy(random_observation(policy.config))


def test_images_as_torch_tensors_are_accepted(policy):
    observation = random_observation(policy.config)
    as_torch = {k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v for k, v in observation.items()}
    np.testing.assert_array_equal(policy.predict_action_chunk(as_torch), policy.predict_action_chunk(observation))


@pytest.mark.parametrize("variant,tokenizer_variant,message", [
    ("plan", "exec-only", r"variant 'exec-only' does not serve policy variant 'plan' \(expected 'joint'\)"),
    ("separate", "joint", r"variant 'joint' does not serve policy variant 'separate' \(expected 'separate'\)"),
])
def test_tokenizer_of_the_wrong_variant_is_refused(variant, tokenizer_variant, message):
    with pytest.raises(ConfigError, match=message):
        PlanExecutePolicy.build(debug_config(variant), random_action_tokenizer(tokenizer_variant), INSTRUCTIONS)


def test_tokenizer_of_the_wrong_dimensions_is_refused():
    with pytest.raises(ConfigError, match="action_dim is 7, the policy config expects 4"):
        PlanExecutePolicy.build(debug_config("plan"), random_action_tokenizer("joint", action_dim=7), INSTRUCTIONS)
    with pytest.raises(ConfigError, match="state_dim is 8, the policy config expects 4"):
        PlanExecutePolicy.build(debug_config("plan"), random_action_tokenizer("joint", state_dim=8), INSTRUCTIONS)


def test_fresh_backbone_needs_instructions():
    with pytest.raises(ConfigError, match="instructions"):
        PlanExecutePolicy.build(debug_config("plan"), random_action_tokenizer("joint"), instructions=[])
