"""Golden numbers: a seeded debug policy and a seeded RVQ tokenizer on fixed inputs, against tests/golden/.

An unintended change of the numbers (a reordered initialisation, another mask, a changed normalisation) fails here
even when every shape and property test still passes. After an intended change, rewrite the file and commit it
with the change that explains it:

    C2C_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_golden.py

Ids and codes are compared exactly; floats with rtol 1e-4 (and a small atol for values near zero), which thread
counts and summation orders stay well within. A torch release that draws its random initialisation differently
would also need the file rewritten.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from c2c.constants import OBS_STATE, TASK, image_key
from c2c.utils.io import atomic_write_text

GOLDEN = Path(__file__).parent / "golden" / "golden.json"
UPDATE = os.environ.get("C2C_UPDATE_GOLDEN") == "1"
RTOL, ATOL = 1e-4, 1e-5


def _fixed_observation(config, batch_size: int = 2) -> dict:
    """Images and states from closed-form patterns (no random generator whose stream could change)."""
    size = config.image_size
    y, x, c = np.meshgrid(np.arange(size), np.arange(size), np.arange(3), indexing="ij")
    observation = {}
    for index, camera in enumerate(config.cameras):
        images = [(37 * x + 11 * y + 53 * c + 29 * b + 71 * index) % 256 for b in range(batch_size)]
        observation[image_key(camera)] = np.stack(images).astype(np.uint8)  # (B, H, W, 3)
    state = np.sin(np.arange(batch_size * config.state_dim, dtype=np.float64) * 0.7).reshape(batch_size, -1)
    observation[OBS_STATE] = state.astype(np.float32)
    observation[TASK] = ["open the drawer", "press the button from the top"][:batch_size]
    return observation


def _fixed_chunks(horizon: int, action_dim: int, count: int = 3) -> np.ndarray:
    """(count, horizon, action_dim) smooth action chunks in [-1, 1], a gripper that switches once."""
    t = np.linspace(0.0, 1.0, horizon)[None, :, None]
    chunk = np.arange(count)[:, None, None]
    dim = np.arange(action_dim)[None, None, :]
    actions = 0.8 * np.sin(2 * np.pi * (0.5 + 0.3 * dim) * t + 0.9 * chunk + 0.4 * dim)
    actions[..., -1] = np.where(t[..., 0] > 0.3 + 0.2 * chunk[..., 0], 1.0, -1.0)
    return actions.astype(np.float32)


def _floats(array) -> list:
    return np.asarray(array, dtype=np.float64).round(7).tolist()


def _ints(array) -> list:
    return np.asarray(array, dtype=np.int64).tolist()


def _policy_numbers() -> dict:
    from c2c.policy.policy import PlanExecutePolicy
    from c2c.policy.testing import INSTRUCTIONS, debug_config, random_action_tokenizer

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        policy = PlanExecutePolicy.build(debug_config("plan"), random_action_tokenizer("joint", seed=0),
                                         INSTRUCTIONS).eval()
    observation = _fixed_observation(policy.config)
    with torch.no_grad():
        chunk, batched = policy.generate(observation, decode_plan=True)  # temperature 0: greedy
        assert batched
        # Teacher forcing on the greedy ids: the logits of every suffix position.
        inputs, _ = policy.processor.prefix_inputs(observation, policy.device)
        out = policy.model(inputs, chunk.suffix_ids)
    logits = out.logits.double()  # (B, T, V)
    return {
        "suffix_ids": _ints(chunk.suffix_ids),
        "actions": _floats(chunk.actions),
        "plan": _floats(chunk.plan),
        "logits": {
            "shape": list(logits.shape),
            "loss": float(out.loss),
            "mean": float(logits.mean()),
            "std": float(logits.std()),
            "abs_max": float(logits.abs().max()),
            "per_position_mean": _floats(logits.mean(dim=(0, 2))),
            "first_position": _floats(logits[:, 0, :16]),
        },
    }


def _tokenizer_numbers() -> dict:
    from c2c.policy.testing import random_action_tokenizer

    tokenizer = random_action_tokenizer("joint", seed=0)
    numbers = {}
    for mode in ("exec", "plan"):
        actions = _fixed_chunks(tokenizer.config.horizon, tokenizer.config.action_dim)
        if mode == "plan":
            actions = 4.0 * actions  # the plan normaliser's range is [-8, 8]
        codes = tokenizer.encode(actions, mode)  # (B, N, R)
        numbers[mode] = {"codes": _ints(codes), "decoded": _floats(tokenizer.decode(codes, mode))}
    return numbers


def _numbers() -> dict:
    return {"policy": _policy_numbers(), "tokenizer": _tokenizer_numbers()}


def _dumps(value, indent: str = "") -> str:
    """JSON with one line per leaf (a list of numbers stays on its line): small, and diffs name what moved."""
    if not isinstance(value, dict):
        return json.dumps(value)
    inner = indent + "  "
    items = [f"{inner}{json.dumps(key)}: {_dumps(item, inner)}" for key, item in value.items()]
    return "{\n" + ",\n".join(items) + "\n" + indent + "}"


def _compare(actual, expected, where: str) -> None:
    """Walk the two structures; ints exactly, floats within RTOL/ATOL."""
    if isinstance(expected, dict):
        assert set(actual) == set(expected), f"{where}: keys {sorted(actual)} != {sorted(expected)}"
        for key in expected:
            _compare(actual[key], expected[key], f"{where}.{key}")
        return
    a, e = np.asarray(actual), np.asarray(expected)
    assert a.shape == e.shape, f"{where}: shape {a.shape} != golden {e.shape}"
    if e.dtype.kind in "iu":
        assert a.dtype.kind in "iu", f"{where}: expected integers"
        np.testing.assert_array_equal(a, e, err_msg=where)
    else:
        np.testing.assert_allclose(a, e, rtol=RTOL, atol=ATOL, err_msg=where)


@pytest.fixture(scope="module")
def golden() -> dict:
    if UPDATE:
        atomic_write_text(GOLDEN, _dumps(_numbers()) + "\n")
    if not GOLDEN.is_file():
        pytest.fail(f"{GOLDEN} is missing; write it with C2C_UPDATE_GOLDEN=1 pytest tests/test_golden.py")
    return json.loads(GOLDEN.read_text())


def test_policy_greedy_chunk_and_logits_match_the_golden_file(golden):
    if UPDATE:
        pytest.skip(f"rewrote {GOLDEN.name}")
    _compare(_policy_numbers(), golden["policy"], "policy")


def test_tokenizer_codes_and_decoded_actions_match_the_golden_file(golden):
    if UPDATE:
        pytest.skip(f"rewrote {GOLDEN.name}")
    _compare(_tokenizer_numbers(), golden["tokenizer"], "tokenizer")


def test_the_golden_numbers_do_not_depend_on_the_thread_count():
    """Two threads instead of the tests' one: ids identical, floats within the tolerance the golden test uses."""
    from c2c.policy.testing import torch_threads

    one = _numbers()
    with torch_threads(2):
        two = _numbers()
    _compare(two, one, "two threads")


def test_a_changed_number_is_caught(golden):
    """The comparison is not vacuous: one changed id or a float moved by 1e-3 relative fails it."""
    changed = json.loads(json.dumps(golden["tokenizer"]))
    changed["exec"]["codes"][0][0][0] = (changed["exec"]["codes"][0][0][0] + 1) % 16
    with pytest.raises(AssertionError, match="tokenizer.exec.codes"):
        _compare(changed, golden["tokenizer"], "tokenizer")
    moved = json.loads(json.dumps(golden["policy"]))
    moved["logits"]["mean"] = moved["logits"]["mean"] * (1 + 1e-3) + 1e-3
    with pytest.raises(AssertionError, match="policy.logits.mean"):
        _compare(moved, golden["policy"], "policy")
