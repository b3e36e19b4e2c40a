"""Benchmark: does a training's result depend on its torch thread count? (why `c2c run --threads` exists)

For each thread count in ``--threads`` (default 1 2 1 2), in one process: the same seeded random-weight policy
(Meta-World shapes: two cameras at the preset's image size, 4-dim state and actions, the real 3 x 4096
vocabulary) trains ``--steps`` AdamW steps on the same random batches; the run's weights are hashed. Runs on the
same count should hash alike; runs on different counts differ wherever PyTorch splits a sum by thread. Also
reports the median ms per training step of each count (ratios against the first count, same run).

    python benchmarks/bench_threads.py --preset nano --steps 10 --out runs/bench-threads
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import sys
import time
from pathlib import Path

import torch

from c2c.policy.config import policy_config
from c2c.policy.policy import PlanExecutePolicy
from c2c.policy.testing import INSTRUCTIONS, random_action_tokenizer, random_batch
from c2c.utils.io import atomic_write_json, atomic_write_text

CODEBOOK_SIZE = 4096  # the paper's codebook (B.4)
CAMERAS = ("corner2", "gripperPOV")


def train_once(preset: str, threads: int, steps: int, batch_size: int) -> dict:
    """Seeded build + ``steps`` training steps on ``threads`` threads; the weights' hash and the step times."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    tokenizer = random_action_tokenizer("joint", codebook_size=CODEBOOK_SIZE)
    config = policy_config(preset, variant="plan", cameras=CAMERAS, state_dim=4, action_dim=4)
    policy = PlanExecutePolicy.build(config, tokenizer, instructions=INSTRUCTIONS).train()
    optimizer = torch.optim.AdamW([p for p in policy.parameters() if p.requires_grad], lr=1e-4)
    seconds = []
    for step in range(steps):
        batch = random_batch(config, batch_size, codebook_size=CODEBOOK_SIZE, positions=8, seed=step)
        started = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss, _ = policy(batch)
        loss.backward()
        optimizer.step()
        seconds.append(time.perf_counter() - started)
    digest = hashlib.sha256()
    for name, tensor in sorted(policy.model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().contiguous().numpy().tobytes())
    return {"threads": threads, "weights_sha256": digest.hexdigest()[:16], "final_loss": float(loss),
            "median_step_ms": 1000 * statistics.median(seconds[1:] or seconds)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/bench-threads"))
    parser.add_argument("--preset", default="nano", help="policy backbone preset (default nano, the quick preset's)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2, 1, 2],
                        help="thread counts, one run each, in this order (default 1 2 1 2)")
    parser.add_argument("--steps", type=int, default=10, help="training steps per run (default 10)")
    parser.add_argument("--batch", type=int, default=8, help="batch size (default 8)")
    args = parser.parse_args(argv)
    if any(count < 1 for count in args.threads) or args.steps < 1 or args.batch < 1:
        parser.error("--threads, --steps and --batch take positive integers")
    runs = [train_once(args.preset, count, args.steps, args.batch) for count in args.threads]
    hashes: dict[int, set[str]] = {}
    for run in runs:
        hashes.setdefault(run["threads"], set()).add(run["weights_sha256"])
    command = (f"python benchmarks/bench_threads.py --preset {args.preset} --threads "
               f"{' '.join(map(str, args.threads))} --steps {args.steps} --batch {args.batch} --out {args.out}")
    report = {"command": command, "torch": torch.__version__, "cpu_count": os.cpu_count(), "runs": runs,
              "same_count_repeats": all(len(found) == 1 for found in hashes.values()),
              "counts_agree": len(set().union(*hashes.values())) == 1}
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out / "bench_threads.json", report)
    base = runs[0]["median_step_ms"]
    lines = [f"# Training result vs torch threads ({args.preset}, {args.steps} steps x {args.batch}, torch "
             f"{torch.__version__}, {os.cpu_count()} CPUs)", "",
             "| run | threads | weights (sha256) | final loss | ms / step | vs first |", "| ---: | ---: | --- | ---: | ---: | ---: |"]
    for index, run in enumerate(runs):
        lines.append(f"| {index + 1} | {run['threads']} | `{run['weights_sha256']}` | {run['final_loss']:.6f} | "
                     f"{run['median_step_ms']:.0f} | {run['median_step_ms'] / base:.2f}x |")
    lines += ["", f"Same thread count, same weights: {'yes' if report['same_count_repeats'] else 'NO'}. "
              f"All thread counts, same weights: {'yes' if report['counts_agree'] else 'no'}.", "",
              "Reproduce: `" + command + "`", ""]
    text = "\n".join(lines)
    atomic_write_text(args.out / "bench_threads.md", text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
