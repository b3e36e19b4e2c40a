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

Example::

    run_pipeline("quick", Path("runs/quick"))
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from c2c.constants import ACTION, EPISODE_INDEX, OBS_STATE
from c2c.data.normalize import ActionNormalizers
from c2c.data.windows import WindowSpec, dataset_windows, resolve_gripper_dims
from c2c.errors import ConfigError
from c2c.eval.presets import PipelinePreset, get_preset
from c2c.utils.io import atomic_write_json, atomic_write_text

STAGE_FILE = "stage.json"
# The tokenizer each policy variant trains on: (tokenizer variant, plan horizon Hp). None: no tokenizer stage, the
# training fits what the variant needs on the dataset (regress: q01/q99 statistics; binning: a binning tokenizer).
TOKENIZER_FOR_VARIANT = {"plan": ("joint", 160), "noplan": ("joint", 160), "plan-hp40": ("joint", 40),
                         "separate": ("separate", 160), "regress": None, "binning": None}


def _settings_hash(settings: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:10]


def _data_settings(preset: PipelinePreset) -> dict[str, Any]:
    settings = {
        "generator": preset.simulator,
        "tasks": list(preset.tasks),
        "episodes_per_task": preset.episodes_per_task,
        "image_size": preset.image_size,
        "cameras": list(preset.cameras),
        "seed": preset.seed,
    }
    if preset.action_noise:  # only when set, so that the datasets made before the option keep their names
        settings["action_noise"] = float(preset.action_noise)
    if preset.suite is not None:
        settings["suite"] = preset.suite
        settings["fast_drawing"] = True  # our renderer on simplified meshes (LiberoEnv); evaluations follow it
    return settings


def same_settings(recorded: Any, settings: dict[str, Any]) -> bool:
    """Whether a stage recorded with ``recorded`` settings was run with ``settings``. A stage's own output path is
    compared by its last part only, so a run directory that was moved or copied is reused, not redone."""
    def portable(value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        return {key: Path(item).name if key == "out" and isinstance(item, str) else item
                for key, item in value.items()}

    return portable(recorded) == portable(settings)


def run_stage(stage_dir: Path, settings: dict[str, Any], force: bool, work: Callable[[], Any],
              label: str) -> dict[str, Any]:
    """Run ``work`` unless ``stage_dir`` holds a finished stage with the same settings; returns its record
    ``{"settings", "result", "seconds", "skipped"}``. ``force`` (or other settings) clears the directory first."""
    marker = stage_dir / STAGE_FILE
    if marker.is_file() and not force:
        record = json.loads(marker.read_text())
        if same_settings(record.get("settings"), settings):
            print(f"[{label}] done already ({record['seconds']:.0f} s when it ran); reusing {stage_dir}")
            return {**record, "skipped": True}
        print(f"[{label}] settings changed since the last run: redoing it")
        force = True
    if force and stage_dir.exists():
        shutil.rmtree(stage_dir)
    stage_dir.mkdir(parents=True, exist_ok=True)
    print(f"[{label}] running -> {stage_dir}")
    started = time.perf_counter()
    result = work()
    record = {"settings": settings, "result": result, "seconds": round(time.perf_counter() - started, 1)}
    atomic_write_json(marker, record)
    print(f"[{label}] finished in {record['seconds']:.0f} s")
    return {**record, "skipped": False}


def stage_demos(preset: PipelinePreset, out: Path, force: bool) -> Path:
    """Generate (or reuse) the demonstration dataset; returns its directory."""
    from c2c.data.lerobot import LeRobotDataset
    from c2c.envs.metaworld_demos import generate_metaworld_demos

    settings = _data_settings(preset)
    dataset_dir = out / "data" / f"{preset.simulator}-{_settings_hash(settings)}"
    if (dataset_dir / "meta" / "info.json").is_file() and not force:
        dataset = LeRobotDataset(dataset_dir)
        print(f"[demos] reusing {dataset_dir} ({dataset.num_episodes} episodes, {dataset.num_frames} frames)")
        return dataset_dir
    print(f"[demos] generating scripted demonstrations into {dataset_dir}")
    if preset.simulator == "libero":
        from c2c.envs.libero_demos import expert_task_ids, generate_libero_demos

        tasks = ",".join(preset.tasks)
        if tuple(preset.tasks) == ("all",):  # every task a scripted expert does; all ten are evaluated
            supported, skipped = expert_task_ids(preset.suite)
            for task_id, reason in skipped.items():
                print(f"[demos] {preset.suite} task {task_id}: no demonstrations ({reason}); it is still evaluated")
            tasks = ",".join(map(str, supported))
        report = generate_libero_demos(suite=preset.suite, tasks=tasks,
                                       episodes_per_task=preset.episodes_per_task, image_size=preset.image_size,
                                       seed=preset.seed, out=dataset_dir, overwrite=force, fast_drawing=True)
        print(report.summary())
        return dataset_dir
    report = generate_metaworld_demos(
        tasks=",".join(preset.tasks),
        episodes_per_task=preset.episodes_per_task,
        image_size=preset.image_size,
        cameras=list(preset.cameras),
        seed=preset.seed,
        out=dataset_dir,
        overwrite=force,
        action_noise=preset.action_noise,
    )
    print(report.summary())
    return dataset_dir


def stage_windows(dataset_dir: Path, out: Path, spec: WindowSpec | None = None,
                  layout: str = "metaworld") -> dict[str, Any]:
    """Windows and normalization statistics over the whole dataset, plus a plot; returns the summary.
    ``layout``: the action layout naming the gripper dims (metaworld | libero)."""
    from c2c.data.lerobot import LeRobotDataset

    dataset = LeRobotDataset(dataset_dir)
    arrays = dataset.frame_arrays([ACTION, OBS_STATE, EPISODE_INDEX])
    spec = spec or WindowSpec(gripper_dims=resolve_gripper_dims(None, preset=layout))
    start = time.perf_counter()
    windows = dataset_windows(arrays[ACTION], arrays[EPISODE_INDEX], spec)
    normalizers = ActionNormalizers.fit(arrays[ACTION], arrays[OBS_STATE], windows)
    seconds = time.perf_counter() - start
    summary = {
        "spec": asdict(spec),
        "windows": int(len(windows.frames)),
        "seconds": round(seconds, 3),
        "exec_padded_fraction": float(windows.exec_pad.mean()),
        "plan_padded_fraction": float(windows.plan_pad.mean()),
        "normalizers": normalizers.to_dict(),
    }
    stage_dir = out / "windows"
    atomic_write_json(stage_dir / "windows.json", summary)
    plot_coarse_plans(dataset, spec, stage_dir / "coarse_plans.png")
    print(f"[windows] {summary['windows']} windows in {seconds:.2f} s -> {stage_dir}")
    return summary


def plot_coarse_plans(dataset, spec: WindowSpec, path: Path, max_episodes: int = 4) -> None:
    """Fine action paths (cumulative xyz motion) against the coarse plan at t = 0 of one episode per task."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from c2c.data.windows import episode_windows

    chosen: dict[str, int] = {}
    for index in range(dataset.num_episodes):
        task = dataset.episode(index, load_images=False).task
        chosen.setdefault(task, index)
    picks = list(chosen.items())[:max_episodes]
    fig, axes = plt.subplots(len(picks), 1, figsize=(8, 2.6 * len(picks)), squeeze=False)
    for ax, (task, index) in zip(axes[:, 0], picks):
        actions = dataset.episode(index, load_images=False).actions
        horizon = min(spec.plan_horizon, len(actions))
        fine = np.cumsum(actions[:horizon, :3], axis=0)  # (H, 3) commanded motion
        plan = episode_windows(actions, spec, frames=np.array([0])).plans[0]  # (K, D)
        coarse = np.cumsum(plan[:, :3], axis=0)  # (K, 3): net motion after each chunk (Eq. 3)
        steps = (np.arange(spec.plan_steps) + 1) * spec.chunk_size
        for dim, color in zip(range(3), ("tab:red", "tab:green", "tab:blue")):
            ax.plot(np.arange(1, horizon + 1), fine[:, dim], color=color, lw=1, label=f"{'xyz'[dim]} actions")
            ax.plot(steps, coarse[:, dim], "o", color=color, ms=3, label=f"{'xyz'[dim]} coarse plan")
        ax.axvline(len(actions), color="grey", ls=":", lw=1)
        ax.set_title(f"{task} (episode {index}, {len(actions)} steps)", fontsize=9)
        ax.set_xlabel("step")
        ax.set_ylabel("cumulative action")
    axes[0, 0].legend(fontsize=7, ncol=3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)


def stage_tokenizers(preset: PipelinePreset, dataset_dir: Path, out: Path, force: bool) -> dict[str, dict]:
    """Train the tokenizers the preset's variants need; returns ``{tokenizer name: stage record}``."""
    from c2c.tokenizer.train import TokenizerTrainConfig, train_tokenizer

    records = {}
    for variant, plan_horizon in sorted({TOKENIZER_FOR_VARIANT[v] for v in preset.variants} - {None}):
        name = tokenizer_name(variant, plan_horizon)
        config = TokenizerTrainConfig(dataset=str(dataset_dir), out=str(out / "tokenizer" / name), variant=variant,
                                      plan_horizon=plan_horizon, steps=preset.tokenizer_steps,
                                      codec=dict(preset.tokenizer_codec))
        settings = {**asdict(config), "dataset": dataset_dir.name}

        def work(config: TokenizerTrainConfig = config) -> dict[str, Any]:
            import torch

            _use_threads(preset.threads)
            return {**_json_safe(train_tokenizer(config)), "threads": torch.get_num_threads()}

        records[name] = run_stage(Path(config.out), settings, force, work, f"tokenizer {name}")
    return records


TAKEOVER_SEED = 100  # placements of the takeover rollouts (c2c data metaworld-takeover's default --seed)
TAKEOVER_ROOT = "policy-takeover"  # where the policies trained on demonstrations plus takeovers go


def takeover_dataset(out: Path, variant: str) -> Path:
    return out / "takeover" / variant / "data"


def stage_takeovers(preset: PipelinePreset, dataset_dir: Path, out: Path, force: bool,
                    workers: int | None = None) -> dict[str, dict]:
    """Expert takeovers from each variant's rollouts (``out/policy/<variant>``) into
    :func:`takeover_dataset`, the demonstrations plus the takeovers; returns ``{variant: stage record}``."""
    from c2c.envs.metaworld_takeover import collect_takeovers

    records = {}
    for variant in preset.variants:
        policy_dir, stage_dir = out / "policy" / variant, out / "takeover" / variant
        settings = {"policy": variant, "policy_stage": _stage_stamp(policy_dir), "dataset": dataset_dir.name,
                    "episodes": preset.takeover_episodes, "seed": TAKEOVER_SEED, "replan_every": preset.replan_every}

        def work(policy_dir: Path = policy_dir, variant: str = variant) -> dict[str, Any]:
            report = collect_takeovers(policy_dir=policy_dir, dataset=dataset_dir,
                                       episodes_per_task=preset.takeover_episodes, seed=TAKEOVER_SEED,
                                       out=takeover_dataset(out, variant), replan_every=preset.replan_every,
                                       workers=workers, overwrite=True)
            print(report.summary())
            return {"counts": report.counts(), "base_episodes": report.base_episodes}

        records[variant] = run_stage(stage_dir, settings, force, work, f"takeover {variant}")
    return records


def tokenizer_name(variant: str, plan_horizon: int) -> str:
    return variant if plan_horizon == 160 else f"{variant}-hp{plan_horizon}"


def stage_policies(preset: PipelinePreset, dataset_dir: Path, out: Path, force: bool,
                   parallel: bool | None = None, device: str = "cpu",
                   on_finish: Callable[[str, int], None] | None = None, root: str = "policy",
                   datasets: dict[str, Path] | None = None) -> dict[str, dict]:
    """Train every variant with the same budget; returns ``{variant: stage record}``.

    ``device`` ("cpu", "cuda", "cuda:N"): where the policies train. It is not part of the stage's settings, so a
    run finished on one device is reused on another.

    ``parallel`` (default: when there are at least two variants to train, and on the CPU at least two CPUs): one
    process per variant at the same time. On the CPU each starts with one thread: small models use a second
    thread poorly (OpenMP synchronisation), so on two cores this finishes the variants sooner than training them
    one after the other with two threads. On a GPU the processes share it: the small backbones leave it mostly
    idle at batch 32 (tiny on an H100: four side by side trained 2.6 times the samples per second of one alone).

    ``on_finish(variant, freed_threads)``: called when a side-by-side training with pinned threads finishes while
    others still run, after its stage record is written (``run_pipeline`` evaluates it on the cores it freed).

    ``root``: the policies go to ``out/root/<variant>``; ``datasets``: a dataset per variant instead of
    ``dataset_dir`` (the takeover round: each variant's demonstrations plus its own takeovers).
    """
    from c2c.policy.train import train_policy

    configs, records = policy_configs(preset, dataset_dir, out, device, root, datasets), {}
    settings = {variant: {**{k: v for k, v in asdict(config).items() if k != "device"},
                          "dataset": Path(config.dataset).name,
                          "tokenizer": Path(config.tokenizer).name if config.tokenizer else None}
                for variant, config in configs.items()}
    for variant, config in configs.items():  # a fine-tuning starts from a policy of this run: name it, not its path
        if config.init_from is None:
            settings[variant].pop("init_from", None)  # as before the option existed: finished stages stay valid
        else:
            settings[variant]["init_from"] = f"policy/{variant}"
            settings[variant]["init_stage"] = _stage_stamp(Path(config.init_from))
    for variant in datasets or {}:  # a takeover dataset lives in its stage's directory: redo when that stage reran
        settings[variant]["dataset_stage"] = _stage_stamp(Path(configs[variant].dataset).parent)
    todo = []
    for variant, config in configs.items():
        record = None if force else finished_stage(Path(config.out), settings[variant])
        if record is None:
            todo.append(variant)
        else:
            records[variant] = record
    for variant in todo:
        _resume_or_clear(configs[variant], force)
    if parallel is None:
        parallel = len(todo) >= 2 and ((os.cpu_count() or 1) >= 2 or device != "cpu")
    if parallel and len(todo) >= 2:
        started = time.perf_counter()

        def record_stage(variant: str, metrics: dict[str, Any]) -> None:
            record = {"settings": settings[variant], "result": _json_safe(metrics),
                      "seconds": round(time.perf_counter() - started, 1),
                      "parallel_with": [v for v in todo if v != variant]}
            atomic_write_json(Path(configs[variant].out) / STAGE_FILE, record)
            records[variant] = {**record, "skipped": False}

        def finished_early(variant: str, freed_threads: int) -> None:
            record_stage(variant, json.loads((Path(configs[variant].out) / "metrics.json").read_text()))
            if on_finish is not None:
                on_finish(variant, freed_threads)

        metrics = train_in_parallel({variant: configs[variant] for variant in todo}, threads=preset.threads,
                                    on_finish=finished_early)
        for variant in todo:
            if variant not in records:
                record_stage(variant, metrics[variant])
        label = "policies" if root == "policy" else root
        print(f"[{label}] {', '.join(todo)} trained side by side in {time.perf_counter() - started:.0f} s")
    else:
        for variant in todo:
            def work(config: Any = configs[variant]) -> dict[str, Any]:
                if device == "cpu":
                    _use_threads(preset.threads)
                return _json_safe(train_policy(config))

            records[variant] = run_stage(Path(configs[variant].out), settings[variant], False, work,
                                         f"{root.replace('-', ' ')} {variant}")
    return {variant: records[variant] for variant in preset.variants}


def policy_configs(preset: PipelinePreset, dataset_dir: Path, out: Path, device: str = "cpu", root: str = "policy",
                   datasets: dict[str, Path] | None = None) -> dict[str, Any]:
    """``{variant: PolicyTrainConfig}``: how the pipeline trains each of the preset's variants (into
    ``out/root/<variant>``, on ``datasets[variant]`` when given, else on ``dataset_dir``)."""
    from c2c.policy.train import PolicyTrainConfig

    configs = {}
    finetune = root == TAKEOVER_ROOT and preset.takeover_finetune_steps > 0  # from the first round's policies
    for variant in preset.variants:
        needed = TOKENIZER_FOR_VARIANT[variant]
        tokenizer = None if needed is None else str(out / "tokenizer" / tokenizer_name(*needed))
        steps = preset.takeover_finetune_steps if finetune else preset.policy_steps
        configs[variant] = PolicyTrainConfig(
            dataset=str((datasets or {}).get(variant, dataset_dir)), tokenizer=tokenizer,
            out=str(out / root / variant), variant=variant,
            preset=preset.backbone, steps=steps, batch_size=preset.policy_batch_size, image_shift=preset.image_shift,
            checkpoint_every=max(50, steps // 10), eval_every=max(50, steps // 3), device=device,
            init_from=str(out / "policy" / variant) if finetune else None)
    return configs


def _resume_or_clear(config: Any, force: bool) -> None:
    """Before a policy stage runs: an interrupted training of the same settings resumes from its last checkpoint;
    anything else in its directory (a stage finished with other settings, a checkpoint of other settings, or
    everything under ``--force``) is cleared."""
    from c2c.policy.train import resumable_step

    out = Path(config.out)
    step = None if force or (out / STAGE_FILE).is_file() else resumable_step(config)
    if step is None:
        _clear(out)
    else:
        print(f"[policy {config.variant}] resuming its interrupted training from step {step} of {config.steps}")


def _use_threads(threads: int) -> None:
    """Pin torch to ``threads`` intra-op threads, or (0) use the cores other jobs leave free."""
    import torch

    if threads:
        _warn_if_busy(threads)
        torch.set_num_threads(threads)
    else:
        _use_free_cpus()


def _warn_if_busy(threads: int, processes: int = 1) -> None:
    """Say so when pinned multi-thread teams outnumber the free cores: each OpenMP team then stalls on its
    descheduled members (measured 5-12x slower on 2 cores; c2c.utils.threads). One-thread processes do not stall."""
    from c2c.utils.threads import busy_cpus

    cpus = os.cpu_count() or 1
    free = max(0, cpus - busy_cpus())
    if threads > 1 and threads * processes > free:
        print(f"[threads] pinned to {threads} per process x {processes}, but only {free} of {cpus} CPUs are free "
              "now: expect this stage to run several times slower (--threads auto adapts to the free cores, at the "
              "cost of bit-for-bit repeatable weights)")


def _use_free_cpus() -> None:
    """Train on the cores other jobs leave free (see c2c.utils.threads: a stalled OpenMP team is 5-12x slower)."""
    import torch

    from c2c.utils.threads import free_cpus

    threads = free_cpus()
    if threads != torch.get_num_threads():
        print(f"[threads] {threads} (of {os.cpu_count()} CPUs; the others are busy)")
    torch.set_num_threads(threads)


def finished_stage(stage_dir: Path, settings: dict[str, Any]) -> dict[str, Any] | None:
    """The record of a finished stage with these settings, or None."""
    marker = stage_dir / STAGE_FILE
    if not marker.is_file():
        return None
    record = json.loads(marker.read_text())
    if not same_settings(record.get("settings"), settings):
        return None
    print(f"[{stage_dir.parent.name} {stage_dir.name}] done already ({record['seconds']:.0f} s when it ran); reusing "
          f"{stage_dir}")
    return {**record, "skipped": True}


def _clear(stage_dir: Path) -> None:
    if stage_dir.exists():
        shutil.rmtree(stage_dir)
    stage_dir.mkdir(parents=True)


PROGRESS = re.compile(r"(\d+)/(\d+) \[")


def train_in_parallel(configs: dict[str, Any], poll_seconds: float = 2.0, threads: int = 0,
                      on_finish: Callable[[str, int], None] | None = None) -> dict[str, dict[str, Any]]:
    """Train several policies at once, one process each (``python -m c2c.policy.train``); one progress bar over
    all of them; each process's output goes to ``<out>/train.log``.

    ``threads`` 0: each starts with one thread, and the cores of a finished training (or freed by other jobs) go
    to those still running. N: each runs ``max(1, N // len(configs))`` threads throughout (a rerun repeats the
    weights bit for bit), and ``on_finish(variant, its threads)`` is called when one finishes while others still
    run: its cores are free for other work that does not touch the trainings."""
    from tqdm.auto import tqdm

    from c2c.errors import C2CError

    from c2c.policy.train import THREADS_FILE_ENV
    from c2c.utils.threads import busy_cpus

    running = {}
    start = max(1, threads // len(configs)) if threads else 1
    if threads:
        _warn_if_busy(start, len(configs))
    for variant, config in configs.items():
        out = Path(config.out)
        launch = out / "launch_config.json"
        atomic_write_json(launch, {"config": asdict(config), "resume": False})
        atomic_write_text(out / "threads", str(start))
        env = {**os.environ, "OMP_NUM_THREADS": str(start), "MKL_NUM_THREADS": str(start),
               THREADS_FILE_ENV: str(out / "threads")}
        log = open(out / "train.log", "a")  # noqa: SIM115 (closed below); a resumed training appends
        process = subprocess.Popen([sys.executable, "-m", "c2c.policy.train", str(launch)], stdout=log,
                                   stderr=subprocess.STDOUT, env=env)
        running[variant] = (process, log)
    cpus, assigned, reported = os.cpu_count() or 1, {variant: start for variant in configs}, set()
    total = sum(config.steps for config in configs.values())
    bar = tqdm(total=total, desc=f"policies ({', '.join(configs)}, side by side)", dynamic_ncols=True)
    try:
        while True:
            done = {variant: _logged_step(Path(configs[variant].out) / "train.log") for variant in configs}
            bar.n = sum(done.values())
            bar.set_postfix_str(" ".join(f"{v}={n}" for v, n in done.items()), refresh=True)
            alive = [variant for variant, (process, _) in running.items() if process.poll() is None]
            if not alive:
                break
            if threads:  # pinned: the thread counts never change
                for variant, (process, _) in running.items():
                    if variant not in reported and process.returncode == 0:
                        reported.add(variant)
                        if on_finish is not None:
                            on_finish(variant, start)
                time.sleep(poll_seconds)
                continue
            # Cores not taken by other jobs are shared among the trainings still running (each runs its assigned
            # threads while it trains, so those are not "other" work).
            others = max(0, busy_cpus(samples=3, interval=0.05) - sum(assigned[v] for v in alive))
            share = max(1, (cpus - others) // len(alive))
            for variant in alive:  # the cores of finished trainings go to those still running
                if assigned.get(variant) != share:
                    atomic_write_text(Path(configs[variant].out) / "threads", str(share))
                    assigned[variant] = share
            time.sleep(poll_seconds)
    except BaseException:
        for process, _ in running.values():
            process.terminate()
        raise
    finally:
        bar.close()
        for _, log in running.values():
            log.close()
    failed = {variant: process.returncode for variant, (process, _) in running.items() if process.returncode}
    if failed:
        variant = next(iter(failed))
        tail = (Path(configs[variant].out) / "train.log").read_text(errors="replace").replace("\r", "\n")
        tail = "\n".join(tail.strip().splitlines()[-5:])
        raise C2CError(f"policy training failed for {', '.join(failed)} (see {configs[variant].out}/train.log):\n{tail}")
    return {variant: json.loads((Path(config.out) / "metrics.json").read_text()) for variant, config in configs.items()}


def _logged_step(log: Path) -> int:
    """The last step a training progress bar printed into ``log`` (0 before the first)."""
    try:
        with log.open("rb") as handle:
            handle.seek(max(0, log.stat().st_size - 4096))
            tail = handle.read().decode(errors="replace")
    except FileNotFoundError:
        return 0
    matches = PROGRESS.findall(tail)
    return int(matches[-1][0]) if matches else 0


def stage_evaluations(preset: PipelinePreset, out: Path, force: bool, workers: int | None = None,
                      variants: list[str] | None = None, done: dict[str, dict] | None = None,
                      show_progress: bool = True, root: str = "policy") -> dict[str, dict]:
    """Closed-loop evaluation of every trained variant (or of ``variants``) on the same unseen placements.
    ``done``: records of evaluations this run already made (kept as they are, even with ``force``). ``root``: the
    policies are ``out/root/<variant>`` (``policy-takeover`` after a takeover round)."""
    if preset.simulator == "libero":
        return stage_libero_evaluations(preset, out, force, workers)
    from c2c.envs.metaworld_tasks import resolve_tasks
    from c2c.eval.metaworld_eval import evaluate_metaworld

    tasks = resolve_tasks(list(preset.tasks))
    records = {}
    for variant in variants or preset.variants:
        if done and variant in done:
            records[variant] = done[variant]
            continue
        policy_dir, eval_dir = out / root / variant, out / "eval" / variant
        settings = {"policy": variant, "policy_stage": _stage_stamp(policy_dir), "tasks": tasks,
                    "episodes": preset.eval_episodes, "seed": preset.eval_seed, "max_steps": preset.eval_max_steps,
                    "replan_every": preset.replan_every, "videos": preset.videos}
        if root != "policy":  # only then, so that the evaluations of runs made before the option stay valid
            settings["policy_root"] = root

        def work(policy_dir: Path = policy_dir, eval_dir: Path = eval_dir) -> dict[str, Any]:
            results = evaluate_metaworld(policy_dir=policy_dir, tasks=tasks, episodes=preset.eval_episodes,
                                         seed=preset.eval_seed, replan_every=preset.replan_every,
                                         max_steps=preset.eval_max_steps, videos=preset.videos, workers=workers,
                                         out=eval_dir, show_progress=show_progress)
            return _json_safe(results)

        records[variant] = run_stage(eval_dir, settings, force, work, f"eval {variant}")
    return records


class EarlyEvaluations:
    """Meta-World evaluations of policies that finished training while others still train with pinned threads,
    one at a time in a background thread, on the cores the finished training freed (they would idle otherwise).

    Nothing the trainings compute depends on it (their thread counts are pinned), and an evaluation's result does
    not depend on when it runs or on its worker count (one torch thread per episode runner either way).
    """

    def __init__(self, preset: PipelinePreset, out: Path, force: bool, root: str = "policy") -> None:
        import queue
        import threading

        self.preset, self.out, self.force, self.root = preset, out, force, root
        self.records: dict[str, dict] = {}
        self.error: BaseException | None = None
        self._queue: Any = queue.Queue()
        self._thread = threading.Thread(target=self._work, name="early-evaluations", daemon=True)
        self._thread.start()

    def start(self, variant: str, freed_threads: int) -> None:
        """Queue ``variant``'s evaluation with ``freed_threads`` workers (called as its training finishes)."""
        from tqdm.auto import tqdm

        tqdm.write(f"[eval {variant}] starts on the {freed_threads} core(s) its training freed; the others still train")
        self._queue.put((variant, freed_threads))

    def _work(self) -> None:
        while (job := self._queue.get()) is not None:
            variant, workers = job
            if self.error is not None:
                continue
            try:
                records = stage_evaluations(self.preset, self.out, self.force, workers=workers, variants=[variant],
                                            show_progress=False, root=self.root)
                self.records.update({name: {**record, "while_training": not record["skipped"]}
                                     for name, record in records.items()})
            except BaseException as error:  # noqa: BLE001 - raised again by join() in the main thread
                self.error = error

    def join(self) -> dict[str, dict]:
        """Wait for the queued evaluations; their records, or the first one's error raised again."""
        self._queue.put(None)
        self._thread.join()
        if self.error is not None:
            raise self.error
        return self.records


def stage_libero_evaluations(preset: PipelinePreset, out: Path, force: bool,
                             workers: int | None = None) -> dict[str, dict]:
    """Every variant on LIBERO's official protocol: init states 0..N-1 of each task, the suite's step limit."""
    from c2c.eval.libero_eval import evaluate_libero

    tasks = None if tuple(preset.tasks) == ("all",) else ",".join(preset.tasks)
    records = {}
    for variant in preset.variants:
        policy_dir, eval_dir = out / "policy" / variant, out / "eval" / variant
        settings = {"policy": variant, "policy_stage": _stage_stamp(policy_dir), "suite": preset.suite,
                    "tasks": list(preset.tasks), "trials": preset.eval_episodes, "seed": preset.eval_seed,
                    "max_steps": preset.eval_max_steps, "replan_every": preset.replan_every, "videos": preset.videos}

        def work(policy_dir: Path = policy_dir, eval_dir: Path = eval_dir) -> dict[str, Any]:
            _use_threads(preset.threads)
            results = evaluate_libero(policy_dir, preset.suite, tasks=tasks, trials=preset.eval_episodes,
                                      seed=preset.eval_seed, replan_every=preset.replan_every, videos=preset.videos,
                                      out=eval_dir, max_steps=preset.eval_max_steps, workers=workers)
            return _json_safe(results)

        records[variant] = run_stage(eval_dir, settings, force, work, f"eval {variant}")
    return records


def _stage_stamp(stage_dir: Path) -> float | None:
    """When the stage in ``stage_dir`` finished (a later stage that depends on it is redone when it changes)."""
    marker = stage_dir / STAGE_FILE
    return marker.stat().st_mtime_ns if marker.is_file() else None


def _json_safe(value: Any) -> Any:
    return json.loads(json.dumps(value, default=lambda v: v.tolist() if hasattr(v, "tolist") else str(v)))


# ---------------------------------------------------------------------------------------------------------------
# The report.


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.0f}%"


# LIBERO success (%) published in the paper's Table 1 (Spatial, Object, Goal, Long = libero_10).
PUBLISHED_LIBERO: dict[str, dict[str, float]] = {
    "Coarse-to-Control (paper, Table 1)": {"libero_spatial": 98.8, "libero_object": 100.0, "libero_goal": 97.8,
                                           "libero_10": 95.0},
    "pi0-FAST (paper, Table 1)": {"libero_spatial": 96.4, "libero_object": 96.8, "libero_goal": 88.6,
                                  "libero_10": 60.2},
}


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


def _libero_success_section(preset: PipelinePreset, evaluations: dict[str, dict]) -> list[str]:
    results = {variant: record["result"] for variant, record in evaluations.items()}
    variants = list(results)
    first = results[variants[0]]
    lines = [
        "## Closed-loop success (LIBERO protocol)",
        "",
        f"{preset.suite}: {preset.eval_episodes} trials per task on the official init states 0..{preset.eval_episodes - 1}"
        f" (the protocol uses 50), 10 wait steps, at most {first['settings']['max_steps']} steps, a new 20-step chunk "
        f"every {preset.replan_every} actions, greedy decoding. Trained on our scripted demonstrations only.",
        "",
        "| task | " + " | ".join(variants) + " |",
        "| --- | " + " | ".join("---:" for _ in variants) + " |",
    ]
    for index, task in enumerate(first["tasks"]):
        cells = [f"{_pct(results[v]['tasks'][index]['success_rate'])} ({results[v]['tasks'][index]['successes']}/"
                 f"{results[v]['tasks'][index]['trials']})" for v in variants]
        lines.append(f"| {task['task_id']}: {task['instruction']} | " + " | ".join(cells) + " |")
    lines.append("| **suite** | " + " | ".join(f"**{_pct(results[v]['suite_success_rate'])}**" for v in variants)
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
    variants = list(evaluations)
    results = {variant: record["result"] for variant, record in evaluations.items()}
    first = results[variants[0]]
    lines = [
        "## Closed-loop success",
        "",
        f"{preset.eval_episodes} episodes per task on object placements never used for training (seed "
        f"{preset.eval_seed}; overlap with the demonstrations' seeds is checked and refused), at most "
        f"{preset.eval_max_steps} steps, a new 20-step chunk every {preset.replan_every} actions, greedy decoding.",
        "",
        "| task | group | " + " | ".join(variants) + " |",
        "| --- | --- | " + " | ".join("---:" for _ in variants) + " |",
    ]
    for task, stats in first["tasks"].items():
        cells = [f"{_pct(results[v]['tasks'][task]['success_rate'])} ({results[v]['tasks'][task]['successes']}/"
                 f"{results[v]['tasks'][task]['episodes']})" for v in variants]
        lines.append(f"| {task} | {stats['group']} | " + " | ".join(cells) + " |")
    lines.append("| **mean over tasks** | | " + " | ".join(f"**{_pct(results[v]['overall']['success_rate'])}**"
                                                       for v in variants) + " |")
    for group in first.get("groups", {}):
        lines.append(f"| group {group} | | " + " | ".join(_pct(results[v]["groups"][group]["success_rate"])
                                                         for v in variants) + " |")
    if "group_average" in first:
        lines.append("| group average | | " + " | ".join(_pct(results[v].get("group_average")) for v in variants)
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
             "| task | " + " | ".join(variants) + " |", "| --- | " + " | ".join("---" for _ in variants) + " |"]
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
                     f"{m['effective_batch_size']} | {_pct(accuracy) if accuracy is not None else '-'} | "
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


def thread_schedule(schedule: list[dict[str, int]] | None) -> str:
    """``[{"step": 0, "threads": 1}, {"step": 741, "threads": 2}]`` -> "1, 2 from step 741" ("-": not recorded)."""
    if not schedule:
        return "-"
    words = [str(schedule[0]["threads"])]
    words += [f"{entry['threads']} from step {entry['step']}" for entry in schedule[1:]]
    return ", ".join(words)


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


# `c2c run` options that override a preset's field (PipelinePreset.replace).
OVERRIDE_OPTIONS = {"backbone": "--backbone", "tokenizer_steps": "--tokenizer-steps", "policy_steps": "--policy-steps",
                    "eval_episodes": "--eval-episodes", "episodes_per_task": "--episodes-per-task",
                    "action_noise": "--action-noise", "takeover_episodes": "--takeover-episodes",
                    "takeover_finetune_steps": "--takeover-finetune",
                    "variants": "--variants", "cameras": "--cameras", "threads": "--threads"}


def preset_overrides(preset: PipelinePreset) -> list[str]:
    """The `c2c run` options by which ``preset`` differs from the named preset it was made from (``[]``: none, or a
    preset made in code, which no command line gives)."""
    try:
        named = get_preset(preset.name)
    except ConfigError:
        return []
    words = []
    for field_name, option in OVERRIDE_OPTIONS.items():
        value = getattr(preset, field_name)
        if value != getattr(named, field_name):
            if field_name == "threads":
                words += [option, str(value) if value else "auto"]
            else:
                words += [option, ",".join(value) if isinstance(value, tuple) else str(value)]
    return words


def run_command(preset: PipelinePreset, out: Path) -> str:
    """The `c2c run` command that reproduces ``preset``: its name plus an option for every overridden field."""
    return " ".join(["c2c", "run", "--preset", preset.name, "--out", str(out), *preset_overrides(preset)])


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
                  "it (README, 'Fine-tuning instead of retraining'); add --cameras corner2,gripperPOV for it")
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
        print(f"{variant:<12} {_pct(overall_success(record['result']))}")
    print(f"report: {report} ({seconds:.0f} s)")
    sys.stdout.flush()
    return 0


def overall_success(result: dict[str, Any]) -> float | None:
    """Mean success over tasks of a Meta-World or a LIBERO evaluation's results."""
    if "suite_success_rate" in result:
        return result["suite_success_rate"]
    return result["overall"]["success_rate"]


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
