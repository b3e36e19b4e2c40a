"""Quantile normalization to [-1, 1] (paper B.2: "normalized with q99").

``x_norm = clip(2 (x - q01) / (q99 - q01) - 1, -1, 1)``. The same object normalizes training data, evaluation
observations and served requests, and it is saved inside every checkpoint, so the three cannot drift apart.

Coarse plans get their own statistics: a plan step sums c = Hp / K actions (Eq. 3), so its range is several
times wider than a single action's, and normalizing it with the action's q01/q99 would clip most of it.

Example::

    norm = QuantileNormalizer.fit(actions)          # (N, D) -> per-dim q01/q99
    x = norm.normalize(chunk)                         # (..., D) in [-1, 1]
    chunk_again = norm.unnormalize(x)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from c2c.data.windows import EpisodeWindows
from c2c.errors import ConfigError

# Keeps constant dimensions (q99 == q01, e.g. an unused gripper) finite instead of dividing by zero.
EPSILON = 1e-6


@dataclass
class QuantileNormalizer:
    """Per-dimension affine map of [q01, q99] onto [-1, 1], with clipping."""

    q01: np.ndarray  # (D,)
    q99: np.ndarray  # (D,)

    def __post_init__(self) -> None:
        self.q01 = np.asarray(self.q01, dtype=np.float32).reshape(-1)
        self.q99 = np.asarray(self.q99, dtype=np.float32).reshape(-1)
        if self.q01.shape != self.q99.shape:
            raise ConfigError(f"q01 has shape {self.q01.shape} but q99 has {self.q99.shape}")
        if not (np.isfinite(self.q01).all() and np.isfinite(self.q99).all()):
            raise ConfigError("normalization statistics contain NaN or inf")
        if (self.q99 < self.q01).any():
            dim = int(np.argmax(self.q99 < self.q01))
            raise ConfigError(f"q99 < q01 in dim {dim} ({self.q99[dim]} < {self.q01[dim]})")

    @property
    def dim(self) -> int:
        return int(self.q01.shape[0])

    @classmethod
    def fit(cls, values: np.ndarray) -> "QuantileNormalizer":
        """True quantiles over every row of (N, D) values (or (N, ..., D): all leading axes are pooled)."""
        flat = np.asarray(values, dtype=np.float64).reshape(-1, values.shape[-1])
        if flat.shape[0] == 0:
            raise ConfigError("cannot fit normalization statistics on zero samples")
        q01, q99 = np.quantile(flat, [0.01, 0.99], axis=0)
        return cls(q01=q01, q99=q99)

    @classmethod
    def from_stats(cls, stats: dict[str, Any], key: str) -> "QuantileNormalizer":
        """From a LeRobot-style stats dict {feature: {"q01": ..., "q99": ...}}."""
        if key not in stats:
            raise ConfigError(f"no statistics for {key!r} (have: {', '.join(sorted(stats))})")
        for name in ("q01", "q99"):
            if name not in stats[key]:
                raise ConfigError(f"statistics of {key!r} lack {name!r}")
        return cls(q01=stats[key]["q01"], q99=stats[key]["q99"])

    def _check(self, x: np.ndarray) -> None:
        if x.shape[-1] != self.dim:
            raise ConfigError(f"expected {self.dim}-dim values, got shape {tuple(x.shape)}")

    def normalize(self, x: np.ndarray) -> np.ndarray:
        self._check(x)
        scaled = 2.0 * (x - self.q01) / (self.q99 - self.q01 + EPSILON) - 1.0
        return np.clip(scaled, -1.0, 1.0).astype(np.float32)

    def unnormalize(self, x: np.ndarray) -> np.ndarray:
        self._check(x)
        return ((np.asarray(x) + 1.0) / 2.0 * (self.q99 - self.q01 + EPSILON) + self.q01).astype(np.float32)

    def to_dict(self) -> dict[str, list[float]]:
        return {"q01": self.q01.tolist(), "q99": self.q99.tolist()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "QuantileNormalizer":
        return cls(q01=data["q01"], q99=data["q99"])


@dataclass
class ActionNormalizers:
    """The three normalizers a policy needs: executable actions, coarse plan steps and proprio state."""

    action: QuantileNormalizer
    plan: QuantileNormalizer | None
    state: QuantileNormalizer

    @classmethod
    def fit(cls, actions: np.ndarray, states: np.ndarray, windows: EpisodeWindows | None) -> "ActionNormalizers":
        """Action and state stats over all frames; plan stats over every coarse step that is not pure padding."""
        plan = None
        if windows is not None and windows.plans is not None:
            real_steps = windows.plans[~windows.plan_pad]  # (M, D): coarse steps with at least one real action
            plan = QuantileNormalizer.fit(real_steps)
        return cls(action=QuantileNormalizer.fit(actions), plan=plan, state=QuantileNormalizer.fit(states))

    def to_dict(self) -> dict[str, Any]:
        return {
            "action": self.action.to_dict(),
            "plan": None if self.plan is None else self.plan.to_dict(),
            "state": self.state.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ActionNormalizers":
        plan = data.get("plan")
        return cls(
            action=QuantileNormalizer.from_dict(data["action"]),
            plan=None if plan is None else QuantileNormalizer.from_dict(plan),
            state=QuantileNormalizer.from_dict(data["state"]),
        )
