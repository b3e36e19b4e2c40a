"""`c2c ablate`: the planning-horizon and tokenizer-sharing ablations (paper Tables 3 and 4) through the pipeline.

Every variant is trained and evaluated by ``c2c.eval.pipeline.run_pipeline`` with the preset's data, seeds and
budget (stages already done with the same settings are reused), then the evaluations' ``results.json`` are laid out
as the paper's tables:

- Table 3 (planning horizon, joint tokenizer): ``noplan`` = Hp 0, ``plan-hp40`` = Hp 40, ``plan`` = Hp 160;
- Table 4 (tokenizer sharing): ``noplan`` (Faster-AR, no plan), ``separate`` (two tokenizers), ``plan`` (joint).

Columns are the difficulty groups (Meta-World; the LIBERO suite for a LIBERO preset), the mean over tasks and, with
several groups, the mean of the group means; per-task rates follow. The paper's LIBERO numbers stand beside them
for reference (another benchmark, so only the ordering compares).

Outputs (``<out>/ablation/``): ``ablation.json``, ``ablation.md``, ``ablation.png``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from c2c.analysis.common import pyplot, save_figure
from c2c.errors import ConfigError
from c2c.paper import ABLATION_COLUMNS, TABLE3_PLAN_HORIZON, TABLE4_TOKENIZER_SHARING
from c2c.utils.io import atomic_write_json, atomic_write_text

TABLE3 = {"noplan": 0, "plan-hp40": 40, "plan": 160}  # variant -> Hp
TABLE4 = {"noplan": "Faster-AR (no plan)", "separate": "Separate tokenizers", "plan": "Joint-mode (ours)"}
DEFAULT_VARIANTS = ("plan", "plan-hp40", "noplan", "separate")


def parse_variants(text: str | None) -> tuple[str, ...]:
    from c2c.policy.config import VARIANTS

    if text is None:
        return DEFAULT_VARIANTS
    variants = tuple(dict.fromkeys(item.strip() for item in text.split(",") if item.strip()))
    for variant in variants:
        if variant not in VARIANTS:
            raise ConfigError(f"--variants: unknown variant {variant!r} (known: {', '.join(VARIANTS)})")
    if len(variants) < 2:
        raise ConfigError(f"--variants: an ablation compares at least two variants, got {list(variants)}")
    return variants


def run_ablation(preset_name: str, variants: tuple[str, ...], out: Path | None, overrides: dict[str, Any] | None = None,
                 workers: int | None = None, force: bool = False, preset: Any = None) -> dict[str, Any]:
    """Train and evaluate ``variants`` with the pipeline, then write the ablation tables into ``<out>/ablation``."""
    from c2c.eval.pipeline import run_pipeline
    from c2c.eval.presets import get_preset

    chosen = preset if preset is not None else get_preset(preset_name)
    overrides = {key: value for key, value in (overrides or {}).items() if value is not None}
    chosen = chosen.replace(variants=tuple(variants), **overrides)
    out = Path(out) if out is not None else Path("runs") / chosen.name
    run_pipeline(chosen, out, force=force, workers=workers)
    return write_ablation(out, chosen)


def _rates(result: dict[str, Any]) -> dict[str, tuple[str, float]]:
    """{task: (group, success rate)} of a Meta-World or a LIBERO results.json."""
    tasks = result["tasks"]
    if isinstance(tasks, dict):
        return {task: (stats["group"], float(stats["success_rate"])) for task, stats in tasks.items()}
    suite = str(result.get("suite", "suite"))
    return {f"{t['task_id']}: {t.get('instruction', '')}".strip(): (suite, float(t["success_rate"])) for t in tasks}


def collect(out: Path, variants: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """Per variant: task rates, group means, mean over tasks and the mean of group means."""
    table = {}
    for variant in variants:
        path = out / "eval" / variant / "results.json"
        if not path.is_file():
            raise ConfigError(f"{path}: missing (the evaluation of variant {variant!r} has not run)")
        rates = _rates(json.loads(path.read_text()))
        groups: dict[str, list[float]] = {}
        for group, rate in rates.values():
            groups.setdefault(group, []).append(rate)
        group_means = {group: float(np.mean(values)) for group, values in groups.items()}
        table[variant] = {"tasks": {task: rate for task, (_, rate) in rates.items()},
                          "task_groups": {task: group for task, (group, _) in rates.items()},
                          "groups": group_means, "overall": float(np.mean([r for _, r in rates.values()])),
                          "group_average": float(np.mean(list(group_means.values())))}
    return table


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def _table(rows: dict[str, str], table: dict[str, dict[str, Any]], groups: list[str]) -> list[str]:
    several = len(groups) > 1
    header = ["variant", *groups, "mean over tasks"] + (["group average"] if several else [])
    lines = ["| " + " | ".join(header) + " |", "| --- |" + " ---: |" * (len(header) - 1)]
    for variant, label in rows.items():
        entry = table[variant]
        cells = [_pct(entry["groups"].get(g)) for g in groups] + [_pct(entry["overall"])]
        if several:
            cells.append(_pct(entry["group_average"]))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def _paper(rows: dict[Any, tuple[str, tuple[float, ...]]]) -> list[str]:
    lines = ["| paper (LIBERO) | " + " | ".join(ABLATION_COLUMNS) + " |", "| --- |" + " ---: |" * len(ABLATION_COLUMNS)]
    for label, values in rows.values():
        lines.append(f"| {label} | " + " | ".join(f"{v:.2f}" for v in values) + " |")
    return lines


def format_ablation(preset: Any, table: dict[str, dict[str, Any]]) -> str:
    variants = list(table)
    groups = list(dict.fromkeys(g for entry in table.values() for g in entry["groups"]))
    first = table[variants[0]]
    lines = [f"# Ablations on preset {preset.name}", "",
             f"Same data, seeds and budget for every variant: {preset.episodes_per_task} demonstrations per task, "
             f"backbone {preset.backbone}, {preset.policy_steps} policy steps (batch {preset.policy_batch_size}), "
             f"{preset.tokenizer_steps} tokenizer steps, {preset.eval_episodes} evaluation episodes per task (seed "
             f"{preset.eval_seed}). Success rates in %.", ""]
    table3 = {v: f"Hp = {hp} ({v})" for v, hp in sorted(TABLE3.items(), key=lambda item: item[1]) if v in table}
    if len(table3) >= 2:
        lines += ["## Planning horizon (Table 3 style, joint tokenizer)", "", *_table(table3, table, groups), "",
                  *_paper({hp: (f"Hp = {hp}", TABLE3_PLAN_HORIZON[hp]) for v, hp in TABLE3.items() if v in table}), ""]
    table4 = {v: f"{label} ({v})" for v, label in TABLE4.items() if v in table}
    if len(table4) >= 2:
        lines += ["## Tokenizer sharing (Table 4 style)", "", *_table(table4, table, groups), "",
                  *_paper({v: (TABLE4[v], TABLE4_TOKENIZER_SHARING[v]) for v in TABLE4 if v in table}), ""]
    others = {v: v for v in variants if v not in TABLE3 and v not in TABLE4}
    if others:
        lines += ["## Other variants", "", *_table(others, table, groups), ""]
    lines += ["## Per task", "", "| task | group | " + " | ".join(variants) + " |",
              "| --- | --- |" + " ---: |" * len(variants)]
    for task in first["tasks"]:
        lines.append(f"| {task} | {first['task_groups'][task]} | "
                     + " | ".join(_pct(table[v]["tasks"].get(task)) for v in variants) + " |")
    lines += ["", "![ablation](ablation.png)", "",
              f"Precision: with {preset.eval_episodes} episodes per task a task's rate is uncertain by up to "
              f"+-{100 * 1.96 * (0.25 / preset.eval_episodes) ** 0.5:.0f} points (95%).", ""]
    return "\n".join(lines)


def plot_ablation(table: dict[str, dict[str, Any]], path: Path, title: str) -> Path:
    """Grouped bars: one group per difficulty group and the mean over tasks, one bar per variant."""
    plt = pyplot()
    variants = list(table)
    groups = list(dict.fromkeys(g for entry in table.values() for g in entry["groups"]))
    columns = groups + ["mean over tasks"]
    fig, ax = plt.subplots(figsize=(1.6 + 1.3 * len(columns) * max(1, len(variants)) / 2, 3.4))
    width = 0.8 / len(variants)
    for index, variant in enumerate(variants):
        values = [table[variant]["groups"].get(g, np.nan) for g in groups] + [table[variant]["overall"]]
        positions = np.arange(len(columns)) + (index - (len(variants) - 1) / 2) * width
        bars = ax.bar(positions, 100 * np.asarray(values), width=width, label=variant)
        ax.bar_label(bars, fmt="%.0f", fontsize=6)
    ax.set_xticks(np.arange(len(columns)), columns)
    ax.set_ylabel("success (%)")
    ax.set_ylim(0, 105)
    ax.legend(fontsize=7, ncol=len(variants))
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)


def write_ablation(out: Path, preset: Any) -> dict[str, Any]:
    table = collect(out, tuple(preset.variants))
    directory = out / "ablation"
    result = {"preset": preset.name, "out": str(out), "variants": list(preset.variants),
              "budget": {"episodes_per_task": preset.episodes_per_task, "backbone": preset.backbone,
                         "tokenizer_steps": preset.tokenizer_steps, "policy_steps": preset.policy_steps,
                         "policy_batch_size": preset.policy_batch_size, "eval_episodes": preset.eval_episodes,
                         "eval_seed": preset.eval_seed, "seed": preset.seed},
              "table3_horizon": {v: hp for v, hp in TABLE3.items() if v in table},
              "table4_tokenizer": {v: label for v, label in TABLE4.items() if v in table},
              "results": table, "paper": {"columns": list(ABLATION_COLUMNS), "table3": TABLE3_PLAN_HORIZON,
                                          "table4": TABLE4_TOKENIZER_SHARING}}
    directory.mkdir(parents=True, exist_ok=True)
    result["figure"] = str(plot_ablation(table, directory / "ablation.png", f"ablations, preset {preset.name}"))
    atomic_write_json(directory / "ablation.json", result)
    atomic_write_text(directory / "ablation.md", format_ablation(preset, table))
    return result
