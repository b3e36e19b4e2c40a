"""The Markdown reports of `c2c run`: ``report.md`` of a run (success per task and group, demonstrations, tokenizer
and training metrics, the commands that reproduce it, stage times) and the LIBERO Table 1 over a group of suites."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from c2c.eval.pipeline.cache import STAGE_FILE
from c2c.eval.pipeline.evaluation import overall_success
from c2c.eval.pipeline.overrides import preset_overrides
from c2c.eval.pipeline.scheduling import thread_schedule
from c2c.eval.pipeline.stages import TAKEOVER_ROOT, TAKEOVER_SEED, takeover_dataset
from c2c.eval.presets import PipelinePreset
from c2c.paper import PUBLISHED_LIBERO
from c2c.utils.io import atomic_write_text


def percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.0f}%"


def libero_table(rows: dict[str, dict[str, float | None]]) -> list[str]:
    """A Table 1 style Markdown table: one row per method, one column per suite, plus the average of the suites
    that row has (marked when it does not have all four)."""
    from c2c.eval.presets import LIBERO_SUITES

    header = [s.removeprefix("libero_").replace("10", "Long (10)").capitalize() for s in LIBERO_SUITES]
    lines = ["| method | " + " | ".join(header) + " | average |", "| --- |" + " ---: |" * (len(LIBERO_SUITES) + 1)]
    for method, values in rows.items():
        present = [values[s] for s in LIBERO_SUITES if values.get(s) is not None]
        cells = ["-" if values.get(s) is None else f"{values[s]:.1f}" for s in LIBERO_SUITES]
        average = "-" if not present else f"{sum(present) / len(present):.1f}"
        if present and len(present) < len(LIBERO_SUITES):
            average += f" ({len(present)} of {len(LIBERO_SUITES)} suites)"
        lines.append(f"| {method} | " + " | ".join(cells) + f" | {average} |")
    return lines


def table_head(left: list[str], right: list[str]) -> list[str]:
    """A Markdown table's header and rule: the ``left`` columns left-aligned, then the ``right`` ones right-aligned."""
    rule = ["---"] * len(left) + ["---:"] * len(right)
    return ["| " + " | ".join(left + right) + " |", "| " + " | ".join(rule) + " |"]


def rate_cell(stats: dict[str, Any], count: str) -> str:
    """``stats``' success rate with its successes out of ``stats[count]`` (episodes or trials)."""
    return f"{percent(stats['success_rate'])} ({stats['successes']}/{stats[count]})"


def _success_start(title: str, intro: str, evaluations: dict[str, dict], left: list[str]
                   ) -> tuple[list[str], dict[str, dict], list[str]]:
    """(variants, their results, the section's lines up to its table's rule) of a success section."""
    results = {variant: record["result"] for variant, record in evaluations.items()}
    variants = list(results)
    return variants, results, [f"## {title}", "", intro, "", *table_head(left, variants)]


def _libero_success_section(preset: PipelinePreset, evaluations: dict[str, dict]) -> list[str]:
    max_steps = next(iter(evaluations.values()))["result"]["settings"]["max_steps"]
    variants, results, lines = _success_start(
        "Closed-loop success (LIBERO protocol)",
        f"{preset.suite}: {preset.eval_episodes} trials per task on the official init states 0..{preset.eval_episodes - 1}"
        f" (the protocol uses 50), 10 wait steps, at most {max_steps} steps, a new 20-step chunk "
        f"every {preset.replan_every} actions, greedy decoding. Trained on our scripted demonstrations only.",
        evaluations, ["task"])
    for index, task in enumerate(results[variants[0]]["tasks"]):
        cells = [rate_cell(results[v]["tasks"][index], "trials") for v in variants]
        lines.append(f"| {task['task_id']}: {task['instruction']} | " + " | ".join(cells) + " |")
    lines.append("| **suite** | " + " | ".join(f"**{percent(results[v]['suite_success_rate'])}**" for v in variants)
                 + " |")
    rows: dict[str, dict[str, float | None]] = {
        f"{v} (this run, {preset.backbone}, {preset.policy_steps} steps)": {
            preset.suite: None if results[v]["suite_success_rate"] is None else 100 * results[v]["suite_success_rate"]}
        for v in variants}
    rows.update(PUBLISHED_LIBERO)
    lines += ["", *libero_table(rows), "",
              "Per-variant details and videos: " + ", ".join(f"[{v}](eval/{v}/report.md)" for v in variants) + ".",
              ""]
    return lines


def _success_section(preset: PipelinePreset, evaluations: dict[str, dict]) -> list[str]:
    if preset.simulator == "libero":
        return _libero_success_section(preset, evaluations)
    variants, results, lines = _success_start(
        "Closed-loop success",
        f"{preset.eval_episodes} episodes per task on object placements never used for training (seed "
        f"{preset.eval_seed}; overlap with the demonstrations' seeds is checked and refused), at most "
        f"{preset.eval_max_steps} steps, a new 20-step chunk every {preset.replan_every} actions, greedy decoding.",
        evaluations, ["task", "group"])
    first = results[variants[0]]
    for task, stats in first["tasks"].items():
        cells = [rate_cell(results[v]["tasks"][task], "episodes") for v in variants]
        lines.append(f"| {task} | {stats['group']} | " + " | ".join(cells) + " |")
    lines.append("| **mean over tasks** | | " + " | ".join(f"**{percent(results[v]['overall']['success_rate'])}**"
                                                       for v in variants) + " |")
    for group in first.get("groups", {}):
        lines.append(f"| group {group} | | " + " | ".join(percent(results[v]["groups"][group]["success_rate"])
                                                         for v in variants) + " |")
    if "group_average" in first:
        lines.append("| group average | | " + " | ".join(percent(results[v].get("group_average")) for v in variants)
                     + " |")
    lines += _failure_rows(variants, results)
    lines += ["", "Per-variant details, charts and videos: "
              + ", ".join(f"[{v}](eval/{v}/report.md)" for v in variants) + ".", ""]
    lines += [f"![{v}](eval/{v}/success.png)" for v in variants]
    return lines + [""]


def _failure_rows(variants: list[str], results: dict[str, dict]) -> list[str]:
    """Where each variant's failed episodes stopped, per task with failures (from the evaluations' progress)."""
    from c2c.eval.metaworld_eval import MOVED_CM

    tasks = [task for task in results[variants[0]]["tasks"]
             if any((results[v]["tasks"][task].get("failures") or {}) for v in variants)]
    if not tasks:
        return []
    lines = ["", f"Where the failed episodes stopped: failures, how many moved the task's object (>= {MOVED_CM:g} "
             "cm), and the median closest hand-object, object-goal and hand-goal distances (cm; reach's goal is "
             "for the hand):", "",
             *table_head(["task", *variants], [])]
    for task in tasks:
        cells = []
        for variant in variants:
            stats = results[variant]["tasks"][task].get("failures")
            cells.append("-" if not stats else
                         f"{stats['episodes']} failed, {stats['object_moved']} moved it; hand-object "
                         f"{stats['median_hand_to_object_cm']:.1f}, object-goal {stats['median_object_to_goal_cm']:.1f}, "
                         f"hand-goal {stats['median_hand_to_goal_cm']:.1f}")
        lines.append(f"| {task} | " + " | ".join(cells) + " |")
    return lines


def _tokenizer_section(tokenizers: dict[str, dict]) -> list[str]:
    lines = ["## Action tokenizer", "",
             "| tokenizer | tokens per chunk | exec L1 | plan L1 | codebook use (levels) | plan/exec overlap mass | "
             "steps | threads | time |",
             "| --- | ---: | ---: | ---: | --- | --- | ---: | ---: | ---: |"]
    for name, record in tokenizers.items():
        m = record["result"]
        usage = ", ".join(f"{100 * u:.0f}%" for u in m.get("usage", []))
        overlap = ", ".join(f"{o:.2f}" for o in m.get("overlap_mass", []) or [])
        plan_l1 = f"{m['plan/l1']:.4f}" if "plan/l1" in m else "-"
        lines.append(f"| {name} | {m.get('tokens_per_chunk')} | {m['exec/l1']:.4f} | {plan_l1} | {usage} | "
                     f"{overlap or '-'} | {m.get('steps')} | {m.get('threads', '-')} | {record['seconds']:.0f} s |")
    lines += ["", "L1 on held-out episodes, in normalized units (q01/q99 -> [-1, 1]). The codebooks have 4096 codes "
              "per level; small datasets use a fraction of them.", ""]
    return lines


def _policy_section(policies: dict[str, dict], root: str = "policy",
                    title: str = "## Policy training") -> list[str]:
    lines = [title, "",
             "| variant | backbone | parameters | steps x batch | held-out exec token accuracy | held-out exec L1 "
             "(decoded) | threads | time |",
             "| --- | --- | ---: | --- | ---: | ---: | --- | ---: |"]
    for variant, record in policies.items():
        m = record["result"]
        held = m.get("heldout", {})
        accuracy = held.get("accuracy/exec")
        l1 = held.get("exec_l1")
        lines.append(f"| {variant} | {m['preset']} | {m['parameters'] / 1e6:.1f} M | {m['steps']} x "
                     f"{m['effective_batch_size']} | {percent(accuracy) if accuracy is not None else '-'} | "
                     f"{'-' if l1 is None else f'{l1:.4f}'} | {thread_schedule(m.get('threads'))} | "
                     f"{record['seconds']:.0f} s{_side_by_side(record)} |")
    if any(len(record["result"].get("threads") or []) > 1 for record in policies.values()):
        lines += ["", "The thread count of a training changed while it ran (the cores of a finished side-by-side "
                  "training, or cores other jobs freed, were handed over). CPU sums are split by thread, so a rerun "
                  "that changes it at another step trains other weights; `c2c run --threads N` pins it."]
    lines += ["", "Training curves (EMA weights on held-out episodes):", ""]
    lines += [f"![{variant}]({root}/{variant}/curves.png)" for variant in policies]
    return lines + [""]


def _takeover_section(preset: PipelinePreset, takeover: dict[str, dict]) -> list[str]:
    lines = ["## Expert takeovers", "",
             f"Each variant below was first trained on the demonstrations alone (`policy/<variant>`); from "
             f"{preset.takeover_episodes} new placements per task it then acted for a random number of steps (a "
             f"multiple of 10 up to 150) before the scripted expert took over and finished the task (`c2c data "
             f"metaworld-takeover`, seed {TAKEOVER_SEED}). The frames from each takeover on, labelled with the "
             f"expert's actions, were added to the demonstrations and "
             + (f"the variant's first policy was fine-tuned on them for {preset.takeover_finetune_steps} steps "
                if preset.takeover_finetune_steps else "the variant was trained again from scratch with the same "
                "budget ")
             + f"(`{TAKEOVER_ROOT}/<variant>`); the success table evaluates those policies.", "",
             "| variant | task | takeovers recorded | policy succeeded first | expert failed | frames added |",
             "| --- | --- | ---: | ---: | ---: | ---: |"]
    for variant, record in takeover["takeovers"].items():
        for task, row in record["result"]["counts"].items():
            lines.append(f"| {variant} | {task} | {row['recorded']} | {row['policy-success']} | "
                         f"{row['expert-failed']} | {row['frames']} |")
    lines.append("")
    return lines + _policy_section(takeover["policies"], "policy", "### The policies before the takeovers")


def _side_by_side(record: dict[str, Any]) -> str:
    others = record.get("parallel_with")
    return f" (side by side with {', '.join(others)})" if others else ""


def write_report(out: Path, preset: PipelinePreset, dataset_dir: Path, windows: dict[str, Any],
                 tokenizers: dict[str, dict], policies: dict[str, dict], evaluations: dict[str, dict],
                 seconds: float, command: str, takeover: dict[str, dict] | None = None) -> Path:
    """``takeover``: ``{"policies": first-round policy records, "takeovers": takeover stage records}`` when the run
    had a takeover round (``policies`` are then the second round's, in ``policy-takeover/``)."""
    from c2c.data.lerobot import LeRobotDataset

    dataset = LeRobotDataset(dataset_dir)
    expert = dataset.extra_info.get("expert", {})
    lines = [f"# c2c run --preset {preset.name}", "", f"{preset.summary}.", ""]
    if preset_overrides(preset):
        lines[-1:-1] = ["", f"Changed from the preset: `{' '.join(preset_overrides(preset))}`."]
    lines += _success_section(preset, evaluations)
    lines += [
        "## Demonstrations",
        "",
        f"Dataset: `{dataset_dir.relative_to(out)}` (LeRobot v3.0), {dataset.num_episodes} episodes, "
        f"{dataset.num_frames} frames at {dataset.fps} fps, cameras {', '.join(preset.cameras)} at "
        f"{preset.image_size}x{preset.image_size}.",
        "",
        "| task | expert success | attempts | episodes kept |",
        "| --- | ---: | ---: | ---: |",
    ]
    for task, record in expert.items():
        lines.append(f"| {task} | {100 * record['success_rate']:.0f}% | {record['attempts']} | {record['episodes']} |")
    if preset.simulator == "libero" and tuple(preset.tasks) == ("all",):
        from c2c.envs.libero_demos import expert_task_ids

        for task_id, reason in expert_task_ids(preset.suite)[1].items():
            lines.append(f"| task {task_id}: no scripted expert ({reason}); evaluated all the same | - | - | 0 |")
    spec = windows["spec"]
    lines += [
        "",
        f"Windows: He = {spec['exec_horizon']}, Hp = {spec['plan_horizon']}, K = {spec['plan_steps']} (Eq. 3-4); "
        f"{windows['windows']} windows, {100 * windows['plan_padded_fraction']:.1f}% of coarse plan steps lie past "
        "an episode end (hold-padded).",
        "",
        "![coarse plans](windows/coarse_plans.png)",
        "",
    ]
    lines += _tokenizer_section(tokenizers)
    root = "policy" if takeover is None else TAKEOVER_ROOT
    if takeover is not None:
        lines += _takeover_section(preset, takeover)
    lines += _policy_section(policies, root, "## Policy training" if takeover is None else
                             "## Policy training on the demonstrations plus the takeovers")
    stage_times = {f"tokenizer {k}": v for k, v in tokenizers.items()}
    if takeover is not None:
        stage_times.update({f"policy {k} (before the takeovers)": v for k, v in takeover["policies"].items()})
        stage_times.update({f"takeover {k}": v for k, v in takeover["takeovers"].items()})
    stage_times.update({f"{root.replace('-', ' ')} {k}": v for k, v in policies.items()})
    stage_times.update({f"eval {k}": v for k, v in evaluations.items()})
    lines += ["## Reproduce", "", "```", command, "```", "", "Each stage by hand:", "", "```"]
    for name, record in tokenizers.items():
        config = record["settings"]
        lines.append(f"c2c tokenizer train --dataset {dataset_dir} --out {config['out']} --variant {config['variant']} "
                     f"--plan-horizon {config['plan_horizon']} --steps {config['steps']}")
    def train_lines(records: dict[str, dict], datasets: dict[str, Path]) -> list[str]:
        return [f"c2c policy train --dataset {datasets.get(variant, dataset_dir)}"
                + (f" --tokenizer {out / 'tokenizer' / record['settings']['tokenizer']}"
                   if record['settings'].get('tokenizer') else "")
                + f" --out {record['settings']['out']} --variant "
                f"{variant} --preset {record['settings']['preset']} --steps {record['settings']['steps']} "
                f"--batch-size {record['settings']['batch_size']}"
                + (f" --init-from {out / record['settings']['init_from']}" if record['settings'].get('init_from')
                   else "") for variant, record in records.items()]

    if takeover is None:
        lines += train_lines(policies, {})
    else:
        lines += train_lines(takeover["policies"], {})
        for variant, record in takeover["takeovers"].items():
            lines.append(f"c2c data metaworld-takeover --policy {out / 'policy' / variant} --dataset {dataset_dir} "
                         f"--episodes {record['settings']['episodes']} --seed {record['settings']['seed']} "
                         f"--replan-every {record['settings']['replan_every']} --out {takeover_dataset(out, variant)}")
        lines += train_lines(policies, {variant: takeover_dataset(out, variant) for variant in policies})
    for variant, record in evaluations.items():
        lines.append(record["result"].get("command", ""))
    lines += ["```", "", "| stage | wall time |", "| --- | ---: |"]
    for name, record in stage_times.items():
        note = (" (earlier run)" if record.get("skipped") else "") + _side_by_side(record)
        note += " (while the other policies trained)" if record.get("while_training") else ""
        lines.append(f"| {name} | {record['seconds']:.0f} s{note} |")
    lines += [f"| **this run, all stages** | **{seconds:.0f} s** |", ""]
    path = out / "report.md"
    atomic_write_text(path, "\n".join(lines))
    return path


def write_group_report(out: Path, name: str, presets: list[PipelinePreset]) -> Path:
    """Table 1 over the member presets' finished evaluations (a suite without results shows '-')."""
    rows: dict[str, dict[str, float | None]] = {}
    for preset in presets:
        for variant in preset.variants:
            marker = out / preset.name / "eval" / variant / STAGE_FILE
            if not marker.is_file():
                continue
            rate = overall_success(json.loads(marker.read_text())["result"])
            rows.setdefault(f"{variant} (this run)", {})[preset.suite] = None if rate is None else 100 * rate
    rows.update(PUBLISHED_LIBERO)
    lines = [f"# c2c run --preset {name}", "", "Success (%) per LIBERO suite on the official protocol, trained on our "
             "scripted demonstrations only; budgets and trials per task in each suite's report.", "",
             *libero_table(rows), "",
             "Suite reports: " + ", ".join(f"[{p.name}]({p.name}/report.md)" for p in presets) + ".", ""]
    path = out / "report.md"
    atomic_write_text(path, "\n".join(lines))
    return path
