"""`c2c run`: every stage on a miniature preset, then a rerun that skips them all, then a changed setting."""

import json

import pytest

from c2c.eval.pipeline import STAGE_FILE, run_pipeline
from c2c.eval.presets import PipelinePreset, get_preset
from c2c.errors import ConfigError

pytestmark = pytest.mark.sim

MINI = PipelinePreset(
    name="mini", tasks=("reach-v3",), episodes_per_task=2, image_size=16, cameras=("corner2", "gripperPOV"), seed=0,
    description="a miniature preset for tests", tokenizer_steps=4,
    tokenizer_codec=dict(codebook_size=16, model_dim=16, depth=1, heads=2, latent_dim=8, mode_dim=8),
    backbone="debug", policy_steps=3, policy_batch_size=4, eval_episodes=1, eval_max_steps=8, videos=1,
)


def _stamps(out):
    return {str(p.relative_to(out)): p.stat().st_mtime_ns for p in sorted(out.rglob(STAGE_FILE))}


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

    # A changed evaluation setting redoes the evaluations only.
    changed = PipelinePreset(**{**MINI.__dict__, "eval_max_steps": 6})
    assert run_pipeline(changed, out, workers=1) == 0
    after = _stamps(out)
    redone = {name for name in stages if after[name] != stages[name]}
    assert redone == {"eval/plan/stage.json", "eval/noplan/stage.json"}


def test_unknown_preset_is_refused_with_a_suggestion():
    with pytest.raises(ConfigError, match="did you mean 'quick'"):
        get_preset("quik")
