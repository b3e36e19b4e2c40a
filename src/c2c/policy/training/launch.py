"""Data-parallel training on one node: ``c2c policy train --num-processes N`` starts ``N`` processes with torchrun,
each running ``python -m c2c.policy.train LAUNCH_CONFIG.json`` (:func:`main`), which trains its slice of every step.

Example::

    metrics = launch_processes(PolicyTrainConfig(dataset="data/mw10", tokenizer="runs/tok", out="runs/plan"), 2)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import torch

from c2c.errors import C2CError, ConfigError
from c2c.policy.training.checkpoint import read_state
from c2c.policy.training.config import PolicyTrainConfig
from c2c.policy.training.distributed import check_device
from c2c.policy.training.loop import train_policy
from c2c.utils.io import atomic_write_json

ENTRY_MODULE = "c2c.policy.train"  # what each process runs with -m (its __main__ block leaves with os._exit)


def launch_processes(config: PolicyTrainConfig, count: int, resume: bool = False,
                     stop_after: int | None = None) -> dict[str, Any] | None:
    """Run ``train_policy`` in ``count`` data-parallel processes on this node (torchrun): one per GPU over NCCL
    with ``--device cuda``, else CPU processes over gloo. Device, process count and batch split are checked here,
    before any process starts or any data is read."""
    device = check_device(config.device)
    if count < 1:
        raise ConfigError(f"--num-processes must be >= 1, got {count}")
    if device.type == "cuda":
        if device.index is not None:
            raise ConfigError(f"--device {config.device}: with --num-processes each process uses its own GPU; pass "
                              "--device cuda")
        if count > torch.cuda.device_count():
            raise ConfigError(f"--num-processes {count}: only {torch.cuda.device_count()} CUDA device(s) here")
    if config.global_batch_size is not None and config.global_batch_size % (count * config.grad_accum):
        raise ConfigError(f"--global-batch-size {config.global_batch_size} is not divisible by {count} processes x "
                          f"{config.grad_accum} accumulation steps")
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    launch = out / "launch_config.json"
    atomic_write_json(launch, {"config": asdict(config), "resume": resume, "stop_after": stop_after})
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={count}",
               "-m", ENTRY_MODULE, str(launch)]
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    if device.type == "cpu":  # CPU processes: a visible GPU would only make torch.distributed pick CUDA devices
        env["CUDA_VISIBLE_DEVICES"] = ""
    result = subprocess.run(command, env=env, check=False)
    if result.returncode != 0:
        raise C2CError(f"{count} training processes failed (exit status {result.returncode}); see the output above")
    if stop_after is not None and (read_state(out) or {}).get("step", 0) < config.steps:
        return None
    return json.loads((out / "metrics.json").read_text())


def main(argv: list[str]) -> int:
    """One process of a data-parallel run: ``python -m c2c.policy.train LAUNCH_CONFIG.json`` under torchrun."""
    raw = json.loads(Path(argv[0]).read_text())
    known = {f.name for f in fields(PolicyTrainConfig)}
    config = PolicyTrainConfig(**{k: v for k, v in raw["config"].items() if k in known})
    try:
        train_policy(config, resume=raw.get("resume", False), stop_after=raw.get("stop_after"))
    except C2CError as err:
        print(f"c2c: error: {err}", file=sys.stderr)
        return 2
    return 0
