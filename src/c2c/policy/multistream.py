"""The multi-stream backbone of App. C.3: separate VLM, proprioception and action streams with joint attention.

Every decoder layer holds one set of Gemma weights per stream (RMSNorms, Q/K/V/O projections, GeGLU MLP). A token
is processed only by its stream's weights, but attention runs jointly over the tokens of all streams: each
stream's Q/K/V map its own width into one shared head space (heads x head_dim, grouped-query attention), with the
policy's prefix-LM mask (``tokens.attention_mask``) and rotary positions over the whole sequence. Streams may have
different widths (App. C.3: VLM 2048, proprio and action 1024; 18 layers, 8 heads, 1 KV head, head dim 256).

Routing (contiguous runs, in sequence order)::

    vlm:      [image tokens of every camera][instruction]      PaliGemma's vision tower, projector, embed_tokens
    proprio:  [state]                                          the policy's state projection (or state-bin table)
    action:   [begin][plan tokens][exec tokens]                the action stream's own id table (tied LM head)

Embeddings. Each stream embeds only the ids it sees. The VLM stream keeps PaliGemma's text embedding (pretrained
for ``paligemma-3b-multistream``; a fresh backbone's table holds only the instruction vocabulary). The action
stream has its own table over the action ids [action_start, end_id] at its own width, scaled by sqrt(width) as
Gemma's is, and tied to its LM head; the LM head reads the action stream's final hidden states after that stream's
final norm. Because the last prefix token (the state) belongs to the proprio stream, the action stream starts with
a learned begin embedding: its output predicts the first suffix token, and suffix token j's output predicts token
j + 1, as in the single-stream model. Logits of ids outside the action table (text, state bins) are -inf: the
action stream cannot emit them, so the ``full`` loss normalises over the action vocabulary (all levels, both
branches, end).

Weights. :data:`PALIGEMMA_TO_MULTISTREAM` maps every PaliGemma weight to its place in the VLM stream (the LM head,
tied to ``embed_tokens``, has none); the proprio and action streams start fresh (Gemma's initialisation). Outputs
of the VLM and proprio streams are never read, so their last-layer queries, output projections, MLPs and final
norms receive no gradient; they are computed only when asked for (``outputs``) and are frozen in the policy
(``MultiStreamVLA``), which keeps DDP from waiting for their gradients.

Modules: :mod:`c2c.policy.multistream_config` holds the stream names and :class:`MultiStreamConfig`,
:mod:`c2c.policy.multistream_decoder` the per-stream layers and the joint-attention decoder; this module holds the
weight mapping, the backbone and the policy network, and its namespace also offers the names of those two.

Example::

    backbone = multistream_from_paligemma(load_pretrained_backbone(path), preset.streams, vocabulary, seed=0)
    model = MultiStreamVLA(config, backbone, vocabulary, suffix)     # same API as PlanExecuteVLA
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PaliGemmaConfig, PaliGemmaForConditionalGeneration
from transformers.models.gemma.modeling_gemma import GemmaRMSNorm

from c2c.errors import ConfigError
from c2c.policy.backbone import ATTENTION_IMPLEMENTATION, image_tokens_per_camera
from c2c.policy.config import PolicyConfig
from c2c.policy.model import PlanExecuteVLA, Prefix, PrefixInputs, embed_camera_images
from c2c.policy.multistream_config import (  # noqa: F401  (re-exported: c2c.policy.multistream's public names)
    EXPERT_STREAMS,
    MODEL_TYPE,
    OUTPUT_STREAM,
    STREAMS,
    MultiStreamConfig,
    check_streams,
    is_multistream_config,
)
from c2c.policy.multistream_decoder import (  # noqa: F401  (re-exported: c2c.policy.multistream's public names)
    LayerStreams,
    MultiStreamDecoder,
    StreamAttention,
    StreamLayer,
)
from c2c.policy.tokens import (
    SuffixLayout,
    TokenGroup,
    VocabularyLayout,
    attention_mask,
    positions_from_valid,
    state_to_bins,
)

# PaliGemma weight names (transformers' PaliGemmaForConditionalGeneration) -> multi-stream backbone names. Keys ending
# in "." map a whole submodule by prefix; "{i}" is a decoder layer index.
PALIGEMMA_TO_MULTISTREAM: dict[str, str] = {
    "model.vision_tower.": "vision_tower.",
    "model.multi_modal_projector.": "multi_modal_projector.",
    "model.language_model.embed_tokens.weight": "embed_tokens.weight",
    "model.language_model.layers.{i}.input_layernorm.weight": "decoder.layers.{i}.vlm.input_layernorm.weight",
    "model.language_model.layers.{i}.self_attn.q_proj.weight": "decoder.layers.{i}.vlm.self_attn.q_proj.weight",
    "model.language_model.layers.{i}.self_attn.k_proj.weight": "decoder.layers.{i}.vlm.self_attn.k_proj.weight",
    "model.language_model.layers.{i}.self_attn.v_proj.weight": "decoder.layers.{i}.vlm.self_attn.v_proj.weight",
    "model.language_model.layers.{i}.self_attn.o_proj.weight": "decoder.layers.{i}.vlm.self_attn.o_proj.weight",
    "model.language_model.layers.{i}.self_attn.q_proj.bias": "decoder.layers.{i}.vlm.self_attn.q_proj.bias",
    "model.language_model.layers.{i}.self_attn.k_proj.bias": "decoder.layers.{i}.vlm.self_attn.k_proj.bias",
    "model.language_model.layers.{i}.self_attn.v_proj.bias": "decoder.layers.{i}.vlm.self_attn.v_proj.bias",
    "model.language_model.layers.{i}.self_attn.o_proj.bias": "decoder.layers.{i}.vlm.self_attn.o_proj.bias",
    "model.language_model.layers.{i}.post_attention_layernorm.weight":
        "decoder.layers.{i}.vlm.post_attention_layernorm.weight",
    "model.language_model.layers.{i}.mlp.gate_proj.weight": "decoder.layers.{i}.vlm.mlp.gate_proj.weight",
    "model.language_model.layers.{i}.mlp.up_proj.weight": "decoder.layers.{i}.vlm.mlp.up_proj.weight",
    "model.language_model.layers.{i}.mlp.down_proj.weight": "decoder.layers.{i}.vlm.mlp.down_proj.weight",
    "model.language_model.norm.weight": "decoder.norms.vlm.weight",
}
PALIGEMMA_UNMAPPED = ("lm_head.weight",)  # tied to embed_tokens; the action stream has its own LM head


def _mapping_rules() -> list[tuple[re.Pattern[str], str]]:
    rules = []
    for source, target in PALIGEMMA_TO_MULTISTREAM.items():
        pattern = re.escape(source).replace(re.escape("{i}"), r"(?P<i>\d+)")
        pattern = pattern + "(?P<rest>.*)" if source.endswith(".") else pattern
        rules.append((re.compile(f"^{pattern}$"), target))
    return rules


_RULES = _mapping_rules()


def paligemma_to_multistream_name(name: str) -> str | None:
    """The multi-stream backbone name of a PaliGemma weight (None: it has no place there)."""
    for pattern, target in _RULES:
        match = pattern.match(name)
        if match:
            mapped = target.replace("{i}", match.group("i")) if "{i}" in target else target
            return mapped + (match.groupdict().get("rest") or "")
    return None


# --- backbone ----------------------------------------------------------------------------------------------------
class MultiStreamBackbone(nn.Module):
    """PaliGemma's vision tower, projector and text embedding, the multi-stream decoder, the action stream's id
    table (tied LM head) and its begin embedding."""

    def __init__(self, config: MultiStreamConfig) -> None:
        super().__init__()
        self.config = config
        shell_config = config.paligemma.to_dict()
        shell_config["text_config"] = {**shell_config["text_config"], "num_hidden_layers": 0}
        # A layer-less PaliGemma builds the vision tower, projector and embedding exactly as the single-stream one.
        shell = PaliGemmaForConditionalGeneration._from_config(PaliGemmaConfig.from_dict(shell_config),
                                                               attn_implementation=ATTENTION_IMPLEMENTATION).float()
        self.vision_tower = shell.model.vision_tower
        self.multi_modal_projector = shell.model.multi_modal_projector
        self.embed_tokens = shell.model.language_model.embed_tokens
        self.decoder = MultiStreamDecoder(config)
        width = config.stream_sizes()[OUTPUT_STREAM][0]
        self.action_embedding = nn.Parameter(torch.empty(config.action_rows, width))  # (ids, D_action)
        self.action_begin = nn.Parameter(torch.empty(width))  # (D_action,)
        self.action_scale = float(width) ** 0.5  # Gemma scales embeddings by sqrt(width)
        self.reset_streams()

    def reset_streams(self, streams: Collection[str] = STREAMS) -> None:
        """Gemma's initialisation of the decoder weights of ``streams`` (and of the action table and begin token):
        linear weights N(0, initializer_range), biases 0, RMSNorm scales 0 (the norm multiplies by 1 + scale)."""
        std = float(self.config.text_config.initializer_range)
        modules = [layer[name] for layer in self.decoder.layers for name in streams]
        modules += [self.decoder.norms[name] for name in streams]
        for root in modules:
            for module in root.modules():
                if isinstance(module, nn.Linear):
                    nn.init.normal_(module.weight, std=std)
                    if module.bias is not None:
                        nn.init.zeros_(module.bias)
                elif isinstance(module, GemmaRMSNorm):
                    nn.init.zeros_(module.weight)
        if OUTPUT_STREAM in streams:
            nn.init.normal_(self.action_embedding, std=std)
            nn.init.normal_(self.action_begin, std=std)

    def embed_action_ids(self, ids: torch.Tensor) -> torch.Tensor:
        """(B, t) action ids -> (B, t, D_action) action-stream embeddings."""
        return F.embedding(ids - self.config.action_start, self.action_embedding) * self.action_scale


def multistream_from_paligemma(paligemma: PaliGemmaForConditionalGeneration, streams: dict[str, dict[str, int]],
                               vocabulary: VocabularyLayout, seed: int = 0) -> MultiStreamBackbone:
    """A multi-stream backbone whose vision tower, projector, text embedding and VLM stream are ``paligemma``'s
    weights (:data:`PALIGEMMA_TO_MULTISTREAM`); the proprio and action streams are fresh, seeded by ``seed``."""
    config = MultiStreamConfig(paligemma.config, streams, vocabulary.action_start,
                               vocabulary.end_id + 1 - vocabulary.action_start)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        backbone = MultiStreamBackbone(config)
    load_paligemma_weights(backbone, paligemma)
    return backbone


_FRESH = re.compile(r"^(decoder\.layers\.\d+\.(proprio|action)\.|decoder\.norms\.(proprio|action)\.|action_)")


def load_paligemma_weights(backbone: MultiStreamBackbone, paligemma: PaliGemmaForConditionalGeneration) -> None:
    """Put every PaliGemma weight in its multi-stream place (the tensors are shared, not copied)."""
    mapped: dict[str, torch.Tensor] = {}
    for name, tensor in paligemma.state_dict().items():
        target = paligemma_to_multistream_name(name)
        if target is None:
            if name in PALIGEMMA_UNMAPPED:
                continue
            raise ConfigError(f"PaliGemma weight {name!r} has no place in the multi-stream backbone")
        mapped[target] = tensor
    try:
        result = backbone.load_state_dict(mapped, strict=False, assign=True)
    except RuntimeError as err:
        raise ConfigError(f"PaliGemma weights do not fit the multi-stream backbone "
                          f"({str(err).splitlines()[-1].strip()})") from None
    if result.unexpected_keys:
        raise ConfigError(f"PaliGemma weights {result.unexpected_keys[:3]} have no multi-stream parameter")
    vlm_side = [key for key in result.missing_keys if not _FRESH.match(key)]
    if vlm_side:
        raise ConfigError(f"the PaliGemma has no weights for {vlm_side[:3]}")


def load_multistream_backbone(directory: str, streams: dict[str, dict[str, int]], vocabulary: VocabularyLayout,
                              seed: int = 0) -> MultiStreamBackbone:
    """A multi-stream backbone with the VLM stream from a local PaliGemma directory (never downloading)."""
    from c2c.policy.backbone import load_pretrained_backbone

    return multistream_from_paligemma(load_pretrained_backbone(directory), streams, vocabulary, seed)


def multistream_from_config(data: dict[str, Any]) -> MultiStreamBackbone:
    """The architecture of a saved multi-stream backbone config (random weights, to be overwritten)."""
    return MultiStreamBackbone(MultiStreamConfig.from_dict(data))


# --- the policy network ------------------------------------------------------------------------------------------
@dataclass
class StreamInputs:
    """Consecutive runs of embedded tokens, each in one stream: [(stream, (B, n, D_stream)), ...]."""

    runs: list[tuple[str, torch.Tensor]]


@dataclass
class MultiStreamPrefix(Prefix):
    """The prefix (VLM and proprio runs) plus the action stream's begin token, whose output predicts suffix token 0."""

    embeds: StreamInputs  # type: ignore[assignment]


class MultiStreamVLA(PlanExecuteVLA):
    """PlanExecuteVLA on the multi-stream backbone (App. C.3): same inputs, loss, metrics and decoding API.

    ``decoder`` returns the action stream's hidden states only (the LM head reads nothing else); a plain tensor
    passed to it is a run of action-stream tokens (what a cached decoding step feeds).
    """

    def __init__(self, config: PolicyConfig, backbone: MultiStreamBackbone, vocabulary: VocabularyLayout,
                 suffix: SuffixLayout) -> None:
        nn.Module.__init__(self)
        expected = (vocabulary.action_start, vocabulary.end_id + 1 - vocabulary.action_start)
        found = (backbone.config.action_start, backbone.config.action_rows)
        if found != expected:
            raise ConfigError(f"the backbone's action ids (start, rows) {found} do not match the vocabulary's "
                              f"{expected}")
        self.config = config
        self.backbone = backbone
        self.vocabulary = vocabulary
        self.suffix = suffix
        sizes = backbone.config.stream_sizes()
        self.hidden_size = sizes["vlm"][0]
        self.proprio_size = sizes["proprio"][0]
        self.image_tokens = image_tokens_per_camera(backbone)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed + 1)
            self.state_projection = (nn.Linear(config.state_dim, self.proprio_size)
                                     if config.state_encoding == "projection" else None)
            self.state_embedding = (nn.Embedding(config.state_bins, self.proprio_size)
                                    if config.state_encoding == "bins" else None)
        for parameter in backbone.decoder.unread_parameters((OUTPUT_STREAM,)):
            parameter.requires_grad_(False)

    # --- parts -------------------------------------------------------------------------------------------------
    @property
    def language_model(self) -> nn.Module:
        return self.backbone.decoder

    @property
    def dtype(self) -> torch.dtype:
        return self.backbone.embed_tokens.weight.dtype

    def embed_ids(self, ids: torch.Tensor) -> torch.Tensor:
        """(B, t) suffix ids -> (B, t, D_action): the action stream's embedding."""
        return self.backbone.embed_action_ids(ids)

    def embed_images(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, C, 3, H, W) -> (B, C * P_img, D_vlm): every camera through the same SigLIP tower and projector."""
        return embed_camera_images(self.backbone.vision_tower, self.backbone.multi_modal_projector,
                                   pixels.to(self.dtype), self.image_tokens, self.hidden_size)

    def embed_state(self, state: torch.Tensor) -> torch.Tensor:
        """(B, S) normalised state -> (B, 1 or S, D_proprio): the proprio stream's input."""
        if self.state_projection is not None:
            return self.state_projection(state.to(self.state_projection.weight.dtype))[:, None]
        bins = state_to_bins(state, self.config.state_bins)  # (B, S)
        return self.state_embedding(bins) * self.proprio_size ** 0.5

    def embed_prefix(self, inputs: PrefixInputs) -> MultiStreamPrefix:
        images = self.embed_images(inputs.pixels)  # (B, C P_img, D_vlm)
        text = self.backbone.embed_tokens(inputs.instruction_ids)  # (B, L, D_vlm)
        state = self.embed_state(inputs.state).to(text.dtype)  # (B, 1 or S, D_proprio)
        batch = inputs.batch_size
        begin = self.backbone.action_begin.to(text.dtype).expand(batch, 1, -1)  # (B, 1, D_action)
        groups = [TokenGroup(f"image.{camera}", self.image_tokens, causal=False) for camera in self.config.cameras]
        groups += [TokenGroup("instruction", text.shape[1], causal=False), TokenGroup("state", state.shape[1], False),
                   TokenGroup("action.begin", 1, causal=True)]
        ones = torch.ones(batch, images.shape[1], dtype=torch.bool, device=text.device)
        valid = torch.cat([ones, inputs.instruction_mask.bool(), ones[:, :state.shape[1] + 1]], dim=1)  # (B, P + 1)
        runs = [("vlm", torch.cat([images.to(text.dtype), text], dim=1)), ("proprio", state), (OUTPUT_STREAM, begin)]
        return MultiStreamPrefix(StreamInputs(runs), valid, groups)

    def decoder(self, embeds: StreamInputs | torch.Tensor, mask: torch.Tensor, positions: torch.Tensor,
                cache=None) -> torch.Tensor:
        """Runs (or a (B, q, D_action) action run) with a (B, 1, q, k) mask -> (B, q_action, D_action) hidden
        states of the action-stream tokens, after the action stream's final norm."""
        runs = embeds.runs if isinstance(embeds, StreamInputs) else [(OUTPUT_STREAM, embeds)]
        outputs = self.backbone.decoder(runs, mask, positions, cache=cache, outputs=(OUTPUT_STREAM,))
        return torch.cat([states for states in outputs if states is not None], dim=1)

    def logits(self, hidden: torch.Tensor, low: int = 0, high: int | None = None) -> torch.Tensor:
        """(B, t, D_action) -> (B, t, high - low) logits of ids [low, high) from the action stream's tied table;
        ids outside it (text, state bins) get -inf."""
        high = self.vocabulary.total if high is None else high
        start = self.backbone.config.action_start
        stop = start + self.backbone.config.action_rows
        first = max(low, start)
        last = max(min(high, stop), first)
        logits = F.linear(hidden, self.backbone.action_embedding[first - start:last - start])
        if first > low or last < high:
            logits = F.pad(logits, (first - low, high - last), value=float("-inf"))
        return logits

    # --- full sequence -----------------------------------------------------------------------------------------
    def hidden_states(self, inputs: PrefixInputs, suffix_inputs: torch.Tensor) -> tuple[torch.Tensor, int]:
        """Action-stream hidden states of [begin, suffix_inputs] with the prefix-LM mask: ((B, 1 + t, D_action), 1),
        so that ``hidden[:, 1 - 1:]`` predicts suffix tokens 0..t as in the single-stream model."""
        prefix = self.embed_prefix(inputs)
        batch, length = suffix_inputs.shape
        runs = list(prefix.embeds.runs)
        name, begin = runs[-1]
        runs[-1] = (name, torch.cat([begin, self.embed_ids(suffix_inputs).to(begin.dtype)], dim=1))
        valid = torch.cat([prefix.valid, prefix.valid.new_ones(batch, length)], dim=1)  # (B, P + 1 + t)
        groups = prefix.groups + [TokenGroup("suffix", length, causal=True)]
        hidden = self.decoder(StreamInputs(runs), attention_mask(groups, valid), positions_from_valid(valid))
        return hidden, 1
