"""Named pipeline presets (one place, with a "did you mean" on typos)."""

from __future__ import annotations

import difflib
import dataclasses
from dataclasses import dataclass, field
from typing import Any

from c2c.errors import ConfigError


SIMULATORS = ("metaworld", "libero")
# LIBERO suites in the order of the paper's Table 1 (Spatial, Object, Goal, Long).
LIBERO_SUITES = ("libero_spatial", "libero_object", "libero_goal", "libero_10")


@dataclass(frozen=True)
class PipelinePreset:
    """What `c2c run --preset NAME` does: the data, the training budgets and the evaluation protocol."""

    name: str
    tasks: tuple[str, ...]  # Meta-World tasks (or one group name such as "mt10"); LIBERO task ids or "all"
    episodes_per_task: int  # successful scripted demonstrations kept per task
    image_size: int  # square camera images, pixels
    cameras: tuple[str, ...]  # Meta-World cameras recorded
    seed: int  # seed of the demonstration object placements
    description: str  # one line; "{backbone}" and "{variants}" are filled in by ``summary``
    variants: tuple[str, ...] = ("plan", "noplan")  # policy variants trained with the same budget
    tokenizer_steps: int = 1500  # tokenizer optimisation steps (batch 256)
    tokenizer_codec: dict[str, Any] = field(default_factory=dict)  # CodecConfig overrides (tests use small codebooks)
    backbone: str = "tiny"  # policy backbone preset
    policy_steps: int = 4000  # policy optimisation steps per variant
    policy_batch_size: int = 32
    eval_episodes: int = 10  # closed-loop episodes per task, on placements unseen in training
    eval_max_steps: int | None = 300  # env steps per episode (Meta-World experts need 60-160); LIBERO: None = the
    # suite's official limit (220 / 280 / 300 / 520)
    eval_seed: int = 1000  # seed of the evaluation placements (checked disjoint from the training ones)
    replan_every: int = 10  # actions executed per predicted 20-step chunk
    videos: int = 1  # mp4 videos recorded per task and variant
    simulator: str = "metaworld"  # metaworld | libero
    suite: str | None = None  # LIBERO suite (libero_spatial | libero_object | libero_goal | libero_10)
    image_shift: int = 0  # random-shift augmentation of training images, pixels (0: off)
    plan_input_noise: float = 0.0  # plan variants: random plan codes in the decoder's input (0: off, the paper's)
    action_noise: float = 0.0  # Meta-World demos: noise injected into the executed actions (DART; 0: off)
    # Meta-World: expert takeovers per task from each trained variant's rollouts (c2c data metaworld-takeover);
    # the variant is then trained again, with the same budget, on the demonstrations plus its takeovers (0: off).
    takeover_episodes: int = 0
    # The takeover round's training: 0 trains each variant again from scratch with the same budget; N > 0 instead
    # fine-tunes its first-round policy for N steps (c2c policy train --init-from) on the same data.
    takeover_finetune_steps: int = 0
    # Intra-op threads of the training stages. 0 adapts to the cores other jobs leave free and hands a finished
    # side-by-side training's cores to the others (fastest on a shared machine, but CPU sums are split by thread, so
    # the weights then depend on the machine's load). N pins them: N for a tokenizer or a policy trained alone,
    # N // k each for k policies side by side, never changed, so a rerun on the same machine repeats bit for bit.
    threads: int = 0

    def __post_init__(self) -> None:
        if self.simulator not in SIMULATORS:
            raise ConfigError(f"preset {self.name!r}: simulator must be one of {', '.join(SIMULATORS)}, got "
                              f"{self.simulator!r}")
        if (self.simulator == "libero") != (self.suite is not None):
            raise ConfigError(f"preset {self.name!r}: a LIBERO preset names its suite, a Meta-World one does not")
        if self.simulator == "metaworld" and self.eval_max_steps is None:
            raise ConfigError(f"preset {self.name!r}: Meta-World evaluation needs eval_max_steps")
        for name in ("episodes_per_task", "tokenizer_steps", "policy_steps", "policy_batch_size", "eval_episodes",
                     "replan_every"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"preset {self.name!r}: {name} must be >= 1, got {getattr(self, name)}")
        if self.eval_max_steps is not None and int(self.eval_max_steps) < 1:
            raise ConfigError(f"preset {self.name!r}: eval_max_steps must be >= 1, got {self.eval_max_steps}")
        if not 0 <= int(self.image_shift) <= 32:
            raise ConfigError(f"preset {self.name!r}: image_shift must lie in [0, 32], got {self.image_shift}")
        if not 0.0 <= float(self.plan_input_noise) < 1.0:
            raise ConfigError(f"preset {self.name!r}: plan_input_noise must lie in [0, 1), got "
                              f"{self.plan_input_noise}")
        if not 0.0 <= float(self.action_noise) <= 1.0:
            raise ConfigError(f"preset {self.name!r}: action_noise must lie in [0, 1], got {self.action_noise}")
        if self.simulator != "metaworld" and self.action_noise:
            raise ConfigError(f"preset {self.name!r}: action_noise applies to Meta-World demonstrations only")
        if int(self.takeover_episodes) < 0:
            raise ConfigError(f"preset {self.name!r}: takeover_episodes must be >= 0, got {self.takeover_episodes}")
        if self.simulator != "metaworld" and self.takeover_episodes:
            raise ConfigError(f"preset {self.name!r}: takeover_episodes applies to Meta-World only")
        if int(self.takeover_finetune_steps) < 0:
            raise ConfigError(f"preset {self.name!r}: takeover_finetune_steps must be >= 0, got "
                              f"{self.takeover_finetune_steps}")
        if self.takeover_finetune_steps and not self.takeover_episodes:
            raise ConfigError(f"preset {self.name!r}: takeover_finetune_steps needs takeover_episodes > 0 (there is "
                              "no takeover round to fine-tune on)")
        if not self.cameras:
            raise ConfigError(f"preset {self.name!r}: cameras must name at least one camera")
        if self.simulator == "libero" and tuple(self.cameras) != ("image", "image2"):
            raise ConfigError(f"preset {self.name!r}: LIBERO demonstrations record both cameras (image, image2); "
                              f"cameras apply to Meta-World presets only, got {', '.join(self.cameras)}")
        if self.simulator == "metaworld":
            from c2c.envs.metaworld_tasks import check_cameras, resolve_tasks  # no simulator import

            try:
                check_cameras(self.cameras)
                resolve_tasks(self.tasks)
            except ConfigError as error:
                raise ConfigError(f"preset {self.name!r}: {error}") from None
        if int(self.threads) < 0:
            raise ConfigError(f"preset {self.name!r}: threads must be >= 0 (0: adapt to the free cores), got "
                              f"{self.threads}")
        from c2c.policy.config import VARIANTS

        unknown = [variant for variant in self.variants if variant not in VARIANTS]
        if unknown or not self.variants or len(set(self.variants)) != len(self.variants):
            raise ConfigError(f"preset {self.name!r}: variants must be distinct names among {', '.join(VARIANTS)}; "
                              f"got {', '.join(self.variants) or 'none'}")
        if self.backbone == "cnn" and set(self.variants) != {"regress"}:
            raise ConfigError(f"preset {self.name!r}: backbone 'cnn' regresses the action chunk and trains variant "
                              f"'regress' only, got {', '.join(self.variants)}; add --variants regress")
        if self.replan_every > 20:
            raise ConfigError(f"preset {self.name!r}: replan_every must be <= 20 (the exec chunk), got "
                              f"{self.replan_every}")
        self._check_image_size()

    def _check_image_size(self) -> None:
        """The policies see the demonstrations' images as they are: a backbone trained from scratch needs a side
        that its patches (or its convolutions' stride) tile; a pretrained one's size is checked when it loads."""
        from c2c.policy.config import PRESETS

        backbone = PRESETS.get(self.backbone)
        if backbone is None or backbone.pretrained:
            return
        patch = int(backbone.vision["patch_size"])
        if int(self.image_size) < patch or int(self.image_size) % patch:
            sizes = ", ".join(str(patch * k) for k in range(max(1, int(self.image_size) // patch - 1),
                                                             int(self.image_size) // patch + 3))
            raise ConfigError(f"preset {self.name!r}: image_size {self.image_size} is not a multiple of the "
                              f"{self.backbone!r} backbone's {patch}-px patch; choose e.g. {sizes}")

    @property
    def summary(self) -> str:
        """The description with this preset's backbone and variants filled in (``--backbone`` and ``--variants``
        may have changed them)."""
        variants = " vs ".join(self.variants)
        summary = self.description.replace("{backbone}", self.backbone).replace("{variants}", variants)
        if self.takeover_episodes and self.takeover_finetune_steps:
            summary += (f"; then {self.takeover_episodes} expert takeovers per task from each variant's rollouts and "
                        f"{self.takeover_finetune_steps} steps of fine-tuning on them")
        elif self.takeover_episodes:  # the description's time is for one training round
            summary += (f"; then {self.takeover_episodes} expert takeovers per task from each variant's rollouts and "
                        f"a second training round (more than twice as long)")
        return summary

    def replace(self, **changes: Any) -> PipelinePreset:
        """A copy with some settings changed (``c2c run --policy-steps ...``); the run caches by the new settings."""
        return dataclasses.replace(self, **changes)


def metaworld_benchmark_preset(group: str, backbone: str, policy_steps: int, *, protocol: str = "",
                               note: str = "") -> PipelinePreset:
    """A Meta-World benchmark (``mt10``, ``mt50``): 50 demonstrations per task from both cameras, the paper's four
    variants, 10 evaluation episodes per task; ``protocol`` and ``note`` go into the description."""
    return PipelinePreset(
        name=group,
        tasks=(group,),
        episodes_per_task=50,
        image_size=96,
        cameras=("corner2", "gripperPOV"),
        seed=0,
        description=f"Meta-World {group.upper()}, 50 demonstrations per task, {protocol}{{variants}} with the "
        f"{{backbone}} backbone{note}",
        variants=("plan", "plan-hp40", "noplan", "separate"),
        backbone=backbone,
        policy_steps=policy_steps,
        eval_episodes=10,
    )


PRESETS: dict[str, PipelinePreset] = {
    preset.name: preset
    for preset in (
        PipelinePreset(
            name="quick",
            # A press, two pulls and hammer (multi-stage: grasp the hammer, carry it, strike the nail), all with their
            # targets in view. Until 2026-12-06 reach and pick-place stood in place of door-open and hammer: their
            # goal markers are 1-2 px at 96 px, no learner solved them (0-6/30) and every row scored 18-38%, so
            # the benchmark could not tell learners apart. On these tasks, at the same budget and 30 validation
            # placements per task: noplan 65% (56-73), regress 65% (56-73), plan 45% (36-54)
            # (docs/results/quick-benchmark-levers-2026-12-06.md; c2c ablate --study levers).
            tasks=("button-press-topdown-v3", "drawer-open-v3", "door-open-v3", "hammer-v3"),
            episodes_per_task=25,  # as the CNN calibration point in REFERENCE
            image_size=96,
            # The primary view only (as the paper's SimplerEnv setup and REFERENCE's CNN calibration point). With
            # the wrist camera too, nano trains 1.2x slower (39.4 vs 32.8 samples/s, one thread) and its plan policy
            # scored no better on 120 validation placements (32% vs 31%; docs/results/
            # readme-records-until-2026-12-06.md, "Cameras").
            cameras=("corner2",),
            seed=0,
            description="4 Meta-World tasks, {variants} with the {backbone} backbone; about 20 minutes on 2 CPU "
            "cores",
            # The paper's method, its no-plan ablation and the strongest baseline of the representation study.
            variants=("plan", "noplan", "regress"),
            tokenizer_steps=300,
            backbone="nano",
            policy_steps=900,
            policy_batch_size=32,
            eval_episodes=10,
            eval_max_steps=160,  # the scripted experts need at most about 100 steps on these tasks
            threads=2,  # its budget is set on 2 cores; pinned, so that two runs of `make demo` agree bit for bit
        ),
        # MT10 with App. C.3's multi-stream model at CPU size. At the same reduced budget (2000 steps x 32, 5 unseen
        # placements per task) its plan policy scored 56% on MT10 against nano's 40%
        # (docs/results/readme-records-until-2026-12-06.md); on the quick preset's 4 tasks the order was the
        # reverse (28% vs 38%), so quick keeps nano.
        metaworld_benchmark_preset("mt10", "tiny-multistream", 8000, note=" (hours on 2 CPU cores)"),
        metaworld_benchmark_preset("mt50", "tiny", 30000, protocol="10 trials per task (SmolVLA's protocol), "),
    )
}


def _libero_preset(suite: str) -> PipelinePreset:
    """One LIBERO suite end to end: our scripted demonstrations (random placements, never the official init states)
    -> joint tokenizer (7-dim actions: 42 tokens per branch) -> plan and noplan -> the official protocol (init
    states 0..N-1 of each task, 10 wait steps, the suite's step limit)."""
    short = suite.removeprefix("libero_")
    return PipelinePreset(
        name=f"libero-{short}",
        tasks=("all",),
        episodes_per_task=50,  # as LIBERO's own datasets
        image_size=96,
        cameras=("image", "image2"),  # agentview and wrist, upright
        seed=0,
        description=f"LIBERO {short}: our scripted demonstrations, {{variants}} with the {{backbone}} backbone, the "
        "official evaluation protocol (hours on 2 CPU cores)",
        simulator="libero",
        suite=suite,
        tokenizer_steps=1500,
        backbone="nano",
        policy_steps=6000,
        eval_episodes=50,  # trials per task (init states 0..49), the protocol's number
        eval_max_steps=None,
        eval_seed=7,  # LIBERO's global seed during evaluation (openpi's LIBERO example uses 7)
        replan_every=10,
    )


PRESETS.update({preset.name: preset for preset in map(_libero_preset, LIBERO_SUITES)})
# ``c2c run --preset libero`` runs the four suite presets above one after the other and writes one Table 1.
SUITE_GROUPS: dict[str, tuple[str, ...]] = {"libero": tuple(f"libero-{s.removeprefix('libero_')}" for s in LIBERO_SUITES)}


def get_preset(name: str) -> PipelinePreset:
    if name in PRESETS:
        return PRESETS[name]
    known = [*PRESETS, *SUITE_GROUPS]
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise ConfigError(f"unknown preset {name!r} (known: {', '.join(known)}){hint}")
