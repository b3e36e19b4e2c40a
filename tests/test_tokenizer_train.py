"""Tokenizer training on a small dataset: metrics, saving, exact resume."""

import json

import numpy as np
import pytest

from c2c.errors import ConfigError
from c2c.tokenizer import load_tokenizer
from c2c.tokenizer.train import TokenizerTrainConfig, train_tokenizer

TINY = {"codebook_size": 16, "model_dim": 16, "depth": 1, "heads": 2, "latent_dim": 8, "mode_dim": 8}


def _config(dataset, out, **overrides):
    settings = dict(dataset=str(dataset), out=str(out), steps=6, batch_size=32, kmeans_samples=256,
                    checkpoint_every=3, eval_every=1000, dead_code_every=2, precision="fp32", codec=TINY)
    settings.update(overrides)
    return TokenizerTrainConfig(**settings)


@pytest.mark.parametrize("variant", ["joint", "exec-only", "separate"])
def test_each_variant_trains_and_saves(synthetic_dataset, tmp_path, variant):
    metrics = train_tokenizer(_config(synthetic_dataset, tmp_path / variant, variant=variant), show_progress=False)
    assert metrics["exec/l1"] > 0 and ("plan/l1" in metrics) == (variant != "exec-only")
    assert ("overlap_mass" in metrics) == (variant == "joint")
    saved = json.loads((tmp_path / variant / "metrics.json").read_text())
    assert saved["variant"] == variant
    tokenizer = load_tokenizer(tmp_path / variant)
    assert tokenizer.variant == variant and tokenizer.tokens_per_chunk() == 2 * 4 * 3


def test_interrupted_training_resumes_exactly(synthetic_dataset, tmp_path):
    straight = train_tokenizer(_config(synthetic_dataset, tmp_path / "a"), show_progress=False)
    assert train_tokenizer(_config(synthetic_dataset, tmp_path / "b"), show_progress=False, stop_after=4) is None
    assert not (tmp_path / "b" / "metrics.json").exists()
    resumed = train_tokenizer(_config(synthetic_dataset, tmp_path / "b"), show_progress=False)
    assert resumed["exec/l1"] == pytest.approx(straight["exec/l1"], rel=1e-5)
    chunks = np.random.default_rng(0).uniform(-1, 1, (8, 20, 4)).astype(np.float32)
    np.testing.assert_array_equal(load_tokenizer(tmp_path / "a").encode(chunks), load_tokenizer(tmp_path / "b").encode(chunks))


def test_resume_with_other_settings_is_refused(synthetic_dataset, tmp_path):
    train_tokenizer(_config(synthetic_dataset, tmp_path / "t"), show_progress=False, stop_after=3)
    with pytest.raises(ConfigError, match="other settings"):
        train_tokenizer(_config(synthetic_dataset, tmp_path / "t", lr=0.1), show_progress=False)


def test_joint_needs_plan_steps_equal_to_exec_horizon(synthetic_dataset, tmp_path):
    with pytest.raises(ConfigError, match="K=10 must equal the exec horizon He=20"):
        _config(synthetic_dataset, tmp_path, plan_steps=10, plan_horizon=80)


def test_eval_command_reports_mse_and_per_dim_error_and_writes_json(synthetic_dataset, tmp_path, capsys):
    from c2c.cli import main

    train_tokenizer(_config(synthetic_dataset, tmp_path / "joint"), show_progress=False)
    out = tmp_path / "eval" / "metrics.json"
    assert main(["tokenizer", "eval", "--tokenizer", str(tmp_path / "joint"), "--json", str(out)]) == 0
    assert "L1 per action dim (normalized)" in capsys.readouterr().out
    metrics = json.loads(out.read_text())
    assert metrics == json.loads((tmp_path / "joint" / "eval.json").read_text())
    for mode in ("exec", "plan"):
        per_dim = metrics[f"{mode}/l1_per_dim"]
        assert len(per_dim) == 4 and np.isclose(np.mean(per_dim), metrics[f"{mode}/l1"], rtol=1e-4)
        assert metrics[f"{mode}/mse"] > 0
