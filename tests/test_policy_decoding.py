"""Constrained KV-cached decoding: equals full recomputation, never leaves the valid ranges, reuses plans."""

import numpy as np
import pytest
import torch

from c2c.errors import ConfigError
from c2c.policy.decoding import extend, generate_suffix, prefill
from c2c.policy.testing import (
    debug_policy,
    random_observation,
)

VARIANTS = ["plan", "plan-hp40", "noplan", "separate"]



_policy = debug_policy


def _inputs(policy, batch_size, seed=0):
    return policy.processor.prefix_inputs(random_observation(policy.config, batch_size, seed))[0]


@pytest.mark.parametrize("variant", ["plan", "separate", "noplan"])
def test_kv_cached_decoding_equals_full_recomputation(variant):
    policy = _policy(variant, token_order="latent-major" if variant == "separate" else "codebook-major")
    inputs = _inputs(policy, 3)
    cached = generate_suffix(policy.model, inputs)
    uncached = generate_suffix(policy.model, inputs, use_cache=False)
    assert torch.equal(cached, uncached)
    # The cached hidden states themselves match the full forward pass, step by step.
    with torch.no_grad():
        state, first = prefill(policy.model, inputs)
        steps = [first] + [extend(policy.model, state, cached[:, t: t + 1]) for t in range(cached.shape[1] - 2)]
        full_hidden, prefix_length = policy.model.hidden_states(inputs, cached[:, :-2])
    torch.testing.assert_close(torch.stack(steps, dim=1), full_hidden[:, prefix_length - 1:], atol=1e-5, rtol=1e-4)
    # And greedy choices equal the constrained argmax of the teacher-forced logits.
    with torch.no_grad():
        full = policy.model.next_token_logits(inputs, cached[:, :-1])  # (B, T, V)
    low, high = policy.suffix.valid_low, policy.suffix.valid_high
    constrained = torch.stack([full[:, t, low[t]:high[t]].argmax(-1) + low[t] for t in range(full.shape[1])], dim=1)
    assert torch.equal(constrained, cached)


def _assert_all_decode(policy, ids):
    assert policy.suffix.is_valid(ids).all()
    codes = policy.suffix.ids_to_codes(ids)
    for mode, branch_codes in codes.items():
        assert branch_codes.min() >= 0 and branch_codes.max() < policy.action_tokenizer.codebook_size
        # The RVQ decoder raises on any out-of-range code unless asked for a repair report.
        actions = policy.action_tokenizer.decode(branch_codes.numpy(), mode)
        assert np.isfinite(actions).all()


def _sampled_decodes(variant, total, batch_size):
    policy = _policy(variant)
    generator = torch.Generator().manual_seed(0)
    inputs = _inputs(policy, batch_size)
    for _ in range(total // batch_size):
        ids = generate_suffix(policy.model, inputs, temperature=1.0, generator=generator)
        _assert_all_decode(policy, ids)
    # The constraint matters: left alone, the random model's argmax would be undecodable at many positions.
    with torch.no_grad():
        unconstrained = policy.model.next_token_logits(inputs, ids[:, :-1]).argmax(-1)
    assert not policy.suffix.is_valid(unconstrained).all()
    return ids


@pytest.mark.parametrize("variant", VARIANTS)
def test_sampled_decodes_never_leave_the_valid_ranges(variant):
    ids = _sampled_decodes(variant, total=1_000, batch_size=500)
    assert len(torch.unique(ids[:, 0])) > 5  # temperature 1 really samples


@pytest.mark.slow
@pytest.mark.parametrize("variant", VARIANTS)
def test_ten_thousand_sampled_decodes_never_leave_the_valid_ranges(variant):
    _sampled_decodes(variant, total=10_000, batch_size=2_000)


def test_top_k_sampling_stays_among_the_k_best():
    policy = _policy("noplan")
    inputs = _inputs(policy, 64)
    ids = generate_suffix(policy.model, inputs, temperature=1.0, top_k=1, generator=torch.Generator().manual_seed(1))
    assert torch.equal(ids, generate_suffix(policy.model, inputs))  # top-1 sampling is greedy


def test_plan_caching_skips_plan_generation_and_still_decodes():
    policy = _policy("plan")
    inputs = _inputs(policy, 2)
    full = generate_suffix(policy.model, inputs)
    plan_span, exec_span = policy.suffix.span("plan"), policy.suffix.span("exec")

    calls = []
    original = policy.model.decoder
    policy.model.decoder = lambda embeds, *a, **k: calls.append(embeds.shape[1]) or original(embeds, *a, **k)
    try:
        reused = generate_suffix(policy.model, inputs, plan_ids=full[:, plan_span], method="reference")
    finally:
        del policy.model.decoder
    exec_tokens = exec_span.stop - exec_span.start
    # The reference loop: one prefill, the whole plan in one step, then one step per exec token after the first
    # (the fast loop runs the same prefill and plan step, then its own one-token steps).
    assert calls[1] == plan_span.stop and len(calls) == 2 + exec_tokens - 1
    assert torch.equal(reused, full)  # same plan in -> same greedy exec out
    _assert_all_decode(policy, reused)

    # A different plan conditions the exec tokens (the reused plan is really used).
    other_plan = torch.roll(full[:, plan_span], shifts=1, dims=1)
    other_plan = policy.suffix.valid_low[plan_span] + (other_plan - policy.suffix.valid_low[plan_span]) % 16
    assert torch.equal(generate_suffix(policy.model, inputs, plan_ids=other_plan)[:, plan_span], other_plan)


def test_plan_ids_are_checked():
    policy = _policy("plan")
    inputs = _inputs(policy, 2)
    with pytest.raises(ConfigError, match="plan_ids: expected shape"):
        generate_suffix(policy.model, inputs, plan_ids=torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ConfigError, match="outside the plan branch"):
        generate_suffix(policy.model, inputs, plan_ids=torch.zeros(2, 24, dtype=torch.long))
    with pytest.raises(ConfigError, match="no 'plan' branch"):
        generate_suffix(_policy("noplan").model, inputs, plan_ids=torch.zeros(2, 24, dtype=torch.long))
