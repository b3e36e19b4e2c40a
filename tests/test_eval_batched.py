"""Several Meta-World environments per worker, their observations decoded as one batch: the same episodes as one
at a time, and environments of a task share the process's renderer without changing an image."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from c2c.errors import ConfigError
from c2c.eval.batch_decoding import stack_observations
from c2c.eval.metaworld_batch import group_jobs


@pytest.fixture(scope="module")
def policy_dir(tmp_path_factory) -> Path:
    if importlib.util.find_spec("metaworld") is None:
        pytest.skip("metaworld is not installed (pip install -e '.[sim]')")
    import c2c.envs.metaworld_env  # noqa: F401 - before mujoco: it picks OSMesa
    from c2c.envs.metaworld_tasks import instruction
    from c2c.policy.policy import PlanExecutePolicy
    from c2c.policy.testing import debug_config, random_action_tokenizer, torch_threads

    directory = tmp_path_factory.mktemp("policy")
    with torch_threads(1):
        policy = PlanExecutePolicy.build(debug_config("plan", cameras=("corner2", "gripperPOV"), replan_every=5,
                                                      plan_reuse=2),
                                         random_action_tokenizer("joint"),
                                         instructions=[instruction(task) for task in ("reach", "drawer-close")])
    policy.save_pretrained(directory)
    record = {"dataset": "data/fake", "c2c": {"generator": "metaworld", "tasks": ["reach-v3"], "image_size": 16,
                                             "cameras": ["corner2", "gripperPOV"],
                                             "expert": {"reach-v3": {"seeds_attempted": [1, 2]}}}}
    (directory / "training_data.json").write_text(json.dumps(record))
    return directory


@pytest.mark.sim
def test_batched_episodes_equal_one_at_a_time(policy_dir, tmp_path):
    from c2c.eval.metaworld_eval import evaluate_metaworld

    kwargs = dict(episodes=3, seed=5, max_steps=23, workers=1, show_progress=False, videos=1)
    one = evaluate_metaworld(policy_dir, "reach,drawer-close", out=tmp_path / "one", **kwargs)
    many = evaluate_metaworld(policy_dir, "reach,drawer-close", out=tmp_path / "many", envs_per_worker=3, **kwargs)
    assert many["settings"]["envs_per_worker"] == 3 and "--envs-per-worker 3" in many["command"]
    for task in one["tasks"]:
        strip = [{k: v for k, v in r.items() if k != "seconds"} for r in one["tasks"][task]["rollouts"]]
        assert strip == [{k: v for k, v in r.items() if k != "seconds"} for r in many["tasks"][task]["rollouts"]]
    # The videos show the same frames and plans.
    import imageio.v2 as imageio

    for task in one["tasks"]:
        frames = [imageio.mimread(out / "videos" / f"{task}_ep0.mp4") for out in (tmp_path / "one", tmp_path / "many")]
        assert len(frames[0]) == len(frames[1]) == 24
        assert max(np.abs(a.astype(int) - b.astype(int)).mean() for a, b in zip(*frames)) < 1.0


@pytest.mark.sim
def test_a_shared_renderer_draws_the_same_images():
    from c2c.envs.metaworld_env import MetaWorldEnv

    first = MetaWorldEnv("reach", cameras=("corner2", "gripperPOV"), image_size=16)
    second = MetaWorldEnv("reach", cameras=("corner2", "gripperPOV"), image_size=16)
    try:
        first.reset(1)
        own = second.reset(2)  # drawn with its own renderer
        second.share_renderer(first)
        shared = second.observation()  # drawn with the renderer made for the first env's model
        for key in own:
            if key.startswith("observation.images"):
                np.testing.assert_array_equal(own[key], shared[key])
    finally:
        second.close()
        first.close()
    other = MetaWorldEnv("drawer-close", cameras=("corner2",), image_size=16)
    with pytest.raises(ConfigError, match="share_renderer"):
        other.share_renderer(MetaWorldEnv("reach", cameras=("corner2",), image_size=16))
    other.close()


def test_jobs_group_by_task_and_observations_stack():
    from types import SimpleNamespace

    jobs = [SimpleNamespace(task=t) for t in "aaabba"]
    assert [[j.task for j in g] for g in group_jobs(jobs, 2)] == [["a", "a"], ["a"], ["b", "b"], ["a"]]
    batch = stack_observations([{"x": np.zeros(3), "task": "t"}, {"x": np.ones(3), "task": "u"}])
    assert batch["x"].shape == (2, 3) and batch["task"] == ["t", "u"]


@pytest.mark.parametrize("value", [0, -2])
def test_envs_per_worker_is_checked(policy_dir, tmp_path, value):
    from c2c.eval.metaworld_eval import evaluate_metaworld

    with pytest.raises(ConfigError, match="--envs-per-worker must be 1 or more"):
        evaluate_metaworld(policy_dir, "reach", episodes=1, seed=0, out=tmp_path / "o", envs_per_worker=value)


@pytest.mark.sim
@pytest.mark.parametrize("envs_per_worker", [1, 3])
def test_drawing_only_the_steps_a_policy_reads_changes_no_record(policy_dir, tmp_path, monkeypatch, envs_per_worker):
    from c2c.envs.metaworld_env import MetaWorldEnv
    from c2c.eval.metaworld_eval import evaluate_metaworld

    drawn = []
    render = MetaWorldEnv.render
    monkeypatch.setattr(MetaWorldEnv, "render", lambda self: drawn.append(self.steps) or render(self))
    kwargs = dict(episodes=3, seed=5, max_steps=23, workers=1, show_progress=False, envs_per_worker=envs_per_worker)
    every = evaluate_metaworld(policy_dir, "reach", out=tmp_path / "every", render_every_step=True, **kwargs)
    assert len(drawn) == 3 * 24  # the reset and 23 steps of 3 episodes
    drawn.clear()
    read = evaluate_metaworld(policy_dir, "reach", out=tmp_path / "read", **kwargs)
    # replan_every 5: a chunk is decoded before steps 0, 5, 10, 15 and 20, and only those observations are drawn.
    assert sorted(drawn) == sorted([0, 5, 10, 15, 20] * 3)
    strip = [{k: v for k, v in r.items() if k != "seconds"} for r in every["tasks"]["reach-v3"]["rollouts"]]
    assert strip == [{k: v for k, v in r.items() if k != "seconds"} for r in read["tasks"]["reach-v3"]["rollouts"]]


def test_a_policy_reads_its_observation_only_when_it_decodes():
    from c2c.policy.policy import PlanExecutePolicy
    from c2c.policy.testing import (
        INSTRUCTIONS, debug_config, random_action_tokenizer, random_observation, torch_threads,
    )

    with torch_threads(1):
        policy = PlanExecutePolicy.build(debug_config("noplan", replan_every=3), random_action_tokenizer("joint"),
                                         instructions=INSTRUCTIONS)
        observation = random_observation(policy.config)
        reads = []
        for _ in range(7):
            reads.append(policy.needs_observation)
            policy.select_action(observation)
    assert reads == [True, False, False, True, False, False, True]
