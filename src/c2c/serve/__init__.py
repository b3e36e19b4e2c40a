"""Serving a policy to robots over openpi's websocket protocol (``c2c serve``).

Modules: ``codec`` (msgpack with numpy arrays, openpi's wire format, checked, never pickle), ``keymap`` (openpi
request keys -> our observation keys: ``libero``, ``metaworld``, ``auto`` or a JSON file), ``observation``
(request checks before batching), ``batching`` (the queue that decodes requests together), ``control``
(control messages, per-connection counters), ``server`` (``PolicyServer``: one policy, batched off the event
loop), ``client`` (``PolicyClient``, ``RemotePolicy``).

Importing this package loads nothing heavy until a name is used.
"""

from __future__ import annotations

from typing import Any

_EXPORTS = {
    "packb": "c2c.serve.codec",
    "unpackb": "c2c.serve.codec",
    "ProtocolError": "c2c.serve.codec",
    "KeyMap": "c2c.serve.keymap",
    "load_key_map": "c2c.serve.keymap",
    "PolicyServer": "c2c.serve.server",
    "BackgroundServer": "c2c.serve.server",
    "run_server": "c2c.serve.server",
    "PolicyClient": "c2c.serve.client",
    "RemotePolicy": "c2c.serve.client",
    "ServerError": "c2c.serve.client",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'c2c.serve' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_EXPORTS[name]), name)
