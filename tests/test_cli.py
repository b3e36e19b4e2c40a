"""The command line: one-line errors naming the bad input, exit codes, help."""

import subprocess
import sys

import pytest

from c2c.cli import main


def test_help_lists_the_commands(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for command in ("data", "tokenizer", "run"):
        assert command in out


def test_unknown_preset_is_one_line_with_suggestion(capsys):
    assert main(["run", "--preset", "quik"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "unknown preset 'quik'" in err and "did you mean 'quick'" in err


def test_a_bad_device_is_refused_before_any_stage_runs(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", "--preset", "quick", "--device", "gpu0", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--device: unknown device 'gpu0'" in err
    assert not out.exists()  # no demonstrations were started


@pytest.mark.parametrize("value", ["0", "-2", "two"])
def test_a_bad_thread_count_is_refused_before_any_stage_runs(tmp_path, capsys, value):
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--preset", "quick", "--threads", value, "--out", str(out)])
    assert exit_info.value.code == 2
    assert f"expected a positive thread count or 'auto', got {value!r}" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("value, message", [("corner9", "unknown Meta-World camera 'corner9'"),
                                            ("", "cameras must name at least one camera")])
def test_bad_cameras_are_refused_before_any_stage_runs(tmp_path, capsys, value, message):
    out = tmp_path / "run"
    assert main(["run", "--preset", "quick", "--cameras", value, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and message in err
    assert not out.exists()



def test_run_options_round_trip_through_the_reproduce_command(tmp_path, monkeypatch):
    """Every preset override `c2c run` parses comes back, under the same option, in the command its report prints."""
    from c2c.eval import pipeline
    from c2c.eval.presets import get_preset

    seen = {}
    monkeypatch.setattr(pipeline, "run_presets", lambda name, out, overrides, **kw: seen.update(overrides) or 0)
    options = ["--backbone", "tiny-multistream", "--tokenizer-steps", "7", "--policy-steps", "50",
               "--eval-episodes", "3", "--episodes-per-task", "4", "--action-noise", "0.3",
               "--takeover-episodes", "25", "--takeover-finetune", "450", "--variants", "plan,separate",
               "--cameras", "corner2,gripperPOV", "--threads", "auto", "--tasks", "reach-v3,hammer-v3",
               "--image-size", "48", "--eval-seed", "2000"]
    assert set(options[::2]) == set(pipeline.OVERRIDE_OPTIONS.values())
    out = tmp_path / "q"
    assert main(["run", "--preset", "quick", "--out", str(out), *options]) == 0
    preset = get_preset("quick").replace(**{key: value for key, value in seen.items() if value is not None})
    assert pipeline.run_command(preset, out) == " ".join(["c2c run --preset quick --out", str(out), *options])

def test_missing_dataset_names_the_file(tmp_path, capsys):
    assert main(["tokenizer", "train", "--dataset", str(tmp_path / "nowhere"), "--out", str(tmp_path / "tok")]) == 2
    err = capsys.readouterr().err
    assert "nowhere" in err and "Traceback" not in err


def test_plan_horizon_not_divisible_is_named(synthetic_dataset, tmp_path, capsys):
    code = main(["tokenizer", "train", "--dataset", str(synthetic_dataset), "--out", str(tmp_path / "tok"),
                 "--plan-horizon", "150"])
    assert code == 2
    assert "Hp=150" in capsys.readouterr().err


def test_console_script_entry_point_runs():
    result = subprocess.run([sys.executable, "-m", "c2c", "--version"], capture_output=True, text=True, check=True)
    assert result.stdout.startswith("c2c ")
