"""Computed (not measured) GPU memory of paligemma-3b training per memory option, and the largest batch per GPU.

No GPU is needed. States come from the real architecture on the ``meta`` device with ``apply_memory_options`` (and
``cast_bf16_weights`` for bf16-weights) applied: weights at their dtypes; gradients and AdamW's two moments of the
trainable ones; the EMA (fp32 ``on``, bf16, nothing on the GPU for ``cpu`` / ``off``); temporaries (AdamW's foreach
step copies its larger parameter group; the bf16 EMA's rounding takes ~16 bytes per element of the 527 M-row
embedding); autocast's bf16 copies of fp32 linear weights (cached through the forward; saved for the backward
without checkpointing). FSDP over N GPUs divides all of it by N and adds the all-gathered units (root: embedding,
projector, norms; two layers in flight) with their unsharded gradients.

Activations are counted on the CPU: the policy with the real widths, vocabulary and inputs but one layer per tower
(zero weights: only shapes and dtypes matter) runs its training forward in the option's precision, and the tensors
autograd saves are summed (saved-tensor hooks, each storage once) per region: vision layer, decoder layer, the rest
(embeddings, projector, the loss's fp32 log-probabilities). Batch 2 minus batch 1 is one sample. Held into the
backward: every layer's saved tensors, or with checkpointing each layer's input (tokens x width x dtype size), plus
the rest. Transients: one layer (with checkpointing its recomputation and gradients, 2 x its saved tensors) and the
loss (8 bytes per logit). The peak is the largest phase: forward; the loss's backward; the layers' backward, last
layer first, each adding its gradients and freeing its kept activations; the AdamW step or EMA update.

    python benchmarks/memory_estimate.py --out docs/results/memory-paligemma-3b.md

``benchmarks/bench_gpu.py`` measures the batch sweep on a GPU.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import gc
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import torch
from bench_gpu import CODEBOOK_SIZE, GIB, bench_config, bench_tokenizer, random_policy
from torch import nn

from c2c.policy.testing import random_batch
from c2c.policy.training.memory import MemoryOptions, apply_memory_options, cast_bf16_weights, vision_tower
from c2c.utils.io import atomic_write_json, atomic_write_text

LAYER_CLASSES = {"SiglipEncoderLayer": "vision", "GemmaDecoderLayer": "text"}
LOSS_TRANSIENT_BYTES = 8  # per suffix logit: the fp32 copy of the logits (forward) or their gradients (backward)


@dataclass(frozen=True)
class Option:
    label: str
    precision: str
    ema: str
    freeze_vision: bool = False
    lora_rank: int = 0
    shards: int = 1  # FSDP processes (1: one GPU holds everything)


OPTIONS = [
    Option("fp32", "fp32", "on"), Option("fp32", "fp32", "off"),
    Option("bf16 (fp32 master + autocast)", "bf16", "on"), Option("bf16", "bf16", "cpu"),
    Option("bf16", "bf16", "bf16"), Option("bf16", "bf16", "off"),
    Option("bf16-weights", "bf16-weights", "on"), Option("bf16-weights", "bf16-weights", "bf16"),
    Option("bf16-weights", "bf16-weights", "off"),
    Option("bf16 + frozen vision", "bf16", "off", freeze_vision=True),
    Option("bf16 + LoRA 16", "bf16", "off", lora_rank=16),
    Option("bf16 + LoRA 16 + frozen vision", "bf16", "off", freeze_vision=True, lora_rank=16),
    Option("bf16 + LoRA 16 + frozen vision", "bf16", "on", freeze_vision=True, lora_rank=16),
    # FSDP refuses bf16-weights (one dtype per sharded layer) and the CPU EMA (the EMA is sharded already).
    Option("FSDP x 8, fp32", "fp32", "on", shards=8), Option("FSDP x 8, bf16", "bf16", "on", shards=8),
    Option("FSDP x 8, bf16", "bf16", "off", shards=8),
]


def apply_options(model: nn.Module, precision: str, freeze_vision: bool, lora_rank: int) -> None:
    """What ``c2c policy train`` does to the model before training (the bf16-weights cast comes last)."""
    apply_memory_options(model, MemoryOptions(precision=precision, freeze_vision=freeze_vision, lora_rank=lora_rank))
    if precision == "bf16-weights":
        cast_bf16_weights(model)


def nbytes(parameters) -> int:
    return sum(p.numel() * p.element_size() for p in parameters)


def layer_units(model: nn.Module) -> list[nn.Module]:
    """The elements of every ``layers`` ModuleList (SigLIP and Gemma layers): what checkpointing and FSDP split by."""
    return [unit for name, child in model.named_modules() if name.rsplit(".", 1)[-1] == "layers" for unit in child]


def cast_copies(model: nn.Module, trainable_only: bool, frozen_tower: nn.Module | None,
                outside_layers: bool = False) -> int:
    """Bytes of the bf16 copies autocast makes of fp32 linear / convolution weights (2 bytes per element); only of
    trainable ones (autocast's cache) or of all; only of those outside the layers (alive into the backward even
    with checkpointing: the LM head's is the embedding's)."""
    skipped = {id(p) for p in frozen_tower.parameters()} if frozen_tower is not None else set()
    if outside_layers:
        skipped |= {id(p) for unit in layer_units(model) for p in unit.parameters()}
    seen, total = set(), 0
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            for param in module.parameters(recurse=False):
                if id(param) in seen or id(param) in skipped or param.dtype != torch.float32:
                    continue
                if param.requires_grad or not trainable_only:
                    seen.add(id(param))
                    total += 2 * param.numel()
    return total


def states(meta_model: nn.Module, option: Option) -> dict:
    """Bytes of weights, gradients, moments, EMA and temporaries per GPU for ``option`` (the meta model is copied)."""
    model = copy.deepcopy(meta_model)
    apply_options(model, option.precision, option.freeze_vision, option.lora_rank)
    params = list(model.parameters())
    trainable = [p for p in params if p.requires_grad]
    grads = nbytes(trainable)
    count = sum(p.numel() for p in trainable)
    ema = {"on": 4 * count, "bf16": 2 * count}.get(option.ema, 0)
    largest = max(trainable, key=lambda p: p.numel())
    # AdamW groups: matrices (weight decay) and the rest; the foreach step copies the larger group's moment.
    step = max(nbytes(p for p in trainable if p.ndim >= 2), nbytes(p for p in trainable if p.ndim < 2))
    ema_step = {"bf16": largest.numel() * (16 + (0 if largest.dtype == torch.float32 else 4)),
                "on": 0 if all(p.dtype == torch.float32 for p in trainable) else 4 * largest.numel()}
    tower = vision_tower(model) if option.freeze_vision else None
    autocast = option.precision != "fp32" and option.shards == 1  # under FSDP bf16 the gathered weights are bf16
    result = {"parameters": sum(p.numel() for p in params), "trainable": count, "weights": nbytes(params),
              "grads": grads, "moments": 2 * grads, "ema": ema, "step_temp": step,
              "ema_temp": ema_step.get(option.ema, 0),
              "copies_ckpt": cast_copies(model, True, tower) if autocast else 0,
              "copies_outside": cast_copies(model, True, tower, outside_layers=True) if autocast else 0,
              "copies_no_ckpt": cast_copies(model, False, tower) if autocast else 0, "gathered": 0,
              # the first gradient the backward allocates: the LM head's, i.e. the tied embedding's
              "grad_first": nbytes([model.backbone.get_input_embeddings().weight]) if any(
                  p is model.backbone.get_input_embeddings().weight for p in trainable) else 0}
    for unit in layer_units(model):  # every layer of a tower is alike: the gradient bytes of one
        region = LAYER_CLASSES[type(unit).__name__]
        result[f"grad_{region}_layer"] = nbytes(p for p in unit.parameters() if p.requires_grad)
    if option.shards > 1:
        for key in ("weights", "grads", "moments", "ema", "step_temp", "ema_temp", "grad_first", "grad_text_layer",
                    "grad_vision_layer"):
            result[key] = -(-result[key] // option.shards)
        result["gathered"] = fsdp_gathered(model, option.precision)
    return result


def fsdp_gathered(model: nn.Module, precision: str) -> int:
    """All-gathered FSDP units held at once: the root's own parameters and two layers, with unsharded gradients."""
    compute = (lambda p: 2) if precision == "bf16" else (lambda p: p.element_size())
    reduce = (lambda p: 2 + 4) if precision == "bf16" else (lambda p: p.element_size())  # bf16 grads cast to fp32
    layers = layer_units(model)
    in_layers = {id(p) for unit in layers for p in unit.parameters()}
    root = [p for p in model.parameters() if id(p) not in in_layers]
    layer = max(layers, key=lambda unit: sum(p.numel() for p in unit.parameters()))
    own = sum(p.numel() * (compute(p) + reduce(p)) for p in root)
    return own + sum(p.numel() * (2 * compute(p) + reduce(p)) for p in layer.parameters())


# --- activations -------------------------------------------------------------------------------------------------
def sizing_policy(config, tokenizer):
    """The policy with one vision and one decoder layer on the CPU, weights all zero: what autograd saves depends on
    shapes and dtypes only, and zero-filling 0.5 B embedding rows is far quicker than a random initialisation."""
    policy = random_policy(config, tokenizer, "meta", layers=(1, 1))
    tied = [(name, param) for name, param in policy.model.named_parameters(remove_duplicate=False)]
    policy.model.to_empty(device="cpu")
    first: dict[int, nn.Parameter] = {}
    for name, param in tied:  # to_empty unties shared parameters (the embedding and the LM head): tie them again
        owner, _, attribute = name.rpartition(".")
        module = policy.model.get_submodule(owner)
        setattr(module, attribute, first.setdefault(id(param), getattr(module, attribute)))
    with torch.no_grad():
        for param in policy.model.parameters():
            param.zero_()
        for buffer in policy.model.buffers():  # scales and frequencies, or index tables (position ids)
            buffer.copy_(torch.ones_like(buffer) if buffer.is_floating_point()
                         else torch.arange(buffer.shape[-1]).expand_as(buffer))
    return policy


def count_activations(small_policy, precision: str, lora_rank: int) -> dict:
    """Saved-tensor bytes per sample by region (vision layer, decoder layer, the rest of the vision tower, the rest)
    and each layer's input dtype size, on the one-layer policy with the vision tower trainable."""
    policy = copy.deepcopy(small_policy)
    apply_options(policy.model, precision, False, lora_rank)
    policy.train()
    stack, input_size = ["other"], {}
    tower = vision_tower(policy.model)

    def enter(module, args, kwargs):
        region = LAYER_CLASSES.get(type(module).__name__, "vision_other")
        if region != "vision_other":
            hidden = args[0] if args else kwargs["hidden_states"]
            input_size[region] = hidden.element_size()
        stack.append(region)

    def leave(*_) -> None:
        stack.pop()

    handles = []
    for module in policy.model.modules():
        if type(module).__name__ in LAYER_CLASSES or module is tower:
            handles.append(module.register_forward_pre_hook(enter, with_kwargs=True))
            handles.append(module.register_forward_hook(leave))
    counted = {}
    for batch_size in (1, 2):
        totals, seen = defaultdict(int), set()

        def pack(tensor, totals=totals, seen=seen):
            storage = tensor.untyped_storage()
            if storage.data_ptr() not in seen:
                seen.add(storage.data_ptr())
                totals[stack[-1]] += storage.nbytes()
            return tensor.detach()  # keeps the storage (no address reuse) without a cycle through the graph

        batch = random_batch(policy.config, batch_size, codebook_size=CODEBOOK_SIZE,
                             positions=policy.suffix.branch("exec").positions)
        with (torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor),
              torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision != "fp32")):
            loss, _ = policy(batch)
        del loss
        counted[batch_size] = dict(totals)
    for handle in handles:
        handle.remove()
    del policy
    gc.collect()  # free the copy's gigabytes before the next count
    regions = ("vision", "vision_other", "text", "other")
    return {**{r: counted[2].get(r, 0) - counted[1].get(r, 0) for r in regions}, "input_size": input_size}


def activation_parts(counted: dict, shape: dict, checkpointing: bool) -> dict:
    """Per-sample activation bytes of the full model: ``rest`` (outside the layers, log-probabilities included),
    per layer of each tower what it keeps into the backward and its transient there (module docstring)."""
    parts = {"logprobs": 4 * shape["logits"], "loss": LOSS_TRANSIENT_BYTES * shape["logits"],
             "rest": counted["other"] + counted["vision_other"]}
    for region in ("text", "vision"):
        saved = counted[region]
        kept = shape[f"{region}_tokens"] * shape[f"{region}_width"] * counted["input_size"][region]
        # checkpointing keeps a layer's input (none in a frozen tower: no graph) and recomputes the rest
        parts[f"{region}_kept"] = (kept if saved else 0) if checkpointing else saved
        parts[f"{region}_transient"] = 2 * saved if checkpointing else saved
    parts["layer_forward"] = max(counted["text"], counted["vision"]) if checkpointing else 0
    parts["held"] = parts["rest"] + sum(shape[f"{r}_layers"] * parts[f"{r}_kept"] for r in ("text", "vision"))
    return parts


def activation_bytes(parts: dict) -> int:  # one number per sample for the table: held + the larger transient
    return parts["held"] + max(parts["loss"], parts["text_transient"], parts["vision_transient"])


def layers_backward(state: dict, parts: dict, batch: int, shape: dict) -> int:
    """The backward through the layers, decoder then vision tower, last layer first: each layer's gradients are
    added and its kept activations freed as it is done (the rest outside the layers is counted as held)."""
    order = ["text"] * shape["text_layers"] + ["vision"] * shape["vision_layers"]
    grads, kept, worst = state["grad_first"], parts["held"] - parts["logprobs"], 0
    for region in order:
        worst = max(worst, grads + state[f"grad_{region}_layer"] + batch * (kept + parts[f"{region}_transient"]))
        grads += state[f"grad_{region}_layer"]
        kept -= parts[f"{region}_kept"]
    return worst


def phase_bytes(state: dict, parts: dict, batch: int, checkpointing: bool, shape: dict) -> dict[str, int]:
    """Memory in each phase of a step at ``batch`` samples (module docstring); the peak is the largest."""
    base = state["weights"] + state["moments"] + state["ema"] + state["gathered"]
    forward_copies = state["copies_ckpt" if checkpointing else "copies_no_ckpt"]
    backward_copies = state["copies_outside" if checkpointing else "copies_no_ckpt"]
    held = parts["held"]
    return {
        "forward": base + forward_copies + batch * (held + max(parts["loss"], parts["layer_forward"])),
        "loss backward": base + backward_copies + state["grad_first"] + batch * (held + parts["loss"]),
        "layer backward": base + (0 if checkpointing else backward_copies) + layers_backward(state, parts, batch,
                                                                                               shape),
        "optimizer step": base + state["grads"] + max(state["step_temp"], state["ema_temp"]),
    }


def peak(*args) -> tuple[int, str]:
    """(bytes, phase) of the largest phase."""
    return max((value, name) for name, value in phase_bytes(*args).items())


def largest_batch(state: dict, parts: dict, checkpointing: bool, shape: dict, usable: int) -> tuple[int, str]:
    """The largest batch within ``usable`` bytes, and the phase that stops one more sample."""
    batch = 0
    while peak(state, parts, batch + 1, checkpointing, shape)[0] <= usable and batch < 4096:
        batch += 1
    return batch, peak(state, parts, batch + 1, checkpointing, shape)[1]


# --- report ------------------------------------------------------------------------------------------------------
def model_shape(policy) -> dict:
    """Layer counts, widths and tokens per sample of the policy's training forward."""
    model, config = policy.model, policy.config
    text, vision = model.backbone.config.text_config, model.backbone.config.vision_config
    state_tokens = 1 if model.state_projection is not None else config.state_dim
    suffix = model.suffix.length
    if config.loss_vocabulary == "full":
        logits = suffix * model.vocabulary.total
    else:
        logits = sum(high - low for low, high in zip(model.suffix.valid_low.tolist(), model.suffix.valid_high.tolist())
                     if high - low > 1)
    return {"vision_layers": vision.num_hidden_layers, "vision_width": vision.hidden_size,
            "vision_tokens": len(config.cameras) * model.image_tokens, "text_layers": text.num_hidden_layers,
            "text_width": text.hidden_size, "suffix": suffix, "vocabulary": model.vocabulary.total,
            "text_tokens": len(config.cameras) * model.image_tokens + config.max_instruction_tokens + state_tokens
            + suffix - 1, "logits": logits, "loss_vocabulary": config.loss_vocabulary}


def parameter_parts(model: nn.Module) -> dict:
    count = lambda module: sum(p.numel() for p in module.parameters())
    language = model.backbone.model.language_model
    parts = {"total": count(model), "vision tower (SigLIP So400m/14)": count(vision_tower(model)),
             "Gemma layers": count(language.layers), "embedding = LM head (tied)": language.embed_tokens.weight.numel()}
    return {**parts, "projector, norms, state projection": 2 * parts["total"] - sum(parts.values())}


def gib(value: float) -> str:
    return f"{value / GIB:.1f}"


def format_markdown(result: dict) -> str:
    shape, mib = result["shape"], 2**20
    lines = [f"# paligemma-3b training memory per option: computed, not measured ({result['date']})", "",
             f"Command: `{result['command']}`", "",
             ("**Computed, not measured**: parameters and dtypes from the real architecture on the `meta` device "
              "with the training code's memory options applied; activations from the tensors autograd saves in a "
              "CPU forward of the policy with one layer per tower, scaled to the real depth (method: the docstring of "
              "`benchmarks/memory_estimate.py`). `benchmarks/bench_gpu.py` measures on a GPU; its numbers win."), "",
             (f"Per sample: {shape['vision_tokens']} vision tokens (2 cameras x 256), {shape['text_tokens']} decoder "
              f"tokens ({shape['suffix'] - 1} of them suffix inputs), loss over {shape['suffix']} positions x "
              f"{shape['logits'] // shape['suffix']:,} ids (`loss_vocabulary` `{shape['loss_vocabulary']}`). "
              f"Budget: {result['usable_gib']:.0f} GiB per 80 GB GPU (an H100 holds about 79 GiB; the rest is left to "
              "the CUDA context, workspaces and fragmentation). GiB = 2^30 bytes."), "",
             "| parameters | " + " | ".join(result["parameters"]) + " |", "| --- |" + " ---: |" * len(
                 result["parameters"]),
             "| count | " + " | ".join(f"{n / 1e6:,.1f} M" for n in result["parameters"].values()) + " |", "",
             "## Memory per GPU and the largest batch", "",
             ("States in GiB. *Step*: AdamW's foreach temporary (or the bf16 EMA's rounding, if larger). *Copies*: "
              "autocast's bf16 weight copies in the forward (with / without checkpointing). *Fixed*: the peak at "
              "batch 0. *Act.*: GiB per sample (held into the backward + the larger transient). *Limited by*: the "
              "phase that stops one more sample."), "",
             ("| option | EMA | trainable | weights | grads | AdamW | EMA | step | copies | fixed | act. ckpt | "
              "act. none | **batch, checkpointing** | limited by | batch, none |"),
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |"]
    for row in result["rows"]:
        s = row["states"]
        gathered = f" (+{gib(s['gathered'])} gathered)" if s["gathered"] else ""
        lines.append(f"| {row['label']} | {row['ema']} | {s['trainable'] / 1e9:.2f} B | {gib(s['weights'])} | "
                     f"{gib(s['grads'])} | {gib(s['moments'])} | {gib(s['ema'])} | "
                     f"{gib(max(s['step_temp'], s['ema_temp']))}{gathered} | {gib(s['copies_ckpt'])} / "
                     f"{gib(s['copies_no_ckpt'])} | {gib(row['fixed'])} | {row['activations_ckpt'] / GIB:.2f} | "
                     f"{row['activations_none'] / GIB:.2f} | **{row['batch_ckpt']}** | {row['limit_ckpt']} | "
                     f"{row['batch_none']} |")
    lines += ["", "## Activations per sample (MiB)", "",
              ("| precision | decoder layer | vision layer | rest (embeddings, projector, log-probs) | "
               "loss transients | kept layer inputs (checkpointing) | total, checkpointing | total, none |"),
              "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name, act in result["activations"].items():
        values = [act["text"], act["vision"], act["other"] + act["vision_other"], act["loss_transient"],
                  act["kept_inputs"], act["total_ckpt"], act["total_none"]]
        lines.append(f"| {name} | " + " | ".join(f"{v / mib:.0f}" for v in values) + " |")
    return "\n".join(lines + ["", "## Reading the table", ""] + [f"- {n}" for n in result["notes"]] + [""])


def notes(result: dict) -> list[str]:
    rows = {(r["label"], r["ema"]): r for r in result["rows"]}
    act, shape, bf16 = result["activations"]["bf16"], result["shape"], rows[("bf16", "off")]["states"]

    def fits(label: str, ema: str) -> str:
        row = rows[(label, ema)]
        batch = (f"batch {row['batch_ckpt']} with checkpointing (limited by the {row['limit_ckpt']}), "
                 f"{row['batch_none']} without" if row["batch_ckpt"] else "no batch fits one 80 GB GPU")
        return f"{label}, EMA {ema}: {gib(row['fixed'])} GiB before activations; {batch}."

    return [
        fits("fp32", "on"), fits("bf16 (fp32 master + autocast)", "on"), fits("bf16-weights", "off"),
        (f"{fits('bf16', 'off')} Of the fixed part, {gib(bf16['step_temp'])} GiB is AdamW's foreach step "
         "temporary (torch's default on CUDA; `torch.optim.AdamW(..., fused=True)` updates in place without it); "
         f"autocast's bf16 weight copies ({gib(bf16['copies_ckpt'])} GiB) live only through the forward."),
        (f"Activations (bf16): {act['total_none'] / GIB:.2f} GiB per sample without checkpointing, "
         f"{act['total_ckpt'] / GIB:.2f} GiB with it, of which the kept layer inputs are only "
         f"{act['kept_inputs'] / 2**20:.0f} MiB; the rest is the loss over {shape['suffix']} positions x "
         f"{shape['vocabulary']:,} ids (fp32 log-probabilities saved, {act['loss_transient'] / 2**20:.0f} MiB of "
         "transients) and one layer's recomputation. Under autocast the residual streams stay fp32 (fp32 "
         "embeddings plus bf16 layer outputs), so kept inputs are 4 bytes wide; bf16-weights halves the decoder's."),
        ("In the layers' backward each layer's gradients are added and its kept activations freed in turn; what "
         "lies outside the layers is counted as held throughout and a layer's transient as twice its saved "
         "tensors, so this phase errs high. bench_gpu.py sweeps batch 1 to 16."),
        ("FSDP x 8 divides the states by 8, not the activations, and adds the all-gathered root unit (the 527 M-row "
         "embedding, with its unsharded gradient) and two layers in flight; it refuses bf16-weights and the CPU EMA."),
        ("Not counted: the CUDA context, workspaces and fragmentation (the budget's margin), host memory, FSDP's "
         "communication buffers. The CPU's fused attention saves no attention matrix; should a GPU fall back to "
         "the math kernel (masked attention, 256-dim heads), each decoder layer saves about 2 x 8 x 645^2 x 2 "
         "bytes (13 MiB) more per sample, some 10% more."),
    ]


def estimate(meta, counted: dict, shape: dict, usable: int) -> dict:
    """Every option's states, activations and largest batch (``counted``: per (precision, LoRA rank))."""
    rows, activations = [], {}
    for option in OPTIONS:
        act = counted[(option.precision, option.lora_rank)]
        if option.freeze_vision:  # a frozen tower builds no graph: nothing saved inside it (the projector outside)
            act = {**act, "vision": 0, "vision_other": 0}
        name = " + ".join([option.precision] + [f"LoRA {option.lora_rank}"] * bool(option.lora_rank)
                          + ["frozen vision"] * option.freeze_vision)
        parts = {ckpt: activation_parts(act, shape, ckpt) for ckpt in (True, False)}
        activations[name] = {**act, "loss_transient": parts[True]["loss"], "total_ckpt": activation_bytes(parts[True]),
                             "kept_inputs": parts[True]["held"] - parts[True]["rest"],
                             "total_none": activation_bytes(parts[False])}
        state = states(meta.model, option)
        row = {"label": option.label, "ema": option.ema, "states": state,
               "fixed": peak(state, parts[True], 0, True, shape)[0]}
        for ckpt, key in ((True, "ckpt"), (False, "none")):
            row[f"batch_{key}"], row[f"limit_{key}"] = largest_batch(state, parts[ckpt], ckpt, shape, usable)
            row[f"activations_{key}"] = activations[name][f"total_{key}"]
        rows.append(row)
    return {"shape": shape, "rows": rows, "activations": activations}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("docs/results/memory-paligemma-3b.md"))
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers as JSON here")
    parser.add_argument("--usable-gib", type=float, default=76.0, help="memory a batch may use per 80 GB GPU")
    parser.add_argument("--date", default=datetime.date.today().isoformat())
    args = parser.parse_args(argv)
    started = time.perf_counter()
    tokenizer, config = bench_tokenizer(), bench_config("paligemma-3b")
    meta = random_policy(config, tokenizer, "meta")
    shape = model_shape(meta)
    small = sizing_policy(config, tokenizer)
    counted = {}
    for key in sorted({(option.precision, option.lora_rank) for option in OPTIONS}):
        print(f"memory_estimate.py: counting saved activations on the CPU: {key}", file=sys.stderr, flush=True)
        counted[key] = count_activations(small, *key)
    result = estimate(meta, counted, shape, int(args.usable_gib * GIB))
    command = "python benchmarks/memory_estimate.py " + " ".join(sys.argv[1:] if argv is None else argv)
    result.update(date=args.date, command=command.strip(), usable_gib=args.usable_gib, torch=torch.__version__,
                  parameters=parameter_parts(meta.model), seconds=round(time.perf_counter() - started, 1))
    result["notes"] = notes(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out, format_markdown(result))
    if args.json is not None:
        atomic_write_json(args.json, result)
    print(format_markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
