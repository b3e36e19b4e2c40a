"""``c2c run``: the whole pipeline of a preset (:mod:`c2c.eval.pipeline`), with options that override its fields."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from c2c.cli.options import comma_list, threads_option

# How each preset override is parsed and described. The option names come from the pipeline's OVERRIDE_OPTIONS,
# which also rebuilds the command line in a run's report; the parsed value goes to the preset field of that name.
OVERRIDE_ARGUMENTS: dict[str, dict[str, Any]] = {
    "backbone": dict(help="override the preset's policy backbone (tiny | nano | ...)"),
    "tokenizer_steps": dict(type=int, help="override the preset's tokenizer steps"),
    "policy_steps": dict(type=int, help="override the preset's policy steps per variant"),
    "eval_episodes": dict(type=int, help="override the preset's evaluation episodes per task (LIBERO: trials per "
                          "task)"),
    "episodes_per_task": dict(type=int, help="override the preset's demonstrations per task"),
    "action_noise": dict(type=float, help="Meta-World: noise injected into the demonstrations' executed actions "
                         "(DART, see c2c data metaworld --help); default: the preset's"),
    "takeover_episodes": dict(
        type=int, help="Meta-World: after training, the scripted expert takes over from this many rollouts per task "
        "of each variant (c2c data metaworld-takeover); each variant is trained again, with the same budget, on the "
        "demonstrations plus its takeovers and that policy is evaluated (default: the preset's; 0: off)"),
    "takeover_finetune_steps": dict(
        type=int, metavar="STEPS", help="with --takeover-episodes: instead of training each variant again from "
        "scratch, fine-tune its first policy for STEPS steps on the demonstrations plus its takeovers (c2c policy "
        "train --init-from; default: the preset's; 0: from scratch)"),
    "variants": dict(help="train and evaluate only these policy variants, comma-separated (plan | plan-hp40 | "
                     "noplan | separate | regress | binning | fast; default: the preset's). Finished variants are reused "
                     "by a later full run"),
    "cameras": dict(type=comma_list, help="Meta-World: cameras recorded and seen by the policies, primary first "
                    "(default: the preset's; quick: corner2, the others: corner2,gripperPOV)"),
    "threads": dict(
        type=threads_option, help="torch threads of the training stages: N pins them (N // k each for k policies "
        "side by side; a finished one's cores then evaluate it while the others train), so a rerun repeats the "
        "weights bit for bit; auto uses the cores other jobs leave free and hands a finished training's cores to the "
        "others (faster on a shared machine, but the weights then depend on its load). Default: the preset's "
        "(quick: 2; the others: auto)"),
    "tasks": dict(type=comma_list, help="Meta-World: the tasks, comma-separated (names as c2c data metaworld takes "
                  "them, or one group: mt10 | mt50); default: the preset's"),
    "image_size": dict(type=int, help="square camera images of the demonstrations and the policies, pixels "
                       "(default: the preset's; quick: 96)"),
    "eval_seed": dict(type=int, help="seed of the evaluation placements (default: the preset's, 1000: the "
                      "validation placements settings are chosen on; report on others, e.g. 2000)"),
}


def add_run_command(subparsers: argparse._SubParsersAction) -> None:
    from c2c.eval.pipeline.overrides import OVERRIDE_OPTIONS

    run = subparsers.add_parser("run", help="the whole pipeline (demos -> tokenizer -> policies -> evaluation)")
    run.add_argument("--preset", default="quick",
                     help="quick | mt10 | mt50 | libero-spatial | libero-object | libero-goal | libero-10 | libero "
                     "(the four LIBERO suites; default quick)")
    run.add_argument("--out", type=Path, default=None, help="output directory (default runs/<preset>)")
    run.add_argument("--force", action="store_true", help="redo stages that are already done")
    run.add_argument("--workers", type=int, default=None,
                     help="evaluation worker processes (default: min(CPUs, episodes, 2))")
    for field, option in OVERRIDE_OPTIONS.items():
        run.add_argument(option, dest=field, default=None, **OVERRIDE_ARGUMENTS[field])
    run.add_argument("--device", default="cpu",
                     help="where the policies train: cpu (default) | cuda | cuda:N (the variants side by side on it); "
                     "the other stages run on the CPU")
    run.set_defaults(func=_run_pipeline)


def _run_pipeline(args: argparse.Namespace) -> int:
    from c2c.eval.pipeline import OVERRIDE_OPTIONS, run_presets
    from c2c.policy.training.distributed import check_device

    check_device(args.device)  # before hours of demonstrations, not after
    overrides = {field: getattr(args, field) for field in OVERRIDE_OPTIONS}
    overrides["variants"] = (tuple(v.strip() for v in args.variants.split(",") if v.strip()) if args.variants
                             else None)
    overrides["cameras"] = tuple(args.cameras) if args.cameras is not None else None
    overrides["tasks"] = tuple(args.tasks) if args.tasks is not None else None
    return run_presets(args.preset, args.out, overrides, force=args.force, workers=args.workers, device=args.device)
