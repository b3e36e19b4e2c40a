"""The training side of `c2c run`, stage by stage: demonstrations, windows, tokenizers, policies and the expert
takeover round; each stage is cached by its settings (:mod:`c2c.eval.pipeline.cache`)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from c2c.constants import ACTION, EPISODE_INDEX, OBS_STATE
from c2c.data.normalize import ActionNormalizers
from c2c.data.windows import WindowSpec, dataset_windows, resolve_gripper_dims
from c2c.eval.pipeline.cache import (
    STAGE_FILE, clear_stage, data_settings, finished_stage, json_safe, run_stage, settings_hash, stage_stamp,
)
from c2c.eval.pipeline.scheduling import train_in_parallel, use_threads
from c2c.eval.presets import PipelinePreset
from c2c.utils.io import atomic_write_json


# The tokenizer each policy variant trains on: (tokenizer variant, plan horizon Hp). None: no tokenizer stage, the
# training fits what the variant needs on the dataset (regress: q01/q99 statistics; binning: a binning tokenizer;
# fast: a FAST tokenizer).
TOKENIZER_FOR_VARIANT = {"plan": ("joint", 160), "noplan": ("joint", 160), "plan-hp40": ("joint", 40),
                         "separate": ("separate", 160), "regress": None, "binning": None, "fast": None}


TAKEOVER_SEED = 100  # placements of the takeover rollouts (c2c data metaworld-takeover's default --seed)


TAKEOVER_ROOT = "policy-takeover"  # where the policies trained on demonstrations plus takeovers go


def tokenizer_name(variant: str, plan_horizon: int) -> str:
    return variant if plan_horizon == 160 else f"{variant}-hp{plan_horizon}"


def takeover_dataset(out: Path, variant: str) -> Path:
    return out / "takeover" / variant / "data"


def stage_demos(preset: PipelinePreset, out: Path, force: bool) -> Path:
    """Generate (or reuse) the demonstration dataset; returns its directory."""
    from c2c.data.lerobot import LeRobotDataset
    from c2c.envs.metaworld_demos import generate_metaworld_demos

    settings = data_settings(preset)
    dataset_dir = out / "data" / f"{preset.simulator}-{settings_hash(settings)}"
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

            use_threads(preset.threads)
            return {**json_safe(train_tokenizer(config)), "threads": torch.get_num_threads()}

        records[name] = run_stage(Path(config.out), settings, force, work, f"tokenizer {name}")
    return records


def stage_takeovers(preset: PipelinePreset, dataset_dir: Path, out: Path, force: bool,
                    workers: int | None = None) -> dict[str, dict]:
    """Expert takeovers from each variant's rollouts (``out/policy/<variant>``) into
    :func:`takeover_dataset`, the demonstrations plus the takeovers; returns ``{variant: stage record}``."""
    from c2c.eval.takeover import collect_takeovers

    records = {}
    for variant in preset.variants:
        policy_dir, stage_dir = out / "policy" / variant, out / "takeover" / variant
        settings = {"policy": variant, "policy_stage": stage_stamp(policy_dir), "dataset": dataset_dir.name,
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
    from c2c.policy.training.loop import train_policy

    configs, records = policy_configs(preset, dataset_dir, out, device, root, datasets), {}
    settings = {variant: {**{k: v for k, v in asdict(config).items() if k != "device"},
                          "dataset": Path(config.dataset).name,
                          "tokenizer": Path(config.tokenizer).name if config.tokenizer else None}
                for variant, config in configs.items()}
    for variant, config in configs.items():  # a fine-tuning starts from a policy of this run: name it, not its path
        if not config.plan_input_noise:
            settings[variant].pop("plan_input_noise", None)  # as before the option existed: stages stay valid
        if config.init_from is None:
            settings[variant].pop("init_from", None)  # as before the option existed: finished stages stay valid
        else:
            settings[variant]["init_from"] = f"policy/{variant}"
            settings[variant]["init_stage"] = stage_stamp(Path(config.init_from))
    for variant in datasets or {}:  # a takeover dataset lives in its stage's directory: redo when that stage reran
        settings[variant]["dataset_stage"] = stage_stamp(Path(configs[variant].dataset).parent)
    todo = []
    for variant, config in configs.items():
        record = None if force else finished_stage(Path(config.out), settings[variant])
        if record is None:
            todo.append(variant)
        else:
            records[variant] = record
    for variant in todo:
        _resume_orclear_stage(configs[variant], force)
    if parallel is None:
        parallel = len(todo) >= 2 and ((os.cpu_count() or 1) >= 2 or device != "cpu")
    if parallel and len(todo) >= 2:
        started = time.perf_counter()

        def record_stage(variant: str, metrics: dict[str, Any]) -> None:
            record = {"settings": settings[variant], "result": json_safe(metrics),
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
                    use_threads(preset.threads)
                return json_safe(train_policy(config))

            records[variant] = run_stage(Path(configs[variant].out), settings[variant], False, work,
                                         f"{root.replace('-', ' ')} {variant}")
    return {variant: records[variant] for variant in preset.variants}


def policy_configs(preset: PipelinePreset, dataset_dir: Path, out: Path, device: str = "cpu", root: str = "policy",
                   datasets: dict[str, Path] | None = None) -> dict[str, Any]:
    """``{variant: PolicyTrainConfig}``: how the pipeline trains each of the preset's variants (into
    ``out/root/<variant>``, on ``datasets[variant]`` when given, else on ``dataset_dir``)."""
    from c2c.policy.config import PRESETS, VARIANTS
    from c2c.policy.training.config import PolicyTrainConfig

    backbone = PRESETS.get(preset.backbone)
    # --image-size: the policies see the demonstrations' images (only a size other than the backbone's is named, so
    # stages trained before the option reached the policies stay valid)
    same = backbone is None or backbone.pretrained or preset.image_size == backbone.image_size
    policy = {} if same else {"image_size": preset.image_size}
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
            init_from=str(out / "policy" / variant) if finetune else None,
            plan_input_noise=preset.plan_input_noise if VARIANTS[variant].plan_horizon else 0.0, policy=dict(policy))
    return configs


def _resume_orclear_stage(config: Any, force: bool) -> None:
    """Before a policy stage runs: an interrupted training of the same settings resumes from its last checkpoint;
    anything else in its directory (a stage finished with other settings, a checkpoint of other settings, or
    everything under ``--force``) is cleared."""
    from c2c.policy.training.loop import resumable_step

    out = Path(config.out)
    step = None if force or (out / STAGE_FILE).is_file() else resumable_step(config)
    if step is None:
        clear_stage(out)
    else:
        print(f"[policy {config.variant}] resuming its interrupted training from step {step} of {config.steps}")
