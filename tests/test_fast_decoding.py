"""The fast decode loop gives the reference loop's tokens: greedy, seeded sampling, cached plans, batches with
different instruction padding, single-stream and multi-stream decoders; and it steps aside where it cannot."""

import functools
import warnings

import numpy as np
import pytest
import torch

from c2c.errors import ConfigError
from c2c.policy import fast_decoding
from c2c.policy.decoding import extend, generate_suffix, prefill
from c2c.policy.fast_decoding import Runner, lean_decoder
from c2c.policy.testing import debug_policy, random_observation, torch_threads

BACKBONES = ["debug", "debug-multistream"]


@pytest.fixture(autouse=True)
def _one_thread():
    with torch_threads(1):
        yield


@functools.cache
def _policy(backbone, variant):
    return debug_policy(variant, backbone=backbone)


def _inputs(policy, batch_size, seed=0):
    inputs = policy.processor.prefix_inputs(random_observation(policy.config, batch_size, seed))[0]
    if batch_size > 1:  # the instructions differ in length, so their padding differs across the batch
        assert len(set(inputs.instruction_mask.sum(1).tolist())) > 1
    return inputs


def _both(model, inputs, **decode):
    """(fast, reference) ids; sampling gets a fresh generator with the same seed for each."""
    seed = decode.pop("seed", None)
    ids = []
    for method in ("fast", "reference"):
        generator = None if seed is None else torch.Generator().manual_seed(seed)
        ids.append(generate_suffix(model, inputs, method=method, generator=generator, **decode))
    return ids


@pytest.mark.parametrize("backbone", BACKBONES)
@pytest.mark.parametrize("variant", ["plan", "noplan"])
@pytest.mark.parametrize("batch_size", [1, 3])
def test_fast_loop_gives_the_reference_tokens(backbone, variant, batch_size):
    policy = _policy(backbone, variant)
    model = policy.model
    assert lean_decoder(model) is not None  # the fast loop really runs
    inputs = _inputs(policy, batch_size)
    fast, reference = _both(model, inputs)
    assert torch.equal(fast, reference) and policy.suffix.is_valid(fast).all()
    for top_k in (0, 5):
        fast, reference = _both(model, inputs, temperature=1.0, top_k=top_k, seed=top_k + 1)
        assert torch.equal(fast, reference)
    if variant == "plan":  # a cached plan: only the exec tokens are generated, greedy and sampled
        plan = fast[:, policy.suffix.span("plan")]
        fast, reference = _both(model, inputs, plan_ids=plan)
        assert torch.equal(fast, reference) and torch.equal(fast[:, policy.suffix.span("plan")], plan)
        fast, reference = _both(model, inputs, plan_ids=plan, temperature=1.0, top_k=3, seed=7)
        assert torch.equal(fast, reference)


@pytest.mark.parametrize("backbone", BACKBONES)
@pytest.mark.parametrize("contiguous", [False, True])  # True: the layout used off the CPU
def test_fast_steps_equal_the_reference_hidden_states_bit_for_bit(backbone, contiguous):
    policy = _policy(backbone, "plan")
    model = policy.model
    inputs = _inputs(policy, 3, seed=1)
    ids = generate_suffix(model, inputs, method="reference")
    fed = ids.shape[1] - 2
    with torch.no_grad():
        state, first = prefill(model, inputs)
        reference = [first] + [extend(model, state, ids[:, j:j + 1]) for j in range(fed)]
        state, first = prefill(model, inputs)
        runner = Runner(lean_decoder(model), state, fed)
        runner.sizes = (*runner.sizes[:-1], contiguous)
        fast = [first] + [runner.step(ids[:, j:j + 1], j) for j in range(fed)]
    assert all(torch.equal(a, b) for a, b in zip(fast, reference, strict=True))


def test_lm_head_rows_follow_in_place_weight_updates():
    policy = debug_policy("noplan")
    model = policy.model
    inputs = _inputs(policy, 2)
    before = generate_suffix(model, inputs)
    with torch.no_grad():  # what an optimizer step does to the (tied) head and embedding
        model.backbone.lm_head.weight.mul_(-1.0)
        for layer in model.language_model.layers:
            layer.input_layernorm.weight.add_(0.5)
    fast, reference = _both(model, inputs)
    assert torch.equal(fast, reference) and not torch.equal(fast, before)


def test_decoders_it_cannot_reproduce_take_the_reference_loop():
    policy = debug_policy("plan")
    model = policy.model
    inputs = _inputs(policy, 2)
    expected = generate_suffix(model, inputs, method="reference")
    handle = model.language_model.layers[0].register_forward_hook(lambda *args: None)
    try:
        assert lean_decoder(model) is None
        assert torch.equal(generate_suffix(model, inputs), expected)
    finally:
        handle.remove()
    model.backbone.set_attn_implementation("eager")
    try:
        assert lean_decoder(model) is None
    finally:
        model.backbone.set_attn_implementation("sdpa")
    assert lean_decoder(model) is not None
    with pytest.raises(ConfigError, match="unknown decoding method"):
        generate_suffix(model, inputs, method="quick")


def test_a_failed_compile_warns_once_and_decodes_eagerly(monkeypatch):
    policy = _policy("debug", "plan")
    inputs = _inputs(policy, 3)
    expected = generate_suffix(policy.model, inputs, method="reference")

    def broken(*args, **kwargs):
        raise RuntimeError("no C++ compiler\nsecond line")

    monkeypatch.setattr(fast_decoding, "_COMPILED", {"cpu": broken})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = generate_suffix(policy.model, inputs, compile=True)
        second = generate_suffix(policy.model, inputs, compile=True)
    assert torch.equal(first, expected) and torch.equal(second, expected)
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert messages == ["torch.compile of the decode step failed (RuntimeError: no C++ compiler); decoding eagerly"]


@pytest.mark.slow
@pytest.mark.parametrize("backbone", BACKBONES)
def test_compiled_step_gives_the_reference_tokens(backbone):
    policy = _policy(backbone, "plan")
    inputs = _inputs(policy, 3)
    fast = generate_suffix(policy.model, inputs, compile=True)
    assert torch.equal(fast, generate_suffix(policy.model, inputs, method="reference"))


def test_the_decoding_method_can_come_from_the_environment(monkeypatch):
    from c2c.errors import ConfigError
    from c2c.policy import decoding
    from c2c.policy.testing import debug_policy, random_observation

    policy = debug_policy("plan")
    observation = random_observation(policy.config)
    called = []
    real = decoding.prefill
    monkeypatch.setattr(decoding, "prefill", lambda *a, **k: called.append(1) or real(*a, **k))
    fast = policy.predict_action_chunk(observation)
    assert not called  # the fast loop has its own prefill
    monkeypatch.setenv("C2C_DECODE_METHOD", "reference")
    np.testing.assert_array_equal(policy.predict_action_chunk(observation), fast)
    assert called  # the reference loop ran, with the same result
    monkeypatch.setenv("C2C_DECODE_METHOD", "slow")
    with pytest.raises(ConfigError, match="unknown decoding method 'slow'"):
        policy.predict_action_chunk(observation)
