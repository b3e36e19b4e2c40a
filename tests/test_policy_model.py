"""PlanExecuteVLA: the prefix-LM mask on the real attention path, and the loss on the suffix only (Eq. 9)."""

import pytest
import torch

from c2c.policy.policy import PlanExecutePolicy
from c2c.policy.testing import (
    INSTRUCTIONS,
    debug_config,
    debug_policy,
    random_action_tokenizer,
    random_batch,
)


@pytest.fixture(scope="module")
def policy():
    return debug_policy("plan")


def _inputs_and_suffix(policy, batch_size=2):
    batch = random_batch(policy.config, batch_size)
    inputs, _ = policy.processor.prefix_inputs(batch)
    codes = {"plan": torch.as_tensor(batch["codes.plan"]), "exec": torch.as_tensor(batch["codes.exec"])}
    return inputs, policy.suffix.codes_to_ids(codes)


def _another_valid_id(policy, ids, position):
    """The next code of the same level (mod K): still valid at that position, but different."""
    low = policy.suffix.valid_low[position]
    return low + (ids - low + 1) % 16


def _changed(a, b):
    return (a - b).abs().amax(dim=-1) > 1e-6  # (B, T) which positions changed


@torch.no_grad()
def test_prefix_is_bidirectional_and_suffix_causal_on_the_real_attention_path(policy):
    inputs, suffix_ids = _inputs_and_suffix(policy)
    suffix_inputs = suffix_ids[:, :-1]
    hidden, prefix_length = policy.model.hidden_states(inputs, suffix_inputs)
    image_tokens = policy.model.image_tokens

    # A later prefix token (the state, last in the prefix) reaches an earlier prefix token (the first image patch).
    moved = inputs.state.clone()
    moved[:, 0] += 0.5
    hidden_state_moved, _ = policy.model.hidden_states(type(inputs)(inputs.pixels, inputs.instruction_ids,
                                                                    inputs.instruction_mask, moved), suffix_inputs)
    changed = _changed(hidden, hidden_state_moved)
    assert changed[:, 0].all() and changed[:, image_tokens].all()  # first image patch of each camera
    assert changed[:, prefix_length:].all()  # ... and every suffix token sees the prefix

    # A later suffix token does not reach earlier suffix tokens, nor the prefix.
    position = 30
    perturbed = suffix_inputs.clone()
    perturbed[:, position] = _another_valid_id(policy, perturbed[:, position], position)
    hidden_suffix_moved, _ = policy.model.hidden_states(inputs, perturbed)
    changed = _changed(hidden, hidden_suffix_moved)
    assert not changed[:, : prefix_length + position].any()  # prefix and suffix tokens 0..29: untouched
    assert changed[:, prefix_length + position:].all()  # the token itself and everything after it


@torch.no_grad()
def test_instruction_padding_is_invisible(policy):
    inputs, suffix_ids = _inputs_and_suffix(policy)
    padding = ~inputs.instruction_mask
    assert padding.any(), "the debug instructions should be shorter than max_instruction_tokens"
    other_ids = inputs.instruction_ids.masked_fill(padding, 5)
    hidden, prefix_length = policy.model.hidden_states(inputs, suffix_ids[:, :-1])
    moved = type(inputs)(inputs.pixels, other_ids, inputs.instruction_mask, inputs.state)
    hidden_moved, _ = policy.model.hidden_states(moved, suffix_ids[:, :-1])
    changed = _changed(hidden, hidden_moved)
    images = policy.model.image_tokens * len(policy.config.cameras)
    padded_positions = torch.zeros_like(changed)
    padded_positions[:, images: images + padding.shape[1]] = padding
    assert not changed[~padded_positions].any()  # only the padding tokens' own outputs may differ


def test_loss_covers_the_suffix_only(policy):
    inputs, suffix_ids = _inputs_and_suffix(policy)
    seen = []
    original = policy.model.logits
    policy.model.logits = lambda hidden, *a: seen.append(hidden.shape) or original(hidden, *a)
    try:
        out = policy.model(inputs, suffix_ids)
    finally:
        del policy.model.logits
    # Only the T positions that predict suffix tokens reach the LM head: prefix positions have no targets.
    assert seen == [torch.Size([2, policy.suffix.length, policy.model.hidden_size])]
    expected = torch.nn.functional.cross_entropy(out.logits.flatten(0, 1), suffix_ids.flatten())
    torch.testing.assert_close(out.loss, expected)
    assert set(out.metrics) >= {"loss/plan", "loss/exec", "loss/end", "accuracy/plan", "accuracy/exec"}

    # Changing the last exec target changes the exec loss; the plan loss (earlier, causal) stays as it was.
    last_exec = policy.suffix.span("exec").stop - 1
    changed = suffix_ids.clone()
    changed[:, last_exec] = _another_valid_id(policy, changed[:, last_exec], last_exec)
    out_changed = policy.model(inputs, changed)
    assert not torch.allclose(out_changed.metrics["loss/exec"], out.metrics["loss/exec"])
    torch.testing.assert_close(out_changed.metrics["loss/plan"], out.metrics["loss/plan"])


def test_loss_gradient_reaches_every_part():
    policy = PlanExecutePolicy.build(debug_config("plan", state_encoding="bins"), random_action_tokenizer("joint"),
                                     INSTRUCTIONS)
    loss, metrics = policy(random_batch(policy.config, 3))
    loss.backward()
    model = policy.model.backbone.model
    for name, module in [("vision", model.vision_tower), ("projector", model.multi_modal_projector),
                         ("decoder", model.language_model.layers[0])]:
        grads = [p.grad for p in module.parameters() if p.grad is not None]
        assert grads and any(g.abs().sum() > 0 for g in grads), name
    state_rows = policy.model.vocabulary.state_start + torch.arange(256)
    embedding_grad = model.language_model.embed_tokens.weight.grad
    assert embedding_grad[state_rows].abs().sum() > 0  # state bins are real tokens in the prefix


def test_a_few_steps_fit_one_batch():
    policy = PlanExecutePolicy.build(debug_config("plan"), random_action_tokenizer("joint"), INSTRUCTIONS)
    batch = random_batch(policy.config, 4)
    optimizer = torch.optim.AdamW(policy.parameters(), lr=3e-3)
    first = None
    for _ in range(30):
        loss, _ = policy(batch)
        first = first if first is not None else loss.item()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.7 * first


@pytest.mark.parametrize("variant", ["plan", "separate"])
def test_valid_id_loss_is_the_cross_entropy_of_the_constrained_distribution(variant):
    full = debug_policy(variant)
    valid = debug_policy(variant, loss_vocabulary="valid")
    valid.model.load_state_dict(full.model.state_dict())
    inputs, suffix_ids = _inputs_and_suffix(full)
    out = valid.model(inputs, suffix_ids)
    assert out.logits is None
    logits = full.model.next_token_logits(inputs, suffix_ids[:, :-1])  # (B, T, V)
    low, high = full.suffix.valid_low, full.suffix.valid_high
    ids = torch.arange(logits.shape[-1])
    allowed = (ids[None] >= low[:, None]) & (ids[None] < high[:, None])  # (T, V)
    restricted = logits.masked_fill(~allowed, float("-inf")).log_softmax(-1)
    expected = -restricted.gather(-1, suffix_ids[..., None])[..., 0]  # (B, T); the end position gives 0
    torch.testing.assert_close(out.loss, expected.mean())
    # The same argmax as the full-vocabulary model's constrained prediction: accuracies agree.
    reference = full.model(inputs, suffix_ids)
    torch.testing.assert_close(out.metrics["accuracy/exec"], reference.metrics["accuracy/exec"])
    out.loss.backward()  # gradients reach the LM head rows of valid ids only
    grad = valid.model.backbone.lm_head.weight.grad
    used = allowed.any(0)
    assert grad[used].abs().sum() > 0


def test_transformers_releases_that_mask_differently_are_refused():
    from c2c.policy.model import cache_keyword, check_transformers

    for version in ("5.4.0", "5.17.0", "5.24.0"):
        check_transformers(version)
    for version in ("5.3.0", "4.57.6", "6.0.0"):
        with pytest.raises(ImportError, match=r"transformers >= 5.4, < 6 \(found " + version.replace(".", r"\.")):
            check_transformers(version)

    class Old(torch.nn.Module):
        def forward(self, inputs_embeds=None, past_key_values=None, **kwargs): ...

    class New(torch.nn.Module):
        def forward(self, inputs_embeds=None, cache=None, **kwargs): ...

    class Neither(torch.nn.Module):
        def forward(self, inputs_embeds=None, **kwargs): ...

    assert cache_keyword(Old) == "past_key_values" and cache_keyword(New) == "cache"
    with pytest.raises(RuntimeError, match="takes neither 'cache' nor 'past_key_values'"):
        cache_keyword(Neither)
