"""Expert takeover from policy-reached states (`c2c data metaworld-takeover`) with a random-weight 16-px policy.

Simulator tests are marked ``sim``; about 30 s on 2 cores.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from c2c.envs.demos.metaworld_rollouts import placement_seed
from c2c.envs.metaworld_takeover import TAKEOVER_PERIOD, takeover_seed, takeover_step
from c2c.envs.metaworld_tasks import instruction
from c2c.errors import C2CError, ConfigError

IMAGE_SIZE = 16
TASK = "reach-v3"


def test_takeover_placements_and_steps_are_stable_and_apart_from_the_demos():
    seeds = [takeover_seed(100, TASK, index) for index in range(50)]
    assert seeds == [takeover_seed(100, TASK, index) for index in range(50)]
    assert len(set(seeds)) == 50 and all(0 <= seed < 2**31 for seed in seeds)
    assert not set(seeds) & {placement_seed(100, TASK, index) for index in range(50)}
    assert seeds != [takeover_seed(101, TASK, index) for index in range(50)]
    steps = [takeover_step(seed, 150) for seed in seeds]
    assert all(step % TAKEOVER_PERIOD == 0 and TAKEOVER_PERIOD <= step <= 150 for step in steps)
    assert len(set(steps)) > 5  # spread over the range
    assert {takeover_step(seed, 10) for seed in seeds} == {10}


@pytest.mark.sim
def test_the_expert_reopens_a_gripper_it_expects_open(metaworld_env_module):
    from c2c.envs.metaworld_takeover import OPEN_GRIPPER, corrective_expert_action

    env = metaworld_env_module.MetaWorldEnv("pick-place-v3", cameras=())
    try:
        env.reset(3)
        assert env.raw_state[3] > OPEN_GRIPPER
        np.testing.assert_array_equal(corrective_expert_action(env), env.expert_action())  # open: unchanged
        for _ in range(15):  # close the gripper far above the puck, as a drifting policy may
            env.step(np.array([0.0, 0.0, 0.0, 1.0], np.float32))
        assert env.raw_state[3] < OPEN_GRIPPER
        expert = env.expert_action()
        assert expert[3] <= 0  # the expert asks for no grip ...
        corrected = corrective_expert_action(env)
        assert corrected[3] == -1.0  # ... so the label opens the gripper
        np.testing.assert_array_equal(corrected[:3], expert[:3])
    finally:
        env.close()


@pytest.fixture(scope="module")
def base(tmp_path_factory, metaworld_env_module):
    """A one-episode reach dataset at 16 px and a saved random-weight policy reading it."""
    from c2c.envs.metaworld_demos import generate_metaworld_demos
    from c2c.policy.policy import PlanExecutePolicy
    from c2c.policy.testing import debug_config, random_action_tokenizer, torch_threads

    root = tmp_path_factory.mktemp("takeover")
    dataset = root / "demos"
    generate_metaworld_demos(tasks=TASK, episodes_per_task=1, image_size=IMAGE_SIZE, cameras="corner2,gripperPOV",
                             seed=7, out=dataset, show_progress=False, workers=1)
    policy_dir = root / "policy"
    with torch_threads(1):
        policy = PlanExecutePolicy.build(debug_config("plan", cameras=("corner2", "gripperPOV")),
                                         random_action_tokenizer("joint"), instructions=[instruction(TASK)])
    assert policy.config.image_size == IMAGE_SIZE
    policy.save_pretrained(policy_dir)
    return dataset, policy_dir


def _collect(base, target: Path, **overrides):
    from c2c.eval.takeover import collect_takeovers

    dataset, policy_dir = base
    arguments = dict(policy_dir=policy_dir, dataset=dataset, episodes_per_task=3, seed=5, out=target, policy_steps=20,
                     replan_every=10, workers=1, show_progress=False)
    arguments.update(overrides)
    return collect_takeovers(**arguments)


@pytest.mark.sim
def test_takeovers_extend_the_dataset_and_its_placements(base, tmp_path):
    from c2c.data.lerobot import LeRobotDataset

    dataset, _ = base
    report = _collect(base, tmp_path / "agg")
    statuses = [item.status for item in report.takeovers]
    assert len(statuses) == 3 and set(statuses) <= {"recorded", "policy-success", "expert-failed"}
    recorded = [item for item in report.takeovers if item.status == "recorded"]
    assert recorded, statuses  # a random policy does not solve reach in 20 steps
    assert "recorded" in report.summary()

    base_data, out = LeRobotDataset(dataset), LeRobotDataset(tmp_path / "agg")
    assert out.num_episodes == base_data.num_episodes + len(recorded)
    first = out.episode(0)
    np.testing.assert_array_equal(first.actions, base_data.episode(0).actions)  # the base comes first, unchanged
    for offset, item in enumerate(recorded):
        episode = out.episode(base_data.num_episodes + offset)
        assert episode.length == item.frames
        assert episode.metadata["seed"] == item.seed and episode.metadata["takeover_step"] == item.takeover_step
        assert item.takeover_step % TAKEOVER_PERIOD == 0 and item.takeover_step <= 20
        assert episode.images["corner2"].shape == (item.frames, IMAGE_SIZE, IMAGE_SIZE, 3)
        assert episode.task == instruction(TASK)
        assert np.all(np.abs(episode.actions) <= 1.0)
    info = out.extra_info
    seeds = info["expert"][TASK]["seeds_attempted"]
    assert seeds[: len(base_data.extra_info["expert"][TASK]["seeds_attempted"])] == \
        base_data.extra_info["expert"][TASK]["seeds_attempted"]
    assert {item.seed for item in report.takeovers} <= set(seeds)  # evaluation refuses these placements
    assert info["takeover"]["counts"][TASK]["recorded"] == len(recorded)
    assert info["takeover"]["seed"] == 5 and info["takeover"]["policy_steps"] == 20

    again = _collect(base, tmp_path / "agg")  # the same request: reused, nothing rolled out
    assert again.reused and again.takeovers == []
    repeat = _collect(base, tmp_path / "agg2")  # a fresh run repeats the rollouts exactly
    assert [(item.seed, item.takeover_step, item.status, item.frames) for item in repeat.takeovers] == \
        [(item.seed, item.takeover_step, item.status, item.frames) for item in report.takeovers]
    for mine, theirs in zip(recorded, [item for item in repeat.takeovers if item.status == "recorded"]):
        for key, value in mine.arrays.items():
            np.testing.assert_array_equal(theirs.arrays[key], value)


@pytest.mark.sim
@pytest.mark.parametrize("change, message", [
    (dict(episodes_per_task=0), "--episodes must be at least 1"),
    (dict(policy_steps=5), "--policy-steps must lie in"),
    (dict(workers=0), "--workers must be at least 1"),
    (dict(tasks="pick-place-v3"), "--tasks pick-place-v3: not in --dataset"),
    ("same-out", "is --dataset"),
    ("not-metaworld", "not made by `c2c data metaworld`"),
    ("missing-config", "config.json is missing"),
    ("other-size", "at 32 px but --dataset"),
    ("occupied", "exists and is not empty"),
])
def test_bad_requests_fail_before_any_rollout(base, tmp_path, synthetic_dataset, change, message, monkeypatch):
    import shutil

    from c2c.eval import takeover

    monkeypatch.setattr(takeover, "_run_all", lambda *args: pytest.fail("rolled out"))
    dataset, policy_dir = base
    overrides: dict = {}
    if isinstance(change, dict):
        overrides = change
    elif change == "same-out":
        overrides = dict(out=dataset)
    elif change == "not-metaworld":
        overrides = dict(dataset=synthetic_dataset)
    elif change == "missing-config":
        broken = Path(shutil.copytree(policy_dir, tmp_path / "broken"))
        (broken / "config.json").unlink()
        overrides = dict(policy_dir=broken)
    elif change == "other-size":
        other = Path(shutil.copytree(policy_dir, tmp_path / "other"))
        config = json.loads((other / "config.json").read_text())
        config["policy"]["image_size"] = 32
        (other / "config.json").write_text(json.dumps(config))
        overrides = dict(policy_dir=other)
    elif change == "occupied":
        (tmp_path / "agg").mkdir()
        (tmp_path / "agg" / "notes.txt").write_text("mine")
    with pytest.raises((ConfigError, C2CError), match=message):
        _collect(base, tmp_path / "agg", **overrides)
    if change == "occupied":
        assert (tmp_path / "agg" / "notes.txt").read_text() == "mine"  # nothing on disk is touched


@pytest.mark.sim
def test_cli_prints_the_counts(base, tmp_path, capsys):
    from c2c.cli import main

    dataset, policy_dir = base
    code = main(["data", "metaworld-takeover", "--policy", str(policy_dir), "--dataset", str(dataset),
                 "--episodes", "1", "--seed", "9", "--policy-steps", "10", "--workers", "1",
                 "--out", str(tmp_path / "agg")])
    assert code == 0
    output = capsys.readouterr().out
    assert TASK in output and "takeover episodes" in output
    assert main(["data", "metaworld-takeover", "--policy", str(policy_dir), "--dataset", str(dataset),
                 "--episodes", "0", "--out", str(tmp_path / "x")]) != 0
    assert "--episodes must be at least 1" in capsys.readouterr().err
