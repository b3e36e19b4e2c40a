"""Published numbers of the paper and of the baselines it cites, each with the table it comes from.

Every report, table and check that quotes them imports them from here. LIBERO success rates are in %, per suite
(Spatial, Object, Goal, Long = ``libero_10``); the ablation tables add the average over the four suites.
"""

from __future__ import annotations

LIBERO_SUITE_KEYS = ("libero_spatial", "libero_object", "libero_goal", "libero_10")
# Columns of the ablation tables (Tables 3 and 4): the four suites, then their average.
ABLATION_COLUMNS = ("Spatial", "Object", "Goal", "Long", "Overall")

# Coarse-to-Control itself (joint tokenizer, Hp = 160): the same row in Tables 1, 3 and 4.
METHOD_LIBERO = (98.80, 100.00, 97.80, 95.00, 97.90)

# Table 1: LIBERO success per suite, the method against the baselines it cites.
PUBLISHED_LIBERO: dict[str, dict[str, float]] = {
    "Coarse-to-Control (paper, Table 1)": dict(zip(LIBERO_SUITE_KEYS, METHOD_LIBERO[:4])),
    "pi0-FAST (paper, Table 1)": dict(zip(LIBERO_SUITE_KEYS, (96.4, 96.8, 88.6, 60.2))),
}

# Table 3: planning horizon Hp (joint tokenizer) -> success per suite and overall (ABLATION_COLUMNS).
TABLE3_PLAN_HORIZON: dict[int, tuple[float, ...]] = {
    0: (97.00, 99.60, 95.00, 94.20, 96.45),
    40: (98.60, 99.60, 97.80, 94.20, 97.55),
    160: METHOD_LIBERO,
}

# Table 4: tokenizer sharing, by policy variant (noplan: Faster-AR, no plan; separate: two tokenizers; plan: joint).
TABLE4_TOKENIZER_SHARING: dict[str, tuple[float, ...]] = {
    "noplan": (99.40, 98.80, 94.80, 88.60, 95.40),
    "separate": (97.40, 99.60, 97.80, 91.60, 96.60),
    "plan": METHOD_LIBERO,
}

# The ablations' average success over the four suites (the Overall column of Tables 3 and 4), as LIBERO
# evaluation reports quote it.
LIBERO_ABLATION_AVERAGES: dict[str, float] = {
    "plan Hp=160 (the method)": TABLE3_PLAN_HORIZON[160][-1],
    "plan Hp=40": TABLE3_PLAN_HORIZON[40][-1],
    "Hp=0": TABLE3_PLAN_HORIZON[0][-1],
    "Faster-AR": TABLE4_TOKENIZER_SHARING["noplan"][-1],
}

# Table 5: evaluation seconds per LIBERO task, rollouts included (a visual chain of thought against the 42-token
# plan).
TABLE5_SECONDS_PER_TASK: dict[str, float] = {"Visual CoT (CoT-VLA-style, 256 tok)": 3884.27,
                                             "Coarse-to-Control (42 tok)": 1325.53}

# Appendix A.1: probability mass of codes used by both plan and exec chunks ("around 0.16").
OVERLAP_MASS = 0.16
