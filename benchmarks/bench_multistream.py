"""Benchmark: single-stream ``nano`` vs multi-stream ``tiny-multistream`` (App. C.3), in one run on this machine.

Random weights, Meta-World shapes (two 96-px cameras, 4-dim state and actions), the real action vocabulary
(3 levels x 4096 codes, 8 latent positions per branch: 24 plan + 24 exec tokens + end), plan variant, fp32.

(a) training ms/sample: forward + backward + AdamW step at batch 32 on ``random_batch`` (median of the timed
    steps, presets interleaved so machine load affects them alike);
(b) decode latency per chunk: ``predict_action_chunk``, greedy, batch 1, KV cache (prefix once, then one token per
    step), RVQ decode included (median).

    python benchmarks/bench_multistream.py --threads 1 --out runs/bench-multistream
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

from c2c.policy.config import policy_config
from c2c.policy.policy import PlanExecutePolicy
from c2c.policy.testing import INSTRUCTIONS, random_action_tokenizer, random_batch, random_observation
from c2c.utils.io import atomic_write_json, atomic_write_text

CODEBOOK_SIZE = 4096  # the paper's codebook (B.4)
CAMERAS = ("corner2", "gripperPOV")


def build(preset: str, tokenizer) -> PlanExecutePolicy:
    config = policy_config(preset, variant="plan", cameras=CAMERAS, state_dim=4, action_dim=4)
    return PlanExecutePolicy.build(config, tokenizer, instructions=INSTRUCTIONS)


def timed(function) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def measure(policies: dict[str, PlanExecutePolicy], batch_size: int, steps: int, repeats: int) -> dict:
    optimizers = {name: torch.optim.AdamW([p for p in policy.parameters() if p.requires_grad], lr=1e-4)
                  for name, policy in policies.items()}
    batches = {name: random_batch(policy.config, batch_size, codebook_size=CODEBOOK_SIZE, positions=8)
               for name, policy in policies.items()}
    observation = random_observation(next(iter(policies.values())).config, seed=1)

    def train_step(name: str) -> None:
        policy, optimizer = policies[name].train(), optimizers[name]
        optimizer.zero_grad(set_to_none=True)
        loss, _ = policy(batches[name])
        loss.backward()
        optimizer.step()

    def decode(name: str) -> None:
        policies[name].eval().predict_action_chunk(observation)

    train: dict[str, list[float]] = {name: [] for name in policies}
    chunk: dict[str, list[float]] = {name: [] for name in policies}
    for round_index in range(max(steps, repeats) + 1):  # round 0 warms up
        for name in policies:
            if round_index <= steps:
                seconds = timed(lambda: train_step(name))
                if round_index:
                    train[name].append(seconds)
            if round_index <= repeats:
                seconds = timed(lambda: decode(name))
                if round_index:
                    chunk[name].append(seconds)
    result = {}
    for name, policy in policies.items():
        result[name] = {
            "parameters": sum(p.numel() for p in policy.model.parameters()),
            "train_ms_per_sample": 1000 * statistics.median(train[name]) / batch_size,
            "decode_ms_per_chunk": 1000 * statistics.median(chunk[name]),
            "generated_tokens": policy.suffix.length - 1,
            "train_runs_s": [round(t, 3) for t in train[name]],
            "decode_runs_ms": [round(1000 * t, 1) for t in chunk[name]],
        }
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/bench-multistream"))
    parser.add_argument("--presets", nargs="+", default=["nano", "tiny-multistream"])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=5, help="timed training steps per preset (default 5)")
    parser.add_argument("--repeats", type=int, default=9, help="timed decodes per preset (default 9)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    tokenizer = random_action_tokenizer("joint", codebook_size=CODEBOOK_SIZE)
    policies = {name: build(name, tokenizer) for name in args.presets}
    load_before = os.getloadavg()[0]
    results = measure(policies, args.batch, args.steps, args.repeats)
    command = (f"python benchmarks/bench_multistream.py --presets {' '.join(args.presets)} --batch {args.batch} "
               f"--steps {args.steps} --repeats {args.repeats} --threads {args.threads} --out {args.out}")
    report = {"command": command, "torch": torch.__version__, "threads": torch.get_num_threads(),
              "cpu_count": os.cpu_count(), "load_average_before": load_before, "load_average_after":
              os.getloadavg()[0], "vocabulary": f"3 x {CODEBOOK_SIZE}", "results": results}
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out / "bench_multistream.json", report)
    text = format_report(report, args)
    atomic_write_text(args.out / "bench_multistream.md", text)
    print(text)
    return 0


def format_report(report: dict, args: argparse.Namespace) -> str:
    results = report["results"]
    base = results[args.presets[0]]
    lines = [f"# Single- vs multi-stream backbone ({report['threads']} torch thread(s), load average "
             f"{report['load_average_before']:.1f} -> {report['load_average_after']:.1f})", "",
             f"| preset | parameters | train ms / sample (batch {args.batch}, median of {args.steps}) "
             f"| decode ms / chunk (plan, greedy, median of {args.repeats}) | train vs {args.presets[0]} "
             f"| decode vs {args.presets[0]} |", "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for name, row in results.items():
        train = row["train_ms_per_sample"] / base["train_ms_per_sample"]
        decode = row["decode_ms_per_chunk"] / base["decode_ms_per_chunk"]
        lines.append(f"| {name} | {row['parameters'] / 1e6:.2f} M | {row['train_ms_per_sample']:.1f} "
                     f"| {row['decode_ms_per_chunk']:.0f} | {train:.2f}x | {decode:.2f}x |")
    lines += ["", "Reproduce: `" + report["command"] + "`", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
