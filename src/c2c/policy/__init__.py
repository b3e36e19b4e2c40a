"""The plan-then-execute VLA policy (paper Sec. 3.2, Appendix C): backbone, token layout, prefix-LM, decoding, API.

Modules: ``config`` (PolicyConfig, variants, backbone presets), ``backbone`` (transformers PaliGemma),
``instructions`` (instruction tokenizers), ``tokens`` (vocabulary, suffix order, attention rules), ``model``
(PlanExecuteVLA, loss), ``decoding`` (constrained KV-cached generation), ``processing`` (observation checks and
normalisation), ``policy`` (PlanExecutePolicy: forward / select_action / predict_action_chunk / save / load),
``loading`` (load_policy: a saved policy directory in eval mode, what eval, serve and analysis use), ``training``
(the training subpackage; ``train`` re-exports its public names and is what each training process runs).

Importing this package loads nothing heavy until a name is used.
"""

from __future__ import annotations

from typing import Any

_EXPORTS = {
    "PolicyConfig": "c2c.policy.config",
    "policy_config": "c2c.policy.config",
    "PRESETS": "c2c.policy.config",
    "VARIANTS": "c2c.policy.config",
    "PlanExecuteVLA": "c2c.policy.model",
    "PrefixInputs": "c2c.policy.model",
    "generate_suffix": "c2c.policy.decoding",
    "PlanExecutePolicy": "c2c.policy.policy",
    "load_policy": "c2c.policy.loading",
    "EXEC_CODES": "c2c.policy.processing",
    "PLAN_CODES": "c2c.policy.processing",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    # transformers takes seconds to import; the CLI and config checks should not pay for it.
    if name not in _EXPORTS:
        raise AttributeError(f"module 'c2c.policy' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_EXPORTS[name]), name)
