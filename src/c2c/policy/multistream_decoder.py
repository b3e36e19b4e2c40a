"""The decoder of the multi-stream backbone (App. C.3, ``multistream.py``): Gemma-style layers with one set of
weights per stream and joint attention over the tokens of all streams.

Each stream's Q/K/V map its own width into one shared head space (heads x head_dim, grouped-query attention) and its
output projection maps back; rotary positions run over the whole sequence and one KV-cache layer per decoder layer
holds the keys and values of every stream's tokens.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from types import SimpleNamespace
from typing import Any

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from torch import nn
from transformers.models.gemma.modeling_gemma import GemmaMLP, GemmaRMSNorm, GemmaRotaryEmbedding, rotate_half

from c2c.errors import ConfigError
from c2c.policy.multistream_config import STREAMS, MultiStreamConfig


class StreamAttention(nn.Module):
    """One stream's Q/K/V (its width -> the shared head space) and output (head space -> its width) projections."""

    def __init__(self, hidden: int, heads: int, kv_heads: int, head_dim: int, bias: bool) -> None:
        super().__init__()
        self.q_proj = nn.Linear(hidden, heads * head_dim, bias=bias)
        self.k_proj = nn.Linear(hidden, kv_heads * head_dim, bias=bias)
        self.v_proj = nn.Linear(hidden, kv_heads * head_dim, bias=bias)
        self.o_proj = nn.Linear(heads * head_dim, hidden, bias=bias)


class StreamLayer(nn.Module):
    """One stream's weights in one decoder layer, named as in Gemma's decoder layer."""

    def __init__(self, text: Any, hidden: int, intermediate: int) -> None:
        super().__init__()
        head_dim = int(getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads)
        self.input_layernorm = GemmaRMSNorm(hidden, eps=text.rms_norm_eps)
        self.self_attn = StreamAttention(hidden, text.num_attention_heads, text.num_key_value_heads, head_dim,
                                         bool(text.attention_bias))
        self.post_attention_layernorm = GemmaRMSNorm(hidden, eps=text.rms_norm_eps)
        self.mlp = GemmaMLP(SimpleNamespace(hidden_size=hidden, intermediate_size=intermediate,
                                            hidden_act=text.hidden_act))


class LayerStreams(nn.ModuleDict):
    """One decoder layer: every stream's ``StreamLayer`` by name, attending jointly (a ModuleDict, so the weight
    names stay ``layers.<i>.<stream>....``). Its ``forward`` makes it a unit that FSDP can shard and that gradient
    checkpointing recomputes (inside the module call, so FSDP's hooks are not run twice)."""

    def __init__(self, layers: dict[str, StreamLayer], heads: int, kv_heads: int, head_dim: int) -> None:
        super().__init__(layers)
        self.num_heads, self.num_kv_heads, self.head_dim = heads, kv_heads, head_dim
        self.checkpoint_layers = False  # recompute this layer in the backward pass (--gradient-checkpointing)

    def forward(self, *args: Any) -> list[torch.Tensor | None]:
        if self.checkpoint_layers and self.training and torch.is_grad_enabled():
            return torch.utils.checkpoint.checkpoint(self._compute, *args, use_reentrant=False)
        return self._compute(*args)

    def _compute(self, index: int, names: list[str], hidden: list[torch.Tensor | None], active: list[bool],
                 lengths: list[int], starts: list[int], cos: torch.Tensor, sin: torch.Tensor, mask: torch.Tensor,
                 positions: torch.Tensor, cache: Any) -> list[torch.Tensor | None]:
        """One decoder layer over every run (attention across all streams' tokens, then per-stream MLPs)."""
        hidden = list(hidden)
        batch, total = hidden[0].shape[0], sum(lengths)
        queries, keys, values = [], [], []
        for name, states, is_active in zip(names, hidden, active, strict=True):
            block = self[name]
            normed = block.input_layernorm(states)
            keys.append(block.self_attn.k_proj(normed))
            values.append(block.self_attn.v_proj(normed))
            if is_active:
                queries.append(block.self_attn.q_proj(normed))
        rows = None if all(active) else torch.cat([
            torch.arange(start, start + length, device=positions.device)
            for start, length, is_active in zip(starts, lengths, active, strict=True) if is_active])
        key = torch.cat(keys, dim=1).view(batch, total, self.num_kv_heads, self.head_dim).transpose(1, 2)
        value = torch.cat(values, dim=1).view(batch, total, self.num_kv_heads, self.head_dim).transpose(1, 2)
        query = torch.cat(queries, dim=1)
        query = query.view(batch, query.shape[1], self.num_heads, self.head_dim).transpose(1, 2)
        key = _rotate(key, cos, sin)
        query = _rotate(query, cos, sin) if rows is None else _rotate(query, cos[:, rows], sin[:, rows])
        if cache is not None:
            key, value = cache.update(key, value, index)
        layer_mask = mask if rows is None else mask[:, :, rows]
        attended = F.scaled_dot_product_attention(query, key, value, attn_mask=layer_mask,
                                                  scale=self.head_dim ** -0.5,
                                                  enable_gqa=self.num_heads != self.num_kv_heads)
        attended = attended.transpose(1, 2).reshape(batch, query.shape[2], self.num_heads * self.head_dim)
        offset = 0
        for run, (name, is_active) in enumerate(zip(names, active, strict=True)):
            if not is_active:
                hidden[run] = None
                continue
            block, length = self[name], lengths[run]
            states = hidden[run] + block.self_attn.o_proj(attended[:, offset:offset + length])
            hidden[run] = states + block.mlp(block.post_attention_layernorm(states))
            offset += length
        return hidden


class MultiStreamDecoder(nn.Module):
    """Gemma-style decoder layers with per-stream weights and joint attention over all streams' tokens (App. C.3).

    ``config`` is the VLM stream's GemmaConfig (what ``DynamicCache(config=...)`` reads): one cache layer per
    decoder layer holds the keys and values of every stream's tokens.
    """

    def __init__(self, config: MultiStreamConfig) -> None:
        super().__init__()
        text = config.text_config
        self.config = text
        self.num_heads = int(text.num_attention_heads)
        self.num_kv_heads = int(text.num_key_value_heads)
        self.head_dim = int(getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads)
        if self.num_heads % self.num_kv_heads:
            raise ConfigError(f"num_attention_heads {self.num_heads} is not a multiple of num_key_value_heads "
                              f"{self.num_kv_heads}")
        sizes = config.stream_sizes()
        self.layers = nn.ModuleList([
            LayerStreams({name: StreamLayer(text, *sizes[name]) for name in STREAMS}, self.num_heads,
                         self.num_kv_heads, self.head_dim)
            for _ in range(int(text.num_hidden_layers))
        ])
        self.norms = nn.ModuleDict({name: GemmaRMSNorm(sizes[name][0], eps=text.rms_norm_eps) for name in STREAMS})
        self.rotary_emb = GemmaRotaryEmbedding(config=text)

    def unread_parameters(self, outputs: Collection[str]) -> list[nn.Parameter]:
        """Parameters that cannot affect the hidden states of ``outputs``: the last layer's queries, output
        projections and MLPs of the other streams, and their final norms."""
        unread = []
        last = self.layers[-1] if len(self.layers) else {}
        for name in STREAMS:
            if name in outputs:
                continue
            if name in last:
                block = last[name]
                for module in (block.self_attn.q_proj, block.self_attn.o_proj, block.post_attention_layernorm,
                               block.mlp):
                    unread += list(module.parameters())
            unread += list(self.norms[name].parameters())
        return unread

    def forward(self, runs: Sequence[tuple[str, torch.Tensor]], mask: torch.Tensor, positions: torch.Tensor,
                cache: Any = None, outputs: Collection[str] = STREAMS) -> list[torch.Tensor | None]:
        """Consecutive runs of tokens [(stream, (B, n, D_stream)), ...] covering q tokens, a (B, 1, q, k) bool mask
        (k = cached + q keys) and (B, q) positions -> the final-normed hidden states of each run whose stream is in
        ``outputs`` (None for the others), aligned with ``runs``."""
        names = [name for name, _ in runs]
        for name in names:
            if name not in STREAMS:
                raise ConfigError(f"unknown stream {name!r} (streams: {', '.join(STREAMS)})")
        hidden: list[torch.Tensor | None] = [states for _, states in runs]
        lengths = [states.shape[1] for _, states in runs]
        cos, sin = self.rotary_emb(hidden[0], positions)  # (B, q, head_dim) each
        starts = [sum(lengths[:i]) for i in range(len(lengths))]
        last = len(self.layers) - 1
        for index, layer in enumerate(self.layers):
            # In the last layer only the queries of runs whose outputs are read are needed.
            active = [index < last or name in outputs for name in names]
            hidden = layer(index, names, hidden, active, lengths, starts, cos, sin, mask, positions, cache)
        return [self.norms[name](states) if name in outputs and states is not None else None
                for name, states in zip(names, hidden, strict=True)]


def _rotate(states: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary position embedding of (B, heads, q, head_dim) states with (B, q, head_dim) cos / sin (Gemma's)."""
    cos, sin = cos[:, None], sin[:, None]
    return states * cos + rotate_half(states) * sin
