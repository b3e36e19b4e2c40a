"""The scripted LIBERO expert, random resets and the demonstration generator.

The tests marked ``libero_sim`` need LIBERO (`make setup-libero`). Without it they are skipped, unless
``C2C_REQUIRE_LIBERO=1`` (as CI sets), which turns the skip into a failure. On 2 CPU cores they take about a minute
together (making an env costs 4-8 s, an expert episode without cameras 2-5 s, rendering a step about 0.3 s).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from c2c.cli import main
from c2c.envs.demos.cache import Attempt
from c2c.envs.demos.libero_search import TaskSearch
from c2c.envs.libero_demos import (
    check_expert_tasks, check_placements, generate_libero_demos, parse_task_ids, placement_seed,
)
from c2c.envs.libero_experts import parse_goal
from c2c.envs.libero_geometry import (
    axis_rotation, finger_axis, horizontal_rotation, matrix_to_axis_angle, quat_to_matrix, rot_z,
)
from c2c.errors import ConfigError


# ---------------------------------------------------------------------------------------------------------------
# No simulator.


def _attempt(index: int, success: bool) -> Attempt:
    return Attempt(index, 1000 + index, success, 50 if success else 80, f"digest{index}")


def test_task_search_hands_out_chunks_and_keeps_the_first_successes_in_attempt_order():
    """The parallel search's bookkeeping: cached outcomes are taken, attempts in flight count as successes, and the
    kept attempts are those a one-process search would keep, whatever order the workers finish in."""
    cached = {0: _attempt(0, True), 1: _attempt(1, False), 2: _attempt(2, True)}
    search = TaskSearch(7, "task", episodes=3, max_attempts=6, cached=dict(cached), recorded={0})
    assert search.take(2) == (2, 3)  # 0 and 1 come from the cache; 2 lost its episode file and is redone
    assert search.missing() == 0 and search.take(2) == ()  # 1 found + 2 in flight cover the 3 wanted
    assert search.finish(_attempt(3, False))  # a new outcome: the attempts file must be saved
    assert search.missing() == 1 and search.take(5) == (4,)
    assert not search.finish(_attempt(2, True))  # the same outcome as cached: nothing to save
    search.finish(_attempt(4, True))
    assert [attempt.attempt for attempt in search.kept_attempts()] == [0, 1, 2, 3, 4]
    assert search.missing() == 0 and search.in_flight == 0

    # Workers finish out of order: a failure in flight is made up by a new attempt, the order stays the index's.
    search = TaskSearch(0, "task", episodes=2, max_attempts=10, cached={}, recorded=set())
    assert search.take(2) == (0, 1) and search.take(2) == ()
    search.finish(_attempt(1, True))
    assert search.take(2) == ()  # attempt 0, in flight, counts as a success until it fails
    search.finish(_attempt(0, False))
    assert search.take(2) == (2,)
    search.finish(_attempt(2, True))
    assert [attempt.attempt for attempt in search.kept_attempts()] == [0, 1, 2]

    # The attempt budget bounds the search: fewer successes are kept than wanted.
    search = TaskSearch(0, "task", episodes=3, max_attempts=2, cached={}, recorded=set())
    assert search.take(5) == (0, 1) and search.take(5) == ()
    search.finish(_attempt(0, False))
    assert search.take(5) == ()
    search.finish(_attempt(1, True))
    assert [attempt.success for attempt in search.kept_attempts()] == [False, True]


def test_official_init_states_are_refused(tmp_path):
    for placements in ("official", "init_states"):
        with pytest.raises(ConfigError, match="official init states"):
            check_placements(placements)
        with pytest.raises(ConfigError, match="official init states"):
            generate_libero_demos(suite="libero_object", tasks="0", episodes_per_task=1, out=tmp_path / "d",
                                  placements=placements, show_progress=False)
    assert main(["data", "libero", "--suite", "libero_object", "--tasks", "0", "--episodes", "1",
                 "--placements", "official", "--out", str(tmp_path / "d")]) != 0
    assert not (tmp_path / "d").exists()
    with pytest.raises(ConfigError, match="unknown placements"):
        check_placements("anywhere")


def test_request_checks_and_seeds():
    assert parse_task_ids("all") == list(range(10)) and parse_task_ids("3,1,3") == [1, 3]
    with pytest.raises(ConfigError, match="unknown task ids"):
        parse_task_ids("10")
    with pytest.raises(ConfigError, match="comma list"):
        parse_task_ids("one")
    seeds = {placement_seed(0, "libero_object", "t", attempt) for attempt in range(100)}
    assert len(seeds) == 100 and all(0 <= seed < 2**31 for seed in seeds)
    assert placement_seed(0, "libero_object", "t", 0) == placement_seed(0, "libero_object", "t", 0)
    assert placement_seed(1, "libero_object", "t", 0) != placement_seed(0, "libero_object", "t", 0)
    with pytest.raises(ConfigError, match="unknown LIBERO suite"):
        generate_libero_demos(suite="libero_90", tasks="0", episodes_per_task=1, out="unused", show_progress=False)
    microwave = "KITCHEN_SCENE6_put_the_yellow_and_white_mug_in_the_microwave_and_close_it"
    with pytest.raises(ConfigError, match=f"task 9 '{microwave}'"):
        check_expert_tasks("libero_10", {0: "other", 9: microwave}, [0, 9])
    check_expert_tasks("libero_10", {0: "other", 9: microwave}, [0])
    check_expert_tasks("libero_goal", {0: "open_the_middle_drawer_of_the_cabinet"}, [0])


def test_goal_parsing_and_rotations():
    assert parse_goal([["In", "alphabet_soup_1", "basket_1_contain_region"]]).predicate == "in"
    assert parse_goal([["on", "akita_black_bowl_1", "plate_1"]]).target == "plate_1"
    with pytest.raises(ConfigError, match="one In/On goal"):
        parse_goal([["open", "wooden_cabinet_1_top_region"]])
    with pytest.raises(ConfigError, match="one In/On goal"):
        parse_goal([["on", "a", "b"], ["in", "c", "d"]])
    np.testing.assert_allclose(finger_axis(0.0), [0.0, 1.0], atol=1e-12)
    np.testing.assert_allclose(matrix_to_axis_angle(rot_z(0.4)), [0, 0, 0.4], atol=1e-9)
    np.testing.assert_allclose(matrix_to_axis_angle(quat_to_matrix([1, 0, 0, 0])), [math.pi, 0, 0], atol=1e-9)
    axis = np.array([1.0, -2.0, 2.0]) / 3.0
    quat = np.concatenate([axis * math.sin(1.1), [math.cos(1.1)]])
    np.testing.assert_allclose(matrix_to_axis_angle(quat_to_matrix(quat)), axis * 2.2, atol=1e-9)
    # A horizontal gripper pointing along +y, fingers closing along z: a proper rotation.
    rotation = horizontal_rotation(np.array([0.0, 2.0, 0.0]))
    np.testing.assert_allclose(rotation @ rotation.T, np.eye(3), atol=1e-12)
    np.testing.assert_allclose(rotation[:, 2], [0, 1, 0])
    np.testing.assert_allclose(rotation[:, 1], [0, 0, 1])
    assert np.linalg.det(rotation) == pytest.approx(1.0)
    np.testing.assert_allclose(axis_rotation(np.array([0.0, 0.0, 1.0]), 0.4), rot_z(0.4), atol=1e-12)


# ---------------------------------------------------------------------------------------------------------------
# The simulator.


@pytest.mark.libero_sim
def test_expert_solves_a_spatial_task_from_a_random_reset(libero_installed):
    """libero_spatial task 0 (bowl between plate and ramekin -> plate), state only, from a seeded random reset."""
    from c2c.envs.libero_demos import run_expert, sim_state
    from c2c.envs.libero_env import LiberoEnv

    with LiberoEnv("libero_spatial", 0, cameras=()) as env:
        first = env.reset_random(5)
        placed = sim_state(env).copy()
        assert set(first) == {"observation.state", "task"} and first["observation.state"].shape == (8,)
        env.reset_random(6)
        assert not np.array_equal(sim_state(env), placed)  # another seed, another placement
        rollout = run_expert(env, 5)  # resets under seed 5 again
        outcome, actions = rollout.outcome, rollout.actions
        assert outcome.success and env.check_success(), f"the expert failed after {outcome.length} steps"
        assert actions.shape == (outcome.length, 7) and actions.dtype == np.float32
        assert rollout.states.shape == (outcome.length, 8) and len(rollout.sim_states) == outcome.length + 1
        assert np.abs(actions).max() <= 1.0 and outcome.length < env.max_steps
        np.testing.assert_array_equal(rollout.sim_states[0], placed)
        env.reset_random(5)
        np.testing.assert_array_equal(sim_state(env), placed)  # a seed always gives the same placement


@pytest.mark.libero_sim
def test_generated_dataset_from_a_libero_object_task(tmp_path, libero_installed):
    """One libero_object episode: the expert succeeds on its first random reset; its states rendered with cameras."""
    from c2c.data.lerobot import LeRobotDataset

    out = tmp_path / "demos"
    report = generate_libero_demos(suite="libero_object", tasks="2", episodes_per_task=1, max_attempts_factor=1,
                                   image_size=32, seed=0, out=out, workers=1, show_progress=False)
    name = "pick_up_the_salad_dressing_and_place_it_in_the_basket"
    assert [task.task for task in report.tasks] == [name] and report.tasks[0].successes == 1
    dataset = LeRobotDataset(out)
    assert dataset.num_episodes == 1 and dataset.fps == 20
    info = json.loads((out / "meta" / "info.json").read_text())
    for key, shape in (("observation.state", [8]), ("action", [7]), ("observation.images.image", [32, 32, 3]),
                       ("observation.images.image2", [32, 32, 3])):
        assert info["features"][key]["shape"] == shape, key
    extra = info["c2c"]
    assert extra["generator"] == "libero" and extra["suite"] == "libero_object" and extra["placements"] == "random"
    assert extra["fast_drawing"] is True  # our renderer on simplified meshes, the default
    stats = extra["expert"][name]
    assert stats["attempts"] == 1 and stats["successes"] == 1 and stats["success_rate"] == 1.0
    assert stats["seeds_attempted"] == [placement_seed(0, "libero_object", name, 0)] and stats["episodes"] == 1
    episode = dataset.episode(0)
    assert episode.task == "pick up the salad dressing and place it in the basket"
    assert episode.actions.shape == (stats["frames"], 7) and episode.states.shape == (stats["frames"], 8)
    assert set(episode.images) == {"image", "image2"}
    assert episode.images["image"].shape == (stats["frames"], 32, 32, 3)
    # The recorded state starts where a fresh reset under the seed does (gripper open, hand above the table).
    assert episode.states[0, 6] > 0.03 and episode.states[0, 7] < -0.03
    # Rerunning the same request finds the complete dataset and does nothing.
    again = generate_libero_demos(suite="libero_object", tasks="2", episodes_per_task=1, max_attempts_factor=1,
                                  image_size=32, seed=0, out=out, workers=1, show_progress=False)
    assert again.already_complete


@pytest.mark.libero_sim
def test_two_workers_draw_during_the_search_and_match_the_camera_less_rollout(tmp_path, libero_installed):
    """Fast drawing: tasks in two worker processes, frames drawn during the search itself; the kept episode is the
    camera-less expert's rollout step for step, and a rerun after losing the dataset resumes from the work dir."""
    from c2c.data.lerobot import LeRobotDataset
    from c2c.envs.libero_demos import run_expert
    from c2c.envs.libero_env import LiberoEnv

    out = tmp_path / "demos"
    kwargs = dict(suite="libero_object", tasks="2,3", episodes_per_task=1, max_attempts_factor=1, image_size=24,
                  seed=0, out=out, workers=2, show_progress=False)
    report = generate_libero_demos(**kwargs)
    assert [task.successes for task in report.tasks] == [1, 1] and report.frames_recorded == sum(
        task.frames for task in report.tasks)
    dataset = LeRobotDataset(out)
    assert [dataset.episode(i).metadata["task_id"] for i in range(2)] == [2, 3]  # task order, not finishing order
    episode = dataset.episode(0)
    assert episode.images["image"].shape == (len(episode.actions), 24, 24, 3)
    assert episode.images["image"].std() > 10 and episode.images["image2"].std() > 10  # real pictures
    name = report.tasks[0].task
    with LiberoEnv("libero_object", 2, cameras=()) as env:
        rollout = run_expert(env, placement_seed(0, "libero_object", name, 0))
    np.testing.assert_array_equal(episode.actions, rollout.actions)
    np.testing.assert_array_equal(episode.states, rollout.states)
    assert json.loads((out / "meta" / "info.json").read_text())["c2c"]["expert"][name]["frames"] == len(rollout.actions)
    # The work directory keeps every attempt and episode: regenerating the lost dataset redoes no rollout.
    import shutil

    shutil.rmtree(out)
    again = generate_libero_demos(**kwargs)
    assert again.frames_recorded == 0 and LeRobotDataset(out).num_episodes == 2


@pytest.mark.slow  # 30-80 s; the order is TaskSearch's (tested without a simulator), two workers the test above's
@pytest.mark.libero_sim
def test_two_workers_share_one_task_and_keep_its_attempt_order(tmp_path, libero_installed):
    """Chunks of one task's attempts run in both workers at once; the dataset keeps them in attempt order, each the
    expert's own rollout under its seed (soft resets in other env histories agree to about 1e-14)."""
    from c2c.data.lerobot import LeRobotDataset
    from c2c.envs.libero_demos import run_expert
    from c2c.envs.libero_env import LiberoEnv

    out = tmp_path / "demos"
    report = generate_libero_demos(suite="libero_object", tasks="2", episodes_per_task=2, max_attempts_factor=1,
                                   image_size=16, seed=3, out=out, workers=2, show_progress=False)
    task = report.tasks[0]
    assert task.attempts == 2 and task.successes == 2
    dataset = LeRobotDataset(out)
    assert [dataset.episode(i).metadata["seed"] for i in range(2)] == task.seeds_attempted
    with LiberoEnv("libero_object", 2, cameras=()) as env:
        for i, seed in enumerate(task.seeds_attempted):
            rollout = run_expert(env, seed)
            np.testing.assert_allclose(dataset.episode(i).actions, rollout.actions, atol=1e-6)


@pytest.mark.libero_sim
def test_skill_expert_opens_a_drawer_from_a_random_reset(libero_installed):
    """libero_goal task 0 (open the middle drawer): handle grasped with a horizontal gripper and pulled open."""
    from c2c.envs.libero_demos import run_expert
    from c2c.envs.libero_env import LiberoEnv
    from c2c.envs.libero_scene import Step, plan_skills
    from c2c.envs.libero_skills import SkillExpert, make_expert, supported_goal

    with LiberoEnv("libero_goal", 0, cameras=()) as env:
        seed = placement_seed(0, "libero_goal", env.task_name, 0)
        env.reset_random(seed)
        assert supported_goal(env)
        assert plan_skills(env.libero_env.env) == [Step("open", "wooden_cabinet_1_middle_region")]
        assert isinstance(make_expert(env, seed), SkillExpert)
        assert not env.check_success()
        rollout = run_expert(env, seed)
        assert rollout.outcome.success and env.check_success(), f"failed after {rollout.outcome.length} steps"
        assert rollout.outcome.length < env.max_steps and np.abs(rollout.actions).max() <= 1.0


@pytest.mark.libero_sim
def test_skill_expert_runs_two_placements_of_a_libero_10_task(libero_installed):
    """libero_10 task 0 (alphabet soup and tomato sauce into the basket): two placements in a row."""
    from c2c.envs.libero_demos import run_expert
    from c2c.envs.libero_env import LiberoEnv
    from c2c.envs.libero_scene import plan_skills

    with LiberoEnv("libero_10", 0, cameras=()) as env:
        seed = placement_seed(0, "libero_10", env.task_name, 0)
        env.reset_random(seed)
        steps = plan_skills(env.libero_env.env)
        assert [(step.kind, step.obj, step.slot, step.slots) for step in steps] == [
            ("place", "alphabet_soup_1", 0, 2), ("place", "tomato_sauce_1", 1, 2)]
        rollout = run_expert(env, seed)
        assert rollout.outcome.success and env.check_success(), f"failed after {rollout.outcome.length} steps"
