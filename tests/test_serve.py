"""`c2c serve` over loopback with a random-weight debug policy: replies, batching, bad inputs, API keys, key maps,
the command line, and `c2c eval metaworld --server`. About 30 s on 2 cores (one torch thread)."""

from __future__ import annotations

import importlib.util
import json
import re
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from websockets.sync.client import connect

from c2c.constants import OBS_STATE, TASK, image_key
from c2c.errors import ConfigError
from c2c.serve.client import PolicyClient, RemotePolicy, ServerError
from c2c.serve.codec import ProtocolError, packb, unpackb
from c2c.serve.keymap import PRESETS, load_key_map
from c2c.serve.server import BackgroundServer, PolicyServer
from c2c.serve.testing import bad_requests, probe

LIBERO_CAMERAS = ("image", "image2")
MAX_MESSAGE_BYTES = 64 * 1024


@pytest.fixture(scope="module")
def policy():
    """A LIBERO-shaped debug policy: cameras image/image2 at 16 px, 8-dim state, 7-dim actions."""
    from c2c.policy.policy import PlanExecutePolicy
    from c2c.policy.testing import INSTRUCTIONS, debug_config, random_action_tokenizer, torch_threads

    with torch_threads(1):
        config = debug_config("plan", cameras=LIBERO_CAMERAS, state_dim=8, action_dim=7)
        tokenizer = random_action_tokenizer("joint", action_dim=7, state_dim=8)
        return PlanExecutePolicy.build(config, tokenizer, instructions=INSTRUCTIONS).eval()


def _observation(policy, seed: int) -> dict:
    from c2c.policy.testing import random_observation

    return random_observation(policy.config, seed=seed)


def _wire(observation: dict) -> dict:
    """Our observation in openpi's LIBERO keys."""
    return {"observation/image": observation[image_key("image")],
            "observation/wrist_image": observation[image_key("image2")],
            "observation/state": observation[OBS_STATE], "prompt": observation[TASK]}


@pytest.fixture(scope="module")
def expected(policy):
    """Observations and the policy's own (actions, plan) for them, computed before any server thread runs."""
    cases = []
    for seed in range(4):
        observation = _observation(policy, seed)
        cases.append((observation, *policy.predict_action_chunk(observation, return_plan=True)))
    return cases


@pytest.fixture(scope="module")
def server(policy, expected):
    with BackgroundServer(PolicyServer(policy, port=0, key_map="libero", resize=False,
                                       max_message_bytes=MAX_MESSAGE_BYTES, max_batch=4)) as running:
        yield running


def test_reply_matches_the_policy_and_metadata_describes_it(server, expected):
    observation, actions, plan = expected[0]
    with PolicyClient(server.url) as client:
        meta = client.metadata
        assert meta["protocol"] == "openpi-websocket" and meta["protocol_version"] == 1
        assert (meta["variant"], meta["has_plan"], meta["returns_plan"]) == ("plan", True, True)
        assert meta["image_keys"] == ["observation.images.image", "observation.images.image2"]
        assert (meta["image_size"], meta["state_dim"], meta["action_dim"], meta["action_horizon"],
                meta["plan_steps"]) == (16, 8, 7, 20, 20)
        assert meta["key_map"]["name"] == "libero" and "observation/wrist_image" in meta["request_keys"]
        reply = client.infer(_wire(observation))
        assert reply["actions"].dtype == np.float32 and reply["actions"].shape == (20, 7)
        np.testing.assert_allclose(reply["actions"], actions, atol=1e-5)
        np.testing.assert_allclose(reply["plan"], plan, atol=1e-5)
        timing = reply["server_timing"]
        assert timing["infer_ms"] > 0 and timing["queue_ms"] >= 0 and timing["batch_size"] >= 1
        # Our own key names pass through; return_plan=False leaves the plan out.
        reply = client.infer({**observation, "return_plan": False})
        assert "plan" not in reply
        np.testing.assert_allclose(reply["actions"], actions, atol=1e-5)


def test_concurrent_requests_are_batched_and_each_gets_its_own_answer(server, expected):
    clients = [PolicyClient(server.url) for _ in expected]
    barrier = threading.Barrier(len(clients))
    replies: dict[int, list] = {index: [] for index in range(len(clients))}

    def ask(index: int) -> None:
        for _ in range(3):
            barrier.wait(timeout=30)
            replies[index].append(clients[index].infer(_wire(expected[index][0])))

    threads = [threading.Thread(target=ask, args=(index,)) for index in range(len(clients))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    for client in clients:
        client.close()
    sizes = []
    for index, answers in replies.items():
        assert len(answers) == 3
        for reply in answers:
            np.testing.assert_allclose(reply["actions"], expected[index][1], atol=1e-5)
            sizes.append(reply["server_timing"]["batch_size"])
    assert max(sizes) > 1, sizes  # requests that waited together were decoded together


def test_each_bad_input_fails_only_its_own_connection(server, expected):
    observation, actions, _ = expected[1]
    wire = _wire(observation)
    bad = bad_requests(wire, state_key="observation/state", image_key="observation/wrist_image", prompt_key="prompt",
                       max_message_bytes=MAX_MESSAGE_BYTES)
    bad.append(("both dialects", packb({**wire, "task": "x"}), "both give 'task'"))
    assert len(bad) == 16
    stop, errors, answered = threading.Event(), [], [0]

    def steady() -> None:
        try:
            with PolicyClient(server.url) as client:
                while not stop.is_set():
                    reply = client.infer(wire)
                    if not np.allclose(reply["actions"], actions, atol=1e-5):
                        errors.append("wrong actions")
                    answered[0] += 1
        except Exception as error:  # noqa: BLE001 - counted
            errors.append(repr(error))

    worker = threading.Thread(target=steady)
    worker.start()
    try:
        for name, message, text in bad:
            ok, detail = probe(server.url, message, text, timeout_s=10)
            assert ok, (name, detail)
        before = answered[0]
        while answered[0] < before + 2 and worker.is_alive():  # still answering after the last bad input
            worker.join(timeout=0.05)
    finally:
        stop.set()
        worker.join(timeout=30)
    assert errors == [] and answered[0] >= 2


def test_client_raises_the_server_message(server, expected):
    with PolicyClient(server.url) as client:
        with pytest.raises(ServerError, match=r"expected image size 16x16, got 8x8 .*--resize"):
            client.infer({**_wire(expected[0][0]), "observation/image": np.zeros((8, 8, 3), np.uint8)})


def test_resize_option_resizes_other_sizes(policy, expected):
    with BackgroundServer(PolicyServer(policy, port=0, resize=True)) as running, PolicyClient(running.url) as client:
        assert client.metadata["resize"] and client.metadata["key_map"]["name"] == "libero"  # auto: the preset
        reply = client.infer({**_wire(expected[0][0]), "observation/image": np.zeros((40, 24, 3), np.uint8)})
        assert reply["actions"].shape == (20, 7)


def test_api_key(policy, expected):
    with BackgroundServer(PolicyServer(policy, port=0, api_key="s3cret")) as running:
        port = running.server.port
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as response:
            assert response.status == 200
        with PolicyClient(running.url, api_key="s3cret") as client:
            assert client.infer(_wire(expected[0][0]))["actions"].shape == (20, 7)
        with connect(running.url, additional_headers={"Api-Key": "s3cret"}) as connection:
            assert unpackb(connection.recv(timeout=10))["server"] == "c2c"
        for key in ("wrong", None):
            with pytest.raises(ServerError, match="HTTP 401.*API key"):
                PolicyClient(running.url, api_key=key)
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10)
        assert refused.value.code == 401
        refused.value.close()


def test_start_errors_are_named(policy):
    with BackgroundServer(PolicyServer(policy, port=0)) as running:
        with pytest.raises(ConfigError, match=f"cannot listen on 127.0.0.1:{running.server.port}"):
            BackgroundServer(PolicyServer(policy, port=running.server.port)).start()
    with pytest.raises(ConfigError, match="--max-batch must be an integer >= 1, got 0"):
        PolicyServer(policy, max_batch=0)
    with pytest.raises(ConfigError, match="key map metaworld: 'observation/image' -> 'observation.images.corner2'"):
        PolicyServer(policy, key_map="metaworld")


def test_key_map_presets_files_and_checks(tmp_path):
    libero = load_key_map("libero", LIBERO_CAMERAS)
    assert libero.keys == {"observation/image": "observation.images.image",
                           "observation/wrist_image": "observation.images.image2",
                           "observation/state": "observation.state", "prompt": "task"}
    metaworld = load_key_map("metaworld", ("corner2", "gripperPOV"))
    assert metaworld.keys["observation/image"] == "observation.images.corner2"
    assert metaworld.keys["observation/wrist_image"] == "observation.images.gripperPOV"
    assert load_key_map(None, ("corner2", "gripperPOV")).name == "metaworld"
    assert load_key_map("auto", ("front",)).keys == {"observation/image": "observation.images.front",
                                                     "observation/state": "observation.state", "prompt": "task"}
    with pytest.raises(ConfigError, match=r"observation.images.corner2.*cameras are \['image', 'image2'\].*libero"):
        load_key_map("metaworld", LIBERO_CAMERAS)
    with pytest.raises(ConfigError, match="neither a preset"):
        load_key_map("lerobot", LIBERO_CAMERAS)
    path = tmp_path / "keys.json"
    path.write_text(json.dumps({"cam/top": "observation.images.image", "cam/hand": "observation.images.image2",
                                "joints": "observation.state"}))
    custom = load_key_map(str(path), LIBERO_CAMERAS)
    assert custom.keys["joints"] == "observation.state" and "observation/state" not in custom.keys
    assert custom.keys["prompt"] == "task"
    observation, options = custom.apply({"cam/top": 1, "observation.images.image2": 2, "joints": 3, "prompt": "p",
                                         "unrelated": 4, "return_plan": False})
    assert observation == {"observation.images.image": 1, "observation.images.image2": 2, "observation.state": 3,
                           "task": "p"} and options == {"return_plan": False}
    with pytest.raises(ProtocolError, match="both give 'observation.state'"):
        custom.apply({"joints": 1, "observation.state": 2})
    for bad, match in (({"a": "state"}, "not an observation key"), ({"a": "task", "b": "task"}, "both map to"),
                       ([1, 2], "expected a JSON object")):
        path.write_text(json.dumps(bad))
        with pytest.raises(ConfigError, match=match):
            load_key_map(str(path), LIBERO_CAMERAS)
    assert set(PRESETS) == {"libero", "metaworld"}


def test_remote_policy_queues_and_replans(server, expected):
    observation, actions, plan = expected[2]
    with RemotePolicy(server.url, replan_every=5) as remote:
        assert remote.config.replan_every == 5 and remote.config.action_dim == 7
        chunk, remote_plan = remote.predict_action_chunk(observation, return_plan=True)
        np.testing.assert_allclose(chunk, actions, atol=1e-5)
        np.testing.assert_allclose(remote_plan, plan, atol=1e-5)
        remote.reset()
        steps = [remote.select_action(observation) for _ in range(7)]
        np.testing.assert_allclose(np.stack(steps[:5]), actions[:5], atol=1e-5)
        np.testing.assert_allclose(steps[5], actions[0], atol=1e-5)  # a fresh chunk after five steps


def test_cli_serves_until_interrupted(policy, expected, tmp_path):
    directory = policy.save_pretrained(tmp_path / "policy")
    process = subprocess.Popen([sys.executable, "-m", "c2c", "serve", "--policy", str(directory), "--port", "0",
                                "--threads", "1", "--key-map", "libero"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()
        match = re.search(r"on (ws://127\.0\.0\.1:\d+)", line)
        assert match, (line, process.stderr.read() if process.poll() is not None else "")
        with PolicyClient(match.group(1)) as client:
            np.testing.assert_allclose(client.infer(_wire(expected[3][0]))["actions"], expected[3][1], atol=1e-5)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, err
    assert "stopped after 1 connections" in out and "connection from 127.0.0.1" in err


# --- c2c eval metaworld --server ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def metaworld_policy_dir(tmp_path_factory) -> Path:
    if importlib.util.find_spec("metaworld") is None:
        pytest.skip("metaworld is not installed (pip install -e '.[sim]')")
    import c2c.envs.metaworld_env  # noqa: F401 - before mujoco: it picks OSMesa
    from c2c.envs.metaworld_tasks import instruction
    from c2c.policy.policy import PlanExecutePolicy
    from c2c.policy.testing import debug_config, random_action_tokenizer, torch_threads

    directory = tmp_path_factory.mktemp("mw-policy")
    with torch_threads(1):
        policy = PlanExecutePolicy.build(debug_config("plan", cameras=("corner2", "gripperPOV")),
                                         random_action_tokenizer("joint"), instructions=[instruction("reach")])
    policy.save_pretrained(directory)
    record = {"c2c": {"generator": "metaworld", "tasks": ["reach-v3"], "image_size": 16,
                      "expert": {"reach-v3": {"seeds_attempted": [11, 12, 13]}}}}
    (directory / "training_data.json").write_text(json.dumps(record))
    return directory


@pytest.mark.sim
def test_eval_metaworld_through_a_server(metaworld_policy_dir, tmp_path, capsys):
    from c2c.cli import main
    from c2c.eval.metaworld_eval import eval_seed
    from c2c.policy import load_policy
    from c2c.cli.serve import training_summary

    served = load_policy(metaworld_policy_dir)
    with BackgroundServer(PolicyServer(served, port=0, policy_dir=metaworld_policy_dir,
                                       training=training_summary(metaworld_policy_dir))) as running:
        out = tmp_path / "eval"
        code = main(["eval", "metaworld", "--server", running.url, "--tasks", "reach", "--episodes", "1",
                     "--seed", "0", "--max-steps", "4", "--replan-every", "2", "--out", str(out)])
        assert code == 0, capsys.readouterr().err
        results = json.loads((out / "results.json").read_text())
        assert results["policy"] == running.url and results["weights"] == f"served by {running.url}"
        assert results["settings"]["training_seeds_checked"] == 3 and results["settings"]["replan_every"] == 2
        assert results["server"]["training_record_from"] == "server"
        assert f"--server {running.url}" in results["command"] and "--policy" not in results["command"]
        assert results["tasks"]["reach-v3"]["rollouts"][0]["steps"] == 4
        # --policy beside --server: the training record is read from the directory.
        code = main(["eval", "metaworld", "--server", running.url, "--policy", str(metaworld_policy_dir), "--tasks",
                     "reach", "--episodes", "1", "--seed", "0", "--max-steps", "2", "--out", str(tmp_path / "e2")])
        assert code == 0
        assert json.loads((tmp_path / "e2" / "results.json").read_text())["server"]["training_record_from"].endswith(
            "training_data.json")
        assert main(["eval", "metaworld", "--server", running.url, "--tasks", "reach", "--episodes", "1", "--seed",
                     "0", "--workers", "2", "--out", str(tmp_path / "e3")]) == 2
        assert "workers must be 1 with a policy server" in capsys.readouterr().err

    # The seed check uses the served record: a placement used in training is refused before any rollout.
    leaked = training_summary(metaworld_policy_dir)
    leaked["seeds"]["reach-v3"].append(eval_seed(0, "reach-v3", 0))
    with BackgroundServer(PolicyServer(served, port=0, training=leaked)) as running:
        assert main(["eval", "metaworld", "--server", running.url, "--tasks", "reach", "--episodes", "1",
                     "--seed", "0", "--out", str(tmp_path / "leak")]) == 2
    assert "evaluation placement seed" in capsys.readouterr().err and not (tmp_path / "leak").exists()
    assert main(["eval", "metaworld", "--tasks", "reach", "--episodes", "1", "--seed", "0", "--out",
                 str(tmp_path / "none")]) == 2
    assert "give --policy DIR, or --server" in capsys.readouterr().err


def test_api_key_comes_from_the_environment_when_not_given(monkeypatch):
    from c2c.cli import API_KEY_ENV, api_key, build_parser

    monkeypatch.delenv(API_KEY_ENV, raising=False)
    assert api_key(build_parser().parse_args(["serve", "--policy", "p"])) is None
    monkeypatch.setenv(API_KEY_ENV, "from-env")
    assert api_key(build_parser().parse_args(["serve", "--policy", "p"])) == "from-env"
    assert api_key(build_parser().parse_args(["serve", "--policy", "p", "--api-key", "given"])) == "given"
    assert api_key(build_parser().parse_args(["eval", "metaworld", "--server", "ws://h:1", "--tasks", "reach-v3",
                                              "--episodes", "1", "--seed", "0", "--out", "o"])) == "from-env"
