"""Benchmark: training samples/s of ``regress`` on the ``cnn`` backbone vs on ``nano``, in one run on this machine.

Random weights, Meta-World shapes (96-px cameras, 4-dim state and actions, He = 20), the same batch for both:
observation processing + forward + backward + gradient clipping + AdamW step, as a training step does, fp32. The
two presets are interleaved step by step so that machine load affects them alike; the median and the best of the
timed steps are reported.

    python benchmarks/bench_cnn.py --threads 1 --batch-size 32 --cameras corner2
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from c2c.policy.config import policy_config
from c2c.policy.policy import PlanExecutePolicy
from c2c.policy.regress import ContinuousActions
from c2c.policy.testing import INSTRUCTIONS, random_action_tokenizer, random_observation


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", default="nano,cnn", help="comma list of backbone presets (default nano,cnn)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--cameras", default="corner2", help="comma list of cameras (default corner2)")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per preset (after 3 warm-up steps)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cameras = tuple(args.cameras.split(","))
    actions = ContinuousActions(random_action_tokenizer("exec-only").normalizers, exec_horizon=20)
    runs = {}
    for preset in args.presets.split(","):
        config = policy_config(preset, variant="regress", cameras=cameras, state_dim=4, action_dim=4)
        policy = PlanExecutePolicy.build(config, actions, INSTRUCTIONS).train()
        batch = random_observation(config, batch_size=args.batch_size)
        chunks = np.random.default_rng(0).uniform(-1, 1, (args.batch_size, 20, 4))
        batch["codes.exec"] = actions.encode(actions.normalizers.action.unnormalize(chunks))
        runs[preset] = (policy, torch.optim.AdamW(policy.model.parameters(), lr=1e-3), batch, [])
    for step in range(3 + args.steps):
        for policy, optimizer, batch, times in runs.values():
            start = time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            loss, _ = policy(batch)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(policy.model.parameters(), 1.0)
            optimizer.step()
            if step >= 3:
                times.append(time.perf_counter() - start)
    for preset, (policy, _, _, times) in runs.items():
        parameters = sum(p.numel() for p in policy.model.parameters())
        print(f"{preset}: {parameters / 1e6:.2f} M parameters, {len(cameras)} camera(s), batch {args.batch_size}, "
              f"{args.threads} thread(s): {args.batch_size / statistics.median(times):.0f} samples/s median, "
              f"{args.batch_size / min(times):.0f} best")


if __name__ == "__main__":
    main()
