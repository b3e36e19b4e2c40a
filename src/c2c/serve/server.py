"""``c2c serve``: one policy behind openpi's websocket protocol, shared by every connection.

Protocol (what ``openpi-client``'s ``WebsocketClientPolicy`` speaks): on connect the server sends the msgpack
metadata map (:meth:`PolicyServer.metadata`); then every binary message from the client is one msgpack
observation and is answered with ``{"actions": float32 (He, A), "plan": float32 (K, A), "server_timing":
{"infer_ms", "queue_ms", "batch_size"}}``. ``plan`` is there for plan variants unless the request carries
``"return_plan": false``. Arrays use openpi's ``msgpack_numpy`` format (:mod:`c2c.serve.codec`). ``GET /healthz``
answers 200 without a key.

Control messages: a map with the key ``"__ctrl__"`` (``{"__ctrl__": "episode_start"}``, ``"episode_end"`` or
``"reset"``, as some openpi client variants send between episodes) is answered ``{"ok": True, "control": <name>,
"episode": <episodes started on this connection>}`` and the connection stays open. The server keeps no action
state per connection (every request decodes a fresh chunk with a fresh plan; action queues live in the client),
so such a message resets only the connection's episode counters that the log reports. An unknown name is answered
``{"ok": False, "control": <name>, "error": ...}``; a ``__ctrl__`` that is not a string is a bad request.

Image size: an image of another size than the policy's is resized (PIL bilinear, as training resizes dataset
frames) when ``resize`` is on, else refused. ``resize=None`` (the default) turns it on for the ``libero`` key map
only: openpi's LIBERO client (``examples/libero/main.py``) sends 224 x 224 images. ``strict_size=True`` always
refuses (see :func:`resolve_resize`).

Errors: a message that is not msgpack or holds more than :class:`~c2c.serve.codec.Limits` allow, an array with a
refused dtype, a bad shape or a wrong byte count, a missing key, an image of the wrong size (unless resized), a
text frame: the connection gets one text frame ``bad request: <what and what was expected>`` and is closed with
code 1008; a failure inside the policy gets ``policy failure: <error>`` and code 1011. A message over
``max_message_bytes`` is closed by websockets with code 1009. A wrong or missing API key (header ``Authorization:
Api-Key <key>``, as openpi-client sends it, or ``Api-Key: <key>``) is refused at the handshake with HTTP 401, two
``Api-Key`` or two ``Authorization`` headers with HTTP 400. Each refusal is one log line; tracebacks (in the log and
in the policy-failure frame) only with ``C2C_DEBUG=1``. Other connections are never affected.

Metadata: the policy's config, the request keys and limits, and ``training``, the policy's training record as the
caller passes it (``c2c serve`` sends :func:`c2c.cli.serve.training_summary`: the Meta-World placement seeds that
remote evaluations must not reuse), else None.

Decoding and batching (:mod:`c2c.serve.batching`): a message is unpacked and checked in a decode thread
(``decode_workers`` at once over all connections; a connection's next message is read only after its reply), never
on the event loop, so one connection's message cannot stall the others. Checked requests are queued; one worker thread runs the policy. When
it is free it takes every queued request (up to ``max_batch``) and decodes them as one batch; if that batch fails,
its requests are decoded one by one so that only the failing one gets the error. A request whose connection closed
before its reply is dropped before its batch runs (or its result discarded when the batch already runs).

Example::

    server = PolicyServer(load_policy("runs/plan"), port=0)    # load_policy: c2c.policy
    with BackgroundServer(server) as running:         # tests and benchmarks; the CLI uses run_server()
        client = PolicyClient(running.url)
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import os
import signal
import threading
import traceback
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from http import HTTPStatus
from pathlib import Path
from typing import Any, Self

from c2c.constants import OBS_STATE, TASK, image_key
from c2c.errors import C2CError, ConfigError
from c2c.serve.batching import Batcher
from c2c.serve.codec import Limits, ProtocolError, packb, unpackb
from c2c.serve.control import CONTROL_MESSAGES, ConnectionState, Control, control_name
from c2c.serve.keymap import CONTROL_MARK, RETURN_PLAN, KeyMap, load_key_map
from c2c.serve.observation import RequestSpec

PROTOCOL = "openpi-websocket"
PROTOCOL_VERSION = 1
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
DEFAULT_MAX_MESSAGE_BYTES = 16 * 2**20
DEFAULT_MAX_BATCH = 8
DEFAULT_DECODE_WORKERS = 2  # messages unpacked and checked at once, over all connections
MAX_QUEUED_FRAMES = 4  # frames websockets buffers per connection before it stops reading (backpressure)
REFUSED_LINGER_S = 1.0  # a failed connection's socket is closed this long after the error was sent
HEALTH_PATH = "/healthz"
CLOSE_BAD_REQUEST = 1008  # policy violation
CLOSE_INTERNAL_ERROR = 1011

log = logging.getLogger("c2c.serve")
_ws_log = logging.getLogger("c2c.serve.websockets")  # what websockets itself logs, through _OneLine


def _debug() -> bool:
    """Whether tracebacks are logged (``C2C_DEBUG`` set, as for the command line's errors)."""
    return bool(os.environ.get("C2C_DEBUG"))


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


class _OneLine(logging.Filter):
    """websockets' own records: warnings and errors only, a traceback folded into the line (unless C2C_DEBUG)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _debug():
            return True
        if record.levelno < logging.WARNING:
            return False
        if record.exc_info and record.exc_info[1] is not None:
            record.msg, record.args = f"{record.getMessage()}: {_one_line(record.exc_info[1])}", None
            record.exc_info, record.exc_text = None, None
        return True


_ws_log.addFilter(_OneLine())


class _DuplicateHeader(Exception):
    """A handshake with two headers of a name that must appear once."""


def _presented_key(headers: Any) -> str | None:
    """The API key of a handshake: ``Api-Key: <key>`` or ``Authorization: Api-Key <key>`` (or ``Bearer``);
    :class:`_DuplicateHeader` when either header comes more than once."""
    values = {}
    for name in ("Api-Key", "Authorization"):
        given = headers.get_all(name)
        if len(given) > 1:
            raise _DuplicateHeader(f"{len(given)} {name} headers (send one)")
        values[name] = given[0] if given else None
    if values["Api-Key"] is not None:
        return values["Api-Key"].strip()
    if values["Authorization"] is not None:
        scheme, _, value = values["Authorization"].strip().partition(" ")
        if scheme.lower() in ("api-key", "bearer"):
            return value.strip()
    return None


def resolve_resize(key_map: KeyMap | str | None, resize: bool | None, strict_size: bool = False) -> bool:
    """Whether images of another size are resized: never with ``strict_size``, as ``resize`` says when it is given,
    else only with the ``libero`` key map asked for by name (openpi's LIBERO client sends 224 x 224 images)."""
    if strict_size and resize:
        raise ConfigError("--resize and --strict-size contradict each other: give one of them")
    if strict_size:
        return False
    if resize is not None:
        return bool(resize)
    return (key_map.name if isinstance(key_map, KeyMap) else key_map) == "libero"


class PolicyServer:
    """One policy, served to any number of websocket connections (see the module docstring)."""

    def __init__(self, policy: Any, *, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, api_key: str | None = None,
                 key_map: KeyMap | str | None = None, resize: bool | None = None, strict_size: bool = False,
                 max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES, max_batch: int = DEFAULT_MAX_BATCH,
                 policy_dir: str | Path | None = None, training: dict[str, Any] | None = None,
                 decode_workers: int = DEFAULT_DECODE_WORKERS, limits: Limits | None = None) -> None:
        config = policy.config
        for name, value, low in (("port", port, 0), ("max_message_bytes", max_message_bytes, 1024),
                                 ("max_batch", max_batch, 1), ("decode_workers", decode_workers, 1)):
            if not isinstance(value, int) or value < low or (name == "port" and value > 65535):
                raise ConfigError(f"--{name.replace('_', '-')} must be an integer >= {low}"
                                  f"{' and <= 65535' if name == 'port' else ''}, got {value!r}")
        if api_key is not None and not api_key:
            raise ConfigError("--api-key must not be empty")
        resize = resolve_resize(key_map, resize, strict_size)
        if not isinstance(key_map, KeyMap):
            key_map = load_key_map(key_map, config.cameras)
        key_map.check_cameras(config.cameras)
        self.policy, self.config = policy, config
        self.host, self.port, self.api_key = host, port, api_key
        self.max_message_bytes, self.max_batch, self.decode_workers = max_message_bytes, max_batch, decode_workers
        self.limits = limits if limits is not None else Limits(max_bin_len=max_message_bytes)
        self.policy_dir = None if policy_dir is None else Path(policy_dir)
        self.spec = RequestSpec(tuple(config.cameras), config.image_size, config.state_dim, key_map, resize,
                                strict_size)
        self.training = training
        self._metadata = packb(self.metadata())
        self._server: Any = None
        self._batcher: Batcher | None = None
        self._batcher_task: asyncio.Task | None = None
        self._decoder: ThreadPoolExecutor | None = None
        self._decode_slots: asyncio.Semaphore | None = None
        self.connections = 0
        self.dropped = 0  # requests whose connection closed before their reply

    def metadata(self) -> dict[str, Any]:
        """What a client learns on connect: the expected request, the reply's shapes, the key map."""
        from c2c import __version__

        config, key_map = self.config, self.spec.key_map
        size = config.image_size
        request_keys = {}
        for camera in config.cameras:
            wire = next((w for w, ours in key_map.keys.items() if ours == image_key(camera)), image_key(camera))
            request_keys[wire] = (f"uint8 ({size}, {size}, 3) image of camera {camera!r} ({image_key(camera)})"
                                  + ("; other sizes are resized" if self.spec.resize else ""))
        state_wire = next((w for w, ours in key_map.keys.items() if ours == OBS_STATE), OBS_STATE)
        task_wire = next((w for w, ours in key_map.keys.items() if ours == TASK), TASK)
        request_keys[state_wire] = f"float32 ({config.state_dim},) robot state ({OBS_STATE})"
        request_keys[task_wire] = f"instruction string ({TASK})"
        request_keys[RETURN_PLAN] = "optional bool (default true): false leaves the plan out of the reply"
        limits = self.limits
        return {
            "server": "c2c", "version": __version__, "protocol": PROTOCOL, "protocol_version": PROTOCOL_VERSION,
            "variant": config.variant, "has_plan": config.has_plan, "returns_plan": config.has_plan,
            "cameras": list(config.cameras), "image_keys": [image_key(camera) for camera in config.cameras],
            "image_size": size, "image_shape": [size, size, 3], "resize": self.spec.resize,
            "strict_size": self.spec.strict_size,
            "state_dim": config.state_dim, "action_dim": config.action_dim,
            "action_horizon": config.exec_horizon, "plan_steps": config.plan_steps if config.has_plan else None,
            "plan_horizon": config.plan_horizon, "replan_every": config.replan_every,
            "request_keys": request_keys, "key_map": key_map.to_dict(),
            "max_message_bytes": self.max_message_bytes, "max_batch": self.max_batch,
            "control_key": CONTROL_MARK, "control_messages": list(CONTROL_MESSAGES),
            "limits": {"max_values": limits.max_values, "max_container_len": limits.max_container_len,
                       "max_depth": limits.max_depth, "max_str_len": limits.max_str_len,
                       "max_bin_len": limits.max_bin_len},
            "policy_dir": None if self.policy_dir is None else str(self.policy_dir),
            "policy_config": config.to_dict(), "training": self.training,
        }

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"ws://{host}:{self.port}"

    # --- lifecycle ----------------------------------------------------------------------------------------------
    async def start(self) -> None:
        """Bind (``port`` 0 picks a free one, read back into ``self.port``) and start the worker."""
        from websockets.asyncio.server import serve

        self._batcher = Batcher(self.policy, self.max_batch)
        self._batcher_task = asyncio.create_task(self._batcher.run(), name="c2c-serve-batcher")
        self._decoder = ThreadPoolExecutor(max_workers=self.decode_workers, thread_name_prefix="c2c-serve-decode")
        self._decode_slots = asyncio.Semaphore(self.decode_workers)
        try:
            self._server = await serve(self._handle, self.host, self.port, compression=None,
                                       max_size=self.max_message_bytes, max_queue=MAX_QUEUED_FRAMES,
                                       process_request=self._process_request, logger=_ws_log)
        except OSError as error:
            await self._stop_batcher()
            raise ConfigError(f"cannot listen on {self.host}:{self.port}: {error.strerror or error}") from None
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        """Close every connection (code 1001), stop accepting and stop the worker."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        await self._stop_batcher()

    async def _stop_batcher(self) -> None:
        if self._decoder is not None:
            decoder, self._decoder = self._decoder, None
            await asyncio.to_thread(decoder.shutdown, wait=True, cancel_futures=True)
        if self._batcher_task is not None:
            self._batcher_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._batcher_task
            self._batcher_task = None
        if self._batcher is not None:
            batcher, self._batcher = self._batcher, None
            await asyncio.to_thread(batcher.close)
            if batcher.batches:
                log.info("served %d requests in %d batches (%.2f per batch)", batcher.requests, batcher.batches,
                         batcher.requests / batcher.batches)
            if self.dropped:
                log.info("dropped %d requests whose connection closed first (%d before their batch ran)",
                         self.dropped, batcher.dropped)

    # --- connections --------------------------------------------------------------------------------------------
    def _process_request(self, connection: Any, request: Any) -> Any:
        """Health checks and the API key; every refusal is one log line and a one-line HTTP answer."""
        try:
            if request.path.split("?", 1)[0] == HEALTH_PATH:
                return connection.respond(HTTPStatus.OK, "OK\n")
            if self.api_key is None:
                return None
            try:
                given = _presented_key(request.headers)
            except _DuplicateHeader as duplicate:
                log.warning("refused %s: %s", _peer(connection), duplicate)
                return connection.respond(HTTPStatus.BAD_REQUEST, f"{duplicate}\n")
            if given is None or not hmac.compare_digest(given.encode(), self.api_key.encode()):
                log.warning("refused %s: %s API key", _peer(connection), "missing" if given is None else "wrong")
                return connection.respond(HTTPStatus.UNAUTHORIZED, "missing or wrong API key (send the header "
                                          "'Authorization: Api-Key <key>' or 'Api-Key: <key>')\n")
            return None
        except Exception as error:  # a malformed handshake is refused, never a 500
            log.warning("refused %s: malformed handshake (%s)", _peer(connection), _one_line(error),
                        exc_info=_debug())
            return connection.respond(HTTPStatus.BAD_REQUEST, "malformed handshake\n")

    def _read(self, message: bytes) -> Control | tuple[dict[str, Any], bool]:
        """In a decode thread: a message -> a control message, or (observation, whether to return the plan)."""
        request = unpackb(message, self.limits)
        if isinstance(request, Mapping) and CONTROL_MARK in request:
            return Control(control_name(request[CONTROL_MARK]))
        observation, return_plan = self.spec.parse(request)
        return observation, return_plan and self.config.has_plan

    async def _handle(self, connection: Any) -> None:
        from websockets.exceptions import ConnectionClosed

        peer = _peer(connection)
        self.connections += 1
        log.info("connection from %s", peer)
        state = ConnectionState(peer)
        closed = asyncio.ensure_future(connection.wait_closed())
        loop = asyncio.get_running_loop()
        assert self._batcher is not None and self._decoder is not None and self._decode_slots is not None
        try:
            await connection.send(self._metadata)
            async for message in connection:
                if isinstance(message, str):
                    raise ProtocolError("expected binary msgpack frames, got a text frame")
                async with self._decode_slots:
                    read = await loop.run_in_executor(self._decoder, self._read, message)
                del message
                if isinstance(read, Control):
                    await connection.send(packb(state.control(read.name)))
                    continue
                reply = None if closed.done() else await _unless_closed(self._batcher.submit(*read), closed)
                if reply is None:
                    self.dropped += 1
                    log.info("%s closed the connection before its reply: request dropped", peer)
                    break
                await connection.send(packb(reply))
                state.served += 1
                state.episode_requests += 1
        except ConnectionClosed:
            pass
        except (ProtocolError, C2CError) as error:
            log.warning("bad request from %s: %s", peer, error, exc_info=_debug())
            await _fail(connection, f"bad request: {error}", CLOSE_BAD_REQUEST, "bad request (see the text frame)")
        except Exception as error:  # this connection fails (one line logged and sent), the server goes on
            log.error("policy failure for %s: %s", peer, _one_line(error), exc_info=_debug())
            text = f"policy failure: {_one_line(error)}" + (f"\n{traceback.format_exc()}" if _debug() else "")
            await _fail(connection, text, CLOSE_INTERNAL_ERROR, "internal error (see the text frame)")
        finally:
            closed.cancel()
            log.info("connection from %s closed after %d requests", peer, state.served)


async def _unless_closed(future: asyncio.Future, closed: asyncio.Future) -> dict[str, Any] | None:
    """The reply of ``future``, or None (the request cancelled) when the connection closes first."""
    try:
        await asyncio.wait((future, closed), return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not future.done():  # the connection closed, or this handler was cancelled
            future.cancel()
    return None if future.cancelled() else future.result()


def _peer(connection: Any) -> str:
    address = getattr(connection, "remote_address", None)
    return f"{address[0]}:{address[1]}" if isinstance(address, tuple) and len(address) >= 2 else str(address)


async def _fail(connection: Any, text: str, code: int, reason: str) -> None:
    """Fail the connection (RFC 6455, 7.1.7): the error as a text frame, then a close frame and the end of the TCP
    stream. Nothing more is read from the client (a refused client may have queued more large messages, which a
    normal closing handshake would receive in full); the socket is closed :data:`REFUSED_LINGER_S` later, when the
    client has had the time to read the error."""
    from websockets.exceptions import ConnectionClosed

    try:
        await connection.send(text)
        protocol, send_context = getattr(connection, "protocol", None), getattr(connection, "send_context", None)
        transport = getattr(connection, "transport", None)
        if protocol is None or send_context is None or transport is None:  # another websockets: its handshake
            await connection.close(code=code, reason=reason)
            return
        async with send_context():
            protocol.fail(code, reason)
            transport.pause_reading()
            asyncio.get_running_loop().call_later(REFUSED_LINGER_S, transport.close)
    except ConnectionClosed:
        pass


class BackgroundServer:
    """Runs a :class:`PolicyServer` on an event loop in a daemon thread (tests, benchmarks, notebooks)."""

    def __init__(self, server: PolicyServer, start_timeout_s: float = 30.0) -> None:
        self.server, self.start_timeout_s = server, start_timeout_s
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="c2c-serve-loop", daemon=True)

    @property
    def url(self) -> str:
        return self.server.url

    def _main(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        try:
            await self.server.start()
        except BaseException as error:  # noqa: BLE001 - raised again in the starting thread
            self._error = error
            self._ready.set()
            return
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await self.server.close()

    def start(self) -> Self:
        self._thread.start()
        if not self._ready.wait(self.start_timeout_s):
            raise C2CError(f"the policy server did not start within {self.start_timeout_s} s")
        if self._error is not None:
            raise self._error
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def run_server(policy_dir: str | Path, *, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
               api_key: str | None = None, key_map: str | None = None, resize: bool | None = None,
               strict_size: bool = False, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
               max_batch: int = DEFAULT_MAX_BATCH, threads: int | None = None,
               decode_workers: int = DEFAULT_DECODE_WORKERS, training: dict[str, Any] | None = None,
               stop_signals: Sequence[int] = (signal.SIGINT, signal.SIGTERM)) -> None:
    """``c2c serve``: load the policy, print the URL, serve until SIGINT or SIGTERM, then close cleanly.
    ``training``: the metadata's training record (see the module docstring)."""
    import torch

    from c2c.policy import load_policy
    from c2c.utils.threads import free_cpus

    policy_dir = Path(policy_dir)
    if not policy_dir.is_dir():
        raise ConfigError(f"--policy {policy_dir}: not a directory (train one with `c2c policy train`)")
    if threads is not None and threads < 1:
        raise ConfigError(f"--threads must be at least 1, got {threads}")
    resolve_resize(key_map, resize, strict_size)  # contradicting options fail before the policy loads
    torch.set_num_threads(threads if threads is not None else free_cpus())
    policy = load_policy(policy_dir)
    server = PolicyServer(policy, host=host, port=port, api_key=api_key, key_map=key_map, resize=resize,
                          strict_size=strict_size, max_message_bytes=max_message_bytes, max_batch=max_batch,
                          policy_dir=policy_dir, training=training, decode_workers=decode_workers)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for number in stop_signals:
            loop.add_signal_handler(number, stop.set)
        await server.start()
        config = server.config
        sizes = "other image sizes resized" if server.spec.resize else "other image sizes refused"
        print(f"c2c serve: {policy_dir} ({config.variant}, cameras {', '.join(config.cameras)} at "
              f"{config.image_size} px, {sizes}, key map {server.spec.key_map.name}) on {server.url} "
              f"(health: http://{server.url.removeprefix('ws://')}{HEALTH_PATH}); Ctrl-C stops", flush=True)
        try:
            await stop.wait()
        finally:
            await server.close()
            for number in stop_signals:
                loop.remove_signal_handler(number)
        print(f"c2c serve: stopped after {server.connections} connections", flush=True)

    asyncio.run(main())
