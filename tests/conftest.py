"""Shared fixtures: small synthetic datasets written with our own writer."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest

from c2c.data.episodes import Episode


def make_smooth_episodes(count: int, seed: int = 0, image_size: int | None = None) -> list[Episode]:
    """Meta-World-like 4-dim episodes: smooth xyz motion in [-1, 1], a gripper that closes once."""
    rng = np.random.default_rng(seed)
    episodes = []
    for index in range(count):
        length = int(rng.integers(60, 180))
        t = np.linspace(0, 1, length)[:, None]
        actions = np.sin(2 * np.pi * (rng.uniform(0.3, 1.5, (1, 4)) * t + rng.uniform(0, 1, (1, 4))))
        actions[:, 3] = np.where(t[:, 0] > rng.uniform(0.3, 0.7), 1.0, -1.0)
        states = np.cumsum(actions, axis=0) * 0.01
        images = {}
        if image_size:
            images["corner2"] = rng.integers(0, 255, (length, image_size, image_size, 3), dtype=np.uint8)
        episodes.append(Episode(actions=actions.astype(np.float32), states=states.astype(np.float32),
                                images=images, task=f"task number {index % 3}", metadata={"seed": index}))
    return episodes


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Tests use small tensors: a second OpenMP thread only adds sync cost, up to 100x on a busy machine."""
    from c2c.policy.testing import torch_threads

    with torch_threads(1):
        yield


@pytest.fixture
def synthetic_dataset(tmp_path) -> Path:
    """A 24-episode LeRobot v3 dataset without images, Meta-World action layout."""
    from c2c.data.lerobot import LeRobotWriter

    root = tmp_path / "synthetic"
    with LeRobotWriter(root, fps=80, action_names=["dx", "dy", "dz", "gripper"],
                       state_names=["x", "y", "z", "gripper"]) as writer:
        for episode in make_smooth_episodes(24):
            writer.add_episode(episode)
        writer.finalize({"generator": "synthetic"})
    return root


@pytest.fixture(scope="module")
def metaworld_env_module():
    """c2c.envs.metaworld_env (imported before mujoco: it picks OSMesa); skips when metaworld is not installed."""
    if importlib.util.find_spec("metaworld") is None:
        pytest.skip("metaworld is not installed (pip install -e '.[sim]')")
    from c2c.envs import metaworld_env

    return metaworld_env


@pytest.fixture(scope="session")
def libero_installed() -> None:
    """Skip a LIBERO simulator test when LIBERO is not installed; fail instead under C2C_REQUIRE_LIBERO=1 (CI)."""
    from c2c.envs import libero_env

    if libero_env.libero_available():
        return
    reason = "LIBERO is not installed (run `make setup-libero`)"
    if os.environ.get("C2C_REQUIRE_LIBERO") == "1":
        pytest.fail(f"{reason}, and C2C_REQUIRE_LIBERO=1 requires it")
    pytest.skip(reason)


TINY_CODEC = {"codebook_size": 16, "model_dim": 16, "depth": 1, "heads": 2, "latent_dim": 8, "mode_dim": 8}


def write_two_camera_dataset_and_tokenizer(root):
    """A 6-episode synthetic dataset with two 16-px cameras (the debug preset's size) and a joint tokenizer with
    tiny codebooks trained on it (4 steps); returns (dataset dir, tokenizer dir)."""
    from c2c.data.lerobot import LeRobotWriter
    from c2c.policy.testing import torch_threads
    from c2c.tokenizer.train import TokenizerTrainConfig, train_tokenizer

    dataset = root / "dataset"
    with LeRobotWriter(dataset, fps=80, action_names=["dx", "dy", "dz", "gripper"],
                       state_names=["x", "y", "z", "gripper"]) as writer:
        for episode in make_smooth_episodes(6, image_size=16):
            episode.images["wrist"] = episode.images["corner2"][:, ::-1].copy()
            writer.add_episode(episode)
        writer.finalize({"generator": "synthetic"})
    tokenizer = root / "tokenizer"
    with torch_threads(1):
        train_tokenizer(TokenizerTrainConfig(dataset=str(dataset), out=str(tokenizer), steps=4, batch_size=32,
                                             kmeans_samples=256, eval_every=1000, codec=TINY_CODEC),
                        show_progress=False)
    return dataset, tokenizer


def serve_in_a_process(directory, observation):
    """`c2c serve --policy DIR` in its own process: the served chunk for one observation."""
    import re
    import signal
    import subprocess
    import sys

    from c2c.serve.client import PolicyClient

    process = subprocess.Popen([sys.executable, "-m", "c2c", "serve", "--policy", str(directory), "--port", "0",
                                "--threads", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()
        match = re.search(r"on (ws://127\.0\.0\.1:\d+)", line)
        assert match, (line, process.stderr.read() if process.poll() is not None else "")
        with PolicyClient(match.group(1)) as client:
            reply = client.infer(observation)
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return reply["actions"]
