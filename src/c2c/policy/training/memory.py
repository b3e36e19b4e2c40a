"""Memory options of policy training: precision schemes, gradient checkpointing, freezing, LoRA, and the weight EMA.

What a full fine-tune of paligemma-3b (2.92 B parameters) holds before activations, per copy of the weights:
fp32 weights 11.7 GB, fp32 gradients 11.7 GB, AdamW moments 23.4 GB, an fp32 EMA 11.7 GB (58 GB in all). The
options below cut that (``docs/training-at-scale.md`` has the table per option):

Precision (``--precision``):
- ``fp32``: weights and compute in fp32 (the default; on this CPU bf16 was measured slower for small matrices).
- ``bf16``: fp32 master weights, gradients and AdamW state, compute in bf16 through autocast. Under FSDP the
  all-gathered weights are bf16 as well (``MixedPrecisionPolicy(param_dtype=bf16, reduce_dtype=fp32)``). This is
  the scheme we recommend: the update of a 2.5e-5 learning rate is below bf16's resolution (2^-8 relative), so
  bf16 master weights can drop updates.
- ``bf16-weights``: pi0-FAST's scheme as LeRobot keeps it: bf16 weights (hence bf16 gradients and AdamW moments)
  except every RMSNorm and the vision tower's patch and position embeddings, which stay fp32. Half the memory of
  ``bf16``; offered for parity with pi0-FAST and for GPUs that cannot hold fp32 master weights.

Gradient checkpointing (``--gradient-checkpointing``): recompute each vision and decoder layer in the backward
pass (transformers' own checkpointing for SigLIP and Gemma; per layer for the multi-stream decoder).

Freezing and LoRA: ``--freeze-vision`` freezes the SigLIP tower (the projector still trains); ``--lora-rank R`` puts
LoRA adapters (``peft``) on the decoder's attention and MLP projections and freezes their base weights. The token
embedding and LM head stay trainable: action ids are repurposed vocabulary rows that must learn. Adapters are
merged into the base weights when the policy is saved, so a saved policy has the plain architecture.

EMA (``--ema``): ``on`` (fp32, beside the weights), ``cpu`` (fp32 in host memory; costs a device-to-host copy per
step), ``bf16`` (on the device in bf16, updated with stochastic rounding so that increments below bf16's
resolution are not lost), ``off`` (evaluation and the saved policy use the trained weights). Only trainable
parameters are averaged: frozen ones are the same in both.

Example::

    options = MemoryOptions(precision="bf16", gradient_checkpointing=True, freeze_vision=False, lora_rank=0)
    apply_memory_options(policy.model, options)
    ema = WeightEMA(trainable_parameters(policy.model), decay=0.999, mode="cpu")
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from c2c.errors import ConfigError

PRECISIONS = ("fp32", "bf16", "bf16-weights")
EMA_MODES = ("on", "cpu", "bf16", "off")
# Kept in fp32 under bf16-weights (pi0-FAST): norms and the SigLIP patch / position embeddings.
FP32_KEPT = ("norm", "patch_embedding", "position_embedding")
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class MemoryOptions:
    precision: str = "fp32"
    gradient_checkpointing: bool = False
    freeze_vision: bool = False
    lora_rank: int = 0  # 0: no LoRA
    lora_alpha: float | None = None  # default: 2 x rank

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ConfigError(f"--precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if int(self.lora_rank) < 0:
            raise ConfigError(f"--lora-rank must be >= 0, got {self.lora_rank}")


def autocast_dtype(precision: str) -> torch.dtype | None:
    """The autocast dtype of a precision scheme (None: no autocast)."""
    return None if precision == "fp32" else torch.bfloat16


def vision_tower(model: nn.Module) -> nn.Module | None:
    """The SigLIP (or convolutional) image encoder of a PlanExecuteVLA or MultiStreamVLA."""
    backbone = model.backbone
    inner = getattr(backbone, "model", backbone)
    return getattr(inner, "vision_tower", None)


def decoder(model: nn.Module) -> nn.Module:
    """The module holding the decoder layers (Gemma, or the multi-stream decoder)."""
    backbone = getattr(model, "backbone", None)
    if hasattr(backbone, "decoder"):
        return backbone.decoder
    if hasattr(getattr(backbone, "model", None), "language_model"):
        return backbone.model.language_model
    raise ConfigError(f"{type(model).__name__} has no transformer decoder: LoRA and gradient checkpointing apply to "
                      "the transformer backbones (nano, tiny, paligemma-3b, ...); drop --lora-rank and "
                      "--gradient-checkpointing")


def cast_bf16_weights(model: nn.Module) -> None:
    """pi0-FAST's bf16 layout: every floating parameter in bf16 except norms and patch / position embeddings."""
    for name, module in model.named_modules():
        keep = any(part in name.rsplit(".", 1)[-1] or part in type(module).__name__.lower() for part in FP32_KEPT)
        for param_name, param in module.named_parameters(recurse=False):
            if param.is_floating_point():
                param.data = param.data.to(torch.float32 if keep else torch.bfloat16)
        for buffer_name, buffer in module.named_buffers(recurse=False):
            if buffer.is_floating_point() and not keep and "inv_freq" not in buffer_name:
                module._buffers[buffer_name] = buffer.to(torch.bfloat16)


def enable_gradient_checkpointing(model: nn.Module) -> int:
    """Turn on per-layer recomputation in every part that supports it; returns how many parts were switched."""
    switched = 0
    for module in model.modules():
        if getattr(module, "supports_gradient_checkpointing", False):  # transformers' SigLIP and Gemma
            if hasattr(module, "activation_checkpointing_enable"):  # the name in recent transformers releases
                module.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
            else:
                module.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            switched += 1
        elif hasattr(module, "checkpoint_layers"):  # the multi-stream decoder
            module.checkpoint_layers = True
            switched += 1
    if not switched:
        raise ConfigError("--gradient-checkpointing: this backbone has no layers that can be recomputed")
    return switched


def add_lora(model: nn.Module, rank: int, alpha: float | None) -> int:
    """LoRA adapters on the decoder's projections (base weights frozen); returns the number of adapted layers."""
    try:
        from peft import LoraConfig, inject_adapter_in_model
    except ImportError:
        raise ConfigError("--lora-rank needs peft (pip install peft)") from None
    target = decoder(model)
    names = {name.rsplit(".", 1)[-1] for name, module in target.named_modules() if isinstance(module, nn.Linear)}
    targets = sorted(names & set(LORA_TARGETS))
    if not targets:
        raise ConfigError(f"--lora-rank: the decoder has none of the projections {', '.join(LORA_TARGETS)}")
    config = LoraConfig(r=int(rank), lora_alpha=float(alpha if alpha is not None else 2 * rank), lora_dropout=0.0,
                        target_modules=targets, bias="none")
    inject_adapter_in_model(config, target)
    adapted = 0
    for name, param in target.named_parameters():
        is_lora = "lora_" in name
        param.requires_grad_(is_lora)
        adapted += is_lora and name.endswith("lora_A.default.weight")
    return adapted


def merge_lora(model: nn.Module) -> int:
    """Fold every LoRA adapter into its base weight and put the plain layer back; returns how many were merged."""
    merged = 0
    for parent in list(model.modules()):
        for child_name, child in list(parent.named_children()):
            if hasattr(child, "merge") and hasattr(child, "get_base_layer") and hasattr(child, "lora_A"):
                child.merge()
                setattr(parent, child_name, child.get_base_layer())
                merged += 1
    return merged


def apply_memory_options(model: nn.Module, options: MemoryOptions) -> dict[str, int]:
    """Apply ``options`` to a PlanExecuteVLA (before it is moved, wrapped or sharded); returns what was changed.
    The bf16-weights cast is separate (``cast_bf16_weights``): training keeps an fp32 copy for evaluation first."""
    report = {"lora_layers": 0, "checkpointed_parts": 0}
    if options.freeze_vision:
        tower = vision_tower(model)
        if tower is None:
            raise ConfigError("--freeze-vision: this backbone has no vision tower")
        tower.requires_grad_(False)
    if options.lora_rank:
        report["lora_layers"] = add_lora(model, options.lora_rank, options.lora_alpha)
        # The vocabulary rows of the action ids, the state projection and the projector must still learn.
        for name, param in model.named_parameters():
            if any(part in name for part in ("embed_tokens", "lm_head", "action_", "state_projection",
                                             "multi_modal_projector")):
                param.requires_grad_(True)
    if options.gradient_checkpointing:
        report["checkpointed_parts"] = enable_gradient_checkpointing(model)
    report["trainable_parameters"] = sum(p.numel() for p in model.parameters() if p.requires_grad)
    report["parameters"] = sum(p.numel() for p in model.parameters())
    return report


def trainable_parameters(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: param for name, param in model.named_parameters() if param.requires_grad}


def stochastic_round_bf16(values: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """fp32 -> bf16 rounding up or down at random, in proportion to the distance (unbiased)."""
    bits = values.contiguous().view(torch.int32)
    noise = torch.randint(0, 1 << 16, bits.shape, dtype=torch.int32, device=bits.device, generator=generator)
    return ((bits + noise) & -65536).view(torch.float32).to(torch.bfloat16)


class WeightEMA:
    """Exponential moving average of the trainable weights (evaluation uses it, paper C.3).

    The decay ramps up as min(decay, (1 + n) / (10 + n)) after n updates, so that early in training (and in short
    runs) the average is not dominated by the initialisation. Under FSDP the averaged tensors are the local shards
    (DTensors), so the EMA is sharded like the weights.
    """

    def __init__(self, parameters: dict[str, torch.Tensor], decay: float, mode: str = "on") -> None:
        if mode not in EMA_MODES:
            raise ConfigError(f"--ema must be one of {', '.join(EMA_MODES)}, got {mode!r}")
        self.decay, self.mode = decay, mode
        self.averages: dict[str, torch.Tensor] = {}
        if mode == "off":
            return
        for name, param in parameters.items():
            copy = param.detach().clone()
            if mode == "cpu":
                copy = copy.to("cpu", torch.float32)
            elif mode == "bf16":
                copy = copy.to(torch.bfloat16)
            else:
                copy = copy.float()
            self.averages[name] = copy

    @property
    def enabled(self) -> bool:
        return self.mode != "off"

    def decay_at(self, updates: int) -> float:
        return min(self.decay, (1 + updates) / (10 + updates))

    @torch.no_grad()
    def update(self, parameters: dict[str, torch.Tensor], updates: int) -> None:
        if not self.enabled:
            return
        weight = 1.0 - self.decay_at(updates)
        if self.mode == "on":
            names = list(self.averages)
            sources = [parameters[n].detach() for n in names]
            if all(s.dtype == torch.float32 for s in sources):
                torch._foreach_lerp_([self.averages[n] for n in names], sources, weight)
                return
        if self.mode == "cpu":  # every device-to-host copy in flight at once, then one wait before reading them
            copies = {name: parameters[name].detach().to("cpu", non_blocking=True) for name in self.averages}
            if any(parameters[name].is_cuda for name in self.averages):
                torch.cuda.synchronize()
            for name, average in self.averages.items():
                average.lerp_(copies[name].float(), weight)
            return
        for name, average in self.averages.items():
            source = parameters[name].detach()
            if self.mode == "bf16":
                exact = average.float().lerp_(source.float(), weight)
                average.copy_(_local_round(exact))
            else:
                average.lerp_(source.float(), weight)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return dict(self.averages)

    def weights(self, parameters: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The weights evaluation uses: the averages, or the trained weights when the EMA is off."""
        return dict(self.averages) if self.enabled else {n: p.detach() for n, p in parameters.items()}


def _local_round(values: torch.Tensor) -> torch.Tensor:
    """Stochastic bf16 rounding of a tensor or of a DTensor's local shard."""
    to_local = getattr(values, "to_local", None)
    if to_local is None:
        return stochastic_round_bf16(values)
    from torch.distributed.tensor import DTensor

    return DTensor.from_local(stochastic_round_bf16(to_local()), values.device_mesh, values.placements,
                              run_check=False, shape=values.shape, stride=values.stride())  # shards may be uneven
