"""The PaliGemma-architecture backbone (SigLIP vision tower + linear projector + Gemma decoder), from transformers.

The policy uses transformers' ``PaliGemmaForConditionalGeneration`` as a container of weights and calls its parts
directly (vision tower, projector, Gemma decoder, LM head) rather than its ``forward``: that forward expects one
image per prompt marked by placeholder ids, while the policy needs several cameras, a state embedding and its own
prefix-LM mask (see ``tokens.attention_mask``). Weight names stay PaliGemma's, so a pretrained checkpoint loads as is.

- ``tiny`` (and any non-pretrained preset): built from the preset's sizes with random weights, the vocabulary
  sized as text + state bins + action codes + end (``VocabularyLayout.appended``).
- ``paligemma-3b``: ``from_pretrained(backbone_path, local_files_only=True)``; nothing is downloaded. Its
  vocabulary keeps its size (its embedding rows) and action ids take its tail (``VocabularyLayout.tail``).
  ``backbone_path`` may also be a LeRobot pi0fast directory: its PaliGemma loads through ``pi0fast.py`` (vocabulary
  257,152) and its text tokenizer comes from ``pi0fast.load_pi0fast_text_tokenizer``.

Example::

    model = build_backbone(config, vocab_size=layout.total, pad_id=0)     # random tiny
    model = load_pretrained_backbone("/models/paligemma-3b-pt-224")      # real weights
    model = load_pretrained_backbone("/models/pi0fast_base")             # pi0-FAST's PaliGemma
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from transformers import PaliGemmaConfig, PaliGemmaForConditionalGeneration

from c2c.errors import ConfigError
from c2c.policy.config import PolicyConfig
from c2c.policy.instructions import InstructionTokenizer

# SDPA takes the boolean 4-D prefix-LM mask directly; "eager" would need an additive float mask.
ATTENTION_IMPLEMENTATION = "sdpa"


def paligemma_config(config: PolicyConfig, vocab_size: int, pad_id: int) -> PaliGemmaConfig:
    """A PaliGemmaConfig from a (non-pretrained) preset's sizes."""
    preset = config.preset
    text = dict(model_type="gemma", vocab_size=vocab_size, pad_token_id=pad_id, **preset.text)
    vision = dict(model_type="siglip_vision_model", image_size=config.image_size, vision_use_head=False,
                  **preset.vision)
    hidden = preset.text["hidden_size"]
    # image_token_index is unused (images are not spliced in through placeholder ids); keep it out of range.
    return PaliGemmaConfig(vision_config=vision, text_config=text, projection_dim=hidden, hidden_size=hidden,
                           vocab_size=vocab_size, image_token_index=vocab_size)


def build_backbone(config: PolicyConfig, vocab_size: int, pad_id: int) -> PaliGemmaForConditionalGeneration:
    """A fresh backbone with random weights, seeded by ``config.seed`` so two builds are identical."""
    if config.preset.pretrained:
        raise ConfigError(f"backbone {config.backbone!r} is pretrained: load it with load_pretrained_backbone")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        return backbone_from_config(paligemma_config(config, vocab_size, pad_id))


def backbone_from_config(hf_config: PaliGemmaConfig | dict[str, Any]) -> PaliGemmaForConditionalGeneration:
    """The architecture of a saved backbone config (random weights, to be overwritten by a checkpoint's)."""
    if isinstance(hf_config, dict):
        hf_config = PaliGemmaConfig.from_dict(hf_config)
    model = PaliGemmaForConditionalGeneration._from_config(hf_config, attn_implementation=ATTENTION_IMPLEMENTATION)
    return model.float()


def load_pretrained_backbone(directory: str | Path) -> PaliGemmaForConditionalGeneration:
    """A pretrained PaliGemma from a local directory (config.json + safetensors), in fp32, never downloading: a
    transformers PaliGemma directory or a LeRobot pi0fast one (``pi0fast.load_pi0fast_backbone``)."""
    from c2c.policy.pi0fast import is_pi0fast_directory, load_pi0fast_backbone

    directory = Path(directory)
    config_path = directory / "config.json"
    if not config_path.is_file():
        raise ConfigError(f"{config_path}: missing (backbone_path must be a local PaliGemma or pi0fast directory)")
    if is_pi0fast_directory(directory):
        return load_pi0fast_backbone(directory)
    model_type = json.loads(config_path.read_text()).get("model_type")
    if model_type != "paligemma":
        raise ConfigError(f"{config_path}: model_type is {model_type!r}, expected 'paligemma' (or a LeRobot "
                          f"pi0fast config, type 'pi0_fast')")
    try:
        model = PaliGemmaForConditionalGeneration.from_pretrained(
            str(directory), local_files_only=True, dtype=torch.float32, attn_implementation=ATTENTION_IMPLEMENTATION)
    except OSError as err:
        raise ConfigError(f"{directory}: cannot load the PaliGemma weights ({str(err).splitlines()[0]})") from None
    return model


def load_pretrained_text_tokenizer(directory: str | Path) -> InstructionTokenizer:
    """The text tokenizer of a pretrained backbone directory: its tokenizer.json, or for a pi0fast directory
    ``pi0fast.load_pi0fast_text_tokenizer`` (the directory, else ``$C2C_TEXT_TOKENIZER``)."""
    from c2c.policy.pi0fast import is_pi0fast_directory, load_pi0fast_text_tokenizer

    if is_pi0fast_directory(directory):
        return load_pi0fast_text_tokenizer(directory)
    return InstructionTokenizer.from_backbone(directory)


def check_backbone_fits(config: PolicyConfig, model: PaliGemmaForConditionalGeneration) -> None:
    """The policy config must agree with the backbone's own image size."""
    vision = model.config.vision_config
    if config.image_size != vision.image_size:
        raise ConfigError(f"image_size: the backbone expects {vision.image_size}-px images, the config says "
                          f"{config.image_size}")
    if vision.image_size % vision.patch_size:
        raise ConfigError(f"the backbone's image size {vision.image_size} is not a multiple of its patch size "
                          f"{vision.patch_size}")


def image_tokens_per_camera(model: PaliGemmaForConditionalGeneration) -> int:
    vision = model.config.vision_config
    return (vision.image_size // vision.patch_size) ** 2


def text_vocab_size(model: PaliGemmaForConditionalGeneration) -> int:
    """The backbone's own vocabulary: its embedding rows (257,152 for pi0-FAST, 257,216 for transformers')."""
    return int(model.get_input_embeddings().weight.shape[0])
