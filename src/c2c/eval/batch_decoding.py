"""Decoding for environments stepped side by side (``--envs-per-worker``), shared by Meta-World and LIBERO.

:class:`BatchDecoder` keeps each environment's action queue and cached plan and fills the empty queues with one
batched ``policy.generate`` per plan mode (plans reused, plans generated), so that with greedy decoding every
environment gets the chunks it would get stepped alone.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any, Callable

import numpy as np


def stack_observations(observations: list[dict[str, Any]]) -> dict[str, Any]:
    """A batch observation: arrays stacked along a new first axis, the instructions as a list."""
    return {key: [obs[key] for obs in observations] if isinstance(value, str)
            else np.stack([obs[key] for obs in observations]) for key, value in observations[0].items()}


class BatchDecoder:
    """Per-env action queues and cached plans of envs stepped together; fills the empty queues in one batch.

    ``as_trained`` turns an env observation into what the policy was trained on (default: as it is)."""

    def __init__(self, policy: Any, count: int, as_trained: Callable[[dict[str, Any]], dict[str, Any]] | None = None
                 ) -> None:
        self.policy, self.as_trained = policy, as_trained or (lambda obs: obs)
        self.queues: list[deque] = [deque() for _ in range(count)]
        self.cached: list[Any] = [None] * count  # (1, Tp) plan ids of each env's last fresh plan
        self.uses = [0] * count
        self.inference = [0.0] * count  # each env's share of the decoding time

    def fill(self, rows: list[int], obs: list[dict[str, Any]], decode_plans: bool = False) -> dict[int, np.ndarray]:
        """Decode a chunk for each env in ``rows`` whose queue is empty: one batch per plan mode (reused, fresh).
        With ``decode_plans``, returns the freshly generated plans decoded to (K, A) (to draw), by env."""
        import torch

        config, fresh_plans = self.policy.config, {}
        rows = [i for i in rows if not self.queues[i]]
        reusing = [i for i in rows if self.uses[i] and self.cached[i] is not None]
        for group in (reusing, [i for i in rows if i not in reusing]):
            if not group:
                continue
            tick = time.perf_counter()
            plan_ids = torch.cat([self.cached[i] for i in group]) if group is reusing else None
            batch = stack_observations([self.as_trained(obs[i]) for i in group])
            chunk, _ = self.policy.generate(batch, plan_ids=plan_ids)
            for row, i in enumerate(group):
                if chunk.plan_ids is not None and self.uses[i] == 0:
                    self.cached[i] = chunk.plan_ids[row:row + 1]
                self.uses[i] = (self.uses[i] + 1) % config.plan_reuse
                self.queues[i].extend(step.copy() for step in chunk.actions[row][:config.replan_every])
            share = (time.perf_counter() - tick) / len(group)
            for i in group:
                self.inference[i] += share
            if decode_plans and chunk.plan_ids is not None and plan_ids is None:
                fresh_plans.update(zip(group, self.policy.decode_plan(chunk)))
        return fresh_plans
