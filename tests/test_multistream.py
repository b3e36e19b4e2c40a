"""The multi-stream backbone (App. C.3): routing, mask, PaliGemma weight mapping, decoding, training, save / load."""

import dataclasses
import json

import numpy as np
import pytest
import torch
from conftest import write_two_camera_dataset_and_tokenizer

from c2c.errors import ConfigError
from c2c.policy import config as config_module
from c2c.policy.backbone import load_pretrained_backbone
from c2c.policy.config import PRESETS, policy_config
from c2c.policy.decoding import generate_suffix
from c2c.policy.multistream import (
    STREAMS,
    MultiStreamVLA,
    check_streams,
    multistream_from_paligemma,
    paligemma_to_multistream_name,
)
from c2c.policy.policy import PlanExecutePolicy
from c2c.policy.testing import (
    INSTRUCTIONS,
    TOKENIZER_VARIANT,
    random_action_tokenizer,
    random_batch,
    random_observation,
    save_random_paligemma,
    torch_threads,
)
from c2c.policy.tokens import TokenGroup, VocabularyLayout, attention_mask, positions_from_valid
from c2c.policy.training.config import OPTIMIZER_DEFAULTS, PolicyTrainConfig
from c2c.policy.training.loop import train_policy

SMALL_STREAMS = dict(proprio=dict(hidden_size=16, intermediate_size=32),
                     action=dict(hidden_size=24, intermediate_size=40))


@pytest.fixture(autouse=True)
def _one_thread():
    with torch_threads(1):
        yield


def _policy(variant="plan", **overrides):
    values = dict(variant=variant, cameras=("front", "wrist"), state_dim=4, action_dim=4)
    values.update(overrides)
    config = policy_config("debug-multistream", **values)
    return PlanExecutePolicy.build(config, random_action_tokenizer(TOKENIZER_VARIANT[variant]), INSTRUCTIONS).eval()


@pytest.fixture(scope="module")
def paligemma_dir(tmp_path_factory):
    return save_random_paligemma(tmp_path_factory.mktemp("paligemma") / "backbone", image_size=32, vocab_size=600)


def test_presets_and_their_optimiser_defaults():
    c3 = PRESETS["paligemma-3b-multistream"]
    assert c3.pretrained and c3.multistream and c3.text["hidden_size"] == 2048
    assert (c3.text["num_hidden_layers"], c3.text["num_attention_heads"], c3.text["num_key_value_heads"],
            c3.text["head_dim"]) == (18, 8, 1, 256)
    assert {name: spec["hidden_size"] for name, spec in c3.streams.items()} == {"proprio": 1024, "action": 1024}
    assert not PRESETS["nano"].multistream
    assert set(PRESETS) <= set(OPTIMIZER_DEFAULTS)
    assert policy_config("tiny-multistream").loss_vocabulary == "valid"
    with pytest.raises(ConfigError, match=r"streams must size exactly \['proprio', 'action'\], got \['action'\]"):
        check_streams({"action": {"hidden_size": 4, "intermediate_size": 8}})
    with pytest.raises(ConfigError, match=r"streams\['proprio'\]\['hidden_size'\] must be >= 1, got 0"):
        check_streams({"action": {"hidden_size": 4, "intermediate_size": 8},
                       "proprio": {"hidden_size": 0, "intermediate_size": 8}})


def test_each_token_passes_through_its_own_streams_weights():
    policy = _policy("plan", state_encoding="bins")
    model = policy.model
    seen: dict[tuple[int, str], int] = {}
    hooks = []
    for index, layer in enumerate(model.backbone.decoder.layers):
        for name in STREAMS:
            def record(module, args, output, key=(index, name)):
                seen[key] = seen.get(key, 0) + args[0].shape[1]
            hooks.append(layer[name].self_attn.k_proj.register_forward_hook(record))
    try:
        inputs, _ = policy.processor.prefix_inputs(random_batch(policy.config, 2), policy.device)
        model.hidden_states(inputs, model.suffix.valid_low[None, :5].repeat(2, 1))
    finally:
        for hook in hooks:
            hook.remove()
    vlm = 2 * model.image_tokens + policy.config.max_instruction_tokens  # two cameras + instruction
    for index in range(len(model.backbone.decoder.layers)):
        assert seen[(index, "vlm")] == vlm
        assert seen[(index, "proprio")] == policy.config.state_dim  # one bin token per state dimension
        assert seen[(index, "action")] == 1 + 5  # the begin token + 5 suffix tokens


def test_streams_and_mask_perturbations():
    model = _policy("plan").model
    decoder = model.backbone.decoder
    generator = torch.Generator().manual_seed(0)
    runs = [("vlm", torch.randn(2, 6, 32, generator=generator)),
            ("proprio", torch.randn(2, 1, 16, generator=generator)),
            ("action", torch.randn(2, 5, 16, generator=generator))]
    groups = [TokenGroup("prefix", 7, causal=False), TokenGroup("suffix", 5, causal=True)]
    valid = torch.ones(2, 12, dtype=torch.bool)
    valid[1, 2] = False  # a padded VLM token
    mask, positions = attention_mask(groups, valid), positions_from_valid(valid)

    def outputs(changed_runs=runs):
        with torch.no_grad():
            return decoder(changed_runs, mask, positions)

    def perturbed(weight, **kwargs):
        original = weight.detach().clone()
        with torch.no_grad():
            weight.add_(1.0)
        try:
            return decoder(runs, mask, positions, **kwargs)
        finally:
            with torch.no_grad():
                weight.copy_(original)

    base = outputs()
    # The prefix never sees the suffix: changing the action stream's weights leaves VLM and proprio outputs alone.
    changed = perturbed(decoder.layers[0]["action"].mlp.up_proj.weight)
    torch.testing.assert_close(changed[0], base[0], rtol=0, atol=0)
    torch.testing.assert_close(changed[1], base[1], rtol=0, atol=0)
    assert not torch.allclose(changed[2], base[2])
    # The proprio stream's weights reach every token through attention (the prefix is bidirectional) ...
    changed = perturbed(decoder.layers[0]["proprio"].self_attn.v_proj.weight)
    assert all(not torch.allclose(a, b) for a, b in zip(changed, base))
    # ... but its last-layer MLP only reaches its own token, which the action stream's outputs never read.
    changed = perturbed(decoder.layers[-1]["proprio"].mlp.down_proj.weight)
    action_only = perturbed(decoder.layers[-1]["proprio"].mlp.down_proj.weight, outputs=("action",))
    torch.testing.assert_close(changed[0], base[0], rtol=0, atol=0)
    assert not torch.allclose(changed[1], base[1])
    torch.testing.assert_close(changed[2], base[2], rtol=0, atol=0)
    assert action_only[:2] == [None, None]
    torch.testing.assert_close(action_only[2], base[2], rtol=1e-6, atol=1e-6)
    # Causal suffix: changing action token 3's input changes only outputs 3 and 4.
    moved = [runs[0], runs[1], ("action", runs[2][1].clone())]
    moved[2][1][:, 3] += 1.0
    changed = outputs(moved)
    torch.testing.assert_close(changed[2][:, :3], base[2][:, :3], rtol=1e-6, atol=1e-6)
    assert not torch.allclose(changed[2][:, 3:], base[2][:, 3:])


def test_paligemma_weights_map_into_the_vlm_stream_and_match_the_gemma_decoder(paligemma_dir):
    assert (paligemma_to_multistream_name("model.language_model.layers.11.self_attn.k_proj.weight")
            == "decoder.layers.11.vlm.self_attn.k_proj.weight")
    assert paligemma_to_multistream_name("model.vision_tower.post_layernorm.bias") == "vision_tower.post_layernorm.bias"
    assert paligemma_to_multistream_name("lm_head.weight") is None
    paligemma = load_pretrained_backbone(paligemma_dir)
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        for parameter in paligemma.parameters():  # norms start at 0: make every weight distinctive
            parameter.add_(0.1 * torch.randn_like(parameter))
    expected = {name: tensor.clone() for name, tensor in paligemma.state_dict().items()}
    backbone = multistream_from_paligemma(paligemma, SMALL_STREAMS, VocabularyLayout.tail(600, 48), seed=0)
    state = backbone.state_dict()
    mapped = set()
    for name, tensor in expected.items():
        target = paligemma_to_multistream_name(name)
        if target is not None:
            torch.testing.assert_close(state[target], tensor, rtol=0, atol=0)
            mapped.add(target)
    fresh = {name for name in state if name not in mapped}
    assert fresh and all(".proprio." in n or ".action." in n or n.startswith("action_") for n in fresh)
    # Only VLM-stream tokens: the multi-stream decoder is the Gemma decoder.
    generator = torch.Generator().manual_seed(0)
    embeds = torch.randn(2, 9, 32, generator=generator)
    valid = torch.ones(2, 9, dtype=torch.bool)
    valid[0, 4] = False
    mask = attention_mask([TokenGroup("prefix", 6, causal=False), TokenGroup("suffix", 3, causal=True)], valid)
    positions = positions_from_valid(valid)
    with torch.no_grad():
        ours = backbone.decoder([("vlm", embeds)], mask, positions)[0]
        gemma = paligemma.model.language_model(inputs_embeds=embeds, attention_mask=mask,
                                               position_ids=positions).last_hidden_state
    torch.testing.assert_close(ours, gemma, rtol=1e-5, atol=1e-5)
    shape = dict(backbone.named_parameters())["decoder.layers.0.action.self_attn.q_proj.weight"].shape
    assert tuple(shape) == (2 * 16, 24)  # the action stream's width -> the shared head space (2 heads x 16)


@pytest.mark.parametrize("variant,state_encoding", [("plan", "projection"), ("noplan", "bins")])
def test_cached_decoding_equals_uncached_and_teacher_forced_argmax(variant, state_encoding):
    policy = _policy(variant, state_encoding=state_encoding)
    model = policy.model
    inputs, _ = policy.processor.prefix_inputs(random_observation(policy.config, batch_size=3), policy.device)
    cached = generate_suffix(model, inputs)
    torch.testing.assert_close(cached, generate_suffix(model, inputs, use_cache=False), rtol=0, atol=0)
    with torch.no_grad():
        logits = model.next_token_logits(inputs, cached[:, :-1])  # (B, T, V)
    torch.testing.assert_close(model._constrained_argmax(logits), cached, rtol=0, atol=0)
    assert torch.isinf(logits[..., : model.vocabulary.action_start]).all()  # the action stream emits actions only
    if variant == "plan":
        plan = cached[:, model.suffix.span("plan")]
        reused = generate_suffix(model, inputs, plan_ids=plan)
        torch.testing.assert_close(reused, cached, rtol=0, atol=0)


def test_trainable_parameters_all_get_gradients_and_the_full_loss_covers_the_action_vocabulary():
    policy = _policy("plan").train()
    loss, metrics = policy(random_batch(policy.config, 2))
    loss.backward()
    missing = [name for name, p in policy.model.named_parameters() if p.requires_grad and p.grad is None]
    assert missing == []  # what DDP needs; the unread last-layer weights are frozen
    frozen = [name for name, p in policy.model.named_parameters() if not p.requires_grad]
    assert "backbone.decoder.norms.vlm.weight" in frozen and not any(".action." in n for n in frozen)
    # A random model spreads the softmax over the action ids and the end id, not the text vocabulary.
    rows = policy.model.backbone.config.action_rows
    assert abs(float(metrics["loss/exec"]) - np.log(rows)) < 0.5


def test_save_and_load_round_trip(tmp_path):
    policy = _policy("plan")
    observation = random_observation(policy.config, seed=3)
    actions = policy.predict_action_chunk(observation)
    directory = policy.save_pretrained(tmp_path / "ckpt")
    saved = json.loads((directory / "config.json").read_text())
    assert saved["backbone"]["model_type"] == "c2c-multistream" and saved["backbone"]["streams"]["action"]
    loaded = PlanExecutePolicy.from_pretrained(directory, backbone="debug-multistream")
    assert isinstance(loaded.model, MultiStreamVLA)
    for name, tensor in policy.model.state_dict().items():
        torch.testing.assert_close(loaded.model.state_dict()[name], tensor, rtol=0, atol=0)
    np.testing.assert_array_equal(loaded.predict_action_chunk(observation), actions)
    # A single-stream backbone config under a multi-stream preset is refused.
    saved["policy"]["backbone"] = "debug"
    (directory / "config.json").write_text(json.dumps(saved))
    with pytest.raises(ConfigError, match="does not match backbone 'debug'"):
        PlanExecutePolicy.from_pretrained(directory)


def test_paligemma_3b_multistream_loads_its_vlm_stream_from_a_stand_in(paligemma_dir, monkeypatch, tmp_path):
    preset = dataclasses.replace(PRESETS["paligemma-3b-multistream"], streams=SMALL_STREAMS)
    monkeypatch.setitem(config_module.PRESETS, "paligemma-3b-multistream", preset)
    config = policy_config("paligemma-3b-multistream", variant="plan", cameras=("image", "image2"), state_dim=4,
                           action_dim=4, image_size=32, backbone_path=str(paligemma_dir))
    policy = PlanExecutePolicy.build(config, random_action_tokenizer("joint"))
    paligemma = load_pretrained_backbone(paligemma_dir)
    torch.testing.assert_close(policy.model.backbone.decoder.layers[1]["vlm"].mlp.up_proj.weight,
                               paligemma.model.language_model.layers[1].mlp.up_proj.weight, rtol=0, atol=0)
    assert policy.model.vocabulary.end_id == 600 - 128 - 1 and policy.model.backbone.embed_tokens.weight.shape[0] == 600
    loss, _ = policy(random_batch(config, 2))
    loss.backward()
    observation = random_observation(config)
    actions = policy.eval().predict_action_chunk(observation)
    loaded = PlanExecutePolicy.from_pretrained(policy.save_pretrained(tmp_path / "ckpt"))
    np.testing.assert_array_equal(loaded.predict_action_chunk(observation), actions)


def test_two_training_steps_on_tiny_data(tmp_path):
    dataset, tokenizer = write_two_camera_dataset_and_tokenizer(tmp_path)
    config = PolicyTrainConfig(dataset=str(dataset), tokenizer=str(tokenizer), out=str(tmp_path / "run"),
                               preset="debug-multistream", steps=2, batch_size=4, checkpoint_every=2,
                               eval_every=1000, eval_frames=8, decode_frames=4, eval_batch_size=4)
    metrics = train_policy(config, show_progress=False)
    assert metrics["steps"] == 2 and np.isfinite(metrics["heldout"]["exec_l1"])
    policy = PlanExecutePolicy.from_pretrained(tmp_path / "run", backbone="debug-multistream")
    assert isinstance(policy.model, MultiStreamVLA)
    observation = random_observation(policy.config, batch_size=2)
    assert policy.predict_action_chunk(observation).shape == (2, 20, 4)
