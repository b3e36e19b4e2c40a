"""The episode: the unit every dataset reader yields and every writer takes.

Example::

    ep = Episode(actions=np.zeros((50, 4), np.float32), states=np.zeros((50, 4), np.float32),
                 images={"corner2": np.zeros((50, 96, 96, 3), np.uint8)}, task="reach the goal")
    ep.validate(source="demo")
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator, Protocol

import numpy as np

from c2c.errors import DatasetError


@dataclass
class Episode:
    """One demonstration: T frames of actions, proprio states, camera images and one instruction."""

    actions: np.ndarray  # (T, A) float32
    states: np.ndarray  # (T, S) float32
    images: dict[str, np.ndarray] = field(default_factory=dict)  # camera -> (T, H, W, 3) uint8
    task: str = ""  # the language instruction
    metadata: dict[str, Any] = field(default_factory=dict)  # e.g. {"seed": 3, "env": "reach-v3"}

    @property
    def length(self) -> int:
        return int(self.actions.shape[0])

    def validate(self, source: str = "episode") -> "Episode":
        """Check shapes, dtypes and finiteness; raise a :class:`DatasetError` naming ``source`` and the key."""
        if self.actions.ndim != 2:
            raise DatasetError(f"{source}: 'action' must be (T, A), got shape {tuple(self.actions.shape)}")
        if self.states.ndim != 2:
            raise DatasetError(f"{source}: 'observation.state' must be (T, S), got shape {tuple(self.states.shape)}")
        length = self.actions.shape[0]
        if length == 0:
            raise DatasetError(f"{source}: episode has no frames")
        if self.states.shape[0] != length:
            raise DatasetError(
                f"{source}: 'observation.state' has {self.states.shape[0]} frames but 'action' has {length}"
            )
        for name, values in (("action", self.actions), ("observation.state", self.states)):
            bad = ~np.isfinite(values)
            if bad.any():
                frame, dim = (int(i) for i in np.argwhere(bad)[0])
                raise DatasetError(
                    f"{source}: '{name}' has a non-finite value ({values[frame, dim]}) at frame {frame}, dim {dim}"
                )
        for camera, frames in self.images.items():
            if frames.ndim != 4 or frames.shape[-1] != 3:
                raise DatasetError(
                    f"{source}: image '{camera}' must be (T, H, W, 3), got shape {tuple(frames.shape)}"
                )
            if frames.shape[0] != length:
                raise DatasetError(f"{source}: image '{camera}' has {frames.shape[0]} frames but 'action' has {length}")
            if frames.dtype != np.uint8:
                raise DatasetError(f"{source}: image '{camera}' must be uint8, got {frames.dtype}")
        if not isinstance(self.task, str) or not self.task:
            raise DatasetError(f"{source}: episode has no task instruction")
        return self


class EpisodeSource(Protocol):
    """What every dataset reader offers (LeRobot v3, LIBERO HDF5)."""

    @property
    def num_episodes(self) -> int: ...

    def episode(self, index: int, *, load_images: bool = True) -> Episode: ...

    def __iter__(self) -> Iterator[Episode]: ...
