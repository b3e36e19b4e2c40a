"""Named pipeline presets (one place, with a "did you mean" on typos)."""

from __future__ import annotations

import difflib
import dataclasses
from dataclasses import dataclass, field
from typing import Any

from c2c.errors import ConfigError


@dataclass(frozen=True)
class PipelinePreset:
    """What `c2c run --preset NAME` does: the data, the training budgets and the evaluation protocol."""

    name: str
    tasks: tuple[str, ...]  # Meta-World tasks (or one group name such as "mt10")
    episodes_per_task: int  # successful scripted demonstrations kept per task
    image_size: int  # square camera images, pixels
    cameras: tuple[str, ...]  # Meta-World cameras recorded
    seed: int  # seed of the demonstration object placements
    description: str
    variants: tuple[str, ...] = ("plan", "noplan")  # policy variants trained with the same budget
    tokenizer_steps: int = 1500  # tokenizer optimisation steps (batch 256)
    tokenizer_codec: dict[str, Any] = field(default_factory=dict)  # CodecConfig overrides (tests use small codebooks)
    backbone: str = "tiny"  # policy backbone preset
    policy_steps: int = 4000  # policy optimisation steps per variant
    policy_batch_size: int = 32
    eval_episodes: int = 10  # closed-loop episodes per task, on placements unseen in training
    eval_max_steps: int = 300  # env steps per episode (the scripted experts need 60-160)
    eval_seed: int = 1000  # seed of the evaluation placements (checked disjoint from the training ones)
    replan_every: int = 10  # actions executed per predicted 20-step chunk
    videos: int = 1  # mp4 videos recorded per task and variant

    def __post_init__(self) -> None:
        for name in ("episodes_per_task", "tokenizer_steps", "policy_steps", "policy_batch_size", "eval_episodes",
                     "eval_max_steps", "replan_every"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"preset {self.name!r}: {name} must be >= 1, got {getattr(self, name)}")
        if self.replan_every > 20:
            raise ConfigError(f"preset {self.name!r}: replan_every must be <= 20 (the exec chunk), got "
                              f"{self.replan_every}")

    def replace(self, **changes: Any) -> PipelinePreset:
        """A copy with some settings changed (``c2c run --policy-steps ...``); the run caches by the new settings."""
        return dataclasses.replace(self, **changes)


PRESETS: dict[str, PipelinePreset] = {
    preset.name: preset
    for preset in (
        PipelinePreset(
            name="quick",
            # reach, a press, a pull and pick-place (multi-stage: approach, grasp, transport, place).
            tasks=("reach-v3", "button-press-topdown-v3", "drawer-open-v3", "pick-place-v3"),
            episodes_per_task=25,  # as the CNN calibration point in REFERENCE
            image_size=96,
            cameras=("corner2", "gripperPOV"),
            seed=0,
            description="4 Meta-World tasks, plan vs noplan with the nano backbone; about 20 minutes on 2 CPU cores",
            tokenizer_steps=300,
            backbone="nano",
            policy_steps=900,
            policy_batch_size=32,
            eval_episodes=10,
            eval_max_steps=160,  # the scripted experts need at most about 100 steps on these tasks
        ),
        PipelinePreset(
            name="mt10",
            tasks=("mt10",),
            episodes_per_task=50,
            image_size=96,
            cameras=("corner2", "gripperPOV"),
            seed=0,
            description="Meta-World MT10, 50 demonstrations per task, all four variants (hours on 2 CPU cores)",
            variants=("plan", "plan-hp40", "noplan", "separate"),
            backbone="nano",
            policy_steps=8000,
            eval_episodes=10,
        ),
        PipelinePreset(
            name="mt50",
            tasks=("mt50",),
            episodes_per_task=50,
            image_size=96,
            cameras=("corner2", "gripperPOV"),
            seed=0,
            description="Meta-World MT50, 50 demonstrations per task, 10 trials per task (SmolVLA's protocol)",
            variants=("plan", "plan-hp40", "noplan", "separate"),
            backbone="tiny",
            policy_steps=30000,
            eval_episodes=10,
        ),
    )
}


def get_preset(name: str) -> PipelinePreset:
    if name in PRESETS:
        return PRESETS[name]
    close = difflib.get_close_matches(name, PRESETS, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise ConfigError(f"unknown preset {name!r} (known: {', '.join(PRESETS)}){hint}")
