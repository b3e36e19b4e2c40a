"""`c2c run`: the end-to-end pipeline, stage by stage, with finished stages skipped on a rerun.

1. ``demos``: scripted Meta-World demonstrations -> LeRobot v3 dataset, cached by its settings;
2. ``windows``: executable chunks and coarse plans (Eq. 3-4), their statistics and a picture of the plans;
3. ``tokenizer``: the action tokenizer(s) the variants need (joint; separate for the Table 4 ablation);
4. ``policy/<variant>``: every variant of the preset trained with the same budget (steps, batch, backbone);
5. ``eval/<variant>``: closed-loop Meta-World evaluation on placements disjoint from the training ones;
6. ``report.md``: success per task and difficulty group, tokenizer and training metrics, curves, commands.

A stage writes ``stage.json`` (its settings hash, result and wall time) when it finishes; a rerun with the same
settings skips it, a change of settings or ``--force`` redoes it. Training stages resume from their last
checkpoint when interrupted.

Modules: :mod:`~c2c.eval.pipeline.cache` (the stage cache), :mod:`~c2c.eval.pipeline.stages` (demonstrations,
windows, tokenizers, policies, takeovers), :mod:`~c2c.eval.pipeline.scheduling` (thread counts, side-by-side
training), :mod:`~c2c.eval.pipeline.evaluation` (the evaluation stages), :mod:`~c2c.eval.pipeline.report` (the
Markdown reports), :mod:`~c2c.eval.pipeline.overrides` (the reproducing command line) and
:mod:`~c2c.eval.pipeline.run` (the stages in order).

Example::

    run_pipeline("quick", Path("runs/quick"))
"""

from c2c.eval.pipeline.cache import (
    STAGE_FILE, data_settings, finished_stage, run_stage, same_settings, settings_hash, stage_stamp,
)
from c2c.eval.pipeline.evaluation import (
    EarlyEvaluations, overall_success, stage_evaluations, stage_libero_evaluations,
)
from c2c.eval.pipeline.overrides import OVERRIDE_OPTIONS, preset_overrides, run_command
from c2c.eval.pipeline.report import libero_table, write_group_report, write_report
from c2c.eval.pipeline.run import run_pipeline, run_presets
from c2c.eval.pipeline.scheduling import thread_schedule, train_in_parallel
from c2c.eval.pipeline.stages import (
    TAKEOVER_ROOT, TAKEOVER_SEED, TOKENIZER_FOR_VARIANT, plot_coarse_plans, policy_configs, stage_demos,
    stage_policies, stage_takeovers, stage_tokenizers, stage_windows, takeover_dataset, tokenizer_name,
)
from c2c.paper import PUBLISHED_LIBERO

__all__ = [
    "EarlyEvaluations", "OVERRIDE_OPTIONS", "PUBLISHED_LIBERO", "STAGE_FILE", "TAKEOVER_ROOT", "TAKEOVER_SEED",
    "TOKENIZER_FOR_VARIANT", "data_settings", "finished_stage", "libero_table", "overall_success",
    "plot_coarse_plans", "policy_configs", "preset_overrides", "run_command", "run_pipeline", "run_presets",
    "run_stage", "same_settings", "settings_hash", "stage_demos", "stage_evaluations", "stage_libero_evaluations",
    "stage_policies", "stage_stamp", "stage_takeovers", "stage_tokenizers", "stage_windows", "takeover_dataset",
    "thread_schedule", "tokenizer_name", "train_in_parallel", "write_group_report", "write_report",
]
