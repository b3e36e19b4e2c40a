"""The README's Python example runs as written, on a small policy saved where the example looks for it."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def python_example(text: str, lead: str = "policy from Python") -> str:
    """The first fenced python block after the line that contains ``lead``."""
    start = text.find(lead)
    if start < 0:
        raise AssertionError(f"README.md has no line with {lead!r}")
    match = re.compile(r"^```python\n(.*?)^```", re.S | re.M).search(text, start)
    if match is None:
        raise AssertionError(f"README.md has no ```python block after {lead!r}")
    return match.group(1)


def test_the_python_example_is_found():
    code = python_example(README.read_text())
    assert "from_pretrained(" in code and "select_action(" in code


def test_the_readme_python_example_runs(tmp_path, monkeypatch):
    from c2c.policy.policy import PlanExecutePolicy
    from c2c.policy.testing import INSTRUCTIONS, debug_config, random_action_tokenizer

    code = python_example(README.read_text())
    path = re.search(r'from_pretrained\("([^"]+)"\)', code)
    assert path, "the example loads a policy from a quoted directory"
    # A debug-preset policy with the example's single camera, saved where the example loads it from.
    config = debug_config("plan", cameras=("corner2",))
    built = PlanExecutePolicy.build(config, random_action_tokenizer("joint"), INSTRUCTIONS)
    monkeypatch.chdir(tmp_path)
    built.save_pretrained(path.group(1))
    # What a robot loop would supply: one camera image and the state.
    rng = np.random.default_rng(0)
    namespace = {"image": rng.integers(0, 256, (config.image_size, config.image_size, 3), dtype=np.uint8),
                 "state": rng.uniform(-1, 1, config.state_dim).astype(np.float32)}
    exec(compile(code, str(README), "exec"), namespace)  # noqa: S102 - the README's own code

    action, chunk, plan = namespace["action"], namespace["chunk"], namespace["plan"]
    assert action.shape == (config.action_dim,) and np.isfinite(action).all()
    assert chunk.shape[1:] == (config.action_dim,) and len(chunk) >= config.replan_every
    assert plan is not None and plan.shape[1:] == (config.action_dim,)
    # select_action took the first step of the chunk the same observation decodes to (greedy decoding).
    np.testing.assert_allclose(action, chunk[0], rtol=1e-5, atol=1e-6)


def test_a_missing_example_is_named():
    with pytest.raises(AssertionError, match="no line with"):
        python_example("# A README\n")
    with pytest.raises(AssertionError, match="no ```python block"):
        python_example("Using a trained policy from Python:\n\n```bash\nls\n```\n")
