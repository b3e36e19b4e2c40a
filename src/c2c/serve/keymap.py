"""Request keys of openpi clients -> this project's observation keys.

openpi's LIBERO client sends ``observation/image``, ``observation/wrist_image``, ``observation/state`` and
``prompt``; our policies read ``observation.images.<camera>``, ``observation.state`` and ``task``. A key map says
which of ours each wire key fills. Presets:

``libero``     observation/image -> observation.images.image (agentview), observation/wrist_image ->
               observation.images.image2 (wrist), as ``c2c data libero`` and the LIBERO HDF5 reader name them.
               Asked for by name, it also makes ``c2c serve`` resize images of another size (openpi's LIBERO client
               sends 224 x 224 ones) unless ``--strict-size``; see :func:`c2c.serve.server.resolve_resize`.
``metaworld``  observation/image -> observation.images.corner2, observation/wrist_image ->
               observation.images.gripperPOV (the default cameras of ``c2c data metaworld``).
``auto``       observation/image -> the policy's first camera, observation/wrist_image -> its second.

Every map also sends ``observation/state`` -> ``observation.state`` and ``prompt`` -> ``task``. A JSON file
``{"wire key": "our key", ...}`` gives the images; those two are added unless it maps them itself. Keys already in
our names pass through unchanged, so a client may speak either dialect; other keys are ignored.

Example::

    key_map = load_key_map("libero", cameras=("image", "image2"))
    key_map.apply({"observation/image": img, "observation/wrist_image": wrist, "observation/state": s,
                   "prompt": "put the bowl on the plate"})      # {"observation.images.image": img, ...}
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from c2c.constants import OBS_IMAGES_PREFIX, OBS_STATE, TASK, image_key
from c2c.errors import ConfigError
from c2c.serve.codec import ProtocolError

WIRE_IMAGE = "observation/image"
WIRE_WRIST_IMAGE = "observation/wrist_image"
WIRE_STATE = "observation/state"
WIRE_PROMPT = "prompt"
RETURN_PLAN = "return_plan"  # request option: False leaves the plan out of the reply
CONTROL_MARK = "__ctrl__"  # a message {"__ctrl__": name} is a control message, not a request (c2c.serve.server)
CONTROL_KEYS = frozenset({RETURN_PLAN})

COMMON = {WIRE_STATE: OBS_STATE, WIRE_PROMPT: TASK}
PRESETS: dict[str, dict[str, str]] = {
    "libero": {WIRE_IMAGE: image_key("image"), WIRE_WRIST_IMAGE: image_key("image2"), **COMMON},
    "metaworld": {WIRE_IMAGE: image_key("corner2"), WIRE_WRIST_IMAGE: image_key("gripperPOV"), **COMMON},
}


def is_own_key(key: str) -> bool:
    """Whether ``key`` is one of this project's observation keys (those pass through any key map)."""
    return key in (OBS_STATE, TASK) or (key.startswith(OBS_IMAGES_PREFIX) and len(key) > len(OBS_IMAGES_PREFIX))


@dataclass(frozen=True)
class KeyMap:
    """Wire key -> our key, with the name it was chosen by (a preset, ``auto`` or a file path)."""

    name: str
    keys: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        seen: dict[str, str] = {}
        for wire, ours in self.keys.items():
            if not isinstance(wire, str) or not isinstance(ours, str) or not wire:
                raise ConfigError(f"key map {self.name}: keys and values must be non-empty strings, got "
                                  f"{wire!r}: {ours!r}")
            if not is_own_key(ours):
                raise ConfigError(f"key map {self.name}: {wire!r} maps to {ours!r}, which is not an observation key "
                                  f"(expected {OBS_STATE!r}, {TASK!r} or '{OBS_IMAGES_PREFIX}<camera>')")
            if wire in CONTROL_KEYS:
                raise ConfigError(f"key map {self.name}: {wire!r} is a request option and cannot be mapped")
            if ours in seen:
                raise ConfigError(f"key map {self.name}: {seen[ours]!r} and {wire!r} both map to {ours!r}")
            seen[ours] = wire

    def wire_name(self, ours: str) -> str:
        """How an error names our key ``ours``: ``'observation/image' (observation.images.image)`` or just ours."""
        for wire, target in self.keys.items():
            if target == ours:
                return f"{wire!r} ({ours})"
        return repr(ours)

    def apply(self, request: Mapping[Any, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """A request -> (observation in our keys, request options); unknown keys are left out."""
        observation: dict[str, Any] = {}
        options: dict[str, Any] = {}
        source: dict[str, str] = {}
        for key, value in request.items():
            if not isinstance(key, str):
                raise ProtocolError(f"request keys must be strings, got {key!r}")
            if key in CONTROL_KEYS:
                options[key] = value
                continue
            ours = self.keys.get(key, key if is_own_key(key) else None)
            if ours is None:
                continue
            if ours in observation:
                raise ProtocolError(f"request has both {source[ours]!r} and {key!r}, which both give {ours!r}")
            observation[ours], source[ours] = value, key
        return observation, options

    def check_cameras(self, cameras: Sequence[str]) -> None:
        """Refuse a map whose image keys name cameras the policy does not have."""
        wanted = {image_key(camera) for camera in cameras}
        for wire, ours in self.keys.items():
            if ours.startswith(OBS_IMAGES_PREFIX) and ours not in wanted:
                raise ConfigError(f"key map {self.name}: {wire!r} -> {ours!r}, but the policy's cameras are "
                                  f"{list(cameras)} (choose --key-map "
                                  f"{' or '.join(n for n in PRESETS if _fits(PRESETS[n], wanted)) or 'auto'})")

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "keys": dict(self.keys)}


def _fits(keys: Mapping[str, str], wanted: set[str]) -> bool:
    return all(ours in wanted for ours in keys.values() if ours.startswith(OBS_IMAGES_PREFIX))


def auto_key_map(cameras: Sequence[str]) -> KeyMap:
    """observation/image -> the first camera, observation/wrist_image -> the second (named after a preset when
    it is the same map)."""
    keys = {WIRE_IMAGE: image_key(cameras[0])}
    if len(cameras) > 1:
        keys[WIRE_WRIST_IMAGE] = image_key(cameras[1])
    keys.update(COMMON)
    for name, preset in PRESETS.items():
        if preset == keys:
            return KeyMap(name, keys)
    return KeyMap("auto", keys)


def load_key_map(spec: str | None, cameras: Sequence[str]) -> KeyMap:
    """``spec``: None or ``auto``, a preset name (:data:`PRESETS`) or a JSON file; checked against ``cameras``."""
    if spec is None or spec == "auto":
        key_map = auto_key_map(cameras)
    elif spec in PRESETS:
        key_map = KeyMap(spec, dict(PRESETS[spec]))
    else:
        path = Path(spec)
        if not path.is_file():
            raise ConfigError(f"--key-map {spec}: neither a preset ({', '.join(['auto', *PRESETS])}) nor a file")
        try:
            keys = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ConfigError(f"--key-map {path}: not valid JSON ({error})") from None
        if not isinstance(keys, dict):
            raise ConfigError(f"--key-map {path}: expected a JSON object {{\"wire key\": \"our key\"}}, got "
                              f"{type(keys).__name__}")
        defaults = {wire: ours for wire, ours in COMMON.items() if wire not in keys and ours not in keys.values()}
        key_map = KeyMap(str(path), {**defaults, **keys})
    key_map.check_cameras(cameras)
    return key_map
