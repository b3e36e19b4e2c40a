"""`c2c serve --key-map libero` against the requests openpi's LIBERO client (``examples/libero/main.py``) sends:
224 x 224 uint8 images under ``observation/image`` and ``observation/wrist_image``, an 8-dim float64 state, a prompt.
Images of another size are resized as training resizes dataset frames, unless ``--strict-size``. About 15 s on
2 cores, most of it a `c2c serve` process starting."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from websockets.sync.client import connect

from c2c.constants import OBS_STATE, TASK, image_key
from c2c.errors import ConfigError
from c2c.serve.codec import packb, unpackb
from c2c.serve.keymap import KeyMap, load_key_map
from c2c.serve.server import BackgroundServer, PolicyServer, resolve_resize
from c2c.serve.testing import probe

OPENPI_SIZE = 224  # openpi's LIBERO client: resize_with_pad(image, 224, 224)
PROMPT = "pick up the black bowl between the plate and the ramekin and place it on the plate"


@pytest.fixture(scope="module")
def policy():
    """A LIBERO-shaped debug policy: cameras image/image2 at 16 px, 8-dim state, 7-dim actions, random weights."""
    from c2c.policy.policy import PlanExecutePolicy
    from c2c.policy.testing import INSTRUCTIONS, debug_config, random_action_tokenizer, torch_threads

    with torch_threads(1):
        config = debug_config("plan", cameras=("image", "image2"), state_dim=8, action_dim=7)
        tokenizer = random_action_tokenizer("joint", action_dim=7, state_dim=8)
        return PlanExecutePolicy.build(config, tokenizer, instructions=(*INSTRUCTIONS, PROMPT)).eval()


def _openpi_request(seed: int = 0) -> dict:
    """What examples/libero/main.py sends: upright 224 px uint8 images, float64 state (np.concatenate), prompt."""
    rng = np.random.default_rng(seed)
    smooth = np.linspace(0, 255, OPENPI_SIZE)
    image = (smooth[:, None, None] * 0.5 + smooth[None, :, None] * 0.5 + rng.integers(0, 40, (1, 1, 3)))
    wrist = 255 - image
    return {"observation/image": np.clip(image, 0, 255).astype(np.uint8),
            "observation/wrist_image": np.clip(wrist, 0, 255).astype(np.uint8),
            "observation/state": np.concatenate([[0.1, -0.2, 1.1], [3.1, 0.0, 0.1], [0.039, -0.038]]),
            "prompt": PROMPT}


def _as_training_sees_it(request: dict, size: int) -> dict:
    """The request in our keys with the images resized as training resizes dataset frames."""
    from c2c.policy.training.data import resize_frames

    return {image_key("image"): resize_frames(request["observation/image"][None], size)[0],
            image_key("image2"): resize_frames(request["observation/wrist_image"][None], size)[0],
            OBS_STATE: request["observation/state"].astype(np.float32), TASK: request["prompt"]}


def test_resize_defaults():
    libero = load_key_map("libero", ("image", "image2"))
    assert resolve_resize("libero", None) and resolve_resize(libero, None)
    assert not resolve_resize(None, None) and not resolve_resize("auto", None) and not resolve_resize("metaworld", None)
    assert not resolve_resize(KeyMap("custom.json", dict(libero.keys)), None)
    assert resolve_resize(None, True) and not resolve_resize("libero", False)
    assert not resolve_resize("libero", None, strict_size=True) and not resolve_resize("libero", False, True)
    with pytest.raises(ConfigError, match="--resize and --strict-size contradict"):
        resolve_resize("libero", True, strict_size=True)


def test_libero_key_map_resizes_as_training_and_strict_size_refuses(policy):
    request = _openpi_request(1)
    expected = policy.predict_action_chunk(_as_training_sees_it(request, policy.config.image_size))
    with BackgroundServer(PolicyServer(policy, port=0, key_map="libero")) as running, \
            connect(running.url, compression=None, max_size=None) as connection:
        metadata = unpackb(connection.recv(timeout=30))
        assert metadata["resize"] is True and metadata["strict_size"] is False
        assert metadata["request_keys"]["observation/image"].endswith("other sizes are resized")
        connection.send(packb(request))
        reply = unpackb(connection.recv(timeout=60))
    assert reply["actions"].shape == (20, 7) and reply["actions"].dtype == np.float32
    np.testing.assert_allclose(reply["actions"], expected, atol=1e-5)
    with BackgroundServer(PolicyServer(policy, port=0, key_map="libero", strict_size=True)) as running:
        ok, detail = probe(running.url, packb(request), "'observation/image' (observation.images.image): expected "
                           "image size 16x16, got 224x224", timeout_s=30)
    assert ok, detail
    assert "--strict-size" in detail


def _free_port() -> int:
    with socket.socket() as probe_socket:
        probe_socket.bind(("127.0.0.1", 0))
        return probe_socket.getsockname()[1]


def _ask(url: str, request: dict, timeout_s: float = 60.0) -> list:
    """Connect as openpi's WebsocketClientPolicy does (retrying while the server starts), send ``request`` twice
    unless refused; the replies (dicts) or the refusal (a string)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            connection = connect(url, compression=None, max_size=None, open_timeout=5)
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    answers: list = []
    with connection:
        unpackb(connection.recv(timeout=timeout_s))  # the metadata
        for _ in range(2):
            connection.send(packb(request))
            answer = connection.recv(timeout=timeout_s)
            answers.append(answer if isinstance(answer, str) else unpackb(answer))
            if isinstance(answer, str):
                break
    return answers


def test_cli_serves_openpis_libero_client_requests(policy, tmp_path, capsys):
    """`c2c serve --key-map libero` on 127.0.0.1 (a process of its own) answers openpi-shaped requests with (20, 7)
    actions; the same command with --strict-size (run here, stopped by SIGINT) refuses them in one line naming the
    key and both sizes."""
    from c2c.cli import main

    directory = policy.save_pretrained(tmp_path / "policy")
    request = _openpi_request(2)
    expected = policy.predict_action_chunk(_as_training_sees_it(request, policy.config.image_size))
    command = ["serve", "--policy", str(directory), "--threads", "1", "--key-map", "libero"]
    process = subprocess.Popen([sys.executable, "-m", "c2c", *command, "--port", "0"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        port, answers = _free_port(), []

        def strict_client() -> None:
            try:
                answers.extend(_ask(f"ws://127.0.0.1:{port}", request))
            finally:
                os.kill(os.getpid(), signal.SIGINT)  # stops the server below, as Ctrl-C does

        client = threading.Thread(target=strict_client)
        client.start()
        code = main([*command, "--port", str(port), "--strict-size"])
        client.join(timeout=60)
        banner = capsys.readouterr().out
        assert code == 0 and "other image sizes refused" in banner, banner
        assert len(answers) == 1 and answers[0] == (
            "bad request: 'observation/image' (observation.images.image): expected image size 16x16, got 224x224 "
            "(shape (16, 16, 3); the server runs with --strict-size; send 16x16 images or restart it without "
            "--strict-size to resize them)")

        line = process.stdout.readline()
        match = re.search(r" on (ws://127\.0\.0\.1:\d+) ", line)
        assert match and "other image sizes resized" in line, (line, process.poll())
        replies = _ask(match.group(1), request)
        assert len(replies) == 2
        for reply in replies:
            assert reply["actions"].shape == (20, 7)
            np.testing.assert_allclose(reply["actions"], expected, atol=1e-5)
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, err


def test_cli_refuses_resize_with_strict_size(policy, tmp_path, capsys):
    from c2c.cli import main

    directory = policy.save_pretrained(tmp_path / "policy")
    assert main(["serve", "--policy", str(directory), "--port", "0", "--resize", "--strict-size"]) == 2
    assert "--resize and --strict-size contradict each other" in capsys.readouterr().err
