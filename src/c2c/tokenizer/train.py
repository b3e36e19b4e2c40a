"""Training of the residual-VQ action tokenizer: `c2c tokenizer train`.

One step draws an equal number of exec chunks (m = 0) and coarse plans (m = 1) (B.4: "equal mode sampling") and
minimises Eq. 19. Checkpoints are written atomically every ``checkpoint_every`` steps; a rerun of the same
command resumes from the last one exactly (weights, optimiser, step; batches are drawn from a generator seeded by
(seed, step), so the data order does not depend on where training stopped).
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from c2c.errors import ConfigError
from c2c.tokenizer.base import MODE_INDEX
from c2c.tokenizer.codec import CodecConfig, RVQCodec
from c2c.tokenizer.data import ChunkSplit, default_spec, load_chunks
from c2c.tokenizer.metrics import code_distribution, overlap_mass, perplexity, usage_fraction
from c2c.tokenizer.rvq_tokenizer import VARIANTS, RVQTokenizer
from c2c.utils.io import atomic_write_json
from c2c.utils.outdir import check_out_dir

CHECKPOINT = "checkpoint.pt"


@dataclass
class TokenizerTrainConfig:
    """Settings of one tokenizer training run."""

    dataset: str  # LeRobot v3 dataset directory
    out: str  # output directory (tokenizer, checkpoint, logs, metrics)
    variant: str = "joint"  # joint | exec-only | separate
    exec_horizon: int = 20  # He (B.3)
    plan_horizon: int = 160  # Hp (B.3)
    plan_steps: int = 20  # K (B.3)
    action_layout: str | None = None  # which action dims are grippers: metaworld | libero | from the action names
    steps: int = 1500  # optimisation steps (about 10 minutes for MT10 on 2 CPU cores)
    batch_size: int = 256  # chunks per step, half of each mode for joint/separate
    lr: float = 1e-3  # AdamW learning rate (the paper does not give the tokenizer's optimiser)
    warmup_steps: int = 100  # linear warm-up, then cosine decay
    weight_decay: float = 1e-4
    grad_clip: float = 1.0
    precision: str = "fp32"  # fp32 | bf16 autocast of the transformers (measured 10-20x slower on this CPU)
    holdout_fraction: float = 0.1  # episodes kept aside for evaluation
    seed: int = 0
    kmeans_samples: int = 32768  # latent vectors used for the k-means initialisation of the codebooks
    dead_code_every: int = 50  # steps between dead-code replacements (0 disables)
    checkpoint_every: int = 500
    eval_every: int = 500
    codec: dict[str, Any] = field(default_factory=dict)  # overrides of CodecConfig fields (model_dim, depth, ...)

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ConfigError(f"--variant must be one of {', '.join(VARIANTS)}, got {self.variant!r}")
        if self.variant != "exec-only" and self.plan_steps != self.exec_horizon:
            raise ConfigError(
                f"plan steps K={self.plan_steps} must equal the exec horizon He={self.exec_horizon}: "
                "both modes go through one codec with the same number of latent positions"
            )
        if self.precision not in ("bf16", "fp32"):
            raise ConfigError(f"--precision must be bf16 or fp32, got {self.precision!r}")
        if self.steps <= 0 or self.batch_size < 2:
            raise ConfigError("--steps must be positive and --batch-size at least 2")


def _lr_factor(step: int, warmup: int, total: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


class _Batches:
    """Normalized chunks as tensors; batches drawn from a generator seeded by (seed, step)."""

    def __init__(self, tokenizer: RVQTokenizer, split: ChunkSplit, seed: int) -> None:
        self.exec = torch.from_numpy(tokenizer.normalizers.action.normalize(split.exec_chunks))  # (N, He, A)
        self.plan = None
        if "plan" in tokenizer.modes:
            self.plan = torch.from_numpy(tokenizer.normalizers.plan.normalize(split.plans))  # (N, K, A)
        self.seed = seed

    def draw(self, step: int, size: int, stream: int = 0) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.seed, stream, step])
        if self.plan is None:
            return {"exec": self.exec[rng.integers(len(self.exec), size=size)]}
        half = size // 2
        return {"exec": self.exec[rng.integers(len(self.exec), size=half)],
                "plan": self.plan[rng.integers(len(self.plan), size=size - half)]}


def _codec_groups(tokenizer: RVQTokenizer) -> dict[str, tuple[RVQCodec, tuple[str, ...]]]:
    """Which codec learns from which modes."""
    if tokenizer.variant == "separate":
        return {"exec": (tokenizer.codecs["exec"], ("exec",)), "plan": (tokenizer.codecs["plan"], ("plan",))}
    return {"shared": (tokenizer.codecs["shared"], tokenizer.modes)}


def _codec_inputs(batch: dict[str, torch.Tensor], modes: tuple[str, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.cat([batch[m] for m in modes])  # (B, H, A)
    mode = torch.cat([torch.full((len(batch[m]),), MODE_INDEX[m], dtype=torch.long) for m in modes])  # (B,)
    return x, mode


@torch.no_grad()
def _kmeans_init(tokenizer: RVQTokenizer, data: _Batches, samples: int, seed: int) -> None:
    for codec, modes in _codec_groups(tokenizer).values():
        chunks = max(1, samples // codec.config.num_positions)
        # Half of each mode when the tokenizer has two; a separate codec keeps only its own mode's half.
        x, mode = _codec_inputs(data.draw(0, 2 * chunks if len(tokenizer.modes) > 1 else chunks, stream=1), modes)
        codec.quantizer.init_from_data(codec.encode_latents(x, mode), seed=seed)


@torch.no_grad()
def evaluate(tokenizer: RVQTokenizer, split: ChunkSplit, max_chunks: int = 20000) -> dict[str, Any]:
    """Held-out L1 per mode (normalized and dataset units), MSE and L1 per action dim (normalized), codebook usage,
    perplexity and overlap mass."""
    metrics: dict[str, Any] = {}
    codes_by_mode = {}
    for mode in tokenizer.modes:
        raw = split.exec_chunks if mode == "exec" else split.plans
        raw = raw[:max_chunks]
        start = time.perf_counter()
        codes = tokenizer.encode(raw, mode)
        recon = tokenizer.decode(codes, mode)
        seconds = time.perf_counter() - start
        norm = tokenizer.normalizer(mode)
        error = norm.normalize(recon) - norm.normalize(raw)  # (N, H, A)
        metrics[f"{mode}/l1"] = float(np.abs(error).mean())
        metrics[f"{mode}/l1_raw"] = float(np.abs(recon - raw).mean())
        metrics[f"{mode}/mse"] = float(np.square(error).mean())
        metrics[f"{mode}/l1_per_dim"] = np.abs(error).mean(axis=(0, 1)).tolist()  # normalized, one per action dim
        metrics[f"{mode}/usage"] = usage_fraction(codes, tokenizer.codebook_size)
        metrics[f"{mode}/perplexity"] = perplexity(codes, tokenizer.codebook_size)
        metrics[f"{mode}/chunks_per_s"] = len(raw) / max(seconds, 1e-9)
        codes_by_mode[mode] = codes
    if tokenizer.variant == "joint":
        p = code_distribution(codes_by_mode["plan"], tokenizer.codebook_size)
        q = code_distribution(codes_by_mode["exec"], tokenizer.codebook_size)
        metrics["overlap_mass"] = overlap_mass(p, q).tolist()  # per level
        both = np.concatenate([codes_by_mode["exec"], codes_by_mode["plan"]])
        metrics["usage"] = usage_fraction(both, tokenizer.codebook_size)
    metrics["heldout_chunks"] = int(min(len(split.exec_chunks), max_chunks))
    return metrics


def _save_checkpoint(path: Path, tokenizer: RVQTokenizer, optimizer: torch.optim.Optimizer, step: int,
                     config: TokenizerTrainConfig) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save({"step": step, "model": tokenizer.codecs.state_dict(), "optimizer": optimizer.state_dict(),
                "config": asdict(config), "torch_rng": torch.get_rng_state()}, tmp)
    tmp.replace(path)


def train_tokenizer(config: TokenizerTrainConfig, show_progress: bool = True,
                    stop_after: int | None = None) -> dict[str, Any] | None:
    """Train (or resume) a tokenizer; returns the final metrics. The tokenizer is saved to ``config.out``.

    ``stop_after`` ends this run after that many steps with a checkpoint (returns None); rerun to continue.
    """
    out = Path(config.out)
    check_out_dir(out)  # a file in the way or a read-only disk: one line now, not after training
    torch.manual_seed(config.seed)
    spec = default_spec(Path(config.dataset), config.exec_horizon,
                        0 if config.variant == "exec-only" else config.plan_horizon, config.plan_steps,
                        config.action_layout)
    train, held, normalizers, data_info = load_chunks(Path(config.dataset), spec, config.holdout_fraction, config.seed)
    codec_config = CodecConfig(action_dim=train.exec_chunks.shape[-1], horizon=config.exec_horizon, **config.codec)
    tokenizer = RVQTokenizer(codec_config, normalizers, config.variant)  # type: ignore[arg-type]
    data = _Batches(tokenizer, train, config.seed)
    optimizer = torch.optim.AdamW(tokenizer.codecs.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    checkpoint_path = out / CHECKPOINT
    start_step = 0
    if checkpoint_path.is_file():
        state = torch.load(checkpoint_path, weights_only=False)
        if state["config"] != asdict(config):
            raise ConfigError(f"{checkpoint_path}: was written with other settings; use a new --out to start over")
        tokenizer.codecs.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start_step = int(state["step"])
        torch.set_rng_state(state["torch_rng"])  # dead-code replacement draws from it
        print(f"resuming from step {start_step} ({checkpoint_path})")
    else:
        _kmeans_init(tokenizer, data, config.kmeans_samples, config.seed)
    atomic_write_json(out / "train_config.json", {**asdict(config), "window_spec": asdict(spec), **data_info})

    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(out / "tensorboard"))
    groups = _codec_groups(tokenizer)
    autocast = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if config.precision == "bf16" else contextlib.nullcontext
    tokenizer.codecs.train()
    bar = tqdm(range(start_step, config.steps), initial=start_step, total=config.steps, desc=f"tokenizer ({config.variant})",
               disable=not show_progress, dynamic_ncols=True)
    started = time.perf_counter()
    for step in bar:
        for group in optimizer.param_groups:
            group["lr"] = config.lr * _lr_factor(step, config.warmup_steps, config.steps)
        batch = data.draw(step, config.batch_size)
        optimizer.zero_grad(set_to_none=True)
        logs: dict[str, float] = {}
        for name, (codec, modes) in groups.items():
            x, mode = _codec_inputs(batch, modes)
            with autocast():
                output = codec(x, mode)
            output.loss.backward()
            logs.update({f"{name}/loss": output.loss.item(), f"{name}/l1": output.l1.item(),
                         f"{name}/commitment": output.commitment.item(), f"{name}/codebook": output.codebook.item()})
            if config.dead_code_every and (step + 1) % config.dead_code_every == 0:
                logs[f"{name}/codes_replaced"] = codec.quantizer.replace_dead_codes(output.latents.detach())
        torch.nn.utils.clip_grad_norm_(tokenizer.codecs.parameters(), config.grad_clip)
        optimizer.step()
        for key, value in logs.items():
            writer.add_scalar(f"train/{key}", value, step)
        bar.set_postfix({k.split("/")[-1] if len(groups) == 1 else k: f"{v:.4f}" for k, v in logs.items() if k.endswith("l1")})
        done = step + 1
        stopping = stop_after is not None and done - start_step >= stop_after and done != config.steps
        if done % config.checkpoint_every == 0 or done == config.steps or stopping:
            _save_checkpoint(checkpoint_path, tokenizer, optimizer, done, config)
        if stopping:
            writer.close()
            return None
        if done % config.eval_every == 0 and done != config.steps and len(held.exec_chunks):
            for key, value in evaluate(tokenizer, held, max_chunks=4000).items():
                if isinstance(value, float):
                    writer.add_scalar(f"heldout/{key}", value, done)
            tokenizer.codecs.train()
    seconds = time.perf_counter() - started
    tokenizer.save_pretrained(out)
    metrics = evaluate(tokenizer, held if len(held.exec_chunks) else train)
    metrics.update({"variant": config.variant, "steps": config.steps, "train_seconds_this_run": round(seconds, 1),
                    "tokens_per_chunk": tokenizer.tokens_per_chunk(), "codebook_size": tokenizer.codebook_size,
                    "num_levels": tokenizer.num_levels})
    atomic_write_json(out / "metrics.json", metrics)
    writer.close()
    return metrics


def format_metrics(metrics: dict[str, Any]) -> str:
    lines = [f"tokenizer ({metrics.get('variant')}), {metrics.get('tokens_per_chunk')} tokens per chunk"]
    for mode in ("exec", "plan"):
        if f"{mode}/l1" in metrics:
            usage = ", ".join(f"{100 * u:.0f}%" for u in metrics[f"{mode}/usage"])
            lines.append(f"  {mode}: held-out L1 {metrics[f'{mode}/l1']:.4f} (normalized), "
                         f"{metrics[f'{mode}/l1_raw']:.5f} (dataset units); codebook usage per level {usage}")
            if f"{mode}/l1_per_dim" in metrics:
                per_dim = ", ".join(f"{value:.4f}" for value in metrics[f"{mode}/l1_per_dim"])
                lines.append(f"    MSE {metrics[f'{mode}/mse']:.5f}; L1 per action dim (normalized) {per_dim}")
    if "overlap_mass" in metrics:
        lines.append("  plan/exec overlap mass per level: " + ", ".join(f"{m:.3f}" for m in metrics["overlap_mass"]))
    return "\n".join(lines)


def load_metrics(directory: Path) -> dict[str, Any]:
    return json.loads((Path(directory) / "metrics.json").read_text())
