"""`c2c analyze` and `c2c ablate`: the metrics on hand-made inputs, then every command on miniature runs."""

import json

import numpy as np
import pytest
from conftest import make_smooth_episodes, write_two_camera_dataset_and_tokenizer

from c2c.analysis.plan import plan_paths
from c2c.cli import main
from c2c.data.windows import WindowSpec
from c2c.errors import ConfigError
from c2c.tokenizer.metrics import overlap_mass

def test_overlap_mass_is_zero_for_disjoint_and_one_for_equal_distributions():
    p = np.array([[0.5, 0.5, 0.0, 0.0], [0.25, 0.25, 0.25, 0.25]])
    q = np.array([[0.0, 0.0, 0.3, 0.7], [0.25, 0.25, 0.25, 0.25]])
    np.testing.assert_allclose(overlap_mass(p, q), [0.0, 1.0])
    np.testing.assert_allclose(overlap_mass(np.array([0.6, 0.4, 0.0]), np.array([0.2, 0.4, 0.4])), 0.6)


def test_plan_paths_integrate_the_plan_and_the_hold_padded_future():
    spec = WindowSpec(exec_horizon=2, plan_horizon=6, plan_steps=3, gripper_dims=(3,))  # c = 2
    actions = np.array([[1, 0, 0, -1], [0, 2, 0, -1], [0, 0, 3, 1], [1, 1, 1, 1], [2, 0, 0, 1]], dtype=np.float32)
    plan = np.array([[1, 1, 0, 0], [0, 0, 2, 0], [5, 5, 5, 1]], dtype=np.float32)
    paths = plan_paths(actions, 2, plan, spec)  # frames 2, 3, 4 are real; steps 4..6 lie past the episode end
    np.testing.assert_array_equal(paths.fine_steps, [1, 2, 3, 4, 5, 6])
    np.testing.assert_array_equal(paths.true_fine, [[0, 0, 3], [1, 1, 4], [3, 1, 4], [3, 1, 4], [3, 1, 4],
                                                    [3, 1, 4]])
    np.testing.assert_array_equal(paths.coarse_steps, [2, 4, 6])
    np.testing.assert_array_equal(paths.true_coarse, [[1, 1, 4], [3, 1, 4], [3, 1, 4]])  # Eq. 3 sums
    np.testing.assert_array_equal(paths.plan, [[1, 1, 0], [1, 1, 2], [6, 6, 7]])
    assert paths.padded_from == 4


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A synthetic dataset with two 16-px cameras, a joint tokenizer and plan / noplan debug policies (2 steps)."""
    from c2c.policy.testing import torch_threads
    from c2c.policy.training.config import PolicyTrainConfig
    from c2c.policy.training.loop import train_policy

    root = tmp_path_factory.mktemp("analysis")
    dataset, tokenizer = write_two_camera_dataset_and_tokenizer(root)
    with torch_threads(1):
        for variant in ("plan", "noplan"):
            train_policy(PolicyTrainConfig(dataset=str(dataset), tokenizer=str(tokenizer), out=str(root / variant),
                                           variant=variant, preset="debug", steps=2, batch_size=4, checkpoint_every=2,
                                           eval_every=1000, eval_frames=8, decode_frames=4, eval_batch_size=4),
                         show_progress=False)
    return {"root": root, "dataset": dataset, "tokenizer": tokenizer, "plan": root / "plan", "noplan": root / "noplan"}


def test_overlap_command_matches_the_tokenizer_evaluation(run, capsys):
    from c2c.tokenizer.evaluate import load_saved_split
    from c2c.tokenizer.train import evaluate

    out = run["root"] / "overlap"
    assert main(["analyze", "overlap", "--tokenizer", str(run["tokenizer"]), "--dataset", str(run["dataset"]),
                 "--out", str(out)]) == 0
    assert "overlap mass per level" in capsys.readouterr().out
    result = json.loads((out / "overlap.json").read_text())
    assert (out / "code_usage.png").stat().st_size > 0
    tokenizer, _, held, _ = load_saved_split(run["tokenizer"], run["dataset"])
    np.testing.assert_allclose(result["overlap_mass"], evaluate(tokenizer, held)["overlap_mass"])
    assert len(result["overlap_mass"]) == 3 and all(0 <= m <= 1 for m in result["overlap_mass"])


def test_overlap_refuses_a_dataset_of_other_actions(run, tmp_path, capsys):
    from c2c.data.episodes import Episode
    from c2c.data.lerobot import LeRobotWriter

    other = tmp_path / "three_dim"
    with LeRobotWriter(other, fps=80, action_names=["a", "b", "gripper"], state_names=["x", "y", "z", "g"]) as writer:
        for episode in make_smooth_episodes(2):
            writer.add_episode(Episode(actions=episode.actions[:, 1:], states=episode.states, task=episode.task))
        writer.finalize({"generator": "synthetic"})
    with pytest.raises(ConfigError, match=r"three_dim: actions have 3 dims but tokenizer .*tokenizer encodes 4-dim"):
        from c2c.analysis.overlap import analyze_overlap

        analyze_overlap(run["tokenizer"], other, tmp_path / "out")
    assert main(["analyze", "overlap", "--tokenizer", str(tmp_path / "missing"), "--out", str(tmp_path)]) == 2
    assert "missing: tokenizer directory does not exist" in capsys.readouterr().err


def test_plan_command_writes_metrics_and_figures(run, capsys):
    out = run["root"] / "plan_out"
    assert main(["analyze", "plan", "--policy", str(run["plan"]), "--dataset", str(run["dataset"]), "--episodes",
                 "0,5", "--frames", "3", "--out", str(out)]) == 0
    assert "plan L1" in capsys.readouterr().out
    result = json.loads((out / "plan.json").read_text())
    assert result["episodes"] == [0, 5] and len(result["frames"]) == 6
    assert result["frames"][0]["frame"] == 0 and result["summary"]["plan_l1"] > 0
    assert (out / "plan_ep0.png").is_file() and (out / "plan_ep5.png").is_file()
    assert not list(out.glob(".*"))  # no temporary files left behind


def test_plan_command_names_bad_inputs(run, tmp_path, capsys):
    for argv, message in (
        (["--policy", str(tmp_path / "nope")], "nope: policy directory does not exist"),
        (["--policy", str(run["noplan"])], "variant 'noplan' has no plan branch"),
        (["--policy", str(run["plan"]), "--episodes", "99"], "episode 99 is not in"),
    ):
        assert main(["analyze", "plan", "--dataset", str(run["dataset"]), "--out", str(tmp_path), *argv]) == 2
        assert message in capsys.readouterr().err


def test_attention_command_compares_plan_and_noplan(run):
    out = run["root"] / "attention"
    assert main(["analyze", "attention", "--policy", str(run["plan"]), "--noplan-policy", str(run["noplan"]),
                 "--dataset", str(run["dataset"]), "--frames", "2", "--out", str(out)]) == 0
    result = json.loads((out / "attention.json").read_text())
    frame = result["frames"][0]
    for name in ("plan", "noplan"):
        assert sum(frame[name]["groups"].values()) == pytest.approx(1.0, abs=1e-4)  # every key of the row
        assert np.asarray(frame[name]["map"]).shape == (2, 2)  # debug preset: 16 px, patch 8
    assert frame["noplan"]["groups"]["plan"] == 0.0 and frame["plan"]["groups"]["plan"] > 0
    assert "target_note" in result["summary"]  # synthetic data: no scene to find the target in
    assert (out / "attention_layers.png").is_file() and len(list(out.glob("attention_ep*.png"))) == 1


def test_eager_attention_reproduces_the_sdpa_decoder():
    import torch

    from c2c.analysis.attention import eager_attention_weights
    from c2c.policy.testing import debug_policy, random_observation

    policy = debug_policy("plan")
    inputs, _ = policy.processor.prefix_inputs(random_observation(policy.config, batch_size=2))
    ids = policy.model.suffix.valid_low[:3][None].repeat(2, 1)
    with torch.no_grad():
        reference, _ = policy.model.hidden_states(inputs, ids)
        with eager_attention_weights(policy.model) as captured:
            hidden, _ = policy.model.hidden_states(inputs, ids)
    torch.testing.assert_close(hidden, reference, atol=1e-5, rtol=1e-5)
    assert len(captured) == 2 and captured[0].shape[-1] == captured[0].shape[-2]
    assert policy.model.backbone.config._attn_implementation == "sdpa"  # restored


def test_runtime_command_times_every_case(run):
    out = run["root"] / "runtime"
    assert main(["analyze", "runtime", "--policy", str(run["plan"]), "--noplan-policy", str(run["noplan"]),
                 "--repeats", "1", "--reasoning-tokens", "8", "--out", str(out)]) == 0
    result = json.loads((out / "runtime.json").read_text())
    cases = result["cases"]
    assert set(cases) == {"plan", "plan_cached", "exec_only", "reasoning_8", "noplan_policy"}
    assert cases["plan"]["generated_tokens"] == 48 and cases["exec_only"]["generated_tokens"] == 24
    assert cases["reasoning_8"]["generated_tokens"] == 32 and cases["exec_only"]["ratio_to_exec_only"] == 1.0
    assert "| exec only, no prefix" in (out / "runtime.md").read_text()


def test_ablate_refuses_unknown_variants(capsys):
    assert main(["ablate", "--preset", "quick", "--variants", "plan,hpx"]) == 2
    assert "unknown variant 'hpx'" in capsys.readouterr().err


# --- Meta-World --------------------------------------------------------------------------------------------------
MINI = dict(
    name="mini", tasks=("reach-v3",), episodes_per_task=2, image_size=16, cameras=("corner2", "gripperPOV"), seed=0,
    description="a miniature preset for tests", tokenizer_steps=4,
    tokenizer_codec=dict(codebook_size=16, model_dim=16, depth=1, heads=2, latent_dim=8, mode_dim=8),
    backbone="debug", policy_steps=3, policy_batch_size=4, eval_episodes=1, eval_max_steps=8, videos=0,
)


@pytest.fixture(scope="module")
def mini_ablation(tmp_path_factory):
    from c2c.analysis.ablate import run_ablation
    from c2c.eval.presets import PipelinePreset

    out = tmp_path_factory.mktemp("ablate") / "run"
    result = run_ablation("mini", ("plan", "noplan"), out, workers=1, preset=PipelinePreset(**MINI))
    return out, result


@pytest.mark.sim
def test_ablate_writes_tables_beside_the_paper(mini_ablation):
    out, result = mini_ablation
    text = (out / "ablation" / "ablation.md").read_text()
    assert "## Planning horizon (Table 3 style" in text and "| Hp = 0 (noplan) |" in text
    assert "| Hp = 160 | 98.80 | 100.00 | 97.80 | 95.00 | 97.90 |" in text  # the paper's row
    assert "## Tokenizer sharing (Table 4 style)" in text and "| reach-v3 | easy |" in text
    assert set(result["results"]) == {"plan", "noplan"} and (out / "ablation" / "ablation.png").is_file()
    assert json.loads((out / "ablation" / "ablation.json").read_text())["table3_horizon"] == {"noplan": 0,
                                                                                               "plan": 160}


@pytest.mark.sim
def test_metaworld_plan_and_attention_project_into_the_camera(mini_ablation):
    out, _ = mini_ablation
    dataset = next((out / "data").glob("metaworld-*"))
    plan_out = out / "analysis" / "plan"
    assert main(["analyze", "plan", "--policy", str(out / "policy" / "plan"), "--dataset", str(dataset),
                 "--episodes", "0", "--frames", "2", "--out", str(plan_out)]) == 0
    record = json.loads((plan_out / "plan.json").read_text())["frames"][1]
    assert record["camera"]["replay_error_m"] < 1e-6 and record["camera"]["target"] == "goal"  # reach: the goal
    assert all(0 <= c <= 16 for c in record["camera"]["hand_px"]) and "endpoint_error_m" in record
    attention_out = out / "analysis" / "attention"
    assert main(["analyze", "attention", "--policy", str(out / "policy" / "plan"), "--noplan-policy",
                 str(out / "policy" / "noplan"), "--dataset", str(dataset), "--episodes", "0,1",
                 "--out", str(attention_out)]) == 0
    summary = json.loads((attention_out / "attention.json").read_text())["summary"]
    for name in ("plan", "noplan"):
        assert 0 <= summary[name]["target_mass"] <= 1 and 0 < summary[name]["uniform_target_mass"] < 1


@pytest.mark.sim
def test_projection_puts_the_camera_axis_at_the_image_centre():
    from c2c.analysis.camera import EpisodeScene

    scene = EpisodeScene("reach-v3", seed=3, camera="corner2", image_size=96)
    try:
        ahead = scene.position - 0.5 * scene.rotation[:, 2]  # half a metre along the viewing direction
        uv, in_front = scene.project(np.array([ahead, scene.position + 0.5 * scene.rotation[:, 2]]))
        np.testing.assert_allclose(uv[0], [48, 48], atol=1e-9)
        assert in_front.tolist() == [True, False] and scene.rotated_180  # corner2 is mounted upside down
        right = scene.project(ahead + 0.1 * scene.rotation[:, 0])[0][0]
        assert right[0] < 48  # turned 180 degrees: the camera's right is the stored image's left
    finally:
        scene.close()
