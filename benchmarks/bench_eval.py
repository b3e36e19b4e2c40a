"""Evaluation throughput: Meta-World episodes per minute on the quick preset's tasks, one environment per worker
against several stepped together with batched decoding (``--envs-per-worker``), in the same run.

The policy is a random-weight one of the chosen preset (nano by default, the quick preset's backbone) with the
quick preset's cameras and sizes; episodes run to ``--max-steps`` (a random policy rarely succeeds), so every
setting does the same work. Rounds alternate between the settings and the best of each is reported.

    .venv/bin/python benchmarks/bench_eval.py --out runs/bench-eval
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

QUICK_TASKS = "reach,button-press-topdown,drawer-open,pick-place"


def _policy_dir(root: Path, preset: str) -> Path:
    import c2c.envs.metaworld_env  # noqa: F401 - before mujoco: it picks OSMesa
    from c2c.envs.metaworld_tasks import instruction, resolve_tasks
    from c2c.policy.config import policy_config
    from c2c.policy.policy import PlanExecutePolicy
    from c2c.policy.testing import random_action_tokenizer

    tasks = resolve_tasks(QUICK_TASKS.split(","))
    config = policy_config(preset, variant="plan", cameras=("corner2",), state_dim=4, action_dim=4)
    tokenizer = random_action_tokenizer("joint", codebook_size=4096)
    policy = PlanExecutePolicy.build(config, tokenizer, instructions=[instruction(t) for t in tasks])
    directory = policy.save_pretrained(root / "policy")
    record = {"dataset": "bench", "c2c": {"generator": "metaworld", "tasks": tasks, "image_size": config.image_size,
                                         "cameras": ["corner2"], "expert": {t: {"seeds_attempted": []} for t in tasks}}}
    (directory / "training_data.json").write_text(json.dumps(record))
    return directory


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/bench-eval"))
    parser.add_argument("--preset", default="nano")
    parser.add_argument("--episodes", type=int, default=4, help="episodes per task (default 4)")
    parser.add_argument("--max-steps", type=int, default=100)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--envs", default="1,4", help="comma list of --envs-per-worker settings (default 1,4)")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    from c2c.eval.metaworld_eval import evaluate_metaworld

    settings = [int(value) for value in args.envs.split(",")]
    runs: dict[int, list[float]] = {envs: [] for envs in settings}
    with tempfile.TemporaryDirectory() as tmp:
        policy_dir = _policy_dir(Path(tmp), args.preset)
        for round_index in range(args.rounds):
            for envs in settings:
                started = time.perf_counter()
                evaluate_metaworld(policy_dir, QUICK_TASKS, episodes=args.episodes, seed=7, out=Path(tmp) / "eval",
                                   max_steps=args.max_steps, workers=args.workers, envs_per_worker=envs,
                                   show_progress=False, allow_unknown_training_seeds=True)
                minutes = (time.perf_counter() - started) / 60
                runs[envs].append(4 * args.episodes / minutes)
                print(f"round {round_index}: envs-per-worker {envs}: {runs[envs][-1]:.1f} episodes/min", flush=True)
    best = {envs: max(values) for envs, values in runs.items()}
    base = best[settings[0]]
    result = {"preset": args.preset, "tasks": QUICK_TASKS, "episodes_per_task": args.episodes,
              "max_steps": args.max_steps, "workers": args.workers, "rounds": runs, "best_episodes_per_min": best,
              "ratio_to_first": {envs: round(value / base, 2) for envs, value in best.items()},
              "machine": platform.platform(), "python": sys.version.split()[0]}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(result, indent=2))
    lines = ["| envs per worker | episodes / min (best of rounds) | ratio |", "| ---: | ---: | ---: |"]
    lines += [f"| {envs} | {best[envs]:.1f} | {best[envs] / base:.2f}x |" for envs in settings]
    (args.out / "report.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
