"""Success rate, episode length and time per episode of the scripted LIBERO experts from random resets.

Attempt ``a`` of a task resets the env (without cameras) under :func:`c2c.envs.demos.libero_rollouts.placement_seed`
``(seed, suite, task, a)`` and lets :func:`c2c.envs.libero_skills.make_expert` act until LIBERO's success check
passes or the suite's step limit. Tasks no expert handles are listed as unsupported.

Run::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_libero_experts.py --suite libero_goal --attempts 10
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_libero_experts.py --suite libero_10 --tasks 0,3 --attempts 3
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from c2c.envs.libero_demos import parse_task_ids, placement_seed, run_expert
from c2c.envs.libero_env import LiberoEnv, suite_tasks
from c2c.envs.libero_skills import supported_goal


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suite", required=True, help="libero_object | libero_spatial | libero_goal | libero_10")
    parser.add_argument("--attempts", type=int, default=10, help="random resets per task (default 10)")
    parser.add_argument("--tasks", default="all", help="'all' or a comma list of task ids")
    parser.add_argument("--seed", type=int, default=0, help="run seed of the placement seeds (default 0)")
    parser.add_argument("--verbose", action="store_true", help="print every attempt")
    args = parser.parse_args()

    names = {task["task_id"]: task["name"] for task in suite_tasks(args.suite)}
    rows = []
    total_success = total_attempts = 0
    for task_id in parse_task_ids(args.tasks):
        name = names[task_id]
        with LiberoEnv(args.suite, task_id, cameras=()) as env:
            env.reset_random(placement_seed(args.seed, args.suite, name, 0))
            if not supported_goal(env):
                rows.append((task_id, name, None, [], []))
                print(f"{task_id:2d} {name}: unsupported", flush=True)
                continue
            outcomes, seconds = [], []
            for attempt in range(args.attempts):
                seed = placement_seed(args.seed, args.suite, name, attempt)
                started = time.perf_counter()
                rollout = run_expert(env, seed)
                seconds.append(time.perf_counter() - started)
                outcomes.append(rollout.outcome)
                if args.verbose:
                    print(f"   {task_id} attempt {attempt} seed {seed}: success={rollout.outcome.success} "
                          f"steps={rollout.outcome.length} {seconds[-1]:.1f}s", flush=True)
        successes = sum(outcome.success for outcome in outcomes)
        total_success += successes
        total_attempts += len(outcomes)
        rows.append((task_id, name, successes, outcomes, seconds))
        steps = np.mean([outcome.length for outcome in outcomes if outcome.success] or [float("nan")])
        print(f"{task_id:2d} {name}: {successes}/{len(outcomes)}  mean steps (successes) {steps:.0f}  "
              f"{np.mean(seconds):.1f} s/episode", flush=True)

    print(f"\n{args.suite}, {args.attempts} random resets per task (run seed {args.seed}), no cameras")
    print("| task | name | success | mean steps (successful) | mean steps (all) | s / episode |")
    print("|---|---|---|---|---|---|")
    for task_id, name, successes, outcomes, seconds in rows:
        if successes is None:
            print(f"| {task_id} | {name} | unsupported | | | |")
            continue
        good = [outcome.length for outcome in outcomes if outcome.success]
        every = [outcome.length for outcome in outcomes]
        mean_good = f"{np.mean(good):.0f}" if good else "-"
        print(f"| {task_id} | {name} | {successes}/{len(outcomes)} | {mean_good} | {np.mean(every):.0f} | "
              f"{np.mean(seconds):.1f} |")
    if total_attempts:
        print(f"\nsupported tasks: {total_success}/{total_attempts} = {100 * total_success / total_attempts:.0f}%; "
              f"all tasks: {total_success}/{args.attempts * len(rows)} = "
              f"{100 * total_success / (args.attempts * len(rows)):.0f}%")


if __name__ == "__main__":
    main()
