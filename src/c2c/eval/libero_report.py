"""The results of a LIBERO evaluation (:func:`c2c.eval.libero_eval.evaluate_libero`): per-task and suite summaries,
the printed table, report.md, success.png and results.json.

Example::

    results["tasks"].append(task_summary(info, records, seconds))
    fill_suite_summary(results, seconds)
    write_outputs(results, out, final=True)    # results.json, report.md, success.png
    print(format_summary(results))
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from c2c.envs.libero_env import MAX_STEPS
from c2c.eval.reporting import (mean, number, percent, precision_hint, rate_with_counts, save_success_chart,
                                video_lines, write_results)
from c2c.paper import LIBERO_ABLATION_AVERAGES


def software_versions() -> dict[str, str | None]:
    """Installed versions of LIBERO, robosuite, MuJoCo, torch and this package (None: not installed)."""
    from importlib.metadata import PackageNotFoundError, version

    found: dict[str, str | None] = {}
    for name in ("libero", "robosuite", "mujoco", "torch", "coarse-to-control"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    return found


def task_summary(info: dict[str, Any], records: list[dict[str, Any]], seconds: float) -> dict[str, Any]:
    """One task's entry of results.json from its trials' ``records`` and the ``seconds`` they took."""
    successes = sum(record["success"] for record in records)
    return {
        "task_id": info["task_id"], "name": info["name"], "instruction": info["instruction"],
        "success_rate": round(successes / len(records), 4), "successes": successes, "trials": len(records),
        "mean_steps_success": mean([r["steps"] for r in records if r["success"]]),
        "wall_seconds": round(seconds, 2), "mean_trial_seconds": mean([r["seconds"] for r in records]),
        "inference_seconds": round(sum(r["inference_seconds"] for r in records), 2),
        "episodes": records,
    }


def fill_suite_summary(results: dict[str, Any], seconds: float) -> None:
    """Set the suite mean (mean of the task rates), the total successes and trials and the wall time."""
    tasks = results["tasks"]
    results["suite_success_rate"] = mean([task["success_rate"] for task in tasks])
    results["successes"] = sum(task["successes"] for task in tasks)
    results["trials"] = sum(task["trials"] for task in tasks)
    results["wall_seconds"] = round(seconds, 2)


def format_summary(results: dict[str, Any]) -> str:
    """The table the command line prints."""
    header = f"{'task':>4}  {'success':>16}  {'steps':>6}  {'wall s':>8}  instruction"
    lines = [header, "-" * len(header)]
    for task in results["tasks"]:
        rate = rate_with_counts(task["success_rate"], task["successes"], task["trials"])
        lines.append(f"{task['task_id']:>4}  {rate:>16}  {number(task['mean_steps_success']):>6}  "
                     f"{task['wall_seconds']:>8.1f}  {task['instruction']}")
    lines.append("-" * len(header))
    lines.append(f"{results['suite']} mean success rate: {percent(results.get('suite_success_rate'))} "
                 f"({results.get('successes', 0)}/{results.get('trials', 0)} trials, "
                 f"{results.get('wall_seconds', 0):.0f} s)")
    lines.append(f"precision: {precision_hint(results['settings']['trials'], 'trials')}")
    return "\n".join(lines)


def markdown_report(results: dict[str, Any]) -> str:
    """report.md: settings, command, the per-task table and the suite mean."""
    settings = results["settings"]
    status = "" if results["status"] == "complete" else " (RUNNING: partial results)"
    lines = [
        f"# LIBERO closed-loop evaluation: {results['suite']}{status}", "",
        f"Policy `{results['policy']}` (variant `{results['variant']}`); {settings['trials']} trials per task "
        f"(official init states {settings['init_states']}), seed {settings['seed']}, replan every "
        f"{settings['replan_every']} steps, {settings['num_wait_steps']} settling steps then at most "
        f"{settings['max_steps']} policy steps; cameras {', '.join(settings['cameras'])} at {settings['image_size']} px "
        f"({_rendering(settings)}). Wall time {results.get('wall_seconds', 0):.1f} s.", "",
        "Reproduce with:", "", "```", results["command"], "```", "",
        "| task | instruction | success rate | successes | mean steps (successes) | wall s |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    for task in results["tasks"]:
        lines.append(f"| {task['task_id']} | {task['instruction']} | {percent(task['success_rate'])} | "
                     f"{task['successes']}/{task['trials']} | {number(task['mean_steps_success'])} | "
                     f"{task['wall_seconds']:.1f} |")
    lines.append(f"| **mean** | | **{percent(results.get('suite_success_rate'))}** | "
                 f"{results.get('successes', 0)}/{results.get('trials', 0)} | | |")
    lines += ["", f"Precision: {precision_hint(settings['trials'], 'trials')}. The suite mean is the mean of the task "
              "rates.", "", "For context, the paper's LIBERO ablation (average success over the suites): "
              + "; ".join(f"{name} {value:.2f}%" for name, value in LIBERO_ABLATION_AVERAGES.items()) + "."]
    if settings.get("max_steps_override") is not None:
        lines += ["", f"Note: the step limit was overridden to {settings['max_steps']} (not the protocol's "
                  f"{MAX_STEPS[results['suite']]})."]
    lines += video_lines(e["video"] for task in results["tasks"] for e in task["episodes"])
    versions = ", ".join(f"{name} {value}" for name, value in results["versions"].items() if value)
    lines += ["", f"Software: {versions}."]
    return "\n".join(lines) + "\n"


def _rendering(settings: dict[str, Any]) -> str:
    text = f"rendered at {settings['render_size']} px" + "".join(
        f", resized to {size} px" for size in settings.get("resizes") or [])
    return text + (f": {settings['render_size_from']}" if settings.get("render_size_from") else "")


def write_outputs(results: dict[str, Any], out: Path, final: bool = True) -> None:
    """results.json and report.md (every call), success.png (when ``final``), each written atomically."""
    write_results(results, markdown_report(results), out)
    if final:
        rates = {f"{task['task_id']}: {_shorten(task['instruction'])}": task["success_rate"]
                 for task in results["tasks"]}
        title = (f"{results['suite']} ({results['variant']}): mean {percent(results.get('suite_success_rate'))} "
                 f"over {results.get('trials', 0)} trials")
        save_success_chart(out, rates, {}, title=title)


def _shorten(text: str, width: int = 48) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."
