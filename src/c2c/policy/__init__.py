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

from c2c.utils.lazy import lazy_exports

__all__, __getattr__ = lazy_exports(__name__, {
    "config": ("PolicyConfig", "policy_config", "PRESETS", "VARIANTS"),
    "model": ("PlanExecuteVLA", "PrefixInputs"),
    "decoding": ("generate_suffix",),
    "policy": ("PlanExecutePolicy",),
    "loading": ("load_policy",),
    "processing": ("EXEC_CODES", "PLAN_CODES"),
})
