"""Policy training (`c2c policy train`): ``config`` (PolicyTrainConfig, optimiser defaults, learning-rate schedule),
``loop`` (train_policy: the optimisation loop, resume, init-from), ``launch`` (several processes on one node),
``data`` (datasets, cached target codes, batches), ``evaluation`` (held-out evaluation, the saved policy, curves),
``checkpoint`` (sharded resumable checkpoints), ``distributed`` (DDP / FSDP2 processes) and ``memory`` (precision,
gradient checkpointing, freezing, LoRA, the weight EMA).

:mod:`c2c.policy.train` re-exports the public names and is the module each training process runs.
"""
