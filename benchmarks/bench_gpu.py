"""GPU check of the paligemma-3b policy: training throughput and peak memory per batch size, and decode latency.

paligemma-3b at its real sizes (SigLIP So400m/14 at 224 px + Gemma-2B, 257,152 vocabulary rows as pi0-FAST's) with
random weights built on the GPU (nothing downloaded or written), or the weights of ``--backbone-path DIR`` (a
PaliGemma or LeRobot pi0fast directory); two 224-px cameras, 8-dim state, 7-dim actions in 20-step chunks, an action
tokenizer of 3 levels x 4096 codes.

(a) Decoding: ``predict_action_chunk`` ms per chunk (greedy, batch 1, RVQ decode included) for plan, noplan (the same
    weights without the plan branch) and plan with a cached plan (``plan_ids=``), the model in bf16; warm-up rounds,
    then the median of ``--repeats`` rounds interleaved across the cases. Last, if time allows, again with the decode
    step through ``torch.compile`` (``C2C_DECODE_COMPILE=1``: CUDA graphs).
(b) Training through the training code (``apply_memory_options``, ``cast_bf16_weights``, ``loop.make_optimizer``,
    ``loop.train_step``, the weight EMA): bf16 (fp32 master weights + autocast) with gradient checkpointing at batch
    1, 4, 8, 16 (stopping at the first out-of-memory, which is recorded), then ``bf16-weights`` and the EMA in host
    memory at the largest batch that ran. Samples/s: median of timed steps after warm-up; peak memory:
    ``torch.cuda.max_memory_allocated`` / ``max_memory_reserved``.

Targets: batch >= 8 per 80 GB GPU, plan decode <= 2.2x noplan, cached plan <= 1.2x noplan, plan chunk <= 150 ms on
an H100. The JSON and Markdown reports are rewritten after every stage, so a run cut short keeps what it measured.
``--smoke`` runs the same code on the CPU with the ``debug`` preset in seconds (numbers meaningless).

    python benchmarks/bench_gpu.py --out runs/bench-gpu            # on a GPU machine, about 4-8 minutes
    python benchmarks/bench_gpu.py --smoke --out runs/bench-gpu-smoke    # the code path on the CPU
"""

from __future__ import annotations

import argparse
import copy
import gc
import os
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import transformers

from c2c.errors import C2CError
from c2c.policy.backbone import backbone_from_config, paligemma_config
from c2c.policy.config import PolicyConfig, policy_config
from c2c.policy.fast_decoding import COMPILE_ENV
from c2c.policy.instructions import InstructionTokenizer
from c2c.policy.model import PlanExecuteVLA
from c2c.policy.policy import PlanExecutePolicy, suffix_for, vocabulary_for
from c2c.policy.testing import INSTRUCTIONS, random_action_tokenizer, random_batch, random_observation
from c2c.policy.training.config import PolicyTrainConfig
from c2c.policy.training.distributed import Launch, Processes
from c2c.policy.training.loop import make_optimizer, train_step
from c2c.policy.training.memory import (MemoryOptions, WeightEMA, apply_memory_options, cast_bf16_weights,
                                        trainable_parameters)
from c2c.utils.io import atomic_write_json, atomic_write_text

CODEBOOK_SIZE = 4096  # the paper's codebook (B.4): 3 levels x 4096 codes
ACTION_DIM, STATE_DIM = 7, 8
CAMERAS = ("front", "wrist")
PALIGEMMA_ROWS = 257_152  # pi0-FAST's embedding rows (vocabulary)
H100_USABLE_GIB = 78.0  # what torch can allocate on an 80 GB H100 (judges the batch target on larger GPUs)
GIB = 1024**3
TARGETS = {"batch_per_80gb": 8, "plan_vs_noplan": 2.2, "cached_vs_noplan": 1.2, "plan_ms_h100": 150.0}


# --- building ----------------------------------------------------------------------------------------------------
def bench_config(preset: str, variant: str = "plan", backbone_path: str | None = None) -> PolicyConfig:
    # A pretrained preset insists on a backbone_path; random weights never read it.
    path = backbone_path or ("<random weights>" if preset.startswith("paligemma") else None)
    return policy_config(preset, variant=variant, cameras=CAMERAS, state_dim=STATE_DIM, action_dim=ACTION_DIM,
                         backbone_path=path)


def bench_tokenizer():
    return random_action_tokenizer("joint", action_dim=ACTION_DIM, state_dim=STATE_DIM, codebook_size=CODEBOOK_SIZE)


def random_policy(config: PolicyConfig, tokenizer: Any, device: str | torch.device = "cpu",
                  layers: tuple[int, int] | None = None, rows: int = PALIGEMMA_ROWS) -> PlanExecutePolicy:
    """A random-weight policy of ``config``'s preset sizes, built directly on ``device`` ("meta": no memory at all).

    A pretrained preset gets ``rows`` vocabulary rows with the action ids in their tail, as a checkpoint would;
    ``layers`` = (vision, text) overrides the layer counts (memory_estimate.py counts activations per layer)."""
    instructions = InstructionTokenizer.train(INSTRUCTIONS)
    text_rows = rows if config.preset.pretrained else instructions.vocab_size
    vocabulary = vocabulary_for(config, tokenizer, text_rows)
    suffix = suffix_for(config, tokenizer, vocabulary)
    hf_config = paligemma_config(config, vocabulary.total, instructions.pad_id)
    if layers is not None:
        hf_config.vision_config.num_hidden_layers, hf_config.text_config.num_hidden_layers = layers
    torch.manual_seed(config.seed)
    with torch.device(device):
        model = PlanExecuteVLA(config, backbone_from_config(hf_config), vocabulary, suffix)
    return PlanExecutePolicy(config, model, tokenizer, instructions)


def sibling_policy(policy: PlanExecutePolicy, variant: str) -> PlanExecutePolicy:
    """Another variant over the same weights (noplan beside plan: same backbone, no plan branch)."""
    config = policy.config.replace(variant=variant)
    model = PlanExecuteVLA(config, policy.model.backbone, policy.model.vocabulary,
                           suffix_for(config, policy.action_tokenizer, policy.model.vocabulary))
    model.state_projection = policy.model.state_projection
    return PlanExecutePolicy(config, model, policy.action_tokenizer, policy.instruction_tokenizer).eval()


def to_bf16_for_decoding(policy: PlanExecutePolicy) -> PlanExecutePolicy:
    """Every weight and buffer in bf16 except the rotary inverse frequencies (positions stay exact)."""
    kept = [(module, name, buffer.clone()) for module in policy.model.modules()
            for name, buffer in module.named_buffers(recurse=False) if "inv_freq" in name]
    policy.model.to(torch.bfloat16)
    for module, name, buffer in kept:
        module._buffers[name] = buffer
    return policy.eval()


def release() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# --- decoding ----------------------------------------------------------------------------------------------------
def decode_latency(plan: PlanExecutePolicy, noplan: PlanExecutePolicy, repeats: int, warmup: int) -> dict:
    observation = random_observation(plan.config, seed=1)
    plan_ids = plan.generate(observation)[0].plan_ids  # the plan a cached chunk reuses
    cases = {
        "plan": (lambda: plan.predict_action_chunk(observation), plan.suffix.length - 1),
        "noplan": (lambda: noplan.predict_action_chunk(observation), noplan.suffix.length - 1),
        "plan_cached": (lambda: plan.predict_action_chunk(observation, plan_ids=plan_ids),
                        plan.suffix.branch("exec").length),
    }
    device = plan.device
    times: dict[str, list[float]] = {name: [] for name in cases}
    for round_index in range(warmup + repeats):  # interleaved, so drifting clocks or load affect all cases alike
        for name, (run, _) in cases.items():
            synchronize(device)
            start = time.perf_counter()
            run()
            synchronize(device)
            if round_index >= warmup:
                times[name].append(time.perf_counter() - start)
    result: dict[str, Any] = {"parameters": sum(p.numel() for p in plan.model.parameters())}
    for name, (_, tokens) in cases.items():
        median = statistics.median(times[name])
        result[name] = {"ms_per_chunk": 1000 * median, "generated_tokens": tokens,
                        "ms_per_token": 1000 * median / tokens, "runs_ms": [round(1000 * t, 2) for t in times[name]]}
    return result


def decode_rows(factory: Callable[[], PlanExecutePolicy], repeats: int, warmup: int, compiled: bool) -> dict:
    """A fresh bf16 policy's decode latency with the eager decode step, or with it through ``torch.compile``
    (``C2C_DECODE_COMPILE``: CUDA graphs on a GPU; the warm-up rounds include compiling)."""
    previous = os.environ.get(COMPILE_ENV)
    os.environ[COMPILE_ENV] = "1" if compiled else "0"
    started = time.perf_counter()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            plan = to_bf16_for_decoding(factory())
            result = decode_latency(plan, sibling_policy(plan, "noplan"), repeats, warmup)
    finally:
        if previous is None:
            os.environ.pop(COMPILE_ENV, None)
        else:
            os.environ[COMPILE_ENV] = previous
    result["seconds"] = time.perf_counter() - started  # model build and warm-up (compiling) included
    result["warnings"] = sorted({str(w.message).splitlines()[0][:300] for w in caught
                                 if "decode step" in str(w.message)})
    return result


def host_copy_check(device: torch.device) -> dict:
    """Does a weight copied to the CPU with ``non_blocking=True`` (as the CPU EMA's update does) hold its values when
    read at once, before any synchronisation? torch returns pinned memory for such copies, filled asynchronously."""
    source = torch.randn(1 << 28, device=device)  # 1 GiB: the copy takes tens of milliseconds
    synchronize(device)
    start = time.perf_counter()
    host = source.to("cpu", torch.float32, non_blocking=True)
    seconds = time.perf_counter() - start
    tail = host[-(1 << 20):].clone()  # read at once, as the EMA's lerp_ does: the end is copied last
    synchronize(device)
    return {"pinned": host.is_pinned(), "call_ms": round(1000 * seconds, 2),
            "values_complete_when_read": bool(torch.equal(tail, source[-(1 << 20):].cpu()))}


# --- training ----------------------------------------------------------------------------------------------------
def sweep_batches(run_batch: Callable[[int], dict], batches: list[int], out_of_time: Callable[[], bool]) -> list[dict]:
    """``run_batch`` at each batch size in order; the sweep stops after the first out-of-memory (recorded)."""
    rows = []
    for batch_size in batches:
        if out_of_time():
            rows.append({"batch": batch_size, "status": "skipped (time budget)"})
            continue
        oom = None
        try:
            rows.append({"batch": batch_size, "status": "ok", **run_batch(batch_size)})
        except torch.OutOfMemoryError as err:
            oom = str(err).splitlines()[0][:200]
        if oom is not None:  # outside the except block: the traceback's frames (and their tensors) are gone
            release()
            rows.append({"batch": batch_size, "status": "out of memory", "error": oom})
            break
    return rows


def training_rows(factory: Callable[[], PlanExecutePolicy], precision: str, ema_mode: str, batches: list[int],
                  steps: int, warmup: int, out_of_time: Callable[[], bool]) -> dict:
    """One memory scheme: a fresh policy with ``apply_memory_options``, AdamW and the EMA as ``c2c policy train``
    sets them up, timed at each batch size."""
    policy = factory()
    config, device = policy.config, policy.device
    options = MemoryOptions(precision=precision, gradient_checkpointing=True)
    applied = apply_memory_options(policy.model, options)
    if precision == "bf16-weights":  # train.py casts after apply_memory_options (and after its fp32 copy)
        cast_bf16_weights(policy.model)
    policy.train()
    train_config = PolicyTrainConfig(dataset="-", tokenizer="-", out="-", preset=config.backbone, precision=precision,
                                     gradient_checkpointing=True, ema=ema_mode, device=device.type)
    optimizer = make_optimizer(policy.model, train_config)
    trainable = trainable_parameters(policy.model)
    ema = WeightEMA(trainable, train_config.ema_decay, ema_mode)
    processes = Processes(Launch(1, 0, 0, device, "ddp"))
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision != "fp32")  # as train.py
    positions = policy.suffix.branch("exec").positions
    step = 0

    def run_batch(batch_size: int) -> dict:
        nonlocal step
        batch = random_batch(config, batch_size, codebook_size=CODEBOOK_SIZE, positions=positions, seed=batch_size)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        seconds, logs = [], {}
        for index in range(warmup + steps):
            synchronize(device)
            start = time.perf_counter()
            logs = train_step(policy, policy, optimizer, [batch], train_config, processes, autocast, step)
            ema.update(trainable, step)
            synchronize(device)
            step += 1
            if index >= warmup:
                seconds.append(time.perf_counter() - start)
        median = statistics.median(seconds)
        row = {"samples_per_s": batch_size / median, "ms_per_step": 1000 * median,
               "runs_ms": [round(1000 * s, 1) for s in seconds], "loss": logs.get("loss")}
        if device.type == "cuda":
            row.update(peak_allocated_gib=torch.cuda.max_memory_allocated(device) / GIB,
                       peak_reserved_gib=torch.cuda.max_memory_reserved(device) / GIB)
        return row

    rows = sweep_batches(run_batch, batches, out_of_time)  # the policy and its optimiser go when this returns
    return {"precision": precision, "gradient_checkpointing": True, "ema": ema_mode,
            "trainable_parameters": applied["trainable_parameters"], "parameters": applied["parameters"],
            "rows": rows}


# --- report ------------------------------------------------------------------------------------------------------
def judge(report: dict) -> list[dict]:
    """The targets. A batch fits an 80 GB GPU when it ran on one, or on a larger GPU within an H100's memory."""
    device_gib, smoke, name = report["device_memory_gib"], report["smoke"], report["device"]
    sweep = next((s for s in report["training"] if s["precision"] == "bf16" and s["ema"] == report["ema"]), None)
    ran = [r for r in (sweep or {"rows": []})["rows"] if r["status"] == "ok"]
    fitting = [r["batch"] for r in ran if device_gib is not None and (
        device_gib <= 80.5 or r.get("peak_reserved_gib", float("inf")) <= H100_USABLE_GIB)]
    largest = max(fitting, default=0)
    value = (f"largest batch fitting 80 GB {largest}" if device_gib is not None else
             f"largest batch run {max((r['batch'] for r in ran), default=0)} (no GPU)")
    checks = [{"target": f"batch >= {TARGETS['batch_per_80gb']} per 80 GB GPU (bf16, checkpointing)",
               "value": value if sweep else "not measured",
               "passed": None if smoke or sweep is None else largest >= TARGETS["batch_per_80gb"]}]
    for key, how in (("decode", ""), ("decode_compiled", ", compiled step")):
        decode = report.get(key)
        if not decode or "plan" not in decode:
            continue
        noplan = decode["noplan"]["ms_per_chunk"]
        for target, case, label in (("plan_vs_noplan", "plan", "plan decode"),
                                    ("cached_vs_noplan", "plan_cached", "cached plan")):
            ratio = decode[case]["ms_per_chunk"] / noplan
            checks.append({"target": f"{label} <= {TARGETS[target]}x noplan{how}", "value": f"{ratio:.2f}x",
                           "passed": None if smoke else ratio <= TARGETS[target]})
        plan_ms = decode["plan"]["ms_per_chunk"]
        on_h100 = "H100" in name and not smoke
        checks.append({"target": f"plan chunk <= {TARGETS['plan_ms_h100']:.0f} ms on an H100{how}",
                       "value": f"{plan_ms:.1f} ms" + ("" if on_h100 else f" (on {name}: not judged)"),
                       "passed": plan_ms <= TARGETS["plan_ms_h100"] if on_h100 else None})
    return checks


def format_markdown(report: dict) -> str:
    mem = f"{report['device_memory_gib']:.1f} GiB" if report["device_memory_gib"] else "no GPU"
    lines = [f"# GPU check: {report['preset']} ({report['parameters'] / 1e9:.3f} B parameters, {report['weights']})",
             "", (f"Device: {report['device']} ({mem}); torch {report['torch']} (CUDA {report['cuda']}), "
                  f"transformers {report['transformers']}; {report['seconds']:.0f} s. Command: "
                  f"`{report['command']}`"), *[f"\n**Error** in {error}" for error in report["errors"]],
             "", "## Training (forward + backward + AdamW + EMA update; gradient checkpointing)", "",
             "| precision | EMA | batch | samples / s | ms / step | peak allocated GiB | peak reserved GiB | status |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |"]
    for sweep in report["training"]:
        for row in sweep["rows"]:
            cells = [f"{row[k]:.2f}" if isinstance(row.get(k), float) else "-" for k in
                     ("samples_per_s", "ms_per_step", "peak_allocated_gib", "peak_reserved_gib")]
            lines.append(f"| {sweep['precision']} | {sweep['ema']} | {row['batch']} | " + " | ".join(cells)
                         + f" | {row['status']} |")
    for key, how in (("decode", "eager decode step"), ("decode_compiled", "decode step through torch.compile")):
        decode = report.get(key)
        if not decode or "plan" not in decode:
            if decode:
                lines += ["", f"## Decode latency, {how}: {decode.get('status', 'not run')}"]
            continue
        lines += ["", (f"## Decode latency per chunk, {how} (greedy, batch 1, bf16, median of {report['repeats']}; "
                       f"{decode['seconds']:.0f} s with build and warm-up)"), "",
                  "| case | generated tokens | ms / chunk | ms / token | vs noplan |",
                  "| --- | ---: | ---: | ---: | ---: |"]
        base = decode["noplan"]["ms_per_chunk"]
        for name, label in (("plan", "plan"), ("noplan", "noplan"), ("plan_cached", "plan, cached plan")):
            row = decode[name]
            lines.append(f"| {label} | {row['generated_tokens']} | {row['ms_per_chunk']:.1f} | "
                         f"{row['ms_per_token']:.2f} | {row['ms_per_chunk'] / base:.2f}x |")
        lines += [f"\nWarning: {warning}" for warning in decode["warnings"]]
    if report.get("host_copy"):
        lines += ["", f"Non-blocking device-to-host copy read at once (the CPU EMA's update): {report['host_copy']}"]
    lines += ["", "## Targets", "", "| target | measured | result |", "| --- | --- | --- |"]
    for check in report["targets"]:
        verdict = {True: "pass", False: "**fail**", None: "not judged"}[check["passed"]]
        lines.append(f"| {check['target']} | {check['value']} | {verdict} |")
    return "\n".join(lines + [""])


# --- main --------------------------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/bench-gpu"))
    parser.add_argument("--smoke", action="store_true", help="the debug preset on the CPU, in seconds")
    parser.add_argument("--backbone-path", default=None, help="real PaliGemma or LeRobot pi0fast weights")
    parser.add_argument("--batches", default="1,4,8,16", help="bf16 training batch sizes, ascending")
    parser.add_argument("--ema", default="off", choices=("off", "cpu"), help="EMA placement of the batch sweep")
    parser.add_argument("--steps", type=int, default=3, help="timed training steps per batch size")
    parser.add_argument("--warmup", type=int, default=2, help="untimed training steps / decode rounds first")
    parser.add_argument("--repeats", type=int, default=7, help="timed decode rounds")
    parser.add_argument("--budget-s", type=float, default=360.0, help="skip remaining training rows past this time")
    parser.add_argument("--no-compile", dest="compile", action="store_false",
                        help="skip the decode measured with the decode step through torch.compile")
    args = parser.parse_args(argv)
    if args.smoke:
        args.batches, args.steps, args.warmup, args.repeats = "1,2", 1, 1, 2
    args.batch_list = [int(b) for b in args.batches.split(",") if b.strip().isdigit() and int(b) > 0]
    if len(args.batch_list) != len(args.batches.split(",")):
        parser.error(f"--batches must be comma-separated positive integers, got {args.batches!r}")
    return args


def main(argv: list[str] | None = None) -> int:
    args, started = parse_args(argv), time.perf_counter()
    if not args.smoke and not torch.cuda.is_available():
        print(f"bench_gpu.py: torch {torch.__version__} sees no CUDA GPU; run it on a GPU machine, or pass --smoke "
              "for the CPU check of the code path", file=sys.stderr)
        return 2
    if args.smoke:  # the debug model's matrices are tiny: a second OpenMP thread only adds synchronisation
        torch.set_num_threads(1)
    device = torch.device("cpu") if args.smoke else torch.device("cuda", torch.cuda.current_device())
    preset = "debug" if args.smoke else "paligemma-3b"
    tokenizer, config = bench_tokenizer(), bench_config(preset, backbone_path=args.backbone_path)
    if args.backbone_path:  # real weights: loaded once on the CPU, copied to the device for every stage
        template = PlanExecutePolicy.build(config, tokenizer)
        factory = lambda: copy.deepcopy(template).to(device)
    else:
        factory = lambda: random_policy(config, tokenizer, device)
    out_of_time = lambda: time.perf_counter() - started > args.budget_s
    on_gpu = device.type == "cuda"
    report = {"command": "python benchmarks/bench_gpu.py " + " ".join(sys.argv[1:] if argv is None else argv),
              "smoke": args.smoke, "preset": preset, "weights": args.backbone_path or "random weights",
              "device": torch.cuda.get_device_name(device) if on_gpu else "cpu",
              "device_memory_gib": torch.cuda.get_device_properties(device).total_memory / GIB if on_gpu else None,
              "torch": torch.__version__, "cuda": torch.version.cuda, "transformers": transformers.__version__,
              "ema": args.ema, "repeats": args.repeats, "warmup": args.warmup, "steps": args.steps,
              "shapes": {"cameras": len(CAMERAS), "image_size": config.image_size, "state_dim": STATE_DIM,
                         "action_dim": ACTION_DIM, "codebook": f"3 x {CODEBOOK_SIZE}",
                         "loss_vocabulary": config.loss_vocabulary},
              "parameters": 0, "decode": None, "decode_compiled": None, "host_copy": None, "training": [], "errors": []}

    def stage(key: str, run: Callable[[], dict], **label: Any) -> dict:
        """One stage; an error is recorded and the next stages still run. The reports are rewritten after each, so
        a run cut short keeps what it measured."""
        error = None
        try:
            result = run()
        except Exception as err:  # noqa: BLE001 - one failing stage must not lose the other stages' numbers
            error = f"{type(err).__name__}: {str(err).splitlines()[0][:300] if str(err) else ''}"
        if error is not None:  # outside the except block: the traceback (and the tensors it holds) is gone
            result = {**label, "status": f"error: {error}", "rows": [{"batch": "-", "status": f"error: {error}"}]}
            report["errors"].append(f"{key}: {error}")
        release()
        report["parameters"] = report["parameters"] or result.get("parameters", 0)
        if key == "training":
            report["training"].append(result)
        else:
            report[key] = result
        report.update(seconds=time.perf_counter() - started, targets=judge(report))
        args.out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(args.out / "bench_gpu.json", report)
        atomic_write_text(args.out / "bench_gpu.md", format_markdown(report))
        return result

    stage("decode", lambda: decode_rows(factory, args.repeats, args.warmup, compiled=False))
    if on_gpu:
        stage("host_copy", lambda: host_copy_check(device))
    sweep = stage("training", lambda: training_rows(factory, "bf16", args.ema, args.batch_list, args.steps,
                                                    args.warmup, out_of_time), precision="bf16", ema=args.ema)
    fitted = [row["batch"] for row in sweep["rows"] if row["status"] == "ok"]
    one = [max(fitted, default=min(args.batch_list))]  # the other rows at the largest batch that ran
    for precision, ema in (("bf16-weights", args.ema), ("bf16", "cpu" if args.ema == "off" else "off")):
        stage("training", lambda p=precision, e=ema: training_rows(factory, p, e, one, args.steps, args.warmup,
                                                                 out_of_time), precision=precision, ema=ema)
    skip = "smoke" if args.smoke else "--no-compile" if not args.compile else (
        "time budget" if time.perf_counter() - started > args.budget_s - 90 else None)
    stage("decode_compiled", (lambda: {"status": f"skipped ({skip})"}) if skip else
          (lambda: decode_rows(factory, args.repeats, args.warmup, compiled=True)))
    print(format_markdown(report))
    return 1 if report["errors"] else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except C2CError as err:
        print(f"bench_gpu.py: {err}", file=sys.stderr)
        sys.exit(2)
