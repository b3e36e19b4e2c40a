"""Per-dimension uniform binning (RT-2 / OpenVLA): one token per action dimension per step.

Each normalized value in [-1, 1] falls in one of ``bins`` equal-width bins; decoding returns the bin centre, so the
reconstruction error is at most half a bin width (1 / bins in normalized units) inside [q01, q99]. A chunk of
H steps and A dims is H x A tokens in time-major order (step 0 dims 0..A-1, then step 1, ...).

Example::

    tok = BinningTokenizer(normalizers, action_dim=4)        # exec chunks of 20 steps, plans of 20 steps
    codes = tok.encode(actions)                               # (B, 20, 4) -> (B, 80, 1) ids in [0, 256)
    again, report = tok.decode(codes, return_report=True)     # (B, 20, 4) in dataset units
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from c2c.data.normalize import ActionNormalizers, QuantileNormalizer
from c2c.errors import ConfigError
from c2c.tokenizer.base import PAD_CODE, ActionTokenizer, DecodeReport, Mode, check_actions, check_mode
from c2c.utils.io import atomic_write_json

CONFIG_FILE = "config.json"


def normalizer_for(normalizers: ActionNormalizers, mode: Mode, who: str) -> QuantileNormalizer:
    """The statistics a mode normalizes with: exec chunks use the action stats, coarse plans their own."""
    check_mode(mode)
    if mode == "exec":
        return normalizers.action
    if normalizers.plan is None:
        raise ConfigError(f"{who}: plan mode needs plan normalization statistics, but normalizers.plan is None")
    return normalizers.plan


def level_zero_ids(codes: np.ndarray, who: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Read (B, N, R) or (B, N) codes as (B, N) int64 ids of the first level, without raising on garbage values.

    Returns ``(ids, garbage, extra_level_tokens)``: entries that are not integers (NaN, inf, fractions) become
    ``PAD_CODE`` and are flagged in ``garbage`` (B, N); ``extra_level_tokens`` (B,) counts the non-pad tokens of
    levels above the first, which single-level tokenizers ignore. Only an array without a batch and a token axis
    is refused: that is a caller's shape bug, not a malformed token sequence.
    """
    codes = np.asarray(codes)
    if codes.ndim == 2:
        codes = codes[:, :, None]
    if codes.ndim != 3:
        raise ConfigError(f"{who}: codes must be (B, N, R) or (B, N), got shape {tuple(codes.shape)}")
    if codes.dtype.kind in "iu":
        values = codes.astype(np.int64)
        garbage = np.zeros(values.shape, dtype=bool)
    else:
        try:
            floats = codes.astype(np.float64)
        except (TypeError, ValueError):
            floats = np.full(codes.shape, np.nan)
        finite = np.isfinite(floats) & (np.abs(floats) < 2.0**62)
        safe = np.where(finite, floats, 0.0)
        garbage = ~finite | (safe != np.round(safe))  # NaN, inf, huge or fractional: not an id
        values = np.where(garbage, PAD_CODE, safe.astype(np.int64))
    extra_level_tokens = ((values[:, :, 1:] != PAD_CODE) | garbage[:, :, 1:]).sum(axis=(1, 2))
    return values[:, :, 0], garbage[:, :, 0], extra_level_tokens


def _hold_fill(values: np.ndarray) -> np.ndarray:
    """Fill NaN entries of (B, H, A) with the same dim's last valid earlier step, or 0 (mid-range) if none."""
    batch, horizon, dims = values.shape
    valid = ~np.isnan(values)
    step = np.where(valid, np.arange(horizon)[None, :, None], -1)  # (B, H, A)
    last_valid = np.maximum.accumulate(step, axis=1)  # (B, H, A): index of the latest valid step so far
    filled = np.take_along_axis(np.nan_to_num(values, nan=0.0), np.maximum(last_valid, 0), axis=1)
    return np.where(last_valid >= 0, filled, 0.0)


class SingleLevelTokenizer(ActionTokenizer):
    """What binning and FAST share: one token level, per-mode horizons (He or K) and the normalized input."""

    action_dim: int
    exec_horizon: int
    plan_steps: int
    normalizers: ActionNormalizers

    @property
    def num_levels(self) -> int:
        return 1

    def horizon(self, mode: Mode) -> int:
        return self.exec_horizon if check_mode(mode) == "exec" else self.plan_steps

    def normalized_input(self, actions: np.ndarray, mode: Mode) -> np.ndarray:
        """Checked (B, H, A) actions in dataset units -> (B, H, A) in [-1, 1] with the mode's statistics."""
        who = f"{self.name} encode"
        normalizer = normalizer_for(self.normalizers, mode, who)
        return normalizer.normalize(check_actions(actions, self.horizon(mode), self.action_dim, mode, who))


class BinningTokenizer(SingleLevelTokenizer):
    """Uniform bins over the normalized range [-1, 1]; exec and plan modes share the same ``bins`` ids."""

    name: ClassVar[str] = "binning"

    def __init__(
        self,
        normalizers: ActionNormalizers,
        *,
        action_dim: int,
        exec_horizon: int = 20,
        plan_steps: int = 20,
        bins: int = 256,
    ) -> None:
        for field, value in (("action_dim", action_dim), ("exec_horizon", exec_horizon), ("plan_steps", plan_steps)):
            if int(value) < 1:
                raise ConfigError(f"BinningTokenizer: {field} must be >= 1, got {value}")
        if int(bins) < 2:
            raise ConfigError(f"BinningTokenizer: bins must be >= 2, got {bins}")
        for label, normalizer in (("action", normalizers.action), ("plan", normalizers.plan)):
            if normalizer is not None and normalizer.dim != action_dim:
                raise ConfigError(
                    f"BinningTokenizer: action_dim is {action_dim} but the {label} statistics are {normalizer.dim}-dim"
                )
        self.normalizers = normalizers
        self.action_dim = int(action_dim)
        self.exec_horizon = int(exec_horizon)  # He: steps of an executable chunk
        self.plan_steps = int(plan_steps)  # K: steps of a coarse plan
        self.bins = int(bins)  # ids per token; the same ids serve both modes

    # --- ActionTokenizer -------------------------------------------------------------------------------------

    @property
    def codebook_size(self) -> int:
        return self.bins

    def tokens_per_chunk(self, mode: Mode = "exec") -> int:
        return self.horizon(mode) * self.action_dim

    def encode(self, actions: np.ndarray, mode: Mode = "exec") -> np.ndarray:
        x = self.normalized_input(actions, mode)  # (B, H, A) in [-1, 1]
        ids = np.floor((x + 1.0) * (self.bins / 2.0)).astype(np.int64)  # value 1.0 lands on `bins`: clip below
        ids = np.clip(ids, 0, self.bins - 1)
        return ids.reshape(ids.shape[0], -1, 1)  # (B, H*A, 1), time-major

    def decode(
        self, codes: np.ndarray, mode: Mode = "exec", *, return_report: bool = False
    ) -> np.ndarray | tuple[np.ndarray, DecodeReport]:
        """Bin centres, unnormalized. Repairs instead of raising (each counted in the report):

        - ids outside [0, bins) are clipped into range;
        - PAD, non-integer entries and positions missing from a short sequence hold the same dimension's value
          of the previous step (mid-range 0 if there is none);
        - tokens past H x A and tokens of levels above the first are ignored.
        """
        who = f"{self.name} decode"
        normalizer = normalizer_for(self.normalizers, mode, who)
        horizon, expected = self.horizon(mode), self.tokens_per_chunk(mode)
        ids, garbage, extra_level_tokens = level_zero_ids(codes, who)
        batch, length = ids.shape

        used = ids[:, :expected]  # (B, <=H*A)
        missing = garbage[:, :expected] | (used == PAD_CODE)  # (B, <=H*A)
        out_of_range = ~missing & ((used < 0) | (used >= self.bins))
        centres = (np.clip(used, 0, self.bins - 1) + 0.5) * (2.0 / self.bins) - 1.0  # (B, <=H*A) in (-1, 1)
        values = np.full((batch, expected), np.nan)  # (B, H*A); NaN = nothing usable at this position
        values[:, : used.shape[1]] = np.where(missing, np.nan, centres)
        x = _hold_fill(values.reshape(batch, horizon, self.action_dim))  # (B, H, A)
        actions = normalizer.unnormalize(x.astype(np.float32))
        if not return_report:
            return actions

        short = max(expected - length, 0)
        extra_tokens = (ids[:, expected:] != PAD_CODE).sum(axis=1) + garbage[:, expected:].sum(axis=1)
        invalid = missing.sum(axis=1) + out_of_range.sum(axis=1) + short + extra_tokens + extra_level_tokens
        messages = []
        for label, count in (
            ("out-of-range ids clipped", int(out_of_range.sum())),
            ("PAD or non-integer entries held from the previous step", int(missing.sum())),
            ("missing positions held from the previous step", short * batch),
            ("tokens past the chunk ignored", int(extra_tokens.sum())),
            ("tokens of levels above the first ignored", int(extra_level_tokens.sum())),
        ):
            if count:
                messages.append(f"{who}: {count} {label}")
        report = DecodeReport(invalid_tokens=invalid.astype(np.int64), repaired=invalid > 0, messages=messages)
        return actions, report

    # --- persistence -----------------------------------------------------------------------------------------

    def config(self) -> dict[str, Any]:
        return {
            "type": self.name,
            "action_dim": self.action_dim,
            "exec_horizon": self.exec_horizon,
            "plan_steps": self.plan_steps,
            "bins": self.bins,
            "normalizers": self.normalizers.to_dict(),
        }

    def save_pretrained(self, directory: str | Path) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        atomic_write_json(directory / CONFIG_FILE, self.config())
        return directory

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> "BinningTokenizer":
        path = Path(directory) / CONFIG_FILE
        config = read_config(path, cls.name)
        try:
            return cls(
                ActionNormalizers.from_dict(config["normalizers"]),
                action_dim=int(config["action_dim"]),
                exec_horizon=int(config["exec_horizon"]),
                plan_steps=int(config["plan_steps"]),
                bins=int(config["bins"]),
            )
        except (KeyError, TypeError, ValueError, AttributeError, ConfigError) as error:
            raise ConfigError(f"{path}: malformed tokenizer config ({type(error).__name__}: {error})") from error


def read_config(path: Path, expected_type: str) -> dict[str, Any]:
    """Load a tokenizer's config.json; a missing, unreadable or foreign file is a ConfigError naming it."""
    if not path.is_file():
        raise ConfigError(f"{path}: tokenizer config not found")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ConfigError(f"{path}: cannot read tokenizer config ({error})") from error
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: tokenizer config must be a JSON object")
    if config.get("type") != expected_type:
        raise ConfigError(f"{path}: tokenizer type is {config.get('type')!r}, expected {expected_type!r}")
    return config
