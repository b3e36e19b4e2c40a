"""Several LIBERO envs per worker, their observations decoded as one batch: the same trials as one at a time
(greedy decoding), and the option's bad values refused before LIBERO is imported."""

from __future__ import annotations

import json

import numpy as np
import pytest

import c2c.envs.libero_env as libero_env
from c2c.envs.libero_env import ACTION_DIM, STATE_DIM
from c2c.errors import ConfigError
from c2c.eval.batch_decoding import stack_observations
from c2c.eval.libero_eval import evaluate_libero


def tiny_policy(cameras=("image", "image2")):
    """A random-weight debug policy (16 px) that fits LIBERO; greedy decoding, a new chunk every 3 steps."""
    from c2c.policy.policy import PlanExecutePolicy
    from c2c.policy.testing import INSTRUCTIONS, debug_config, random_action_tokenizer, torch_threads

    tokenizer = random_action_tokenizer("joint", action_dim=ACTION_DIM, state_dim=STATE_DIM)
    with torch_threads(1):
        return PlanExecutePolicy.build(debug_config("plan", cameras=cameras, state_dim=STATE_DIM,
                                                    action_dim=ACTION_DIM, replan_every=3, plan_reuse=2),
                                       tokenizer, INSTRUCTIONS).eval()


@pytest.fixture
def no_libero_import(monkeypatch):
    def refuse():
        raise AssertionError("LIBERO was imported before the inputs were checked")

    monkeypatch.setattr(libero_env, "import_libero", refuse)


@pytest.mark.parametrize("value", [0, -3])
def test_envs_per_worker_below_one_is_refused(tmp_path, no_libero_import, value):
    with pytest.raises(ConfigError, match=rf"^--envs-per-worker must be 1 or more, got {value}$"):
        evaluate_libero(tiny_policy(), "libero_object", trials=1, out=tmp_path / "o", log=None,
                        envs_per_worker=value)
    assert not (tmp_path / "o").exists()


def test_render_every_step_must_be_a_bool(tmp_path, no_libero_import):
    with pytest.raises(ConfigError, match=r"^render_every_step must be True or False, got 'yes'$"):
        evaluate_libero(tiny_policy(), "libero_object", trials=1, out=tmp_path / "o", log=None,
                        render_every_step="yes")
    assert not (tmp_path / "o").exists()


def test_a_policy_without_batched_decoding_is_refused(tmp_path, no_libero_import):
    """A policy served by `c2c serve` (RemotePolicy) acts one observation at a time: no batch of envs."""
    policy = tiny_policy()

    class OneAtATime:
        config = policy.config

        def select_action(self, observation):
            return policy.select_action(observation)

        def reset(self):
            policy.reset()

    with pytest.raises(ConfigError, match="--envs-per-worker above 1 needs a local policy"):
        evaluate_libero(OneAtATime(), "libero_object", trials=1, out=tmp_path / "o", log=None, envs_per_worker=2)


def test_cli_passes_envs_per_worker():
    import argparse

    from c2c.cli.eval import add_libero_eval_parser

    parser = argparse.ArgumentParser(prog="c2c eval")
    add_libero_eval_parser(parser.add_subparsers(dest="eval_command", required=True))
    base = ["libero", "--policy", "p", "--suite", "libero_goal", "--out", "o"]
    assert parser.parse_args(base).envs_per_worker == 1
    assert parser.parse_args([*base, "--envs-per-worker", "4"]).envs_per_worker == 4


def test_observations_stack_with_instructions_as_a_list():
    batch = stack_observations([{"x": np.zeros(3), "task": "a"}, {"x": np.ones(3), "task": "b"}])
    assert batch["x"].shape == (2, 3) and batch["task"] == ["a", "b"]


@pytest.mark.libero_sim
def test_batched_trials_equal_one_at_a_time(tmp_path, libero_installed):
    """Two tasks x two trials: one at a time in this process, then each task's two trials side by side in a worker
    process (two workers); the same records, and the same video frames of every trial."""
    policy_dir = tmp_path / "policy"
    tiny_policy().save_pretrained(policy_dir)
    kwargs = dict(tasks=[0, 1], trials=2, seed=4, max_steps=7, videos=2, log=None, fast_drawing=True)
    one = evaluate_libero(policy_dir, "libero_object", out=tmp_path / "one", workers=1, **kwargs)
    many = evaluate_libero(policy_dir, "libero_object", out=tmp_path / "many", workers=2, envs_per_worker=2,
                           **kwargs)
    assert one["settings"]["envs_per_worker"] == 1 and "--envs-per-worker" not in one["command"]
    assert many["settings"]["envs_per_worker"] == 2 and "--envs-per-worker 2" in many["command"]
    assert json.loads((tmp_path / "many" / "results.json").read_text())["settings"]["envs_per_worker"] == 2
    timing = ("seconds", "inference_seconds")
    for first, second in zip(one["tasks"], many["tasks"], strict=True):
        assert [{k: v for k, v in r.items() if k not in timing} for r in first["episodes"]] == \
            [{k: v for k, v in r.items() if k not in timing} for r in second["episodes"]]
    import imageio.v2 as imageio

    for task, trial in [(0, 0), (0, 1), (1, 0), (1, 1)]:
        frames = [imageio.mimread(out / "videos" / f"task{task:02d}_trial{trial:02d}.mp4") for out in
                  (tmp_path / "one", tmp_path / "many")]
        assert len(frames[0]) == len(frames[1]) == 8
        moved = np.abs(frames[0][-1].astype(int) - frames[0][0].astype(int)).mean()
        assert moved > 0.1  # the robot moved: the frames say which actions were taken
        assert max(np.abs(a.astype(int) - b.astype(int)).mean() for a, b in zip(*frames)) < 0.5


# ---------------------------------------------------------------------------------------------------------------
# Drawing only the observations that are read.


@pytest.fixture(scope="module")
def object_envs(libero_installed):
    """Three fast-drawing envs of libero_object task 0 at 16 px, 6 policy steps, soft resets (made once)."""
    from c2c.envs.libero_env import LiberoEnv

    envs = [LiberoEnv("libero_object", 0, image_size=16, max_steps=6, fast_drawing=True, hard_reset=False)
            for _ in range(3)]
    for env in envs[1:]:
        env.share_drawing(envs[0])
    yield envs
    for env in reversed(envs):
        env.close()


@pytest.fixture
def drawn(object_envs, monkeypatch):
    """``(env index, env.steps)`` of every observation an env draws."""
    from c2c.envs.libero_env import LiberoEnv

    calls, draw = [], LiberoEnv._draw
    monkeypatch.setattr(LiberoEnv, "_draw", lambda self: calls.append((object_envs.index(self), self.steps))
                        or draw(self))
    return calls


def _trials(run, envs):
    """``run()``'s records without timings and video names, and each env's final state."""
    records = [{k: v for k, v in r.items() if k not in ("seconds", "inference_seconds", "video")} for r in run()]
    return records, [env.observation(images=False)["observation.state"] for env in envs]


def _same(every, read):
    assert every[0] == read[0]
    for a, b in zip(every[1], read[1], strict=True):  # soft resets: equal up to the solver's last bits
        np.testing.assert_allclose(a, b, atol=1e-6)


@pytest.mark.libero_sim
def test_one_at_a_time_draws_only_the_decoded_steps(object_envs, drawn, tmp_path):
    from c2c.eval.libero_batch import run_trial
    from c2c.policy.testing import torch_threads

    env, policy = object_envs[0], tiny_policy()
    with torch_threads(1):
        every = _trials(lambda: [run_trial(env, policy, 1, 4, render_every_step=True)], [env])
        assert drawn == [(0, step) for step in range(7)]  # the reset's observation and all 6 steps
        drawn.clear()
        read = _trials(lambda: [run_trial(env, policy, 1, 4)], [env])
        # replan_every 3: chunks are decoded from the observations at steps 0 and 3; the one after the last step
        # (6) would start a chunk but ends the trial.
        assert drawn == [(0, 0), (0, 3)]
        _same(every, read)
        assert every[0][0]["steps"] == 6

        class Remote:  # a policy that does not say when it reads (e.g. a policy server's client)
            config = policy.config

            def select_action(self, observation):
                return policy.select_action(observation)

            def reset(self):
                policy.reset()

        drawn.clear()
        _same(every, _trials(lambda: [run_trial(env, Remote(), 1, 4)], [env]))
        assert drawn == [(0, step) for step in range(6)]  # every observation a step could be read in
        drawn.clear()
        video = tmp_path / "trial.mp4"
        _same(every, _trials(lambda: [run_trial(env, policy, 1, 4, video)], [env]))
        assert drawn == [(0, step) for step in range(7)] and video.stat().st_size > 0


@pytest.mark.libero_sim
@pytest.mark.parametrize("count", [1, 3])
def test_side_by_side_draws_only_the_decoded_steps(object_envs, drawn, tmp_path, count):
    from c2c.eval.libero_batch import run_batch
    from c2c.policy.testing import torch_threads

    envs, policy, trials = object_envs[:count], tiny_policy(), [0, 1, 2][:count]
    with torch_threads(1):
        every = _trials(lambda: run_batch(envs, policy, trials, 4, [None] * count, render_every_step=True), envs)
        assert sorted(drawn) == sorted((i, step) for i in range(count) for step in range(7))
        drawn.clear()
        read = _trials(lambda: run_batch(envs, policy, trials, 4, [None] * count), envs)
        assert sorted(drawn) == sorted((i, step) for i in range(count) for step in (0, 3))
        _same(every, read)
        assert [r["trial"] for r in read[0]] == trials and all(r["steps"] == 6 for r in read[0])
        if count == 3:  # a trial recorded as video is drawn at every step, the others as before
            drawn.clear()
            paths = [None, tmp_path / "trial1.mp4", None]
            _same(every, _trials(lambda: run_batch(envs, policy, trials, 4, paths), envs))
            assert sorted(drawn) == sorted([(0, 0), (0, 3), (2, 0), (2, 3)] + [(1, step) for step in range(7)])


@pytest.mark.libero_sim
def test_a_step_without_drawing_leaves_the_images_out(object_envs):
    from c2c.constants import OBS_STATE, TASK, image_key

    env = object_envs[0]
    env.reset(0)
    obs, _, _ = env.step(np.zeros(ACTION_DIM), render=False)
    assert set(obs) == {OBS_STATE, TASK}
    drawn = env.observation()  # the same state, drawn when asked
    assert drawn[image_key("image")].shape == (16, 16, 3)
    np.testing.assert_array_equal(drawn[OBS_STATE], obs[OBS_STATE])
