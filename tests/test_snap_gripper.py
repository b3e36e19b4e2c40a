"""`c2c eval metaworld --snap-gripper`: the executed gripper effort is rounded to the demonstrations' {-1, 0, +1}."""

import numpy as np
import pytest

from c2c.eval.metaworld_rollouts import GRIPPER_DIM, Settings, executed_action


def _settings(snap: bool) -> Settings:
    return Settings("p", None, 10, ("corner2",), 16, True, snap_gripper=snap)


def test_only_the_gripper_effort_is_rounded_and_only_when_asked():
    action = np.array([0.26, -0.7, 0.51, 0.49], np.float32)
    assert executed_action(action, _settings(False)) is action
    snapped = executed_action(action, _settings(True))
    np.testing.assert_array_equal(snapped[:GRIPPER_DIM], action[:GRIPPER_DIM])
    assert snapped[GRIPPER_DIM] == 0.0 and action[GRIPPER_DIM] == np.float32(0.49)  # the policy's array is untouched
    batch = np.array([[0, 0, 0, -0.8], [0, 0, 0, 0.6], [0, 0, 0, 1.7]], np.float32)
    np.testing.assert_array_equal(executed_action(batch, _settings(True))[:, GRIPPER_DIM], [-1.0, 1.0, 1.0])


@pytest.mark.sim
def test_the_evaluation_records_and_reproduces_the_option(tmp_path):
    pytest.importorskip("metaworld")
    import json

    import c2c.envs.metaworld_env  # noqa: F401 - before mujoco: it picks OSMesa
    from c2c.envs.metaworld_tasks import instruction
    from c2c.eval.metaworld_eval import evaluate_metaworld
    from c2c.policy.policy import PlanExecutePolicy
    from c2c.policy.testing import debug_config, random_action_tokenizer, torch_threads

    with torch_threads(1):
        policy = PlanExecutePolicy.build(debug_config("noplan", cameras=("corner2",)), random_action_tokenizer("joint"),
                                         instructions=[instruction("reach")])
    policy.save_pretrained(tmp_path / "policy")
    record = {"dataset": "data/fake", "c2c": {"generator": "metaworld", "tasks": ["reach-v3"], "image_size": 16,
                                             "cameras": ["corner2"], "expert": {"reach-v3": {"seeds_attempted": [1]}}}}
    (tmp_path / "policy" / "training_data.json").write_text(json.dumps(record))
    result = evaluate_metaworld(tmp_path / "policy", "reach", episodes=1, seed=5, out=tmp_path / "eval", max_steps=5,
                                workers=1, show_progress=False, snap_gripper=True)
    assert result["settings"]["snap_gripper"] is True and result["command"].endswith("--snap-gripper")
