"""The fast decode loop: the reference loop's tokens (``decoding.py``) at a cost close to the model's arithmetic.

What the reference loop redoes for every token, this loop does once:

- per chunk: a static key/value cache sized to the prefix and the T - 2 suffix tokens fed back (the prefix, and a
  reused plan, are run by the reference ``prefill`` / ``extend`` and copied in), the (B, 1, T - 2, P + T - 2)
  suffix mask, the suffix positions and their rotary cos / sin; each step reads precomputed slices of them;
- per model: each position's valid id range and the LM-head rows of that range (views, so training updates show).

Each step is a lean one-token pass over the decoder layers' weights: the operations of transformers' Gemma layers
with SDPA (single stream) or of ``multistream.LayerStreams`` for a run of action tokens, in the same order and on the
same shapes, without the module, mask and cache machinery around them. Hidden states, and so tokens, equal the
reference loop's bit for bit; sampling draws the same random numbers (``choose_tokens``), so a seeded generator gives
the same tokens. A variable-length branch (the ``fast`` variant) follows the reference loop's rule: the end id is
forced after a sample's first end, and the loop stops once every sample has ended (``decoding.force_padding``).
Decoders this loop does not know, eager attention, hooks, autocast or a ``decoder`` replaced on the instance take
the reference loop instead (:func:`lean_decoder`).

``compile=True`` (or ``C2C_DECODE_COMPILE=1``) runs the step through ``torch.compile`` (CUDA graphs on a GPU) with
static shapes, attending over the whole buffers: numerically close to the eager step, not bit for bit, and compiled
once per (batch, prefix, suffix) shape, within dynamo's recompile limit. If compiling fails, the eager step runs
instead, after a one-line warning. It is not the default: only the eager step is exact, each shape costs 5-35 s of
compiling, and on the shared 2-core CPU it measured 0-19% faster at low load and slower in half the cases under
load (docs/results/decoding-speed.md).
"""

from __future__ import annotations

import os
import warnings
import weakref
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers.activations import GELUTanh
from transformers.models.gemma.modeling_gemma import (
    GemmaDecoderLayer,
    GemmaMLP,
    GemmaModel,
    GemmaRMSNorm,
)

from c2c.policy.decoding import DecodeState, choose_tokens, extend, force_padding, prefill
from c2c.policy.model import PlanExecuteVLA, PrefixInputs
from c2c.policy.multistream import (
    OUTPUT_STREAM,
    LayerStreams,
    MultiStreamDecoder,
    MultiStreamVLA,
    StreamLayer,
)
from c2c.policy.tokens import TokenGroup, attention_mask, positions_from_valid

COMPILE_ENV = "C2C_DECODE_COMPILE"  # "1": compile the one-token step when generate_suffix's compile= is not given


# --- per model: id ranges and LM-head rows -----------------------------------------------------------------------
class Heads:
    """Per suffix position: the valid id range [low, high) and the LM-head rows of it (None: ``model.logits``)."""

    def __init__(self, model: PlanExecuteVLA) -> None:
        self.suffix = model.suffix
        self.low = [int(x) for x in model.suffix.valid_low.tolist()]
        self.high = [int(x) for x in model.suffix.valid_high.tolist()]
        self.weight, first = _head_rows(model)
        self.pointer = None if self.weight is None else self.weight.data_ptr()
        rows = 0 if self.weight is None else self.weight.shape[0]
        self.rows = [self.weight[low - first:high - first] if first <= low and high - first <= rows else None
                     for low, high in zip(self.low, self.high, strict=True)]
        cap = getattr(model.backbone.config.get_text_config(), "final_logit_softcapping", None)
        self.cap = cap if type(model).logits is PlanExecuteVLA.logits else None

    def current(self, model: PlanExecuteVLA) -> bool:
        weight, _ = _head_rows(model)
        return (model.suffix is self.suffix and weight is self.weight
                and (weight is None or weight.data_ptr() == self.pointer))

    def logits(self, model: PlanExecuteVLA, hidden: torch.Tensor, position: int) -> torch.Tensor:
        """(B, D) -> (B, high - low) logits of the ids valid at ``position``, as ``model.logits`` computes them."""
        rows = self.rows[position]
        if rows is None:
            return model.logits(hidden, self.low[position], self.high[position])
        logits = F.linear(hidden, rows)
        return logits if self.cap is None else torch.tanh(logits / self.cap) * self.cap


def _head_rows(model: PlanExecuteVLA) -> tuple[torch.Tensor | None, int]:
    """The LM-head weight whose row i is id first + i, and first (None: only the model's own ``logits`` knows)."""
    if type(model).logits is PlanExecuteVLA.logits:
        return model.backbone.lm_head.weight, 0
    if type(model).logits is MultiStreamVLA.logits:
        return model.backbone.action_embedding, model.backbone.config.action_start
    return None, 0


_HEADS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def heads_of(model: PlanExecuteVLA) -> Heads:
    """The model's :class:`Heads`, made once per model (again if its suffix or head weight was replaced)."""
    heads = _HEADS.get(model)
    if heads is None or not heads.current(model):
        heads = _HEADS[model] = Heads(model)
    return heads


# --- what the lean step reads of a decoder -----------------------------------------------------------------------
@dataclass
class Lean:
    """Per-layer weights, the final norm, sizes and the embedding of a decoder the lean step reproduces."""

    layers: list[tuple]  # per layer: eps, 1 + norm weight, q, q bias, k, k bias, v, v bias, o, o bias, eps,
    #                      1 + norm weight, gate, up, down, activation
    final: tuple  # eps, 1 + final norm weight
    rotary: torch.nn.Module  # GemmaRotaryEmbedding
    embed: Callable[[torch.Tensor], torch.Tensor]  # (B, 1) ids -> (B, 1, D)
    dtype: torch.dtype
    heads: int
    kv_heads: int
    head_dim: int
    pack: bool  # transformers' SDPA path: a single query's heads packed onto the KV heads (else enable_gqa)


def lean_decoder(model: PlanExecuteVLA) -> Lean | None:
    """The lean step's view of the model's decoder; None where it would not reproduce the reference loop (an
    unknown decoder or layer, eager attention, hooks, attention dropout in training, a ``decoder`` replaced on the
    instance)."""
    decoder = model.language_model
    if "decoder" in vars(model) or any(m._forward_hooks or m._forward_pre_hooks for m in decoder.modules()):
        return None
    if type(decoder) is GemmaModel and type(model).decoder is PlanExecuteVLA.decoder:
        config = decoder.config
        if (config._attn_implementation != "sdpa" or (decoder.training and config.attention_dropout)
                or any(type(x) is not GemmaDecoderLayer for x in decoder.layers)):
            return None
        layers = _layers([(x.input_layernorm, x.self_attn, x.post_attention_layernorm, x.mlp) for x in decoder.layers])
        if layers is None or type(decoder.norm) is not GemmaRMSNorm:
            return None
        embed = decoder.embed_tokens
        weight, scale = embed.weight, embed.embed_scale.to(embed.weight.dtype)
        return Lean(layers, _norm_weights(decoder.norm), decoder.rotary_emb,
                    lambda ids: F.embedding(ids, weight) * scale, weight.dtype, int(config.num_attention_heads),
                    int(config.num_key_value_heads), int(decoder.layers[0].self_attn.head_dim), pack=True)
    if type(decoder) is MultiStreamDecoder and type(model).decoder is MultiStreamVLA.decoder:
        if any(type(x) is not LayerStreams or type(x[OUTPUT_STREAM]) is not StreamLayer for x in decoder.layers):
            return None
        blocks = [x[OUTPUT_STREAM] for x in decoder.layers]
        layers = _layers([(x.input_layernorm, x.self_attn, x.post_attention_layernorm, x.mlp) for x in blocks])
        if layers is None or type(decoder.norms[OUTPUT_STREAM]) is not GemmaRMSNorm:
            return None
        backbone = model.backbone
        table, start, scale = backbone.action_embedding, backbone.config.action_start, backbone.action_scale
        return Lean(layers, _norm_weights(decoder.norms[OUTPUT_STREAM]), decoder.rotary_emb,
                    lambda ids: F.embedding(ids - start, table) * scale, table.dtype, decoder.num_heads,
                    decoder.num_kv_heads, decoder.head_dim, pack=False)
    return None


def _norm_weights(norm: GemmaRMSNorm) -> tuple:
    return norm.eps, 1.0 + norm.weight.float()


def _layers(blocks: list[tuple]) -> list[tuple] | None:
    """Each layer's weights in the lean step's order; None if a norm or MLP is not Gemma's."""
    layers = []
    for norm, attention, post_norm, mlp in blocks:
        if type(norm) is not GemmaRMSNorm or type(post_norm) is not GemmaRMSNorm or type(mlp) is not GemmaMLP:
            return None
        act = mlp.act_fn.act if type(mlp.act_fn) is GELUTanh else mlp.act_fn
        layers.append((*_norm_weights(norm), attention.q_proj.weight, attention.q_proj.bias, attention.k_proj.weight,
                       attention.k_proj.bias, attention.v_proj.weight, attention.v_proj.bias, attention.o_proj.weight,
                       attention.o_proj.bias, *_norm_weights(post_norm), mlp.gate_proj.weight, mlp.up_proj.weight,
                       mlp.down_proj.weight, act))
    return layers


# --- the one-token step ------------------------------------------------------------------------------------------
def _norm(x: torch.Tensor, eps: float, scale: torch.Tensor) -> torch.Tensor:
    """GemmaRMSNorm with its (1 + weight) made once. In float32, torch's fused ``rms_norm`` computes the same
    x * rsqrt(mean(x^2) + eps) * scale in one kernel (half the time of the six operations below on one CPU thread;
    the tokens are the reference loop's, tests/test_fast_decoding.py); other dtypes go through float32 as Gemma."""
    if x.dtype == torch.float32 and scale.dtype == torch.float32:
        return F.rms_norm(x, scale.shape, scale, eps)
    y = x.float()
    y = y * torch.rsqrt(y.pow(2).mean(-1, keepdim=True) + eps)
    return (y * scale).type_as(x)


def lean_step(x: torch.Tensor, layers: list[tuple], final: tuple, keys: list[torch.Tensor],
              values: list[torch.Tensor], slot: int | torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
              mask: torch.Tensor, heads: int, kv_heads: int, head_dim: int, pack: bool,
              contiguous: bool = False) -> torch.Tensor:
    """(B, 1, D) embedded token -> (B, 1, D) final-normed hidden state. Its keys and values go to ``slot`` of the
    (B, KV heads, L, head_dim) buffers; an int ``slot`` attends to slots [0, slot] (``mask`` (B, 1, 1, slot + 1)),
    a (1,) tensor to all L slots (``mask`` (B, 1, 1, L); static shapes for ``torch.compile``).

    ``sin`` is signed for ``roll``: q.roll(d / 2) * [-sin, sin] equals Gemma's rotate_half(q) * sin bit for bit.
    ``mask``: boolean, or the additive float mask that SDPA would make of it. ``contiguous``: attend over contiguous
    copies of the keys, values and mask, the layout of the reference loop's tensors (off the CPU, where SDPA's kernel
    choice may depend on strides).
    """
    batch, half, scaling = x.shape[0], head_dim // 2, head_dim ** -0.5
    groups = heads // kv_heads
    full = isinstance(slot, torch.Tensor)
    # transformers' SDPA path packs a single query's heads onto its KV heads; the multi-stream layers use enable_gqa
    query_shape = (batch, kv_heads, groups, head_dim) if pack and groups > 1 else (batch, heads, 1, head_dim)
    layer_mask = mask.contiguous() if contiguous and not full else mask
    for (eps, scale, wq, bq, wk, bk, wv, bv, wo, bo, eps2, scale2, wg, wu, wd, act), key_buffer, value_buffer in zip(
            layers, keys, values):
        h = _norm(x, eps, scale)
        q = F.linear(h, wq, bq).view(query_shape)  # one token: (B, 1, heads, d) -> (B, heads, 1, d) is a view
        k = F.linear(h, wk, bk).view(batch, kv_heads, 1, head_dim)
        v = F.linear(h, wv, bv).view(batch, kv_heads, 1, head_dim)
        q = q * cos + q.roll(half, -1) * sin  # elementwise: the same numbers in the packed layout
        if full:
            key_buffer.index_copy_(2, slot, k * cos + k.roll(half, -1) * sin)
            value_buffer.index_copy_(2, slot, v)
            key_states, value_states = key_buffer, value_buffer
        else:
            torch.add(k * cos, k.roll(half, -1) * sin, out=key_buffer.narrow(2, slot, 1))
            value_buffer.narrow(2, slot, 1).copy_(v)
            key_states, value_states = key_buffer.narrow(2, 0, slot + 1), value_buffer.narrow(2, 0, slot + 1)
            if contiguous:
                key_states, value_states = key_states.contiguous(), value_states.contiguous()
        attended = F.scaled_dot_product_attention(q, key_states, value_states, attn_mask=layer_mask, scale=scaling,
                                                  enable_gqa=not pack and groups > 1)
        x = x + F.linear(attended.reshape(batch, 1, heads * head_dim), wo, bo)  # heads in order, as the reference
        h = _norm(x, eps2, scale2)
        x = x + F.linear(act(F.linear(h, wg)) * F.linear(h, wu), wd)
    return _norm(x, *final)


def static_step(x: torch.Tensor, lean: Lean, keys: list[torch.Tensor], values: list[torch.Tensor],
                position: torch.Tensor, prefix: int, cos: torch.Tensor, sin: torch.Tensor,
                mask: torch.Tensor) -> torch.Tensor:
    """``lean_step`` with static shapes: the (1,) ``position`` picks the row of the (B, fed, head_dim) rotary tables
    and of the (B, 1, fed, L) mask."""
    cos, sin = cos.index_select(1, position)[:, None], sin.index_select(1, position)[:, None]  # (B, 1, 1, head_dim)
    return lean_step(x, lean.layers, lean.final, keys, values, position + prefix, cos, sin,
                     mask.index_select(2, position), lean.heads, lean.kv_heads, lean.head_dim, lean.pack)


_COMPILED: dict[str, Callable | None] = {}  # per device type; None: compiling failed there, decode eagerly


def compiled_step(device: torch.device) -> Callable | None:
    """``static_step`` through ``torch.compile``, once per device type (CUDA graphs on a GPU)."""
    if device.type not in _COMPILED:
        mode = "reduce-overhead" if device.type == "cuda" else None
        _COMPILED[device.type] = torch.compile(static_step, dynamic=False, fullgraph=True, mode=mode)
    return _COMPILED[device.type]


def compile_requested(compile: bool | None) -> bool:
    return os.environ.get(COMPILE_ENV, "0") == "1" if compile is None else bool(compile)


# --- the loop ----------------------------------------------------------------------------------------------------
def generate_fast(model: PlanExecuteVLA, inputs: PrefixInputs, start: int, plan_ids: torch.Tensor | None, *,
                  temperature: float = 0.0, top_k: int = 0, generator: torch.Generator | None = None,
                  compile: bool | None = None) -> torch.Tensor | None:
    """``generate_suffix``'s tokens: (B, T) ids, plan then exec, the end token last (``start``: the first position
    to generate, after ``plan_ids``). None where the lean step does not apply: the caller runs the reference loop.

    The loop runs in inference mode (less dispatch work per operation than no_grad); the ids come back as an
    ordinary tensor."""
    with torch.no_grad():
        lean = None if torch.is_autocast_enabled(inputs.state.device.type) else lean_decoder(model)
        if lean is None:
            return None
        heads = heads_of(model)
    with torch.inference_mode():
        out = _loop(model, lean, heads, inputs, start, plan_ids, temperature, top_k, generator,
                    compile_requested(compile))
    return out.clone()


def _loop(model: PlanExecuteVLA, lean: Lean, heads: Heads, inputs: PrefixInputs, start: int,
          plan_ids: torch.Tensor | None, temperature: float, top_k: int, generator: torch.Generator | None,
          compile: bool) -> torch.Tensor:
    suffix = model.suffix
    total = suffix.length
    state, hidden = prefill(model, inputs)
    out = torch.empty(hidden.shape[0], total, dtype=torch.long, device=hidden.device)  # (B, T)
    out[:, total - 1] = suffix.end_id
    if start:
        out[:, :start] = plan_ids
        hidden = extend(model, state, out[:, :start])
    fed = total - 2  # suffix tokens ever fed back: all but the last generated one and the end token
    runner = Runner(lean, state, fed, compile) if start < fed else None
    columns = out[:, :, None].unbind(1)  # T x (B, 1) views
    ends_at = suffix.ends_at.tolist()  # positions of a variable-length branch (the last branch)
    ended = torch.zeros(out.shape[0], dtype=torch.bool, device=out.device)  # (B,)
    for position in range(start, total - 1):
        logits = heads.logits(model, hidden, position)  # (B, K): only the ids valid here
        if temperature == 0:
            chosen = logits.float().argmax(-1)
        else:
            chosen = choose_tokens(logits, temperature, top_k, generator)
        torch.add(chosen[:, None], heads.low[position], out=columns[position])
        if ends_at[position]:
            columns[position].copy_(force_padding(columns[position], ended, suffix.end_id))
            if bool(ended.all()):  # every sample has ended: the rest is padding
                out[:, position + 1:] = suffix.end_id
                break
        if position < fed:
            hidden = runner.step(columns[position], position)
    return out


class Runner:
    """One chunk's static cache, mask rows and rotary tables; ``step`` feeds one suffix token."""

    def __init__(self, lean: Lean, state: DecodeState, fed: int, compile: bool = False) -> None:
        self.lean = lean
        batch = state.valid.shape[0]
        self.prefix = prefix = state.valid.shape[1] - state.suffix_length  # P (the multi-stream begin included)
        valid = torch.cat([state.valid[:, :prefix], state.valid.new_ones(batch, fed)], dim=1)  # (B, P + fed)
        groups = state.prefix_groups + [TokenGroup("suffix", fed, causal=True)]
        mask = attention_mask(groups, valid, last=fed)  # (B, 1, fed, P + fed): row j is suffix token j's
        if mask.device.type == "cpu":  # SDPA would turn the boolean mask into this additive one at every call
            mask = torch.zeros(mask.shape, dtype=lean.dtype, device=mask.device).masked_fill_(~mask, float("-inf"))
        self.masks = mask[:, :, :, None].unbind(2)  # fed x (B, 1, 1, P + fed), narrowed to the keys written
        example = torch.empty(1, 1, 1, dtype=lean.dtype, device=mask.device)
        cos, sin = lean.rotary(example, positions_from_valid(valid)[:, prefix:])  # (B, fed, head_dim) each
        half = sin.shape[-1] // 2
        sin = torch.cat([-sin[..., :half], sin[..., half:]], dim=-1)
        self.cos = cos[:, :, None, None].unbind(1)  # fed x (B, 1, 1, head_dim): one query, every head
        self.sin = sin[:, :, None, None].unbind(1)
        self.keys, self.values = [], []
        for layer in state.cache.layers:  # the prefix (and a reused plan) from the reference prefill
            written = layer.keys.shape[2]
            shape = (*layer.keys.shape[:2], prefix + fed, layer.keys.shape[3])
            self.keys.append(layer.keys.new_zeros(shape))
            self.values.append(layer.values.new_zeros(shape))
            self.keys[-1][:, :, :written] = layer.keys
            self.values[-1][:, :, :written] = layer.values
        self.sizes = (lean.heads, lean.kv_heads, lean.head_dim, lean.pack, mask.device.type != "cpu")
        self.compiled, self.device = None, mask.device.type
        function = compiled_step(mask.device) if compile else None
        if function is not None:
            rows = torch.arange(fed, device=mask.device)[:, None]
            self.compiled = lambda x, j: function(x, lean, self.keys, self.values, rows[j], prefix, cos, sin, mask)

    def step(self, ids: torch.Tensor, position: int) -> torch.Tensor:
        """Feed suffix token ``position`` ((B, 1) ids); returns the (B, D) hidden state predicting the next one."""
        x = self.lean.embed(ids)  # (B, 1, D)
        if self.compiled is not None:
            try:
                return self.compiled(x, position)[:, -1]
            except Exception as error:  # noqa: BLE001 - whatever failed to compile, the eager step is right
                first = str(error).strip().splitlines()[0][:160] if str(error).strip() else ""
                warnings.warn(f"torch.compile of the decode step failed ({type(error).__name__}: {first}); "
                              "decoding eagerly", RuntimeWarning, stacklevel=2)
                self.compiled = _COMPILED[self.device] = None
        slot = self.prefix + position
        hidden = lean_step(x, self.lean.layers, self.lean.final, self.keys, self.values, slot, self.cos[position],
                           self.sin[position], self.masks[position].narrow(3, 0, slot + 1), *self.sizes)
        return hidden[:, -1]
