"""Closed-loop Meta-World evaluation (`c2c eval metaworld`) with a random-weight debug policy at 16 px.

Rollouts are marked ``sim`` (MuJoCo through OSMesa); the seed derivation is checked without a simulator. About
30 s on 2 cores, plus about 25 s for the two-worker check (marked ``slow``).
"""

from __future__ import annotations

import importlib.util
import json
import shlex
import shutil
from pathlib import Path

import numpy as np
import pytest

from c2c.envs.metaworld_demos import placement_seed
from c2c.envs.metaworld_tasks import instruction
from c2c.errors import ConfigError
from c2c.eval.metaworld_eval import eval_seed, evaluate_metaworld

TRAINED_TASKS = ["reach-v3", "drawer-close-v3"]
EVAL_TASKS = "reach,pick-place"  # an easy task and a hard one (not trained on): groups and the warning
TRAINING_SEEDS = [11, 12, 13]


def _training_data(seeds: dict[str, list[int]]) -> dict:
    return {"dataset": "data/fake", "c2c": {
        "generator": "metaworld", "tasks": TRAINED_TASKS, "image_size": 16, "cameras": ["corner2", "gripperPOV"],
        "expert": {task: {"seeds_attempted": task_seeds} for task, task_seeds in seeds.items()},
    }}


@pytest.fixture(scope="module")
def policy_dir(tmp_path_factory) -> Path:
    """A saved random-weight debug policy with Meta-World cameras, 16-px images and a training record."""
    if importlib.util.find_spec("metaworld") is None:
        pytest.skip("metaworld is not installed (pip install -e '.[sim]')")
    import c2c.envs.metaworld_env  # noqa: F401 - before mujoco: it picks OSMesa
    from c2c.policy.policy import PlanExecutePolicy
    from c2c.policy.testing import debug_config, random_action_tokenizer, torch_threads

    directory = tmp_path_factory.mktemp("policy")
    with torch_threads(1):
        policy = PlanExecutePolicy.build(debug_config("plan", cameras=("corner2", "gripperPOV")),
                                         random_action_tokenizer("joint"),
                                         instructions=[instruction(task) for task in ("reach", "pick-place")])
    policy.save_pretrained(directory)
    (directory / "training_data.json").write_text(json.dumps(_training_data({"reach-v3": TRAINING_SEEDS})))
    return directory


def _copy(policy_dir: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(policy_dir, tmp_path / "policy"))


def test_eval_seeds_are_stable_and_not_the_demonstrations():
    seeds = [eval_seed(0, "reach-v3", k) for k in range(200)]
    assert seeds == [eval_seed(0, "reach-v3", k) for k in range(200)]
    assert len(set(seeds)) == 200 and all(0 <= seed < 2**31 for seed in seeds)
    assert not set(seeds) & {placement_seed(0, "reach-v3", k) for k in range(200)}
    assert eval_seed(1, "reach-v3", 0) != eval_seed(0, "reach-v3", 0) != eval_seed(0, "push-v3", 0)


@pytest.mark.sim
def test_rollouts_write_results_report_chart_and_videos(policy_dir, tmp_path):
    import imageio.v2 as imageio

    from c2c.cli import build_parser

    out = tmp_path / "eval"
    results = evaluate_metaworld(policy_dir, EVAL_TASKS, episodes=2, seed=3, out=out, max_steps=15, videos=1,
                                 workers=1, show_progress=False)
    assert json.loads((out / "results.json").read_text()) == results
    assert list(results["tasks"]) == ["reach-v3", "pick-place-v3"]
    for task, stats in results["tasks"].items():
        assert stats["episodes"] == 2 and 0 <= stats["successes"] <= 2
        assert stats["success_rate"] == stats["successes"] / 2 and stats["mean_episode_seconds"] > 0
        assert [r["seed"] for r in stats["rollouts"]] == [eval_seed(3, task, k) for k in range(2)]
        assert all(1 <= r["steps"] <= 15 and (r["success"] or r["steps"] == 15) for r in stats["rollouts"])
        assert [r["video"] for r in stats["rollouts"]] == [f"videos/{task}_ep0.mp4", None]
    assert results["tasks"]["reach-v3"]["in_training"] and not results["tasks"]["pick-place-v3"]["in_training"]
    # How far every episode got, and where the failed ones stopped.
    for task, stats in results["tasks"].items():
        progress = [r["progress"] for r in stats["rollouts"]]
        assert all(set(p) == {"hand_to_object_cm", "object_moved_cm", "object_to_goal_cm", "hand_to_goal_cm"}
                   and all(value >= 0 for value in p.values()) for p in progress)
        failed = [r["progress"] for r in stats["rollouts"] if not r["success"]]
        if failed:
            assert stats["failures"]["episodes"] == len(failed)
            assert stats["failures"]["median_hand_to_object_cm"] == pytest.approx(
                float(np.median([p["hand_to_object_cm"] for p in failed])), abs=0.051)
        else:
            assert stats["failures"] is None
    assert results["tasks"]["pick-place-v3"]["group"] == "hard"
    assert set(results["groups"]) == {"easy", "hard"}
    assert results["group_average"] == pytest.approx(
        (results["tasks"]["reach-v3"]["success_rate"] + results["tasks"]["pick-place-v3"]["success_rate"]) / 2)
    assert results["overall"]["episodes"] == 4
    assert any("pick-place-v3 was not among the training tasks" in warning for warning in results["warnings"])
    settings = results["settings"]
    assert settings["replan_every"] == 20 and settings["image_size"] == 16 and settings["training_seeds_checked"] == 3
    assert not settings["allow_unknown_training_seeds"]

    # The recorded command line parses back to the same evaluation.
    words = shlex.split(results["command"])
    assert words[:3] == ["c2c", "eval", "metaworld"]
    args = build_parser().parse_args(words[1:])
    assert (args.policy, args.tasks, args.episodes, args.seed, args.max_steps, args.videos, args.workers, args.out) \
        == (policy_dir, "reach-v3,pick-place-v3", 2, 3, 15, 1, 1, out)

    report = (out / "report.md").read_text()
    assert "| task | group | success rate |" in report and "pick-place-v3 (not trained on)" in report
    assert "| **average** |" in report and results["command"] in report
    if any(stats["failures"] for stats in results["tasks"].values()):
        assert "Where the failed episodes stopped" in report
    assert (out / "success.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(path.name for path in (out / "videos").iterdir()) == ["pick-place-v3_ep0.mp4", "reach-v3_ep0.mp4"]
    steps = results["tasks"]["reach-v3"]["rollouts"][0]["steps"]
    frames = imageio.mimread(out / "videos" / "reach-v3_ep0.mp4")
    assert len(frames) == steps + 1  # every observation, the last one included
    height, width, _ = frames[0].shape
    assert height >= 256 and height % 16 == 0 and width == 3 * 256  # two cameras and the plan panel
    assert np.ptp(frames[0][height - 256 :, :512]) > 0  # the cameras' pictures are there


@pytest.mark.sim
def test_replan_override_and_policy_object(policy_dir, tmp_path):
    from c2c.policy.policy import PlanExecutePolicy

    policy = PlanExecutePolicy.from_pretrained(policy_dir).eval()
    decodes = []
    generate = policy.generate
    policy.generate = lambda *args, **kwargs: decodes.append(1) or generate(*args, **kwargs)
    results = evaluate_metaworld(policy_dir, "reach", episodes=1, seed=0, out=tmp_path / "eval", max_steps=10,
                                 replan_every=4, show_progress=False, policy=policy)
    assert results["settings"]["replan_every"] == 4 and results["settings"]["workers"] == 1
    assert "--replan-every 4" in results["command"] and "groups" not in results  # one group: no group means
    assert len(decodes) == 3  # steps 0, 4 and 8
    assert policy.config.replan_every == 20  # the caller's policy is given back unchanged


@pytest.mark.sim
def test_refuses_evaluation_seeds_used_in_training(policy_dir, tmp_path):
    policy = _copy(policy_dir, tmp_path)
    leaked = eval_seed(0, "reach-v3", 1)
    (policy / "training_data.json").write_text(json.dumps(_training_data({"reach-v3": [*TRAINING_SEEDS, leaked]})))
    with pytest.raises(ConfigError, match=rf"reach-v3 episode 1: evaluation placement seed {leaked} was used"):
        evaluate_metaworld(policy, "reach", episodes=2, seed=0, out=tmp_path / "eval", workers=1)
    assert not (tmp_path / "eval").exists()


@pytest.mark.sim
def test_missing_training_record_needs_the_escape_hatch(policy_dir, tmp_path):
    policy = _copy(policy_dir, tmp_path)
    (policy / "training_data.json").unlink()
    with pytest.raises(ConfigError, match="training_data.json is missing, so the evaluation placements cannot"):
        evaluate_metaworld(policy, "reach", episodes=1, seed=0, out=tmp_path / "eval", workers=1)
    results = evaluate_metaworld(policy, "reach", episodes=1, seed=0, out=tmp_path / "eval", workers=1,
                                 max_steps=3, show_progress=False, allow_unknown_training_seeds=True)
    assert results["settings"]["allow_unknown_training_seeds"] and results["tasks"]["reach-v3"]["in_training"] is None
    assert "--allow-unknown-training-seeds" in results["command"]
    assert any("NOT checked" in warning for warning in results["warnings"])


@pytest.mark.sim
def test_training_placements_are_a_flagged_diagnostic(policy_dir, tmp_path):
    results = evaluate_metaworld(policy_dir, "reach", episodes=2, seed=0, out=tmp_path / "eval", workers=1,
                                 max_steps=3, show_progress=False, training_placements=True)
    assert [r["seed"] for r in results["tasks"]["reach-v3"]["rollouts"]] == TRAINING_SEEDS[:2]
    assert results["settings"]["placements"] == "training (diagnostic)"
    assert results["command"].endswith("--training-placements")
    assert results["warnings"][0].startswith("DIAGNOSTIC")
    assert "not a generalisation result" in (tmp_path / "eval" / "report.md").read_text()
    with pytest.raises(ConfigError, match="has 3 placements of reach-v3, fewer than --episodes 4"):
        evaluate_metaworld(policy_dir, "reach", episodes=4, seed=0, out=tmp_path / "eval2", workers=1,
                           training_placements=True)
    with pytest.raises(ConfigError, match="has 0 placements of pick-place-v3"):
        evaluate_metaworld(policy_dir, "pick-place", episodes=1, seed=0, out=tmp_path / "eval2", workers=1,
                           training_placements=True)


def _edit_config(policy: Path, **changes) -> None:
    path = policy / "config.json"
    raw = json.loads(path.read_text())
    raw["policy"].update(changes)
    path.write_text(json.dumps(raw))


@pytest.mark.sim
@pytest.mark.parametrize("damage, request_changes, message", [
    (lambda p: (p / "config.json").unlink(), {}, "config.json is missing"),
    (lambda p: (p / "model.safetensors").unlink(), {}, "neither ema.safetensors nor model.safetensors"),
    (lambda p: _edit_config(p, action_dim=6), {}, "policy action_dim is 6; Meta-World needs 4"),
    (lambda p: _edit_config(p, state_dim=8), {}, "policy state_dim is 8; Meta-World needs 4"),
    (lambda p: _edit_config(p, cameras=["front", "wrist"]), {}, r"cameras \['front', 'wrist'\] are not Meta-World"),
    (None, {"tasks": "reach,pick-plase"}, "did you mean 'pick-place-v3'"),
    (None, {"replan_every": 30}, r"replan_every \(30\) must be <= exec_horizon \(20\)"),
    (None, {"max_steps": 501}, r"max_steps must be in 1..500"),
])
def test_bad_requests_fail_before_any_rollout(policy_dir, tmp_path, damage, request_changes, message):
    policy = _copy(policy_dir, tmp_path)
    if damage is not None:
        damage(policy)
    request = dict(tasks="reach", episodes=1, seed=0, out=tmp_path / "eval", workers=1) | request_changes
    with pytest.raises(ConfigError, match=message):
        evaluate_metaworld(policy, **request)
    assert not (tmp_path / "eval").exists()


@pytest.mark.sim
def test_cli_prints_a_summary_and_one_line_errors(policy_dir, tmp_path, capsys):
    from c2c.cli import main

    out = tmp_path / "eval"
    assert main(["eval", "metaworld", "--policy", str(policy_dir), "--tasks", "reach", "--episodes", "1",
                 "--seed", "0", "--max-steps", "4", "--workers", "1", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "reach-v3" in printed and "overall" in printed and f"{out}" in printed
    assert main(["eval", "metaworld", "--policy", str(tmp_path / "nowhere"), "--tasks", "reach", "--episodes", "1",
                 "--seed", "0", "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert error.startswith("c2c: error: --policy") and error.count("\n") == 1
    assert main(["eval", "metaworld", "--policy", str(policy_dir), "--tasks", "reach", "--episodes", "1",
                 "--out", str(out)]) == 2
    assert "--seed is required" in capsys.readouterr().err
    assert main(["eval", "metaworld", "--policy", str(policy_dir), "--tasks", "reach", "--episodes", "1",
                 "--max-steps", "2", "--workers", "1", "--training-placements", "--out", str(out)]) == 0


@pytest.mark.sim
@pytest.mark.slow  # about 25 s on 2 busy cores: each spawned worker imports torch, transformers and MuJoCo
def test_two_worker_processes_match_one(policy_dir, tmp_path):
    request = dict(tasks="reach,drawer-close", episodes=1, seed=5, max_steps=6, show_progress=False)
    inline = evaluate_metaworld(policy_dir, out=tmp_path / "one", workers=1, **request)
    parallel = evaluate_metaworld(policy_dir, out=tmp_path / "two", workers=2, **request)
    assert parallel["settings"]["workers"] == 2

    def outcome(results):
        return {task: [(r["seed"], r["success"], r["steps"]) for r in stats["rollouts"]]
                for task, stats in results["tasks"].items()}

    assert outcome(parallel) == outcome(inline)


@pytest.mark.sim
def test_episodes_in_this_process_run_on_one_thread_as_in_a_worker(policy_dir, tmp_path, monkeypatch):
    """CPU sums are split by thread: inline episodes use one thread, as each worker process does, so an evaluation's
    episodes do not depend on its worker count; the caller's thread count comes back afterwards."""
    import torch

    from c2c.eval import metaworld_rollouts

    seen, real = [], metaworld_rollouts.EpisodeRunner.run

    def run(self, job):
        seen.append(torch.get_num_threads())
        return real(self, job)

    monkeypatch.setattr(metaworld_rollouts.EpisodeRunner, "run", run)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        evaluate_metaworld(policy_dir, "reach", episodes=2, seed=0, max_steps=2, out=tmp_path / "eval", workers=1,
                           show_progress=False)
        assert seen == [1, 1] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_episode_progress_measures_the_closest_approach_and_the_object_displacement():
    from c2c.eval.metaworld_eval import EpisodeProgress

    state = np.zeros(39)
    state[0:3], state[4:7], state[36:39] = (0.0, 0.6, 0.2), (0.1, 0.6, 0.02), (0.1, 0.8, 0.02)
    progress = EpisodeProgress(state)
    state[0:3] = (0.1, 0.6, 0.05)  # the hand comes down to 3 cm above the puck
    progress.update(state)
    state[0:3], state[4:7] = (0.1, 0.7, 0.05), (0.1, 0.7, 0.02)  # and pushes it 10 cm towards the goal
    progress.update(state)
    state[0:3] = (0.1, 0.7, 0.3)  # then rises away
    progress.update(state)
    assert progress.result() == {"hand_to_object_cm": 3.0, "object_moved_cm": 10.0, "object_to_goal_cm": 10.0,
                                 "hand_to_goal_cm": 10.4}


@pytest.mark.sim
def test_renders_at_the_training_images_size_and_resizes_as_training_did(policy_dir, tmp_path, monkeypatch):
    """Training resized 24-px dataset frames to the policy's 16 px: evaluation renders at 24 and resizes alike."""
    from c2c.data import streaming
    from c2c.policy.policy import PlanExecutePolicy

    directory = _copy(policy_dir, tmp_path)
    record = _training_data({"reach-v3": TRAINING_SEEDS})
    record["c2c"]["image_size"] = 24
    (directory / "training_data.json").write_text(json.dumps(record))
    resized, seen = [], []
    real_resize, real_select = streaming.resize_frame, PlanExecutePolicy.select_action

    def counting_resize(frame, size):
        resized.append((frame.shape, size))
        return real_resize(frame, size)

    def recording_select(self, observation):
        if self.needs_observation:  # the steps between decodes are not drawn (nobody reads them)
            seen.append(observation["observation.images.corner2"].shape)
        return real_select(self, observation)

    monkeypatch.setattr(streaming, "resize_frame", counting_resize)
    monkeypatch.setattr(PlanExecutePolicy, "select_action", recording_select)
    results = evaluate_metaworld(directory, "reach", episodes=1, seed=3, out=tmp_path / "eval", max_steps=3,
                                 videos=0, workers=1, show_progress=False)
    assert results["settings"]["render_size"] == 24 and results["settings"]["image_size"] == 16
    assert resized and all(shape == (24, 24, 3) and size == 16 for shape, size in resized)
    assert seen and all(shape == (16, 16, 3) for shape in seen)
    assert any("renders at 24 px and resizes the same way" in warning for warning in results["warnings"])


@pytest.mark.sim
def test_videos_draw_the_plan_the_policy_generated_without_decoding_again(policy_dir, tmp_path, monkeypatch):
    from c2c.eval import plotting
    from c2c.policy.policy import PlanExecutePolicy

    generated, drawn = [], []
    real_generate, real_add = PlanExecutePolicy.generate, plotting.EpisodeVideo.add

    def recording_generate(self, observation, **kwargs):
        chunk, batched = real_generate(self, observation, **kwargs)
        generated.append(self.decode_plan(chunk)[0])
        return chunk, batched

    def recording_add(self, images, plan, caption):
        drawn.append(plan)
        return real_add(self, images, plan, caption)

    monkeypatch.setattr(PlanExecutePolicy, "generate", recording_generate)
    monkeypatch.setattr(plotting.EpisodeVideo, "add", recording_add)
    kwargs = dict(episodes=1, seed=3, max_steps=25, workers=1, show_progress=False)
    evaluate_metaworld(policy_dir, "reach", out=tmp_path / "plain", videos=0, **kwargs)
    without_video = len(generated)
    generated.clear()
    evaluate_metaworld(policy_dir, "reach", out=tmp_path / "video", videos=1, **kwargs)
    assert len(generated) == without_video == 2  # 25 steps, a chunk every 20: no extra decode for the video
    assert len(drawn) == 26 and all(plan is not None for plan in drawn)  # 25 steps and the final frame
    for frame in (0, 19):  # steps 0-19 show the first chunk's plan, the rest the second's
        np.testing.assert_array_equal(drawn[frame], generated[0])
    for frame in (20, 25):
        np.testing.assert_array_equal(drawn[frame], generated[1])
