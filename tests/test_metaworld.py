"""Meta-World: task names, the env wrapper's conventions, and demo generation with resume.

The name tests need no simulator; the others are marked ``sim`` (MuJoCo through OSMesa). About 30 s on 2 cores.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from c2c.envs.metaworld_tasks import (
    DIFFICULTY_GROUPS, INSTRUCTIONS, MT10, MT50, difficulty_group, instruction, resolve_tasks,
)
from c2c.errors import ConfigError

TASKS = ["reach-v3", "drawer-close-v3"]  # two short episodes (about 60 and 90 steps)
IMAGE_SIZE = 32


# ---------------------------------------------------------------------------------------------------------------
# Names (no simulator).


def test_groups_partition_mt50() -> None:
    assert {group: len(tasks) for group, tasks in DIFFICULTY_GROUPS.items()} == {
        "easy": 28, "medium": 11, "hard": 6, "very_hard": 5,
    }
    assert sorted(task for tasks in DIFFICULTY_GROUPS.values() for task in tasks) == sorted(MT50)
    assert len(MT50) == 50 and set(MT10) <= set(MT50)
    assert all(INSTRUCTIONS[task] for task in MT50)
    assert len(set(INSTRUCTIONS.values())) == 50  # every task has its own instruction


def test_resolve_tasks() -> None:
    assert resolve_tasks("mt10") == list(MT10)
    assert resolve_tasks("reach,pick-place-v3,reach-v3") == ["reach-v3", "pick-place-v3"]
    assert resolve_tasks(["very-hard"]) == list(DIFFICULTY_GROUPS["very_hard"])
    assert resolve_tasks("hard,push") == list(DIFFICULTY_GROUPS["hard"])  # push is in hard: no repeat
    assert len(resolve_tasks("easy,medium,hard,very_hard")) == 50
    with pytest.raises(ConfigError, match=r"'pick-plase'.*did you mean 'pick-place-v3'"):
        resolve_tasks("reach,pick-plase")
    with pytest.raises(ConfigError, match="did you mean 'mt10'"):
        resolve_tasks("mt11")
    with pytest.raises(ConfigError, match="no Meta-World tasks"):
        resolve_tasks(" , ")


def test_instruction_and_difficulty() -> None:
    assert instruction("pick-place") == "pick up the puck and place it at the goal"
    assert difficulty_group("pick-place-v3") == "hard"
    assert difficulty_group("reach") == "easy"
    with pytest.raises(ConfigError, match="did you mean"):
        instruction("door-opn-v3")


# ---------------------------------------------------------------------------------------------------------------
# The simulator.


@pytest.mark.sim
def test_lists_match_metaworld(metaworld_env_module) -> None:
    import metaworld.env_dict
    from metaworld.policies import ENV_POLICY_MAP

    assert MT10 == tuple(metaworld.env_dict.MT10_V3)
    assert MT50 == tuple(metaworld.env_dict.MT50_V3)
    assert set(ENV_POLICY_MAP) >= set(MT50)


@pytest.mark.sim
def test_same_seed_same_placement(metaworld_env_module) -> None:
    MetaWorldEnv = metaworld_env_module.MetaWorldEnv
    first, second = MetaWorldEnv("pick-place-v3", cameras=()), MetaWorldEnv("pick-place-v3", cameras=())
    first.reset(seed=5)
    placement, state = first.placement, first.raw_state
    first.reset(seed=6)
    assert not np.allclose(first.placement, placement)
    for _ in range(3):  # a history of other episodes does not change a placement's episode
        first.step(first.expert_action())
    first.reset(seed=5)
    second.reset(seed=5)
    np.testing.assert_array_equal(first.placement, placement)
    np.testing.assert_array_equal(second.raw_state, state)
    np.testing.assert_array_equal(first.raw_state, state)
    obs = first.observation()
    assert obs["observation.state"].dtype == np.float32 and obs["observation.state"].shape == (4,)
    np.testing.assert_array_equal(obs["observation.state"], state[:4].astype(np.float32))
    assert obs["task"] == instruction("pick-place-v3")


@pytest.mark.sim
def test_step_limit(metaworld_env_module) -> None:
    env = metaworld_env_module.MetaWorldEnv("reach-v3", cameras=(), max_steps=3)
    env.reset(seed=0)
    dones = [env.step(np.zeros(4))[2] for _ in range(3)]
    assert dones == [False, False, True]
    with pytest.raises(RuntimeError, match="reset"):
        env.step(np.zeros(4))
    env.reset(seed=0)
    assert env.steps == 0


@pytest.mark.sim
def test_images_are_upright(metaworld_env_module) -> None:
    """corner2 is mounted upside down: the table (brown) must be in the lower half, the robot (red) on the left."""
    env = metaworld_env_module.MetaWorldEnv("reach-v3", cameras=("corner2", "gripperPOV"), image_size=64,
                                            fast_drawing=False)
    obs = env.reset(seed=3)
    corner = obs["observation.images.corner2"].astype(int)
    assert corner.shape == (64, 64, 3)
    red, green, blue = corner[..., 0], corner[..., 1], corner[..., 2]
    table = (red - blue > 25) & (red < 200) & (green > 40)
    assert table[32:].sum() > 5 * table[:32].sum()
    robot_columns = np.nonzero((red > 100) & (green < 50) & (blue < 50))[1]
    assert robot_columns.mean() < 0.4 * 64  # not mirrored: the robot stands at the left
    env.close()


@pytest.mark.sim
def test_images_match_mujoco_renderer(metaworld_env_module) -> None:
    """Same pixels as mujoco.Renderer with the same settings, turned 180 degrees for corner2 only."""
    import mujoco

    if mujoco.gl_context.GLContext.__module__ == "mujoco.glfw" and not os.environ.get("DISPLAY"):
        pytest.skip("mujoco was imported with the GLFW backend and there is no display")
    env = metaworld_env_module.MetaWorldEnv("reach-v3", cameras=("corner2", "gripperPOV"), image_size=64,
                                            fast_drawing=False)
    obs = env.reset(seed=3)
    metaworld_env_module.close_renderer()  # one live renderer per process
    model, data = env._env.model, env._env.data
    with mujoco.Renderer(model, 64, 64) as renderer:
        renderer.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = False
        renderer.scene.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = False
        option = mujoco.MjvOption()
        option.geomgroup[metaworld_env_module.CULL_GROUP] = 1
        renderer.update_scene(data, camera="corner2", scene_option=option)
        np.testing.assert_array_equal(obs["observation.images.corner2"], renderer.render()[::-1, ::-1])
        renderer.update_scene(data, camera="gripperPOV", scene_option=option)
        np.testing.assert_array_equal(obs["observation.images.gripperPOV"], renderer.render())
    env.close()


@pytest.mark.sim
def test_fast_drawing_keeps_gripper_view(metaworld_env_module) -> None:
    """Simplified meshes and the arm left out of gripperPOV: the same gripper images."""
    MetaWorldEnv = metaworld_env_module.MetaWorldEnv
    frames = {}
    for fast in (False, True):
        env = MetaWorldEnv("pick-place-v3", cameras=("gripperPOV",), image_size=48, fast_drawing=fast)
        obs, images = env.reset(seed=1), []
        for _ in range(12):
            images.append(obs["observation.images.gripperPOV"])
            obs, _, _ = env.step(env.expert_action())
        frames[fast] = np.stack(images)
        env.close()
    np.testing.assert_array_equal(frames[True], frames[False])


@pytest.mark.sim
def test_fast_drawing_keeps_physics(metaworld_env_module) -> None:
    """On this door-open placement the hand's mesh touches the door (through its convex hull, built on the mesh
    vertices); moving vertices while simplifying once changed this rollout. The states must stay bit-identical."""
    from c2c.envs.demos.metaworld_rollouts import run_expert

    MetaWorldEnv = metaworld_env_module.MetaWorldEnv
    seed = 828710810  # placement_seed(0, "door-open-v3", 0)
    plain = run_expert(MetaWorldEnv("door-open-v3", cameras=()), seed=seed)[-1]
    with MetaWorldEnv("door-open-v3", cameras=("corner2",), image_size=32, fast_drawing=True) as env:
        fast = run_expert(env, seed=seed)[-1]
    assert plain.success and plain == fast  # same length and same digest of every state


# ---------------------------------------------------------------------------------------------------------------
# Demo generation.


def _generate(out: Path, episodes: int, **overrides):
    from c2c.envs.metaworld_demos import generate_metaworld_demos

    arguments = dict(
        tasks=",".join(TASKS), episodes_per_task=episodes, image_size=IMAGE_SIZE, cameras="corner2,gripperPOV",
        seed=7, out=out, show_progress=False, workers=1,
    )
    arguments.update(overrides)
    return generate_metaworld_demos(**arguments)


@pytest.fixture(scope="module")
def resumed_dataset(tmp_path_factory, metaworld_env_module):
    """One episode per task, then a rerun asking for two (in two render processes) that reuses the first."""
    out = tmp_path_factory.mktemp("metaworld") / "demos"
    first = _generate(out, episodes=1)
    cache = out.parent / f".{out.name}.work"
    cached = sorted(cache.glob("*/episode-*.npz"))
    stamps = {path: path.stat().st_mtime_ns for path in cached}
    second = _generate(out, episodes=2, overwrite=True, workers=2)
    return out, first, second, cached, stamps


@pytest.mark.sim
def test_resume_reuses_recorded_episodes(resumed_dataset) -> None:
    out, first, second, cached, stamps = resumed_dataset
    assert len(cached) == 2 and first.frames_recorded == first.total_frames
    assert {path: path.stat().st_mtime_ns for path in cached} == stamps  # not written again
    assert second.frames_recorded == second.total_frames - first.total_frames
    assert len(sorted(cached[0].parent.parent.glob("*/episode-*.npz"))) == 4
    text = second.summary()
    assert all(task in text for task in TASKS) and "frames/s" in text and "per 1000 frames" in text


@pytest.mark.sim
def test_dataset_contents(resumed_dataset, metaworld_env_module) -> None:
    from c2c.data.lerobot import LeRobotDataset

    out, _, second, _, _ = resumed_dataset
    dataset = LeRobotDataset(out)
    assert dataset.num_episodes == 4 and dataset.fps == 80
    assert dataset.tasks == [instruction(task) for task in TASKS]
    assert dataset.info["robot_type"] == "sawyer"
    assert dataset.features["observation.state"]["names"] == ["x", "y", "z", "gripper"]
    assert dataset.features["action"]["names"] == ["dx", "dy", "dz", "gripper"]
    extra = dataset.extra_info
    assert extra["generator"] == "metaworld" and extra["tasks"] == TASKS and extra["seed"] == 7
    assert extra["image_size"] == IMAGE_SIZE and extra["cameras"] == ["corner2", "gripperPOV"]
    assert extra["max_steps"] == 500
    for task in TASKS:
        stats = extra["expert"][task]
        assert stats["successes"] == 2 and stats["attempts"] >= 2
        assert len(stats["seeds_attempted"]) == stats["attempts"] and stats["success_rate"] > 0

    replay_env = {task: metaworld_env_module.MetaWorldEnv(task, cameras=()) for task in TASKS}
    for index in range(dataset.num_episodes):
        episode = dataset.episode(index)
        task = episode.metadata["env"]
        assert episode.task == instruction(task) and task == TASKS[index // 2]
        assert episode.metadata["seed"] in extra["expert"][task]["seeds_attempted"]
        assert episode.actions.shape[1] == 4 and episode.states.shape[1] == 4
        for camera in ("corner2", "gripperPOV"):
            assert episode.images[camera].shape == (episode.length, IMAGE_SIZE, IMAGE_SIZE, 3)
        # The recorded actions succeed from the recorded placement, and the states are the ones recorded.
        env = replay_env[task]
        env.reset(seed=episode.metadata["seed"])
        successes, states = [], []
        for action in episode.actions:
            states.append(env.state)
            successes.append(env.step(action)[1])
        assert any(successes)
        np.testing.assert_array_equal(np.stack(states), episode.states)


@pytest.mark.sim
def test_rerun_and_settings_mismatch(resumed_dataset) -> None:
    import shutil

    out, _, second, _, _ = resumed_dataset
    again = _generate(out, episodes=2)  # the same command: nothing to do
    assert again.already_complete and again.total_frames == second.total_frames
    with pytest.raises(ConfigError, match="--overwrite"):
        _generate(out, episodes=3)  # a complete dataset with other settings
    moved = out.with_name("moved")
    shutil.move(out, moved)  # the cache stays; its settings differ from this request
    try:
        with pytest.raises(ConfigError, match="other settings.*image_size: 32 -> 48.*--overwrite"):
            _generate(out, episodes=2, image_size=48)
    finally:
        shutil.move(moved, out)


@pytest.mark.sim
def test_bad_camera_is_named(metaworld_env_module) -> None:
    with pytest.raises(ConfigError, match="did you mean 'corner2'"):
        metaworld_env_module.MetaWorldEnv("reach-v3", cameras=("coner2",))


@pytest.mark.sim
def test_placement_seeds_are_stable(metaworld_env_module) -> None:
    from c2c.envs.demos.metaworld_rollouts import placement_seed

    seeds = {placement_seed(0, task, attempt) for task in TASKS for attempt in range(100)}
    assert len(seeds) == 200 and all(0 <= seed < 2**31 for seed in seeds)
    assert placement_seed(0, "reach-v3", 3) == placement_seed(0, "reach-v3", 3) != placement_seed(1, "reach-v3", 3)


@pytest.mark.sim
def test_noise_injection_records_the_experts_labels(tmp_path, metaworld_env_module) -> None:
    """With --action-noise the env executes perturbed actions while the dataset records the expert's own action
    for each recorded state; the rollout repeats for the same placement, and the setting is part of the cache key."""
    from c2c.data.lerobot import LeRobotDataset
    from c2c.envs.demos.metaworld_rollouts import placement_seed, run_expert

    MetaWorldEnv = metaworld_env_module.MetaWorldEnv
    seed = placement_seed(7, "reach-v3", 0)
    env = MetaWorldEnv("reach-v3", cameras=())
    labels, executed, outcome = run_expert(env, seed, action_noise=0.3)
    again = run_expert(env, seed, action_noise=0.3)
    clean_labels, clean_executed, clean = run_expert(env, seed)
    assert outcome == again[2] and np.array_equal(labels, again[0])  # the noise is seeded by the placement
    np.testing.assert_array_equal(clean_labels, clean_executed)
    assert outcome.digest != clean.digest and not np.array_equal(labels, executed)
    np.testing.assert_array_equal(labels[:, 3], executed[:, 3])  # the gripper is never perturbed
    assert np.abs(executed).max() <= 1.0

    out = tmp_path / "noisy"
    report = _generate(out, episodes=1, tasks="reach-v3", action_noise=0.3)
    dataset = LeRobotDataset(out)
    assert dataset.extra_info["action_noise"] == 0.3
    episode = dataset.episode(0)
    assert episode.metadata["seed"] == seed and episode.length == outcome.length == report.total_frames
    np.testing.assert_array_equal(episode.actions, labels)
    # Each recorded action is the expert's action for the recorded state: re-executing the rollout's own
    # (perturbed) actions reproduces the states, and the expert asked at each of them gives the label.
    env.reset(seed=seed)
    for t, action in enumerate(executed):
        np.testing.assert_array_equal(env.state, episode.states[t])
        np.testing.assert_allclose(env.expert_action(), episode.actions[t], atol=1e-6)
        env.step(action)
    with pytest.raises(ConfigError, match="action_noise: 0.3 -> None|--overwrite"):
        _generate(out, episodes=1, tasks="reach-v3")
    with pytest.raises(ConfigError, match="action_noise must lie in"):
        _generate(tmp_path / "bad", episodes=1, tasks="reach-v3", action_noise=1.5)
