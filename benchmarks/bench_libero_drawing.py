"""Cost of a LIBERO step with both cameras: robosuite's renderer vs our fast drawing (simplified meshes), and the
state-only step as the floor, measured in the same run; then whole demonstration episodes (fast drawing, the
scripted expert from random placements) with robosuite's hard resets vs our soft ones.

Each mode runs in its own process (a robosuite camera env and our renderer are not mixed in one process: see
``c2c.envs.libero_env``), one after the other, on the same task, reset and zero actions. Reports milliseconds per
step (median of ``--repeats`` blocks of ``--steps`` steps), the ratio to robosuite's, and the mean image difference
between the two drawings of the same state. The episode part reports seconds per episode (reset and settling
included) over ``--episodes`` expert episodes per reset mode, and how many episodes came out bit for bit the same
(soft resets match hard ones within 1e-12 at the start, see ``LiberoEnv``; contacts can grow that).

Run::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_libero_drawing.py --suite libero_object --task 0 --size 96
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import time

import numpy as np

MODES = ("state-only", "robosuite", "fast")


def _measure(mode: str, suite: str, task: int, size: int, steps: int, repeats: int, queue: multiprocessing.Queue) -> None:
    from c2c.constants import image_key
    from c2c.envs.libero_env import LiberoEnv

    cameras = () if mode == "state-only" else ("image", "image2")
    env = LiberoEnv(suite, task, image_size=size, cameras=cameras, fast_drawing=mode == "fast")
    try:
        obs = env.reset(0)
        images = np.stack([obs[image_key(camera)] for camera in cameras]) if cameras else None
        blocks = []
        for _ in range(repeats):
            env.reset(0)
            started = time.perf_counter()
            for _ in range(steps):
                env.step(np.zeros(7))
            blocks.append((time.perf_counter() - started) / steps * 1000)
        queue.put((mode, float(np.median(blocks)), images))
    finally:
        env.close()


def _episodes(hard_reset: bool, suite: str, task: int, size: int, episodes: int,
              queue: multiprocessing.Queue) -> None:
    from c2c.envs.libero_demos import placement_seed, run_expert
    from c2c.envs.libero_env import LiberoEnv

    env = LiberoEnv(suite, task, image_size=size, cameras=("image", "image2"), fast_drawing=True,
                    hard_reset=hard_reset)
    try:
        run_expert(env, placement_seed(1, suite, env.task_name, 0), {"image": [], "image2": []})  # warm-up
        started = time.perf_counter()
        digests = []
        for attempt in range(1, episodes + 1):
            frames = {"image": [], "image2": []}
            outcome = run_expert(env, placement_seed(1, suite, env.task_name, attempt), frames).outcome
            digests.append((outcome.success, outcome.length, outcome.digest))
        queue.put(((time.perf_counter() - started) / episodes, digests))
    finally:
        env.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suite", default="libero_object")
    parser.add_argument("--task", type=int, default=0)
    parser.add_argument("--size", type=int, default=96, help="square image side, pixels (default 96)")
    parser.add_argument("--steps", type=int, default=20, help="steps per timed block (default 20)")
    parser.add_argument("--repeats", type=int, default=3, help="timed blocks per mode; the median is kept (default 3)")
    parser.add_argument("--episodes", type=int, default=4,
                        help="expert episodes per reset mode (default 4; 0 skips the episode part)")
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = parser.parse_args()

    context = multiprocessing.get_context("spawn")
    results: dict[str, tuple[float, np.ndarray | None]] = {}
    for mode in MODES:
        queue = context.Queue()
        process = context.Process(target=_measure, args=(mode, args.suite, args.task, args.size, args.steps,
                                                         args.repeats, queue))
        process.start()
        name, ms, images = queue.get()
        process.join()
        results[name] = (ms, images)
    reference = results["robosuite"][0]
    difference = float(np.abs(results["fast"][1].astype(np.int16) - results["robosuite"][1].astype(np.int16)).mean())
    print(f"LIBERO {args.suite} task {args.task}, both cameras at {args.size} px, median of {args.repeats} x "
          f"{args.steps} steps")
    print(f"{'mode':<12} {'ms/step':>8} {'vs robosuite':>13}")
    for mode in MODES:
        print(f"{mode:<12} {results[mode][0]:>8.1f} {results[mode][0] / reference:>12.2f}x")
    print(f"mean |fast - robosuite| image difference: {difference:.1f} grey levels")
    episodes: dict[str, float] = {}
    if args.episodes > 0:
        digests = {}
        for hard_reset in (True, False):
            queue = context.Queue()
            process = context.Process(target=_episodes, args=(hard_reset, args.suite, args.task, args.size,
                                                              args.episodes, queue))
            process.start()
            name = "hard reset" if hard_reset else "soft reset"
            episodes[name], digests[name] = queue.get()
            process.join()
        print(f"expert episodes with fast drawing, {args.episodes} per mode (reset and settling included)")
        for name, seconds in episodes.items():
            print(f"{name:<12} {seconds:>7.2f} s/episode {seconds / episodes['hard reset']:>8.2f}x")
        pairs = list(zip(digests["hard reset"], digests["soft reset"], strict=True))
        print(f"episodes identical bit for bit: {sum(a == b for a, b in pairs)}/{len(pairs)}; same success: "
              f"{sum(a[0] == b[0] for a, b in pairs)}/{len(pairs)}; successes hard {sum(a[0] for a, _ in pairs)}, "
              f"soft {sum(b[0] for _, b in pairs)}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"suite": args.suite, "task": args.task, "size": args.size,
                       "ms_per_step": {mode: results[mode][0] for mode in MODES}, "image_difference": difference,
                       "seconds_per_episode": episodes}, handle, indent=2)


if __name__ == "__main__":
    main()
