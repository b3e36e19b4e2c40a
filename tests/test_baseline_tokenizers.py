"""Binning and FAST baselines: round trips, shared vocabulary, save/load, repairs of malformed codes, bad input."""

import json

import numpy as np
import pytest

from c2c.data.normalize import ActionNormalizers, QuantileNormalizer
from c2c.errors import ConfigError
from c2c.tokenizer import load_tokenizer
from c2c.tokenizer.base import PAD_CODE
from c2c.tokenizer.binning import BinningTokenizer
from c2c.tokenizer.fast import FastTokenizer, dct_matrix, quantized_coefficients

ACTION_DIM = 4
EXEC_HORIZON = 20
PLAN_STEPS = 10
HORIZONS = {"exec": EXEC_HORIZON, "plan": PLAN_STEPS}


def smooth_chunks(rng: np.random.Generator, count: int, horizon: int, amplitude: float) -> np.ndarray:
    """(count, horizon, A) sums of two random low-frequency sines per dimension."""
    t = np.linspace(0.0, 1.0, horizon)[None, :, None]
    chunks = np.zeros((count, horizon, ACTION_DIM))
    for _ in range(2):
        frequency = rng.uniform(0.1, 1.0, (count, 1, ACTION_DIM))
        phase = rng.uniform(0.0, 2 * np.pi, (count, 1, ACTION_DIM))
        chunks += rng.uniform(0.1, 0.5, (count, 1, ACTION_DIM)) * np.sin(2 * np.pi * frequency * t + phase)
    return (amplitude * chunks).astype(np.float32)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    exec_chunks = smooth_chunks(rng, 1500, EXEC_HORIZON, amplitude=1.0)
    plan_chunks = smooth_chunks(rng, 1500, PLAN_STEPS, amplitude=5.0)  # plan steps sum several actions: wider range
    normalizers = ActionNormalizers(
        action=QuantileNormalizer.fit(exec_chunks),
        plan=QuantileNormalizer.fit(plan_chunks),
        state=QuantileNormalizer.fit(exec_chunks[:, 0]),
    )
    return {"exec": exec_chunks, "plan": plan_chunks, "normalizers": normalizers}


@pytest.fixture(scope="module")
def binning(data):
    normalizers = data["normalizers"]
    return BinningTokenizer(normalizers, action_dim=ACTION_DIM, exec_horizon=EXEC_HORIZON, plan_steps=PLAN_STEPS)


@pytest.fixture(scope="module")
def fast(data):
    return FastTokenizer.fit(
        data["normalizers"],
        data["exec"][:1000],
        data["plan"][:1000],
        action_dim=ACTION_DIM,
        exec_horizon=EXEC_HORIZON,
        plan_steps=PLAN_STEPS,
    )


def held_out(data, mode: str, count: int = 200) -> np.ndarray:
    """Chunks not used for fitting, clipped into [q01, q99] so normalization itself loses nothing."""
    normalizer = data["normalizers"].action if mode == "exec" else data["normalizers"].plan
    return np.clip(data[mode][-count:], normalizer.q01, normalizer.q99)


def normalized(data, mode: str, actions: np.ndarray) -> np.ndarray:
    normalizer = data["normalizers"].action if mode == "exec" else data["normalizers"].plan
    return normalizer.normalize(actions).astype(np.float64)


# --- round trips ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["exec", "plan"])
def test_binning_round_trip_within_half_a_bin(binning, data, mode):
    actions = held_out(data, mode)
    codes = binning.encode(actions, mode)
    assert codes.shape == (len(actions), HORIZONS[mode] * ACTION_DIM, 1)
    assert codes.dtype == np.int64 and codes.min() >= 0 and codes.max() < binning.codebook_size == 256
    decoded, report = binning.decode(codes, mode, return_report=True)
    error = np.abs(normalized(data, mode, decoded) - normalized(data, mode, actions))
    assert error.max() <= 1.0 / 256 + 1e-5  # half of a bin width 2 / 256
    assert not report.repaired.any() and report.invalid_tokens.sum() == 0


def test_binning_codes_are_time_major(binning, data):
    normalizer = data["normalizers"].action
    actions = np.broadcast_to(normalizer.q01, (1, EXEC_HORIZON, ACTION_DIM)).copy()
    actions[0, 1, 2] = normalizer.q99[2]  # step 1, dim 2 at the top of the range
    codes = binning.encode(actions)[0, :, 0]
    assert codes[1 * ACTION_DIM + 2] == 255
    assert np.count_nonzero(codes) == 1


@pytest.mark.parametrize("mode", ["exec", "plan"])
def test_fast_round_trip_error_is_the_coefficient_quantization(fast, data, mode):
    actions = held_out(data, mode)
    codes = fast.encode(actions, mode)
    decoded, report = fast.decode(codes, mode, return_report=True)
    # Orthonormal DCT: the chunk's RMS error equals the coefficients' RMS rounding error, at most 0.5 / scale.
    rms = np.sqrt(((normalized(data, mode, decoded) - normalized(data, mode, actions)) ** 2).mean(axis=(1, 2)))
    assert rms.max() <= 0.5 / fast.scale + 1e-4
    assert rms.mean() < 0.035  # uniform rounding error: 0.05 / sqrt(3) = 0.029
    assert not report.repaired.any() and report.invalid_tokens.sum() == 0


@pytest.mark.parametrize("mode", ["exec", "plan"])
def test_fast_codes_share_one_vocabulary_and_pad_only_after_the_end(fast, data, mode):
    codes = fast.encode(held_out(data, mode), mode)[:, :, 0]  # (B, N)
    content = codes != PAD_CODE
    lengths = content.sum(axis=1)
    # Padded to the longest sequence seen at fit time, or wider when a held-out chunk is longer: never truncated.
    assert codes.shape[1] == max(fast.tokens_per_chunk(mode), lengths.max())
    assert lengths.max() <= HORIZONS[mode] * ACTION_DIM  # BPE never emits more tokens than coefficients
    np.testing.assert_array_equal(content, np.arange(codes.shape[1])[None, :] < lengths[:, None])
    assert codes[content].min() >= 0 and codes[content].max() < fast.codebook_size <= 1024
    assert lengths.mean() < 0.6 * HORIZONS[mode] * ACTION_DIM  # BPE merges: far fewer tokens than coefficients


def test_fast_fit_records_the_longest_sequence_per_mode(fast, data):
    for mode in ("exec", "plan"):
        codes = fast.encode(data[mode][:1000], mode)  # exactly the chunks it was fitted on
        assert fast.tokens_per_chunk(mode) == (codes[:, :, 0] != PAD_CODE).sum(axis=1).max()


def test_fast_without_plan_chunks_bounds_plan_tokens_by_the_coefficient_count(data):
    tokenizer = FastTokenizer.fit(
        data["normalizers"], data["exec"][:300], action_dim=ACTION_DIM, plan_steps=PLAN_STEPS, vocab_size=256
    )
    assert tokenizer.tokens_per_chunk("plan") == PLAN_STEPS * ACTION_DIM
    decoded = tokenizer.decode(tokenizer.encode(held_out(data, "plan"), "plan"), "plan")
    assert np.abs(normalized(data, "plan", decoded) - normalized(data, "plan", held_out(data, "plan"))).max() < 0.2


# --- save / load ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["binning", "fast"])
def test_save_and_load_give_identical_codes(which, request, data, tmp_path):
    tokenizer = request.getfixturevalue(which)
    tokenizer.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["type"] == which and config["normalizers"] == data["normalizers"].to_dict()
    loaded = type(tokenizer).from_pretrained(tmp_path)
    assert type(load_tokenizer(tmp_path)) is type(tokenizer)  # the registry finds it by its recorded type
    for mode in ("exec", "plan"):
        actions = held_out(data, mode, count=50)
        np.testing.assert_array_equal(loaded.encode(actions, mode), tokenizer.encode(actions, mode))
        assert loaded.tokens_per_chunk(mode) == tokenizer.tokens_per_chunk(mode)
    assert loaded.codebook_size == tokenizer.codebook_size


@pytest.mark.parametrize("which", ["binning", "fast"])
def test_loading_a_missing_or_malformed_config_names_the_file(which, request, tmp_path):
    cls = type(request.getfixturevalue(which))
    with pytest.raises(ConfigError, match="config.json.*not found"):
        cls.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ConfigError, match="config.json"):
        cls.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"type": "rvq"}))
    with pytest.raises(ConfigError, match="config.json.*'rvq'"):
        cls.from_pretrained(tmp_path)


def test_binning_config_lacking_a_field_names_the_file(binning, tmp_path):
    binning.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    del config["bins"]
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match="config.json.*bins"):
        BinningTokenizer.from_pretrained(tmp_path)


def test_fast_missing_or_corrupt_bpe_file_names_it(fast, tmp_path):
    fast.save_pretrained(tmp_path)
    (tmp_path / "bpe.json").write_text('{"model": "garbage"}')
    with pytest.raises(ConfigError, match="bpe.json"):
        FastTokenizer.from_pretrained(tmp_path)
    (tmp_path / "bpe.json").unlink()
    with pytest.raises(ConfigError, match="bpe.json.*not found"):
        FastTokenizer.from_pretrained(tmp_path)


# --- malformed codes: never raise, decode the valid part, report the repair ------------------------------------


@pytest.mark.parametrize("which", ["binning", "fast"])
def test_random_garbage_codes_decode_in_range_and_are_reported(which, request, data):
    tokenizer = request.getfixturevalue(which)
    rng = np.random.default_rng(1)
    codes = rng.integers(-50, 3 * tokenizer.codebook_size, size=(64, 30, 1))
    codes[0] = np.clip(codes[0], 0, tokenizer.codebook_size - 1)  # one sequence of known ids (binning: too short)
    decoded, report = tokenizer.decode(codes, "exec", return_report=True)
    normalizer = data["normalizers"].action
    assert decoded.shape == (64, EXEC_HORIZON, ACTION_DIM) and np.isfinite(decoded).all()
    assert (decoded >= normalizer.q01 - 1e-5).all() and (decoded <= normalizer.q99 + 1e-5).all()
    assert report.repaired[1:].all() and (report.invalid_tokens[1:] > 0).all() and report.messages


def test_binning_out_of_range_ids_are_clipped(binning, data):
    codes = binning.encode(held_out(data, "exec", count=2))
    clean = binning.decode(codes)
    codes[0, 5, 0], codes[1, 6, 0] = 300, -7  # step 1: dims 1 and 2
    decoded, report = binning.decode(codes, return_report=True)
    np.testing.assert_array_equal(report.invalid_tokens, [1, 1])
    assert normalized(data, "exec", decoded)[0, 1, 1] == pytest.approx(1 - 1 / 256, abs=1e-5)  # top bin's centre
    assert normalized(data, "exec", decoded)[1, 1, 2] == pytest.approx(-1 + 1 / 256, abs=1e-5)  # bottom bin's centre
    untouched = np.ones(decoded.shape, dtype=bool)
    untouched[0, 1, 1] = untouched[1, 1, 2] = False
    np.testing.assert_array_equal(decoded[untouched], clean[untouched])


def test_binning_pad_in_the_middle_and_truncation_hold_the_previous_step(binning, data):
    codes = binning.encode(held_out(data, "exec", count=3))
    clean = binning.decode(codes)
    codes[0, 3 * ACTION_DIM + 1, 0] = PAD_CODE  # step 3, dim 1
    codes[1, 0, 0] = PAD_CODE  # step 0, dim 0: nothing earlier to hold -> mid-range
    decoded, report = binning.decode(codes, return_report=True)
    assert decoded[0, 3, 1] == clean[0, 2, 1]
    assert normalized(data, "exec", decoded)[1, 0, 0] == pytest.approx(0.0, abs=1e-5)
    np.testing.assert_array_equal(report.repaired, [True, True, False])

    truncated, report = binning.decode(codes[2:, : -ACTION_DIM - 1], return_report=True)  # last step and one more
    np.testing.assert_array_equal(truncated[0, :-2], clean[2, :-2])
    np.testing.assert_array_equal(truncated[0, -1], truncated[0, -2])
    assert truncated[0, -2, -1] == clean[2, -3, -1]
    assert report.invalid_tokens[0] == ACTION_DIM + 1


def test_binning_extra_tokens_and_levels_are_ignored(binning, data):
    codes = binning.encode(held_out(data, "exec", count=2))
    longer = np.concatenate([codes, np.full((2, 3, 1), 7)], axis=1)
    two_levels = np.concatenate([longer, np.full_like(longer, 9)], axis=2)
    decoded, report = binning.decode(two_levels, return_report=True)
    np.testing.assert_array_equal(decoded, binning.decode(codes))
    np.testing.assert_array_equal(report.invalid_tokens, [3 + longer.shape[1]] * 2)


@pytest.mark.parametrize("which", ["binning", "fast"])
def test_non_integer_codes_are_reported_not_raised(which, request, data):
    tokenizer = request.getfixturevalue(which)
    codes = tokenizer.encode(held_out(data, "exec", count=2)).astype(np.float64)
    codes[0, 0, 0], codes[1, 1, 0] = np.nan, 2.5
    decoded, report = tokenizer.decode(codes, return_report=True)
    assert np.isfinite(decoded).all() and report.repaired.all()


def test_fast_truncated_sequence_keeps_its_low_frequencies(fast):
    # Half-range chunks, so the low-pass reconstruction stays inside [-1, 1] and clipping cannot blur the check.
    rng = np.random.default_rng(2)
    normalizer = fast.normalizers.action
    x = 0.5 * smooth_chunks(rng, 32, EXEC_HORIZON, amplitude=1.0)  # normalized values in [-0.5, 0.5]
    actions = normalizer.unnormalize(x)
    codes = fast.encode(actions)
    lengths = (codes[:, :, 0] != PAD_CODE).sum(axis=1)
    kept = lengths // 2
    truncated = np.where(np.arange(codes.shape[1])[None, :, None] < kept[:, None, None], codes, PAD_CODE)
    decoded, report = fast.decode(truncated, return_report=True)
    assert report.repaired.all() and (report.invalid_tokens == 0).all()  # nothing dropped, coefficients missing

    coefficients = (dct_matrix(EXEC_HORIZON) @ normalizer.normalize(decoded)).reshape(32, -1)  # low frequencies first
    expected = quantized_coefficients(normalizer.normalize(actions), fast.scale, fast.bound) / fast.scale
    for row in range(32):
        # How many coefficients the kept tokens carry: the length of their BPE strings.
        carried = sum(len(fast.bpe.id_to_token(int(i))) for i in truncated[row, : kept[row], 0])
        assert 0 < carried < EXEC_HORIZON * ACTION_DIM
        np.testing.assert_allclose(coefficients[row, :carried], expected[row, :carried], atol=1e-4)
        np.testing.assert_allclose(coefficients[row, carried:], 0.0, atol=1e-4)


def test_fast_pad_inside_and_unknown_ids_are_dropped_and_the_rest_decodes(fast, data):
    actions = held_out(data, "exec", count=3)
    codes = fast.encode(actions)[:, :, 0]
    clean = fast.decode(codes[:, :, None])
    width = codes.shape[1]
    broken = np.full((3, width + 2), PAD_CODE)
    broken[0, :2], broken[0, 3 : width + 1] = codes[0, :2], codes[0, 2:]  # a PAD inserted after two tokens
    broken[1, :width], broken[1, 2] = codes[1], fast.codebook_size + 5  # one token replaced by an unknown id
    broken[2, :width] = codes[2]
    broken[2, (codes[2] != PAD_CODE).sum()] = codes[2, 0]  # one extra token after the end: more coefficients
    decoded, report = fast.decode(broken[:, :, None], return_report=True)

    np.testing.assert_allclose(decoded[0], clean[0], atol=1e-6)  # the PAD is skipped, every coefficient arrives
    np.testing.assert_allclose(decoded[2], clean[2], atol=1e-6)  # the extra coefficients are cut off
    # One token lost: the coefficients before it still arrive, so the chunk is decoded, not replaced by zeros.
    mid_range = fast.normalizers.action.unnormalize(np.zeros((EXEC_HORIZON, ACTION_DIM), dtype=np.float32))
    assert np.abs(decoded[1] - clean[1]).max() > 0
    assert np.abs(decoded[1] - mid_range).max() > 0.05
    np.testing.assert_array_equal(report.repaired, [True, True, True])
    np.testing.assert_array_equal(report.invalid_tokens[:2], [1, 1])


def test_fast_decode_of_empty_and_all_pad_codes(fast):
    decoded, report = fast.decode(np.full((2, 5, 1), PAD_CODE), return_report=True)
    expected = fast.normalizers.action.unnormalize(np.zeros((EXEC_HORIZON, ACTION_DIM), dtype=np.float32))
    np.testing.assert_allclose(decoded, np.broadcast_to(expected, decoded.shape))  # no content: the chunk's mean 0
    assert report.repaired.all() and (report.invalid_tokens == 0).all()
    assert fast.decode(np.zeros((0, 7, 1), dtype=np.int64)).shape == (0, EXEC_HORIZON, ACTION_DIM)


# --- bad input raises ConfigError naming the problem -------------------------------------------------------------


@pytest.mark.parametrize("which", ["binning", "fast"])
def test_bad_actions_raise_config_errors_naming_the_problem(which, request, data):
    tokenizer = request.getfixturevalue(which)
    good = held_out(data, "exec", count=2)
    with pytest.raises(ConfigError, match="expected 4-dim actions, got 3"):
        tokenizer.encode(good[:, :, :3])
    with pytest.raises(ConfigError, match="plan chunks must have 10 steps, got 20"):
        tokenizer.encode(good, "plan")
    with pytest.raises(ConfigError, match="exec chunks must have 20 steps, got 10"):
        tokenizer.encode(good[:, :10])
    with pytest.raises(ConfigError, match=r"\(B, H, A\)"):
        tokenizer.encode(good[0])
    for bad in (np.nan, np.inf):
        broken = good.copy()
        broken[1, 3, 2] = bad
        with pytest.raises(ConfigError, match="NaN or inf"):
            tokenizer.encode(broken)
    with pytest.raises(ConfigError, match="unknown tokenizer mode 'coarse'"):
        tokenizer.encode(good, "coarse")
    with pytest.raises(ConfigError, match=r"codes must be \(B, N, R\)"):
        tokenizer.decode(np.zeros(5, dtype=np.int64))


@pytest.mark.parametrize("which", ["binning", "fast"])
def test_plan_mode_without_plan_statistics_is_refused(which, request, data):
    tokenizer = request.getfixturevalue(which)
    normalizers = data["normalizers"]
    without_plan = ActionNormalizers(action=normalizers.action, plan=None, state=normalizers.state)
    if which == "binning":
        other = BinningTokenizer(without_plan, action_dim=ACTION_DIM, plan_steps=PLAN_STEPS)
    else:
        other = FastTokenizer(without_plan, tokenizer.bpe, action_dim=ACTION_DIM, plan_steps=PLAN_STEPS)
    assert other.encode(held_out(data, "exec", count=2)).shape[0] == 2  # exec mode needs no plan statistics
    with pytest.raises(ConfigError, match="plan normalization statistics"):
        other.encode(held_out(data, "plan", count=2), "plan")
    with pytest.raises(ConfigError, match="plan normalization statistics"):
        other.decode(np.zeros((1, 3, 1), dtype=np.int64), "plan")


def test_constructor_and_fit_check_their_settings(data):
    normalizers = data["normalizers"]
    with pytest.raises(ConfigError, match="action_dim is 5 but the action statistics are 4-dim"):
        BinningTokenizer(normalizers, action_dim=5)
    with pytest.raises(ConfigError, match="bins must be >= 2"):
        BinningTokenizer(normalizers, action_dim=ACTION_DIM, bins=1)
    with pytest.raises(ConfigError, match="vocab_size 50 is smaller than the 91 coefficient values"):
        FastTokenizer.fit(normalizers, data["exec"][:10], action_dim=ACTION_DIM, vocab_size=50)
    with pytest.raises(ConfigError, match="no chunks to train on"):
        FastTokenizer.fit(normalizers, data["exec"][:0], action_dim=ACTION_DIM)
    with pytest.raises(ConfigError, match=r"fit \(plan chunks\): plan chunks must have 10 steps"):
        FastTokenizer.fit(normalizers, data["exec"][:10], data["exec"][:10], action_dim=ACTION_DIM, plan_steps=10)
    with pytest.raises(ConfigError, match="scale must be a positive number"):
        FastTokenizer.fit(normalizers, data["exec"][:10], action_dim=ACTION_DIM, scale=0.0)
