"""Checks that an action tokenizer and its target codes fit a policy (one-line errors naming the mismatch)."""

from __future__ import annotations

from typing import Any

import numpy as np

from c2c.errors import ConfigError
from c2c.policy.config import PolicyConfig
from c2c.policy.tokens import as_action_tokenizer


def check_action_tokenizer(config: PolicyConfig, tokenizer: Any, where: str = "action tokenizer") -> None:
    """The action tokenizer must fit the policy: variant, action dim, horizons, state statistics."""
    tokenizer = as_action_tokenizer(tokenizer)
    variant = getattr(tokenizer, "variant", None)
    if variant not in config.tokenizer_variants:
        raise ConfigError(f"{where}: variant {variant!r} does not serve policy variant {config.variant!r} "
                          f"(expected {' or '.join(map(repr, config.tokenizer_variants))})")
    codec = tokenizer.config
    checks = [("action_dim", codec.action_dim, config.action_dim), ("exec_horizon", codec.horizon, config.exec_horizon),
              ("state_dim", tokenizer.normalizers.state.dim, config.state_dim)]
    if config.has_plan:
        checks.append(("plan_steps", codec.horizon, config.plan_steps))
    for key, found, expected in checks:
        if found != expected:
            raise ConfigError(f"{where}: {key} is {found}, the policy config expects {expected}")


def check_chunk_lengths(tokenizer: Any, codes: np.ndarray, exec_horizon: int, key: str = "codes.exec") -> None:
    """Variable-length (FAST) target codes must decode to exactly He x A DCT coefficients: a chunk the decoder would
    have to repair is refused, never trained on."""
    _, report = tokenizer.decode(codes, "exec", return_report=True)
    bad = np.flatnonzero(report.repaired)
    if bad.size:
        raise ConfigError(f"{key}: sample {int(bad[0])} (of {bad.size} such) does not decode to a {exec_horizon}-step "
                          f"chunk with this policy's FAST tokenizer ({'; '.join(report.messages)}): encode the chunks "
                          "with the policy's own action tokenizer (policy.action_tokenizer.encode)")
