"""`c2c analyze plan`: decoded coarse plans against the true future (paper Fig. 5b).

For a frame t, the policy's plan (K, A) is decoded from its plan tokens; each coarse step's motion dims are the SUM
of c = Hp / K fine actions (Eq. 3), so the running sum of the plan's xyz columns is the displacement the plan
commands after c, 2c, ..., Hp steps. The true path is the running sum of the next Hp actions' xyz, hold-padded past
the episode end as the training windows are (zero motion: ``c2c.data.windows.hold_pad``); the true coarse plan is
the dataset window of Eq. 3-4 at t. Plan L1 compares the decoded plan with that window, per element, normalized
with the tokenizer's plan statistics (q01/q99 -> [-1, 1]) and in dataset units.

Meta-World: actions move the hand by 1/100 m per unit, so paths in metres are the running sums times 0.01; the plan
is also drawn into the primary camera image, starting at the hand position of frame t (replayed in the simulator
at the episode's seed, see ``c2c.analysis.camera``).

Outputs: ``plan.json`` (per frame and overall metrics), ``plan_ep<k>.png`` per episode.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from c2c.analysis.common import (
    check_policy_dataset, frame_batch, heldout_episodes, open_dataset, parse_episodes, pyplot, save_figure,
    spread_frames,
)
from c2c.data.windows import WindowSpec, episode_windows, hold_pad
from c2c.errors import ConfigError
from c2c.policy import load_policy
from c2c.utils.io import atomic_write_json

XYZ = slice(0, 3)  # motion dims of Meta-World and LIBERO actions: position deltas first
XYZ_COLOURS = ("tab:red", "tab:green", "tab:blue")


@dataclass
class PlanPaths:
    """Cumulative displacement paths of one frame over the plan window (action units)."""

    fine_steps: np.ndarray  # (Hp,) 1..Hp
    true_fine: np.ndarray  # (Hp, 3) running sum of the next Hp actions' xyz (hold-padded)
    coarse_steps: np.ndarray  # (K,) c, 2c, ..., Hp
    true_coarse: np.ndarray  # (K, 3) running sum of the true coarse plan (equals true_fine at the coarse steps)
    plan: np.ndarray | None  # (K, 3) running sum of the decoded plan's xyz (Eq. 3)
    padded_from: int  # first step (1-based) past the episode end; Hp + 1 when none is


def plan_paths(actions: np.ndarray, frame: int, plan: np.ndarray | None, spec: WindowSpec) -> PlanPaths:
    """Integrate the true future and a decoded plan (K, A) of frame ``frame`` of an episode's actions (T, A)."""
    if not spec.has_plan:
        raise ConfigError("plan paths need a plan horizon Hp > 0")
    length, dim = actions.shape
    padded = hold_pad(actions, spec.plan_horizon, spec.gripper_mask(dim))  # (T + Hp, A)
    true_fine = np.cumsum(padded[frame:frame + spec.plan_horizon, XYZ], axis=0)  # (Hp, 3)
    window = episode_windows(actions, spec, frames=np.array([frame]))
    true_coarse = np.cumsum(window.plans[0][:, XYZ], axis=0)  # (K, 3)
    decoded = None if plan is None else np.cumsum(np.asarray(plan)[:, XYZ], axis=0)  # (K, 3)
    return PlanPaths(fine_steps=np.arange(1, spec.plan_horizon + 1), true_fine=true_fine,
                     coarse_steps=(np.arange(spec.plan_steps) + 1) * spec.chunk_size, true_coarse=true_coarse,
                     plan=decoded, padded_from=length - frame + 1)


def policy_spec(policy: Any, policy_dir: Path, dataset: Any) -> WindowSpec:
    """The plan window of the policy's variant, gripper dims as its tokenizer was trained with."""
    from c2c.policy.training.data import policy_window_spec, read_tokenizer_record

    config = policy.config
    if not config.has_plan:
        raise ConfigError(f"{policy_dir}: variant {config.variant!r} has no plan branch; analyze a plan policy")
    record = read_tokenizer_record(Path(policy_dir) / "action_tokenizer")
    if record.spec is None:
        from c2c.data.windows import GRIPPER_DIMS_PRESETS

        layout = dataset.extra_info.get("action_layout") or dataset.extra_info.get("generator")
        gripper = GRIPPER_DIMS_PRESETS.get(str(layout))
        if gripper is None:
            from c2c.tokenizer.data import default_spec

            gripper = default_spec(Path(dataset.root), config.exec_horizon, 0, config.plan_steps).gripper_dims
        return WindowSpec(config.exec_horizon, config.plan_horizon, config.plan_steps, gripper)
    return policy_window_spec(config, record, Path(dataset.root))


def analyze_plans(policy_dir: Path, dataset_dir: Path, out: Path, episodes: str | None = None, frames: int = 4,
                  show_progress: bool = True) -> dict[str, Any]:
    """Decode plans at ``frames`` frames of each chosen episode (default: the first two held-out ones), compare
    them with the true future and draw one figure per episode."""
    policy_dir, dataset_dir, out = Path(policy_dir), Path(dataset_dir), Path(out)
    dataset = open_dataset(dataset_dir)
    policy = load_policy(policy_dir)
    check_policy_dataset(policy, dataset, policy_dir)
    spec = policy_spec(policy, policy_dir, dataset)
    held = heldout_episodes(policy_dir, dataset)
    chosen = parse_episodes(episodes, dataset, held)
    normalizer = policy.action_tokenizer.normalizer("plan")
    metaworld = dataset.extra_info.get("generator") == "metaworld"
    scale = 0.01 if metaworld else None
    out.mkdir(parents=True, exist_ok=True)
    records, figures = [], []
    for index in tqdm(chosen, desc="plans (episodes)", disable=not show_progress, dynamic_ncols=True):
        episode = dataset.episode(index, load_images=True)
        picked = spread_frames(episode.length, frames)
        with _torch_no_grad():
            _, plans = policy.predict_action_chunk(frame_batch(episode, picked, policy.config.cameras),
                                                   return_plan=True)  # (F, K, A)
        truth = episode_windows(episode.actions, spec, frames=picked)
        overlay = _camera_overlay(dataset, episode, policy.config.cameras, picked, spec)
        rows = []
        for row, frame in enumerate(picked):
            paths = plan_paths(episode.actions, int(frame), plans[row], spec)
            rows.append((int(frame), paths))
            records.append(_frame_record(index, episode, int(frame), plans[row], truth.plans[row], truth.plan_pad[row],
                                         paths, normalizer, scale, overlay.get(int(frame))))
        figures.append(str(_plot_episode(out / f"plan_ep{index}.png", index, episode, rows, overlay, spec, scale)))
    summary = _summarise(records)
    result = {"policy": str(policy_dir), "variant": policy.config.variant, "dataset": str(dataset_dir),
              "episodes": chosen, "heldout_episodes": held, "window": {"plan_horizon": spec.plan_horizon,
                                                                        "plan_steps": spec.plan_steps,
                                                                        "chunk_size": spec.chunk_size},
              "metres_per_action_unit": scale, "summary": summary, "frames": records, "figures": figures}
    atomic_write_json(out / "plan.json", result)
    return result


def _torch_no_grad():
    import torch

    return torch.no_grad()


def _frame_record(episode_index: int, episode: Any, frame: int, plan: np.ndarray, true_plan: np.ndarray,
                  plan_pad: np.ndarray, paths: PlanPaths, normalizer: Any, scale: float | None,
                  overlay: dict[str, Any] | None) -> dict[str, Any]:
    l1 = float(np.abs(normalizer.normalize(plan[None]) - normalizer.normalize(true_plan[None])).mean())
    l1_raw = float(np.abs(plan - true_plan).mean())
    net_true, net_plan = paths.true_coarse[-1], paths.plan[-1]
    norms = np.linalg.norm(net_true) * np.linalg.norm(net_plan)
    cosine = float(net_true @ net_plan / norms) if norms > 1e-9 else None
    endpoint = float(np.linalg.norm(net_plan - net_true))
    record: dict[str, Any] = {
        "episode": episode_index, "task": episode.task, "frame": frame, "length": episode.length,
        "plan_l1": l1, "plan_l1_raw": l1_raw, "padded_coarse_steps": int(plan_pad.sum()),
        "net_displacement_true": net_true.round(4).tolist(), "net_displacement_plan": net_plan.round(4).tolist(),
        "endpoint_error": endpoint, "direction_cosine": cosine,
    }
    if scale is not None:
        record["endpoint_error_m"] = endpoint * scale
    if overlay is not None:
        record["camera"] = {key: overlay[key] for key in ("replay_error_m", "hand_px", "target_px", "target")}
    return record


def _summarise(records: list[dict[str, Any]]) -> dict[str, Any]:
    def mean(key: str) -> float | None:
        values = [r[key] for r in records if r.get(key) is not None]
        return float(np.mean(values)) if values else None

    return {"frames": len(records), "plan_l1": mean("plan_l1"), "plan_l1_raw": mean("plan_l1_raw"),
            "endpoint_error": mean("endpoint_error"), "endpoint_error_m": mean("endpoint_error_m"),
            "direction_cosine": mean("direction_cosine")}


# --- the camera view (Meta-World) -----------------------------------------------------------------------------------
def _camera_overlay(dataset: Any, episode: Any, cameras: tuple[str, ...], frames: np.ndarray,
                    spec: WindowSpec) -> dict[Any, Any]:
    """{frame: projected paths} in the primary camera, or {"note": why not} when it cannot be drawn reliably."""
    from c2c.analysis.camera import episode_scene, metaworld_available, target_key

    if dataset.extra_info.get("generator") != "metaworld":
        return {"note": "not a Meta-World dataset: no camera projection"}
    if not metaworld_available():
        return {"note": "metaworld is not installed: no camera projection"}
    camera = cameras[0]
    scene = episode_scene(dataset, episode, camera)
    if scene is None:
        return {"note": "the dataset does not record this episode's seed: no camera projection"}
    try:
        if not scene.static:
            return {"note": f"camera {camera!r} moves with the robot: no projection"}
        overlay: dict[Any, Any] = {"camera": camera}
        key = target_key(str(episode.metadata["env"]))
        for frame in frames:
            frame = int(frame)
            scene.replay(episode.actions[:frame])
            hand = scene.hand
            error = float(np.abs(hand - episode.states[frame, :3]).max())
            if error > 1e-3:  # the scene is not the recorded one: drawing it would mislead
                return {"note": f"replaying episode at seed {scene.seed} does not reproduce the recorded hand "
                                f"positions (frame {frame}: {error:.4f} m off): no camera projection"}
            end = min(frame + spec.plan_horizon, episode.length)
            recorded = episode.states[frame:end, :3]  # (n, 3) where the hand went
            target = scene.point(key)
            overlay[frame] = {"replay_error_m": error, "hand": hand, "recorded": recorded, "target": key,
                              "target_world": target, "hand_px": scene.project(hand)[0][0].round(2).tolist(),
                              "target_px": scene.project(target)[0][0].round(2).tolist(), "camera": camera,
                              "project": _projector(scene)}
        return overlay
    finally:
        scene.close()


def _projector(scene: Any):
    position, rotation, fovy, size, turned = (scene.position.copy(), scene.rotation.copy(), scene.fovy,
                                              scene.image_size, scene.rotated_180)

    def project(points: np.ndarray) -> np.ndarray:
        local = (np.atleast_2d(points) - position) @ rotation
        focal = (size / 2) / np.tan(np.radians(fovy) / 2)
        u = size / 2 + focal * local[:, 0] / -local[:, 2]
        v = size / 2 - focal * local[:, 1] / -local[:, 2]
        return np.stack([size - u, size - v] if turned else [u, v], axis=1)

    return project


def _zoom(points: np.ndarray, size: int, margin: float = 8.0, smallest: float = 36.0) -> tuple[tuple[float, float],
                                                                                          tuple[float, float]]:
    """A square window (pixels) around the drawn points, at least ``smallest`` wide, inside the image."""
    points = points[np.isfinite(points).all(axis=1)]
    low, high = points.min(axis=0) - margin, points.max(axis=0) + margin
    side = float(np.clip((high - low).max(), smallest, size))
    centre = np.clip((low + high) / 2, side / 2, size - side / 2)
    return (centre[0] - side / 2, centre[0] + side / 2), (centre[1] - side / 2, centre[1] + side / 2)


# --- figures ---------------------------------------------------------------------------------------------------------
def _plot_episode(path: Path, index: int, episode: Any, rows: list[tuple[int, PlanPaths]], overlay: dict[Any, Any],
                  spec: WindowSpec, scale: float | None) -> Path:
    plt = pyplot()
    camera = "note" not in overlay and bool(overlay)
    columns = 3 if camera else 2
    fig, axes = plt.subplots(len(rows), columns, figsize=(4.6 * columns, 3.4 * len(rows)), squeeze=False)
    unit = "m" if scale else "action units"
    factor = scale or 1.0
    for (frame, paths), ax_row in zip(rows, axes):
        ax = ax_row[0]
        for dim, colour in enumerate(XYZ_COLOURS):
            ax.plot(paths.fine_steps, paths.true_fine[:, dim] * factor, color=colour, lw=1.2,
                    label=f"{'xyz'[dim]} true")
            ax.plot(paths.coarse_steps, paths.plan[:, dim] * factor, "x--", color=colour, ms=4, lw=0.8,
                    label=f"{'xyz'[dim]} plan")
        if paths.padded_from <= spec.plan_horizon:
            ax.axvspan(paths.padded_from - 0.5, spec.plan_horizon + 0.5, color="grey", alpha=0.15, lw=0)
        ax.set_title(f"frame {frame}: displacement over the next {spec.plan_horizon} steps", fontsize=9)
        ax.set_xlabel("step")
        ax.set_ylabel(f"cumulative xyz ({unit})")
        ax = ax_row[1]
        ax.plot(paths.true_fine[:, 0] * factor, paths.true_fine[:, 1] * factor, color="black", lw=1.2, label="true")
        ax.plot(paths.true_coarse[:, 0] * factor, paths.true_coarse[:, 1] * factor, "o", color="black", ms=2.5)
        ax.plot(np.r_[0, paths.plan[:, 0]] * factor, np.r_[0, paths.plan[:, 1]] * factor, "x--", color="tab:red",
                ms=4, lw=1, label="plan")
        ax.plot(0, 0, "s", color="tab:blue", ms=5, label="now")
        ax.set_aspect("equal", adjustable="datalim")
        ax.set_title("top-down path (x right, y forward)", fontsize=9)
        ax.set_xlabel(f"x ({unit})")
        ax.set_ylabel(f"y ({unit})")
        if camera:
            _draw_camera(ax_row[2], episode, frame, paths, overlay[frame], scale, spec)
    axes[0, 0].legend(fontsize=6, ncol=3, loc="best")
    axes[0, 1].legend(fontsize=7, loc="best")
    note = overlay.get("note")
    fig.suptitle(f"episode {index}: {episode.task} ({episode.length} steps)" + (f"\n{note}" if note else ""),
                 fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


def _draw_camera(ax: Any, episode: Any, frame: int, paths: PlanPaths, view: dict[str, Any], scale: float | None,
                 spec: WindowSpec) -> None:
    camera = view["camera"]
    image = episode.images[camera][frame]
    size = image.shape[0]
    project = view["project"]
    hand = view["hand"]
    ax.imshow(image, extent=(0, size, size, 0))
    recorded = project(view["recorded"])
    commanded = project(hand + np.r_[[np.zeros(3)], paths.true_coarse] * scale)
    planned = project(hand + np.r_[[np.zeros(3)], paths.plan] * scale)
    target = project(view["target_world"])[0]
    ax.plot(recorded[:, 0], recorded[:, 1], color="white", lw=1.2, label="hand (recorded)")
    ax.plot(commanded[:, 0], commanded[:, 1], "o-", color="lime", ms=2, lw=0.8, label="true coarse plan")
    ax.plot(planned[:, 0], planned[:, 1], "x-", color="red", ms=3, lw=1.0, label="decoded plan")
    ax.plot(*target, "o", mfc="none", mec="yellow", ms=10, label=view["target"])
    (left, right), (top, bottom) = _zoom(np.concatenate([recorded, commanded, planned, target[None]]), size)
    ax.set_xlim(left, right)
    ax.set_ylim(bottom, top)
    ax.set_title(f"{camera} view (zoomed), {spec.plan_horizon}-step plan from the hand", fontsize=9)
    ax.legend(fontsize=6, loc="lower left")
    ax.axis("off")
