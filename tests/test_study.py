"""`c2c ablate --study`: rows, groups and the report on a miniature preset; the wall-clock budget per row."""

import json
import math

import pytest

from c2c.analysis import study_budget
from c2c.analysis.study import STUDIES, groups_of, run_study, study_command, study_rows, wilson, write_study
from c2c.analysis.study_budget import (BUDGET_FILE, budget_steps, budgeted_rows, check_budget_seconds, measure_row,
                                       measurement_settings, plan_budget)
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


# --- the same wall-clock per row (--budget-seconds) -----------------------------------------------------------------
STEP_SECONDS = {"plan": 0.5, "noplan": 0.3, "regress": 0.05}  # seconds per step by variant, in place of a measurement


@pytest.fixture
def measured(monkeypatch):
    """Replaces the step-time measurement by STEP_SECONDS; returns the list of rows measured (by variant)."""
    calls = []

    def measure(settings):
        calls.append(settings["variant"])
        return STEP_SECONDS[settings["variant"]]

    monkeypatch.setattr(study_budget, "measure_row", measure)
    return calls


def test_steps_per_row_follow_the_budget_and_the_measured_step_times(tmp_path, measured):
    assert budget_steps(60, 0.5) == 120 and budget_steps(60, 0.7) == 85 and budget_steps(1.0, 0.1) == 10
    assert budget_steps(0.2, 0.5) == 1
    rows = study_rows("representation", "plan,noplan,cnn")
    budget = plan_budget(MINI, rows, tmp_path, 60.0)
    assert measured == ["plan", "noplan", "regress"]
    assert {name: entry["steps"] for name, entry in budget["rows"].items()} == {"plan": 120, "noplan": 200,
                                                                                "cnn": 1200}
    # Each row trains its steps in the pipeline run of its settings; the cnn row keeps its backbone change.
    groups = {row.name: row.group for row in budgeted_rows(rows, budget)}
    assert groups == {"plan": "policy-steps-120", "noplan": "policy-steps-200",
                      "cnn": "backbone-cnn_policy-steps-1200"}
    # A row that changes the steps itself (twice the preset's) gets twice the budget, in place of its own steps.
    levers = study_rows("levers", "plan,plan-steps1800")
    doubled = plan_budget(MINI.replace(policy_steps=900), levers, tmp_path / "levers", 60.0)
    assert doubled["rows"]["plan-steps1800"]["budget_seconds"] == 120.0
    assert [row.overrides for row in budgeted_rows(levers, doubled)] == [(("policy_steps", 120),),
                                                                          (("policy_steps", 240),)]


def test_budget_json_is_reused_for_the_same_budget_and_measured_again_for_another(tmp_path, measured, capsys):
    rows = study_rows("representation", "plan,noplan")
    first = plan_budget(MINI, rows, tmp_path, 60.0)
    saved = json.loads((tmp_path / BUDGET_FILE).read_text())
    assert saved["budget_seconds"] == 60.0 and saved["threads"] == 1 and saved["timed_steps"] == 10
    assert saved["rows"]["plan"]["step_seconds"] == 0.5 and saved["rows"]["plan"]["steps"] == 120
    assert saved["rows"]["plan"]["settings"] == json.loads(json.dumps(measurement_settings(MINI, rows[0])))
    assert len(measured) == 2
    # The same budget and rows (or some of them): the steps of the first run, nothing measured.
    assert plan_budget(MINI, rows, tmp_path, 60.0)["rows"] == first["rows"]
    assert plan_budget(MINI, rows[:1], tmp_path, 60.0)["rows"]["plan"]["steps"] == 120
    assert len(measured) == 2 and "reusing the step times" in capsys.readouterr().out
    # Another budget, a row not measured, other settings or --force: every row of the run is measured again.
    assert plan_budget(MINI, rows, tmp_path, 90.0)["rows"]["noplan"]["steps"] == 300 and len(measured) == 4
    assert json.loads((tmp_path / BUDGET_FILE).read_text())["budget_seconds"] == 90.0
    assert "--budget-seconds 60, not 90" in capsys.readouterr().out
    plan_budget(MINI, study_rows("representation", "plan,noplan,regress"), tmp_path, 90.0)
    assert len(measured) == 7 and "row 'regress' was not measured there" in capsys.readouterr().out
    plan_budget(MINI.replace(policy_batch_size=8), rows, tmp_path, 90.0)
    assert len(measured) == 9 and "row 'plan' was measured with other settings" in capsys.readouterr().out
    plan_budget(MINI.replace(policy_batch_size=8), rows, tmp_path, 90.0, force=True)
    assert len(measured) == 11


def test_bad_budgets_are_refused_in_one_line_naming_the_fix(tmp_path, measured, capsys):
    for bad in (0, -5, math.nan, math.inf):
        with pytest.raises(ConfigError, match=r"--budget-seconds .*: give a positive number of seconds"):
            check_budget_seconds(bad)
    rows = study_rows("representation", "plan,noplan,regress")
    with pytest.raises(ConfigError) as error:  # plan: 2 s at 0.5 s per step is 4 steps
        plan_budget(MINI, rows, tmp_path / "small", 2.0)
    assert str(error.value) == ("--budget-seconds 2: row 'plan' would train 4 step(s) (0.5 s per step measured on 1 "
                                "thread); give --budget-seconds 5 or more (at least 10 steps per row)")
    assert "\n" not in str(error.value) and not (tmp_path / "small").exists()  # nothing written
    assert plan_budget(MINI, rows, tmp_path / "enough", 5.0)["rows"]["plan"]["steps"] == 10

    from c2c.cli import main

    for value in ("0", "-3"):
        assert main(["ablate", "--study", "representation", "--budget-seconds", value,
                     "--out", str(tmp_path / "cli")]) == 2
        assert f"--budget-seconds {value}: give a positive number" in capsys.readouterr().err
    assert main(["ablate", "--budget-seconds", "60", "--out", str(tmp_path / "cli")]) == 2
    assert "give --study too" in capsys.readouterr().err
    assert main(["ablate", "--study", "representation", "--budget-seconds", "60", "--policy-steps", "100",
                 "--out", str(tmp_path / "cli")]) == 2
    assert "--policy-steps and --budget-seconds both set" in capsys.readouterr().err
    assert not (tmp_path / "cli").exists() and measured == ["plan", "noplan", "regress"] * 2


def _fake_run(out, row, steps):
    """The files a row's pipeline run leaves: its evaluation results and its training metrics."""
    results = {"tasks": {"reach-v3": {"successes": 1, "episodes": 2}}, "settings": {"seed": 1000}, "command": "c2c"}
    metrics = {"heldout": {"exec_l1": 0.1}, "samples_per_s": 50.0, "steps": steps, "effective_batch_size": 4,
               "train_seconds_this_run": 1.0}
    for path, content in ((out / row.group / "eval" / row.variant / "results.json", results),
                          (out / row.group / "policy" / row.variant / "metrics.json", metrics)):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(content))


def test_the_report_states_the_budget_kind_and_each_rows_steps(tmp_path, measured):
    rows = study_rows("representation", "plan,noplan")
    for row in rows:  # the same samples: the preset's steps for every row
        _fake_run(tmp_path / "samples", row, MINI.policy_steps)
    result = write_study("representation", MINI, tmp_path / "samples", rows, measure_decode=False)
    report = (tmp_path / "samples" / "study.md").read_text()
    assert "Budget: same samples: 3 steps x 4 for every row unless the row says otherwise." in report
    assert "| mean | 95% interval | steps | held-out L1 |" in report and "| 50.0% | 9-91% | 3 | 0.100 |" in report
    assert result["budget"]["kind"] == "samples" and "--policy-steps 3" in result["command"]
    assert "--budget-seconds" not in result["command"]

    out = tmp_path / "clock"
    budget = plan_budget(MINI, rows, out, 60.0)
    for row in budgeted_rows(rows, budget):
        _fake_run(out, row, dict(row.overrides)["policy_steps"])
    result = write_study("representation", MINI, out, rows, measure_decode=False, budget=budget)
    report = (out / "study.md").read_text()
    assert ("Budget: same wall-clock: 60 s per row on one thread; steps per row from measured step times "
            "(batch 4;") in report
    assert "| steps | step ms | held-out L1 |" in report
    assert "| plan | 1/2 | 50.0% | 9-91% | 120 | 500.0 | 0.100 |" in report
    assert "| noplan | 1/2 | 50.0% | 9-91% | 200 | 300.0 | 0.100 |" in report
    assert result["command"] == study_command("representation", MINI, out, rows, 60.0)
    assert ("c2c ablate --study representation --preset mini --rows plan,noplan --tasks reach-v3 --budget-seconds 60 "
            "--eval-episodes 2") in result["command"] and "--policy-steps" not in result["command"]
    saved = json.loads((out / "study.json").read_text())
    assert saved["budget"]["kind"] == "wall-clock" and saved["budget"]["budget_seconds"] == 60.0
    assert saved["budget"]["rows"]["plan"] == {"step_seconds": 0.5, "budget_seconds": 60.0, "steps": 120}
    assert [row["steps"] for row in saved["rows"]] == [120, 200]


def test_the_step_time_is_measured_with_the_rows_own_settings():
    """The real measurement (training's step, one thread, random inputs) on the debug backbone."""
    for row in study_rows("representation"):  # every tokenizer kind, and the cnn backbone
        settings = measurement_settings(MINI, row)
        assert settings["threads"] == 1 and settings["image_size"] == 16 and settings["cameras"] == ["corner2"]
        settings.update(warmup_steps=1, timed_steps=2)
        seconds = measure_row(settings)
        assert math.isfinite(seconds) and seconds > 0, row.name
    assert measurement_settings(MINI, STUDIES["representation"][3])["codec"] == {**MINI.tokenizer_codec,
                                                                                  "codebook_size": 256}
    seconds = measure_row(measurement_settings(MINI, study_rows("representation", "noplan")[0]))  # 3 + 10 steps
    assert math.isfinite(seconds) and 0 < seconds < 5


@pytest.mark.sim
@pytest.mark.slow  # a whole study twice; the steps, budget.json and report are also checked without training
def test_a_study_under_a_wall_clock_budget_trains_each_row_its_steps(tmp_path, monkeypatch, capsys):
    times = {"noplan": 0.05, "regress": 0.04}
    monkeypatch.setattr(study_budget, "measure_row", lambda settings: times[settings["variant"]])
    rows = study_rows("representation", "noplan,regress")
    result = run_study("representation", MINI, tmp_path / "study", rows=rows, workers=1, budget_seconds=1.0,
                       measure_decode=False)
    table = {row["row"]: row for row in result["rows"]}
    assert {name: (row["steps"], row["group"]) for name, row in table.items()} == {
        "noplan": (20, "policy-steps-20"), "regress": (25, "policy-steps-25")}
    assert "Budget: same wall-clock: 1 s per row on one thread" in (tmp_path / "study" / "study.md").read_text()
    # A rerun with the same budget reuses the step times and every finished stage.
    monkeypatch.setattr(study_budget, "measure_row", lambda settings: pytest.fail("measured again"))
    capsys.readouterr()
    again = run_study("representation", MINI, tmp_path / "study", rows=rows, workers=1, budget_seconds=1.0,
                      measure_decode=False)
    assert [row["steps"] for row in again["rows"]] == [20, 25] and "reusing the step times" in capsys.readouterr().out
