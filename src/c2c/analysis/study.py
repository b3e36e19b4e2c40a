"""`c2c ablate --study NAME`: controlled studies through the pipeline, one row per setting, with intervals.

A study is a list of rows. A row is a policy variant plus the preset settings it changes (backbone, tokenizer
codebook, cameras, demonstrations per task, ...). Rows that change the same settings are trained side by side by one
pipeline run (``c2c.eval.pipeline.run_pipeline``) in ``<out>/<group>/``, so they share demonstrations, tokenizer and
budget; every stage already done with the same settings is reused, so an interrupted study resumes.

Studies:

- ``representation``: the action representation at the same data and budget. ``plan`` and ``noplan`` (joint RVQ,
  3 x 4096 codes, paper B.4), ``noplan`` with smaller codebooks (3 x 1024, 3 x 256), ``binning`` (RT-2 / OpenVLA),
  ``fast`` (pi0-FAST's DCT + BPE tokens), ``regress`` (continuous head, ACT-style) on the nano backbone and on a
  small CNN (``cnn``).
- ``levers``: what makes the quick benchmark discriminate. Each row changes one setting of the quick preset
  (camera, demonstrations per task, image size, plan horizon) for ``noplan``, ``plan`` and ``regress``.

Report (``<out>/study.md``, ``study.json``, ``study.png``): per row, success per task and the mean with 95% Wilson
intervals over all episodes, the held-out decoded action L1 (normalised units, training's held-out episodes),
training samples/s, and decode ms per chunk (batch 1, one thread, ``predict_action_chunk``, median of 10).
Budgets: by default every row has the same steps x batch (same samples). With ``budget_seconds`` (``c2c ablate
--budget-seconds S``) every row has the same wall-clock instead: S seconds per row on one thread, converted into
steps per row from each row's step time measured before anything trains (``c2c.analysis.study_budget``,
``<out>/budget.json``). Rows trained side by side share the cores, so their samples/s compare only within one group;
the report says which rows shared a run.

Evaluation placements come from ``--eval-seed`` (the preset's 1000 by default: the validation placements settings
are chosen on); report the chosen settings on other placements (e.g. ``--eval-seed 2000``).
"""

from __future__ import annotations

import difflib
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from c2c.errors import ConfigError
from c2c.utils.io import atomic_write_json, atomic_write_text


@dataclass(frozen=True)
class StudyRow:
    """One row: a policy variant trained with the preset changed by ``overrides``."""

    name: str
    variant: str
    description: str
    overrides: tuple[tuple[str, Any], ...] = ()  # (PipelinePreset field, value) pairs

    @property
    def group(self) -> str:
        """The pipeline run the row belongs to: its directory under the study's output."""
        if not self.overrides:
            return "base"
        parts = []
        for key, value in self.overrides:
            if isinstance(value, dict):
                value = "-".join(f"{k}{v}" for k, v in sorted(value.items()))
            elif isinstance(value, (tuple, list)):
                value = "+".join(str(v) for v in value)
            parts.append(f"{key.replace('_', '-')}-{value}")
        return "_".join(parts)


def _codebook(size: int) -> tuple[tuple[str, Any], ...]:
    return (("tokenizer_codec", {"codebook_size": size}),)


# The quick preset's press and pull, with door-open and the multi-stage hammer in place of reach and pick-place.
VISIBLE_TASKS = (("tasks", ("button-press-topdown-v3", "drawer-open-v3", "door-open-v3", "hammer-v3")),)

STUDIES: dict[str, tuple[StudyRow, ...]] = {
    "representation": (
        StudyRow("plan", "plan", "joint RVQ 3 x 4096, plan (Hp=160) then exec (the paper's method)"),
        StudyRow("noplan", "noplan", "joint RVQ 3 x 4096, exec tokens only (Hp=0)"),
        StudyRow("noplan-3x1024", "noplan", "joint RVQ 3 x 1024, exec only", _codebook(1024)),
        StudyRow("noplan-3x256", "noplan", "joint RVQ 3 x 256, exec only", _codebook(256)),
        StudyRow("binning", "binning", "256 bins per dimension, He x A exec tokens (RT-2 / OpenVLA)"),
        StudyRow("fast", "fast", "FAST: DCT + BPE exec tokens, end token, length cap (pi0-FAST)"),
        StudyRow("regress", "regress", "continuous (He, A) head, L1, nano backbone (ACT-style)"),
        StudyRow("cnn", "regress", "continuous (He, A) head, L1, small CNN (no transformer)",
                 (("backbone", "cnn"),)),
    ),
    "levers": (
        StudyRow("noplan", "noplan", "the quick preset (corner2, 96 px, 25 demonstrations per task)"),
        StudyRow("plan", "plan", "the quick preset"),
        StudyRow("regress", "regress", "the quick preset, continuous head (the strongest baseline so far)"),
        StudyRow("plan-hp40", "plan-hp40", "plan from a 40-step window (Hp=40 at 80 Hz: 0.5 s)"),
        StudyRow("noplan-corner", "noplan", "camera corner (the table fills more of the image)",
                 (("cameras", ("corner",)),)),
        StudyRow("plan-corner", "plan", "camera corner", (("cameras", ("corner",)),)),
        StudyRow("regress-corner", "regress", "camera corner", (("cameras", ("corner",)),)),
        StudyRow("noplan-topview", "noplan", "camera topview", (("cameras", ("topview",)),)),
        StudyRow("plan-topview", "plan", "camera topview", (("cameras", ("topview",)),)),
        StudyRow("noplan-visible", "noplan", "tasks whose targets are in view: reach and pick-place (goal markers of "
                 "1-2 px at 96 px) give way to door-open and hammer (grasp, carry, strike)", VISIBLE_TASKS),
        StudyRow("plan-visible", "plan", "tasks whose targets are in view", VISIBLE_TASKS),
        StudyRow("regress-visible", "regress", "tasks whose targets are in view", VISIBLE_TASKS),
        StudyRow("plan-hp40-visible", "plan-hp40", "tasks whose targets are in view, plan from a 40-step window",
                 VISIBLE_TASKS),
        StudyRow("plan-steps1800", "plan", "twice the training (1800 steps x 32)", (("policy_steps", 1800),)),
        StudyRow("noplan-steps1800", "noplan", "twice the training (1800 steps x 32)", (("policy_steps", 1800),)),
        StudyRow("plan-noise20", "plan", "plan codes read by the decoder replaced at random with probability 0.2 "
                 "in training (targets true): exec learns to follow imperfect plans", (("plan_input_noise", 0.2),)),
        StudyRow("plan-noise40", "plan", "the same with probability 0.4", (("plan_input_noise", 0.4),)),
        StudyRow("plan-noise20-steps1800", "plan", "plan input noise 0.2 and twice the training",
                 (("plan_input_noise", 0.2), ("policy_steps", 1800))),
        StudyRow("noplan-demos100", "noplan", "100 demonstrations per task", (("episodes_per_task", 100),)),
        StudyRow("plan-demos100", "plan", "100 demonstrations per task", (("episodes_per_task", 100),)),
        StudyRow("noplan-120px", "noplan", "images at 120 px (the quick preset's 96 px, 5 x 5 instead of 4 x 4 "
                 "patches of nano's 24 px)", (("image_size", 120),)),
        StudyRow("plan-120px", "plan", "images at 120 px", (("image_size", 120),)),
    ),
}


def study_rows(study: str, names: str | None = None) -> tuple[StudyRow, ...]:
    """The rows of ``study`` (all, or the comma-separated ``names`` in the study's order)."""
    if study not in STUDIES:
        close = difflib.get_close_matches(study, list(STUDIES), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"--study {study!r}: unknown (known: {', '.join(STUDIES)}){hint}")
    rows = STUDIES[study]
    if names is None:
        return rows
    known = {row.name: row for row in rows}
    wanted = [name.strip() for name in names.split(",") if name.strip()]
    for name in wanted:
        if name not in known:
            close = difflib.get_close_matches(name, list(known), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"--rows: unknown row {name!r} of study {study!r} (known: {', '.join(known)}){hint}")
    if not wanted:
        raise ConfigError(f"--rows: no row named (study {study!r} has {', '.join(known)})")
    return tuple(row for row in rows if row.name in wanted)


def groups_of(rows: tuple[StudyRow, ...]) -> dict[str, list[StudyRow]]:
    """Rows by pipeline run; one variant appears at most once per run (else the rows would share one policy)."""
    groups: dict[str, list[StudyRow]] = {}
    for row in rows:
        members = groups.setdefault(row.group, [])
        if any(member.variant == row.variant for member in members):
            raise ConfigError(f"study rows {members[0].name!r} and {row.name!r} train the same variant with the same "
                              "settings")
        members.append(row)
    return groups


def wilson(successes: int, episodes: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a success rate."""
    if episodes <= 0:
        return (0.0, 1.0)
    p = successes / episodes
    denominator = 1 + z * z / episodes
    centre = (p + z * z / (2 * episodes)) / denominator
    half = z * math.sqrt(p * (1 - p) / episodes + z * z / (4 * episodes * episodes)) / denominator
    return (max(0.0, centre - half), min(1.0, centre + half))


def row_preset(preset: Any, row: StudyRow, variants: tuple[str, ...] | None = None) -> Any:
    """``preset`` with the row's changes (a codebook change keeps the preset's other codec settings), training
    ``variants`` (default: the row's)."""
    changes = dict(row.overrides)
    if "tokenizer_codec" in changes:
        changes["tokenizer_codec"] = {**preset.tokenizer_codec, **changes["tokenizer_codec"]}
    return preset.replace(**changes, variants=variants or (row.variant,))


def run_study(study: str, preset: Any, out: Path, rows: tuple[StudyRow, ...] | None = None,
              workers: int | None = None, force: bool = False, measure_decode: bool = True,
              budget_seconds: float | None = None) -> dict[str, Any]:
    """Train and evaluate every row with the pipeline, then write the study's report into ``out``.
    ``budget_seconds``: the same wall-clock per row instead of the same samples (``study_budget``)."""
    from c2c.eval.pipeline import run_pipeline

    rows = rows if rows is not None else study_rows(study)
    out = Path(out)
    budget, trained = None, rows
    if budget_seconds is not None:
        from c2c.analysis.study_budget import budgeted_rows, plan_budget

        budget = plan_budget(preset, rows, out, budget_seconds, force=force)
        trained = budgeted_rows(rows, budget)
    for group, members in groups_of(trained).items():
        changed = row_preset(preset, members[0], tuple(row.variant for row in members))
        print(f"[study] {study}: rows {', '.join(row.name for row in members)} -> {out / group}")
        code = run_pipeline(changed, out / group, force=force, workers=workers)
        if code != 0:
            raise ConfigError(f"study {study!r}: the pipeline run of rows {[row.name for row in members]} failed "
                              f"(exit status {code}); see the output above")
    return write_study(study, preset, out, rows, measure_decode=measure_decode, budget=budget)


def decode_ms(policy_dir: Path, repeats: int = 10) -> float:
    """Median ms per chunk of ``predict_action_chunk`` at batch 1 on one thread (random images, zero state)."""
    import torch

    from c2c.policy import load_policy
    from c2c.policy.testing import torch_threads

    policy = load_policy(policy_dir)
    config = policy.config
    rng = np.random.default_rng(0)
    tasks = getattr(policy, "instructions", None) or ["do the task"]
    observation = {f"observation.images.{camera}": rng.integers(0, 256, (config.image_size, config.image_size, 3),
                                                                dtype=np.uint8) for camera in config.cameras}
    observation.update({"observation.state": np.zeros(config.state_dim, np.float32), "task": list(tasks)[0]})
    times = []
    with torch_threads(1), torch.inference_mode():
        for index in range(repeats + 2):
            start = time.perf_counter()
            policy.predict_action_chunk(observation)
            if index >= 2:
                times.append(1000 * (time.perf_counter() - start))
    return float(np.median(times))


def collect_row(row: StudyRow, out: Path, measure_decode: bool = True) -> dict[str, Any]:
    """A row's numbers from its pipeline run's ``eval/<variant>/results.json`` and ``policy/<variant>/metrics.json``."""
    run = out / row.group
    results_path = run / "eval" / row.variant / "results.json"
    metrics_path = run / "policy" / row.variant / "metrics.json"
    for path in (results_path, metrics_path):
        if not path.is_file():
            raise ConfigError(f"{path}: missing (row {row.name!r} has not been trained and evaluated; run the study)")
    results = json.loads(results_path.read_text())
    metrics = json.loads(metrics_path.read_text())
    tasks = {}
    for task, stats in results["tasks"].items():
        low, high = wilson(int(stats["successes"]), int(stats["episodes"]))
        tasks[task] = {"successes": int(stats["successes"]), "episodes": int(stats["episodes"]),
                       "interval": [low, high]}
    successes = sum(task["successes"] for task in tasks.values())
    episodes = sum(task["episodes"] for task in tasks.values())
    heldout = metrics.get("heldout") or {}
    row_result = {
        "row": row.name, "variant": row.variant, "description": row.description, "group": row.group,
        "overrides": {key: value for key, value in row.overrides}, "tasks": tasks,
        "success": successes / max(episodes, 1), "interval": list(wilson(successes, episodes)),
        "successes": successes, "episodes": episodes,
        "heldout_l1": heldout.get("exec_l1"), "samples_per_s": metrics.get("samples_per_s"),
        "steps": metrics.get("steps"), "batch_size": metrics.get("effective_batch_size"),
        "train_seconds": metrics.get("train_seconds_this_run"), "eval_seed": results["settings"]["seed"],
        "eval_command": results.get("command"),
    }
    row_result["decode_ms"] = decode_ms(run / "policy" / row.variant) if measure_decode else None
    return row_result


def _fmt(value: float | None, digits: int = 1, scale: float = 1.0) -> str:
    return "-" if value is None else f"{scale * value:.{digits}f}"


def budget_text(preset: Any, budget: dict[str, Any] | None) -> str:
    """The budget kind, as the report states it."""
    if budget is None:
        return f"same samples: {preset.policy_steps} steps x {preset.policy_batch_size}"
    return (f"same wall-clock: {budget['budget_seconds']:g} s per row on one thread; steps per row from measured "
            "step times")


def format_study(study: str, preset: Any, table: list[dict[str, Any]], command: str,
                 budget: dict[str, Any] | None = None) -> str:
    tasks = list(table[0]["tasks"]) if table else []
    if budget is None:
        kind = f"Budget: {budget_text(preset, None)} for every row unless the row says otherwise."
    else:
        kind = (f"Budget: {budget_text(preset, budget)} (batch {preset.policy_batch_size}; each row's step timed "
                f"before training, one row after another in one process: the median of {budget['timed_steps']} "
                f"steps after {budget['warmup_steps']} untimed ones on random inputs of the row's shapes; "
                "budget.json).")
    placements = (f"Backbone {preset.backbone} unless the row says otherwise, {preset.episodes_per_task} "
                  f"demonstrations per task unless the row says otherwise; {preset.eval_episodes} evaluation "
                  f"placements per task (seed {table[0]['eval_seed'] if table else preset.eval_seed}). Success with "
                  "95% Wilson intervals.")
    lines = [f"# Study `{study}` on preset {preset.name}", "", "Command:", "", f"    {command}", "", kind, placements,
             ""]
    columns = ["row", *tasks, "mean", "95% interval", "steps", *(["step ms"] if budget else []), "held-out L1",
               "samples/s", "decode ms", "run"]
    lines += ["| " + " | ".join(columns) + " |", "| --- |" + " ---: |" * (len(columns) - 2) + " --- |"]
    for entry in table:
        cells = [f"{entry['tasks'][t]['successes']}/{entry['tasks'][t]['episodes']}" for t in tasks]
        low, high = entry["interval"]
        cells += [f"{100 * entry['success']:.1f}%", f"{100 * low:.0f}-{100 * high:.0f}%",
                  "-" if entry["steps"] is None else str(entry["steps"])]
        if budget:
            cells.append(_fmt(entry.get("step_seconds"), 1, 1000))
        cells += [_fmt(entry["heldout_l1"], 3), _fmt(entry["samples_per_s"]), _fmt(entry["decode_ms"]),
                  entry["group"]]
        lines.append(f"| {entry['row']} | " + " | ".join(cells) + " |")
    lines += ["", "Rows:", ""]
    for entry in table:
        scale = budget["rows"][entry["row"]]["scale"] if budget else 1
        share = f" (budget: {scale:g} x {budget['budget_seconds']:g} s)" if scale != 1 else ""
        lines.append(f"- `{entry['row']}`: {entry['description']}{share}")
    lines += ["", ("Rows with the same run trained side by side on the same cores: their samples/s compare with each "
                   "other only. Decode ms: batch 1, one thread, random images.")]
    if budget:
        lines += ["", ("Step ms: one optimisation step as training runs it (batch made, forward, backward, clipping, "
                       "AdamW, EMA), measured before training on one thread; steps = floor(budget / step time). "
                       "Held-out evaluations and checkpoints during training are not in the budget.")]
        if any(entry["variant"] == "fast" for entry in table):
            lines += [("`fast`: its sequence length was timed with a FAST tokenizer fitted on smooth random chunks; "
                       "the trained one's length cap comes from the demonstrations.")]
    lines += ["", "![study](study.png)", ""]
    return "\n".join(lines)


def plot_study(table: list[dict[str, Any]], path: Path, title: str) -> Path:
    from c2c.analysis.common import pyplot, save_figure

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(1.2 + 0.55 * len(table), 3.2))
    means = np.array([100 * entry["success"] for entry in table])
    low = np.array([100 * entry["interval"][0] for entry in table])
    high = np.array([100 * entry["interval"][1] for entry in table])
    ax.bar(np.arange(len(table)), means, yerr=np.stack([means - low, high - means]), capsize=3, color="tab:blue")
    ax.set_xticks(np.arange(len(table)), [entry["row"] for entry in table], rotation=35, ha="right", fontsize=7)
    ax.set_ylabel("mean success (%)")
    ax.set_ylim(0, 100)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)


def study_command(study: str, preset: Any, out: Path, rows: tuple[StudyRow, ...],
                  budget_seconds: float | None = None) -> str:
    """The command line that reproduces the study (the preset's name plus the settings it differs in)."""
    parts = [f"c2c ablate --study {study} --preset {preset.name}"]
    if tuple(rows) != STUDIES[study]:
        parts.append(f"--rows {','.join(row.name for row in rows)}")
    parts.append(f"--tasks {','.join(preset.tasks)}")
    if budget_seconds is not None:  # the steps come from the budget
        parts.append(f"--budget-seconds {budget_seconds:g}")
    else:
        parts.append(f"--policy-steps {preset.policy_steps}")
    for name, flag in (("eval_episodes", "--eval-episodes"), ("eval_seed", "--eval-seed"),
                       ("episodes_per_task", "--episodes-per-task")):
        parts.append(f"{flag} {getattr(preset, name)}")
    parts.append(f"--out {out}")
    return " ".join(parts)


def write_study(study: str, preset: Any, out: Path, rows: tuple[StudyRow, ...], measure_decode: bool = True,
                budget: dict[str, Any] | None = None) -> dict[str, Any]:
    """The report of ``rows`` (as the study names them; under a wall-clock ``budget`` each is read from the run of
    its steps) into ``out``: study.md, study.json, study.png."""
    trained = rows
    if budget is not None:
        from c2c.analysis.study_budget import budgeted_rows

        trained = budgeted_rows(rows, budget)
    table = [collect_row(row, Path(out), measure_decode) for row in trained]
    for entry in table if budget is not None else ():
        entry["step_seconds"] = budget["rows"][entry["row"]]["step_seconds"]
    command = study_command(study, preset, out, rows, budget["budget_seconds"] if budget is not None else None)
    summary = {"kind": "samples" if budget is None else "wall-clock", "text": budget_text(preset, budget),
               "policy_steps": preset.policy_steps, "policy_batch_size": preset.policy_batch_size,
               "episodes_per_task": preset.episodes_per_task, "eval_episodes": preset.eval_episodes,
               "backbone": preset.backbone}
    if budget is not None:
        summary.update({key: budget[key] for key in ("budget_seconds", "threads", "warmup_steps", "timed_steps",
                                                      "measured_at", "machine")})
        summary["rows"] = {name: {key: entry[key] for key in ("step_seconds", "budget_seconds", "steps")}
                           for name, entry in budget["rows"].items()}
    result = {"study": study, "preset": preset.name, "command": command, "rows": table, "budget": summary}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    result["figure"] = str(plot_study(table, out / "study.png", f"study {study}, preset {preset.name}"))
    atomic_write_json(out / "study.json", result)
    atomic_write_text(out / "study.md", format_study(study, preset, table, command, budget))
    return result
