"""`c2c run` end to end: one preset's stages in order, then its report; or a group of presets (the four LIBERO
suites) and one table over them."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from c2c.eval.pipeline.evaluation import EarlyEvaluations, overall_success, stage_evaluations
from c2c.eval.pipeline.overrides import run_command
from c2c.eval.pipeline.report import percent, write_group_report, write_report
from c2c.eval.pipeline.stages import (
    TAKEOVER_ROOT, stage_demos, stage_policies, stage_takeovers, stage_tokenizers, stage_windows, takeover_dataset,
)
from c2c.eval.presets import PipelinePreset, get_preset


def run_pipeline(preset: str | PipelinePreset, out: Path | None, force: bool = False,
                 workers: int | None = None, parallel: bool | None = None, device: str = "cpu") -> int:
    chosen = preset if isinstance(preset, PipelinePreset) else get_preset(preset)
    out = Path(out) if out is not None else Path("runs") / chosen.name
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    command = run_command(chosen, out)
    print(f"{command}: {chosen.summary}")
    dataset_dir = stage_demos(chosen, out, force)
    windows = stage_windows(dataset_dir, out, layout=chosen.simulator)
    tokenizers = stage_tokenizers(chosen, dataset_dir, out, force)
    root, datasets, takeover = "policy", None, None
    if chosen.takeover_episodes:  # train, let the expert take over from each variant's rollouts, train again
        if len(chosen.cameras) == 1:
            print("[takeover] note: on the quick tasks a takeover round helped with the wrist camera and not without "
                  "it (docs/results/readme-records-until-2026-12-06.md, 'Fine-tuning instead of retraining'); add "
                  "--cameras corner2,gripperPOV for it")
        first = stage_policies(chosen, dataset_dir, out, force, parallel, device)
        takeover = {"policies": first, "takeovers": stage_takeovers(chosen, dataset_dir, out, force, workers)}
        root, datasets = TAKEOVER_ROOT, {variant: takeover_dataset(out, variant) for variant in chosen.variants}
    # With pinned threads, a policy that finishes first is evaluated while the others train (on its freed cores).
    early = (EarlyEvaluations(chosen, out, force, root) if chosen.threads and chosen.simulator == "metaworld"
             else None)
    policies = stage_policies(chosen, dataset_dir, out, force, parallel, device,
                              on_finish=early.start if early is not None else None, root=root, datasets=datasets)
    done = early.join() if early is not None else None
    evaluations = stage_evaluations(chosen, out, force, workers, done=done, root=root)
    seconds = time.perf_counter() - start
    report = write_report(out, chosen, dataset_dir, windows, tokenizers, policies, evaluations, seconds, command,
                          takeover=takeover)
    tasks = len(next(iter(evaluations.values()))["result"]["tasks"]) if evaluations else 0
    print(f"\n{'variant':<12} success (mean over {tasks} tasks)")
    for variant, record in evaluations.items():
        print(f"{variant:<12} {percent(overall_success(record['result']))}")
    print(f"report: {report} ({seconds:.0f} s)")
    sys.stdout.flush()
    return 0


def run_presets(name: str, out: Path | None, overrides: dict[str, Any] | None = None, force: bool = False,
                workers: int | None = None, device: str = "cpu") -> int:
    """``c2c run --preset NAME``: one preset, or a group of them (``libero``: the four suites one after the other,
    each in ``<out>/<preset>``, then one Table 1 over them in ``<out>/report.md``)."""
    from c2c.eval.presets import SUITE_GROUPS

    overrides = {key: value for key, value in (overrides or {}).items() if value is not None}
    if name not in SUITE_GROUPS:
        return run_pipeline(get_preset(name).replace(**overrides), out, force=force, workers=workers, device=device)
    out = Path(out) if out is not None else Path("runs") / name
    members = [get_preset(member).replace(**overrides) for member in SUITE_GROUPS[name]]
    for preset in members:
        run_pipeline(preset, out / preset.name, force=force, workers=workers, device=device)
    report = write_group_report(out, name, members)
    print(f"report: {report}")
    return 0
