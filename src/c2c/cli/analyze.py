"""``c2c analyze overlap|plan|attention|runtime`` and ``c2c ablate``: the paper's analyses on the command line (the
analyses themselves are in :mod:`c2c.analysis`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from c2c.cli.options import comma_list, threads_option
from c2c.errors import ConfigError


def add_analysis_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register ``analyze`` (with its four subcommands) and ``ablate``."""
    analyze = subparsers.add_parser("analyze", help="the paper's analyses: code overlap, plans, attention, runtime")
    sub = analyze.add_subparsers(dest="analyze_command", required=True)

    overlap = sub.add_parser(
        "overlap", help="plan/exec code-usage overlap of a joint tokenizer (paper: about 0.16)",
        description="Re-encode a dataset's plan and exec windows with a saved tokenizer and report the support-"
        "overlap mass sum_i min(p_plan, p_exec) per RVQ level, with code-usage histograms. Writes overlap.json and "
        "code_usage.png into --out.")
    overlap.add_argument("--tokenizer", type=Path, required=True, help="trained tokenizer directory")
    overlap.add_argument("--dataset", type=Path, default=None, help="dataset (default: the one it was trained on)")
    overlap.add_argument("--split", default="heldout", help="heldout (default: its held-out episodes) | all")
    overlap.add_argument("--out", type=Path, required=True, help="output directory")
    overlap.set_defaults(func=_run_overlap)

    plan = sub.add_parser(
        "plan", help="decoded coarse plans against the true future (Fig. 5b)",
        description="Decode the plan of a plan policy at frames of held-out episodes and compare the cumulative "
        "displacement it commands with the episode's true future (Eq. 3). Writes plan.json and plan_ep<k>.png; "
        "Meta-World plans are also drawn into the camera image.")
    plan.add_argument("--policy", type=Path, required=True, help="saved plan policy directory")
    plan.add_argument("--dataset", type=Path, required=True, help="the dataset it was trained on")
    plan.add_argument("--episodes", default=None, help="comma list of episode indices (default: two held-out ones)")
    plan.add_argument("--frames", type=int, default=4, help="frames per episode, spread evenly (default 4)")
    plan.add_argument("--out", type=Path, required=True, help="output directory")
    plan.set_defaults(func=_run_plan)

    attention = sub.add_parser(
        "attention", help="first-exec-token attention over image tokens, plan vs noplan (Fig. 5a)",
        description="Attention of the first exec token to the primary camera's image tokens (mean of heads and "
        "layers) with the plan prefix and, with --noplan-policy, without it; on Meta-World also the share on the "
        "target object. Writes attention.json and attention_ep<k>.png.")
    attention.add_argument("--policy", type=Path, required=True, help="saved plan policy directory")
    attention.add_argument("--noplan-policy", type=Path, default=None, help="saved noplan policy directory")
    attention.add_argument("--dataset", type=Path, required=True, help="the dataset they were trained on")
    attention.add_argument("--episodes", default=None, help="comma list of episode indices (default: the held-out ones)")
    attention.add_argument("--frames", type=int, default=1, help="frames per episode, frame 0 first (default 1)")
    attention.add_argument("--radius", type=float, default=None,
                           help="target disk radius in pixels (default 8%% of the image side)")
    attention.add_argument("--out", type=Path, required=True, help="output directory")
    attention.set_defaults(func=_run_attention)

    runtime = sub.add_parser(
        "runtime", help="decode time per chunk: plan, cached plan, exec only, 256-token reasoning prefix (Table 5)",
        description="Time KV-cached greedy decoding of one chunk with the plan prefix, with a cached plan, without "
        "any prefix and with a 256-token reasoning prefix, on the same backbone. Writes runtime.json and runtime.md.")
    runtime.add_argument("--policy", type=Path, required=True, help="saved plan policy directory")
    runtime.add_argument("--noplan-policy", type=Path, default=None, help="also time this noplan policy")
    runtime.add_argument("--repeats", type=int, default=5, help="timed decodes per case (default 5)")
    runtime.add_argument("--reasoning-tokens", type=int, default=256, help="reasoning prefix length (default 256)")
    runtime.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    runtime.add_argument("--out", type=Path, required=True, help="output directory")
    runtime.set_defaults(func=_run_runtime)

    ablate = subparsers.add_parser(
        "ablate", help="train and evaluate ablation variants, then Table 3 / Table 4 style tables",
        description="Run the pipeline (c2c run) of a preset with the given variants, the same data, seeds and "
        "budget for each (finished stages are reused), then write <out>/ablation/ablation.md, .json and .png: "
        "planning horizon (noplan = Hp 0, plan-hp40, plan = Hp 160) and tokenizer sharing (noplan, separate, "
        "joint), per task, per difficulty group and overall. With --study: a controlled study instead, one "
        "pipeline run per group of rows (c2c.analysis.study), reported in <out>/study.md, .json and .png with 95% "
        "intervals, held-out L1, samples/s and decode ms; every row gets the same steps x batch, or with "
        "--budget-seconds the same wall-clock (steps per row from each row's step time, measured first).")
    ablate.add_argument("--preset", default=None, help="pipeline preset (default mt10; with --study: quick)")
    ablate.add_argument("--study", default=None,
                        help="representation (plan, noplan, smaller codebooks, binning, fast, regress, cnn) | levers "
                        "(what makes the quick benchmark discriminate: camera, demonstrations, image size, Hp)")
    ablate.add_argument("--rows", default=None, help="with --study: only these rows, comma-separated (default: all)")
    ablate.add_argument("--budget-seconds", type=float, default=None,
                        help="with --study: the same wall-clock per row instead of the same samples: S seconds of "
                        "training per row on one thread, in steps from each row's step time measured first "
                        "(<out>/budget.json)")
    ablate.add_argument("--tasks", type=comma_list, default=None,
                        help="Meta-World tasks, comma-separated (default: the preset's)")
    ablate.add_argument("--eval-seed", type=int, default=None,
                        help="seed of the evaluation placements (default: the preset's; choose settings on it, "
                        "report on another)")
    ablate.add_argument("--variants", default=None,
                        help="comma list of plan, plan-hp40, noplan, separate (default: all four)")
    ablate.add_argument("--out", type=Path, default=None, help="output directory (default runs/<preset>)")
    ablate.add_argument("--force", action="store_true", help="redo stages that are already done")
    ablate.add_argument("--workers", type=int, default=None, help="evaluation worker processes")
    ablate.add_argument("--backbone", default=None, help="override the preset's policy backbone")
    ablate.add_argument("--tokenizer-steps", type=int, default=None, help="override the preset's tokenizer steps")
    ablate.add_argument("--policy-steps", type=int, default=None, help="override the policy steps per variant")
    ablate.add_argument("--eval-episodes", type=int, default=None, help="override the evaluation episodes per task")
    ablate.add_argument("--episodes-per-task", type=int, default=None, help="override the demonstrations per task")
    ablate.add_argument("--threads", type=threads_option, default=None,
                        help="torch threads of the training stages: N pins them, auto uses the cores other jobs "
                        "leave free (default: the preset's; quick: 2)")
    ablate.set_defaults(func=_run_ablate)


def _run_overlap(args: argparse.Namespace) -> int:
    from c2c.analysis.overlap import analyze_overlap

    result = analyze_overlap(args.tokenizer, args.dataset, args.out, split=args.split)
    levels = ", ".join(f"{m:.3f}" for m in result["overlap_mass"])
    print(f"plan/exec overlap mass per level: {levels} (mean {result['overlap_mass_mean']:.3f}; paper about "
          f"{result['paper_overlap_mass']}) over {result['chunks']} {result['split']} windows")
    print(f"saved to {args.out} (overlap.json, code_usage.png)")
    return 0


def _run_plan(args: argparse.Namespace) -> int:
    from c2c.analysis.plan import analyze_plans

    result = analyze_plans(args.policy, args.dataset, args.out, episodes=args.episodes, frames=args.frames)
    summary = result["summary"]
    metres = summary.get("endpoint_error_m")
    print(f"plan L1 {summary['plan_l1']:.4f} (normalized), {summary['plan_l1_raw']:.4f} (dataset units) over "
          f"{summary['frames']} frames of episodes {result['episodes']}; net displacement error "
          f"{summary['endpoint_error']:.3f}" + (f" ({100 * metres:.1f} cm)" if metres is not None else "")
          + (f", direction cosine {summary['direction_cosine']:.2f}" if summary["direction_cosine"] is not None
             else ""))
    print(f"saved to {args.out} (plan.json, {', '.join(Path(f).name for f in result['figures'])})")
    return 0


def _run_attention(args: argparse.Namespace) -> int:
    from c2c.analysis.attention import analyze_attention

    result = analyze_attention(args.policy, args.dataset, args.out, noplan_dir=args.noplan_policy,
                               episodes=args.episodes, frames=args.frames, radius=args.radius)
    summary = result["summary"]
    for name in ("plan", "noplan"):
        if name not in summary:
            continue
        entry = summary[name]
        line = f"{name:<7} attention share on {result['camera']} tokens {entry['camera_share']:.3f}"
        if "target_mass" in entry:
            line += (f"; share of it on the target disk {entry['target_mass']:.3f} (uniform "
                     f"{entry['uniform_target_mass']:.3f})")
        print(line)
    if "target_note" in summary:
        print(summary["target_note"])
    print(f"saved to {args.out} (attention.json, attention_ep<k>.png, attention_layers.png)")
    return 0


def _run_runtime(args: argparse.Namespace) -> int:
    from c2c.analysis.runtime import analyze_runtime, format_runtime

    result = analyze_runtime(args.policy, args.out, noplan_dir=args.noplan_policy, repeats=args.repeats,
                             reasoning_tokens=args.reasoning_tokens, threads=args.threads)
    print(format_runtime(result))
    print(f"saved to {args.out} (runtime.json, runtime.md)")
    return 0


def _run_ablate(args: argparse.Namespace) -> int:
    from c2c.analysis.ablate import parse_variants, run_ablation

    overrides = {"backbone": args.backbone, "tokenizer_steps": args.tokenizer_steps,
                 "policy_steps": args.policy_steps, "eval_episodes": args.eval_episodes, "threads": args.threads,
                 "episodes_per_task": args.episodes_per_task, "eval_seed": args.eval_seed,
                 "tasks": tuple(args.tasks) if args.tasks else None}
    if args.study is not None:
        return _run_study(args, overrides)
    if args.rows is not None:
        raise ConfigError("--rows selects rows of a study; give --study too")
    if args.budget_seconds is not None:
        raise ConfigError("--budget-seconds sets the wall-clock per row of a study; give --study too")
    variants = parse_variants(args.variants)
    result = run_ablation(args.preset or "mt10", variants, args.out, overrides, workers=args.workers, force=args.force)
    for variant, entry in result["results"].items():
        print(f"{variant:<10} mean over tasks {100 * entry['overall']:.1f}%")
    print(f"tables: {Path(result['out']) / 'ablation' / 'ablation.md'}")
    return 0


def _run_study(args: argparse.Namespace, overrides: dict) -> int:
    from c2c.analysis.study import run_study, study_rows
    from c2c.eval.presets import get_preset

    if args.variants is not None:
        raise ConfigError("--variants applies to the Table 3 / 4 ablation; a study's rows are chosen with --rows")
    if args.budget_seconds is not None:
        from c2c.analysis.study_budget import check_budget_seconds

        check_budget_seconds(args.budget_seconds)
        if args.policy_steps is not None:
            raise ConfigError("--policy-steps and --budget-seconds both set how long each row trains; give one")
    rows = study_rows(args.study, args.rows)
    preset = get_preset(args.preset or "quick")
    preset = preset.replace(**{key: value for key, value in overrides.items() if value is not None})
    out = args.out if args.out is not None else Path("runs") / f"study-{args.study}"
    result = run_study(args.study, preset, out, rows=rows, workers=args.workers, force=args.force,
                       budget_seconds=args.budget_seconds)
    print(f"budget: {result['budget']['text']}")
    for row in result["rows"]:
        low, high = row["interval"]
        print(f"{row['row']:<16} {100 * row['success']:5.1f}%  (95%: {100 * low:.0f}-{100 * high:.0f}%)  "
              f"{row['steps']} steps")
    print(f"report: {Path(out) / 'study.md'}")
    return 0
