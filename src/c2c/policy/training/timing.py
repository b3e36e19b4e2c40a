"""Seconds per optimisation step of a policy on this machine, on random inputs of the right shapes: what a
wall-clock budget is converted into steps with (``c2c ablate --study NAME --budget-seconds S``).

The step is training's own (``loop.optimisation_step``: the step's learning rate, ``loop.train_step`` with its
gradient clipping and AdamW, then the EMA update) on batches made by training's batch loader (``data.batch_loader``
over frames drawn by ``data.draw_frames``), so the time per step includes building the batch, as in training. The
policy is built as training builds it (``PolicyTrainConfig.policy_config``, memory options, the backbone's optimiser
defaults, image shift), with the given cameras, image size and batch size.

The data are random: uint8 images, uniform state, the given instructions, and as targets what the variant's
tokenizer makes of smooth random action chunks (a sum of sines per dimension, within [-1, 1]): codes of a random-
weight RVQ tokenizer of the given codec sizes, 256-bin tokens (``binning``), fixed-point chunks (``regress``) or the
tokens of a FAST tokenizer fitted on those chunks (``fast``; its length cap, which sets the sequence length, is then
the longest of these chunks, not of a dataset's).

Example::

    train = PolicyTrainConfig(dataset="", tokenizer=None, out="", variant="plan", preset="nano", batch_size=32)
    seconds = step_seconds(train, cameras=("corner2",), image_size=96, state_dim=4, action_dim=4,
                           codec={"codebook_size": 4096}, instructions=["open the drawer"])
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from c2c.data.normalize import ActionNormalizers, QuantileNormalizer
from c2c.policy.tokens import as_action_tokenizer
from c2c.policy.training.config import PolicyTrainConfig
from c2c.policy.training.data import PolicyData, batch_loader, draw_frames, encode_windows
from c2c.policy.training.distributed import Launch, Processes
from c2c.policy.training.loop import make_optimizer, optimisation_step
from c2c.policy.training.memory import WeightEMA, apply_memory_options, autocast_dtype, trainable_parameters


def smooth_chunks(count: int, horizon: int, action_dim: int, seed: int = 0) -> np.ndarray:
    """(count, horizon, A) float32 chunks in [-1, 1]: two sines of random frequency and phase per dimension."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0.0, 1.0, horizon)[None, :, None, None]
    frequency = rng.uniform(0.2, 1.5, (count, 1, action_dim, 2))
    phase = rng.uniform(0.0, 1.0, (count, 1, action_dim, 2))
    amplitude = rng.uniform(0.0, 0.5, (count, 1, action_dim, 2))
    return (amplitude * np.sin(2 * np.pi * (frequency * t + phase))).sum(axis=-1).astype(np.float32)


def random_tokenizer(variant: str, action_dim: int, state_dim: int, codec: dict[str, Any], exec_horizon: int = 20,
                     seed: int = 0, tokenizer_variant: str | None = None) -> Any:
    """The action side ``variant`` trains with, random or fitted on :func:`smooth_chunks`, statistics [-1, 1] for
    actions and state ([-8, 8] for plans, as cumulative sums are wider). ``tokenizer_variant``: the RVQ tokenizer's
    (default: the first the variant accepts; the pipeline trains ``noplan`` on a joint one)."""
    from c2c.policy.config import VARIANTS

    unit = QuantileNormalizer(q01=-np.ones(action_dim), q99=np.ones(action_dim))
    state = QuantileNormalizer(q01=-np.ones(state_dim), q99=np.ones(state_dim))
    kind = VARIANTS[variant].tokenizer_variants[0]
    if kind == "continuous":
        from c2c.policy.regress import ContinuousActions

        return ContinuousActions(ActionNormalizers(action=unit, plan=None, state=state), exec_horizon=exec_horizon)
    if kind in ("binning", "fast"):
        from c2c.tokenizer.binning import BinningTokenizer
        from c2c.tokenizer.fast import FastTokenizer

        normalizers = ActionNormalizers(action=unit, plan=None, state=state)
        if kind == "binning":
            return BinningTokenizer(normalizers, action_dim=action_dim, exec_horizon=exec_horizon,
                                    plan_steps=exec_horizon)
        return FastTokenizer.fit(normalizers, smooth_chunks(512, exec_horizon, action_dim, seed), None,
                                 action_dim=action_dim, exec_horizon=exec_horizon, plan_steps=exec_horizon)
    from c2c.policy.testing import random_action_tokenizer

    return random_action_tokenizer(tokenizer_variant or kind, action_dim, state_dim, seed=seed, codec=codec)


def random_data(config: Any, tokenizer: Any, instructions: Sequence[str], frames: int, seed: int = 0) -> PolicyData:
    """``frames`` random training frames for the policy ``config`` (a PolicyConfig) in training's data format."""
    rng = np.random.default_rng(seed)
    size = config.image_size
    images = {camera: rng.integers(0, 256, (frames, size, size, 3), dtype=np.uint8) for camera in config.cameras}
    exec_chunks = smooth_chunks(frames, config.exec_horizon, config.action_dim, seed + 1)
    codes = {"exec": encode_windows(tokenizer, exec_chunks, "exec")}
    if config.has_plan:
        codes["plan"] = encode_windows(tokenizer, smooth_chunks(frames, config.plan_steps, config.action_dim,
                                                                seed + 2), "plan")
    tasks = np.array([instructions[i % len(instructions)] for i in range(frames)], dtype=object)
    states = rng.uniform(-1, 1, (frames, config.state_dim)).astype(np.float32)
    return PolicyData(images=images, states=states, tasks=tasks, codes=codes, exec_chunks=exec_chunks,
                      train_frames=np.arange(frames), heldout_frames=np.arange(0), info={})


def step_seconds(train: PolicyTrainConfig, *, cameras: Sequence[str], image_size: int, state_dim: int,
                 action_dim: int, codec: dict[str, Any], instructions: Sequence[str], threads: int = 1,
                 warmup: int = 3, repeats: int = 10, tokenizer_variant: str | None = None) -> float:
    """Median seconds of ``repeats`` optimisation steps of ``train``'s policy after ``warmup`` untimed ones, in this
    process on the CPU with ``threads`` intra-op threads (restored afterwards); ``tokenizer_variant`` as
    :func:`random_tokenizer`'s."""
    from c2c.policy.policy import PlanExecutePolicy
    from c2c.policy.testing import torch_threads

    tokenizer = as_action_tokenizer(random_tokenizer(train.variant, action_dim, state_dim, codec,
                                                     train.exec_horizon, train.seed, tokenizer_variant))
    policy_cfg = train.policy_config(list(cameras), tokenizer).replace(image_size=image_size)
    data = random_data(policy_cfg, tokenizer, list(instructions), frames=2 * train.batch_size, seed=train.seed)
    with torch_threads(threads), torch.random.fork_rng(devices=[]):
        torch.manual_seed(train.seed)
        policy = PlanExecutePolicy.build(policy_cfg, tokenizer, instructions=data.instructions)
        apply_memory_options(policy.model, train.memory_options())
        processes = Processes(Launch(1, 0, 0, torch.device("cpu"), "ddp"))
        model = processes.wrap(policy, train.precision)
        trainable = trainable_parameters(policy.model)
        ema = WeightEMA(trainable, train.ema_decay, train.ema)
        optimizer = make_optimizer(policy.model, train)
        autocast = torch.autocast("cpu", dtype=autocast_dtype(train.precision) or torch.bfloat16,
                                  enabled=train.precision != "fp32")
        policy.train()
        steps = range(warmup + repeats)
        batches = batch_loader(data, lambda step: draw_frames(data.train_frames, train.seed, step, train.batch_size,
                                                              train.grad_accum)[:, 0], steps)
        times, last = [], time.perf_counter()
        for step, micro_batches in zip(steps, batches):  # the batch is made inside the timed interval, as in training
            optimisation_step(model, policy, optimizer, ema, trainable, micro_batches, train, processes, autocast,
                              step)
            now = time.perf_counter()
            if step >= warmup:
                times.append(now - last)
            last = now
    return float(np.median(times))
