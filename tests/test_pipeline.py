"""`c2c run`: every stage on a miniature preset, then a rerun that skips them all, then a changed setting."""

import json
import shutil
from dataclasses import replace
from types import SimpleNamespace

import pytest

from c2c.eval.pipeline import STAGE_FILE, run_pipeline
from c2c.eval.presets import PRESETS, PipelinePreset, get_preset
from c2c.errors import ConfigError

MINI = PipelinePreset(
    name="mini", tasks=("reach-v3",), episodes_per_task=2, image_size=16, cameras=("corner2", "gripperPOV"), seed=0,
    description="a miniature preset for tests", tokenizer_steps=4,
    tokenizer_codec=dict(codebook_size=16, model_dim=16, depth=1, heads=2, latent_dim=8, mode_dim=8),
    backbone="debug", policy_steps=3, policy_batch_size=4, eval_episodes=1, eval_max_steps=8, videos=1,
)


def _stamps(out):
    return {str(p.relative_to(out)): p.stat().st_mtime_ns for p in sorted(out.rglob(STAGE_FILE))}


@pytest.mark.sim
def test_pipeline_runs_every_stage_then_skips_them(tmp_path, capsys):
    out = tmp_path / "run"
    assert run_pipeline(MINI, out, workers=1) == 0
    stages = _stamps(out)
    assert set(stages) == {"tokenizer/joint/stage.json", "policy/plan/stage.json", "policy/noplan/stage.json",
                           "eval/plan/stage.json", "eval/noplan/stage.json"}
    report = (out / "report.md").read_text()
    assert "| reach-v3 | easy |" in report and "| task | group | plan | noplan |" in report
    for path in ("policy/plan/curves.png", "eval/plan/success.png", "eval/noplan/results.json",
                 "windows/coarse_plans.png"):
        assert (out / path).is_file(), path
    results = json.loads((out / "eval/plan/results.json").read_text())
    assert results["tasks"]["reach-v3"]["episodes"] == 1

    capsys.readouterr()
    assert run_pipeline(MINI, out, workers=1) == 0
    printed = capsys.readouterr().out
    assert _stamps(out) == stages  # nothing was redone
    assert printed.count("done already") == 5 and "[demos] reusing" in printed
    # Policies trained on a GPU (--device cuda) are reused on the CPU and back: the device is no setting.
    assert "device" not in json.loads((out / "policy/plan/stage.json").read_text())["settings"]

    # A changed evaluation setting redoes the evaluations only.
    changed = PipelinePreset(**{**MINI.__dict__, "eval_max_steps": 6})
    assert run_pipeline(changed, out, workers=1) == 0
    after = _stamps(out)
    redone = {name for name in stages if after[name] != stages[name]}
    assert redone == {"eval/plan/stage.json", "eval/noplan/stage.json"}

    # A run directory that was moved elsewhere is reused as it is, not redone.
    moved = tmp_path / "elsewhere" / "run"
    shutil.copytree(out, moved)  # copy2 keeps the modification times the later stages depend on
    capsys.readouterr()
    assert run_pipeline(changed, moved, workers=1) == 0
    assert capsys.readouterr().out.count("done already") == 5
    assert _stamps(moved) == after


def test_image_size_reaches_the_policies_and_must_tile_the_backbone_patches(tmp_path):
    from c2c.eval.pipeline import policy_configs

    # the backbone's own size names nothing, so policies trained before --image-size reached them stay valid
    assert all(config.policy == {} for config in policy_configs(MINI, tmp_path / "data", tmp_path).values())
    configs = policy_configs(replace(MINI, image_size=24), tmp_path / "data", tmp_path)
    assert [config.policy for config in configs.values()] == [{"image_size": 24}] * 2
    tokenizer = SimpleNamespace(normalizers=SimpleNamespace(state=SimpleNamespace(dim=4)),
                                config=SimpleNamespace(action_dim=4))  # what policy_config reads of one
    assert configs["plan"].policy_config(["corner2"], tokenizer).image_size == 24
    with pytest.raises(ConfigError, match=r"image_size 20 is not a multiple of the 'debug' backbone's 8-px patch; "
                                          r"choose e\.g\. 8, 16, 24, 32"):
        replace(MINI, image_size=20)


def test_unknown_preset_is_refused_with_a_suggestion():
    with pytest.raises(ConfigError, match="did you mean 'quick'"):
        get_preset("quik")


def test_libero_presets_follow_the_protocol():
    for suite, limit in (("spatial", None), ("object", None), ("goal", None), ("10", None)):
        preset = get_preset(f"libero-{suite}")
        assert preset.simulator == "libero" and preset.suite == f"libero_{suite}"
        assert preset.eval_episodes == 50 and preset.eval_max_steps is limit  # None: the suite's official limit
        assert preset.variants == ("plan", "noplan") and preset.cameras == ("image", "image2")
    with pytest.raises(ConfigError, match="names its suite"):
        PipelinePreset(**{**get_preset("libero-object").__dict__, "suite": None})
    with pytest.raises(ConfigError, match="simulator must be one of"):
        PipelinePreset(**{**MINI.__dict__, "simulator": "isaac"})
    with pytest.raises(ConfigError, match="did you mean 'libero'"):
        get_preset("libro")


def test_libero_table_averages_the_suites_a_row_has():
    from c2c.eval.pipeline import PUBLISHED_LIBERO, libero_table

    lines = libero_table({"plan": {"libero_object": 50.0, "libero_spatial": 30.0}, **PUBLISHED_LIBERO})
    assert lines[0] == "| method | Spatial | Object | Goal | Long (10) | average |"
    assert lines[2] == "| plan | 30.0 | 50.0 | - | - | 40.0 (2 of 4 suites) |"
    assert lines[3].endswith("| 98.8 | 100.0 | 97.8 | 95.0 | 97.9 |")  # the paper's Table 1 row
    assert lines[4].endswith("| 96.4 | 96.8 | 88.6 | 60.2 | 85.5 |")  # pi0-FAST


@pytest.mark.libero_sim
def test_miniature_libero_preset_end_to_end(tmp_path, libero_installed):
    """Scripted demonstrations -> tokenizer -> plan and noplan -> the LIBERO protocol, on a couple of episodes."""
    preset = PipelinePreset(
        name="mini-libero", tasks=("0",), episodes_per_task=2, image_size=16, cameras=("image", "image2"), seed=0,
        description="a miniature LIBERO preset for tests", simulator="libero", suite="libero_object",
        tokenizer_steps=4, tokenizer_codec=dict(codebook_size=16, model_dim=16, depth=1, heads=2, latent_dim=8,
                                                mode_dim=8),
        backbone="debug", policy_steps=2, policy_batch_size=4, eval_episodes=1, eval_max_steps=5, videos=0,
        eval_seed=7,
    )
    out = tmp_path / "run"
    assert run_pipeline(preset, out, workers=1) == 0
    dataset = next((out / "data").glob("libero-*"))
    info = json.loads((dataset / "meta" / "info.json").read_text())
    assert info["features"]["action"]["shape"] == [7] and info["features"]["observation.state"]["shape"] == [8]
    assert info["c2c"]["suite"] == "libero_object"
    results = json.loads((out / "eval/plan/results.json").read_text())
    assert results["suite"] == "libero_object" and results["settings"]["trials"] == 1
    assert results["settings"]["max_steps"] == 5 and [t["task_id"] for t in results["tasks"]] == [0]
    report = (out / "report.md").read_text()
    assert "## Closed-loop success (LIBERO protocol)" in report
    assert "| Coarse-to-Control (paper, Table 1) | 98.8 | 100.0 | 97.8 | 95.0 | 97.9 |" in report
    assert "| plan (this run, debug, 2 steps) | - |" in report


def test_the_reproduce_command_names_every_override():
    from pathlib import Path

    from c2c.eval.pipeline import run_command

    quick = get_preset("quick")
    assert run_command(quick, Path("runs/q")) == "c2c run --preset quick --out runs/q"
    changed = quick.replace(backbone="tiny-multistream", policy_steps=50)
    assert run_command(changed, Path("runs/q")) == ("c2c run --preset quick --out runs/q --backbone tiny-multistream "
                                                   "--policy-steps 50")
    assert run_command(quick.replace(variants=("plan", "separate")), Path("q")) == ("c2c run --preset quick --out q "
                                                                                  "--variants plan,separate")
    for bad in (("plan", "plan-hp80"), (), ("plan", "plan")):
        with pytest.raises(ConfigError, match="variants must be distinct names among plan, plan-hp40"):
            quick.replace(variants=bad)
    assert run_command(quick.replace(threads=0), Path("q")) == "c2c run --preset quick --out q --threads auto"
    assert run_command(get_preset("mt10").replace(threads=4), Path("m")) == "c2c run --preset mt10 --out m --threads 4"
    with pytest.raises(ConfigError, match="threads must be >= 0"):
        quick.replace(threads=-1)
    noisy = quick.replace(action_noise=0.3)
    assert run_command(noisy, Path("q")) == "c2c run --preset quick --out q --action-noise 0.3"
    with pytest.raises(ConfigError, match="action_noise must lie in"):
        quick.replace(action_noise=2.0)
    two = quick.replace(cameras=("corner2", "gripperPOV"))
    assert run_command(two, Path("q")) == "c2c run --preset quick --out q --cameras corner2,gripperPOV"
    for bad, message in (((), "cameras must name at least one camera"),
                         (("corner9",), "unknown Meta-World camera 'corner9'; did you mean 'corner'"),
                         (("corner2", "corner2"), "cameras are repeated: corner2, corner2")):
        with pytest.raises(ConfigError, match=message):
            quick.replace(cameras=bad)
    with pytest.raises(ConfigError, match="cameras apply to Meta-World presets only"):
        get_preset("libero-goal").replace(cameras=("image",))
    assert run_command(MINI, Path("x")) == "c2c run --preset mini --out x"  # made in code: no options exist
    # The one-line description names the backbone actually used.
    assert "nano backbone" in quick.summary and "tiny-multistream backbone" in changed.summary
    assert "plan vs noplan vs regress with" in quick.summary
    assert "MT10, 50 demonstrations per task, plan vs separate with" in get_preset("mt10").replace(
        variants=("plan", "separate")).summary
    assert all("{" not in preset.summary for preset in PRESETS.values())


@pytest.mark.sim
@pytest.mark.parametrize("parallel", [
    pytest.param(False, id="one-after-the-other"),
    # 70 s: two spawned trainings; resuming is the one-after-the-other case's, side by side the pinned-threads test's
    pytest.param(True, id="side-by-side", marks=pytest.mark.slow),
])
def test_an_interrupted_policy_stage_resumes_from_its_checkpoint(tmp_path, capsys, parallel):
    from c2c.eval.pipeline import policy_configs, stage_demos, stage_policies, stage_tokenizers
    from c2c.policy.training.checkpoint import CHECKPOINT
    from c2c.policy.training.loop import train_policy

    out = tmp_path / "run"
    preset = MINI.replace(policy_steps=4)
    dataset = stage_demos(preset, out, force=False)
    stage_tokenizers(preset, dataset, out, force=False)
    configs = policy_configs(preset, dataset, out)
    # plan stopped at step 2 with a checkpoint (as a killed run leaves it); noplan left a checkpoint written with
    # other settings (another step budget), which must not be resumed.
    assert train_policy(replace(configs["plan"], checkpoint_every=1), show_progress=False, stop_after=2) is None
    assert train_policy(replace(configs["noplan"], steps=7), show_progress=False, stop_after=1) is None
    capsys.readouterr()

    records = stage_policies(preset, dataset, out, force=False, parallel=parallel)
    printed = capsys.readouterr().out
    assert "[policy plan] resuming its interrupted training from step 2 of 4" in printed
    assert "[policy noplan] resuming" not in printed
    if parallel:  # each training process writes its own log
        logs = {v: (out / "policy" / v / "train.log").read_text() for v in ("plan", "noplan")}
    else:
        logs = dict(zip(("plan", "noplan"), printed.split("[policy noplan] running")))
    assert "resuming from step 2" in logs["plan"] and "resuming from step" not in logs["noplan"]
    for variant in ("plan", "noplan"):
        metrics = records[variant]["result"]
        assert metrics["steps"] == 4 and not records[variant]["skipped"], variant
        assert (out / "policy" / variant / CHECKPOINT / "state.json").is_file()
    # Finished stages are reused, and --force starts over.
    assert all(r["skipped"] for r in stage_policies(preset, dataset, out, force=False, parallel=parallel).values())
    stage_policies(preset, dataset, out, force=True, parallel=parallel)
    assert "resuming" not in capsys.readouterr().out


@pytest.mark.sim
def test_a_run_with_pinned_threads_repeats_bit_for_bit(tmp_path, monkeypatch, capsys):
    """Demonstrations, tokenizer, two policies side by side and their evaluations, twice from scratch (--force);
    the second time noplan is evaluated in the background as a policy that finished first is."""
    import hashlib

    from c2c.eval.pipeline import stages, thread_schedule

    preset, out = MINI.replace(threads=2), tmp_path / "run"  # as the quick preset: a 2-thread tokenizer

    def fingerprint():
        files = sorted(p for p in out.rglob("*") if p.suffix in (".safetensors", ".parquet"))
        digests = {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}
        rollouts = {v: json.loads((out / "eval" / v / "results.json").read_text())["tasks"]["reach-v3"]["rollouts"]
                    for v in ("plan", "noplan")}
        return digests, [{k: r[k] for k in ("seed", "success", "steps")} for v in rollouts for r in rollouts[v]]

    assert run_pipeline(preset, out, workers=1, parallel=True) == 0
    first = fingerprint()
    assert any("policy/plan" in name for name in first[0]) and any("tokenizer" in name for name in first[0])

    # Again, with noplan's evaluation run in the background as when its training ends first (which of the two
    # miniature trainings ends first, if either does by a poll, depends on timing, so it is triggered by hand here
    # and train_in_parallel's part is tested with stand-in processes below).
    real = stages.train_in_parallel

    def noplan_first(configs, poll_seconds=2.0, threads=0, on_finish=None):
        metrics = real(configs, poll_seconds=poll_seconds, threads=threads)
        on_finish("noplan", 1)
        return metrics

    monkeypatch.setattr(stages, "train_in_parallel", noplan_first)
    capsys.readouterr()
    assert run_pipeline(preset, out, force=True, workers=1, parallel=True) == 0
    printed = capsys.readouterr().out
    assert printed.count("[eval noplan] running") == 1 and printed.count("[eval plan] running") == 1
    assert "[eval noplan] starts on the 1 core(s) its training freed" in printed
    assert fingerprint() == first
    assert "| eval noplan | " in (out / "report.md").read_text()
    assert "while the other policies trained" in (out / "report.md").read_text()
    # The thread counts used are in the records and the report.
    plan = json.loads((out / "policy/plan/stage.json").read_text())["result"]
    assert plan["threads"] == [{"step": 0, "threads": 1}]
    assert json.loads((out / "tokenizer/joint/stage.json").read_text())["result"]["threads"] == 2
    report = (out / "report.md").read_text()
    assert "| threads |" in report and "changed while it ran" not in report
    if any(r["success"] is False for r in first[1]):  # a random 3-step policy fails its 8-step reach episode
        assert "Where the failed episodes stopped" in report
    assert thread_schedule([{"step": 0, "threads": 1}, {"step": 741, "threads": 2}]) == "1, 2 from step 741"
    assert thread_schedule(None) == "-"


class _StandInProcess:
    """A training process that ends (return code 0) after ``polls`` polls."""

    def __init__(self, polls):
        self.polls, self.returncode = polls, None

    def poll(self):
        self.polls -= 1
        if self.polls <= 0:
            self.returncode = 0
        return self.returncode

    def terminate(self):
        pass


@pytest.mark.parametrize("threads", [2, 0], ids=["pinned", "auto"])
def test_a_side_by_side_training_that_ends_first_frees_its_cores_only_when_pinned(tmp_path, monkeypatch, threads):
    from c2c.eval import pipeline
    from c2c.eval.pipeline import scheduling

    polls = {"plan": 6, "noplan": 2}  # noplan ends first
    configs = {}
    for variant in polls:
        out = tmp_path / variant
        out.mkdir()
        (out / "metrics.json").write_text(json.dumps({"variant": variant}))
        configs[variant] = replace(pipeline.policy_configs(MINI, tmp_path / "data", tmp_path)[variant], out=str(out))

    def popen(command, **kwargs):
        return _StandInProcess(polls[json.loads(open(command[-1]).read())["config"]["variant"]])

    monkeypatch.setattr(scheduling.subprocess, "Popen", popen)
    monkeypatch.setattr("c2c.utils.threads.busy_cpus", lambda *a, **k: 0)
    finished = []
    metrics = scheduling.train_in_parallel(configs, poll_seconds=0.0, threads=threads,
                                         on_finish=lambda variant, cores: finished.append((variant, cores)))
    assert metrics == {"plan": {"variant": "plan"}, "noplan": {"variant": "noplan"}}
    # Pinned: noplan's core is offered while plan trains (plan, the last, is not). Auto: it goes to plan instead.
    assert finished == ([("noplan", 1)] if threads else [])
    if not threads:
        assert (tmp_path / "plan" / "threads").read_text().strip() == str(scheduling.os.cpu_count())


def test_pinned_teams_on_busy_cores_are_announced(monkeypatch, capsys):
    from c2c.eval.pipeline import scheduling
    from c2c.utils import threads

    monkeypatch.setattr(scheduling.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(threads, "busy_cpus", lambda *a, **k: 1)  # another job holds one of the two cores
    scheduling.warn_if_busy(2)
    assert "pinned to 2 per process x 1, but only 1 of 2 CPUs are free now" in capsys.readouterr().out
    scheduling.warn_if_busy(1, processes=2)  # one-thread processes do not stall on each other
    scheduling.warn_if_busy(1)
    assert capsys.readouterr().out == ""


def test_action_noise_names_its_own_dataset():
    """Noise injection makes another dataset; without it the settings (and so the cached dataset's name) are the
    ones of the runs made before the option existed."""
    from c2c.eval.pipeline import data_settings, settings_hash

    quick = get_preset("quick")
    assert "action_noise" not in data_settings(quick)
    assert settings_hash(data_settings(quick)) == "b803977497"  # runs/quick/data/metaworld-b803977497
    # The preset's tasks until 2026-12-06 (reach and pick-place in place of door-open and hammer), with the primary
    # camera and with the wrist camera too (the tables of docs/results/readme-records-until-2026-12-06.md).
    earlier = quick.replace(tasks=("reach-v3", "button-press-topdown-v3", "drawer-open-v3", "pick-place-v3"))
    assert settings_hash(data_settings(earlier)) == "a22fe06a63"
    two_cameras = earlier.replace(cameras=("corner2", "gripperPOV"))
    assert settings_hash(data_settings(two_cameras)) == "ec1b8b81d5"
    noisy = data_settings(quick.replace(action_noise=0.3))
    assert noisy["action_noise"] == 0.3 and settings_hash(noisy) != settings_hash(data_settings(quick))


@pytest.mark.sim
def test_a_takeover_round_trains_again_and_evaluates_those_policies(tmp_path, capsys):
    from pathlib import Path

    from c2c.data.lerobot import LeRobotDataset

    preset = replace(MINI, takeover_episodes=2, variants=("plan",))
    out = tmp_path / "run"
    assert run_pipeline(preset, out, workers=1) == 0
    stages = _stamps(out)
    assert set(stages) == {"tokenizer/joint/stage.json", "policy/plan/stage.json", "takeover/plan/stage.json",
                           "policy-takeover/plan/stage.json", "eval/plan/stage.json"}
    counts = json.loads((out / "takeover/plan/stage.json").read_text())["result"]["counts"]["reach-v3"]
    assert counts["recorded"] >= 1 and sum(counts[key] for key in ("recorded", "policy-success",
                                                                  "expert-failed")) == 2
    data = LeRobotDataset(out / "takeover/plan/data")
    assert data.num_episodes == MINI.episodes_per_task + counts["recorded"]
    trained = json.loads((out / "policy-takeover/plan/train_config.json").read_text())
    assert Path(trained["dataset"]) == out / "takeover/plan/data"
    evaluated = json.loads((out / "eval/plan/results.json").read_text())
    assert f"--policy {out / 'policy-takeover/plan'}" in evaluated["command"]
    report = (out / "report.md").read_text()
    assert "## Expert takeovers" in report and "| plan | reach-v3 | " in report
    assert f"c2c data metaworld-takeover --policy {out / 'policy/plan'}" in report
    assert f"c2c policy train --dataset {out / 'takeover/plan/data'}" in report
    assert "(policy-takeover/plan/curves.png)" in report and "(policy/plan/curves.png)" in report

    capsys.readouterr()
    assert run_pipeline(preset, out, workers=1) == 0
    rerun = capsys.readouterr().out
    assert _stamps(out) == stages and rerun.count("done already") == 5
    assert "add --cameras" not in rerun  # the one-camera note is for presets without the wrist camera

    # Other takeovers: the takeover stage, the training on its dataset and the evaluation are redone, no more.
    assert run_pipeline(replace(preset, takeover_episodes=1), out, workers=1) == 0
    after = _stamps(out)
    assert {name for name in stages if after[name] != stages[name]} == {
        "takeover/plan/stage.json", "policy-takeover/plan/stage.json", "eval/plan/stage.json"}

    # Fine-tuning the first policy instead: the same takeovers, only the second training and its evaluation redone.
    assert run_pipeline(replace(preset, takeover_episodes=1, takeover_finetune_steps=1), out, workers=1) == 0
    tuned = _stamps(out)
    assert {name for name in after if tuned[name] != after[name]} == {"policy-takeover/plan/stage.json",
                                                                      "eval/plan/stage.json"}
    trained = json.loads((out / "policy-takeover/plan/train_config.json").read_text())
    assert trained["init_from"] == str(out / "policy/plan") and trained["steps"] == 1
    report = (out / "report.md").read_text()
    assert f"--steps 1 --batch-size {MINI.policy_batch_size} --init-from {out / 'policy/plan'}" in report
    assert "first policy was fine-tuned on them for 1 steps" in report


def test_takeover_options_are_checked_and_named():
    from pathlib import Path

    from c2c.eval.pipeline import run_command

    quick = get_preset("quick")
    assert quick.takeover_episodes == 0  # the preset's pipeline is unchanged by the option
    assert "25 expert takeovers per task" in quick.replace(takeover_episodes=25).summary
    assert "takeover" not in quick.summary
    assert run_command(quick.replace(takeover_episodes=25), Path("q")) == ("c2c run --preset quick --out q "
                                                                           "--takeover-episodes 25")
    with pytest.raises(ConfigError, match="takeover_episodes must be >= 0"):
        quick.replace(takeover_episodes=-1)
    with pytest.raises(ConfigError, match="takeover_episodes applies to Meta-World only"):
        get_preset("libero-object").replace(takeover_episodes=5)
    tuned = quick.replace(takeover_episodes=25, takeover_finetune_steps=450)
    assert "and 450 steps of fine-tuning on them" in tuned.summary
    assert run_command(tuned, Path("q")) == ("c2c run --preset quick --out q --takeover-episodes 25 "
                                             "--takeover-finetune 450")
    with pytest.raises(ConfigError, match="takeover_finetune_steps needs takeover_episodes > 0"):
        quick.replace(takeover_finetune_steps=450)
    with pytest.raises(ConfigError, match="takeover_finetune_steps must be >= 0"):
        quick.replace(takeover_episodes=25, takeover_finetune_steps=-1)
