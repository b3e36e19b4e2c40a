"""``c2c eval metaworld|libero``: closed-loop evaluation of a trained policy in a simulator."""

from __future__ import annotations

import argparse
from pathlib import Path

from c2c.cli.options import API_KEY_ENV, api_key
from c2c.errors import ConfigError


def add_metaworld_eval_parser(eval_sub: argparse._SubParsersAction) -> None:
    mw = eval_sub.add_parser(
        "metaworld",
        help="roll a trained policy out in Meta-World: success rates, report, chart, videos",
        description="Closed-loop evaluation of a saved policy directory on Meta-World tasks. Placements come from "
        "--seed in a namespace of their own and are checked against the training demonstrations' seeds "
        "(training_data.json in the policy directory); an overlap is refused. Writes results.json, report.md, "
        "success.png and videos/<task>_ep<k>.mp4 into --out.",
    )
    mw.add_argument("--policy", type=Path, default=None,
                    help="saved policy directory (c2c policy train --out); required unless --server is given")
    mw.add_argument("--server", default=None,
                    help="ws://HOST:PORT of a `c2c serve` server to act through instead of loading the policy; the "
                    "training record comes from --policy when given, else from the server")
    mw.add_argument("--api-key", default=None, help=f"API key of --server (default: ${API_KEY_ENV} when set)")
    mw.add_argument("--tasks", required=True, help="comma list of task names (e.g. reach-v3,pick-place-v3) or a "
                    "group: mt10, mt50, easy, medium, hard, very_hard")
    mw.add_argument("--episodes", type=int, required=True, help="episodes per task")
    mw.add_argument("--seed", type=int, default=None,
                    help="seed of the evaluation placements (required, unless --training-placements)")
    mw.add_argument("--replan-every", type=int, default=None,
                    help="actions executed per decoded chunk (default: the policy's replan_every)")
    mw.add_argument("--max-steps", type=int, default=500, help="episode step limit (default 500)")
    mw.add_argument("--videos", type=int, default=0, help="episodes recorded as video per task (default 0)")
    mw.add_argument("--workers", type=int, default=None,
                    help="worker processes (default: min(CPUs, episodes, 2); 1 runs in this process)")
    mw.add_argument("--envs-per-worker", type=int, default=1,
                    help="environments each process steps together, decoding their observations as one batch "
                    "(default 1)")
    mw.add_argument("--snap-gripper", action="store_true",
                    help="round the executed gripper effort to the scripted demonstrations' -1, 0, +1 (default: "
                    "actions as decoded)")
    mw.add_argument("--out", type=Path, required=True, help="output directory")
    mw.add_argument("--training-placements", action="store_true",
                    help="diagnostic: start episode k of each task from its k-th training demonstration's placement "
                         "(fit vs generalisation; flagged as such in the report, never a result)")
    mw.add_argument("--allow-unknown-training-seeds", action="store_true",
                    help="debugging only: evaluate a policy whose training_data.json is missing (overlap unchecked)")
    mw.set_defaults(func=_run_eval_metaworld)


def _run_eval_metaworld(args: argparse.Namespace) -> int:
    from c2c.eval.metaworld_eval import evaluate_metaworld, format_summary

    if args.policy is None and args.server is None:
        raise ConfigError("eval metaworld: give --policy DIR, or --server ws://HOST:PORT of a `c2c serve` server")
    if args.seed is None and not args.training_placements:
        raise ConfigError("eval metaworld: --seed is required (the seed of the evaluation placements)")
    results = evaluate_metaworld(
        args.policy, args.tasks, args.episodes, 0 if args.seed is None else args.seed, args.out, replan_every=args.replan_every,
        max_steps=args.max_steps, videos=args.videos, workers=args.workers,
        allow_unknown_training_seeds=args.allow_unknown_training_seeds, server=args.server, api_key=api_key(args),
        training_placements=args.training_placements, envs_per_worker=args.envs_per_worker,
        snap_gripper=args.snap_gripper,
    )
    print(format_summary(results))
    print(f"saved to {args.out} (results.json, report.md, success.png{', videos/' if args.videos else ''})")
    return 0


def _task_list(text: str) -> list[int]:
    from c2c.eval.libero_eval import parse_tasks

    try:
        return parse_tasks(text)
    except ConfigError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def add_libero_eval_parser(eval_sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``libero`` to the ``c2c eval`` subcommands."""
    from c2c.envs.libero_env import SUITES, TASKS_PER_SUITE
    from c2c.eval.libero_eval import DEFAULT_TRIALS

    parser = eval_sub.add_parser(
        "libero",
        help="roll a trained policy out in LIBERO (openpi protocol): success rates, report, chart, videos",
        description="Closed-loop evaluation of a saved policy directory on a LIBERO suite: trial k of every task "
        "starts from the official init state k, waits 10 steps, then runs the policy up to the suite's step limit "
        "(spatial 220, object 280, goal 300, libero_10 520). Writes results.json, report.md, success.png and "
        "videos/task<ii>_trial<kk>.mp4 into --out. Needs `make setup-libero`.",
    )
    parser.add_argument("--policy", type=Path, required=True, help="saved policy directory (c2c policy train --out)")
    parser.add_argument("--suite", required=True, help=" | ".join(SUITES))
    parser.add_argument("--tasks", type=_task_list, default=None,
                        help=f"comma list of task ids 0..{TASKS_PER_SUITE - 1} (default: all)")
    parser.add_argument("--trials", type=int, default=DEFAULT_TRIALS,
                        help=f"trials per task, init states 0..trials-1 (default {DEFAULT_TRIALS}, the protocol's)")
    parser.add_argument("--seed", type=int, default=0, help="seed of LIBERO's RNG and of sampled decoding (default 0)")
    parser.add_argument("--replan-every", type=int, default=None,
                        help="actions executed per decoded chunk (default: the policy's replan_every)")
    parser.add_argument("--videos", type=int, default=0, help="trials recorded as video per task (default 0)")
    parser.add_argument("--max-steps", type=int, default=None,
                        help="override the suite's step limit (smoke tests only; default: the protocol's)")
    parser.add_argument("--render-size", type=int, default=None,
                        help="render at this size and resize to the policy's image size (default: the size the "
                        "training images were drawn at, from the policy's training_data.json and its dataset's "
                        "meta/info.json, e.g. 256 for openpi's or LeRobot's LIBERO and 128 for LIBERO's own HDF5 "
                        "files, resized as training resized them; the policy's size without a record)")
    parser.add_argument("--workers", type=int, default=None,
                        help="worker processes, each with its own simulator (default: the usable CPUs, at most 2)")
    parser.add_argument("--fast-drawing", action=argparse.BooleanOptionalAction, default=None,
                        help="draw the cameras with our renderer on simplified meshes (--fast-drawing) or robosuite's "
                             "(--no-fast-drawing); default: as the policy's training data was drawn")
    parser.add_argument("--envs-per-worker", type=int, default=1,
                        help="trials of a task each worker process steps together, their observations decoded as one "
                             "batch (the same trials as one at a time with greedy decoding; default 1)")
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.set_defaults(func=_run_eval_libero)
    return parser


def _run_eval_libero(args: argparse.Namespace) -> int:
    """Evaluate, print the summary table, name the outputs."""
    from c2c.eval.libero_eval import evaluate_libero, format_summary

    results = evaluate_libero(args.policy, args.suite, tasks=args.tasks, trials=args.trials, seed=args.seed,
                              replan_every=args.replan_every, videos=args.videos, out=args.out,
                              max_steps=args.max_steps, render_size=args.render_size, workers=args.workers,
                              fast_drawing=args.fast_drawing, envs_per_worker=args.envs_per_worker)
    print(format_summary(results))
    print(f"saved to {args.out} (results.json, report.md, success.png{', videos/' if args.videos else ''})")
    return 0


# `c2c eval <simulator>`: one entry per simulator, each adding its own subparser.
EVAL_COMMANDS = {"metaworld": add_metaworld_eval_parser, "libero": add_libero_eval_parser}


def add_eval_commands(subparsers: argparse._SubParsersAction) -> None:
    evaluate = subparsers.add_parser("eval", help="closed-loop evaluation of trained policies in simulators")
    eval_sub = evaluate.add_subparsers(dest="eval_command", required=True)
    for add_command in EVAL_COMMANDS.values():
        add_command(eval_sub)
