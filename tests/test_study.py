"""`c2c ablate --study`: rows, groups and the report on a miniature preset."""

import json

import pytest

from c2c.analysis.study import STUDIES, groups_of, run_study, study_rows, wilson
from c2c.errors import ConfigError
from c2c.eval.presets import PipelinePreset

MINI = PipelinePreset(
    name="mini", tasks=("reach-v3",), episodes_per_task=2, image_size=16, cameras=("corner2",), seed=0,
    description="a miniature preset for tests", tokenizer_steps=4,
    tokenizer_codec=dict(codebook_size=16, model_dim=16, depth=1, heads=2, latent_dim=8, mode_dim=8),
    backbone="debug", policy_steps=3, policy_batch_size=4, eval_episodes=2, eval_max_steps=8, videos=0,
)


def test_wilson_interval_matches_known_values():
    low, high = wilson(46, 120)  # 38.3%: 30-47% as in the published table
    assert round(100 * low) == 30 and round(100 * high) == 47
    assert wilson(0, 30)[0] == 0.0 and wilson(30, 30)[1] == 1.0


def test_rows_are_grouped_by_the_settings_they_change():
    rows = study_rows("representation", "plan,noplan,noplan-3x256,cnn")
    groups = groups_of(rows)
    assert [row.name for row in groups["base"]] == ["plan", "noplan"]
    assert len(groups) == 3 and all(len(members) == 1 for name, members in groups.items() if name != "base")
    assert len({row.name for row in STUDIES["levers"]}) == len(STUDIES["levers"])


def test_unknown_study_and_rows_name_the_fix():
    with pytest.raises(ConfigError, match="unknown row 'nopaln'.*did you mean 'noplan'"):
        study_rows("representation", "plan,nopaln")
    with pytest.raises(ConfigError, match="--study 'representaton': unknown.*did you mean 'representation'"):
        study_rows("representaton")


@pytest.mark.sim
def test_the_study_runs_its_rows_and_reports_them(tmp_path):
    rows = study_rows("representation", "noplan,noplan-3x256")
    result = run_study("representation", MINI, tmp_path / "study", rows=rows, workers=1)
    table = {row["row"]: row for row in result["rows"]}
    assert list(table) == ["noplan", "noplan-3x256"]
    for row in table.values():
        assert row["episodes"] == 2 and 0 <= row["successes"] <= 2
        assert row["interval"][0] <= row["success"] <= row["interval"][1]
        assert row["decode_ms"] > 0 and row["heldout_l1"] is not None and row["steps"] == 3
    # The smaller codebook kept the preset's other codec settings and trained its own tokenizer.
    codec = json.loads((tmp_path / "study" / table["noplan-3x256"]["group"] / "tokenizer" / "joint" /
                        "config.json").read_text())["codec"]
    assert codec["codebook_size"] == 256 and codec["model_dim"] == 16
    report = (tmp_path / "study" / "study.md").read_text()
    assert "c2c ablate --study representation --preset mini --rows noplan,noplan-3x256 --tasks reach-v3" in report
    assert "| noplan-3x256 |" in report and (tmp_path / "study" / "study.png").is_file()


def test_the_command_line_refuses_bad_studies_and_rows_in_one_line(capsys, tmp_path):
    from c2c.cli import main

    assert main(["ablate", "--study", "representaton", "--out", str(tmp_path / "a")]) == 2
    assert "did you mean 'representation'" in capsys.readouterr().err
    assert main(["ablate", "--study", "levers", "--rows", "noplan,plan-cornr", "--out", str(tmp_path / "b")]) == 2
    assert "unknown row 'plan-cornr' of study 'levers'" in capsys.readouterr().err
    assert main(["ablate", "--rows", "plan", "--out", str(tmp_path / "c")]) == 2
    assert "give --study too" in capsys.readouterr().err
    assert not any((tmp_path / name).exists() for name in "abc")  # nothing left behind
