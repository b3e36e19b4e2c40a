"""Bad requests for checking a policy server, and a probe that sends one on a connection of its own.

Example::

    wire = to_wire(observation, key_map)                 # our keys -> the key map's wire keys
    for name, message, expected in bad_requests(wire, state_key="observation/state", max_message_bytes=2**20):
        ok, detail = probe(url, message, expected)       # ok: the server answered as expected, then closed
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgpack
import numpy as np

from c2c.serve.codec import packb, unpackb
from c2c.serve.keymap import KeyMap

CLOSE_TOO_BIG = 1009
CLOSE_BAD_REQUEST = 1008


def to_wire(observation: Mapping[str, Any], key_map: KeyMap) -> dict[str, Any]:
    """An observation in our keys renamed to the wire keys of ``key_map`` (keys it does not map stay ours)."""
    wire_of = {ours: wire for wire, ours in key_map.keys.items()}
    return {wire_of.get(key, key): value for key, value in observation.items()}


def _marked(data: bytes, dtype: Any, shape: Any) -> dict[bytes, Any]:
    return {b"__ndarray__": True, b"data": data, b"dtype": dtype, b"shape": shape}


def bad_requests(wire: Mapping[str, Any], *, state_key: str, image_key: str, prompt_key: str,
                 max_message_bytes: int) -> list[tuple[str, bytes | str, str | None]]:
    """(name, message, text the error frame must contain) for each kind of bad input; text None: the server
    must close with code 1009 (message too big) instead."""
    raw = {key: _marked(v.tobytes(), v.dtype.str, list(v.shape)) if isinstance(v, np.ndarray) else v
           for key, v in wire.items()}
    state = np.asarray(wire[state_key])
    dim, size = state.shape[0], np.asarray(wire[image_key]).shape[0]

    def with_state(marked: dict[bytes, Any]) -> bytes:
        return msgpack.packb({**raw, state_key: marked}, use_bin_type=True)

    return [
        ("not msgpack", b"\xc1\x00\x01", "not valid msgpack"),
        ("not a map", packb([1, 2, 3]), "must be a map"),
        ("object dtype", with_state(_marked(b"\0" * 8, "|O", [1])), "dtype '|O' is not accepted"),
        ("complex dtype", with_state(_marked(b"\0" * 8 * dim, "<c8", [dim])), "dtype '<c8' is not accepted"),
        ("void dtype", with_state(_marked(b"\0" * 4 * dim, "|V4", [dim])), "dtype '|V4' is not accepted"),
        ("negative shape", with_state(_marked(state.astype("<f4").tobytes(), "<f4", [-dim])), "non-negative"),
        ("wrong byte count", with_state(_marked(b"\0" * 12, "<f4", [dim])), f"needs {4 * dim} bytes, got 12"),
        ("missing key", packb({k: v for k, v in wire.items() if k != prompt_key}), f"lacks {prompt_key!r}"),
        ("wrong image size", packb({**wire, image_key: np.zeros((2 * size, 2 * size, 3), np.uint8)}),
         f"expected image size {size}x{size}, got {2 * size}x{2 * size}"),
        ("float image", packb({**wire, image_key: np.zeros((size, size, 3), np.float32)}), "expected dtype uint8"),
        ("state shape", packb({**wire, state_key: np.zeros(dim + 1, np.float32)}), f"expected shape ({dim},)"),
        ("state not finite", packb({**wire, state_key: np.full(dim, np.nan, np.float32)}), "finite"),
        ("prompt not a string", packb({**wire, prompt_key: 5}), "expected the instruction as a string"),
        ("text frame", "hello", "expected binary msgpack frames"),
        ("oversized", packb({**wire, "padding": b"\0" * (max_message_bytes + 1)}), None),
    ]


def probe(url: str, message: bytes | str, expected: str | None, *, api_key: str | None = None,
          timeout_s: float = 30.0) -> tuple[bool, str]:
    """Send ``message`` on a new connection; (whether the server refused it as expected, what it said)."""
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    headers = {"Authorization": f"Api-Key {api_key}"} if api_key else None
    with connect(url, compression=None, max_size=None, additional_headers=headers, open_timeout=timeout_s,
                 proxy=None) as connection:
        unpackb(connection.recv(timeout=timeout_s))  # the metadata
        connection.send(message)
        try:
            answer = connection.recv(timeout=timeout_s)
        except ConnectionClosed as closed:
            code = closed.rcvd.code if closed.rcvd is not None else None
            return expected is None and code == CLOSE_TOO_BIG, f"closed with code {code}"
        if not isinstance(answer, str):
            return False, "answered with a reply instead of an error"
        try:
            connection.recv(timeout=timeout_s)
            return False, f"not closed after the error {answer!r}"
        except ConnectionClosed as closed:
            code = closed.rcvd.code if closed.rcvd is not None else None
        ok = expected is not None and expected in answer and answer.startswith("bad request: ") \
            and code == CLOSE_BAD_REQUEST
        return ok, f"{answer} (then closed with code {code})"
