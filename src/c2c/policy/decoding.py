"""Constrained, KV-cached decoding of the action suffix: plan tokens first, then exec tokens (Sec. 3.2).

The prefix is run once and its keys/values cached; each suffix token then costs one single-token decoder step.
At every suffix position only the ids valid there are candidates: the position's branch (plan or exec; disjoint
id ranges for the ``separate`` variant) and residual level (a K-id range). Sampling or argmax runs over that range
alone, which is exactly masking every other logit to -inf, so every generated sequence decodes and no
"all-zero action" fallback is ever needed (contrast FAST, REFERENCE). The end token is the single valid id at the
last position, so it is appended rather than generated.

Variable length (the ``fast`` variant, ``tokens.py``): at the exec positions the end id is valid next to the FAST
ids. Once a sample has generated it, every later position of that sample is padding: the end id is forced there
(``force_padding``), whatever was drawn, so the sequence has the form training taught. When every sample of the
batch has ended, the remaining positions are filled with the end id and no more decoder steps run.

Plan caching: given plan ids from an earlier call, the plan is fed into the cache in one step and only the exec
tokens are generated (the plan is conditioning, not output; Eq. 8's second product).

Two loops give the same tokens: ``method="fast"`` (the default; ``fast_decoding.py``: a static cache, the suffix
mask and positions made once per chunk, a lean one-token step; 2-3x cheaper per token at batch 1) and
``method="reference"`` (below: a ``DynamicCache`` and transformers' forward per token, the mask rebuilt each step).
The fast loop hands models it cannot reproduce bit for bit to the reference loop.

Example::

    ids = generate_suffix(model, inputs)                                  # (B, T) greedy, end token last
    ids = generate_suffix(model, inputs, temperature=1.0, top_k=50, generator=torch.Generator().manual_seed(0))
    exec_only = generate_suffix(model, inputs, plan_ids=ids[:, model.suffix.span("plan")])
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from transformers import DynamicCache

from c2c.errors import ConfigError
from c2c.policy.model import PlanExecuteVLA, PrefixInputs
from c2c.policy.tokens import TokenGroup, attention_mask, positions_from_valid

METHODS = ("fast", "reference")  # generate_suffix's loops: fast_decoding.py's, and the one below


@dataclass
class DecodeState:
    """What a cached decode carries between steps."""

    cache: DynamicCache  # keys/values of every token so far
    valid: torch.Tensor  # (B, k) bool: which cached tokens are real (instruction padding is not)
    prefix_groups: list[TokenGroup]  # the prefix's named groups
    suffix_length: int  # suffix tokens already in the cache


def choose_tokens(valid_logits: torch.Tensor, temperature: float = 0.0, top_k: int = 0,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """(B, K) logits of one position's valid ids -> (B,) indices into them: argmax, or a sample."""
    valid_logits = valid_logits.float()
    if temperature == 0:
        return valid_logits.argmax(-1)
    scaled = valid_logits / temperature
    if 0 < top_k < scaled.shape[-1]:
        kth = scaled.topk(top_k, dim=-1).values[:, -1:]  # (B, 1)
        scaled = scaled.masked_fill(scaled < kth, float("-inf"))
    return torch.multinomial(torch.softmax(scaled, dim=-1), 1, generator=generator)[:, 0]  # (B,)


def force_padding(token: torch.Tensor, ended: torch.Tensor, end_id: int) -> torch.Tensor:
    """(B, 1) ids chosen at a variable-length position -> the end id where the sample had already ended; updates
    the (B,) bool ``ended`` in place with the samples that end here."""
    token = token.masked_fill(ended[:, None], end_id)
    ended |= token[:, 0] == end_id
    return token


def prefill(model: PlanExecuteVLA, inputs: PrefixInputs) -> tuple[DecodeState, torch.Tensor]:
    """Run the prefix once; returns the cache and the (B, D) hidden state that predicts the first suffix token."""
    prefix = model.embed_prefix(inputs)
    cache = DynamicCache(config=model.language_model.config)
    mask = attention_mask(prefix.groups, prefix.valid)  # (B, 1, P, P)
    hidden = model.decoder(prefix.embeds, mask, positions_from_valid(prefix.valid), cache=cache)  # (B, P, D)
    state = DecodeState(cache, prefix.valid, prefix.groups, suffix_length=0)
    return state, hidden[:, -1]  # (B, D)


def extend(model: PlanExecuteVLA, state: DecodeState, ids: torch.Tensor) -> torch.Tensor:
    """Append (B, n) suffix ids to the cache; returns the (B, D) hidden state that predicts the token after them."""
    batch, count = ids.shape
    valid = torch.cat([state.valid, state.valid.new_ones(batch, count)], dim=1)  # (B, k + n)
    groups = state.prefix_groups + [TokenGroup("suffix", state.suffix_length + count, causal=True)]
    mask = attention_mask(groups, valid, last=count)  # (B, 1, n, k + n): the same rule as in training
    positions = positions_from_valid(valid)[:, -count:]  # (B, n)
    hidden = model.decoder(model.embed_ids(ids), mask, positions, cache=state.cache)  # (B, n, D)
    state.valid, state.suffix_length = valid, state.suffix_length + count
    return hidden[:, -1]  # (B, D)


@torch.no_grad()
def generate_suffix(model: PlanExecuteVLA, inputs: PrefixInputs, *, temperature: float = 0.0, top_k: int = 0,
                    generator: torch.Generator | None = None, plan_ids: torch.Tensor | None = None,
                    use_cache: bool = True, method: str | None = None, compile: bool | None = None) -> torch.Tensor:
    """Generate the whole suffix: (B, T) ids, plan tokens then exec tokens, the end token last.

    ``plan_ids`` (B, Tp): reuse a plan instead of generating one (only exec tokens are generated).
    ``method``: "fast" (``fast_decoding.generate_fast``) or "reference" (the loop below); the same tokens. None:
    ``C2C_DECODE_METHOD`` if set (benchmarks of the loop before the fast one, in worker processes too), else fast.
    ``compile``: run the fast loop's step through ``torch.compile`` (None: ``C2C_DECODE_COMPILE=1``).
    ``use_cache=False`` recomputes the full sequence at every step (a reference for tests; quadratic cost).
    """
    suffix = model.suffix
    start = _check_plan(model, plan_ids, inputs.batch_size)
    if method is None:
        method = os.environ.get("C2C_DECODE_METHOD", "").strip() or "fast"
    if method not in METHODS:
        raise ConfigError(f"unknown decoding method {method!r}; expected one of {', '.join(METHODS)}")
    if use_cache and method == "fast":
        from c2c.policy.fast_decoding import generate_fast

        ids = generate_fast(model, inputs, start, plan_ids, temperature=temperature, top_k=top_k,
                            generator=generator, compile=compile)
        if ids is not None:
            return ids
    generated = inputs.instruction_ids.new_zeros(inputs.batch_size, 0)  # (B, 0)
    if plan_ids is not None:
        generated = plan_ids.to(generated.device).long()
    if use_cache:
        state, hidden = prefill(model, inputs)
        if generated.shape[1]:
            hidden = extend(model, state, generated)
    else:
        hidden = _last_hidden(model, inputs, generated)
    ends_at = suffix.ends_at.tolist()  # positions of a variable-length branch (the last branch)
    ended = torch.zeros(generated.shape[0], dtype=torch.bool, device=generated.device)  # (B,)
    for position in range(start, suffix.length - 1):
        low, high = int(suffix.valid_low[position]), int(suffix.valid_high[position])
        # Only the ids valid here get logits at all: the same as masking every other logit to -inf.
        token = choose_tokens(model.logits(hidden, low, high), temperature, top_k, generator)[:, None] + low
        if ends_at[position]:
            token = force_padding(token, ended, suffix.end_id)
        generated = torch.cat([generated, token], dim=1)  # (B, position + 1)
        if ends_at[position] and bool(ended.all()):  # every sample has ended: the rest is padding
            break
        if position + 1 < suffix.length - 1:  # the next position is not the forced end token
            hidden = extend(model, state, token) if use_cache else _last_hidden(model, inputs, generated)
    end = generated.new_full((generated.shape[0], suffix.length - generated.shape[1]), suffix.end_id)
    return torch.cat([generated, end], dim=1)  # (B, T)


def _last_hidden(model: PlanExecuteVLA, inputs: PrefixInputs, generated: torch.Tensor) -> torch.Tensor:
    """Full recomputation of [prefix, generated] -> the (B, D) hidden state predicting the next token."""
    hidden, _ = model.hidden_states(inputs, generated)
    return hidden[:, -1]


def _check_plan(model: PlanExecuteVLA, plan_ids: torch.Tensor | None, batch: int) -> int:
    """Validate reused plan ids; returns the first suffix position still to generate."""
    if plan_ids is None:
        return 0
    span = model.suffix.span("plan")  # raises for variants without a plan
    expected = (batch, span.stop - span.start)
    if tuple(plan_ids.shape) != expected:
        raise ConfigError(f"plan_ids: expected shape {expected}, got {tuple(plan_ids.shape)}")
    if not bool(model.suffix.is_valid(plan_ids.to(model.suffix.valid_low.device)).all()):
        raise ConfigError("plan_ids: some ids lie outside the plan branch's valid ranges")
    return span.stop
