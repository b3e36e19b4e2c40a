"""Named pipeline presets (one place, with a "did you mean" on typos)."""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from c2c.errors import ConfigError


@dataclass(frozen=True)
class PipelinePreset:
    """What `c2c run --preset NAME` does."""

    name: str
    tasks: tuple[str, ...]  # Meta-World tasks (or one group name such as "mt10")
    episodes_per_task: int  # successful scripted demonstrations kept per task
    image_size: int  # square camera images, pixels
    cameras: tuple[str, ...]  # Meta-World cameras recorded
    seed: int  # seed of the demonstration object placements
    description: str


PRESETS: dict[str, PipelinePreset] = {
    preset.name: preset
    for preset in (
        PipelinePreset(
            name="quick",
            # reach, a press, a pull and pick-place (multi-stage: approach, grasp, transport, place).
            tasks=("reach-v3", "button-press-topdown-v3", "drawer-open-v3", "pick-place-v3"),
            episodes_per_task=20,
            image_size=96,
            cameras=("corner2", "gripperPOV"),
            seed=0,
            description="4 Meta-World tasks, small budget; at most 20 minutes on 2 CPU cores",
        ),
        PipelinePreset(
            name="mt10",
            tasks=("mt10",),
            episodes_per_task=50,
            image_size=96,
            cameras=("corner2", "gripperPOV"),
            seed=0,
            description="Meta-World MT10, 50 demonstrations per task",
        ),
        PipelinePreset(
            name="mt50",
            tasks=("mt50",),
            episodes_per_task=50,
            image_size=96,
            cameras=("corner2", "gripperPOV"),
            seed=0,
            description="Meta-World MT50, 50 demonstrations per task (SmolVLA's protocol)",
        ),
    )
}


def get_preset(name: str) -> PipelinePreset:
    if name in PRESETS:
        return PRESETS[name]
    close = difflib.get_close_matches(name, PRESETS, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise ConfigError(f"unknown preset {name!r} (known: {', '.join(PRESETS)}){hint}")
