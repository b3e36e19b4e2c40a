"""Control messages and per-connection state of ``c2c serve``.

A map with the key ``"__ctrl__"`` (``{"__ctrl__": "episode_start"}``, ``"episode_end"`` or ``"reset"``, as some
openpi client variants send between episodes) is a control message, not an observation. The server keeps no action
state per connection, so a control message only resets the connection's episode counters that the log reports.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from c2c.serve.codec import ProtocolError
from c2c.serve.keymap import CONTROL_MARK

CONTROL_MESSAGES = ("episode_start", "episode_end", "reset")
MAX_CONTROL_CHARS = 64

log = logging.getLogger("c2c.serve")


@dataclass
class Control:
    """A control message (``{"__ctrl__": name}``) read from a connection."""

    name: str


def control_name(value: Any) -> str:
    """The name of a control message, or a ProtocolError when ``value`` is not a short string."""
    if not isinstance(value, str) or not 0 < len(value) <= MAX_CONTROL_CHARS:
        shown = repr(value) if isinstance(value, (str, int, float, bool, type(None))) else type(value).__name__
        raise ProtocolError(f"{CONTROL_MARK!r}: expected the name of a control message "
                            f"({', '.join(CONTROL_MESSAGES)}), got {shown[:80]}")
    return value


@dataclass
class ConnectionState:
    """What the server keeps per connection: counters for the log (no action state: see the module docstring)."""

    peer: str
    served: int = 0
    episodes: int = 0
    episode_requests: int = 0

    def control(self, name: str) -> dict[str, Any]:
        """Apply a control message; the reply."""
        if name not in CONTROL_MESSAGES:
            log.warning("%s sent the unknown control message %r (known: %s)", self.peer, name,
                        ", ".join(CONTROL_MESSAGES))
            return {"ok": False, "control": name,
                    "error": f"unknown control message {name!r} (known: {', '.join(CONTROL_MESSAGES)})"}
        if name == "episode_end":
            log.info("%s: episode %d ended after %d requests", self.peer, self.episodes, self.episode_requests)
        else:
            self.episodes += 1
            log.info("%s: episode %d started (%s)", self.peer, self.episodes, name)
        self.episode_requests = 0
        return {"ok": True, "control": name, "episode": self.episodes}
