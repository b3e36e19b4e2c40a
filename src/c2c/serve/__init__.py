"""Serving a policy to robots over openpi's websocket protocol (``c2c serve``).

Modules: ``codec`` (msgpack with numpy arrays, openpi's wire format, checked, never pickle), ``keymap`` (openpi
request keys -> our observation keys: ``libero``, ``metaworld``, ``auto`` or a JSON file), ``observation``
(request checks before batching), ``batching`` (the queue that decodes requests together), ``control``
(control messages, per-connection counters), ``server`` (``PolicyServer``: one policy, batched off the event
loop), ``client`` (``PolicyClient``, ``RemotePolicy``).

Importing this package loads nothing heavy until a name is used.
"""

from __future__ import annotations

from c2c.utils.lazy import lazy_exports

__all__, __getattr__ = lazy_exports(__name__, {
    "codec": ("packb", "unpackb", "ProtocolError"),
    "keymap": ("KeyMap", "load_key_map"),
    "server": ("PolicyServer", "BackgroundServer", "run_server"),
    "client": ("PolicyClient", "RemotePolicy", "ServerError"),
})
