"""Benchmark: samples/s of the streaming image loader on an AV1 LeRobot dataset, against loading it into memory.

Writes (or reuses, under ``--out``) a LeRobot v3 dataset of ``--episodes`` x ``--frames`` frames with two cameras at
``--size`` px (moving textured shapes over gradients: content a video codec has to work on), stored as AV1 mp4 with a
keyframe every ``--gop`` frames (LeRobot's default, 2). AV1 comes from PyAV's encoder (libsvtav1, libaom-av1 or
librav1e), else from an ``ffmpeg`` on the PATH; when neither can encode AV1 the videos stay h264 and the report says
so in capitals. Then measures, resizing ``--size`` -> ``--model-size`` px (two cameras per sample):

1. the in-memory path (``c2c.policy.training.data.load_frames``): seconds to decode and resize every frame, and its GiB;
2. the streaming path (``load_policy_data(loader="stream")``'s store): start-up seconds, then for each of
   ``--workers`` (default 0 1 2) ``batch_loader`` over ``--steps`` steps of ``--batch`` random frames: seconds to the
   first step (worker start-up included) and steady-state samples/s after it.

Writes ``results.json`` and ``report.md`` to ``--out``.

    .venv/bin/python benchmarks/bench_streaming.py --out runs/bench-streaming
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import av
import numpy as np

os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1: errors only, not its configuration banner per file

from c2c.constants import image_key
from c2c.data import streaming
from c2c.data.episodes import Episode
from c2c.data.lerobot import LeRobotDataset, LeRobotWriter, is_complete_dataset
from c2c.data.video import PIXEL_FORMAT, video_stream_info
from c2c.policy.training.data import PolicyData, batch_loader, draw_frames, frame_tasks, image_memory_bytes, load_frames
from c2c.utils.io import atomic_write_json, atomic_write_text

CAMERAS = ("image", "image2")  # LIBERO's names: agentview, wrist
AV1_ENCODERS = ("libsvtav1", "libaom-av1", "librav1e")
AV1_DECODERS = ("libdav1d", "libaom-av1", "av1")
AV1_OPTIONS = {"libsvtav1": {"crf": "30", "preset": "8"}, "libaom-av1": {"crf": "30", "cpu-used": "8"},
               "librav1e": {"qp": "80", "speed": "10"}}  # crf 30: LeRobot's default quality
FPS = 10
LIBERO_GIB = 77  # LIBERO's images at 224 px, two cameras, in memory (as uint8)
LIBERO_FRAMES = round(LIBERO_GIB * 2**30 / image_memory_bytes(1, 2, 224))  # about 275k frames
ASSUMED_GPU_SAMPLES_PER_S = (10, 20)  # paligemma-3b bf16 training on one H100 at batch 8-16: an assumption


def _codec_ok(name: str, mode: str) -> bool:
    try:
        av.codec.Codec(name, mode)
        return True
    except Exception:  # UnknownCodecError, or a build without it
        return False


def av1_route() -> dict[str, Any]:
    """How this machine can write AV1: {"encoder", "via": "pyav" | "ffmpeg"}; {"encoder": None} when it cannot."""
    decoders = [name for name in AV1_DECODERS if _codec_ok(name, "r")]
    for name in AV1_ENCODERS:
        if name in av.codecs_available and _codec_ok(name, "w"):
            return {"encoder": name, "via": "pyav", "decoders": decoders}
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg:
        listed = subprocess.run([ffmpeg, "-hide_banner", "-encoders"], capture_output=True, text=True).stdout
        for name in AV1_ENCODERS:
            if f" {name} " in listed:
                return {"encoder": name, "via": "ffmpeg", "decoders": decoders}
    return {"encoder": None, "via": None, "decoders": decoders}


# --- the dataset ------------------------------------------------------------------------------------------------
def camera_frames(episode: int, camera: int, frames: int, size: int) -> np.ndarray:
    """(T, size, size, 3) uint8: a drifting colour gradient with a stripe texture and three moving discs (one hollow),
    plus fixed sensor noise; the second camera sees a closer, rotated view."""
    rng = np.random.default_rng([episode, camera])
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    if camera:
        x, y = 0.5 + (y - 0.5) * 0.6, 0.5 - (x - 0.5) * 0.6
    noise = rng.normal(0, 6, (size, size, 3)).astype(np.float32)
    phases, speeds = rng.uniform(0, 2 * np.pi, (3, 2)), rng.uniform(0.5, 2.0, (3, 2))
    colours, radii = rng.uniform(40, 255, (3, 3)).astype(np.float32), rng.uniform(0.06, 0.14, 3)
    out = np.empty((frames, size, size, 3), dtype=np.uint8)
    for t in range(frames):
        s = t / FPS
        image = np.stack([120 + 80 * np.sin(2 * np.pi * (x + 0.05 * s)), 100 + 60 * np.cos(2 * np.pi * (y - 0.03 * s)),
                          90 + 40 * np.sin(10 * np.pi * (x + y))], axis=-1)
        for k in range(3):
            cx, cy = 0.5 + 0.35 * np.sin(speeds[k] * s + phases[k])
            distance = np.hypot(x - cx, y - cy)
            mask = (distance < radii[k]) & ((k != 2) | (distance > radii[k] * 0.6))
            image[mask] = colours[k] * (0.8 + 0.2 * np.sin(40 * x[mask]))[:, None]
        out[t] = np.clip(image + noise, 0, 255).astype(np.uint8)
    return out


def _encode_av1(path: Path, frames_of_file: list[np.ndarray], encoder: str, gop: int) -> None:
    """Write frames to ``path`` as AV1 with PyAV (pts = frame number at FPS)."""
    from fractions import Fraction

    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(encoder, rate=FPS, options={"g": str(gop), **AV1_OPTIONS.get(encoder, {})})
        stream.height, stream.width = frames_of_file[0].shape[1:3]
        stream.pix_fmt = PIXEL_FORMAT
        stream.codec_context.time_base = Fraction(1, FPS)
        count = 0
        for frames in frames_of_file:
            for image in frames:
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
                frame.pts = count
                count += 1
                container.mux(stream.encode(frame))
        container.mux(stream.encode())


def _transcode_ffmpeg(path: Path, encoder: str, gop: int) -> None:
    temporary = path.with_suffix(".av1.mp4")
    options = [f"-{key}" if key != "cpu-used" else "-cpu-used" for key in AV1_OPTIONS.get(encoder, {})]
    values = list(AV1_OPTIONS.get(encoder, {}).values())
    command = ["ffmpeg", "-y", "-loglevel", "error", "-i", str(path), "-c:v", encoder, "-g", str(gop),
               "-pix_fmt", PIXEL_FORMAT, *[item for pair in zip(options, values) for item in pair], str(temporary)]
    subprocess.run(command, check=True)
    temporary.replace(path)


def write_dataset(root: Path, episodes: int, frames: int, size: int, gop: int, route: dict[str, Any]) -> dict:
    """The benchmark dataset: written with LeRobotWriter (h264), then every mp4 re-encoded to AV1 from the same
    frames when the machine can; returns what was done."""
    started = time.perf_counter()
    with LeRobotWriter(root, fps=FPS, image_format="video", overwrite=True) as writer:
        rng = np.random.default_rng(0)
        for episode in range(episodes):
            images = {camera: camera_frames(episode, c, frames, size) for c, camera in enumerate(CAMERAS)}
            actions = rng.uniform(-1, 1, (frames, 7)).astype(np.float32)
            states = rng.uniform(-1, 1, (frames, 8)).astype(np.float32)
            writer.add_episode(Episode(actions=actions, states=states, images=images,
                                       task=f"benchmark task {episode % 4}", metadata={}))
        writer.finalize({"generator": "bench_streaming"})
    dataset = LeRobotDataset(root)
    info = json.loads((root / "meta/info.json").read_text())
    if route["encoder"]:
        for c, camera in enumerate(CAMERAS):
            key = image_key(camera)
            files: dict[Path, list[tuple[float, int]]] = {}
            for row in dataset._episodes:
                path = streaming.episode_file(dataset, row, key)
                files.setdefault(path, []).append((row[f"videos/{key}/from_timestamp"], row["episode_index"]))
            for path, members in files.items():
                if route["via"] == "pyav":
                    ordered = [camera_frames(index, c, frames, size) for _, index in sorted(members)]
                    _encode_av1(path.with_suffix(".av1.mp4"), ordered, route["encoder"], gop)
                    path.with_suffix(".av1.mp4").replace(path)
                else:
                    _transcode_ffmpeg(path, route["encoder"], gop)
            first = sorted(files)[0]
            info["features"][key]["info"] = video_stream_info(first)
        (root / "meta/info.json").write_text(json.dumps(info, indent=4))
    return {"seconds": round(time.perf_counter() - started, 1)}


def video_facts(root: Path) -> dict[str, Any]:
    dataset = LeRobotDataset(root)
    key = image_key(CAMERAS[0])
    path = streaming.episode_file(dataset, dataset._episodes[0], key)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        keyframes = sum(entry.is_keyframe for entry in stream.index_entries)
        codec = stream.codec_context
        return {"codec": codec.codec.canonical_name, "decoder": codec.codec.name, "file": str(path.relative_to(root)),
                "frames_in_file": len(stream.index_entries), "keyframes_in_file": keyframes,
                "mib_per_camera": round(sum(p.stat().st_size for p in (root / "videos" / key).rglob("*.mp4")) / 2**20,
                                        1)}


# --- measurements -----------------------------------------------------------------------------------------------
def measure_memory(root: Path, model_size: int, data: PolicyData) -> dict[str, Any]:
    """Seconds to load every image into memory; checks 300 random streamed frames against what it loaded."""
    dataset = LeRobotDataset(root)
    started = time.perf_counter()
    images, _ = load_frames(dataset, SimpleNamespace(cameras=CAMERAS, image_size=model_size), dataset.num_frames,
                             resize=True)
    seconds = time.perf_counter() - started
    picks = np.random.default_rng(0).integers(dataset.num_frames, size=300)
    same = all(np.array_equal(data.images[camera][picks], images[camera][picks]) for camera in CAMERAS)
    return {"seconds": round(seconds, 2), "streamed_pixels_equal": same}


def memory_summary(tries: list[dict[str, Any]], frames: int, model_size: int) -> dict[str, Any]:
    seconds = min(run["seconds"] for run in tries)
    return {"seconds": seconds, "seconds_runs": [run["seconds"] for run in tries], "frames": frames,
            "streamed_pixels_equal": all(run["streamed_pixels_equal"] for run in tries),
            "frames_per_s": round(frames / seconds, 1),
            "gib": round(image_memory_bytes(frames, len(CAMERAS), model_size) / 2**30, 3),
            "libero_hours_at_this_rate": round(LIBERO_FRAMES / (frames / seconds) / 3600, 2),
            "libero_frames": LIBERO_FRAMES,
            "libero_gib": round(image_memory_bytes(LIBERO_FRAMES, len(CAMERAS), model_size) / 2**30, 1)}


def stream_data(root: Path, model_size: int) -> tuple[PolicyData, float]:
    """What load_policy_data(loader="stream") holds, without a tokenizer: lazy images, zero codes and states."""
    started = time.perf_counter()
    dataset = LeRobotDataset(root)
    streaming.check_decodable(dataset, CAMERAS)
    store = streaming.FrameStore(dataset, CAMERAS, model_size)
    count = store.num_frames
    data = PolicyData(images={camera: store.camera(camera) for camera in CAMERAS},
                      states=np.zeros((count, 8), np.float32), tasks=frame_tasks(dataset),
                      codes={"exec": np.zeros((count, 4, 2), np.int16)},
                      exec_chunks=np.zeros((count, 1, 7), np.float32),
                      train_frames=np.arange(count), heldout_frames=np.arange(0), info={"loader": "stream"})
    return data, time.perf_counter() - started


def measure_stream(data: PolicyData, workers: int, steps: int, batch: int) -> dict[str, Any]:
    def frames_of_step(step: int) -> np.ndarray:
        return draw_frames(data.train_frames, 1234, step, batch)[:, 0]  # (1, batch)

    started = time.perf_counter()
    loader = batch_loader(data, frames_of_step, range(steps + 1), workers=workers)
    next(loader)
    first = time.perf_counter() - started
    started = time.perf_counter()
    for _ in loader:
        pass
    seconds = time.perf_counter() - started
    del loader
    return {"workers": workers, "first_step_s": round(first, 2), "samples": steps * batch,
            "samples_per_s": round(steps * batch / seconds, 1),
            "ms_per_sample": round(1000 * seconds / steps / batch, 2)}


def workers_needed(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Workers that keep ahead of the assumed GPU demand, from the measured rate of one worker (+50% headroom)."""
    one = next((run["samples_per_s"] for run in runs if run["workers"] == 1), None)
    if not one:
        return {}
    low, high = ASSUMED_GPU_SAMPLES_PER_S
    need = int(np.ceil(high * 1.5 / one))
    return {"assumed_gpu_samples_per_s": [low, high], "one_worker_samples_per_s": one, "headroom": 1.5,
            "workers_for_high": max(1, need), "gpu_share_of_one_worker": [round(low / one, 3), round(high / one, 3)]}


def markdown(report: dict[str, Any]) -> str:
    video, memory, settings = report["video"], report["memory"], report["settings"]
    codec_line = (f"AV1 via {report['route']['via']} ({report['route']['encoder']}), decoded by {video['decoder']}"
                  if video["codec"] == "av1" else f"**NOT AV1: {video['codec']}** (no AV1 encoder on this machine)")
    lines = [f"# Streaming loader: samples/s on a {settings['size']} px two-camera LeRobot dataset", "",
             f"- machine: {report['machine']}",
             f"- dataset: {settings['episodes']} episodes x {settings['frames']} frames, cameras {list(CAMERAS)}, "
             f"{codec_line}, GOP {settings['gop']} ({video['keyframes_in_file']} keyframes in "
             f"{video['frames_in_file']} frames of `{video['file']}`), {video['mib_per_camera']} MiB per camera",
             f"- model input: {settings['model_size']} px (PIL bilinear), batch {settings['batch']}, "
             f"{settings['steps']} timed steps per run, best of {settings['repeats']} runs (all runs in brackets), "
             f"decoder threads {settings['decoder_threads']}", "",
             "| loader | workers | start-up s | first step s | samples/s | ms / sample |",
             "| --- | ---: | ---: | ---: | --- | ---: |",
             f"| memory | - | {memory['seconds']} {memory['seconds_runs']} (decode + resize all) | - | - | - |"]
    for run in report["stream"]:
        lines.append(f"| stream | {run['workers']} | {report['stream_start_s']} | {run['first_step_s']} | "
                     f"{run['samples_per_s']} {run['samples_per_s_runs']} | {run['ms_per_sample']} |")
    lines += ["", f"In memory: {memory['frames']} frames (two cameras each) decode at {memory['frames_per_s']} "
              f"frames/s into {memory['gib']} GiB; LIBERO's ~{LIBERO_FRAMES} frames would need {memory['libero_gib']} "
              f"GiB and {memory['libero_hours_at_this_rate']} h at this rate before step 0.", "",
              "Streamed pixels equal the in-memory ones (300 random frames, both cameras): "
              f"{'yes' if memory['streamed_pixels_equal'] else 'NO'}."]
    need = report.get("workers_needed")
    if need:
        low, high = need["assumed_gpu_samples_per_s"]
        lines += ["", f"Workers for one H100 training paligemma-3b: ASSUMING {low}-{high} samples/s per GPU (bf16, "
                  f"batch 8-16; an assumption, not measured here), the GPU takes "
                  f"{need['gpu_share_of_one_worker'][0]:.0%}-{need['gpu_share_of_one_worker'][1]:.0%} of what one "
                  f"worker makes ({need['one_worker_samples_per_s']} samples/s): {need['workers_for_high']} "
                  f"worker(s) with {need['headroom']}x headroom."]
    lines += ["", f"Reproduce: `{report['command']}`", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/bench-streaming"))
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--frames", type=int, default=100, help="frames per episode")
    parser.add_argument("--size", type=int, default=256, help="stored image side")
    parser.add_argument("--model-size", type=int, default=224, help="the model's image side")
    parser.add_argument("--gop", type=int, default=2, help="keyframe interval of the AV1 encode (LeRobot: 2)")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=60, help="timed steps per streaming run")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5, help="rounds of runs; the best of each is reported")
    parser.add_argument("--decoder-threads", type=int, default=streaming.DECODER_THREADS)
    parser.add_argument("--rewrite", action="store_true", help="write the dataset again even if --out has it")
    args = parser.parse_args(argv)
    streaming.DECODER_THREADS = args.decoder_threads
    settings = {key: getattr(args, key) for key in ("episodes", "frames", "size", "model_size", "gop", "steps",
                                                     "batch", "repeats", "decoder_threads")}
    root, route = args.out / "dataset", av1_route()
    made = args.out / "dataset.json"
    wanted = {key: settings[key] for key in ("episodes", "frames", "size", "gop")} | {"encoder": route["encoder"]}
    if args.rewrite or not is_complete_dataset(root) or not made.is_file() or json.loads(made.read_text()) != wanted:
        args.out.mkdir(parents=True, exist_ok=True)
        print(f"writing {root} ({args.episodes} x {args.frames} frames, {args.size} px, AV1 route {route})", flush=True)
        write_dataset(root, args.episodes, args.frames, args.size, args.gop, route)
        atomic_write_json(made, wanted)
    if not route["encoder"]:
        print("WARNING: NO AV1 ENCODER HERE (PyAV or ffmpeg): THE VIDEOS ARE H264, NOT AV1", file=sys.stderr)
    load_before = os.getloadavg()
    data, start_s = stream_data(root, args.model_size)
    # Rounds of every measurement, best of --repeats each: other work on a shared machine only slows a run down,
    # and interleaving spreads a busy spell over all measurements instead of one.
    tries: dict[Any, list[dict[str, Any]]] = {workers: [] for workers in args.workers}
    tries["memory"] = []
    for round_index in range(args.repeats):
        for workers in args.workers:
            tries[workers].append(measure_stream(data, workers, args.steps, args.batch))
            print(f"round {round_index + 1}, stream, {workers} workers: {tries[workers][-1]}", flush=True)
        tries["memory"].append(measure_memory(root, args.model_size, data))
        print(f"round {round_index + 1}, memory: {tries['memory'][-1]}", flush=True)
    runs = [{**max(tries[workers], key=lambda run: run["samples_per_s"]),
             "samples_per_s_runs": [run["samples_per_s"] for run in tries[workers]]} for workers in args.workers]
    memory = memory_summary(tries["memory"], len(data.states), args.model_size)
    command = "python benchmarks/bench_streaming.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    report = {"command": command.strip(), "settings": settings, "route": route, "video": video_facts(root),
              "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, PyAV {av.__version__}, "
                         f"load average {load_before[0]:.1f} before / {os.getloadavg()[0]:.1f} after",
              "stream_start_s": round(start_s, 3), "stream": runs, "memory": memory,
              "workers_needed": workers_needed(runs)}
    atomic_write_json(args.out / "results.json", report)
    text = markdown(report)
    atomic_write_text(args.out / "report.md", text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
