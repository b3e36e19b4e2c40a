"""The same wall-clock budget for every row of a study: ``c2c ablate --study NAME --budget-seconds S``.

Rows train at different speeds (a ``plan`` step decodes a sequence twice as long as ``noplan``'s; ``regress`` and the
``cnn`` backbone are faster), so the same steps x batch is not the same time. With a wall-clock budget, before anything
trains, each row's optimisation step is timed on this machine, in this process, one row after another, on one torch
thread (``c2c.policy.training.timing``: training's own step on random inputs of the row's shapes, with the row's
variant, backbone, image size, cameras, batch size, image shift and the preset's tokenizer codec with the row's
changes; the median of 10 steps after 3 untimed ones). Each row then trains ``max(1, floor(S / step seconds))`` steps:
its ``policy_steps`` is set to that, so rows with other steps train in other pipeline runs (``StudyRow.group``).
A row that changes ``policy_steps`` itself (``plan-steps1800``: twice the quick preset's 900) gets the budget scaled
the same way (2 S).

``<out>/budget.json`` keeps the budget, each row's measured step time, the settings it was measured with and its
steps. A rerun with the same S whose rows were all measured there with the same settings reuses it (an interrupted
study resumes with the same steps); another S, a row not measured there, other settings or ``--force`` measure every
row of the run again. A budget under which a row would train fewer than 10 steps is refused before anything is written.

Example::

    budget = plan_budget(preset, study_rows("representation"), Path("runs/study"), 1800.0)
    rows = budgeted_rows(study_rows("representation"), budget)   # each with ("policy_steps", its steps)
"""

from __future__ import annotations

import dataclasses
import json
import math
import platform
import time
from pathlib import Path
from typing import Any

from c2c.analysis.study import StudyRow, row_preset
from c2c.errors import ConfigError
from c2c.utils.io import atomic_write_json

BUDGET_FILE = "budget.json"
MIN_STEPS = 10  # fewer steps than this under a budget: the budget is refused
THREADS = 1  # torch intra-op threads of the measurement
WARMUP_STEPS = 3  # untimed steps before the timed ones
TIMED_STEPS = 10  # timed steps; their median is the row's step time


def check_budget_seconds(seconds: float) -> float:
    """``seconds`` when it is a positive finite number, else a one-line ConfigError naming the fix."""
    number = isinstance(seconds, (int, float)) and not isinstance(seconds, bool)
    if not (number and math.isfinite(seconds) and seconds > 0):
        shown = f"{seconds:g}" if number else repr(seconds)
        raise ConfigError(f"--budget-seconds {shown}: give a positive number of seconds of training per row "
                          "(e.g. --budget-seconds 1800)")
    return float(seconds)


def _dims(simulator: str) -> tuple[int, int]:
    """(state dim, action dim) of the simulator's demonstrations."""
    if simulator == "libero":
        from c2c.envs.libero_conventions import ACTION_DIM, STATE_DIM
    else:
        from c2c.envs.metaworld_env import ACTION_DIM, STATE_DIM
    return STATE_DIM, ACTION_DIM


def measurement_settings(preset: Any, row: StudyRow) -> dict[str, Any]:
    """What the step time of ``row`` depends on (its measurement's settings, compared on a rerun)."""
    from c2c.eval.pipeline.stages import TOKENIZER_FOR_VARIANT

    changed = row_preset(preset, row)
    state_dim, action_dim = _dims(changed.simulator)
    tokenizer = TOKENIZER_FOR_VARIANT[row.variant]
    return {"variant": row.variant, "tokenizer": tokenizer[0] if tokenizer else None, "backbone": changed.backbone, "image_size": changed.image_size,
            "cameras": list(changed.cameras), "batch_size": changed.policy_batch_size,
            "codec": dict(changed.tokenizer_codec), "image_shift": changed.image_shift,
            "simulator": changed.simulator, "tasks": list(changed.tasks), "state_dim": state_dim,
            "action_dim": action_dim, "threads": THREADS, "warmup_steps": WARMUP_STEPS, "timed_steps": TIMED_STEPS}


def measure_row(settings: dict[str, Any]) -> float:
    """Seconds per optimisation step of the policy ``settings`` describe (see :func:`measurement_settings`)."""
    from c2c.policy.testing import INSTRUCTIONS
    from c2c.policy.training.config import PolicyTrainConfig
    from c2c.policy.training.timing import step_seconds

    instructions = list(INSTRUCTIONS)
    if settings["simulator"] == "metaworld":
        from c2c.envs.metaworld_tasks import instruction, resolve_tasks

        instructions = [instruction(task) for task in resolve_tasks(list(settings["tasks"]))]
    train = PolicyTrainConfig(dataset="", tokenizer=None, out="", variant=settings["variant"],
                              preset=settings["backbone"], batch_size=settings["batch_size"],
                              image_shift=settings["image_shift"])
    return step_seconds(train, cameras=settings["cameras"], image_size=settings["image_size"],
                        state_dim=settings["state_dim"], action_dim=settings["action_dim"], codec=settings["codec"],
                        instructions=instructions, threads=settings["threads"], warmup=settings["warmup_steps"],
                        repeats=settings["timed_steps"], tokenizer_variant=settings["tokenizer"])


def budget_scale(preset: Any, row: StudyRow) -> float:
    """The row's share of the budget: its own ``policy_steps`` over the preset's (1 for a row that keeps them)."""
    return dict(row.overrides).get("policy_steps", preset.policy_steps) / preset.policy_steps


def budget_steps(seconds: float, step_seconds: float) -> int:
    """Steps that fit ``seconds`` at ``step_seconds`` each (at least one)."""
    return max(1, math.floor(seconds / step_seconds + 1e-9))


def _round_up(value: float) -> float:
    """``value`` rounded up to two significant digits."""
    quantum = 10.0 ** (math.floor(math.log10(value)) - 1)
    return math.ceil(value / quantum - 1e-9) * quantum


def _reusable(previous: dict[str, Any] | None, seconds: float, settings: dict[str, dict]) -> str | None:
    """Why ``previous`` (budget.json's contents) cannot be reused for this run (None: it can)."""
    if previous is None:
        return "no budget.json yet"
    held = previous.get("budget_seconds")
    if held != seconds:
        return f"budget.json holds --budget-seconds {held:g}, not {seconds:g}" if held else "budget.json holds none"
    rows = previous.get("rows") or {}
    for name, wanted in settings.items():
        if name not in rows:
            return f"row {name!r} was not measured there"
        if rows[name].get("settings") != json.loads(json.dumps(wanted)):
            return f"row {name!r} was measured with other settings"
    return None


def plan_budget(preset: Any, rows: tuple[StudyRow, ...], out: Path, seconds: float,
                force: bool = False) -> dict[str, Any]:
    """Each row's step time and steps under ``seconds`` per row: read from ``out/budget.json`` when it fits this run,
    else measured now and written there. Raises a one-line ConfigError when a row would train under MIN_STEPS."""
    seconds = check_budget_seconds(seconds)
    path = Path(out) / BUDGET_FILE
    settings = {row.name: measurement_settings(preset, row) for row in rows}
    previous = json.loads(path.read_text()) if path.is_file() else None
    why = "--force" if force else _reusable(previous, seconds, settings)
    if why is None:
        print(f"[study] budget: reusing the step times of {path}")
        step_times = {name: float(previous["rows"][name]["step_seconds"]) for name in settings}
        measured_at, machine = previous.get("measured_at"), previous.get("machine")
    else:
        print(f"[study] budget: measuring each row's step time on {THREADS} thread ({why})")
        step_times = {}
        for row in rows:
            try:
                step_times[row.name] = measure_row(settings[row.name])
            except ConfigError as error:  # e.g. an image size the backbone's patches do not divide
                raise ConfigError(f"--budget-seconds: study row {row.name!r} cannot be timed: {error}") from None
            print(f"[study] budget: {row.name}: {step_times[row.name]:.4g} s per step")
        measured_at, machine = time.strftime("%Y-%m-%d %H:%M:%S"), platform.node()
    entries = {}
    for row in rows:
        scale = budget_scale(preset, row)
        entries[row.name] = {"variant": row.variant, "step_seconds": step_times[row.name],
                             "budget_seconds": seconds * scale, "scale": scale,
                             "steps": budget_steps(seconds * scale, step_times[row.name]),
                             "settings": settings[row.name]}
    short = [name for name, entry in entries.items() if entry["steps"] < MIN_STEPS]
    if short:
        worst = max(short, key=lambda name: entries[name]["step_seconds"] / entries[name]["scale"])
        entry = entries[worst]
        needed = _round_up(MIN_STEPS * entry["step_seconds"] / entry["scale"])
        raise ConfigError(f"--budget-seconds {seconds:g}: row {worst!r} would train {entry['steps']} step(s) "
                          f"({entry['step_seconds']:.3g} s per step measured on {THREADS} thread); give "
                          f"--budget-seconds {needed:g} or more (at least {MIN_STEPS} steps per row)")
    record = {"budget_seconds": seconds, "threads": THREADS, "warmup_steps": WARMUP_STEPS,
              "timed_steps": TIMED_STEPS, "measured_at": measured_at, "machine": machine, "rows": entries}
    if why is not None:
        atomic_write_json(path, record)
        steps = ", ".join(f"{name} {entry['steps']}" for name, entry in entries.items())
        print(f"[study] budget: steps per row {steps} -> {path}")
    return record


def budgeted_rows(rows: tuple[StudyRow, ...], budget: dict[str, Any]) -> tuple[StudyRow, ...]:
    """The rows with ``policy_steps`` set to their steps under ``budget`` (last among their overrides, in place of
    one they had), so that each trains, and is found, in the pipeline run of its steps."""
    changed = []
    for row in rows:
        overrides = tuple((key, value) for key, value in row.overrides if key != "policy_steps")
        steps = int(budget["rows"][row.name]["steps"])
        changed.append(dataclasses.replace(row, overrides=overrides + (("policy_steps", steps),)))
    return tuple(changed)
