"""The interface every action tokenizer implements, so benchmarks and the policy swap them by name.

Tokenizers take actions in the dataset's own units and normalize them internally with the statistics they were
fitted with (q01/q99 to [-1, 1]; the plan mode has its own statistics), so a caller cannot forget to.

Shapes: ``actions`` (B, H, A); ``codes`` (B, N, R) int64 with N token positions and R residual levels
(R = 1 for single-level tokenizers). Variable-length tokenizers (FAST) pad ``codes`` with ``PAD_CODE``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np

from c2c.errors import ConfigError

Mode = Literal["exec", "plan"]
MODES: tuple[Mode, ...] = ("exec", "plan")
MODE_INDEX: dict[str, int] = {"exec": 0, "plan": 1}  # paper: m = 0 execution, m = 1 planning
PAD_CODE = -1


def check_mode(mode: str) -> Mode:
    if mode not in MODE_INDEX:
        raise ConfigError(f"unknown tokenizer mode {mode!r}; expected 'exec' or 'plan'")
    return mode  # type: ignore[return-value]


@dataclass
class DecodeReport:
    """What a decoder could not use. Decoders never raise on malformed codes: they decode what is valid."""

    invalid_tokens: np.ndarray  # (B,) tokens dropped or replaced per sample
    repaired: np.ndarray  # (B,) bool: the sample needed any repair
    messages: list[str] = field(default_factory=list)

    @property
    def num_repaired(self) -> int:
        return int(self.repaired.sum())


class ActionTokenizer(ABC):
    """Maps (B, H, A) action chunks to discrete codes and back."""

    name: ClassVar[str]

    @property
    @abstractmethod
    def codebook_size(self) -> int:
        """Number of distinct token ids per level."""

    @property
    @abstractmethod
    def num_levels(self) -> int:
        """Residual levels R (1 for single-level tokenizers)."""

    @abstractmethod
    def tokens_per_chunk(self, mode: Mode = "exec") -> int:
        """Tokens of one chunk (N x R); the maximum for variable-length tokenizers."""

    @abstractmethod
    def encode(self, actions: np.ndarray, mode: Mode = "exec") -> np.ndarray:
        """(B, H, A) actions in dataset units -> (B, N, R) int64 codes."""

    @abstractmethod
    def decode(
        self, codes: np.ndarray, mode: Mode = "exec", *, return_report: bool = False
    ) -> np.ndarray | tuple[np.ndarray, DecodeReport]:
        """(B, N, R) codes -> (B, H, A) actions in dataset units.

        With ``return_report=True`` no decoder raises on malformed codes: it decodes what is valid and reports the
        rest. Without it, the baselines (binning, FAST) still repair silently-safe cases the same way, while the RVQ
        tokenizer raises a ConfigError naming the first out-of-range code.
        """

    @abstractmethod
    def save_pretrained(self, directory: str | Path) -> Path: ...

    @classmethod
    @abstractmethod
    def from_pretrained(cls, directory: str | Path) -> "ActionTokenizer": ...


def check_actions(actions: np.ndarray, horizon: int, action_dim: int, mode: str, who: str) -> np.ndarray:
    """Validate a (B, H, A) batch against a tokenizer's horizon and action dimension; name what is wrong."""
    actions = np.asarray(actions)
    if actions.ndim != 3:
        raise ConfigError(f"{who}: actions must be (B, H, A), got shape {tuple(actions.shape)}")
    if actions.shape[1] != horizon:
        raise ConfigError(f"{who}: {mode} chunks must have {horizon} steps, got {actions.shape[1]}")
    if actions.shape[2] != action_dim:
        raise ConfigError(f"{who}: expected {action_dim}-dim actions, got {actions.shape[2]}")
    if not np.isfinite(actions).all():
        raise ConfigError(f"{who}: actions contain NaN or inf")
    return actions.astype(np.float32, copy=False)
