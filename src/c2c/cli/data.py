"""``c2c data ...``: scripted Meta-World and LIBERO demonstrations, expert takeovers, and conversions of the datasets
users bring (LeRobot v2.0 / v2.1 / v3.0, LIBERO HDF5) into our LeRobot v3 layout. Part of the ``c2c`` command line
(:mod:`c2c.cli`), which turns their errors into one line.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from c2c.cli.options import comma_list
from c2c.errors import ConfigError


def add_out_options(parser: argparse.ArgumentParser) -> None:
    """--out and --overwrite of a command that writes a dataset."""
    parser.add_argument("--out", type=Path, required=True, help="dataset directory to write")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing complete dataset")


def add_data_commands(subparsers: argparse._SubParsersAction) -> None:
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
    mw.add_argument("--cameras", type=comma_list, default=["corner2", "gripperPOV"],
                    help="comma list of cameras (default corner2,gripperPOV)")
    mw.add_argument("--seed", type=int, default=0, help="seed of the object placements (default 0)")
    mw.add_argument("--max-steps", type=int, default=500, help="episode step limit (default 500)")
    mw.add_argument("--max-attempts-factor", type=int, default=4,
                    help="give up on a task after episodes x this many attempts (default 4)")
    mw.add_argument("--action-noise", type=float, default=0.0,
                    help="noise injection (DART): the env executes the expert's action plus Gaussian noise of this "
                    "standard deviation on x, y, z (action range [-1, 1]) while the expert's own action is "
                    "recorded, so the demonstrations show recoveries (default 0: none)")
    add_out_options(mw)
    mw.set_defaults(func=run_data_metaworld)

    take = data_sub.add_parser(
        "metaworld-takeover",
        help="DAgger-style aggregation: the scripted expert takes over from states a trained policy reached",
        description="From new placements the policy acts for a random number of steps (a multiple of 10 up to "
        "--policy-steps), then Meta-World's scripted expert finishes the task. The base dataset's episodes plus "
        "the frames from each takeover on, labelled with the expert's actions, go into a new dataset at --out; "
        "train a policy on it with `c2c policy train` as usual.",
    )
    take.add_argument("--policy", type=Path, required=True, help="policy directory (c2c policy train --out)")
    take.add_argument("--dataset", type=Path, required=True,
                      help="the `c2c data metaworld` dataset the policy was trained on (copied into --out)")
    take.add_argument("--episodes", type=int, required=True, help="takeover placements per task")
    take.add_argument("--seed", type=int, default=100, help="seed of the takeover placements (default 100)")
    take.add_argument("--tasks", default=None, help="comma list of tasks (default: the dataset's)")
    take.add_argument("--policy-steps", type=int, default=150,
                      help="the most steps the policy acts before the takeover (default 150)")
    take.add_argument("--replan-every", type=int, default=None,
                      help="steps between policy calls (default: the policy's config)")
    take.add_argument("--workers", type=int, default=None,
                      help="worker processes (default: the usable CPUs; 1 runs in this process)")
    add_out_options(take)
    take.set_defaults(func=run_data_takeover)

    lib = data_sub.add_parser(
        "libero",
        help="scripted LIBERO demonstrations (libero_object, libero_spatial) -> LeRobot v3 dataset",
        description="Roll out a scripted pick-and-place expert (privileged simulator state) from the env's own "
        "random resets under --seed, keep the episodes LIBERO counts as successes, replay them with the agentview "
        "and wrist cameras and write a LeRobot v3 dataset. Never uses the official init states (kept for "
        "evaluation). Interrupted runs resume.",
    )
    lib.add_argument("--suite", required=True, help="libero_object | libero_spatial | libero_goal | libero_10 (tasks the experts cannot do are refused by name)")
    lib.add_argument("--tasks", default="all", help="comma list of task ids (0..9) or all (default all)")
    lib.add_argument("--episodes", type=int, required=True, help="successful episodes to keep per task")
    lib.add_argument("--seed", type=int, default=0, help="seed of the random resets (default 0)")
    lib.add_argument("--image-size", type=int, default=128, help="square image size in pixels (default 128)")
    lib.add_argument("--render-size", type=int, default=None,
                     help="draw the cameras at this size, then resize to --image-size with PIL bilinear, as LIBERO's "
                     "datasets were drawn at 128 px and openpi's/LeRobot's at 256 (default: draw at --image-size; "
                     "recorded, and `c2c eval libero` draws at it)")
    lib.add_argument("--max-attempts-factor", type=int, default=3,
                     help="give up on a task after episodes x this many attempts (default 3)")
    lib.add_argument("--placements", default="random",
                     help="where objects start: random (the env's own seeded reset; the only choice: the official "
                     "init states are held out for evaluation)")
    lib.add_argument("--workers", type=int, default=None,
                     help="worker processes: they share the tasks' attempts (fast drawing) or render the kept "
                          "episodes (--no-fast-drawing); default: the usable CPUs; 1 runs in this process and is fully "
                          "reproducible")
    add_out_options(lib)
    lib.add_argument("--fast-drawing", action=argparse.BooleanOptionalAction, default=True,
                     help="draw the cameras with our renderer on simplified meshes, about 4x cheaper (default); "
                          "--no-fast-drawing uses robosuite's cameras, as LIBERO's own datasets")
    lib.set_defaults(func=run_data_libero)

    conv = data_sub.add_parser(
        "convert", help="a LeRobot v2.0 / v2.1 / v3.0 dataset (e.g. openpi's or LeRobot's LIBERO) or LIBERO HDF5 "
        "files (LIBERO's own or OpenVLA's regenerated) -> our LeRobot v3",
        description="Read a LeRobot dataset of version v2.0, v2.1 or v3.0 episode by episode and write it as a "
        "LeRobot v3.0 dataset with our key names (observation.images.<camera>, observation.state, action) and our "
        "stats. Images are kept as the source has them (no flipping). A --src that is an .hdf5 file or a folder of "
        "them is read as LIBERO demonstration files (cameras turned upright; docs/libero.md). --src is only read.",
    )
    conv.add_argument("--src", type=Path, required=True,
                      help="the source dataset directory (has meta/info.json), or LIBERO .hdf5 file(s)")
    conv.add_argument("--out", type=Path, required=True, help="dataset directory to write")
    conv.add_argument("--key-map", default="auto",
                      help="source keys -> ours: openpi-libero | lerobot-libero | SRC->DST,... (e.g. image->image,"
                      "wrist_image->image2,state->observation.state,actions->action; a DST other than action and "
                      "observation.state is a camera name) | auto (default: the first preset that fits, else the "
                      "dataset's own observation.images.*, observation.state and action)")
    conv.add_argument("--resize", type=int, default=None, help="store images at N x N pixels (default: as they are)")
    conv.add_argument("--image-format", choices=("image", "video"), default=None,
                      help="store cameras as PNG images or mp4 video (default: video when the source has videos)")
    conv.add_argument("--action-layout", default=None, help="which action dims are grippers, recorded for the "
                      "tokenizer: metaworld | libero (default: libero for the LIBERO presets, else from action names)")
    conv.add_argument("--drop-noops", action="store_true",
                      help="LIBERO HDF5 only: leave out no-op actions as OpenVLA's regeneration did")
    conv.add_argument("--overwrite", action="store_true", help="replace an existing dataset at --out")
    conv.set_defaults(func=run_data_convert)


def report_from_options(generate: Callable[..., Any], args: argparse.Namespace, options: str,
                        **renamed: str) -> int:
    """Call ``generate`` with the ``options`` (space separated) as keyword arguments of the same names and the
    ``renamed`` ones (``parameter="option"``), then print the report's summary."""
    report = generate(**{name: getattr(args, name) for name in options.split()},
                      **{name: getattr(args, option) for name, option in renamed.items()})
    print(report.summary())
    return 0


def run_data_metaworld(args: argparse.Namespace) -> int:
    from c2c.envs.metaworld_demos import generate_metaworld_demos

    return report_from_options(generate_metaworld_demos, args, "tasks image_size cameras seed out max_steps "
                               "max_attempts_factor overwrite action_noise", episodes_per_task="episodes")


def run_data_takeover(args: argparse.Namespace) -> int:
    from c2c.eval.takeover import collect_takeovers

    return report_from_options(collect_takeovers, args, "dataset seed out tasks policy_steps replan_every workers "
                               "overwrite", policy_dir="policy", episodes_per_task="episodes")


def run_data_libero(args: argparse.Namespace) -> int:
    from c2c.envs.libero_demos import generate_libero_demos

    return report_from_options(generate_libero_demos, args, "suite tasks image_size seed out max_attempts_factor "
                               "placements workers overwrite fast_drawing render_size",
                               episodes_per_task="episodes")


def run_data_convert(args: argparse.Namespace) -> int:
    from c2c.constants import camera_name
    from c2c.data.lerobot import LeRobotDataset
    from c2c.data.libero_convert import convert_libero_hdf5, is_hdf5_source
    from c2c.data.lerobot_v2 import convert_dataset

    if is_hdf5_source(args.src):
        if args.key_map != "auto" or args.action_layout not in (None, "libero"):
            raise ConfigError(f"--src {args.src} holds LIBERO HDF5 files, whose keys and action layout are fixed; "
                              "drop --key-map and --action-layout")
        out = convert_libero_hdf5(args.src, args.out, drop_noops=args.drop_noops, resize=args.resize,
                                  image_format=args.image_format, overwrite=args.overwrite)
    elif args.drop_noops:
        raise ConfigError(f"--drop-noops applies to LIBERO HDF5 files; {args.src} is a LeRobot dataset")
    else:
        out = convert_dataset(args.src, args.out, args.key_map, resize=args.resize, image_format=args.image_format,
                              action_layout=args.action_layout, overwrite=args.overwrite)
    dataset = LeRobotDataset(out)
    source = dataset.extra_info["source"]
    print(f"{out}: {dataset.num_episodes} episodes, {dataset.num_frames} frames, cameras "
          f"{[camera_name(key) for key in dataset.camera_keys]} (from {source['codebase_version']} {args.src}, "
          f"key map {source['key_map']})")
    return 0
