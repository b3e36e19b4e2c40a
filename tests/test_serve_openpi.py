"""openpi's own client (``openpi-client``'s ``WebsocketClientPolicy`` and ``ActionChunkBroker``) against `c2c serve`.

Runs with ``make check-openpi``, which builds a throwaway environment with openpi-client (numpy<2, as it pins) and
points ``C2C_OPENPI_PYTHON`` at it; skipped otherwise.
"""

from __future__ import annotations

import json
import os
import subprocess

import numpy as np
import pytest

from c2c.constants import OBS_STATE, TASK, image_key
from c2c.serve.server import BackgroundServer, PolicyServer

API_KEY = "openpi-check"
# Runs in the openpi-client environment: argv = port, api key. Prints one JSON line.
OPENPI_SCRIPT = r"""
import json, sys
import numpy as np
from openpi_client import action_chunk_broker, image_tools, websocket_client_policy

port, key = int(sys.argv[1]), sys.argv[2]
client = websocket_client_policy.WebsocketClientPolicy(host="127.0.0.1", port=port, api_key=key)
meta = client.get_server_metadata()

def pattern(size, step):
    return (np.arange(size * size * 3) * step % 256).astype(np.uint8).reshape(size, size, 3)

size = meta["image_size"]
obs = {"observation/image": pattern(size, 7), "observation/wrist_image": pattern(size, 11),
       "observation/state": np.linspace(-1, 1, meta["state_dim"]).astype(np.float32),
       "prompt": "open the drawer"}
result = client.infer(obs)
# openpi's LIBERO example: 224 px images, resized with padding to the policy's size by openpi's own tool.
big = dict(obs, **{"observation/image": image_tools.resize_with_pad(pattern(224, 7), size, size)})
resized = client.infer(big)
# examples/libero/main.py itself: 256 px renders padded to 224 x 224, a float64 state; the libero key map resizes.
example = {"observation/image": image_tools.convert_to_uint8(image_tools.resize_with_pad(pattern(256, 7), 224, 224)),
           "observation/wrist_image": image_tools.convert_to_uint8(
               image_tools.resize_with_pad(pattern(256, 11), 224, 224)),
           "observation/state": np.concatenate((np.zeros(3), np.ones(3), np.full(2, 0.04))),
           "prompt": "open the drawer"}
libero_example = client.infer(example)
broker = action_chunk_broker.ActionChunkBroker(client, action_horizon=meta["action_horizon"])
steps = [broker.infer(obs)["actions"].tolist() for _ in range(3)]
try:
    client.infer({"observation/image": obs["observation/image"]})
    error = None
except RuntimeError as exc:
    error = str(exc)
print(json.dumps({
    "metadata": {k: meta[k] for k in ("protocol", "variant", "image_size", "state_dim", "action_dim",
                                      "action_horizon", "key_map")},
    "actions": result["actions"].tolist(), "dtype": str(result["actions"].dtype),
    "plan_shape": list(result["plan"].shape), "timing": sorted(result["server_timing"]),
    "resized_shape": list(resized["actions"].shape), "broker_steps": steps, "error": error,
    "libero_example_shape": list(libero_example["actions"].shape), "resize": meta["resize"],
    "numpy": np.__version__,
}))
"""


@pytest.mark.openpi
def test_openpi_client_talks_to_our_server():
    interpreter = os.environ.get("C2C_OPENPI_PYTHON")
    if not interpreter:
        pytest.skip("C2C_OPENPI_PYTHON is not set: it names a Python with openpi-client (make check-openpi)")
    from c2c.policy.policy import PlanExecutePolicy
    from c2c.policy.testing import INSTRUCTIONS, debug_config, random_action_tokenizer

    config = debug_config("plan", cameras=("image", "image2"), state_dim=8, action_dim=7)
    policy = PlanExecutePolicy.build(config, random_action_tokenizer("joint", action_dim=7, state_dim=8),
                                     instructions=INSTRUCTIONS).eval()
    size = config.image_size

    def pattern(step: int) -> np.ndarray:
        return (np.arange(size * size * 3) * step % 256).astype(np.uint8).reshape(size, size, 3)

    expected = policy.predict_action_chunk({image_key("image"): pattern(7), image_key("image2"): pattern(11),
                                            OBS_STATE: np.linspace(-1, 1, 8).astype(np.float32),
                                            TASK: "open the drawer"})
    with BackgroundServer(PolicyServer(policy, port=0, api_key=API_KEY, key_map="libero")) as running:
        result = subprocess.run([interpreter, "-c", OPENPI_SCRIPT, str(running.server.port), API_KEY],
                                capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    reply = json.loads(result.stdout.strip().splitlines()[-1])
    assert reply["numpy"].startswith("1.")  # openpi-client's own environment, not ours
    assert reply["metadata"]["protocol"] == "openpi-websocket" and reply["metadata"]["key_map"]["name"] == "libero"
    assert reply["dtype"] == "float32" and reply["plan_shape"] == [20, 7] and reply["resized_shape"] == [20, 7]
    assert reply["resize"] is True and reply["libero_example_shape"] == [20, 7]  # 224 px: resized by the server
    np.testing.assert_allclose(np.array(reply["actions"]), expected, atol=1e-5)
    np.testing.assert_allclose(np.array(reply["broker_steps"]), expected[:3], atol=1e-5)
    assert reply["timing"] == ["batch_size", "infer_ms", "queue_ms"]
    assert "Error in inference server" in reply["error"] and "lacks 'observation/wrist_image'" in reply["error"]
