"""A LeRobot pi0fast directory as the backbone: its PaliGemma tensors, its vocabulary, its text tokenizer.

The checkpoints written here follow LeRobot's pi0fast layout exactly (config.json with ``"type": "pi0_fast"``,
model.safetensors with the PaliGemma under ``model.paligemma_with_expert.paligemma.``, some tensors in bf16, other
policy tensors beside it) at a tiny size: Gemma 32 wide with one 256-dim head, SigLIP 64 wide on 32-px images, 600
vocabulary rows. Its ``paligemma_variant`` is outside ``GEMMA_VARIANTS``, so the sizes come from the shapes.
"""

import dataclasses
import json
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers
from transformers import PaliGemmaConfig, PaliGemmaForConditionalGeneration

from c2c.errors import ConfigError
from c2c.policy import config as config_module
from c2c.policy.backbone import load_pretrained_backbone
from c2c.policy.config import PRESETS, policy_config
from c2c.policy.pi0fast import (
    TEXT_TOKENIZER_ENV,
    canonical_name,
    fp32_kept_parameters,
    is_pi0fast_directory,
    load_pi0fast_backbone,
    load_pi0fast_text_tokenizer,
    pi0fast_paligemma_config,
)
from c2c.policy.policy import PlanExecutePolicy
from c2c.policy.testing import (
    INSTRUCTIONS,
    random_action_tokenizer,
    random_batch,
    random_observation,
    torch_threads,
)
from c2c.policy.tokens import PALIGEMMA_RESERVED_TAIL, VocabularyLayout, special_token_ids

ROWS = 600
PREFIX = "model.paligemma_with_expert.paligemma."
EXTRA = {"model.paligemma_with_expert.gemma_expert.model.layers.0.mlp.up_proj.weight": torch.ones(8, 4),
         "model.action_out_proj.weight": torch.ones(4, 8)}


@pytest.fixture(autouse=True)
def _one_thread():
    with torch_threads(1):
        yield


def paligemma_weights() -> dict[str, torch.Tensor]:
    """A random tiny PaliGemma's weights in canonical names; norms are made non-trivial."""
    config = PaliGemmaConfig(
        vision_config=dict(model_type="siglip_vision_model", hidden_size=64, intermediate_size=128, patch_size=8,
                           num_hidden_layers=1, num_attention_heads=1, image_size=32, vision_use_head=False),
        text_config=dict(model_type="gemma", hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=1, num_key_value_heads=1, head_dim=256, vocab_size=ROWS),
        projection_dim=32, hidden_size=32, vocab_size=ROWS, image_token_index=ROWS)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = PaliGemmaForConditionalGeneration(config)
        weights = {canonical_name(n): p.detach().clone() for n, p in model.named_parameters()}
        for tensor in weights.values():
            tensor.add_(0.1 * torch.randn_like(tensor))
    return weights


def old_name(name: str) -> str:
    """transformers < 4.52's PaliGemma names (SigLIP inside its SiglipVisionModel)."""
    for new, old in (("model.language_model.", "language_model.model."), ("lm_head.", "language_model.lm_head."),
                     ("model.vision_tower.", "vision_tower.vision_model."),
                     ("model.multi_modal_projector.", "multi_modal_projector.")):
        if name.startswith(new):
            return old + name[len(new):]
    raise AssertionError(name)


def write_pi0fast(directory, *, policy_type="pi0_fast", prefix=PREFIX, old_names=False, variant="gemma_test",
                  drop=(), change=None, lm_head_only=False, tokenizer=True):
    """A pi0fast directory; returns the PaliGemma weights written (canonical names, as stored: some bf16)."""
    directory.mkdir(parents=True, exist_ok=True)
    weights = paligemma_weights()
    if lm_head_only:  # the tied table saved under its LM-head name only
        weights["lm_head.weight"] = weights.pop("model.language_model.embed_tokens.weight")
    for name in weights:  # the language model's linear weights in bf16, as LeRobot's bf16 checkpoints hold them
        if name.startswith("model.language_model.layers.") and "proj" in name:
            weights[name] = weights[name].to(torch.bfloat16)
    weights.update(change or {})
    for name in drop:
        del weights[name]
    tensors = {prefix + (old_name(n) if old_names else n): t for n, t in weights.items()}
    save_file({**tensors, **EXTRA}, str(directory / "model.safetensors"))
    settings = {"type": policy_type, "paligemma_variant": variant, "dtype": "bfloat16", "chunk_size": 50,
                "text_tokenizer_name": "google/paligemma-3b-pt-224", "fast_skip_tokens": 128}
    (directory / "config.json").write_text(json.dumps(settings))
    if tokenizer:
        write_text_tokenizer(directory)
    return weights


def write_text_tokenizer(directory, special_at=None, plain_at=None):
    """A word-level stand-in for PaliGemma's tokenizer.json: Gemma's control tokens first, marked special."""
    words = sorted({w for text in INSTRUCTIONS for w in text.split()})
    vocab = {token: i for i, token in enumerate(["<pad>", "<eos>", "<bos>", "<unk>", *words])}
    if special_at is not None:
        vocab["<ctrl>"] = special_at
    if plain_at is not None:
        vocab["faraway"] = plain_at
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.add_special_tokens([AddedToken(t, special=True) for t in ["<pad>", "<eos>", "<bos>", "<unk>"]
                                  + (["<ctrl>"] if special_at is not None else [])])
    tokenizer.save(str(directory / "tokenizer.json"))


@pytest.fixture(scope="module")
def pi0fast_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("pi0fast") / "pi0fast_base"
    write_pi0fast(directory)
    return directory


def assert_round_trip(model, weights):
    state = {canonical_name(n): p for n, p in model.named_parameters(remove_duplicate=False)}
    for name, tensor in weights.items():
        torch.testing.assert_close(state[name], tensor.float(), rtol=0, atol=0)
        assert state[name].dtype == torch.float32
    assert model.lm_head.weight is model.model.language_model.embed_tokens.weight


@pytest.mark.parametrize("policy_type,prefix,old_names", [
    ("pi0_fast", PREFIX, False),
    ("pi0_fast", PREFIX, True),  # a checkpoint written with transformers < 4.52
    ("pi0fast", "model.pi0_paligemma.", True),  # LeRobot's first pi0-FAST port
])
def test_every_paligemma_weight_round_trips(tmp_path, policy_type, prefix, old_names):
    weights = write_pi0fast(tmp_path / "ckpt", policy_type=policy_type, prefix=prefix, old_names=old_names)
    assert is_pi0fast_directory(tmp_path / "ckpt")
    model = load_pretrained_backbone(tmp_path / "ckpt")
    assert_round_trip(model, weights)
    text, vision = model.config.text_config, model.config.vision_config
    assert (text.vocab_size, text.hidden_size, text.num_hidden_layers, text.intermediate_size) == (ROWS, 32, 2, 64)
    assert (text.num_attention_heads, text.num_key_value_heads, text.head_dim) == (1, 1, 256)
    assert (vision.hidden_size, vision.num_hidden_layers, vision.patch_size, vision.image_size) == (64, 1, 8, 32)
    assert model.model.language_model.embed_tokens.weight.shape[0] == ROWS


def test_embedding_stored_only_as_lm_head(tmp_path):
    weights = write_pi0fast(tmp_path / "ckpt", lm_head_only=True)
    model = load_pi0fast_backbone(tmp_path / "ckpt")
    weights["model.language_model.embed_tokens.weight"] = weights.pop("lm_head.weight")
    assert_round_trip(model, weights)


def test_dtype_keeps_norms_and_vision_embeddings_in_fp32(pi0fast_dir):
    model = load_pi0fast_backbone(pi0fast_dir, dtype=torch.bfloat16)
    kept = fp32_kept_parameters(model)
    assert {canonical_name(n) for n in kept} == {
        "model.vision_tower.embeddings.patch_embedding.weight", "model.vision_tower.embeddings.patch_embedding.bias",
        "model.vision_tower.embeddings.position_embedding.weight", "model.language_model.norm.weight",
        *(f"model.language_model.layers.{i}.{norm}.weight" for i in range(2)
          for norm in ("input_layernorm", "post_attention_layernorm"))}
    for name, parameter in model.named_parameters():
        assert parameter.dtype == (torch.float32 if name in kept else torch.bfloat16), name


@pytest.mark.parametrize("edit,message", [
    (dict(drop=["model.language_model.layers.1.mlp.up_proj.weight", "model.language_model.norm.weight"]),
     r"model.safetensors: missing PaliGemma tensors model.paligemma_with_expert.paligemma.model.language_model."
     r"layers.1.mlp.up_proj.weight, model.paligemma_with_expert.paligemma.model.language_model.norm.weight$"),
    (dict(change={"model.language_model.layers.1.self_attn.q_proj.weight": torch.zeros(512, 32)}),
     r"shapes do not fit .*layers.1.self_attn.q_proj.weight \[512, 32\] \(expected \[256, 32\]\)"),
    (dict(change={"model.vision_tower.head.probe": torch.zeros(1, 1, 64)}),
     r"that PaliGemma has no place for: model.paligemma_with_expert.paligemma.model.vision_tower.head.probe"),
    (dict(change={"lm_head.weight": torch.zeros(ROWS, 32)}),
     r"lm_head.weight' differs from .*embed_tokens.weight', but PaliGemma ties them"),
    (dict(drop=["model.vision_tower.embeddings.patch_embedding.weight"]),
     r"missing PaliGemma tensor 'model.vision_tower.embeddings.patch_embedding.weight'"),
    (dict(variant="gemma_2b"),
     r"config.json: paligemma_variant 'gemma_2b' has Gemma sizes \{'width': 2048, 'depth': 18, 'mlp': 16384\}, "
     r".*model.safetensors .* holds \{'width': 32, 'depth': 2, 'mlp': 64\}"),
])
def test_missing_or_mismatched_tensors_are_named(tmp_path, edit, message):
    write_pi0fast(tmp_path / "ckpt", tokenizer=False, **edit)
    with pytest.raises(ConfigError, match=message):
        load_pi0fast_backbone(tmp_path / "ckpt")


def test_the_real_pi0fast_sizes_and_vocabulary():
    """Shapes of LeRobot's gemma_2b pi0-FAST (SigLIP So400m/14, 224 px): the config and where 3 x 4096 codes go."""
    shapes = {"model.language_model.embed_tokens.weight": (257152, 2048),
              "model.vision_tower.embeddings.patch_embedding.weight": (1152, 3, 14, 14),
              "model.vision_tower.embeddings.position_embedding.weight": (256, 1152)}
    for i in range(18):
        shapes.update({f"model.language_model.layers.{i}.mlp.gate_proj.weight": (16384, 2048),
                       f"model.language_model.layers.{i}.self_attn.q_proj.weight": (2048, 2048),
                       f"model.language_model.layers.{i}.self_attn.k_proj.weight": (256, 2048)})
    for i in range(27):
        shapes[f"model.vision_tower.encoder.layers.{i}.mlp.fc1.weight"] = (4304, 1152)
    for variant in ("gemma_2b", None):
        config = pi0fast_paligemma_config(shapes, variant, "model.safetensors")
        text, vision = config.text_config, config.vision_config
        assert (text.vocab_size, text.hidden_size, text.num_hidden_layers, text.intermediate_size) == (
            257152, 2048, 18, 16384)
        assert (text.num_attention_heads, text.num_key_value_heads, text.head_dim) == (8, 1, 256)
        assert (vision.hidden_size, vision.num_hidden_layers, vision.intermediate_size, vision.num_attention_heads,
                vision.patch_size, vision.image_size) == (1152, 27, 4304, 16, 14, 224)
        assert config.image_token_index == 257152
    vocabulary = VocabularyLayout.tail(257152, 3 * 4096)
    assert (vocabulary.action_start, vocabulary.end_id) == (244735, 257023)


def test_a_file_without_paligemma_tensors_is_refused(tmp_path):
    write_pi0fast(tmp_path / "ckpt", prefix="model.vlm.", tokenizer=False)
    with pytest.raises(ConfigError, match="no tensor name starts with model.paligemma_with_expert.paligemma. or"):
        load_pretrained_backbone(tmp_path / "ckpt")
    (tmp_path / "ckpt" / "model.safetensors").unlink()
    with pytest.raises(ConfigError, match="model.safetensors: missing"):
        load_pretrained_backbone(tmp_path / "ckpt")


def _config(backbone_dir, preset="paligemma-3b", **overrides):
    values = dict(variant="plan", cameras=("image", "image2"), state_dim=4, action_dim=4, image_size=32,
                  backbone_path=str(backbone_dir))
    values.update(overrides)
    return policy_config(preset, **values)


def _moved_away(directory, tmp_path):
    """Move the backbone directory away: a saved policy must run without it."""
    return shutil.move(str(directory), str(tmp_path / "moved"))


def test_policy_on_pi0fast_places_actions_below_its_rows_and_reloads(tmp_path):
    backbone_dir = tmp_path / "pi0fast"
    weights = write_pi0fast(backbone_dir)
    policy = PlanExecutePolicy.build(_config(backbone_dir), random_action_tokenizer("joint"))
    assert_round_trip(policy.model.backbone, weights)
    vocabulary = policy.model.vocabulary  # ids from the checkpoint's 600 rows, below its 128 reserved ids
    assert vocabulary.total == ROWS and vocabulary.end_id == ROWS - PALIGEMMA_RESERVED_TAIL - 1
    assert vocabulary.action_start == vocabulary.end_id - 3 * 16
    special = special_token_ids(policy.instruction_tokenizer.tokenizer)
    assert set(special) == {0, 1, 2, 3} and all(not vocabulary.action_start <= i <= vocabulary.end_id for i in special)
    ids, _ = policy.instruction_tokenizer.encode(["open the drawer"], 8)
    assert ids[0, 0] == 2  # PaliGemma's prompt: <bos> + text + "\n"

    loss, metrics = policy(random_batch(policy.config, 2))
    loss.backward()
    assert torch.isfinite(loss) and "accuracy/exec" in metrics
    observation = random_observation(policy.config)
    policy.eval()
    actions, plan = policy.predict_action_chunk(observation, return_plan=True)
    assert actions.shape == (20, 4) and plan.shape == (20, 4)
    directory = policy.save_pretrained(tmp_path / "saved")
    _moved_away(backbone_dir, tmp_path)
    loaded = PlanExecutePolicy.from_pretrained(directory)
    assert loaded.model.vocabulary == vocabulary
    np.testing.assert_array_equal(loaded.predict_action_chunk(observation), actions)


def test_multistream_vlm_stream_from_pi0fast(pi0fast_dir, monkeypatch, tmp_path):
    streams = dict(proprio=dict(hidden_size=16, intermediate_size=32),
                   action=dict(hidden_size=24, intermediate_size=40))
    preset = dataclasses.replace(PRESETS["paligemma-3b-multistream"], streams=streams)
    monkeypatch.setitem(config_module.PRESETS, "paligemma-3b-multistream", preset)
    config = _config(pi0fast_dir, "paligemma-3b-multistream", variant="noplan")
    policy = PlanExecutePolicy.build(config, random_action_tokenizer("exec-only"))
    paligemma = load_pi0fast_backbone(pi0fast_dir)
    torch.testing.assert_close(policy.model.backbone.decoder.layers[1]["vlm"].mlp.up_proj.weight,
                               paligemma.model.language_model.layers[1].mlp.up_proj.weight, rtol=0, atol=0)
    assert policy.model.vocabulary.total == ROWS
    observation = random_observation(config)
    actions = policy.eval().predict_action_chunk(observation)
    loaded = PlanExecutePolicy.from_pretrained(policy.save_pretrained(tmp_path / "saved"))
    np.testing.assert_array_equal(loaded.predict_action_chunk(observation), actions)


def test_a_special_token_on_an_action_id_or_a_text_id_past_the_rows_is_refused(tmp_path):
    backbone_dir = tmp_path / "pi0fast"
    write_pi0fast(backbone_dir, tokenizer=False)
    write_text_tokenizer(backbone_dir, special_at=450)  # actions take [423, 471] of 600 rows
    with pytest.raises(ConfigError, match=r"text tokenizer: special tokens '<ctrl>' \(450\) lie in the ids "
                                          r"\[423, 471\] taken by state bins, actions and the end token"):
        PlanExecutePolicy.build(_config(backbone_dir), random_action_tokenizer("joint"))
    write_text_tokenizer(backbone_dir, plain_at=ROWS)  # a text id the 600-row table cannot embed
    with pytest.raises(ConfigError, match="text tokenizer: token id 600 lies past the backbone's 600 embedding rows"):
        PlanExecutePolicy.build(_config(backbone_dir), random_action_tokenizer("joint"))


def test_text_tokenizer_from_the_directory_an_argument_or_the_environment(tmp_path, monkeypatch):
    monkeypatch.delenv(TEXT_TOKENIZER_ENV, raising=False)
    backbone_dir, elsewhere = tmp_path / "pi0fast", tmp_path / "paligemma-tokenizer"
    write_pi0fast(backbone_dir, tokenizer=False)
    with pytest.raises(ConfigError, match=f"pi0fast: a pi0fast directory carries no text tokenizer.*"
                                          f"{TEXT_TOKENIZER_ENV}"):
        load_pi0fast_text_tokenizer(backbone_dir)
    elsewhere.mkdir()
    write_text_tokenizer(elsewhere)
    assert load_pi0fast_text_tokenizer(backbone_dir, elsewhere).bos_id == 2
    assert load_pi0fast_text_tokenizer(backbone_dir, elsewhere / "tokenizer.json").prompt_suffix == "\n"
    with pytest.raises(ConfigError, match="text_tokenizer_path: .* holds no tokenizer.json or tokenizer.model"):
        load_pi0fast_text_tokenizer(backbone_dir, tmp_path)
    monkeypatch.setenv(TEXT_TOKENIZER_ENV, str(elsewhere))
    policy = PlanExecutePolicy.build(_config(backbone_dir), random_action_tokenizer("joint"))
    assert policy.instruction_tokenizer.count_tokens(["open the drawer"]) == [4]


def test_text_tokenizer_from_a_sentencepiece_model(tmp_path):
    spm = pytest.importorskip("sentencepiece")
    backbone_dir = tmp_path / "pi0fast"
    write_pi0fast(backbone_dir, tokenizer=False)
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(list(INSTRUCTIONS) * 20), model_prefix=str(backbone_dir / "tokenizer"), vocab_size=60,
        model_type="bpe", pad_id=0, eos_id=1, bos_id=2, unk_id=3, pad_piece="<pad>", eos_piece="<eos>",
        bos_piece="<bos>", user_defined_symbols=["\n"], add_dummy_prefix=False, minloglevel=2)
    tokenizer = load_pi0fast_text_tokenizer(backbone_dir)
    assert tokenizer.bos_id == 2 and set(special_token_ids(tokenizer.tokenizer)) >= {0, 1, 2, 3}
    ids, mask = tokenizer.encode(["open the drawer"], 16)
    assert ids[0, 0] == 2 and ids[0, mask[0].sum() - 1] == tokenizer.tokenizer.token_to_id("\n")
