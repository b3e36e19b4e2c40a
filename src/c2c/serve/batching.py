"""The batching queue of ``c2c serve``: one worker thread owns the policy; the requests queued while it decodes are
decoded together as one batch (up to ``max_batch``). If a batch fails, its requests are decoded one by one so that
only the failing one gets the error; a request whose caller went away (its future cancelled) is dropped before its
batch runs.

Example (on an event loop)::

    batcher = Batcher(policy, max_batch=8)
    worker = asyncio.create_task(batcher.run())
    reply = await batcher.submit(observation, return_plan=True)   # {"actions", "plan", "server_timing"}
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from c2c.constants import TASK


@dataclass
class Pending:
    """One queued request: the checked observation, whether to return the plan, the future of its reply."""

    observation: dict[str, Any]
    return_plan: bool
    future: asyncio.Future
    queued: float = field(default_factory=time.perf_counter)


class Batcher:
    """One worker thread owns the policy; requests queued together are decoded as one batch."""

    def __init__(self, policy: Any, max_batch: int) -> None:
        self.policy, self.max_batch = policy, max_batch
        self.queue: asyncio.Queue[Pending] = asyncio.Queue()
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="c2c-serve-policy")
        self.requests = self.batches = self.dropped = 0

    def submit(self, observation: dict[str, Any], return_plan: bool) -> asyncio.Future:
        """Queue one request; its reply comes in the future (cancel it to drop the request)."""
        future = asyncio.get_running_loop().create_future()
        self.queue.put_nowait(Pending(observation, return_plan, future))
        return future

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self.queue.get()]
            while len(batch) < self.max_batch and not self.queue.empty():
                batch.append(self.queue.get_nowait())
            live = [item for item in batch if not item.future.done()]  # callers that went away are skipped
            self.dropped += len(batch) - len(live)
            batch = live
            if not batch:
                continue
            started = time.perf_counter()
            try:
                outcomes = await loop.run_in_executor(self.executor, self._decode, batch)
            except BaseException as error:
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(error if isinstance(error, Exception) else RuntimeError("stopped"))
                raise
            infer_ms = 1000 * (time.perf_counter() - started)
            self.requests += len(batch)
            self.batches += 1
            for item, outcome in zip(batch, outcomes, strict=True):
                if item.future.done():
                    continue
                if isinstance(outcome, BaseException):
                    item.future.set_exception(outcome)
                    continue
                timing = {"infer_ms": round(infer_ms, 3), "queue_ms": round(1000 * (started - item.queued), 3),
                          "batch_size": len(batch)}
                item.future.set_result({**outcome, "server_timing": timing})

    def _decode(self, batch: list[Pending]) -> list[dict[str, Any] | Exception]:
        """In the worker thread: the whole batch at once; one by one if that fails."""
        try:
            return self._predict(batch)
        except Exception as error:  # noqa: BLE001 - retried alone, each request gets its own outcome
            if len(batch) == 1:
                return [error]
        outcomes: list[dict[str, Any] | Exception] = []
        for item in batch:
            try:
                outcomes.extend(self._predict([item]))
            except Exception as error:  # noqa: BLE001 - reported to that request only
                outcomes.append(error)
        return outcomes

    def _predict(self, batch: list[Pending]) -> list[dict[str, Any]]:
        import torch

        first = batch[0].observation
        stacked: dict[str, Any] = {key: np.stack([item.observation[key] for item in batch])
                                   for key in first if key != TASK}
        stacked[TASK] = [item.observation[TASK] for item in batch]
        want_plan = any(item.return_plan for item in batch)
        with torch.inference_mode():
            if want_plan:
                actions, plans = self.policy.predict_action_chunk(stacked, return_plan=True)
            else:
                actions, plans = self.policy.predict_action_chunk(stacked), None
        actions = np.asarray(actions, dtype=np.float32)  # (B, He, A)
        replies = []
        for row, item in enumerate(batch):
            reply: dict[str, Any] = {"actions": np.ascontiguousarray(actions[row])}
            if item.return_plan and plans is not None:
                reply["plan"] = np.ascontiguousarray(np.asarray(plans[row], dtype=np.float32))
            replies.append(reply)
        return replies

    def close(self) -> None:
        self.executor.shutdown(wait=True, cancel_futures=True)
