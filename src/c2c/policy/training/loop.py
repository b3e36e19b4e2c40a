"""The training loop of the plan-then-execute policy: `c2c policy train` (paper Sec. 3.2, Appendix C.1-C.2).

One step: teacher-forced next-token loss over the whole suffix [plan][exec][end] (Eq. 9) against the frozen
tokenizer's codes, AdamW with linear warm-up and cosine decay, gradient clipping at 1.0, optional gradient
accumulation, and an exponential moving average (EMA) of the weights, which is what evaluation uses (C.3).

Exact resume: checkpoints (``checkpoint.py``: model, EMA and optimiser as sharded DCP files, the step in a small
JSON) are written atomically every ``checkpoint_every`` steps and a rerun of the same command continues from the
last one; batches are drawn from a generator seeded by (seed, step), so the data order does not depend on where
training stopped.

Scale (``distributed.py``, ``memory.py``): under ``torchrun`` or ``accelerate launch`` (``WORLD_SIZE`` > 1), every
process trains on its own slice of each step's batch, on ``cuda:LOCAL_RANK`` over NCCL or on the CPU over gloo, with
DDP or FSDP2; ``c2c policy train --num-processes N`` starts the processes on one node. bf16, gradient checkpointing,
a frozen vision tower, LoRA and the EMA's placement are options. Large datasets stream from disk in DataLoader
workers (``--loader stream``).

Output directory: a complete policy checkpoint (``PlanExecutePolicy.from_pretrained(out)`` loads the EMA weights;
it loads on one device or the CPU whatever trained it) plus ``checkpoint/``, ``train_config.json``,
``training_data.json`` (the dataset's generator record, placement seeds included), ``metrics.json``,
``curves.png``, ``tensorboard/`` and ``codes/`` (the cached target codes).

Settings and optimiser defaults: ``config.py``; several processes on one node: ``launch.py``.

Example::

    config = PolicyTrainConfig(dataset="data/mw10", tokenizer="runs/tok", out="runs/plan", variant="plan",
                               preset="tiny", steps=2000)
    metrics = train_policy(config)        # rerun to resume; metrics["heldout"]["exec_l1"]
"""

from __future__ import annotations

import copy
import json
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from c2c.constants import camera_name, image_key
from c2c.errors import C2CError, ConfigError
from c2c.policy.config import PolicyConfig
from c2c.policy.policy import PlanExecutePolicy
from c2c.policy.processing import PLAN_CODES, PLAN_INPUT_CODES
from c2c.policy.training.checkpoint import CHECKPOINT, load_checkpoint, read_state, save_checkpoint
from c2c.policy.training.config import TRAINING_DATA_FILE, PolicyTrainConfig, lr_at
from c2c.policy.training.data import (PolicyData, batch_loader, draw_frames, load_policy_data, random_shift,
                                      training_action_tokenizer)
from c2c.policy.training.distributed import Processes
from c2c.policy.training.evaluation import TrainingRun
from c2c.policy.training.memory import (WeightEMA, apply_memory_options, autocast_dtype, cast_bf16_weights,
                                        trainable_parameters)
from c2c.utils.io import atomic_write_json
from c2c.utils.outdir import check_out_dir


# --- checkpoints -------------------------------------------------------------------------------------------------
def _comparable(config: PolicyTrainConfig) -> dict[str, Any]:
    """The settings a checkpoint must share with a run that resumes it (not where or how fast data is read)."""
    ignored = ("checkpoint_every", "eval_every", "device", "loader", "workers")
    if not config.plan_input_noise:  # as before the option existed: checkpoints of earlier runs still resume
        ignored += ("plan_input_noise",)
    if config.global_batch_size is not None:  # the per-process batch follows the process count
        ignored += ("batch_size",)
    return {k: v for k, v in asdict(config).items() if k not in ignored}


def resumable_step(config: PolicyTrainConfig) -> int | None:
    """The step of the checkpoint in ``config.out`` when it was written with these settings (so that training
    resumes from it), else None (no checkpoint, or one of other settings). Reads a small JSON only."""
    state = read_state(Path(config.out))
    if state is None:
        return None
    return int(state["step"]) if state.get("settings") == json.loads(json.dumps(_comparable(config))) else None


def init_weights(policy: PlanExecutePolicy, source: str | Path) -> None:
    """Copy a trained policy's weights (its EMA when saved, as evaluation uses) into ``policy``: fine-tuning, e.g.
    on a dataset extended by expert takeovers. The two must agree on everything but the seed: backbone, variant,
    cameras, horizons, vocabulary and the action tokenizer (its weights and statistics included)."""
    source = Path(source)
    trained = PlanExecutePolicy.from_pretrained(source)
    mine, theirs = policy.config.to_dict(), trained.config.to_dict()
    differ = sorted(k for k in set(mine) | set(theirs) if k != "seed" and mine.get(k) != theirs.get(k))
    if differ:
        raise ConfigError(f"--init-from {source}: the policy there differs from this training's in "
                          f"{', '.join(differ)} ({', '.join(f'{k}={theirs.get(k)!r}' for k in differ)})")
    if not policy.action_tokenizer.same_as(trained.action_tokenizer):
        raise ConfigError(f"--init-from {source}: it was trained with another action tokenizer than --tokenizer "
                          "(codebooks or statistics differ); fine-tune with the tokenizer it was trained with")
    words = [p.instruction_tokenizer.tokenizer.get_vocab() for p in (trained, policy)]
    if trained.model.vocabulary != policy.model.vocabulary or words[0] != words[1]:
        raise ConfigError(f"--init-from {source}: its vocabulary ({trained.model.vocabulary.to_dict()}) or its "
                          "instruction tokens differ from this dataset's: the datasets' instructions differ")
    try:
        policy.model.load_state_dict(trained.model.state_dict())
    except RuntimeError as err:
        first_line = str(err).splitlines()[0]
        raise ConfigError(f"--init-from {source}: its weights do not fit this policy ({first_line})") from None


def make_optimizer(model: torch.nn.Module, config: PolicyTrainConfig) -> torch.optim.AdamW:
    """AdamW; weight decay on matrices only (not on biases, norms or the state projection's bias)."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.ndim >= 2], "weight_decay": config.weight_decay},
              {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=config.lr)


# --- training ----------------------------------------------------------------------------------------------------
def train_policy(config: PolicyTrainConfig, show_progress: bool = True, stop_after: int | None = None,
                 resume: bool = False) -> dict[str, Any] | None:
    """Train (or resume) a policy; returns the final metrics (None on the other processes of a parallel run).
    ``stop_after`` ends this run after that many steps with a checkpoint (returns None): rerun to continue.
    ``resume`` insists that a checkpoint exists."""
    from c2c.data.lerobot import LeRobotDataset

    launch = config.launch()  # device, world size and batch split are checked before any data is read
    out = Path(config.out)
    check_out_dir(out)  # a file in the way or a read-only disk: one line now, not after training
    state = read_state(out)
    if resume and state is None:
        raise ConfigError(f"--resume: {out / CHECKPOINT} does not exist (nothing to resume)")
    dataset_cameras = [camera_name(key) for key in LeRobotDataset(config.dataset).camera_keys]
    if not dataset_cameras and not config.cameras:
        raise ConfigError(f"{config.dataset}: the dataset has no cameras; a VLA policy needs images")
    tokenizer = training_action_tokenizer(config.variant, config.tokenizer, config.dataset,
                                          exec_horizon=config.exec_horizon, holdout_fraction=config.holdout_fraction,
                                          holdout_seed=config.holdout_seed, init_from=config.init_from)
    policy_cfg = config.policy_config(dataset_cameras, tokenizer)
    out.mkdir(parents=True, exist_ok=True)
    processes = Processes(launch)
    try:
        return _train(config, policy_cfg, tokenizer, processes, state, show_progress, stop_after)
    finally:
        processes.close()


def _train(config: PolicyTrainConfig, policy_cfg: PolicyConfig, tokenizer: Any, processes: Processes,
           state: dict[str, Any] | None, show_progress: bool, stop_after: int | None) -> dict[str, Any] | None:
    from c2c.data.lerobot import LeRobotDataset

    out, device = Path(config.out), processes.device
    if processes.is_main:  # one process computes (or reads) the cached codes; the others then read them
        data = _load_data(config, policy_cfg, tokenizer)
    processes.wait()
    if not processes.is_main:
        data = _load_data(config, policy_cfg, tokenizer)
    torch.manual_seed(config.seed)
    policy = PlanExecutePolicy.build(policy_cfg, tokenizer, instructions=data.instructions)
    if config.init_from and state is None:  # a resume reads its own checkpoint instead
        init_weights(policy, config.init_from)
    memory = apply_memory_options(policy.model, config.memory_options())
    # An unsharded copy on the CPU of the main process: held-out evaluation and the saved policy load into it.
    template = copy.deepcopy(policy).eval() if processes.is_main else None
    if config.precision == "bf16-weights":  # after the copy: evaluation and the saved policy stay fp32
        cast_bf16_weights(policy.model)
    policy.to(device)  # the weights are initialised on the CPU, so a seed gives the same start everywhere
    model = processes.wrap(policy, config.precision)
    trainable = trainable_parameters(policy.model)
    ema = WeightEMA(trainable, config.ema_decay, config.ema)
    optimizer = make_optimizer(policy.model, config)
    start_step, history = 0, {"train": [], "heldout": []}
    if state is not None:
        start_step, history = load_checkpoint(out, model=policy, optimizer=optimizer, ema=ema.averages,
                                              settings=json.loads(json.dumps(_comparable(config))))
        if processes.is_main:
            print(f"resuming from step {start_step} ({out / CHECKPOINT})")
    if processes.is_main:
        atomic_write_json(out / "train_config.json", {
            **asdict(config), "policy_config": policy_cfg.to_dict(), "processes": processes.count,
            "strategy": processes.launch.strategy, "memory": memory, **data.info})
        # What the demonstrations were made from (simulator, tasks, placement seeds), kept with the checkpoint so
        # that closed-loop evaluation can refuse seeds the policy saw, even after the dataset is gone.
        atomic_write_json(out / TRAINING_DATA_FILE, {"dataset": str(config.dataset),
                                                     "c2c": LeRobotDataset(config.dataset).extra_info})
    policy.train()
    run = TrainingRun(config, processes, policy, template, ema, trainable, data)
    writer = _writer(out, start_step) if processes.is_main else None
    autocast = torch.autocast(device.type, dtype=autocast_dtype(config.precision) or torch.bfloat16,
                              enabled=config.precision != "fp32")
    bar = tqdm(range(start_step, config.steps), initial=start_step, total=config.steps, dynamic_ncols=True,
               desc=f"policy ({config.variant})", disable=not (show_progress and processes.is_main))
    first_frames, started, samples = None, time.perf_counter(), 0
    _note_threads(history, start_step)
    for step, micro_batches in zip(bar, _batches(config, data, processes, start_step)):
        if first_frames is None:
            first_frames = _frames_of_step(config, data, processes, step)[0].tolist()
        lr, logs = optimisation_step(model, policy, optimizer, ema, trainable, micro_batches, config, processes,
                                     autocast, step)
        if step % 20 == 0:
            _follow_thread_file()
            _note_threads(history, step + 1)
        samples += config.batch_size * config.grad_accum * processes.count
        done = step + 1
        history["train"].append({"step": done, "loss": logs["loss"], "accuracy/exec": logs["accuracy/exec"]})
        if writer is not None:
            for key, value in logs.items():
                writer.add_scalar(f"train/{key}", value, done)
            writer.add_scalar("train/lr", lr, done)
            bar.set_postfix(loss=f"{logs['loss']:.3f}", exec_acc=f"{logs['accuracy/exec']:.3f}", lr=f"{lr:.1e}")
        stopping = stop_after is not None and done - start_step >= stop_after and done != config.steps
        if done % config.eval_every == 0 and done != config.steps:
            run.evaluate_and_log(history, writer, done)
        if done % config.checkpoint_every == 0 or done == config.steps or stopping:
            save_checkpoint(out, step=done, model=policy, optimizer=optimizer, ema=ema.averages, history=history,
                            settings=_comparable(config), processes=processes)
        if stopping:
            if writer is not None:
                writer.close()
            return None
    seconds = time.perf_counter() - started
    # What each process trained on first, and a checksum of its weights (DDP must have kept them identical).
    checksum = 0.0 if processes.sharded else float(sum(p.detach().double().sum() for p in policy.model.parameters()))
    first_frames_all, checksums = zip(*processes.gather((first_frames, checksum)))
    if len(set(checksums)) > 1:
        raise C2CError(f"the {processes.count} training processes ended with different weights ({checksums})")
    metrics = run.finish(history, writer)
    if processes.is_main:
        metrics.update({"samples_per_s": round(samples / max(seconds, 1e-9), 2),
                        "train_seconds_this_run": round(seconds, 1), "first_batch_frames": list(first_frames_all),
                        "strategy": processes.launch.strategy, "memory": memory})
        atomic_write_json(out / "metrics.json", metrics)
    processes.wait()
    return metrics if processes.is_main else None


THREADS_FILE_ENV = "C2C_THREADS_FILE"  # a file holding the intra-op thread count this process should use


def _note_threads(history: dict[str, list], step: int) -> None:
    """Append ``{"step", "threads"}`` to ``history["threads"]`` when the intra-op thread count differs from the last
    entry: CPU sums are split by thread, so the weights depend on this schedule (a run repeats bit for bit only
    with the same one; ``c2c run --threads`` pins it)."""
    schedule = history.setdefault("threads", [])
    threads = torch.get_num_threads()
    if not schedule or schedule[-1]["threads"] != threads:
        schedule.append({"step": step, "threads": threads})


def _follow_thread_file() -> None:
    """Adopt the thread count written into ``$C2C_THREADS_FILE``, if set: a launcher that runs several trainings
    side by side raises it for the ones still running when another finishes (its core would idle otherwise)."""
    path = os.environ.get(THREADS_FILE_ENV)
    if not path:
        return
    try:
        threads = int(Path(path).read_text().strip() or 0)
    except (OSError, ValueError):
        return
    if threads >= 1 and threads != torch.get_num_threads():
        torch.set_num_threads(threads)


def _batches(config: PolicyTrainConfig, data: PolicyData, processes: Processes, start_step: int):
    """Per step from ``start_step``, this process's micro-batches, built ahead by ``config.workers`` DataLoader
    workers when asked (the same batches for any worker count)."""
    return batch_loader(data, lambda step: _frames_of_step(config, data, processes, step),
                        range(start_step, config.steps), workers=config.workers,
                        pin_memory=processes.device.type == "cuda")


def _frames_of_step(config: PolicyTrainConfig, data: PolicyData, processes: Processes, step: int) -> np.ndarray:
    """(grad_accum, B): this process's share of the step's frames."""
    return draw_frames(data.train_frames, config.seed, step, config.batch_size, config.grad_accum,
                       processes.count)[:, processes.rank]


def optimisation_step(model: torch.nn.Module, policy: PlanExecutePolicy, optimizer: torch.optim.Optimizer,
                      ema: WeightEMA, trainable: dict[str, torch.Tensor], micro_batches: list[dict[str, Any]],
                      config: PolicyTrainConfig, processes: Processes, autocast: Any,
                      step: int) -> tuple[float, dict[str, float]]:
    """One step of the loop: the step's learning rate, :func:`train_step`, then the EMA update; returns the learning
    rate and the step's metrics (``c2c.policy.training.timing`` times this same step)."""
    lr = lr_at(step, config)
    for group in optimizer.param_groups:
        group["lr"] = lr
    logs = train_step(model, policy, optimizer, micro_batches, config, processes, autocast, step)
    ema.update(trainable, step)
    return lr, logs


def train_step(model: torch.nn.Module, policy: PlanExecutePolicy, optimizer: torch.optim.Optimizer,
                micro_batches: list[dict[str, Any]], config: PolicyTrainConfig, processes: Processes, autocast: Any,
                step: int = 0) -> dict[str, float]:
    """One optimisation step over grad_accum micro-batches (``model`` is ``policy``, DDP-wrapped or FSDP-sharded
    when several processes train); returns the metrics averaged over micro-steps and processes."""
    optimizer.zero_grad(set_to_none=True)
    sums: dict[str, float] = {}
    for micro, batch in enumerate(micro_batches):
        if config.image_shift:  # augmentation drawn from (seed, step, rank, micro-step): resumes reproduce it
            rng = np.random.default_rng([config.seed, step, processes.rank, micro])
            for camera in policy.config.cameras:
                images = batch[image_key(camera)]
                images = images.numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
                batch[image_key(camera)] = random_shift(images, config.image_shift, rng)
        if config.plan_input_noise and PLAN_CODES in batch:  # drawn from (seed, step, rank, micro-step) too
            batch[PLAN_INPUT_CODES] = noisy_plan_codes(batch[PLAN_CODES], config.plan_input_noise,
                                                       policy.action_tokenizer.codebook_size,
                                                       np.random.default_rng([config.seed, step, processes.rank,
                                                                              micro, 1]))
        with processes.no_sync(model, skip=micro < len(micro_batches) - 1):
            with autocast:
                loss, metrics = model(batch)  # Eq. 9 over [plan][exec][end]
            (loss / config.grad_accum).backward()
        for key, value in metrics.items():
            sums[key] = sums.get(key, 0.0) + float(value) / config.grad_accum
    grad_norm = torch.nn.utils.clip_grad_norm_(
        [p for p in policy.model.parameters() if p.grad is not None], config.grad_clip)
    grad_norm = float(grad_norm.full_tensor() if hasattr(grad_norm, "full_tensor") else grad_norm)
    optimizer.step()
    return processes.mean({**sums, "grad_norm": grad_norm})


def noisy_plan_codes(codes: Any, probability: float, codebook_size: int, rng: np.random.Generator) -> np.ndarray:
    """(B, N, R) plan codes with each replaced, with ``probability``, by a code drawn uniformly from [0, K)
    (padding, negative, is kept): the decoder's input under ``--plan-input-noise``."""
    codes = codes.numpy() if isinstance(codes, torch.Tensor) else np.asarray(codes)
    replace = (rng.random(codes.shape) < probability) & (codes >= 0)
    return np.where(replace, rng.integers(0, codebook_size, codes.shape), codes).astype(np.int64)


def _load_data(config: PolicyTrainConfig, policy_cfg: PolicyConfig, tokenizer: Any) -> PolicyData:
    return load_policy_data(Path(config.dataset), tokenizer, Path(config.tokenizer) if config.tokenizer else None,
                            policy_cfg, Path(config.out),
                            holdout_fraction=config.holdout_fraction, holdout_seed=config.holdout_seed,
                            max_image_gb=config.max_image_gb, resize_images=config.resize_images,
                            loader=config.loader)


def _writer(out: Path, start_step: int):
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(str(out / "tensorboard"), purge_step=start_step or None)  # drop events past a resume
