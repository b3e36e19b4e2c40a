"""PolicyConfig: variants, presets with "did you mean", field checks that name the field, JSON round trip."""

import pytest

from c2c.errors import ConfigError
from c2c.policy.config import PRESETS, VARIANTS, PolicyConfig, get_preset, policy_config


def test_variants_fix_the_plan_horizon_and_tokenizer():
    assert {name: spec.plan_horizon for name, spec in VARIANTS.items()} == {
        "plan": 160, "plan-hp40": 40, "noplan": 0, "separate": 160, "regress": 0, "binning": 0, "fast": 0}
    assert PolicyConfig(variant="noplan").has_plan is False
    assert PolicyConfig(variant="separate").tokenizer_variants == ("separate",)
    assert "exec-only" in PolicyConfig(variant="noplan").tokenizer_variants


def test_presets_and_did_you_mean():
    assert {"tiny", "paligemma-3b"} <= set(PRESETS)
    paligemma = get_preset("paligemma-3b")
    assert paligemma.pretrained and paligemma.text["num_hidden_layers"] == 18 and paligemma.text["head_dim"] == 256
    with pytest.raises(ConfigError, match="did you mean 'tiny'"):
        get_preset("tiyn")
    with pytest.raises(ConfigError, match="did you mean 'plan-hp40'"):
        PolicyConfig(variant="plan-hp4")
    with pytest.raises(ConfigError, match="did you mean 'replan_every'"):
        policy_config("tiny", replan_evry=10)
    tiny = policy_config("tiny")
    assert tiny.image_size == PRESETS["tiny"].image_size and tiny.backbone == "tiny"


@pytest.mark.parametrize("field,value,message", [
    ("exec_horizon", 0, "exec_horizon must be >= 1"),
    ("cameras", (), "cameras must be distinct"),
    ("cameras", ("a", "a"), "cameras must be distinct"),
    ("token_order", "level-major", "unknown token_order 'level-major'"),
    ("state_encoding", "text", "unknown state_encoding"),
    ("replan_every", 30, r"replan_every \(30\) must be <= exec_horizon \(20\)"),
    ("plan_steps", 7, r"plan_steps \(7\) must divide"),
    ("image_size", 100, "image_size 100 is not a multiple of the 'tiny' patch size 12"),
    ("temperature", -1.0, "temperature and top_k must be >= 0"),
])
def test_checks_name_the_field(field, value, message):
    with pytest.raises(ConfigError, match=message):
        PolicyConfig(**{field: value})


def test_json_round_trip():
    config = policy_config("tiny", variant="separate", cameras=["corner2"], token_order="latent-major")
    assert isinstance(config.cameras, tuple)
    assert PolicyConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ConfigError, match=r"unknown policy config keys \['colour'\]"):
        PolicyConfig.from_dict({**config.to_dict(), "colour": "red"})
