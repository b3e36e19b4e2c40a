"""Benchmark: policy decode latency (plan vs noplan vs plan caching), the fast and the reference decode loops side by
side, sampled decodes that must all decode, and training throughput fp32 vs bf16 autocast, in one run on this machine.

The ``tiny`` preset with random weights (latency does not depend on what the weights learned), Meta-World shapes
(two 96-px cameras, 4-dim state and actions) and the real action vocabulary: 3 levels x 4096 codes, 8 latent
positions per chunk, i.e. 24 exec tokens, + 24 plan tokens for the plan variant.

(a) ``predict_action_chunk`` latency, greedy, batch 1 (prefix, KV-cached generation and RVQ decode included),
    median of several runs interleaved across the three cases so machine load affects them alike;
(b) sampled decodes at temperature 1.0 from the random-weight plan model, counting undecodable outputs (ids
    outside their position's range, codes the tokenizer had to repair, non-finite actions); constrained
    decoding makes this 0 by construction;
(c) training samples/s (forward + backward + AdamW step, batch 16) in fp32 and with bf16 autocast;
(d) the decode loops: ``generate_suffix`` (prefill + generation) with ``method="fast"`` and ``method="reference"``
    for plan, noplan and a cached plan, on nano and tiny, batch 1 and 8, rounds interleaved across all cases; min
    and median wall time and thread CPU time (which leaves out the waits of a shared machine); with ``--compile``
    also the fast loop's step through ``torch.compile``. Ratios fast / reference, plan / noplan and cached /
    noplan, and the targets they are checked against (:data:`TARGETS`);
(e) ``anatomy``: a fast chunk's parts on each --loop-presets preset at batch 1 (the prefill, one step, the same
    step's operations on 8-wide weights, its matrix products alone, the LM head; ``decode_anatomy.py``).

    python benchmarks/bench_policy.py --out runs/bench-policy
    python benchmarks/bench_policy.py --parts loops --threads 1 --out runs/bench-decoding
    python benchmarks/bench_policy.py --parts loops,anatomy --loop-batches 1 --threads 1 --out runs/bench-anatomy
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from decode_anatomy import format_anatomy, step_anatomy

from c2c.policy.config import policy_config
from c2c.policy.decoding import generate_suffix
from c2c.policy.policy import PlanExecutePolicy
from c2c.policy.testing import (
    INSTRUCTIONS,
    random_action_tokenizer,
    random_batch,
    random_observation,
)
from c2c.utils.io import atomic_write_json, atomic_write_text

CODEBOOK_SIZE = 4096  # the paper's codebook (B.4)
CAMERAS = ("corner2", "gripperPOV")
PARTS = ("latency", "sampling", "training", "loops", "anatomy")
LOOP_CASES = ("plan", "noplan", "plan_cached")
# What the decode loops are checked against, at batch 1 (batch 8 is reported, not checked): (description, check).
TARGETS = {
    "nano_plan": ("nano plan chunk: <= 40 ms, or >= 3x faster than the reference loop",
                  lambda r: r["nano"]["1"]["plan"]["fast"]["ms"] <= 40 or r["nano"]["1"]["plan"]["speedup"] >= 3),
    "tiny_plan": ("tiny plan chunk: >= 2.5x faster than the reference loop",
                  lambda r: r["tiny"]["1"]["plan"]["speedup"] >= 2.5),
    "plan_vs_noplan": ("fast loop, each preset: plan <= 2.2x noplan",
                       lambda r: all(p["1"]["plan_vs_noplan"] <= 2.2 for p in r.values())),
    "cached_vs_noplan": ("fast loop, each preset: cached plan <= 1.2x noplan",
                         lambda r: all(p["1"]["cached_vs_noplan"] <= 1.2 for p in r.values())),
}


def build(variant: str, tokenizer, preset: str = "tiny") -> PlanExecutePolicy:
    config = policy_config(preset, variant=variant, cameras=CAMERAS, state_dim=4, action_dim=4)
    return PlanExecutePolicy.build(config, tokenizer, instructions=INSTRUCTIONS).eval()


def timed(function) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def decode_latency(plan: PlanExecutePolicy, noplan: PlanExecutePolicy, repeats: int) -> dict:
    observation = random_observation(plan.config, seed=1)
    plan_ids = plan.generate(observation)[0].plan_ids  # (1, 24): the plan a cached chunk reuses
    cases = {
        "plan": (lambda: plan.predict_action_chunk(observation), plan.suffix.length - 1),
        "noplan": (lambda: noplan.predict_action_chunk(observation), noplan.suffix.length - 1),
        "plan_cached": (lambda: plan.predict_action_chunk(observation, plan_ids=plan_ids),
                        plan.suffix.branch("exec").length),
    }
    times: dict[str, list[float]] = {name: [] for name in cases}
    for round_index in range(repeats + 1):  # round 0 warms up
        for name, (run, _) in cases.items():
            seconds = timed(run)
            if round_index:
                times[name].append(seconds)
    result = {}
    for name, (_, tokens) in cases.items():
        median = statistics.median(times[name])
        result[name] = {"ms_per_chunk": 1000 * median, "generated_tokens": tokens, "tokens_per_s": tokens / median,
                        "runs_ms": [round(1000 * t, 1) for t in times[name]]}
    return result


@torch.no_grad()
def decode_loops(tokenizer, presets: list[str], batches: list[int], repeats: int, compile: bool) -> dict:
    """ms per chunk of ``generate_suffix`` (prefill + generation, greedy) for each loop, case, preset and batch."""
    methods = {"fast": {"method": "fast", "compile": False}, "reference": {"method": "reference"}}
    if compile:
        methods["compiled"] = {"method": "fast", "compile": True}
        # One compiled graph per shape (preset, batch, suffix length): more than dynamo's default limit of 8.
        limit = max(torch._dynamo.config.recompile_limit, 4 * len(presets) * len(batches))
        torch._dynamo.config.recompile_limit = limit
    cases, tokens, compile_s = {}, {}, {}
    for preset in presets:
        plan, noplan = build("plan", tokenizer, preset), build("noplan", tokenizer, preset)
        for batch in batches:
            observation = random_observation(plan.config, batch_size=batch, seed=1)
            inputs = plan.processor.prefix_inputs(observation)[0]
            plan_ids = generate_suffix(plan.model, inputs)[:, plan.suffix.span("plan")]
            models = {"plan": (plan.model, {}), "noplan": (noplan.model, {}),
                      "plan_cached": (plan.model, {"plan_ids": plan_ids})}
            for case, (model, extra) in models.items():
                tokens[case] = model.suffix.length - 1 - (plan_ids.shape[1] if extra else 0)
                for method, options in methods.items():
                    key = (preset, batch, case, method)
                    cases[key] = functools.partial(generate_suffix, model, inputs, **options, **extra)
                    if method == "compiled":  # the first call compiles (once per shape)
                        compile_s[f"{preset}/{batch}/{case}"] = timed(cases[key])
    wall: dict = {key: [] for key in cases}
    cpu: dict = {key: [] for key in cases}
    for round_index in range(repeats + 1):  # round 0 warms up
        for key, run in cases.items():
            start_cpu, start = time.thread_time(), time.perf_counter()
            run()
            if round_index:
                wall[key].append(time.perf_counter() - start)
                cpu[key].append(time.thread_time() - start_cpu)
    result: dict = {}
    for (preset, batch, case, method), seconds in wall.items():
        # min: contention on a shared machine only ever adds time; the medians show how much it added
        row = {"ms": 1000 * min(seconds), "median_ms": 1000 * statistics.median(seconds),
               "cpu_ms": 1000 * min(cpu[(preset, batch, case, method)]),
               "runs_ms": [round(1000 * t, 1) for t in seconds]}
        entry = result.setdefault(preset, {}).setdefault(str(batch), {}).setdefault(case, {"tokens": tokens[case]})
        entry[method] = row
    for preset_rows in result.values():
        for rows in preset_rows.values():
            for case in LOOP_CASES:
                rows[case]["speedup"] = rows[case]["reference"]["ms"] / rows[case]["fast"]["ms"]
                rows[case]["new_over_old"] = 1.0 / rows[case]["speedup"]
                rows[case]["cpu_speedup"] = rows[case]["reference"]["cpu_ms"] / rows[case]["fast"]["cpu_ms"]
                if "compiled" in rows[case]:
                    rows[case]["compiled_speedup"] = rows[case]["reference"]["ms"] / rows[case]["compiled"]["ms"]
            rows["plan_vs_noplan"] = rows["plan"]["fast"]["ms"] / rows["noplan"]["fast"]["ms"]
            rows["cached_vs_noplan"] = rows["plan_cached"]["fast"]["ms"] / rows["noplan"]["fast"]["ms"]
    targets = {}
    for name, (text, check) in TARGETS.items():
        try:
            targets[name] = {"target": text, "met": bool(check(result))}
        except KeyError:  # a preset or batch that was not measured
            continue
    return {"presets": result, "targets": targets, "compile_s": compile_s,
            "methods": list(methods), "batches": batches}


@torch.no_grad()
def sampled_decodes(policy: PlanExecutePolicy, samples: int, batch_size: int) -> dict:
    generator = torch.Generator().manual_seed(0)
    suffix, tokenizer = policy.suffix, policy.action_tokenizer
    counts = {"invalid_ids": 0, "repaired_codes": 0, "non_finite_actions": 0, "undecodable": 0}
    start, done = time.perf_counter(), 0
    while done < samples:
        size = min(batch_size, samples - done)
        observation = random_observation(policy.config, batch_size=size, seed=done)
        chunk, _ = policy.generate(observation, temperature=1.0, generator=generator)
        ids = chunk.suffix_ids  # (B, T)
        bad = ~suffix.is_valid(ids[:, :-1]).all(dim=1) | (ids[:, -1] != suffix.end_id)  # (B,)
        codes = suffix.ids_to_codes(ids)
        repaired = np.zeros(size, dtype=bool)
        for mode, branch_codes in codes.items():
            decoded, report = tokenizer.decode(branch_codes.numpy(), mode, return_report=True)
            repaired |= report.repaired
            counts["non_finite_actions"] += int((~np.isfinite(decoded).all(axis=(1, 2))).sum())
        counts["invalid_ids"] += int(bad.sum())
        counts["repaired_codes"] += int(repaired.sum())
        counts["undecodable"] += int((bad.numpy() | repaired).sum())
        done += size
    return {"samples": samples, "temperature": 1.0, **counts, "seconds": time.perf_counter() - start}


def training_throughput(tokenizer, precisions: list[str], batch_size: int, steps: int) -> dict:
    config = policy_config("tiny", variant="plan", cameras=CAMERAS, state_dim=4, action_dim=4)
    policy = PlanExecutePolicy.build(config, tokenizer, instructions=INSTRUCTIONS).train()
    optimizer = torch.optim.AdamW(policy.parameters(), lr=1e-4)
    batch = random_batch(config, batch_size, codebook_size=CODEBOOK_SIZE, positions=8)

    def step(precision: str) -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss, _ = policy(batch)
        loss.backward()
        optimizer.step()

    times: dict[str, list[float]] = {p: [] for p in precisions}
    for round_index in range(steps + 1):  # round 0 warms up
        for precision in precisions:
            seconds = timed(lambda chosen=precision: step(chosen))
            if round_index:
                times[precision].append(seconds)
    return {p: {"samples_per_s": batch_size / statistics.median(t), "ms_per_sample": 1000 * statistics.median(t)
                / batch_size, "runs_s": [round(x, 2) for x in t]} for p, t in times.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/bench-policy"))
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, of {', '.join(PARTS)} (all)")
    parser.add_argument("--repeats", type=int, default=9, help="timed decodes per case (default 9)")
    parser.add_argument("--samples", type=int, default=10000, help="sampled decodes at temperature 1 (default 10000)")
    parser.add_argument("--sample-batch", type=int, default=500)
    parser.add_argument("--train-batch", type=int, default=16)
    parser.add_argument("--train-steps", type=int, default=3, help="timed training steps per precision (default 3)")
    parser.add_argument("--loop-presets", default="nano,tiny", help="presets of the decode loops (default nano,tiny)")
    parser.add_argument("--loop-batches", default="1,8", help="batch sizes of the decode loops (default 1,8)")
    parser.add_argument("--loop-repeats", type=int, default=15, help="timed rounds of the decode loops (default 15)")
    parser.add_argument("--compile", action="store_true", help="decode loops: also the torch.compile'd step")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads (default: torch's; 1 is faster when other jobs share the CPU)")
    args = parser.parse_args(argv)
    parts = [part for part in args.parts.split(",") if part]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        parser.error(f"--parts: unknown {', '.join(unknown)} (known: {', '.join(PARTS)})")
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    tokenizer = random_action_tokenizer("joint", codebook_size=CODEBOOK_SIZE)
    plan, noplan = build("plan", tokenizer), build("noplan", tokenizer)
    load_before = os.getloadavg()[0]
    report = {"torch": torch.__version__, "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
              "load_average_before": load_before, "parameters": sum(p.numel() for p in plan.model.parameters()),
              "vocabulary": f"3 x {CODEBOOK_SIZE}", "parts": parts}
    if "latency" in parts:
        report["decode"] = decode_latency(plan, noplan, args.repeats)
    if "sampling" in parts:
        report["sampling"] = sampled_decodes(plan, args.samples, args.sample_batch)
    if "training" in parts:
        report["training"] = training_throughput(tokenizer, ["fp32", "bf16"], args.train_batch, args.train_steps)
    if "loops" in parts:
        report["loops"] = decode_loops(tokenizer, args.loop_presets.split(","),
                                       [int(b) for b in args.loop_batches.split(",")], args.loop_repeats, args.compile)
    if "anatomy" in parts:
        report["anatomy"] = step_anatomy(build, tokenizer, args.loop_presets.split(","), args.loop_repeats)
    report["load_average_after"] = os.getloadavg()[0]
    report["command"] = (f"python benchmarks/bench_policy.py --out {args.out} --parts {','.join(parts)}"
                         + (f" --repeats {args.repeats}" if "latency" in parts else "")
                         + (f" --samples {args.samples}" if "sampling" in parts else "")
                         + (f" --train-steps {args.train_steps}" if "training" in parts else "")
                         + (f" --loop-presets {args.loop_presets} --loop-batches {args.loop_batches} "
                            f"--loop-repeats {args.loop_repeats}" + (" --compile" if args.compile else "")
                            if "loops" in parts or "anatomy" in parts else "")
                         + (f" --threads {args.threads}" if args.threads else ""))
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out / "bench_policy.json", report)
    text = format_report(report, args.repeats)
    atomic_write_text(args.out / "bench_policy.md", text)
    print(text)
    return 0


def format_report(report: dict, repeats: int) -> str:
    title = (f"# Policy benchmark ({report['threads']} torch threads, {report['cpu_count']} CPUs, load average "
             f"{report['load_average_before']:.1f} at start, {report['load_average_after']:.1f} at the end)")
    lines = [title, ""]
    if "decode" in report:
        lines += _latency_lines(report, repeats)
    if "sampling" in report:
        sampling = report["sampling"]
        outcome = (f"{sampling['samples']} decodes in {sampling['seconds']:.0f} s: "
                   f"**{sampling['undecodable']} undecodable** ({sampling['invalid_ids']} with out-of-range ids, "
                   f"{sampling['repaired_codes']} needing code repair, {sampling['non_finite_actions']} with "
                   "non-finite actions).")
        lines += [f"## Sampled decodes (temperature {sampling['temperature']}, tiny plan variant, random weights)", "",
                  outcome, ""]
    if "training" in report:
        training = report["training"]
        lines += ["## Training throughput (tiny, forward + backward + AdamW, plan variant)", "",
                  "| precision | samples / s | ms / sample | vs fp32 |", "| --- | ---: | ---: | ---: |"]
        for precision, row in training.items():
            ratio = row["samples_per_s"] / training["fp32"]["samples_per_s"]
            lines.append(f"| {precision} | {row['samples_per_s']:.1f} | {row['ms_per_sample']:.0f} | {ratio:.2f}x |")
        lines.append("")
    if "loops" in report:
        lines += format_loops(report["loops"])
    if "anatomy" in report:
        lines += format_anatomy(report["anatomy"], report.get("loops"))
    lines += ["Reproduce: `" + report["command"] + "`", ""]
    return "\n".join(lines)


def _latency_lines(report: dict, repeats: int) -> list[str]:
    decode = report["decode"]
    base = decode["noplan"]["ms_per_chunk"]
    heading = (f"## predict_action_chunk latency (tiny preset, {report['parameters'] / 1e6:.2f} M parameters, random "
               f"weights, vocabulary {report['vocabulary']}; greedy, batch 1, default loop, median of {repeats})")
    lines = [heading, "", "| case | generated tokens | ms / chunk | tokens / s | vs noplan |",
             "| --- | ---: | ---: | ---: | ---: |"]
    for name, label in (("plan", "plan"), ("noplan", "noplan"), ("plan_cached", "plan, cached plan")):
        row = decode[name]
        lines.append(f"| {label} | {row['generated_tokens']} | {row['ms_per_chunk']:.0f} | {row['tokens_per_s']:.0f} "
                     f"| {row['ms_per_chunk'] / base:.2f}x |")
    return lines + [""]


def format_loops(loops: dict) -> list[str]:
    """The decode-loop table: ms per chunk (median wall; CPU time in brackets), ratios, targets."""
    compiled = "compiled" in loops["methods"]
    lines = ["## Decode loops: generate_suffix per chunk (prefill + generation, greedy), fast vs reference", "",
             ("ms per chunk: min of the interleaved rounds (median in brackets), wall time; fast / reference is "
              "new / old of the mins, x faster its inverse (and of the thread CPU times); vs noplan: the fast "
              "loop's chunk over its noplan chunk."), "",
             "| preset | batch | case | tokens | fast ms | reference ms | fast / reference (x faster) | vs noplan |"
             + (" compiled ms |" if compiled else ""),
             "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |" + (" ---: |" if compiled else "")]
    for preset, batches in loops["presets"].items():
        for batch, rows in batches.items():
            noplan = rows["noplan"]["fast"]["ms"]
            for case in LOOP_CASES:
                row = rows[case]
                fast, reference = row["fast"], row["reference"]
                line = (f"| {preset} | {batch} | {case.replace('_', ' ')} | {row['tokens']} | {fast['ms']:.1f} "
                        f"({fast['median_ms']:.1f}) | {reference['ms']:.1f} ({reference['median_ms']:.1f}) | "
                        f"{row['new_over_old']:.2f} ({row['speedup']:.2f}x; CPU {row['cpu_speedup']:.2f}x) | "
                        f"{fast['ms'] / noplan:.2f}x |")
                if compiled:
                    line += f" {row['compiled']['ms']:.1f} ({row['compiled']['median_ms']:.1f}) |"
                lines.append(line)
    lines += ["", "| target (batch 1, min wall time) | met |", "| --- | --- |"]
    lines += [f"| {t['target']} | {'yes' if t['met'] else '**no**'} |" for t in loops["targets"].values()]
    if loops["compile_s"]:
        spent = ", ".join(f"{key} {seconds:.0f} s" for key, seconds in loops["compile_s"].items())
        lines += ["", f"First compiled call (compiling included): {spent}."]
    return lines + [""]


if __name__ == "__main__":
    sys.exit(main())
