"""Evaluation throughput: episodes per minute, one environment per worker against several stepped together with
batched decoding (``--envs-per-worker``), in the same run. Meta-World (default): the quick preset's tasks;
``--sim libero``: trials of ``--libero-tasks`` of ``--suite`` (LIBERO's protocol: official init states, settling
steps), both cameras, drawn with fast drawing unless ``--no-fast-drawing``.

The policy is a random-weight one of the chosen preset (nano by default, the quick preset's backbone) with the
quick preset's cameras and sizes (LIBERO: its two cameras, 8-dim state, 7-dim actions); episodes run to
``--max-steps`` (a random policy rarely succeeds), so every setting does the same work. The wall time counts
everything a run does (worker start, policy load, making the envs). Rounds alternate between the settings and the
best of each is reported.

    .venv/bin/python benchmarks/bench_eval.py --out runs/bench-eval
    .venv/bin/python benchmarks/bench_eval.py --sim libero --out runs/bench-eval-libero
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

# Evaluation as it was before these speed-ups: the reference decode loop, one env per worker, every step drawn.
BEFORE = "1, every step drawn, reference decode loop"


def _quick_tasks() -> str:
    from c2c.eval.presets import get_preset

    return ",".join(get_preset("quick").tasks)


QUICK_TASKS = _quick_tasks()
LIBERO_TASKS = "0,1"


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


def _libero_policy_dir(root: Path, preset: str) -> Path:
    from c2c.envs.libero_env import ACTION_DIM, STATE_DIM
    from c2c.policy.config import policy_config
    from c2c.policy.policy import PlanExecutePolicy
    from c2c.policy.testing import INSTRUCTIONS, random_action_tokenizer

    config = policy_config(preset, variant="plan", cameras=("image", "image2"), state_dim=STATE_DIM,
                           action_dim=ACTION_DIM)
    tokenizer = random_action_tokenizer("joint", codebook_size=4096, action_dim=ACTION_DIM, state_dim=STATE_DIM)
    return PlanExecutePolicy.build(config, tokenizer, instructions=INSTRUCTIONS).save_pretrained(root / "policy")


def _evaluate(args: argparse.Namespace, policy_dir: Path, out: Path, envs: int, draw_all: bool = False) -> int:
    """One evaluation at ``envs`` environments per worker (``draw_all``: every step drawn, as before evaluation
    drew only the steps the policy reads); returns its episode count."""
    if args.sim == "libero":
        from c2c.eval.libero_eval import evaluate_libero

        evaluate_libero(policy_dir, args.suite, tasks=args.libero_tasks, trials=args.episodes, seed=7, out=out,
                        max_steps=args.max_steps, workers=args.workers, envs_per_worker=envs, log=None,
                        fast_drawing=args.fast_drawing, render_every_step=draw_all)
        return len(args.libero_tasks.split(",")) * args.episodes
    from c2c.eval.metaworld_eval import evaluate_metaworld

    evaluate_metaworld(policy_dir, QUICK_TASKS, episodes=args.episodes, seed=7, out=out, max_steps=args.max_steps,
                       workers=args.workers, envs_per_worker=envs, show_progress=False,
                       allow_unknown_training_seeds=True, render_every_step=draw_all)
    return len(QUICK_TASKS.split(",")) * args.episodes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/bench-eval"))
    parser.add_argument("--sim", choices=("metaworld", "libero"), default="metaworld")
    parser.add_argument("--suite", default="libero_object", help="LIBERO suite (--sim libero; default libero_object)")
    parser.add_argument("--libero-tasks", default=LIBERO_TASKS, help=f"LIBERO task ids (default {LIBERO_TASKS})")
    parser.add_argument("--fast-drawing", action=argparse.BooleanOptionalAction, default=True,
                        help="LIBERO: our renderer on simplified meshes (default) or robosuite's cameras")
    parser.add_argument("--preset", default="nano")
    parser.add_argument("--episodes", type=int, default=4, help="episodes (LIBERO: trials) per task (default 4)")
    parser.add_argument("--max-steps", type=int, default=100)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--envs", default="1,4", help="comma list of --envs-per-worker settings (default 1,4)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--baseline", action=argparse.BooleanOptionalAction, default=True,
                        help="first run evaluation as it was before (reference decode loop, one env per worker, "
                             "every step drawn; the ratios' baseline), then drawing every step with the fast loop "
                             "(default on; LIBERO with --no-fast-drawing draws every step in any case)")
    args = parser.parse_args(argv)
    # (label, envs per worker, draw every step)
    settings = [(str(envs), int(envs), False) for envs in args.envs.split(",")]
    if args.baseline:
        settings.insert(0, ("1, every step drawn", 1, True))
        settings.insert(0, (BEFORE, 1, True))
    runs: dict[str, list[float]] = {label: [] for label, _, _ in settings}
    with tempfile.TemporaryDirectory() as tmp:
        make_policy = _libero_policy_dir if args.sim == "libero" else _policy_dir
        policy_dir = make_policy(Path(tmp), args.preset)
        for round_index in range(args.rounds):
            for label, envs, draw_all in settings:
                started = time.perf_counter()
                if label == BEFORE:  # worker processes inherit it
                    os.environ["C2C_DECODE_METHOD"] = "reference"
                try:
                    episodes = _evaluate(args, policy_dir, Path(tmp) / "eval", envs, draw_all)
                finally:
                    os.environ.pop("C2C_DECODE_METHOD", None)
                minutes = (time.perf_counter() - started) / 60
                runs[label].append(episodes / minutes)
                print(f"round {round_index}: envs-per-worker {label}: {runs[label][-1]:.1f} episodes/min", flush=True)
    best = {label: max(values) for label, values in runs.items()}
    base = best[settings[0][0]]
    tasks = f"{args.suite} {args.libero_tasks}" if args.sim == "libero" else QUICK_TASKS
    result = {"sim": args.sim, "preset": args.preset, "tasks": tasks, "episodes_per_task": args.episodes,
              "fast_drawing": args.fast_drawing if args.sim == "libero" else None,
              "max_steps": args.max_steps, "workers": args.workers, "rounds": runs, "best_episodes_per_min": best,
              "ratio_to_first": {envs: round(value / base, 2) for envs, value in best.items()},
              "machine": platform.platform(), "python": sys.version.split()[0]}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(result, indent=2))
    lines = ["| envs per worker | episodes / min (best of rounds) | ratio |", "| ---: | ---: | ---: |"]
    lines += [f"| {label} | {best[label]:.1f} | {best[label] / base:.2f}x |" for label, _, _ in settings]
    (args.out / "report.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
