"""Checks a decoded request against the served policy, before it joins a batch (one bad request fails alone).

A request becomes one observation in our keys: ``observation.images.<camera>`` uint8 (S, S, 3) for every camera of
the policy (S its image size), ``observation.state`` float32 (state_dim,) of finite numbers, ``task`` a string.
An image of another size is resized to S x S when ``resize`` is on (PIL bilinear, the function training resizes
dataset frames with: :func:`c2c.data.streaming.resize_frame`), else refused in one line naming the key, the size
got and the size expected. ``c2c serve`` resizes by default with ``--key-map libero`` (openpi's LIBERO client sends
224 x 224 images) and with ``--resize``; ``--strict-size`` refuses.

Example::

    spec = RequestSpec(cameras=("image", "image2"), image_size=128, state_dim=8, key_map=load_key_map("libero", ...))
    observation, return_plan = spec.parse(unpackb(message))
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from c2c.constants import OBS_STATE, TASK, image_key
from c2c.serve.codec import ProtocolError
from c2c.serve.keymap import RETURN_PLAN, KeyMap

MAX_PROMPT_CHARS = 4096
MAX_RESIZE_SIDE = 4096  # larger images are refused rather than resized


class RequestError(ProtocolError):
    """A well-formed message that is not a valid observation for the served policy."""


@dataclass(frozen=True)
class RequestSpec:
    """What the served policy accepts, and how requests are mapped and checked."""

    cameras: tuple[str, ...]
    image_size: int
    state_dim: int
    key_map: KeyMap
    resize: bool = False
    strict_size: bool = False  # only changes the hint of the refusal: --strict-size was asked for

    def parse(self, request: Any) -> tuple[dict[str, Any], bool]:
        """A decoded request -> (observation in our keys, whether the reply should carry the plan)."""
        if not isinstance(request, Mapping):
            raise RequestError(f"a request must be a map of observation keys, got {type(request).__name__}")
        raw, options = self.key_map.apply(request)
        missing = [key for key in (*map(image_key, self.cameras), OBS_STATE, TASK) if key not in raw]
        if missing:
            names = ", ".join(self.key_map.wire_name(key) for key in missing)
            have = ", ".join(repr(key) for key in request) or "nothing"
            raise RequestError(f"request lacks {names} (it has {have}; key map {self.key_map.name!r})")
        observation = {image_key(camera): self._image(raw, camera) for camera in self.cameras}
        observation[OBS_STATE] = self._state(raw[OBS_STATE])
        observation[TASK] = self._prompt(raw[TASK])
        return observation, self._return_plan(options.get(RETURN_PLAN, True))

    def _image(self, raw: Mapping[str, Any], camera: str) -> np.ndarray:
        key, size = image_key(camera), self.image_size
        name, expected = self.key_map.wire_name(key), (size, size, 3)
        value = raw[key]
        if not isinstance(value, np.ndarray):
            raise RequestError(f"{name}: expected a uint8 array of shape {expected}, got {type(value).__name__}")
        if value.dtype != np.uint8:
            raise RequestError(f"{name}: expected dtype uint8 (0-255 RGB), got {value.dtype.name}")
        if value.shape == expected:
            return value
        if value.ndim != 3 or value.shape[2] != 3 or 0 in value.shape:
            raise RequestError(f"{name}: expected an RGB image of shape {expected} (height, width, 3), got "
                               f"{value.shape}")
        if not self.resize:
            hint = ("the server runs with --strict-size; send {0}x{0} images or restart it without --strict-size to "
                    "resize them" if self.strict_size else "start the server with --resize to resize").format(size)
            raise RequestError(f"{name}: expected image size {size}x{size}, got {value.shape[0]}x{value.shape[1]} "
                               f"(shape {expected}; {hint})")
        if max(value.shape[:2]) > MAX_RESIZE_SIDE:
            raise RequestError(f"{name}: {value.shape[0]}x{value.shape[1]} is larger than the {MAX_RESIZE_SIDE} px "
                               f"this server resizes")
        from c2c.data.streaming import resize_frame

        return resize_frame(value, size)

    def _state(self, value: Any) -> np.ndarray:
        name, expected = self.key_map.wire_name(OBS_STATE), f"({self.state_dim},)"
        if isinstance(value, (list, tuple)):
            if not all(type(item) in (int, float) for item in value):
                raise RequestError(f"{name}: expected {self.state_dim} numbers")
            value = np.asarray(value, dtype=np.float64)
        if not isinstance(value, np.ndarray):
            raise RequestError(f"{name}: expected a float array of shape {expected}, got {type(value).__name__}")
        if value.dtype.kind not in "uif":
            raise RequestError(f"{name}: expected numbers, got dtype {value.dtype.name}")
        if value.shape != (self.state_dim,):
            raise RequestError(f"{name}: expected shape {expected}, got {value.shape}")
        state = value.astype(np.float32)
        if not np.isfinite(state).all():
            raise RequestError(f"{name}: expected finite numbers (float32), got {value.tolist()}")
        return state

    def _prompt(self, value: Any) -> str:
        name = self.key_map.wire_name(TASK)
        if not isinstance(value, str):
            raise RequestError(f"{name}: expected the instruction as a string, got {type(value).__name__}")
        if len(value) > MAX_PROMPT_CHARS:
            raise RequestError(f"{name}: {len(value)} characters; at most {MAX_PROMPT_CHARS} are accepted")
        return value

    @staticmethod
    def _return_plan(value: Any) -> bool:
        if isinstance(value, (bool, np.bool_)):
            return bool(value)
        raise RequestError(f"{RETURN_PLAN!r}: expected true or false, got {value!r}")
