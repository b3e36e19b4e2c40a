"""Policy configuration: the four variants the paper compares and the backbone presets, in one place.

A variant is a config value, not a copied file: ``plan`` (Coarse-to-Control, Hp = 160), ``plan-hp40`` (Hp = 40),
``noplan`` (Faster-AR, no plan branch) and ``separate`` (plan and exec from two tokenizers with disjoint
vocabularies) all train and decode through the same model. Two baselines share that model's backbone, training,
checkpoints, evaluation and serving: ``regress`` (a continuous chunk head trained with L1, ACT-style; ``regress.py``)
and ``binning`` (exec tokens of a 256-bin-per-dimension binning tokenizer, RT-2 / OpenVLA's representation).

Backbone presets (:data:`PRESETS`; the measurements that chose their sizes: docs/results/backbone-presets.md):

``tiny``: a PaliGemma-architecture model trained from scratch on two CPU cores (vision 128 wide x 2 layers, patch
    12 -> an 8 x 8 token grid per camera; Gemma 192 wide x 4 layers), fp32.

``nano``: the budget of ``c2c run --preset quick`` (minutes, not hours); trains with the softmax over each suffix
    position's valid ids (``loss_vocabulary``).

``nano-conv``: nano with ``vision.ConvVisionTower`` (four convolutions and a patchify convolution to the same 4 x 4
    grid) instead of the ViT, for a stronger spatial prior when training from scratch (not better on the quick
    preset, which keeps nano).

``debug``: two 32-wide layers on 16-px images, for tests and smoke runs only.

Multi-stream presets (App. C.3; ``multistream.py``): separate VLM, proprioception and action streams, each with its
own weights in every layer, attending jointly in one head space. ``text`` sizes the VLM stream and the head space,
``streams`` the proprio and action streams.

``tiny-multistream``: nano's vision tower, a 128-wide VLM stream and 64-wide proprio / action streams (half the
    VLM width, as in C.3), 4 layers, 2 heads x 64, 1 KV head: nano's parameter count at a little less than its cost.

``debug-multistream``: the debug sizes with 16-wide proprio and action streams (tests, smoke runs).

``paligemma-3b-multistream``: C.3's model: PaliGemma-3B's weights as the VLM stream (2048 wide, 18 layers, 8 heads,
    1 KV head, head dim 256; from ``backbone_path``) and fresh 1024-wide proprio and action streams (MLP 4096, as
    pi0's Gemma-300M action expert; C.3 gives no MLP size). C.3 initialises all streams from pi0-FAST; here only the
    VLM stream is pretrained (``backbone_path``: a PaliGemma or a LeRobot pi0fast directory, ``pi0fast.py``).

``paligemma-3b``: the paper's backbone (SigLIP-So400m/14 at 224 px + Gemma-2B: 18 layers, width 2048, 8 heads,
    1 KV head, head dim 256), loaded with its real weights and text tokenizer from ``backbone_path``: a transformers
    PaliGemma directory or a LeRobot pi0fast one (pi0-FAST's PaliGemma, ``pi0fast.py``); nothing is downloaded.

Example::

    config = policy_config("tiny", variant="plan", cameras=("corner2", "gripperPOV"), state_dim=4, action_dim=4)
    config.plan_horizon        # 160
    config.tokenizer_variants  # ('joint',)
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass
from typing import Any

from c2c.errors import ConfigError


@dataclass(frozen=True)
class VariantSpec:
    """What a policy variant changes: the plan's source horizon and the tokenizer it needs."""

    plan_horizon: int  # Hp: source steps the coarse plan summarises (0: no plan branch)
    tokenizer_variants: tuple[str, ...]  # RVQTokenizer.variant values this policy accepts
    description: str


VARIANTS: dict[str, VariantSpec] = {
    "plan": VariantSpec(160, ("joint",), "Coarse-to-Control: plan (Hp=160) then exec, joint tokenizer"),
    "plan-hp40": VariantSpec(40, ("joint",), "plan from a 40-step window (ablation), joint tokenizer"),
    # A joint tokenizer's exec mode also serves: that is the paper's Hp = 0 ablation row.
    "noplan": VariantSpec(0, ("exec-only", "joint"), "Faster-AR: exec tokens only (Hp=0)"),
    "separate": VariantSpec(160, ("separate",), "plan then exec from two tokenizers with disjoint vocabularies"),
    # Baselines on the same backbone, training, checkpoints, evaluation and serving. "continuous": no tokenizer, only
    # the dataset's q01/q99 statistics (regress.ContinuousActions); "binning": a BinningTokenizer (256 bins per dim).
    "regress": VariantSpec(0, ("continuous",), "continuous (He, A) chunk read out of He learned queries, L1 loss "
                           "(ACT-style); no tokenizer"),
    "binning": VariantSpec(0, ("binning",), "exec tokens of a binning tokenizer, He x A tokens of 256 bins "
                           "(RT-2 / OpenVLA)"),
    # "fast": a FastTokenizer (DCT + BPE); variable length up to its longest fitted sequence, then the end token.
    "fast": VariantSpec(0, ("fast",), "exec tokens of a FAST tokenizer (pi0-FAST: DCT + BPE), variable length up "
                        "to a cap, closed by the end token"),
}
TOKEN_ORDERS = ("codebook-major", "latent-major")
STATE_ENCODINGS = ("projection", "bins")
LOSS_VOCABULARIES = ("full", "valid")


@dataclass(frozen=True)
class BackbonePreset:
    """Architecture of a PaliGemma-style backbone (transformers SiglipVisionConfig / GemmaConfig arguments)."""

    name: str
    vision: dict[str, Any]  # SiglipVisionConfig arguments (image_size comes from PolicyConfig.image_size)
    text: dict[str, Any]  # GemmaConfig arguments (vocab_size comes from the vocabulary layout)
    image_size: int  # default square image side, pixels
    max_instruction_tokens: int  # default instruction length (padded / truncated)
    pretrained: bool  # True: weights and text tokenizer are loaded from PolicyConfig.backbone_path
    description: str
    loss_vocabulary: str = "full"  # default PolicyConfig.loss_vocabulary of this preset
    # Multi-stream decoder (App. C.3): hidden_size / intermediate_size of the proprio and action streams; ``text``
    # then describes the VLM stream and the shared attention head space. None: one Gemma decoder for all tokens.
    streams: dict[str, dict[str, int]] | None = None
    # "siglip": transformers' SigLIP ViT (``vision`` sizes it); "conv": ``vision.ConvVisionTower`` with the same
    # token grid and width (a from-scratch option for CPU-scale single-stream presets).
    vision_encoder: str = "siglip"

    @property
    def multistream(self) -> bool:
        return self.streams is not None


def vit(width: int, mlp: int, layers: int, heads: int, patch: int) -> dict[str, int]:
    """A SigLIP vision tower's sizes (BackbonePreset.vision)."""
    return dict(hidden_size=width, intermediate_size=mlp, num_hidden_layers=layers, num_attention_heads=heads,
                patch_size=patch)


def gemma(width: int, mlp: int, layers: int, heads: int, kv_heads: int, head_dim: int) -> dict[str, int]:
    """A Gemma decoder's sizes (BackbonePreset.text)."""
    return dict(hidden_size=width, intermediate_size=mlp, num_hidden_layers=layers, num_attention_heads=heads,
                num_key_value_heads=kv_heads, head_dim=head_dim)


def side_streams(width: int, mlp: int) -> dict[str, dict[str, int]]:
    """Proprio and action streams of one size (BackbonePreset.streams)."""
    return {name: dict(hidden_size=width, intermediate_size=mlp) for name in ("proprio", "action")}


NANO = BackbonePreset(
    name="nano", vision=vit(96, 384, 2, 2, 24), text=gemma(128, 512, 3, 2, 1, 64), image_size=96,
    max_instruction_tokens=12, pretrained=False,
    description="the quick pipeline's model: 2.7 M parameters, about 5x cheaper to train than tiny",
    loss_vocabulary="valid",
)
DEBUG = BackbonePreset(
    name="debug", vision=vit(32, 64, 1, 2, 8), text=gemma(32, 64, 2, 2, 1, 16), image_size=16,
    max_instruction_tokens=8, pretrained=False,
    description="a few-thousand-parameter model for tests and smoke runs; learns nothing useful",
)
PALIGEMMA_3B = BackbonePreset(
    name="paligemma-3b", vision=vit(1152, 4304, 27, 16, 14), text=gemma(2048, 16384, 18, 8, 1, 256), image_size=224,
    max_instruction_tokens=48, pretrained=True,
    description="the paper's PaliGemma-3B (SigLIP-So400m/14 + Gemma-2B), real weights from backbone_path",
)

PRESETS: dict[str, BackbonePreset] = {
    preset.name: preset
    for preset in (
        BackbonePreset(
            name="tiny", vision=vit(128, 512, 2, 2, 12), text=gemma(192, 768, 4, 3, 1, 64), image_size=96,
            max_instruction_tokens=24, pretrained=False,
            description="from scratch on 2 CPU cores (5 M parameters; sizes measured: "
                        "docs/results/backbone-presets.md)",
        ),
        NANO,
        dataclasses.replace(NANO, name="nano-conv", vision_encoder="conv",
                            description="nano with a convolutional image encoder instead of the ViT (same 4 x 4 "
                            "token grid)"),
        dataclasses.replace(NANO, name="nano-keypoints", vision_encoder="keypoints",
                            description="nano with a spatial-softmax keypoint image encoder instead of the ViT (as "
                            "many tokens as nano's patch grid)"),
        # No transformer: cnn.CNNRegressVLA, variant regress only. vision: each camera's trunk (four stride-2
        # convolutions of these channels; patch_size is their overall stride, which the image side must be a multiple
        # of) and its spatial-softmax keypoints; text: the MLP head's width and the state / instruction embeddings'.
        BackbonePreset(
            name="cnn",
            vision=dict(channels=(16, 32, 64, 64), keypoints=32, patch_size=16),
            text=dict(hidden_size=256, embedding_size=64),
            image_size=96,
            max_instruction_tokens=12,
            pretrained=False,
            description="a plain CNN chunk regressor for --variant regress (cnn.py): conv trunk per camera, state, "
                        "instruction embedding, MLP; no transformer",
            vision_encoder="cnn",
        ),
        DEBUG,
        PALIGEMMA_3B,
        # Nano's vision tower, a 4-layer VLM stream.
        dataclasses.replace(NANO, name="tiny-multistream", text=gemma(128, 512, 4, 2, 1, 64),
                            description="nano's vision tower with VLM (128 wide) / proprio and action (64 wide) "
                            "streams (App. C.3)",
                            streams=side_streams(64, 256)),
        dataclasses.replace(DEBUG, name="debug-multistream",
                            description="the debug preset with 16-wide proprio and action streams, for tests and "
                            "smoke runs",
                            streams=side_streams(16, 32)),
        # pi0's Gemma-300M action expert: width 1024, MLP 4096 (C.3 gives the width, not the MLP size).
        dataclasses.replace(PALIGEMMA_3B, name="paligemma-3b-multistream",
                            description="App. C.3's model: PaliGemma-3B as the VLM stream (weights from "
                            "backbone_path) + 1024-wide proprio and action streams",
                            streams=side_streams(1024, 4096)),
    )
}


def _unknown(kind: str, name: str, known) -> ConfigError:
    close = difflib.get_close_matches(str(name), list(known), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return ConfigError(f"unknown {kind} {name!r} (known: {', '.join(known)}){hint}")


def get_preset(name: str) -> BackbonePreset:
    """A backbone preset by name, with a "did you mean" on typos."""
    if name not in PRESETS:
        raise _unknown("backbone preset", name, PRESETS)
    return PRESETS[name]


@dataclass(frozen=True)
class PolicyConfig:
    """Everything that fixes a policy's architecture and its default inference behaviour."""

    variant: str = "plan"  # plan | plan-hp40 | noplan | separate | regress | binning (see VARIANTS)
    cameras: tuple[str, ...] = ("corner2", "gripperPOV")  # camera names, primary first; keys observation.images.<cam>
    image_size: int = 96  # square uint8 images of exactly this side are expected (no silent resizing)
    state_dim: int = 4  # proprio state S
    action_dim: int = 4  # action A (must equal the action tokenizer's)
    exec_horizon: int = 20  # He: executable steps per chunk (paper B.3)
    plan_steps: int = 20  # K: coarse plan steps (paper B.3)
    token_order: str = "codebook-major"  # codebook-major: all level-1 tokens of a branch, then level 2, ...
    backbone: str = "tiny"  # backbone preset name (PRESETS)
    backbone_path: str | None = None  # local PaliGemma or LeRobot pi0fast directory (pretrained presets only)
    max_instruction_tokens: int = 24  # instruction tokens in the prefix (padded / truncated)
    state_encoding: str = "projection"  # projection: one learned prefix embedding; bins: S tokens of 256 bins
    state_bins: int = 256  # bins per state dimension when state_encoding == "bins" (pi0-FAST uses 256)
    loss_vocabulary: str = "full"  # full: Eq. 9's softmax over the vocabulary; valid: over each position's valid ids
    replan_every: int = 20  # select_action: actions executed from a chunk before a new one is predicted
    plan_reuse: int = 1  # consecutive chunks that share one generated plan (1: a fresh plan every chunk)
    temperature: float = 0.0  # decoding temperature; 0 is greedy
    top_k: int = 0  # sample among the k most likely valid ids (0: all valid ids)
    seed: int = 0  # initialisation seed of the fresh (not pretrained) weights

    def __post_init__(self) -> None:
        object.__setattr__(self, "cameras", tuple(self.cameras))
        if self.variant not in VARIANTS:
            raise _unknown("variant", self.variant, VARIANTS)
        if self.token_order not in TOKEN_ORDERS:
            raise _unknown("token_order", self.token_order, TOKEN_ORDERS)
        if self.state_encoding not in STATE_ENCODINGS:
            raise _unknown("state_encoding", self.state_encoding, STATE_ENCODINGS)
        if self.loss_vocabulary not in LOSS_VOCABULARIES:
            raise _unknown("loss_vocabulary", self.loss_vocabulary, LOSS_VOCABULARIES)
        preset = get_preset(self.backbone)
        if not self.cameras or len(set(self.cameras)) != len(self.cameras) or not all(self.cameras):
            raise ConfigError(f"cameras must be distinct non-empty names, got {list(self.cameras)}")
        for name in ("state_dim", "action_dim", "exec_horizon", "plan_steps", "max_instruction_tokens",
                     "replan_every", "plan_reuse", "state_bins"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.replan_every > self.exec_horizon:
            raise ConfigError(f"replan_every ({self.replan_every}) must be <= exec_horizon ({self.exec_horizon})")
        if self.plan_horizon and self.plan_horizon % self.plan_steps:
            raise ConfigError(f"plan_steps ({self.plan_steps}) must divide the {self.variant!r} plan horizon "
                              f"{self.plan_horizon}")
        if self.continuous and preset.multistream:
            raise ConfigError(f"variant {self.variant!r} has no multi-stream form; use a single-stream preset instead "
                              f"of {preset.name!r}")
        if preset.vision_encoder == "cnn" and self.variant != "regress":
            raise ConfigError(f"backbone {preset.name!r} regresses the action chunk and serves variant 'regress' only, "
                              f"not {self.variant!r}: use --variant regress, or a transformer backbone (nano, tiny)")
        if preset.pretrained and not self.backbone_path:
            raise ConfigError(f"backbone_path must name a local directory for the pretrained {preset.name!r} backbone")
        # A pretrained backbone's sizes come from its directory and are checked when it is loaded.
        patch = preset.vision["patch_size"]
        if not preset.pretrained and self.image_size % patch:
            raise ConfigError(f"image_size {self.image_size} is not a multiple of the {preset.name!r} patch size "
                              f"{patch}")
        if self.temperature < 0 or self.top_k < 0:
            raise ConfigError(f"temperature and top_k must be >= 0, got {self.temperature} and {self.top_k}")

    # --- derived -------------------------------------------------------------------------------------------
    @property
    def plan_horizon(self) -> int:
        """Hp of the variant (0: no plan branch)."""
        return VARIANTS[self.variant].plan_horizon

    @property
    def has_plan(self) -> bool:
        return self.plan_horizon > 0

    @property
    def tokenizer_variants(self) -> tuple[str, ...]:
        return VARIANTS[self.variant].tokenizer_variants

    @property
    def continuous(self) -> bool:
        """True for ``regress``: a continuous chunk head instead of action tokens."""
        return self.tokenizer_variants == ("continuous",)

    @property
    def preset(self) -> BackbonePreset:
        return get_preset(self.backbone)

    # --- serialisation -------------------------------------------------------------------------------------
    def replace(self, **changes: Any) -> PolicyConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["cameras"] = list(self.cameras)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PolicyConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown policy config keys {unknown} (known: {', '.join(sorted(known))})")
        return cls(**data)


def policy_config(preset: str = "tiny", **overrides: Any) -> PolicyConfig:
    """A PolicyConfig with a backbone preset's defaults (image size, instruction length) and any overrides."""
    chosen = get_preset(preset)
    values: dict[str, Any] = {"backbone": chosen.name, "image_size": chosen.image_size,
                              "max_instruction_tokens": chosen.max_instruction_tokens,
                              "loss_vocabulary": chosen.loss_vocabulary}
    values.update(overrides)
    known = {f.name for f in dataclasses.fields(PolicyConfig)}
    for key in values:
        if key not in known:
            raise _unknown("policy config field", key, sorted(known))
    return PolicyConfig(**values)
