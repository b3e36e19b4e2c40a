"""Benchmark: policy decode latency (plan vs noplan vs plan caching), sampled decodes that must all decode, and
training throughput fp32 vs bf16 autocast, all in one run on this machine.

The ``tiny`` preset with random weights (latency does not depend on what the weights learned), Meta-World shapes
(two 96-px cameras, 4-dim state and actions) and the real action vocabulary: 3 levels x 4096 codes, 8 latent
positions per chunk, i.e. 24 exec tokens, + 24 plan tokens for the plan variant.

(a) ``predict_action_chunk`` latency, greedy, batch 1 (prefix, KV-cached generation and RVQ decode included),
    median of several runs interleaved across the three cases so machine load affects them alike;
(b) sampled decodes at temperature 1.0 from the random-weight plan model, counting undecodable outputs (ids
    outside their position's range, codes the tokenizer had to repair, non-finite actions); constrained
    decoding makes this 0 by construction;
(c) training samples/s (forward + backward + AdamW step, batch 16) in fp32 and with bf16 autocast.

    python benchmarks/bench_policy.py --out runs/bench-policy
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from c2c.policy.config import policy_config
from c2c.policy.policy import PlanExecutePolicy
from c2c.policy.testing import INSTRUCTIONS, random_action_tokenizer, random_batch, random_observation
from c2c.utils.io import atomic_write_json, atomic_write_text

CODEBOOK_SIZE = 4096  # the paper's codebook (B.4)
CAMERAS = ("corner2", "gripperPOV")


def build(variant: str, tokenizer) -> PlanExecutePolicy:
    config = policy_config("tiny", variant=variant, cameras=CAMERAS, state_dim=4, action_dim=4)
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
    parser.add_argument("--repeats", type=int, default=9, help="timed decodes per case (default 9)")
    parser.add_argument("--samples", type=int, default=10000, help="sampled decodes at temperature 1 (default 10000)")
    parser.add_argument("--sample-batch", type=int, default=500)
    parser.add_argument("--train-batch", type=int, default=16)
    parser.add_argument("--train-steps", type=int, default=3, help="timed training steps per precision (default 3)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads (default: torch's; 1 is faster when other jobs share the CPU)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    tokenizer = random_action_tokenizer("joint", codebook_size=CODEBOOK_SIZE)
    plan, noplan = build("plan", tokenizer), build("noplan", tokenizer)
    load_before = os.getloadavg()[0]
    latency = decode_latency(plan, noplan, args.repeats)
    sampling = sampled_decodes(plan, args.samples, args.sample_batch)
    training = training_throughput(tokenizer, ["fp32", "bf16"], args.train_batch, args.train_steps)
    command = (f"python benchmarks/bench_policy.py --out {args.out} --repeats {args.repeats} --samples {args.samples} "
               f"--train-steps {args.train_steps}" + (f" --threads {args.threads}" if args.threads else ""))
    report = {"command": command, "torch": torch.__version__, "threads": torch.get_num_threads(),
              "cpu_count": os.cpu_count(), "load_average_before": load_before,
              "parameters": sum(p.numel() for p in plan.model.parameters()), "vocabulary": f"3 x {CODEBOOK_SIZE}",
              "decode": latency, "sampling": sampling, "training": training}
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out / "bench_policy.json", report)
    text = format_report(report, args.repeats)
    atomic_write_text(args.out / "bench_policy.md", text)
    print(text)
    return 0


def format_report(report: dict, repeats: int) -> str:
    decode, training, sampling = report["decode"], report["training"], report["sampling"]
    base = decode["noplan"]["ms_per_chunk"]
    title = (f"# Policy benchmark (tiny preset, {report['parameters'] / 1e6:.2f} M parameters, random weights, "
             f"vocabulary {report['vocabulary']}, {report['threads']} torch threads, load average "
             f"{report['load_average_before']:.1f} at start)")
    lines = [title, "",
             f"## Decode latency per chunk (greedy, batch 1, median of {repeats})", "",
             "| case | generated tokens | ms / chunk | tokens / s | vs noplan |", "| --- | ---: | ---: | ---: | ---: |"]
    for name, label in (("plan", "plan"), ("noplan", "noplan"), ("plan_cached", "plan, cached plan")):
        row = decode[name]
        lines.append(f"| {label} | {row['generated_tokens']} | {row['ms_per_chunk']:.0f} | {row['tokens_per_s']:.0f} "
                     f"| {row['ms_per_chunk'] / base:.2f}x |")
    outcome = (f"{sampling['samples']} decodes in {sampling['seconds']:.0f} s: "
               f"**{sampling['undecodable']} undecodable** ({sampling['invalid_ids']} with out-of-range ids, "
               f"{sampling['repaired_codes']} needing code repair, {sampling['non_finite_actions']} with non-finite "
               "actions).")
    lines += ["", f"## Sampled decodes (temperature {sampling['temperature']}, plan variant, random weights)", "",
              outcome, "",
              "## Training throughput (forward + backward + AdamW, plan variant)", "",
              "| precision | samples / s | ms / sample | vs fp32 |", "| --- | ---: | ---: | ---: |"]
    for precision, row in training.items():
        ratio = row["samples_per_s"] / training["fp32"]["samples_per_s"]
        lines.append(f"| {precision} | {row['samples_per_s']:.1f} | {row['ms_per_sample']:.0f} | {ratio:.2f}x |")
    lines += ["", "Reproduce: `" + report["command"] + "`", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
