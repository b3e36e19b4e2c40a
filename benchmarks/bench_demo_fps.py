"""Recorded frames per second of Meta-World demo generation, against the stock renderer's cost per frame.

A frame is one time step with every camera (default: corner2 + gripperPOV at 96x96). Three numbers, one run:

1. stock: ms per frame rendering the cameras with MuJoCo's defaults for this model (4x multisampling, 4096 shadow
   map, reflections, full meshes) - what the stock Meta-World renderer pays;
2. fast: ms per frame of :class:`c2c.envs.metaworld_env.MetaWorldEnv`'s renderer, in the same process;
3. generation: recorded frames per second of ``generate_metaworld_demos`` end to end (search, replay with
   rendering, cache, dataset writing), from an empty output directory.

Run::

    .venv/bin/python benchmarks/bench_demo_fps.py                       # 4 MT10 tasks x 8 episodes, 96 px (about 30 s)
    .venv/bin/python benchmarks/bench_demo_fps.py --workers 1 --episodes 2
"""

from __future__ import annotations

import argparse
import resource
import shlex
import sys
import tempfile
import time
from pathlib import Path

# c2c.envs.metaworld_env picks OSMesa; it must be imported before mujoco.
from c2c.envs.metaworld_demos import generate_metaworld_demos
from c2c.envs.metaworld_env import MetaWorldEnv, close_renderer

import mujoco  # noqa: E402  (after metaworld_env)
import numpy as np  # noqa: E402


def stock_ms_per_frame(task: str, cameras: list[str], size: int, frames: int) -> float:
    """Rendering cost with MuJoCo's default quality settings, on a model the fast path has not touched."""
    close_renderer()  # one live renderer per process
    env = MetaWorldEnv(task, cameras=(), image_size=size)  # state-only: model settings stay stock
    env.reset(seed=0)
    model, data = env._env.model, env._env.data
    renderer = mujoco.Renderer(model, height=size, width=size)
    try:
        for camera in cameras:  # warm-up
            renderer.update_scene(data, camera=camera)
            renderer.render()
        started = time.perf_counter()
        for _ in range(frames):
            env.step(np.zeros(4, np.float32))
            for camera in cameras:
                renderer.update_scene(data, camera=camera)
                renderer.render()
        return (time.perf_counter() - started) / frames * 1000
    finally:
        renderer.close()
        env.close()


def fast_ms_per_frame(task: str, cameras: list[str], size: int, frames: int) -> float:
    with MetaWorldEnv(task, cameras=cameras, image_size=size) as env:
        env.reset(seed=0)
        env.render()  # warm-up
        started = time.perf_counter()
        for _ in range(frames):
            env.step(np.zeros(4, np.float32))  # renders every camera
        return (time.perf_counter() - started) / frames * 1000


def _cpu_seconds() -> float:
    """User + system CPU of this process and its finished children (the render workers, once joined)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", default="reach-v3,pick-place-v3,drawer-open-v3,window-open-v3")
    parser.add_argument("--episodes", type=int, default=8, help="episodes per task")
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--cameras", default="corner2,gripperPOV")
    parser.add_argument("--workers", type=int, default=None, help="render processes (default: usable CPUs)")
    parser.add_argument("--render-frames", type=int, default=100, help="frames timed for the renderer-only numbers")
    parser.add_argument("--full-drawing", action="store_true", help="draw the full-detail meshes")
    args = parser.parse_args(argv)
    cameras = args.cameras.split(",")
    first_task = args.tasks.split(",")[0]

    stock = stock_ms_per_frame(first_task, cameras, args.image_size, args.render_frames)
    fast = fast_ms_per_frame(first_task, cameras, args.image_size, args.render_frames)
    close_renderer()

    cpu_before = _cpu_seconds()
    with tempfile.TemporaryDirectory(prefix="c2c-bench-") as tmp:
        report = generate_metaworld_demos(
            tasks=args.tasks, episodes_per_task=args.episodes, image_size=args.image_size, cameras=cameras, seed=0,
            out=Path(tmp) / "demos", workers=args.workers, show_progress=False,
            fast_drawing=not args.full_drawing,
        )
    cpu_ms = (_cpu_seconds() - cpu_before) / report.frames_recorded * 1000
    fps = report.frames_recorded / report.seconds
    generation_ms = 1000 / fps

    print(report.summary())
    print()
    size = args.image_size
    print(f"cameras {','.join(cameras)} at {size}x{size}; the renderer rows step {first_task} with zero actions")
    print(f"stock renderer (MSAA 4x, shadows, reflections): {stock:7.2f} ms per frame (step + all cameras)")
    print(f"fast renderer (this project):                   {fast:7.2f} ms per frame  ({stock / fast:.1f}x cheaper)")
    print(f"generation end to end: {fps:.1f} recorded frames/s = {generation_ms:.2f} ms per frame "
          f"({stock / generation_ms:.1f}x the stock renderer's rate; {report.frames_recorded} frames, "
          f"{report.seconds:.1f} s, workers={args.workers or 'auto'})")
    print(f"CPU time: {cpu_ms:.2f} ms per recorded frame, all processes (wall-clock numbers vary with machine load)")
    print(f"dataset size: {report.dataset_bytes / report.total_frames * 1000 / 1024**2:.2f} MB per 1000 frames")
    print("reproduce: " + shlex.join([sys.executable, "benchmarks/bench_demo_fps.py", *sys.argv[1:]]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
