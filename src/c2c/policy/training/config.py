"""Settings of one policy training run: :class:`PolicyTrainConfig`, the optimiser defaults of each backbone preset
(:data:`OPTIMIZER_DEFAULTS`, the one place for them) and the learning-rate schedule (:func:`lr_at`).

Example::

    config = PolicyTrainConfig(dataset="data/mw10", tokenizer="runs/tok", out="runs/plan", preset="nano")
    config.lr, config.warmup_steps    # the preset's defaults: 2e-3, 100
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from c2c.errors import ConfigError
from c2c.policy.config import VARIANTS, PolicyConfig, get_preset, policy_config
from c2c.policy.training.distributed import Launch, check_device, read_launch
from c2c.policy.training.memory import EMA_MODES, MemoryOptions

TRAINING_DATA_FILE = "training_data.json"  # the training dataset's generator record (c2c extra info)


@dataclass(frozen=True)
class OptimizerDefaults:
    lr: float  # peak AdamW learning rate
    warmup_steps: int  # linear warm-up, then cosine decay
    weight_decay: float  # AdamW weight decay (on matrices only)
    ema_decay: float  # EMA decay of the weights


# The one place for optimiser defaults. paligemma-3b: the paper's C.2 / Table 9 (AdamW 2.5e-5, 1k warm-up, cosine,
# weight decay 1e-10), for a pretrained backbone. tiny / debug are trained from scratch, which the paper does not
# do: a random 5 M-parameter transformer needs a ~10x larger step (GPT-2-small-sized models train at 6e-4) and CPU
# budgets are a few thousand steps, hence a 200-step warm-up; weight decay 0.01 is the usual from-scratch value.
OPTIMIZER_DEFAULTS: dict[str, OptimizerDefaults] = {
    "paligemma-3b": OptimizerDefaults(lr=2.5e-5, warmup_steps=1000, weight_decay=1e-10, ema_decay=0.999),
    "tiny": OptimizerDefaults(lr=3e-4, warmup_steps=200, weight_decay=1e-2, ema_decay=0.999),
    # nano at 2e-3: on the quick preset (900 x 32) it raised held-out exec token accuracy from 55% (5e-4) and 63%
    # (1e-3) to 67% and cut the decoded exec L1 from 0.134 to 0.095; closed-loop success on 120 validation
    # placements (seeds 2000 and 3000) stayed within noise (29%, 32.5%, 32%). README, "Learning rate".
    "nano": OptimizerDefaults(lr=2e-3, warmup_steps=100, weight_decay=1e-2, ema_decay=0.995),
    "debug": OptimizerDefaults(lr=1e-3, warmup_steps=10, weight_decay=1e-2, ema_decay=0.99),
}
# The multi-stream presets (App. C.3), nano-conv and nano-keypoints train like their counterparts, except
# tiny-multistream, which keeps the 5e-4 of its reported MT10 runs.
OPTIMIZER_DEFAULTS.update({"nano-conv": OPTIMIZER_DEFAULTS["nano"], "nano-keypoints": OPTIMIZER_DEFAULTS["nano"],
                           "paligemma-3b-multistream": OPTIMIZER_DEFAULTS["paligemma-3b"],
                           "tiny-multistream": OptimizerDefaults(lr=5e-4, warmup_steps=100, weight_decay=1e-2,
                                                                 ema_decay=0.995),
                           "debug-multistream": OPTIMIZER_DEFAULTS["debug"],
                           # cnn (regress): held-out exec L1 after the quick preset's 900 x 32 on its data, one
                           # camera: 0.113 at 3e-4, 0.093 at 1e-3, 0.086 at 3e-3 (the q01/q99 midpoint: 0.359).
                           "cnn": OptimizerDefaults(lr=3e-3, warmup_steps=100, weight_decay=1e-2, ema_decay=0.995)})
FINAL_LR_FRACTION = 0.1  # cosine decay ends at 10% of the peak (openpi's pi0-FAST schedule: 2.5e-5 -> 2.5e-6)


@dataclass
class PolicyTrainConfig:
    """Settings of one policy training run (None: the preset's default from OPTIMIZER_DEFAULTS)."""

    dataset: str  # LeRobot v3 dataset directory
    tokenizer: str | None  # trained action tokenizer directory (frozen); None: regress, or binning fitted on the data
    out: str  # output directory (policy checkpoint, training state, logs, metrics)
    variant: str = "plan"  # plan | plan-hp40 | noplan | separate
    preset: str = "tiny"  # backbone preset: tiny | debug | paligemma-3b
    backbone_path: str | None = None  # local PaliGemma directory (pretrained presets)
    cameras: list[str] | None = None  # cameras to use, primary first (default: all of the dataset's, in order)
    exec_horizon: int = 20  # He; must match the tokenizer's window spec
    plan_steps: int = 20  # K
    steps: int = 2000  # optimisation steps
    batch_size: int = 16  # samples per process per micro-step (effective batch: x grad_accum x processes)
    grad_accum: int = 1  # micro-steps per optimisation step
    lr: float | None = None  # peak learning rate
    warmup_steps: int | None = None  # default: the preset's, at most a fifth of the run
    weight_decay: float | None = None
    ema_decay: float | None = None
    grad_clip: float = 1.0  # gradient norm clip
    precision: str = "fp32"  # fp32 | bf16 (autocast, fp32 master weights) | bf16-weights (pi0-FAST's); memory.py
    gradient_checkpointing: bool = False  # recompute vision and decoder layers in the backward pass
    freeze_vision: bool = False  # keep the vision tower's weights fixed
    lora_rank: int = 0  # LoRA adapters of this rank on the decoder (0: full fine-tuning)
    ema: str = "on"  # on | cpu | bf16 | off: where the weight EMA lives (memory.py)
    parallel: str = "auto"  # auto | ddp | fsdp, with several processes (distributed.py)
    global_batch_size: int | None = None  # when set: batch_size = global / (processes x grad_accum), exactly
    loader: str = "auto"  # memory | stream | auto: images in RAM, or decoded per sample by DataLoader workers
    workers: int = 0  # DataLoader workers per process (streaming loader; 0: in the training process)
    holdout_fraction: float | None = None  # default: the tokenizer's, so the same episodes are held out
    holdout_seed: int | None = None  # default: the tokenizer's
    seed: int = 0  # weight initialisation and data order
    checkpoint_every: int = 500
    eval_every: int = 500  # held-out evaluation every this many steps (and at the end)
    eval_frames: int = 512  # held-out frames of the teacher-forced evaluation
    decode_frames: int = 64  # held-out frames decoded greedily for the exec-chunk L1
    eval_batch_size: int = 16
    max_image_gb: float = 8.0  # refuse datasets whose images would need more memory
    resize_images: bool = False  # resize dataset images to the preset's size with PIL (else a size mismatch fails)
    image_shift: int = 0  # random-shift augmentation: shift training images by up to this many pixels (0: off)
    # Plan variants: each plan code the decoder READS is replaced by a random code with this probability (the targets
    # stay the true codes), so that the exec tokens learn to follow imperfect generated plans. 0 (the paper's
    # teacher forcing) by default; an extension (docs/results/plan-vs-noplan-2026-12-07.md).
    plan_input_noise: float = 0.0
    device: str = "cpu"  # torch device of the weights and batches: cpu | cuda | cuda:N (one process)
    init_from: str | None = None  # start from this trained policy's weights (its EMA), e.g. after takeovers
    policy: dict[str, Any] = field(default_factory=dict)  # other PolicyConfig fields (token_order, state_encoding)

    def __post_init__(self) -> None:
        if self.preset not in OPTIMIZER_DEFAULTS:
            get_preset(self.preset)  # "did you mean" for typos
            raise ConfigError(f"--preset {self.preset!r} has no optimiser defaults in OPTIMIZER_DEFAULTS")
        self.memory_options()  # checks precision and LoRA rank
        if self.ema not in EMA_MODES:
            raise ConfigError(f"--ema must be one of {', '.join(EMA_MODES)}, got {self.ema!r}")
        if self.loader not in ("auto", "memory", "stream"):
            raise ConfigError(f"--loader must be auto, memory or stream, got {self.loader!r}")
        if int(self.workers) < 0:
            raise ConfigError(f"--workers must be >= 0, got {self.workers}")
        if self.global_batch_size is not None and int(self.global_batch_size) < 1:
            raise ConfigError(f"--global-batch-size must be >= 1, got {self.global_batch_size}")
        if not 0 <= int(self.image_shift) <= 32:
            raise ConfigError(f"--image-shift must lie in [0, 32] pixels, got {self.image_shift}")
        if not 0.0 <= float(self.plan_input_noise) < 1.0:
            raise ConfigError(f"--plan-input-noise must lie in [0, 1), got {self.plan_input_noise}")
        if self.plan_input_noise and not VARIANTS[self.variant].plan_horizon:
            raise ConfigError(f"--plan-input-noise {self.plan_input_noise}: variant {self.variant!r} has no plan "
                              "tokens; drop the option or train a plan variant")
        for name in ("steps", "batch_size", "grad_accum", "checkpoint_every", "eval_every", "eval_batch_size"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        check_device(self.device)
        defaults = OPTIMIZER_DEFAULTS[self.preset]
        self.lr = defaults.lr if self.lr is None else self.lr
        if self.warmup_steps is None:  # a short run still reaches its peak learning rate
            self.warmup_steps = min(defaults.warmup_steps, max(1, self.steps // 5))
        self.weight_decay = defaults.weight_decay if self.weight_decay is None else self.weight_decay
        self.ema_decay = defaults.ema_decay if self.ema_decay is None else self.ema_decay
        if not 0.0 <= self.ema_decay < 1.0:
            raise ConfigError(f"--ema-decay must lie in [0, 1), got {self.ema_decay}")

    def memory_options(self) -> MemoryOptions:
        return MemoryOptions(precision=self.precision, gradient_checkpointing=self.gradient_checkpointing,
                             freeze_vision=self.freeze_vision, lora_rank=self.lora_rank)

    def launch(self) -> Launch:
        """This process's device, world size and strategy, checked before any data is read."""
        launch = read_launch(self.device, self.parallel, self.preset, self.precision, self.global_batch_size,
                             self.batch_size, self.grad_accum)
        if launch.strategy == "fsdp" and self.precision == "bf16-weights":
            raise ConfigError("--precision bf16-weights with FSDP: FSDP shards need one dtype per layer; use "
                              "--precision bf16 (FSDP keeps 1/N of the fp32 master weights per process and "
                              "all-gathers them in bf16)")
        if launch.strategy == "fsdp" and self.ema == "cpu":
            raise ConfigError("--ema cpu with FSDP: the EMA is already sharded across processes; use --ema on or "
                              "bf16")
        if self.global_batch_size is not None:
            self.batch_size = self.global_batch_size // (launch.world_size * self.grad_accum)
        return launch

    def policy_config(self, dataset_cameras: list[str], tokenizer: Any) -> PolicyConfig:
        """The policy's config: cameras from the dataset, state and action sizes from the tokenizer."""
        cameras = tuple(self.cameras or dataset_cameras)
        return policy_config(self.preset, variant=self.variant, cameras=cameras, exec_horizon=self.exec_horizon,
                             plan_steps=self.plan_steps, backbone_path=self.backbone_path, seed=self.seed,
                             state_dim=tokenizer.normalizers.state.dim, action_dim=tokenizer.config.action_dim,
                             **self.policy)


def lr_at(step: int, config: PolicyTrainConfig) -> float:
    """Linear warm-up to the peak, then cosine decay to FINAL_LR_FRACTION of it (C.2)."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    progress = min(1.0, (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps))
    cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
    return config.lr * (FINAL_LR_FRACTION + (1 - FINAL_LR_FRACTION) * cosine)
