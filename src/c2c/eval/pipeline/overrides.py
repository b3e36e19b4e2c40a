"""The `c2c run` command line that reproduces a preset: the one table of the options that override a preset's
fields (the command line parser adds its ``--`` options from it)."""

from __future__ import annotations

from pathlib import Path

from c2c.errors import ConfigError
from c2c.eval.presets import PipelinePreset, get_preset


# `c2c run` options that override a preset's field (PipelinePreset.replace).
OVERRIDE_OPTIONS = {"backbone": "--backbone", "tokenizer_steps": "--tokenizer-steps", "policy_steps": "--policy-steps",
                    "eval_episodes": "--eval-episodes", "episodes_per_task": "--episodes-per-task",
                    "action_noise": "--action-noise", "takeover_episodes": "--takeover-episodes",
                    "takeover_finetune_steps": "--takeover-finetune",
                    "variants": "--variants", "cameras": "--cameras", "threads": "--threads", "tasks": "--tasks",
                    "image_size": "--image-size", "eval_seed": "--eval-seed"}


def preset_overrides(preset: PipelinePreset) -> list[str]:
    """The `c2c run` options by which ``preset`` differs from the named preset it was made from (``[]``: none, or a
    preset made in code, which no command line gives)."""
    try:
        named = get_preset(preset.name)
    except ConfigError:
        return []
    words = []
    for field_name, option in OVERRIDE_OPTIONS.items():
        value = getattr(preset, field_name)
        if value != getattr(named, field_name):
            if field_name == "threads":
                words += [option, str(value) if value else "auto"]
            else:
                words += [option, ",".join(value) if isinstance(value, tuple) else str(value)]
    return words


def run_command(preset: PipelinePreset, out: Path) -> str:
    """The `c2c run` command that reproduces ``preset``: its name plus an option for every overridden field."""
    return " ".join(["c2c", "run", "--preset", preset.name, "--out", str(out), *preset_overrides(preset)])
