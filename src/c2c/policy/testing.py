"""Small random-weight building blocks for tests and smoke runs of the policy (nothing is downloaded).

Example::

    tokenizer = random_action_tokenizer("joint")
    policy = PlanExecutePolicy.build(debug_config("plan"), tokenizer, instructions=INSTRUCTIONS)
    loss, metrics = policy(random_batch(policy.config, batch_size=4))
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from c2c.constants import OBS_STATE, TASK, image_key
from c2c.data.normalize import ActionNormalizers, QuantileNormalizer
from c2c.policy.config import PolicyConfig, policy_config
from c2c.policy.processing import CODE_KEYS

INSTRUCTIONS = ("pick up the puck and place it at the goal", "open the drawer", "press the button from the top")
TOKENIZER_VARIANT = {"plan": "joint", "plan-hp40": "joint", "noplan": "exec-only", "separate": "separate"}


@contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Run with ``count`` intra-op threads, then restore. The debug model's matrices are so small that a second
    OpenMP thread only adds synchronisation, which costs up to 100x when other processes share the two cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def random_action_tokenizer(variant: str = "joint", action_dim: int = 4, state_dim: int = 4, codebook_size: int = 16,
                            seed: int = 0, codec: dict[str, Any] | None = None):
    """A random-weight RVQ tokenizer (3 levels x ``codebook_size`` codes, 20-step chunks; small layers), or with
    ``codec`` one of those CodecConfig settings (the others the codec's defaults, ``codebook_size`` ignored)."""
    from c2c.tokenizer.codec import CodecConfig
    from c2c.tokenizer.rvq_tokenizer import RVQTokenizer

    unit = QuantileNormalizer(q01=-np.ones(action_dim), q99=np.ones(action_dim))
    wide = QuantileNormalizer(q01=-8 * np.ones(action_dim), q99=8 * np.ones(action_dim))
    state = QuantileNormalizer(q01=-np.ones(state_dim), q99=np.ones(state_dim))
    normalizers = ActionNormalizers(action=unit, plan=None if variant == "exec-only" else wide, state=state)
    settings = codec if codec is not None else dict(codebook_size=codebook_size, model_dim=16, depth=1, heads=2,
                                                    latent_dim=8, mode_dim=8)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return RVQTokenizer(CodecConfig(action_dim=action_dim, **settings), normalizers, variant)


def debug_config(variant: str = "plan", **overrides: Any) -> PolicyConfig:
    """The ``debug`` preset with two cameras and 4-dim state and actions."""
    values = dict(variant=variant, cameras=("front", "wrist"), state_dim=4, action_dim=4)
    values.update(overrides)
    return policy_config("debug", **values)


def debug_policy(variant: str = "plan", **overrides: Any):
    """A random-weight policy on the debug preset with a matching random tokenizer, in eval mode."""
    from c2c.policy.policy import PlanExecutePolicy

    tokenizer = random_action_tokenizer(TOKENIZER_VARIANT[variant])
    return PlanExecutePolicy.build(debug_config(variant, **overrides), tokenizer, INSTRUCTIONS).eval()


def random_observation(config: PolicyConfig, batch_size: int | None = None, seed: int = 0) -> dict[str, Any]:
    """One observation (batch_size None) or a batch, with random images and state."""
    rng = np.random.default_rng(seed)
    lead = () if batch_size is None else (batch_size,)
    size = config.image_size
    observation: dict[str, Any] = {
        image_key(camera): rng.integers(0, 256, (*lead, size, size, 3), dtype=np.uint8) for camera in config.cameras
    }
    observation[OBS_STATE] = rng.uniform(-1, 1, (*lead, config.state_dim)).astype(np.float32)
    tasks = [INSTRUCTIONS[i % len(INSTRUCTIONS)] for i in range(batch_size or 1)]
    observation[TASK] = tasks if batch_size is not None else tasks[0]
    return observation


def random_batch(config: PolicyConfig, batch_size: int, codebook_size: int = 16, positions: int = 8,
                 seed: int = 0) -> dict[str, Any]:
    """A training batch: random observations and random target codes (B, N, 3) for every branch."""
    rng = np.random.default_rng(seed + 1)
    batch = random_observation(config, batch_size, seed)
    for mode in ("plan", "exec") if config.has_plan else ("exec",):
        batch[CODE_KEYS[mode]] = rng.integers(0, codebook_size, (batch_size, positions, 3))
    return batch


def save_random_paligemma(directory: str | Path, image_size: int = 32, vocab_size: int = 600) -> Path:
    """A random-weight PaliGemma (same architecture class as the 3B) with a word-level tokenizer.json, as a local
    pretrained backbone directory for testing the ``paligemma-3b`` code path."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PaliGemmaConfig, PaliGemmaForConditionalGeneration

    directory = Path(directory)
    words = sorted({w for text in INSTRUCTIONS for w in text.split()})
    vocab = {token: i for i, token in enumerate(["<pad>", "<eos>", "<bos>", "<unk>", *words])}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    config = PaliGemmaConfig(
        vision_config=dict(model_type="siglip_vision_model", hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                           num_attention_heads=2, patch_size=8, image_size=image_size, vision_use_head=False),
        text_config=dict(model_type="gemma", hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, head_dim=16, vocab_size=vocab_size),
        projection_dim=32, hidden_size=32, vocab_size=vocab_size, image_token_index=vocab_size - 1)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = PaliGemmaForConditionalGeneration(config)
    model.save_pretrained(directory)
    tokenizer.save(str(directory / "tokenizer.json"))
    return directory
