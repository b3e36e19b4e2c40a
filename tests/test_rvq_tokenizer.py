"""Contracts of the residual-VQ codec and the joint / separate / exec-only tokenizers."""

import numpy as np
import pytest
import torch

from c2c.data.normalize import ActionNormalizers, QuantileNormalizer
from c2c.errors import ConfigError
from c2c.tokenizer.codec import CodecConfig, RVQCodec
from c2c.tokenizer.metrics import overlap_mass
from c2c.tokenizer.rvq import ResidualVectorQuantizer
from c2c.tokenizer.rvq_tokenizer import RVQTokenizer

SMALL = dict(codebook_size=32, model_dim=32, depth=1, heads=2, latent_dim=16, mode_dim=8)


def _normalizers(dim=4):
    unit = QuantileNormalizer(q01=-np.ones(dim), q99=np.ones(dim))
    wide = QuantileNormalizer(q01=-8 * np.ones(dim), q99=8 * np.ones(dim))
    return ActionNormalizers(action=unit, plan=wide, state=unit)


def _smooth_chunks(n, horizon=20, dim=4, seed=0):
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 1, horizon)[None, :, None]
    a, b = rng.uniform(-0.8, 0.8, (n, 1, dim)), rng.uniform(-0.5, 0.5, (n, 1, dim))
    return (a + b * np.sin(3 * t)).astype(np.float32)  # (n, H, A)


def test_quantizer_decode_of_codes_equals_quantized_output():
    torch.manual_seed(0)
    rvq = ResidualVectorQuantizer(dim=8, num_levels=3, codebook_size=16).eval()
    latents = torch.randn(5, 7, 8)
    rvq.init_from_data(latents)
    quantized, codes, losses = rvq(latents)
    assert codes.shape == (5, 7, 3) and codes.min() >= 0 and codes.max() < 16
    torch.testing.assert_close(rvq.decode_codes(codes), quantized)
    assert set(losses) == {"commitment", "codebook"}


def test_codebook_gradients_do_not_depend_on_the_thread_count_or_the_run():
    """The codebook loss's gradient (Eq. 18) is summed over every latent that picked a code; with several CPU
    threads that sum must still come out the same in every run, so a pinned tokenizer training repeats."""
    from c2c.policy.testing import torch_threads

    torch.manual_seed(0)
    latents = torch.randn(20000, 16)
    rvq = ResidualVectorQuantizer(dim=16, num_levels=3, codebook_size=512).train()
    rvq.init_from_data(latents[:4096])

    def gradient(threads: int) -> torch.Tensor:
        rvq.zero_grad()
        with torch_threads(threads):
            _, _, losses = rvq(latents)
            losses["codebook"].backward()
        return rvq.codebooks.grad.clone()

    first = gradient(1)
    for threads in (2, 2, 2, 2):
        assert torch.equal(gradient(threads), first)


def test_residual_levels_reduce_the_error():
    torch.manual_seed(0)
    latents = torch.randn(2000, 8)
    errors = []
    for levels in (1, 2, 3):
        rvq = ResidualVectorQuantizer(dim=8, num_levels=levels, codebook_size=32).eval()
        rvq.init_from_data(latents)
        quantized, _, _ = rvq(latents)
        errors.append(float((quantized - latents).pow(2).mean()))
    assert errors[0] > errors[1] > errors[2]


def test_codec_patches_as_in_the_paper():
    codec = RVQCodec(CodecConfig(action_dim=7))
    assert codec.config.num_positions == 14  # 2 patches x 7 dims
    x = torch.arange(20 * 7, dtype=torch.float32).reshape(1, 20, 7)
    patches = codec.patchify(x)
    assert patches.shape == (1, 14, 10)
    torch.testing.assert_close(patches[0, 1], x[0, :10, 1])  # patch 0 of dim 1: steps 0..9
    torch.testing.assert_close(patches[0, 7], x[0, 10:, 0])  # patch 1 of dim 0: steps 10..19
    torch.testing.assert_close(codec.unpatchify(patches), x)


def test_paper_sizes_give_42_tokens_per_branch():
    tok = RVQTokenizer(CodecConfig(action_dim=7), _normalizers(7))
    assert tok.tokens_per_chunk("exec") == tok.tokens_per_chunk("plan") == 42
    assert (tok.codebook_size, tok.num_levels) == (4096, 3)


def test_short_training_lowers_reconstruction_error():
    torch.manual_seed(0)
    codec = RVQCodec(CodecConfig(action_dim=4, **SMALL))
    x = torch.from_numpy(_smooth_chunks(256))
    mode = torch.randint(0, 2, (256,))
    codec.quantizer.init_from_data(codec.encode_latents(x, mode).detach())
    before = float(codec(x, mode).l1.detach())
    optimizer = torch.optim.AdamW(codec.parameters(), lr=3e-3)
    for _ in range(60):
        out = codec(x, mode)
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
    assert float(codec(x, mode).l1.detach()) < 0.6 * before


def test_joint_shares_one_codebook_and_separate_does_not():
    joint = RVQTokenizer(CodecConfig(action_dim=4, **SMALL), _normalizers(), "joint")
    assert joint.codec("exec") is joint.codec("plan") and joint.shares_vocabulary
    separate = RVQTokenizer(CodecConfig(action_dim=4, **SMALL), _normalizers(), "separate")
    assert separate.codec("exec") is not separate.codec("plan") and not separate.shares_vocabulary
    codes = np.zeros((1, 8, 3), dtype=np.int64)
    exec_ids, plan_ids = separate.token_ids(codes, "exec"), separate.token_ids(codes, "plan")
    assert set(exec_ids.ravel()).isdisjoint(plan_ids.ravel())
    assert plan_ids.max() < separate.vocabulary_size
    np.testing.assert_array_equal(joint.token_ids(codes, "exec"), joint.token_ids(codes, "plan"))
    exec_only = RVQTokenizer(CodecConfig(action_dim=4, **SMALL), _normalizers(), "exec-only")
    with pytest.raises(ConfigError, match="no 'plan' mode"):
        exec_only.encode(_smooth_chunks(2), "plan")


def test_save_load_gives_identical_codes(tmp_path):
    torch.manual_seed(0)
    tok = RVQTokenizer(CodecConfig(action_dim=4, **SMALL), _normalizers(), "separate")
    chunks = _smooth_chunks(16)
    codes = {m: tok.encode(chunks * (4 if m == "plan" else 1), m) for m in ("exec", "plan")}
    tok.save_pretrained(tmp_path / "tok")
    again = RVQTokenizer.from_pretrained(tmp_path / "tok")
    for mode, expected in codes.items():
        np.testing.assert_array_equal(again.encode(chunks * (4 if mode == "plan" else 1), mode), expected)
        assert expected.min() >= 0 and expected.max() < tok.codebook_size
    np.testing.assert_allclose(again.decode(codes["exec"], "exec"), tok.decode(codes["exec"], "exec"), atol=1e-6)


def test_out_of_range_codes_decode_with_a_report():
    tok = RVQTokenizer(CodecConfig(action_dim=4, **SMALL), _normalizers())
    codes = tok.encode(_smooth_chunks(3), "exec")
    bad = codes.copy()
    bad[1, 0, 2] = 10_000
    bad[2, 3, 0] = -5
    actions, report = tok.decode(bad, "exec", return_report=True)
    assert actions.shape == (3, 20, 4) and np.isfinite(actions).all()
    np.testing.assert_array_equal(report.invalid_tokens, [0, 1, 1])
    np.testing.assert_allclose(actions[0], tok.decode(codes[:1], "exec")[0], atol=1e-5)
    with pytest.raises(ConfigError, match=r"code 10000 at sample 1, position 0, level 2 is outside \[0, 32\)"):
        tok.decode(bad, "exec")


@pytest.mark.parametrize(
    "chunks, match",
    [
        (np.zeros((2, 10, 4), np.float32), "must have 20 steps"),
        (np.zeros((2, 20, 7), np.float32), "expected 4-dim actions"),
        (np.full((2, 20, 4), np.nan, np.float32), "NaN or inf"),
    ],
)
def test_bad_actions_are_named(chunks, match):
    tok = RVQTokenizer(CodecConfig(action_dim=4, **SMALL), _normalizers())
    with pytest.raises(ConfigError, match=match):
        tok.encode(chunks, "exec")


def test_bad_code_shape_and_missing_checkpoint_file(tmp_path):
    tok = RVQTokenizer(CodecConfig(action_dim=4, **SMALL), _normalizers())
    with pytest.raises(ConfigError, match="codes must have shape"):
        tok.decode(np.zeros((1, 5, 3), np.int64), "exec")
    tok.save_pretrained(tmp_path / "tok")
    (tmp_path / "tok" / "model.safetensors").unlink()
    with pytest.raises(ConfigError, match="model.safetensors: missing"):
        RVQTokenizer.from_pretrained(tmp_path / "tok")


def test_overlap_mass_bounds():
    p = np.array([0.5, 0.5, 0.0, 0.0])
    assert overlap_mass(p, p) == pytest.approx(1.0)
    assert overlap_mass(p, np.array([0.0, 0.0, 0.3, 0.7])) == pytest.approx(0.0)
    assert overlap_mass(p, np.array([0.5, 0.0, 0.5, 0.0])) == pytest.approx(0.5)


def test_ema_option_trains_and_round_trips(tmp_path):
    torch.manual_seed(0)
    tok = RVQTokenizer(CodecConfig(action_dim=4, quantizer="ema", **SMALL), _normalizers())
    codec = tok.codec("exec")
    x = torch.from_numpy(_smooth_chunks(64))
    mode = torch.zeros(64, dtype=torch.long)
    codec.quantizer.init_from_data(codec.encode_latents(x, mode).detach())
    out = codec(x, mode)
    assert float(out.codebook) == 0.0 and float(out.commitment.detach()) >= 0.0
    out.loss.backward()
    codes = tok.encode(_smooth_chunks(4), "exec")
    tok.save_pretrained(tmp_path / "ema")
    np.testing.assert_array_equal(RVQTokenizer.from_pretrained(tmp_path / "ema").encode(_smooth_chunks(4), "exec"), codes)
    with torch.no_grad():
        latents = codec.encode_latents(x[:4], mode[:4])
        quantized, idx, _ = codec.quantizer.eval()(latents)
        torch.testing.assert_close(codec.quantizer.decode_codes(idx), quantized, atol=1e-5, rtol=1e-5)
