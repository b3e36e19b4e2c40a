"""The paligemma-3b code path: weights and text tokenizer from a local directory, actions in the vocabulary's tail."""

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from c2c.errors import ConfigError
from c2c.policy.config import policy_config
from c2c.policy.policy import PlanExecutePolicy
from c2c.policy.testing import (
    random_action_tokenizer,
    random_batch,
    random_observation,
    save_random_paligemma,
)


@pytest.fixture(scope="module")
def backbone_dir(tmp_path_factory):
    return save_random_paligemma(tmp_path_factory.mktemp("paligemma") / "backbone", image_size=32, vocab_size=600)


def _config(backbone_dir, **overrides):
    values = dict(variant="plan", cameras=("image", "image2"), state_dim=4, action_dim=4, image_size=32,
                  backbone_path=str(backbone_dir))
    values.update(overrides)
    return policy_config("paligemma-3b", **values)


def test_pretrained_backbone_loads_its_weights_and_tokenizer(backbone_dir, tmp_path):
    policy = PlanExecutePolicy.build(_config(backbone_dir), random_action_tokenizer("joint"))
    # The backbone's own weights, not a fresh initialisation.
    saved = load_file(str(backbone_dir / "model.safetensors"))
    # (recent transformers save PaliGemma's hub layout, "language_model.model.layers...", older 5.x releases
    # "model.language_model.layers...": the loader maps the names)
    key = next(k for k in saved if "language_model" in k and k.endswith("layers.0.self_attn.q_proj.weight"))
    q_proj = policy.model.backbone.model.language_model.layers[0].self_attn.q_proj.weight
    torch.testing.assert_close(q_proj, saved[key])
    # Its text tokenizer with PaliGemma's prompt convention: <bos> + text + "\n".
    ids, mask = policy.instruction_tokenizer.encode(["open the drawer"], 8)
    assert ids[0, 0] == policy.instruction_tokenizer.tokenizer.token_to_id("<bos>") and mask[0, :4].all()
    # Actions sit in the tail below the 128 reserved ids; the vocabulary keeps its size.
    vocabulary = policy.model.vocabulary
    assert vocabulary.total == 600 and vocabulary.end_id == 600 - 128 - 1
    assert vocabulary.action_start == vocabulary.end_id - 3 * 16
    assert policy.model.backbone.lm_head.weight.shape[0] == 600

    loss, _ = policy(random_batch(policy.config, 2))
    loss.backward()
    observation = random_observation(policy.config)
    actions = policy.predict_action_chunk(observation)
    assert actions.shape == (20, 4)
    # A checkpoint runs without the backbone directory.
    directory = policy.save_pretrained(tmp_path / "ckpt")
    for path in backbone_dir.iterdir():
        path.rename(tmp_path / path.name)
    try:
        loaded = PlanExecutePolicy.from_pretrained(directory)
    finally:
        for path in (tmp_path / "config.json", tmp_path / "model.safetensors", tmp_path / "tokenizer.json"):
            if path.exists():
                path.rename(backbone_dir / path.name)
    np.testing.assert_array_equal(loaded.predict_action_chunk(observation), actions)


def test_pretrained_image_size_must_match_the_backbone(backbone_dir):
    with pytest.raises(ConfigError, match="image_size: the backbone expects 32-px images, the config says 64"):
        PlanExecutePolicy.build(_config(backbone_dir, image_size=64), random_action_tokenizer("joint"))


def test_pretrained_backbone_needs_a_local_directory(tmp_path):
    with pytest.raises(ConfigError, match="backbone_path must name a local directory"):
        policy_config("paligemma-3b", backbone_path=None)
    with pytest.raises(ConfigError, match="config.json: missing"):
        PlanExecutePolicy.build(_config(tmp_path / "nowhere"), random_action_tokenizer("joint"))
