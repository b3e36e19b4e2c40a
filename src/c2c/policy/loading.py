"""The one loader of a saved policy directory: what evaluation, serving and analysis run.

Example::

    from c2c.policy import load_policy

    policy = load_policy("runs/plan", replan_every=10)   # eval mode, ema.safetensors if present

Importing this module loads nothing heavy; torch and transformers load with the first policy.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from c2c.errors import ConfigError

if TYPE_CHECKING:
    import torch

    from c2c.policy.policy import PlanExecutePolicy


def load_policy(path: str | Path, *, weights: str = "auto", device: str | torch.device = "cpu",
                replan_every: int | None = None, **expected: Any) -> PlanExecutePolicy:
    """The saved policy in ``path`` in eval mode (:meth:`PlanExecutePolicy.from_pretrained` with ``weights``,
    ``device`` and ``expected`` config values), acting every ``replan_every`` steps when given (else as saved)."""
    from c2c.policy.policy import PlanExecutePolicy

    directory = Path(path)
    if not directory.is_dir():
        raise ConfigError(f"{directory}: policy directory does not exist (train one with `c2c policy train`)")
    policy = PlanExecutePolicy.from_pretrained(directory, weights=weights, device=device, **expected).eval()
    if replan_every is not None:
        policy.config = policy.config.replace(replan_every=replan_every)
    return policy
