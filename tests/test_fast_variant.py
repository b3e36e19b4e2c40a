"""The `fast` variant: exec tokens of a FAST tokenizer (DCT + BPE), variable length up to the tokenizer's cap and
closed by the end token. It trains, saves, reloads, acts and serves like `binning`; the decoders force padding
after the first end; repairs are counted; bad tokenizers and bad codes fail in one line."""

from __future__ import annotations

import dataclasses
import importlib.util
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import serve_in_a_process, write_two_camera_dataset_and_tokenizer

from c2c.cli import main
from c2c.errors import ConfigError
from c2c.policy import load_policy
from c2c.policy.decoding import generate_suffix, prefill
from c2c.policy.model import PrefixInputs
from c2c.policy.policy import PlanExecutePolicy
from c2c.policy.testing import INSTRUCTIONS, debug_config, random_action_tokenizer, random_observation
from c2c.policy.tokens import Branch, SuffixLayout, VocabularyLayout
from c2c.policy.training.config import PolicyTrainConfig
from c2c.policy.training.data import training_action_tokenizer
from c2c.policy.training.loop import train_policy
from c2c.serve.client import PolicyClient
from c2c.serve.server import BackgroundServer, PolicyServer
from c2c.tokenizer.base import PAD_CODE
from c2c.tokenizer.binning import BinningTokenizer
from c2c.tokenizer.data import default_spec, load_chunks
from c2c.tokenizer.fast import FastTokenizer


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A 6-episode two-camera dataset at the debug preset's 16 px and a joint RVQ tokenizer trained on it."""
    root = tmp_path_factory.mktemp("fast")
    dataset, tokenizer = write_two_camera_dataset_and_tokenizer(root)
    return {"root": root, "dataset": dataset, "tokenizer": tokenizer}


@pytest.fixture(scope="module")
def fast_tokenizer():
    """A FAST tokenizer fitted on smooth 20-step, 4-dim chunks (unit statistics)."""
    rng = np.random.default_rng(0)
    t = np.linspace(0, 1, 20)[None, :, None]
    chunks = np.sin(2 * np.pi * (rng.uniform(0.3, 1.5, (200, 1, 4)) * t + rng.uniform(0, 1, (200, 1, 4))))
    normalizers = random_action_tokenizer("exec-only").normalizers
    tokenizer = FastTokenizer.fit(normalizers, chunks.astype(np.float32), None, action_dim=4, vocab_size=256)
    return tokenizer, chunks.astype(np.float32)


def _train(workspace, out, variant, tokenizer=None, **overrides):
    settings = dict(dataset=str(workspace["dataset"]), tokenizer=tokenizer, out=str(workspace["root"] / out),
                    variant=variant, preset="debug", steps=2, batch_size=4, checkpoint_every=2, eval_every=1000,
                    eval_frames=8, decode_frames=4, eval_batch_size=4)
    settings.update(overrides)
    return train_policy(PolicyTrainConfig(**settings), show_progress=False)


def test_fast_trains_saves_reloads_acts_and_serves(workspace):
    metrics = _train(workspace, "fast", "fast")
    out = workspace["root"] / "fast"
    assert {"loss/exec", "accuracy/exec", "exec_l1", "exec_l1_tokenizer"} <= set(metrics["heldout"])
    assert metrics["heldout"]["exec_l1_tokenizer"] < 0.05  # FAST's round trip at scale 10 is close
    saved = json.loads((out / "action_tokenizer" / "config.json").read_text())
    assert saved["type"] == "fast" and set(saved["max_tokens"]) == {"exec"}

    policy = PlanExecutePolicy.from_pretrained(out, variant="fast").eval()
    cap = policy.action_tokenizer.tokens_per_chunk("exec")
    branch = policy.suffix.branch("exec")
    assert (branch.positions, branch.levels, branch.ends) == (cap, 1, True)
    assert policy.suffix.length == cap + 1 and [b.name for b in policy.suffix.branches] == ["exec"]
    fitted = policy.action_tokenizer.tokenizer
    assert int(policy.suffix.valid_high[0] - policy.suffix.valid_low[0]) == fitted.codebook_size + 1  # ids + end
    # The cap covers every exec window of the dataset, held-out ones included: no target is cut.
    train, held, _, _ = load_chunks(workspace["dataset"], default_spec(workspace["dataset"], 20, 0, 20))
    assert fitted.encode(np.concatenate([train.exec_chunks, held.exec_chunks])).shape[1] == cap
    # Fitting is deterministic, so a resumed run fits the same tokenizer.
    refit = training_action_tokenizer("fast", None, workspace["dataset"], exec_horizon=20)
    assert refit.same_as(policy.action_tokenizer)

    observation = random_observation(policy.config, seed=3)
    chunk = policy.predict_action_chunk(observation)
    assert chunk.shape == (20, 4) and np.isfinite(chunk).all()
    last = policy.generate(observation)[0]
    assert last.repaired.shape == (1,) and last.unended.shape == (1,)
    actions, plan = policy.predict_action_chunk(random_observation(policy.config, batch_size=2), return_plan=True)
    assert actions.shape == (2, 20, 4) and plan is None
    assert policy.decode_counts["chunks"] == 4
    policy.config = policy.config.replace(replan_every=3)
    policy.reset()
    steps = [policy.select_action(observation) for _ in range(4)]
    np.testing.assert_allclose(np.stack(steps[:3]), chunk[:3], atol=1e-6)
    assert policy.last_chunk.repaired is not None

    served = load_policy(out)  # the loader of `c2c serve`: no flag names the variant
    assert type(served) is PlanExecutePolicy and served.config.variant == "fast"
    with BackgroundServer(PolicyServer(served, port=0)) as running, PolicyClient(running.url) as client:
        assert (client.metadata["variant"], client.metadata["has_plan"]) == ("fast", False)
        reply = client.infer(observation)
    np.testing.assert_allclose(reply["actions"], chunk, atol=1e-5)
    np.testing.assert_allclose(serve_in_a_process(out, observation), chunk, atol=1e-5)

    # The saved FAST tokenizer is accepted by --tokenizer (and its codes are cached, keyed by its files).
    policy.action_tokenizer.save_pretrained(workspace["root"] / "fast-tokenizer")
    again = _train(workspace, "fast-saved", "fast", tokenizer=str(workspace["root"] / "fast-tokenizer"))
    assert again["codes_computed_this_run"] is True
    assert any((workspace["root"] / "fast-saved" / "codes").glob("*.npz"))


def _fast_policy(fast_tokenizer, **overrides):
    tokenizer, _ = fast_tokenizer
    torch.manual_seed(0)
    return PlanExecutePolicy.build(debug_config("fast", **overrides), tokenizer, INSTRUCTIONS).eval()


def test_training_targets_are_ids_then_the_end_then_padding(fast_tokenizer):
    policy = _fast_policy(fast_tokenizer)
    tokenizer, chunks = fast_tokenizer
    suffix, end = policy.suffix, policy.suffix.end_id
    cap = tokenizer.tokens_per_chunk("exec")
    codes = tokenizer.encode(chunks[:8])  # (8, cap, 1), PAD_CODE after each end
    lengths = (codes[:, :, 0] != PAD_CODE).sum(axis=1)
    assert codes.shape == (8, cap, 1) and lengths.min() < cap
    ids = suffix.codes_to_ids({"exec": torch.from_numpy(codes)})  # (8, cap + 1)
    for row, length in zip(ids.tolist(), lengths.tolist(), strict=True):
        assert all(suffix.valid_low[0] <= i < end for i in row[:length])
        assert row[length:] == [end] * (cap + 1 - length)  # the end token, then the end id as padding
    np.testing.assert_array_equal(suffix.ids_to_codes(ids)["exec"].numpy(), codes)
    assert not suffix.unended(ids).any() or lengths.max() == cap
    # Padding is left out of the loss: it covers each chunk's ids and its end token, nothing after.
    real = ~suffix.padding(ids)
    assert real.sum(dim=1).tolist() == (lengths + 1).tolist()
    batch = dict(random_observation(policy.config, batch_size=8))
    batch["codes.exec"] = codes
    loss, metrics = policy(batch)
    inputs, _ = policy.processor.prefix_inputs(batch)
    with torch.no_grad():
        out = policy.model(inputs, ids)
    token_loss = F.cross_entropy(out.logits.flatten(0, 1), ids.flatten(), reduction="none").view_as(ids)
    torch.testing.assert_close(loss.detach(), token_loss[real].mean())
    ends = real & (ids == end)  # one real end token per sample, wherever it comes
    assert ends.sum(dim=1).tolist() == [1] * 8
    torch.testing.assert_close(metrics["loss/end"], token_loss[ends].mean())
    torch.testing.assert_close(metrics["loss/exec"], token_loss[real & ~ends].mean())


def test_a_pretrained_vocabulary_keeps_one_id_range_per_position():
    """In the tail of a 257,152-id PaliGemma vocabulary the end id still follows the FAST ids directly."""
    vocabulary = VocabularyLayout.tail(257_152, 1024)
    suffix = SuffixLayout([Branch("exec", 40, 1, 1024, vocabulary.action_start, ends=True)], vocabulary.end_id)
    assert vocabulary.end_id == 257_023 and vocabulary.action_start == 257_023 - 1024
    assert suffix.valid_low[:40].eq(vocabulary.action_start).all()
    assert suffix.valid_high[:40].eq(vocabulary.end_id + 1).all()
    with pytest.raises(ConfigError, match=r"variable-length branch 'exec' must be the last, of one level, with the "
                                          r"end id 257023 right after its 1000 ids"):
        SuffixLayout([Branch("exec", 40, 1, 1000, vocabulary.action_start, ends=True)], vocabulary.end_id)


def test_the_length_cap_and_the_repair_count(fast_tokenizer):
    policy = _fast_policy(fast_tokenizer)
    tokenizer, chunks = fast_tokenizer
    suffix, end = policy.suffix, policy.suffix.end_id
    cap, low = suffix.branch("exec").positions, int(suffix.valid_low[0])
    one_coefficient = tokenizer.bpe.token_to_id(chr(0x100 + tokenizer.bound))  # the single integer 0
    good = suffix.codes_to_ids({"exec": torch.from_numpy(tokenizer.encode(chunks[:1]))})[0]
    no_end = torch.full((cap + 1,), low + one_coefficient)  # cap ids, no end: cap coefficients, not 80
    no_end[-1] = end
    early = torch.full((cap + 1,), end)  # one id, then the end: 1 coefficient
    early[0] = low + one_coefficient
    chunk = policy.decode_ids(torch.stack([good, no_end, early]))
    assert chunk.repaired.tolist() == [False, True, True]
    assert chunk.unended.tolist() == [False, True, False]
    assert chunk.actions.shape == (3, 20, 4) and np.isfinite(chunk.actions).all()  # repaired, never all-zero
    assert policy.decode_counts == {"chunks": 3, "repaired": 2, "unended": 1}
    policy.reset()  # a new episode keeps the counts
    assert policy.decode_counts["repaired"] == 2
    policy.reset_decode_counts()
    assert policy.decode_counts == {"chunks": 0, "repaired": 0, "unended": 0}

    # Generated: a model that never ranks the end first runs every sample to the cap; the repair is counted.
    inputs, _ = policy.processor.prefix_inputs(random_observation(policy.config, batch_size=2))
    model = policy.model
    logits = type(model).logits

    def never_end(hidden, first=0, last=None):
        out = logits(model, hidden, first, last).clone()
        out[..., -1] = float("-inf") if last == end + 1 else out[..., -1]
        out[..., one_coefficient] = 1e4  # always the one-coefficient token
        return out

    model.logits = never_end
    try:
        ids = generate_suffix(model, inputs, method="reference")
    finally:
        del model.logits
    assert ids.shape == (2, cap + 1) and (ids[:, :cap] == low + one_coefficient).all()
    chunk = policy.decode_ids(ids)
    assert chunk.unended.all() and chunk.repaired.all()
    assert policy.decode_counts == {"chunks": 2, "repaired": 2, "unended": 2}


def _end_first_for_sample_zero(policy, inputs):
    """Make the end id the greedy choice of sample 0 at the first exec position: its LM-head row becomes 1.5 x the
    row of that sample's best id (tied with the embedding, so the end's input embedding changes too)."""
    model, suffix = policy.model, policy.suffix
    low, high = int(suffix.valid_low[0]), int(suffix.valid_high[0])
    with torch.no_grad():
        _, hidden = prefill(model, inputs)  # (B, D): predicts the first exec token
        logits = model.logits(hidden[0], low, high - 1)  # sample 0, the FAST ids only
        assert float(logits.max()) > 0
        weight = model.backbone.lm_head.weight
        weight[suffix.end_id] = 1.5 * weight[int(logits.argmax()) + low]


@pytest.mark.parametrize("backbone", ["debug", "debug-multistream"])
def test_the_fast_loop_gives_the_reference_tokens(fast_tokenizer, backbone):
    policy = _fast_policy(fast_tokenizer, backbone=backbone)
    suffix, end = policy.suffix, policy.suffix.end_id
    inputs, _ = policy.processor.prefix_inputs(random_observation(policy.config, batch_size=2, seed=1))
    if backbone == "debug":
        _end_first_for_sample_zero(policy, inputs)
    for options in ({}, {"temperature": 1.0, "top_k": 20}, {"temperature": 2.0}):
        runs = [generate_suffix(policy.model, inputs, method=method, generator=torch.Generator().manual_seed(4),
                                **options) for method in ("fast", "reference")]
        torch.testing.assert_close(runs[0], runs[1], rtol=0, atol=0)
        ids = runs[0]
        assert bool(suffix.is_valid(ids).all())  # the constrained vocabulary holds at every position
        ended = suffix.ended_after(ids[:, :-1])
        assert bool((ids[:, :-1][ended] == end).all())  # after the first end, only padding
    if backbone == "debug":
        greedy = generate_suffix(policy.model, inputs)
        assert (greedy[0] == end).all()  # sample 0 ended at once; padding forced to the last position
        one = PrefixInputs(**{f.name: getattr(inputs, f.name)[:1] for f in dataclasses.fields(inputs)})
        for method in ("fast", "reference"):  # every sample has ended after one step: the loops stop there
            assert (generate_suffix(policy.model, one, method=method) == end).all()


def test_bad_inputs_fail_in_one_line(workspace, fast_tokenizer, capsys):
    tokenizer, chunks = fast_tokenizer
    root = workspace["root"]
    binning_dir = BinningTokenizer(random_action_tokenizer("exec-only").normalizers,
                                   action_dim=4).save_pretrained(root / "binning-tokenizer")
    fast_dir = tokenizer.save_pretrained(root / "fast-unit-tokenizer")
    needs_fast = r"variant 'fast' needs a FAST tokenizer \(or no --tokenizer: one is fitted on the dataset\)"
    with pytest.raises(ConfigError, match=r"a 'rvq' tokenizer; " + needs_fast):
        _train(workspace, "bad-fast-rvq", "fast", tokenizer=str(workspace["tokenizer"]))
    with pytest.raises(ConfigError, match=r"a 'binning' tokenizer; " + needs_fast):
        _train(workspace, "bad-fast-binning", "fast", tokenizer=str(binning_dir))
    with pytest.raises(ConfigError, match=r"a 'fast' tokenizer; variant 'binning' needs a binning tokenizer"):
        _train(workspace, "bad-binning-fast", "binning", tokenizer=str(fast_dir))
    with pytest.raises(ConfigError, match=r"a 'fast' tokenizer; variant 'noplan' needs an RVQ tokenizer \(c2c "
                                          r"tokenizer train --variant exec-only\)"):
        _train(workspace, "bad-noplan-fast", "noplan", tokenizer=str(fast_dir))
    with pytest.raises(ConfigError, match=r"variant 'fast' does not serve policy variant 'binning'"):
        PlanExecutePolicy.build(debug_config("binning"), tokenizer, INSTRUCTIONS)
    with pytest.raises(ConfigError, match=r"variant 'binning' does not serve policy variant 'fast'"):
        PlanExecutePolicy.build(debug_config("fast"), BinningTokenizer(tokenizer.normalizers, action_dim=4),
                                INSTRUCTIONS)
    # A saved FAST tokenizer whose length cap the dataset's chunks exceed.
    short = FastTokenizer(tokenizer.normalizers, tokenizer.bpe, action_dim=4, max_tokens={"exec": 2})
    short_dir = short.save_pretrained(root / "short-fast-tokenizer")
    with pytest.raises(ConfigError, match=r"--tokenizer .*short-fast-tokenizer: \d+ of the dataset's exec windows "
                                          r"encode to more than its 2-token length cap .*omit --tokenizer"):
        _train(workspace, "bad-cap", "fast", tokenizer=str(short_dir))

    # Training codes that decode to the wrong length, or with a code after the padding.
    policy = _fast_policy(fast_tokenizer)
    batch = dict(random_observation(policy.config, batch_size=2))
    codes = tokenizer.encode(chunks[:2])
    length = int((codes[0, :, 0] != PAD_CODE).sum())
    cut = codes.copy()
    cut[0, length - 1] = PAD_CODE  # its last token dropped: fewer than 20 x 4 coefficients
    with pytest.raises(ConfigError, match=r"codes\.exec: sample 0 \(of 1 such\) does not decode to a 20-step chunk "
                                          r"with this policy's FAST tokenizer .*encode the chunks with the policy's "
                                          r"own action tokenizer"):
        policy({**batch, "codes.exec": cut})
    gap = codes.copy()
    gap[1, 0] = PAD_CODE
    with pytest.raises(ConfigError, match=r"codes\.exec: sample 1 has a code at position 1 after PAD_CODE"):
        policy({**batch, "codes.exec": gap})

    code = main(["policy", "train", "--dataset", str(workspace["dataset"]), "--tokenizer", str(workspace["tokenizer"]),
                 "--out", str(root / "cli-fast"), "--variant", "fast", "--preset", "debug"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "variant 'fast' needs a FAST tokenizer" in err


@pytest.mark.sim
def test_eval_metaworld_loads_a_fast_policy_without_a_flag(fast_tokenizer, tmp_path, capsys):
    if importlib.util.find_spec("metaworld") is None:
        pytest.skip("metaworld is not installed (pip install -e '.[sim]')")
    import c2c.envs.metaworld_env  # noqa: F401 - before mujoco: it picks OSMesa
    from c2c.envs.metaworld_tasks import instruction

    tokenizer, _ = fast_tokenizer
    policy = PlanExecutePolicy.build(debug_config("fast", cameras=("corner2", "gripperPOV")), tokenizer,
                                     instructions=[instruction("reach")])
    directory = policy.save_pretrained(tmp_path / "policy")
    out = tmp_path / "eval"
    assert main(["eval", "metaworld", "--policy", str(directory), "--tasks", "reach", "--episodes", "1", "--seed",
                 "0", "--max-steps", "3", "--workers", "1", "--allow-unknown-training-seeds", "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["tasks"]["reach-v3"]["rollouts"][0]["steps"] == 3, capsys.readouterr().err
    # The chunks the FAST decoder had to repair are counted, per task and overall (an untrained policy: one chunk).
    decoding = results["tasks"]["reach-v3"]["decoding"]
    assert decoding["chunks"] == 1 and 0 <= decoding["repaired"] <= 1 and results["decoding"] == decoding
