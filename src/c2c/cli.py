"""The ``c2c`` command line.

Every subcommand fails with a one-line ``c2c: error: ...`` naming the bad input (a :class:`C2CError`) instead of a
traceback; ``C2C_DEBUG=1`` shows the traceback too.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from c2c.errors import C2CError


def _comma_list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def _add_data_commands(subparsers: argparse._SubParsersAction) -> None:
    data = subparsers.add_parser("data", help="make datasets (scripted demonstrations)")
    data_sub = data.add_subparsers(dest="data_command", required=True)

    mw = data_sub.add_parser(
        "metaworld",
        help="scripted Meta-World demonstrations -> LeRobot v3 dataset",
        description="Roll out Meta-World's scripted experts on object placements drawn from --seed, keep the "
        "successful episodes and write them as a LeRobot v3 dataset. Interrupted runs resume.",
    )
    mw.add_argument("--tasks", required=True, help="comma list of task names (e.g. reach-v3,pick-place-v3) or a "
                    "group: mt10, mt50, easy, medium, hard, very_hard")
    mw.add_argument("--episodes", type=int, required=True, help="successful episodes to keep per task")
    mw.add_argument("--image-size", type=int, default=96, help="square image size in pixels (default 96)")
    mw.add_argument("--cameras", type=_comma_list, default=["corner2", "gripperPOV"],
                    help="comma list of cameras (default corner2,gripperPOV)")
    mw.add_argument("--seed", type=int, default=0, help="seed of the object placements (default 0)")
    mw.add_argument("--max-steps", type=int, default=500, help="episode step limit (default 500)")
    mw.add_argument("--max-attempts-factor", type=int, default=4,
                    help="give up on a task after episodes x this many attempts (default 4)")
    mw.add_argument("--out", type=Path, required=True, help="dataset directory to write")
    mw.add_argument("--overwrite", action="store_true", help="replace an existing complete dataset")
    mw.set_defaults(func=_run_data_metaworld)


def _run_data_metaworld(args: argparse.Namespace) -> int:
    from c2c.envs.metaworld_demos import generate_metaworld_demos

    report = generate_metaworld_demos(
        tasks=args.tasks,
        episodes_per_task=args.episodes,
        image_size=args.image_size,
        cameras=args.cameras,
        seed=args.seed,
        out=args.out,
        max_steps=args.max_steps,
        max_attempts_factor=args.max_attempts_factor,
        overwrite=args.overwrite,
    )
    print(report.summary())
    return 0


def _add_run_command(subparsers: argparse._SubParsersAction) -> None:
    run = subparsers.add_parser("run", help="the whole pipeline (demos -> tokenizer -> policies -> evaluation)")
    run.add_argument("--preset", default="quick", help="quick | mt10 | mt50 (default quick)")
    run.add_argument("--out", type=Path, default=None, help="output directory (default runs/<preset>)")
    run.add_argument("--force", action="store_true", help="redo stages that are already done")
    run.set_defaults(func=_run_pipeline)


def _run_pipeline(args: argparse.Namespace) -> int:
    from c2c.eval.pipeline import run_pipeline

    return run_pipeline(preset=args.preset, out=args.out, force=args.force)


def build_parser() -> argparse.ArgumentParser:
    from c2c import __version__

    parser = argparse.ArgumentParser(prog="c2c", description="Coarse-to-Control: plan-then-execute VLA policies")
    parser.add_argument("--version", action="version", version=f"c2c {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True)
    _add_data_commands(subparsers)
    _add_run_command(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except C2CError as err:
        if os.environ.get("C2C_DEBUG"):
            raise
        print(f"c2c: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("c2c: interrupted (rerun the same command to resume where supported)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
