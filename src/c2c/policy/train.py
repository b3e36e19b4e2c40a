"""The policy training API in one import, and the module each training process runs.

The code lives in :mod:`c2c.policy.training`: ``config`` (PolicyTrainConfig, optimiser defaults, learning-rate
schedule), ``loop`` (train_policy), ``launch`` (launch_processes), ``data``, ``evaluation``, ``checkpoint``,
``distributed`` and ``memory``. ``python -m c2c.policy.train LAUNCH_CONFIG.json`` is what torchrun starts in every
process of a data-parallel run (:func:`launch_processes`) and what ``c2c run`` starts for each training.

Example::

    from c2c.policy.train import PolicyTrainConfig, train_policy

    metrics = train_policy(PolicyTrainConfig(dataset="data/mw10", tokenizer="runs/tok", out="runs/plan"))
"""

from __future__ import annotations

import os
import sys

from c2c.policy.training.checkpoint import CHECKPOINT
from c2c.policy.training.config import (FINAL_LR_FRACTION, OPTIMIZER_DEFAULTS, TRAINING_DATA_FILE, OptimizerDefaults,
                                        PolicyTrainConfig, lr_at)
from c2c.policy.training.distributed import check_device
from c2c.policy.training.evaluation import TrainingRun, evaluate_policy, format_metrics, plot_curves
from c2c.policy.training.launch import launch_processes, main
from c2c.policy.training.loop import THREADS_FILE_ENV, init_weights, resumable_step, train_policy

__all__ = [
    "CHECKPOINT", "FINAL_LR_FRACTION", "OPTIMIZER_DEFAULTS", "THREADS_FILE_ENV", "TRAINING_DATA_FILE",
    "OptimizerDefaults", "PolicyTrainConfig", "TrainingRun", "check_device", "evaluate_policy", "format_metrics",
    "init_weights", "launch_processes", "lr_at", "main", "plot_curves", "resumable_step", "train_policy",
]


if __name__ == "__main__":
    code = main(sys.argv[1:])
    # Everything is on disk (atomically) and the process group is destroyed. Leave without interpreter finalization:
    # there, gloo's worker threads can still release tensors and abort the process (SIGABRT, "terminate called
    # without an active exception") after a run that succeeded, which torchrun reports as a failed launch.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
