"""Closed-loop Meta-World evaluation of a trained policy directory (`c2c eval metaworld`).

Example::

    results = evaluate_metaworld("runs/plan", tasks="mt10", episodes=20, seed=0, videos=2, out=Path("runs/eval"))
    results["tasks"]["reach-v3"]["success_rate"]      # 0.85
    results.get("group_average")                       # mean of the difficulty-group means (several groups only)
    print(format_summary(results))

Placements: episode ``k`` of task ``T`` starts from the placement seed :func:`eval_seed` ``(seed, T, k)``, a hash
in a namespace of its own (the demonstrations use :func:`c2c.envs.metaworld_demos.placement_seed`). Every one is
checked against the placement seeds of the training demonstrations, read from the policy directory's
``training_data.json`` (:mod:`c2c.eval.training_record`); an overlap is refused with a :class:`ConfigError`, and so is a policy directory without
that record (unless ``allow_unknown_training_seeds``, a debug escape hatch recorded in the results).

Rendering: the policy's cameras at its image size, drawn as the training demonstrations were (``fast_drawing`` in
the training record).

Episode: ``env.reset(seed)``, ``policy.reset()``, then ``policy.select_action(obs)`` / ``env.step(action)`` until
the first success (the episode is a success of that many steps) or ``max_steps``.

Workers: with ``workers > 1`` episodes run in spawned processes, each loading the policy once, with one torch
thread and one env (and so one renderer) at a time; ``workers=1`` runs in this process (the only choice for a
``policy`` object passed in).

Output directory ``out``:

``results.json``  per task: success rate, successes/episodes, mean steps of the successes, mean wall seconds per
                  episode, every episode's placement seed, success and steps; the SmolVLA difficulty-group means
                  and their average when the tasks span several groups; the settings and the command line.
                  Every episode also records how far it got, from Meta-World's state vector (hand xyz, its first
                  object's xyz, the goal's xyz): the closest the hand came to the object and to the goal, the
                  farthest the object moved from where it started, and the closest it came to the goal, in cm.
``report.md``     the same as Markdown tables, with a table of where the failed episodes stopped (did the hand
                  reach the object, did the object move, how near the goal it got): on multi-stage tasks it
                  tells a policy that never reaches the object from one that moves it but misses the goal.
``success.png``   bar chart per task (and per group).
``results.partial.jsonl``  every episode's record, written as it finishes; removed once results.json is written, so
                  after a failure it keeps the episodes that finished (:mod:`c2c.eval.partial`).
``videos/<task>_ep<k>.mp4``  the first ``videos`` episodes of every task: the policy's camera images, upscaled,
                  beside the decoded coarse plan (cumulative xyz per coarse step): the plan of the chunk the policy
                  generated, decoded from its tokens (no second model decode).
"""

from __future__ import annotations

import hashlib
import json
import shlex
import time
from pathlib import Path
from typing import Any

from c2c.envs.metaworld_tasks import DIFFICULTY_GROUPS, difficulty_group, resolve_tasks
from c2c.errors import ConfigError
from c2c.eval.metaworld_rollouts import (MOVED_CM, PROGRESS_KEYS, EpisodeProgress, Job, Settings,  # noqa: F401
                                         add_decode_counts, run_jobs, usable_cpus)
from c2c.eval.partial import PartialRecords
from c2c.eval.reporting import (mean, number, percent, precision_hint, rate_with_counts, save_success_chart,
                                video_lines, write_results)
from c2c.eval.training_record import (TrainingRecord, check_disjoint_seeds, read_training_record,
                                       served_training_record, training_placement_seeds)
from c2c.utils.outdir import check_out_dir

FORMAT = "c2c-eval-metaworld"
FORMAT_VERSION = 1
SEED_NAMESPACE = "c2c/metaworld-eval"  # demonstrations hash "c2c/metaworld/...": the two never share a stream
SEED_BITS = 31  # placement seeds are non-negative int32s, as for the demonstrations
META_WORLD_DIM = 4  # state (hand xyz + gripper) and action (xyz delta + gripper effort)
MAX_STEPS = 500  # Meta-World's episode limit
def eval_seed(seed: int, task: str, episode: int) -> int:
    """The placement seed of evaluation ``episode`` of ``task`` under the run seed ``seed`` (a stable hash)."""
    digest = hashlib.sha256(f"{SEED_NAMESPACE}/{seed}/{task}/{episode}".encode()).digest()
    return int.from_bytes(digest[:8], "little") % (1 << SEED_BITS)


# ---------------------------------------------------------------------------------------------------------------
# Checks made before any rollout.


def _policy_config(policy_dir: Path, policy: Any) -> Any:
    """The policy's config: from ``policy`` when given, else from ``policy_dir/config.json`` (files checked)."""
    from c2c.policy.config import PolicyConfig
    from c2c.policy.policy import (
        ACTION_TOKENIZER_DIR, CONFIG_FILE, EMA_WEIGHTS_FILE, INSTRUCTION_TOKENIZER_DIR, WEIGHTS_FILE,
    )

    if policy is not None:
        return policy.config
    if not policy_dir.is_dir():
        raise ConfigError(f"--policy {policy_dir}: not a directory (train one with `c2c policy train`)")
    config_path = policy_dir / CONFIG_FILE
    if not config_path.is_file():
        raise ConfigError(f"--policy {policy_dir}: {CONFIG_FILE} is missing (not a saved policy directory)")
    if not (policy_dir / EMA_WEIGHTS_FILE).is_file() and not (policy_dir / WEIGHTS_FILE).is_file():
        raise ConfigError(f"--policy {policy_dir}: neither {EMA_WEIGHTS_FILE} nor {WEIGHTS_FILE} is there")
    for name in (ACTION_TOKENIZER_DIR, INSTRUCTION_TOKENIZER_DIR):
        if not (policy_dir / name).is_dir():
            raise ConfigError(f"--policy {policy_dir}: the {name}/ directory is missing")
    try:
        raw = json.loads(config_path.read_text())
        policy_dict = raw["policy"]
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise ConfigError(f"{config_path}: not a policy config (no valid 'policy' entry: {error})") from None
    return PolicyConfig.from_dict(policy_dict)


def read_policy_config(policy_dir: Path) -> Any:
    """``policy_dir``'s config, after checking that the directory holds a saved policy's files."""
    return _policy_config(Path(policy_dir), None)


def check_metaworld_policy(config: Any, where: str) -> None:
    """Refuse a policy config that cannot act in Meta-World: 4-dim state and action, Meta-World camera names."""
    from c2c.envs.metaworld_tasks import CAMERAS, check_cameras

    for key in ("state_dim", "action_dim"):
        value = getattr(config, key)
        if value != META_WORLD_DIM:
            raise ConfigError(f"{where}: policy {key} is {value}; Meta-World needs {META_WORLD_DIM}")
    try:
        check_cameras(config.cameras)
    except ConfigError as error:
        raise ConfigError(f"{where}: policy cameras {list(config.cameras)} are not Meta-World cameras ({error}); "
                          f"expected names among {', '.join(CAMERAS)}") from None
    if config.image_size < 8:
        raise ConfigError(f"{where}: policy image_size is {config.image_size}; Meta-World renders at least 8 px")


def _check_request(episodes: int, seed: int, max_steps: int, videos: int, workers: int | None) -> None:
    checks = [
        ("episodes", episodes, episodes >= 1, "at least 1"),
        ("seed", seed, seed >= 0, "non-negative"),
        ("max_steps", max_steps, 1 <= max_steps <= MAX_STEPS, f"in 1..{MAX_STEPS} (Meta-World's limit)"),
        ("videos", videos, videos >= 0, "0 or more"),
        ("workers", workers, workers is None or workers >= 1, "at least 1"),
    ]
    for name, value, ok, expected in checks:
        if not ok:
            raise ConfigError(f"{name} must be {expected}, got {value}")


# ---------------------------------------------------------------------------------------------------------------
# Evaluation.


def evaluate_metaworld(
    policy_dir: str | Path | None,
    tasks: str | list[str],
    episodes: int,
    seed: int,
    out: str | Path,
    *,
    replan_every: int | None = None,
    max_steps: int = MAX_STEPS,
    videos: int = 0,
    workers: int | None = None,
    show_progress: bool = True,
    policy: Any = None,
    allow_unknown_training_seeds: bool = False,
    server: str | None = None,
    api_key: str | None = None,
    training_placements: bool = False,
    envs_per_worker: int = 1,
    snap_gripper: bool = False,
    render_every_step: bool = False,
) -> dict[str, Any]:
    """Roll the policy out ``episodes`` times per task; write results.json, report.md, success.png and videos.

    ``policy_dir``: a saved policy (``PlanExecutePolicy.save_pretrained`` / ``c2c policy train``) with its
    ``training_data.json``. ``policy``: an already loaded policy to use instead of loading ``policy_dir`` (then
    ``workers`` must be 1; ``policy_dir`` still supplies the training record). ``replan_every``: actions executed per
    decoded chunk (default: the policy's). ``videos``: episodes recorded per task (the first ones). ``workers``:
    processes (default: min(CPUs, episodes, 2)). Everything is checked before the first rollout; see the module
    docstring for the placements and the outputs. Returns the content of results.json.

    ``server``: ``ws://HOST:PORT`` of a ``c2c serve`` server to act through (:class:`c2c.serve.client.RemotePolicy`,
    ``api_key`` its key) instead of loading the policy: episodes run in this process (``workers`` 1), every chunk
    is decoded by the server with a fresh plan, and ``policy_dir`` becomes optional: the training record is read
    from ``policy_dir`` when given, else from the server's metadata (its ``training_data.json``).

    ``training_placements``: a diagnostic, not a result: episode k of a task starts from the placement of the k-th
    training demonstration attempt of that task (``seed`` is then unused). Success there about equal to success on
    unseen placements means the policy underfits; far higher means it does not generalise. The report and
    results.json say so in a warning and in ``settings.placements``.

    ``envs_per_worker``: environments each process steps together, their observations decoded as one batch
    (:mod:`c2c.eval.metaworld_batch`; with greedy decoding the same episodes as one at a time).

    ``snap_gripper``: round the gripper effort of every executed action to the scripted demonstrations' values
    {-1, 0, +1} (off by default: the policy's actions are executed as decoded).

    Only the steps whose images are read are drawn: those before a new chunk is decoded, and every step of an
    episode recorded as video. ``render_every_step`` draws them all (the same records, slower; for benchmarks).
    """
    if not isinstance(envs_per_worker, int) or envs_per_worker < 1:
        raise ConfigError(f"--envs-per-worker must be 1 or more, got {envs_per_worker}")
    if envs_per_worker > 1 and (server is not None or (policy is not None and not hasattr(policy, "generate"))):
        raise ConfigError("--envs-per-worker above 1 needs a local policy (a policy server decodes one observation "
                          "at a time); drop --server or use --envs-per-worker 1")
    if server is not None and policy is None:
        from c2c.serve.client import RemotePolicy

        if workers not in (None, 1):
            raise ConfigError(f"workers must be 1 with a policy server (episodes run in this process), got {workers}")
        resolve_tasks(tasks)
        _check_request(episodes, seed, max_steps, videos, workers)
        with RemotePolicy(server, api_key) as served:
            return evaluate_metaworld(
                policy_dir, tasks, episodes, seed, out, replan_every=replan_every, max_steps=max_steps, videos=videos,
                workers=1, show_progress=show_progress, policy=served,
                allow_unknown_training_seeds=allow_unknown_training_seeds, server=server,
                training_placements=training_placements, envs_per_worker=envs_per_worker,
                snap_gripper=snap_gripper,
            )
    if server is not None and not hasattr(policy, "training_record"):
        raise ConfigError("give a policy server or a policy object, not both")
    if policy_dir is None and server is None:
        raise ConfigError("a policy directory is required unless a policy server is given")
    started = time.perf_counter()
    policy_dir, out = (None if policy_dir is None else Path(policy_dir)), Path(out)
    task_names = resolve_tasks(tasks)
    _check_request(episodes, seed, max_steps, videos, workers)
    config = _policy_config(policy_dir, policy)
    where = f"--policy {policy_dir}" if policy is None else "the given policy"
    if server is not None:
        where = f"the policy served at {server}"
    check_metaworld_policy(config, where)
    if replan_every is not None:
        config = config.replace(replan_every=replan_every)  # validated against exec_horizon here
    total = len(task_names) * episodes
    workers = workers if workers is not None else (1 if policy is not None else min(usable_cpus(), total, 2))
    if policy is not None and workers != 1:
        raise ConfigError(f"workers must be 1 when a policy object is passed in (got {workers}); worker processes "
                          f"load the policy from its directory")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file, not a directory")

    training = read_training_record(policy_dir) if policy_dir is not None else served_training_record(policy, server)
    if not training.known and not allow_unknown_training_seeds:
        reason = "is missing" if not training.path.is_file() else "records no Meta-World demonstration seeds"
        raise ConfigError(
            f"{training.path} {reason}, so the evaluation placements cannot be checked against the training "
            f"demonstrations' (`c2c policy train` writes it); pass --allow-unknown-training-seeds only for debugging"
        )
    videos = min(videos, episodes)
    video_dir = out / "videos"
    if training_placements:
        placements = training_placement_seeds(training, task_names, episodes)
        jobs = [Job(task, k, placements[task][k], video_dir / f"{task}_ep{k}.mp4" if k < videos else None)
                for task in task_names for k in range(episodes)]
    else:
        jobs = [
            Job(task, k, eval_seed(seed, task, k), video_dir / f"{task}_ep{k}.mp4" if k < videos else None)
            for task in task_names for k in range(episodes)
        ]
        check_disjoint_seeds(jobs, training)
    warnings = [f"DIAGNOSTIC: these placements are the training demonstrations' own ({training.path}); the rates "
                f"measure how well the policy fits its training data, not how it generalises"] if training_placements \
        else []
    warnings += [
        f"{task} was not among the training tasks ({', '.join(training.tasks)})"
        for task in task_names if training.tasks and task not in training.tasks
    ]
    render_size = training.image_size or config.image_size
    if render_size != config.image_size:  # rendered as the training data was, then resized as training resized it
        warnings.append(f"the training images were {render_size} px and resized to the policy's {config.image_size} "
                        f"px; evaluation renders at {render_size} px and resizes the same way")
    if not training.known:
        warnings.append(f"placements were NOT checked against the training seeds ({training.path} "
                        f"{'is missing' if not training.path.is_file() else 'has no Meta-World seeds'})")

    check_out_dir(out)  # writable, before any rollout
    for stale in video_dir.glob("*_ep*.mp4"):  # videos of an earlier evaluation into this directory
        stale.unlink()
    settings = Settings(str(policy_dir), replan_every, max_steps, tuple(config.cameras), config.image_size,
                         training.fast_drawing, render_size, envs_per_worker, snap_gripper, render_every_step)
    with PartialRecords(out, policy=str(policy_dir), tasks=task_names, episodes=episodes, seed=seed) as partial:
        records = run_jobs(jobs, settings, workers, policy, show_progress, partial.add)

    results = {
        "format": FORMAT, "version": FORMAT_VERSION, "policy": str(policy_dir), "variant": config.variant,
        "weights": _weights_name(policy_dir, policy),
        "settings": {
            "tasks": task_names, "episodes": episodes, "seed": seed, "seed_namespace": SEED_NAMESPACE,
            "replan_every": config.replan_every, "replan_every_override": replan_every, "max_steps": max_steps,
            "videos": videos, "workers": workers, "cameras": list(config.cameras), "image_size": config.image_size,
            "render_size": render_size, "envs_per_worker": envs_per_worker, "snap_gripper": snap_gripper,
            "fast_drawing": training.fast_drawing, "exec_horizon": config.exec_horizon, "plan_reuse": config.plan_reuse,
            "temperature": config.temperature, "allow_unknown_training_seeds": allow_unknown_training_seeds,
            "training_tasks": list(training.tasks),
            "training_seeds_checked": len(training.seeds) if training.known and not training_placements else None,
            "placements": "training (diagnostic)" if training_placements else "unseen",
        },
        "command": command_line(policy_dir, task_names, episodes, seed, out, replan_every=replan_every,
                                max_steps=max_steps, videos=videos, workers=workers,
                                allow_unknown_training_seeds=allow_unknown_training_seeds, server=server,
                                training_placements=training_placements, envs_per_worker=envs_per_worker,
                                snap_gripper=snap_gripper),
        "warnings": warnings,
        "seconds": round(time.perf_counter() - started, 2),
        **summarise(records, task_names, training),
    }
    if server is not None:
        results["policy"] = server if policy_dir is None else str(policy_dir)
        results["weights"] = f"served by {server}"
        results["server"] = {"url": server, "policy_dir": policy.metadata.get("policy_dir"),
                             "training_record_from": "server" if policy_dir is None else str(training.path)}
    with partial.saving():  # the partial records go once results.json is written
        write_outputs(results, out)
    return results


def _weights_name(policy_dir: Path, policy: Any) -> str:
    from c2c.policy.policy import EMA_WEIGHTS_FILE, WEIGHTS_FILE

    if policy is not None:
        return "in-memory policy object"
    return EMA_WEIGHTS_FILE if (policy_dir / EMA_WEIGHTS_FILE).is_file() else WEIGHTS_FILE


def command_line(policy_dir: Path | None, tasks: list[str], episodes: int, seed: int, out: Path, *,
                 replan_every: int | None, max_steps: int, videos: int, workers: int,
                 allow_unknown_training_seeds: bool, server: str | None = None,
                 training_placements: bool = False, envs_per_worker: int = 1, snap_gripper: bool = False) -> str:
    """The `c2c eval metaworld` command that reproduces an evaluation (an API key is never written)."""
    words = ["c2c", "eval", "metaworld"]
    if policy_dir is not None:
        words += ["--policy", str(policy_dir)]
    if server is not None:
        words += ["--server", server]
    words += ["--tasks", ",".join(tasks), "--episodes", str(episodes), "--seed", str(seed)]
    if replan_every is not None:
        words += ["--replan-every", str(replan_every)]
    words += ["--max-steps", str(max_steps), "--videos", str(videos), "--workers", str(workers), "--out", str(out)]
    if allow_unknown_training_seeds:
        words.append("--allow-unknown-training-seeds")
    if training_placements:
        words.append("--training-placements")
    if envs_per_worker != 1:
        words += ["--envs-per-worker", str(envs_per_worker)]
    if snap_gripper:
        words.append("--snap-gripper")
    return shlex.join(words)


# ---------------------------------------------------------------------------------------------------------------
# Results.


def _precision(episodes: int) -> str:
    return precision_hint(episodes, f"episode{'s' * (episodes != 1)}")


def summarise(records: list[dict[str, Any]], tasks: list[str], training: TrainingRecord) -> dict[str, Any]:
    """Per-task statistics, difficulty-group means (several groups only) and the overall rate."""
    per_task: dict[str, Any] = {}
    for task in tasks:
        rollouts = [{key: record[key] for key in ("episode", "seed", "success", "steps", "seconds", "video",
                                                 "progress") if key in record}
                    for record in records if record["task"] == task]
        successes = sum(r["success"] for r in rollouts)
        failed = [r["progress"] for r in rollouts if not r["success"] and "progress" in r]
        per_task[task] = {
            "group": difficulty_group(task),
            "in_training": (task in training.tasks) if training.tasks else None,
            "success_rate": round(successes / len(rollouts), 4),
            "successes": successes,
            "episodes": len(rollouts),
            "mean_success_steps": mean([r["steps"] for r in rollouts if r["success"]]),
            "mean_episode_seconds": mean([r["seconds"] for r in rollouts]),
            "failures": _failure_progress(failed),
            "rollouts": rollouts,
        }
    successes = sum(stats["successes"] for stats in per_task.values())
    episodes = sum(stats["episodes"] for stats in per_task.values())
    results: dict[str, Any] = {
        "tasks": per_task,
        "overall": {"success_rate": round(successes / episodes, 4), "successes": successes, "episodes": episodes},
    }
    add_decode_counts(results, records)  # chunks the action tokenizer had to repair (the fast variant)
    present = [group for group in DIFFICULTY_GROUPS if any(stats["group"] == group for stats in per_task.values())]
    if len(present) > 1:
        groups = {}
        for group in present:
            members = [task for task, stats in per_task.items() if stats["group"] == group]
            groups[group] = {"success_rate": mean([per_task[task]["success_rate"] for task in members]),
                             "tasks": members}
        results["groups"] = groups
        results["group_average"] = mean([stats["success_rate"] for stats in groups.values()])
    return results


def _failure_progress(failed: list[dict[str, float]]) -> dict[str, Any] | None:
    """Where the failed episodes stopped: medians of their closest distances, and how many moved the object."""
    import statistics

    if not failed:
        return None
    return {"episodes": len(failed),
            "median_hand_to_object_cm": round(statistics.median(p["hand_to_object_cm"] for p in failed), 1),
            "object_moved": sum(p["object_moved_cm"] >= MOVED_CM for p in failed),
            "median_object_to_goal_cm": round(statistics.median(p["object_to_goal_cm"] for p in failed), 1),
            "median_hand_to_goal_cm": round(statistics.median(p["hand_to_goal_cm"] for p in failed), 1)}


def format_summary(results: dict[str, Any]) -> str:
    """The table the command line prints."""
    tasks = results["tasks"]
    width = max([len("task")] + [len(task) for task in tasks])
    header = f"{'task':<{width}}  {'group':<9}  {'success':>16}  {'steps':>6}  {'s/ep':>6}"
    lines = [header, "-" * len(header)]
    for task, stats in tasks.items():
        rate = rate_with_counts(stats["success_rate"], stats["successes"], stats["episodes"])
        lines.append(f"{task:<{width}}  {stats['group']:<9}  {rate:>16}  "
                     f"{number(stats['mean_success_steps']):>6}  {number(stats['mean_episode_seconds'], 2):>6}")
    lines.append("-" * len(header))
    overall = results["overall"]
    rate = rate_with_counts(overall["success_rate"], overall["successes"], overall["episodes"])
    lines.append(f"{'overall':<{width}}  {'':<9}  {rate:>16}")
    for group, stats in results.get("groups", {}).items():
        lines.append(f"{'group ' + group:<{width}}  {'':<9}  {percent(stats['success_rate']):>16}")
    if "group_average" in results:
        lines.append(f"{'group average':<{width}}  {'':<9}  {percent(results['group_average']):>16}")
    lines.append(f"precision: {_precision(results['settings']['episodes'])}")
    lines.extend(f"warning: {warning}" for warning in results.get("warnings", []))
    return "\n".join(lines)


def markdown_report(results: dict[str, Any]) -> str:
    """report.md: settings, the per-task table, the group table and the warnings."""
    settings = results["settings"]
    lines = [
        "# Meta-World closed-loop evaluation", "",
        f"Policy `{results['policy']}` (variant `{results['variant']}`, weights `{results['weights']}`); "
        f"{settings['episodes']} episodes per task, seed {settings['seed']}, replan every "
        f"{settings['replan_every']} steps, at most {settings['max_steps']} steps; cameras "
        f"{', '.join(settings['cameras'])} at {settings['image_size']} px. Wall time {results['seconds']:.1f} s.", "",
        "```", results["command"], "```", "",
        *(["**Diagnostic run on the training demonstrations' own placements: not a generalisation result.**", ""]
          if settings.get("placements", "unseen") != "unseen" else []),
        "| task | group | success rate | successes | mean steps (successes) | s / episode |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for task, stats in results["tasks"].items():
        name = task if stats["in_training"] is not False else f"{task} (not trained on)"
        lines.append(f"| {name} | {stats['group']} | {percent(stats['success_rate'])} | "
                     f"{stats['successes']}/{stats['episodes']} | {number(stats['mean_success_steps'])} | "
                     f"{number(stats['mean_episode_seconds'], 2)} |")
    overall = results["overall"]
    lines.append(f"| **overall** | | **{percent(overall['success_rate'])}** | "
                 f"{overall['successes']}/{overall['episodes']} | | |")
    lines += ["", f"Precision: {_precision(settings['episodes'])}."]
    if "groups" in results:
        lines += ["", "Difficulty groups (SmolVLA split; a group's rate is the mean of its tasks' rates):", "",
                  "| group | tasks | success rate |", "|---|---:|---:|"]
        for group, stats in results["groups"].items():
            lines.append(f"| {group} | {len(stats['tasks'])} | {percent(stats['success_rate'])} |")
        lines.append(f"| **average** | | **{percent(results['group_average'])}** |")
    failing = {task: stats["failures"] for task, stats in results["tasks"].items() if stats.get("failures")}
    if failing:
        lines += ["", "Where the failed episodes stopped (medians over them; Meta-World's first object of the task: "
                  "the puck, peg, handle or button; distances in cm):", "",
                  "| task | failed | closest hand-object | object moved >= "
                  f"{MOVED_CM:g} cm | closest object-goal | closest hand-goal |", "|---|---:|---:|---:|---:|---:|"]
        for task, stats in failing.items():
            lines.append(f"| {task} | {stats['episodes']} | {stats['median_hand_to_object_cm']:.1f} | "
                         f"{stats['object_moved']}/{stats['episodes']} | {stats['median_object_to_goal_cm']:.1f} | "
                         f"{stats['median_hand_to_goal_cm']:.1f} |")
    if results["warnings"]:
        lines += ["", "Warnings:", ""] + [f"- {warning}" for warning in results["warnings"]]
    lines += video_lines(r["video"] for stats in results["tasks"].values() for r in stats["rollouts"])
    return "\n".join(lines) + "\n"


def write_outputs(results: dict[str, Any], out: Path) -> None:
    """results.json, report.md and success.png into ``out`` (each written atomically)."""
    write_results(results, markdown_report(results), out)
    groups = {group: stats["success_rate"] for group, stats in results.get("groups", {}).items()}
    overall = results["overall"]
    title = (f"{results['variant']}: {percent(overall['success_rate'])} over {overall['episodes']} episodes"
             + (f", group average {percent(results['group_average'])}" if "group_average" in results else ""))
    save_success_chart(out, {task: stats["success_rate"] for task, stats in results["tasks"].items()}, groups,
                       title=title)

