"""A LeRobot ``pi0fast`` checkpoint directory as the policy's PaliGemma backbone (the paper starts from pi0-FAST).

Layout. ``config.json`` is LeRobot's policy config (``"type": "pi0_fast"``, ``paligemma_variant``, ``dtype``), not a
transformers one; ``model.safetensors`` holds the PaliGemma under ``model.paligemma_with_expert.paligemma.`` followed
by transformers' PaliGemma names: ``model.vision_tower``, ``model.multi_modal_projector``, ``model.language_model``,
``lm_head`` (transformers >= 4.52) or the older ``vision_tower[.vision_model]``, ``multi_modal_projector``,
``language_model.model``, ``language_model.lm_head``. All of them load (:func:`canonical_name`), as does LeRobot's
first port (``"type": "pi0fast"``, PaliGemma under ``model.pi0_paligemma.``). Other tensors (an action expert, other
projections) are ignored. The tied embedding may be stored only as ``lm_head`` (safetensors keeps one copy).

Architecture. Sizes come from the shapes: vocabulary (embedding rows: 257,152 for pi0-FAST), Gemma width, depth and
MLP size, SigLIP width, depth, MLP size, patch and image size (patch x sqrt(position rows): 14 x 16 = 224 for
So400m/14). Head counts do not show in shapes: a known ``paligemma_variant`` gives them (``GEMMA_VARIANTS``) and its
sizes must match the file; any other variant gets Gemma's 256-dim heads. SigLIP heads come from ``SIGLIP_HEADS``, else
64-dim heads. Precision: the file may hold bf16; the model is filled in fp32, then ``dtype`` casts every parameter but
those pi0-FAST keeps in fp32: the vision tower's patch and position embeddings and every Gemma RMSNorm.

Text tokenizer. A pi0fast directory carries none (LeRobot fetches google/paligemma-3b-pt-224's at run time).
:func:`load_pi0fast_text_tokenizer` reads ``tokenizer.json`` or a SentencePiece ``tokenizer.model`` (converted by
transformers; needs ``sentencepiece``) from its ``text_tokenizer_path`` argument, else the pi0fast directory, else the
directory (or file) in ``$C2C_TEXT_TOKENIZER``. Nothing is ever downloaded.

Example::

    backbone = load_pi0fast_backbone("/models/pi0fast_base")                # fp32, vocabulary 257,152
    tokenizer = load_pi0fast_text_tokenizer("/models/pi0fast_base", "/models/paligemma-3b-pt-224")
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from tokenizers import Tokenizer
from transformers import PaliGemmaConfig, PaliGemmaForConditionalGeneration
from transformers.models.gemma.modeling_gemma import GemmaRMSNorm

from c2c.errors import ConfigError
from c2c.policy.backbone import backbone_from_config
from c2c.policy.instructions import InstructionTokenizer

POLICY_TYPES = ("pi0_fast", "pi0fast")  # LeRobot's config "type" of pi0-FAST (current port, first port)
WEIGHT_PREFIXES = ("model.paligemma_with_expert.paligemma.", "model.pi0_paligemma.")  # same order as POLICY_TYPES
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
TEXT_TOKENIZER_ENV = "C2C_TEXT_TOKENIZER"
TEXT_TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model")

# LeRobot's get_gemma_config (openpi's gemma.get_config): width, depth, MLP size, heads, KV heads, head size.
GEMMA_VARIANTS: dict[str, dict[str, int]] = {
    "gemma_2b": dict(width=2048, depth=18, mlp=16384, heads=8, kv_heads=1, head_dim=256),
    "gemma_300m": dict(width=1024, depth=18, mlp=4096, heads=8, kv_heads=1, head_dim=256),
}
GEMMA_HEAD_DIM = 256  # every Gemma-1 size (2B, 7B) and both pi0 variants
SIGLIP_HEADS = {768: 12, 1024: 16, 1152: 16}  # SigLIP B, L and So400m (width 1152, 27 layers, MLP 4304, 16 heads)

# Canonical (transformers >= 5) names of the few tensors the sizes are read from.
EMBED = "model.language_model.embed_tokens.weight"
LM_HEAD = "lm_head.weight"
_VISION = "model.vision_tower."
_FP32_MODULES = (_VISION + "embeddings.patch_embedding", _VISION + "embeddings.position_embedding")

# Older names -> canonical names, applied in order (after the checkpoint's prefix is stripped).
_RENAMES = (
    (re.compile(r"^language_model\.lm_head\."), "lm_head."),
    (re.compile(r"^language_model\.model\."), "model.language_model."),
    (re.compile(r"^(vision_tower|multi_modal_projector|language_model)\."), r"model.\1."),
    (re.compile(r"^model\.vision_tower\.vision_model\."), "model.vision_tower."),
)


def canonical_name(name: str) -> str:
    """A PaliGemma weight name in transformers >= 5's spelling, whichever transformers release wrote it."""
    for pattern, target in _RENAMES:
        name = pattern.sub(target, name)
    return name


def read_pi0fast_config(directory: str | Path) -> dict[str, Any] | None:
    """LeRobot's policy config of a pi0fast directory, or None when the directory is not one."""
    path = Path(directory) / CONFIG_FILE
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) and data.get("type") in POLICY_TYPES else None


def is_pi0fast_directory(directory: str | Path) -> bool:
    return read_pi0fast_config(directory) is not None


def load_pi0fast_backbone(directory: str | Path,
                          dtype: torch.dtype = torch.float32) -> PaliGemmaForConditionalGeneration:
    """pi0-FAST's PaliGemma from a local LeRobot pi0fast directory, never downloading (see the module docstring).

    ``dtype`` casts every parameter except the fp32-kept ones (:func:`fp32_kept_parameters`). Missing or
    mis-shaped PaliGemma tensors raise :class:`ConfigError` naming the file and the first few tensors.
    """
    directory = Path(directory)
    settings = read_pi0fast_config(directory)
    if settings is None:
        raise ConfigError(f"{directory / CONFIG_FILE}: not a LeRobot pi0fast config (type {' or '.join(POLICY_TYPES)})")
    if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise ConfigError(f"dtype must be a floating-point torch.dtype, got {dtype!r}")
    weights = directory / WEIGHTS_FILE
    if not weights.is_file():
        raise ConfigError(f"{weights}: missing (a LeRobot pi0fast directory holds its weights in {WEIGHTS_FILE})")
    try:
        with safe_open(str(weights), framework="pt") as file:
            prefix, names = _paligemma_names(list(file.keys()), weights)
            shapes = {name: tuple(file.get_slice(key).get_shape()) for name, key in names.items()}
            hf_config = pi0fast_paligemma_config(shapes, settings.get("paligemma_variant"), f"{weights} ({prefix}...)",
                                                 directory / CONFIG_FILE)
            model = backbone_from_config(hf_config)
            _fill(model, file, names, shapes, prefix, weights)
    except SafetensorError as err:
        raise ConfigError(f"{weights}: unreadable safetensors file ({_first_line(err)})") from None
    kept = fp32_kept_parameters(model)
    for name, parameter in model.named_parameters():
        if name not in kept:
            parameter.data = parameter.data.to(dtype)
    return model


def _paligemma_names(keys: list[str], weights: Path) -> tuple[str, dict[str, str]]:
    """(prefix, {canonical PaliGemma name: name in the file}) of the tensors under the first prefix present."""
    for prefix in WEIGHT_PREFIXES:
        names: dict[str, str] = {}
        for key in sorted(k for k in keys if k.startswith(prefix)):
            name = canonical_name(key[len(prefix):])
            if name in names:
                raise ConfigError(f"{weights}: tensors {names[name]!r} and {key!r} are the same PaliGemma weight")
            names[name] = key
        if names:
            return prefix, names
    raise ConfigError(f"{weights}: no tensor name starts with {' or '.join(WEIGHT_PREFIXES)} (first names: "
                      f"{sorted(keys)[:3]})")


def pi0fast_paligemma_config(shapes: Mapping[str, tuple[int, ...]], variant: str | None, where: str,
                             config_path: str | Path = CONFIG_FILE) -> PaliGemmaConfig:
    """The PaliGemmaConfig of canonical tensor ``shapes`` (sizes from the shapes, heads from ``variant``)."""
    variant_where = f"{config_path}: paligemma_variant {variant!r}"

    def shape(name: str) -> tuple[int, ...]:
        if name not in shapes:
            raise ConfigError(f"{where}: missing PaliGemma tensor {name!r}")
        return shapes[name]

    rows, width = shape(EMBED if EMBED in shapes or LM_HEAD not in shapes else LM_HEAD)  # tied: either one
    depth = _count_layers(shapes, r"^model\.language_model\.layers\.(\d+)\.")
    layer = "model.language_model.layers.0."
    mlp = shape(layer + "mlp.gate_proj.weight")[0]
    q_rows, kv_rows = shape(layer + "self_attn.q_proj.weight")[0], shape(layer + "self_attn.k_proj.weight")[0]
    if variant in GEMMA_VARIANTS:
        known = GEMMA_VARIANTS[variant]
        found = dict(width=width, depth=depth, mlp=mlp)
        if any(known[key] != value for key, value in found.items()):
            expected = {key: known[key] for key in found}
            raise ConfigError(f"{variant_where} has Gemma sizes {expected}, {where} holds {found}")
        heads, kv_heads, head_dim = known["heads"], known["kv_heads"], known["head_dim"]
    else:
        if q_rows % GEMMA_HEAD_DIM or kv_rows % GEMMA_HEAD_DIM:
            raise ConfigError(f"{where}: query / key rows {q_rows} / {kv_rows} are not multiples of Gemma's "
                              f"{GEMMA_HEAD_DIM}-dim heads ({variant_where} names no known variant: "
                              f"{', '.join(GEMMA_VARIANTS)})")
        heads, kv_heads, head_dim = q_rows // GEMMA_HEAD_DIM, kv_rows // GEMMA_HEAD_DIM, GEMMA_HEAD_DIM

    vision_width, _, patch, _ = shape(_VISION + "embeddings.patch_embedding.weight")
    positions = shape(_VISION + "embeddings.position_embedding.weight")[0]
    side = math.isqrt(positions)
    if side * side != positions:
        raise ConfigError(f"{where}: {positions} vision positions are not a square grid of patches")
    vision_heads = SIGLIP_HEADS.get(vision_width, vision_width // 64)
    if vision_heads < 1 or vision_width % vision_heads:
        raise ConfigError(f"{where}: vision width {vision_width} has no known head count (SigLIP widths: "
                          f"{', '.join(map(str, SIGLIP_HEADS))}, or a multiple of 64)")
    # image_token_index: one past the table, as pi0-FAST's (257,152); the policy never uses it.
    vision = dict(model_type="siglip_vision_model", hidden_size=vision_width, num_attention_heads=vision_heads,
                  intermediate_size=shape(_VISION + "encoder.layers.0.mlp.fc1.weight")[0], patch_size=patch,
                  num_hidden_layers=_count_layers(shapes, r"^model\.vision_tower\.encoder\.layers\.(\d+)\."),
                  image_size=side * patch, vision_use_head=False)
    text = dict(model_type="gemma", hidden_size=width, intermediate_size=mlp, num_hidden_layers=depth,
                num_attention_heads=heads, num_key_value_heads=kv_heads, head_dim=head_dim, vocab_size=rows,
                hidden_activation="gelu_pytorch_tanh")
    return PaliGemmaConfig(vision_config=vision, text_config=text, projection_dim=width, hidden_size=width,
                           vocab_size=rows, image_token_index=rows)


def _count_layers(shapes: Mapping[str, Any], pattern: str) -> int:
    indices = {int(m.group(1)) for m in map(re.compile(pattern).match, shapes) if m}
    return max(indices) + 1 if indices else 0


def _fill(model: PaliGemmaForConditionalGeneration, file: Any, names: dict[str, str],
          shapes: Mapping[str, tuple[int, ...]], prefix: str, weights: Path) -> None:
    """Copy every PaliGemma parameter from the open safetensors file; refuse missing, unknown or mis-shaped ones."""
    targets = {canonical_name(n): p for n, p in model.named_parameters(remove_duplicate=False)}
    names, shapes = dict(names), dict(shapes)
    tied = LM_HEAD in targets and EMBED in targets and targets[LM_HEAD] is targets[EMBED]
    if tied and LM_HEAD in names:
        if EMBED not in names:
            names[EMBED], shapes[EMBED] = names[LM_HEAD], shapes[LM_HEAD]
        elif not torch.equal(file.get_tensor(names[EMBED]), file.get_tensor(names[LM_HEAD])):
            raise ConfigError(f"{weights}: {names[LM_HEAD]!r} differs from {names[EMBED]!r}, but PaliGemma ties them")
        del names[LM_HEAD]
    required = set(targets) - ({LM_HEAD} if tied else set())
    missing = sorted(required - set(names))
    if missing:
        raise ConfigError(f"{weights}: missing PaliGemma tensors {_few(prefix + n for n in missing)}")
    unknown = sorted(set(names) - required)
    if unknown:
        raise ConfigError(f"{weights}: tensors under {prefix!r} that PaliGemma has no place for: "
                          f"{_few(names[n] for n in unknown)}")
    mismatched = [f"{names[n]} {list(shapes[n])} (expected {list(targets[n].shape)})"
                  for n in sorted(required) if tuple(shapes[n]) != tuple(targets[n].shape)]
    if mismatched:
        raise ConfigError(f"{weights}: tensor shapes do not fit the PaliGemma built from them: {_few(mismatched)}")
    with torch.no_grad():  # copy_ casts the file's dtype (bf16 or fp32) to the parameter's fp32
        for name in sorted(required):
            targets[name].copy_(file.get_tensor(names[name]))


def _first_line(err: BaseException) -> str:
    return str(err).partition("\n")[0] or type(err).__name__


def _few(items: Any, count: int = 3) -> str:
    items = list(items)
    more = f" and {len(items) - count} more" if len(items) > count else ""
    return ", ".join(items[:count]) + more


def fp32_kept_parameters(model: PaliGemmaForConditionalGeneration) -> set[str]:
    """Names of the parameters pi0-FAST keeps in fp32: the vision patch and position embeddings, every RMSNorm."""
    kept = set()
    for module_name, module in model.named_modules():
        if isinstance(module, GemmaRMSNorm) or canonical_name(module_name) in _FP32_MODULES:
            kept.update(f"{module_name}.{name}" for name, _ in module.named_parameters())
    return kept


# --- text tokenizer ----------------------------------------------------------------------------------------------
def load_pi0fast_text_tokenizer(directory: str | Path, text_tokenizer_path: str | Path | None = None
                                ) -> InstructionTokenizer:
    """PaliGemma's text tokenizer for a pi0fast backbone: from ``text_tokenizer_path``, else the pi0fast directory,
    else ``$C2C_TEXT_TOKENIZER`` (a directory holding tokenizer.json / tokenizer.model, or such a file)."""
    sources = [("text_tokenizer_path", text_tokenizer_path), ("the pi0fast directory", directory),
               (f"${TEXT_TOKENIZER_ENV}", os.environ.get(TEXT_TOKENIZER_ENV) or None)]
    for what, source in ((what, source) for what, source in sources if source is not None):
        found = _tokenizer_file(Path(source))
        if found is not None:
            return _paligemma_prompts(_read_tokenizer(found))
        if what != "the pi0fast directory":
            raise ConfigError(f"{what}: {source} holds no {' or '.join(TEXT_TOKENIZER_FILES)}")
    raise ConfigError(f"{directory}: a pi0fast directory carries no text tokenizer; put PaliGemma's tokenizer.json "
                      f"(or tokenizer.model) there or name a directory holding one in ${TEXT_TOKENIZER_ENV}")


def _tokenizer_file(path: Path) -> Path | None:
    if path.is_file():
        return path if path.suffix in (".json", ".model") else None
    return next((path / name for name in TEXT_TOKENIZER_FILES if (path / name).is_file()), None)


def _read_tokenizer(path: Path) -> Any:
    """A ``tokenizers.Tokenizer`` from tokenizer.json, or converted from a SentencePiece model (Gemma's rules)."""
    if path.suffix == ".json":
        try:
            return Tokenizer.from_file(str(path))
        except Exception as err:  # tokenizers raises a bare Exception on malformed files
            raise ConfigError(f"{path}: not a tokenizers file ({_first_line(err)})") from None
    if importlib.util.find_spec("sentencepiece") is None:  # transformers converts SentencePiece models with it
        raise ConfigError(f"{path}: reading a SentencePiece model needs the sentencepiece package "
                          f"(pip install sentencepiece), or give PaliGemma's tokenizer.json instead")
    from transformers import GemmaTokenizer

    with tempfile.TemporaryDirectory() as scratch:  # transformers looks for the name tokenizer.model
        (Path(scratch) / "tokenizer.model").symlink_to(path.resolve())
        try:
            return GemmaTokenizer.from_pretrained(scratch, local_files_only=True).backend_tokenizer
        except Exception as err:  # protobuf and transformers raise various types on a file that is not one
            raise ConfigError(f"{path}: not a SentencePiece model ({_first_line(err)})") from None


def _paligemma_prompts(tokenizer: Any) -> InstructionTokenizer:
    """PaliGemma's prompt convention, as ``InstructionTokenizer.from_backbone``: <bos> + text + "\\n"."""
    has_bos = tokenizer.token_to_id("<bos>") is not None
    return InstructionTokenizer(tokenizer, bos="<bos>" if has_bos else None, prompt_suffix="\n")
