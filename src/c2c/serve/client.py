"""Clients of ``c2c serve``: :class:`PolicyClient` (one request, one reply) and :class:`RemotePolicy` (the policy
API of ``PlanExecutePolicy`` over the wire, for closed-loop evaluation).

Example::

    with PolicyClient("ws://127.0.0.1:8000", api_key="secret") as client:
        client.metadata["action_horizon"]                          # 20
        reply = client.infer({"observation/image": image, "observation/wrist_image": wrist,
                              "observation/state": state, "prompt": "open the drawer"})
        reply["actions"]                                           # (20, A) float32

    policy = RemotePolicy("ws://127.0.0.1:8000")                  # observations in our keys
    policy.reset()
    action = policy.select_action(env_observation)                 # (A,): a new chunk every replan_every steps
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from contextlib import ExitStack
from typing import Any, Self

import numpy as np

from c2c.errors import C2CError, ConfigError
from c2c.serve.codec import packb, unpackb
from c2c.serve.keymap import CONTROL_MARK, RETURN_PLAN

DEFAULT_OPEN_TIMEOUT_S = 30.0


class ServerError(C2CError):
    """The server refused a request or failed on it; the message is what it said."""


class PolicyClient:
    """A synchronous connection to a policy server (``c2c serve`` or any openpi-protocol server)."""

    def __init__(self, url: str, api_key: str | None = None, *, open_timeout_s: float = DEFAULT_OPEN_TIMEOUT_S,
                 max_message_bytes: int | None = None) -> None:
        from websockets.exceptions import InvalidStatus, WebSocketException
        from websockets.sync.client import connect

        if not url.startswith(("ws://", "wss://")):
            raise ConfigError(f"server URL {url!r}: expected ws://HOST:PORT or wss://HOST:PORT")
        self.url = url
        headers = {"Authorization": f"Api-Key {api_key}"} if api_key else None
        self._stack = ExitStack()
        try:
            self._connection = self._stack.enter_context(connect(
                url, additional_headers=headers, compression=None, max_size=max_message_bytes,
                open_timeout=open_timeout_s, proxy=None))
        except InvalidStatus as error:
            status = error.response.status_code
            body = error.response.body.decode("utf-8", errors="replace").strip() if error.response.body else ""
            raise ServerError(f"{url}: handshake refused with HTTP {status}" + (f": {body}" if body else "")) from None
        except (OSError, TimeoutError, WebSocketException) as error:
            raise ServerError(f"{url}: cannot connect ({type(error).__name__}: {error})") from None
        self.metadata: dict[str, Any] = self._receive()

    def _receive(self) -> Any:
        from websockets.exceptions import ConnectionClosed

        try:
            message = self._connection.recv()
        except ConnectionClosed as error:
            raise ServerError(f"{self.url}: the server closed the connection ({_close_text(error)})") from None
        if isinstance(message, str):
            self.close()
            raise ServerError(f"{self.url}: {message}")
        return unpackb(message)

    def infer(self, observation: Mapping[str, Any]) -> dict[str, Any]:
        """Send one observation, return the reply (``actions``, ``plan`` for plan variants, ``server_timing``)."""
        from websockets.exceptions import ConnectionClosed

        data = packb(dict(observation))
        try:
            self._connection.send(data)
        except ConnectionClosed as error:
            raise ServerError(f"{self.url}: the server closed the connection ({_close_text(error)})") from None
        reply = self._receive()
        if not isinstance(reply, dict) or "actions" not in reply:
            raise ServerError(f"{self.url}: the reply has no 'actions' (keys: {list(reply)[:10]})")
        return reply

    def control(self, name: str) -> dict[str, Any]:
        """Send the control message ``{"__ctrl__": name}`` (``episode_start``, ``episode_end``, ``reset``) and
        return the server's answer (``{"ok": True, ...}`` from ``c2c serve``)."""
        from websockets.exceptions import ConnectionClosed

        try:
            self._connection.send(packb({CONTROL_MARK: name}))
        except ConnectionClosed as error:
            raise ServerError(f"{self.url}: the server closed the connection ({_close_text(error)})") from None
        reply = self._receive()
        if not isinstance(reply, dict):
            raise ServerError(f"{self.url}: the answer to {name!r} is not a map")
        return reply

    def close(self) -> None:
        self._stack.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _close_text(error: Any) -> str:
    frame = getattr(error, "rcvd", None)
    if frame is None:
        return "no close frame"
    return f"code {frame.code}" + (f": {frame.reason}" if frame.reason else "")


class _Mode:
    """``training`` / ``train()`` / ``eval()`` of a module, for code written against ``PlanExecutePolicy``."""

    training = False

    def train(self, mode: bool = True) -> Any:
        self.training = bool(mode)
        return self

    def eval(self) -> Any:
        return self.train(False)


class RemotePolicy(_Mode):
    """``PlanExecutePolicy``'s acting API served by ``c2c serve``; observations in our keys (pass through).

    ``config`` is the served policy's config (with ``replan_every`` overridden when given, and ``plan_reuse`` 1:
    the server decodes every chunk with a fresh plan). ``training_record`` is the served training record, for
    the placement check of Meta-World evaluation.
    """

    def __init__(self, url: str, api_key: str | None = None, *, replan_every: int | None = None) -> None:
        from c2c.policy.config import PolicyConfig

        self.client = PolicyClient(url, api_key)
        metadata = self.client.metadata
        if metadata.get("server") != "c2c" or not isinstance(metadata.get("policy_config"), dict):
            self.client.close()
            raise ServerError(f"{url}: not a c2c policy server (its metadata has no policy_config)")
        config = PolicyConfig.from_dict(metadata["policy_config"])
        changes: dict[str, Any] = {"plan_reuse": 1}
        if replan_every is not None:
            changes["replan_every"] = replan_every
        self.config = config.replace(**changes)
        self.reset()

    @property
    def metadata(self) -> dict[str, Any]:
        return self.client.metadata

    def training_record(self) -> dict[str, Any] | None:
        return self.metadata.get("training")

    def reset(self) -> None:
        """Forget queued actions (call at every episode start)."""
        self._queue: deque[np.ndarray] = deque()

    def predict_action_chunk(self, observation: Mapping[str, Any], return_plan: bool = False) -> Any:
        """(He, A) actions; with ``return_plan``, also the (K, A) plan (None for noplan)."""
        reply = self.client.infer({**observation, RETURN_PLAN: bool(return_plan)})
        actions = np.asarray(reply["actions"], dtype=np.float32)
        if not return_plan:
            return actions
        return actions, reply.get("plan")

    def select_action(self, observation: Mapping[str, Any]) -> np.ndarray:
        """The next (A,) action; a new chunk is fetched every ``config.replan_every`` steps."""
        if not self._queue:
            actions = self.predict_action_chunk(observation)
            self._queue.extend(step.copy() for step in actions[: self.config.replan_every])
        return self._queue.popleft()

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
