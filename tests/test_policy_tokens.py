"""Token layout contracts: vocabulary ranges, code <-> id round trips, attention rules, instruction tokenizer."""

import numpy as np
import pytest
import torch

from c2c.errors import ConfigError
from c2c.policy.instructions import InstructionTokenizer
from c2c.policy.policy import suffix_for, vocabulary_for
from c2c.policy.testing import debug_config, random_action_tokenizer
from c2c.policy.tokens import (
    SuffixLayout,
    TokenGroup,
    VocabularyLayout,
    attention_mask,
    positions_from_valid,
    state_to_bins,
)


def _layout(variant="plan", order="codebook-major", tokenizer_variant="joint", text_size=10):
    config = debug_config(variant, token_order=order)
    tokenizer = random_action_tokenizer(tokenizer_variant)
    vocabulary = vocabulary_for(config, tokenizer, text_size)
    return suffix_for(config, tokenizer, vocabulary), tokenizer, vocabulary


@pytest.mark.parametrize("order", ["codebook-major", "latent-major"])
@pytest.mark.parametrize("variant,tokenizer_variant", [("plan", "joint"), ("separate", "separate"),
                                                        ("noplan", "exec-only")])
def test_codes_ids_round_trip(order, variant, tokenizer_variant):
    layout, tokenizer, vocabulary = _layout(variant, order, tokenizer_variant)
    rng = np.random.default_rng(0)
    codes = {b.name: torch.from_numpy(rng.integers(0, 16, (5, 8, 3))) for b in layout.branches}
    ids = layout.codes_to_ids(codes)
    assert ids.shape == (5, layout.length)
    assert (ids[:, -1] == vocabulary.end_id).all()
    assert layout.is_valid(ids).all()
    back = layout.ids_to_codes(ids)
    for name in codes:
        torch.testing.assert_close(back[name], codes[name])
    # Ids are the tokenizer's own flat ids shifted by the start of the action range.
    for name in codes:
        flat = tokenizer.token_ids(codes[name].numpy(), name) + vocabulary.action_start  # (B, N, R)
        assert set(np.unique(flat)) == set(np.unique(ids[:, layout.span(name)].numpy()))


def test_codebook_major_puts_all_level_one_tokens_first():
    layout, _, _ = _layout("plan", "codebook-major")
    codes = torch.zeros(1, 8, 3, dtype=torch.long)
    codes[0, :, 0] = torch.arange(8)  # level 1 codes 0..7 over positions
    codes[0, :, 1] = 8 + torch.arange(8)
    exec_ids = layout.codes_to_ids({"plan": codes, "exec": codes})[0, layout.span("exec")] - layout.valid_low[24:48]
    assert exec_ids[:8].tolist() == list(range(8))  # level 1 of every position first
    assert exec_ids[8:16].tolist() == list(range(8, 16))  # then level 2
    latent, _, _ = _layout("plan", "latent-major")
    latent_ids = latent.codes_to_ids({"plan": codes, "exec": codes})[0, :3] - latent.valid_low[:3]
    assert latent_ids.tolist() == [0, 8, 0]  # position 0: levels 1, 2, 3


def test_valid_ranges_follow_branch_and_level():
    joint, _, vocab = _layout("plan")
    separate, _, vocab_sep = _layout("separate", tokenizer_variant="separate")
    # Joint: plan and exec share ids; level r of either branch is [start + 16 r, start + 16 (r + 1)).
    assert joint.valid_low[0] == vocab.action_start and joint.valid_low[24] == vocab.action_start
    assert joint.valid_low[8] == vocab.action_start + 16 and joint.valid_high[8] == vocab.action_start + 32
    # Separate: plan ids lie above every exec id (disjoint vocabularies).
    plan_span, exec_span = separate.span("plan"), separate.span("exec")
    assert separate.valid_low[plan_span].min() >= separate.valid_high[exec_span].max()
    assert separate.valid_low[-1] == vocab_sep.end_id and separate.valid_high[-1] == vocab_sep.end_id + 1


def test_vocabulary_appended_and_tail():
    appended = VocabularyLayout.appended(text_size=50, action_size=12288, state_bins=256)
    assert (appended.state_start, appended.action_start, appended.end_id, appended.total) == (50, 306, 12594, 12595)
    tail = VocabularyLayout.tail(vocab_size=257152, action_size=12288)
    # pi0-FAST's convention: the last 128 ids stay, actions and the end token sit right below them.
    assert tail.end_id == 257152 - 128 - 1 and tail.action_start == 257023 - 12288 == 244735
    assert tail.total == 257152
    with pytest.raises(ConfigError, match="do not fit"):
        VocabularyLayout.tail(vocab_size=1000, action_size=12288)


def test_attention_rule_from_groups():
    groups = [TokenGroup("image", 2, False), TokenGroup("instruction", 2, False), TokenGroup("suffix", 3, True)]
    valid = torch.tensor([[True, True, True, False, True, True, True]])  # instruction token 3 is padding
    mask = attention_mask(groups, valid)[0, 0]  # (T, T)
    assert mask[0, 2] and mask[2, 0]  # prefix is bidirectional
    assert not mask[0, 4] and not mask[3, 4]  # prefix never sees the suffix
    assert mask[4, 0] and mask[6, 2]  # suffix sees the prefix
    assert mask[6, 4] and not mask[4, 5]  # suffix is causal
    assert not mask[:, 3][torch.arange(7) != 3].any()  # padding is hidden from everyone else
    assert mask.diagonal().all()  # every row has at least itself
    with pytest.raises(ConfigError, match="precede"):
        attention_mask([TokenGroup("suffix", 1, True), TokenGroup("image", 1, False)], torch.ones(1, 2, dtype=bool))


def test_positions_skip_padding():
    valid = torch.tensor([[True, True, False, False, True]])
    assert positions_from_valid(valid).tolist() == [[1, 2, 2, 2, 3]]


def test_state_bins_cover_the_range():
    state = torch.tensor([[-1.0, -0.999, 0.0, 0.999, 1.0, 5.0]])
    assert state_to_bins(state, 256).tolist() == [[0, 0, 128, 255, 255, 255]]


def test_instruction_tokenizer_pads_truncates_and_round_trips(tmp_path):
    tokenizer = InstructionTokenizer.train(["Open the drawer", "pick_up the puck."])
    ids, mask = tokenizer.encode(["open the drawer", "pick up the puck . and more words"], max_tokens=5)
    assert ids.shape == (2, 5) and mask.tolist() == [[True, True, True, False, False], [True] * 5]
    assert (ids[0, 3:] == tokenizer.pad_id).all()
    unknown = tokenizer.encode(["close the window"], max_tokens=3)[0][0]
    assert unknown[0] == tokenizer.tokenizer.token_to_id("<unk>")  # unseen word
    loaded = InstructionTokenizer.load(tokenizer.save(tmp_path / "instr"))
    torch.testing.assert_close(loaded.encode(["pick up the puck"], 6)[0], tokenizer.encode(["pick up the puck"], 6)[0])


def test_suffix_layout_rejects_unknown_order():
    with pytest.raises(ConfigError, match="token order"):
        SuffixLayout([], end_id=0, order="level-major")


def test_last_rows_of_the_mask_equal_the_full_mask():
    groups = [TokenGroup("image", 3, False), TokenGroup("instruction", 2, False), TokenGroup("suffix", 4, True)]
    valid = torch.tensor([[True] * 4 + [False] + [True] * 4, [True] * 9])
    full = attention_mask(groups, valid)
    for last in (1, 3, 9):
        assert torch.equal(attention_mask(groups, valid, last=last), full[:, :, -last:])
