"""`c2c analyze attention`: where the first exec token looks in the image, with and without a plan (paper Fig. 5a).

For an observation, the policy first decodes its suffix greedily (plan tokens, then exec tokens; exec only for
noplan). The sequence [prefix, plan tokens, first exec token] is then run once more with eager attention and the
attention row of the first exec token (its query over every earlier key, under the same prefix-LM mask as in
training) is read in every layer and head. Its part over the primary camera's image tokens, averaged over heads
(and over layers for the summary map), is laid out on the patch grid: token i covers patch row i // g, column i % g
of the image the policy saw (g = image size / patch size).

The backbone runs with SDPA and a boolean 4-D mask; to read attention weights, this analysis switches it to eager
attention and turns the boolean mask into an additive one (0 where allowed, the dtype's minimum elsewhere) for the
duration of one call (:func:`eager_attention_weights`), capturing each GemmaAttention's weights with forward hooks.

Target mass (Meta-World): the object the task acts on (the goal marker for reach), projected into the camera at the
frame's simulator state (``c2c.analysis.camera``), and a disk of ``radius`` pixels around it; the mass is the share
of the camera's attention that falls inside the disk (each token's weight spread evenly over its patch's pixels);
the disk's area share is what uniform attention would give.

Outputs: ``attention.json``, ``attention_ep<k>.png`` (image, plan map, noplan map, difference per frame) and
``attention_layers.png`` (per-layer maps of the first frame).
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from tqdm.auto import tqdm

from c2c.analysis.common import (
    check_policy_dataset, frame_batch, heldout_episodes, open_dataset, parse_episodes, pyplot, save_figure,
    spread_frames,
)
from c2c.errors import ConfigError
from c2c.policy import load_policy
from c2c.utils.io import atomic_write_json

DEFAULT_RADIUS_FRACTION = 0.08  # disk radius as a fraction of the image side (8 px at 96 px)


@contextmanager
def eager_attention_weights(model: Any) -> Iterator[list[torch.Tensor]]:
    """Within the block, the PlanExecuteVLA's decoder runs eager attention and every layer's (B, H, q, k) attention
    weights are appended to the yielded list, in layer order, for each call."""
    backbone = model.backbone
    language_model = model.language_model
    before = backbone.config._attn_implementation
    captured: list[torch.Tensor] = []

    def additive_mask(_module: Any, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        mask = kwargs.get("attention_mask")
        if mask is not None and mask.dtype == torch.bool:
            dtype = language_model.embed_tokens.weight.dtype
            kwargs["attention_mask"] = torch.zeros(mask.shape, dtype=dtype).masked_fill(~mask, torch.finfo(dtype).min)
        return args, kwargs

    def keep_weights(_module: Any, _args: tuple, output: Any) -> None:
        weights = output[1] if isinstance(output, tuple) and len(output) > 1 else None
        if weights is None:
            raise ConfigError("the attention layers returned no weights (eager attention is not in effect)")
        captured.append(weights.detach())

    hooks = [language_model.register_forward_pre_hook(additive_mask, with_kwargs=True)]
    hooks += [layer.self_attn.register_forward_hook(keep_weights) for layer in language_model.layers]
    backbone.set_attn_implementation("eager")
    try:
        yield captured
    finally:
        for hook in hooks:
            hook.remove()
        backbone.set_attn_implementation(before)


@torch.no_grad()
def first_exec_attention(policy: Any, observation: dict[str, Any]) -> dict[str, np.ndarray]:
    """Attention of the first exec token of a greedy decode: ``camera`` (B, L, g, g) over the primary camera's
    tokens (head mean, each layer's row summing to 1 over all keys), and ``groups`` {group: (B, L)} masses."""
    from c2c.policy.decoding import generate_suffix

    model = policy.model
    inputs, _ = policy.processor.prefix_inputs(observation, policy.device)
    ids = generate_suffix(model, inputs)  # (B, T) greedy
    first_exec = model.suffix.span("exec").start
    with eager_attention_weights(model) as captured:
        model.hidden_states(inputs, ids[:, :first_exec + 1])  # [prefix, plan, exec_0]
    rows = torch.stack([weights[:, :, -1, :] for weights in captured], dim=1).float()  # (B, L, H, k)
    rows = rows.mean(dim=2).cpu().numpy()  # (B, L, k): head mean
    prefix = model.embed_prefix(inputs)
    grid = int(round(model.image_tokens ** 0.5))
    masses, start = {}, 0
    for group in prefix.groups:
        masses[group.name] = rows[:, :, start:start + group.length].sum(axis=-1)  # (B, L)
        start += group.length
    masses["plan"] = rows[:, :, start:start + first_exec].sum(axis=-1)
    masses["exec_0 (self)"] = rows[:, :, -1]
    camera = rows[:, :, :model.image_tokens].reshape(len(rows), rows.shape[1], grid, grid)  # primary camera first
    return {"camera": camera, "groups": masses}


def disk_mass(token_map: np.ndarray, centre: np.ndarray, radius: float, image_size: int) -> tuple[float, float]:
    """(share of a (g, g) token map's mass inside a disk of ``radius`` pixels around ``centre`` (u, v), the disk's
    area share of the image): each token's mass is spread evenly over the pixels of its patch."""
    pixels = _resample(token_map, image_size)  # (S, S): each pixel carries its token's weight
    pixels = pixels / pixels.sum()
    rows, cols = np.mgrid[0:image_size, 0:image_size] + 0.5
    inside = (cols - centre[0]) ** 2 + (rows - centre[1]) ** 2 <= radius ** 2
    return float(pixels[inside].sum()), float(inside.mean())


def _resample(token_map: np.ndarray, size: int) -> np.ndarray:
    """(g, g) -> (size, size), nearest token."""
    grid = token_map.shape[0]
    index = np.minimum((np.arange(size) + 0.5) * grid / size, grid - 1).astype(int)
    return token_map[np.ix_(index, index)]


def analyze_attention(policy_dir: Path, dataset_dir: Path, out: Path, noplan_dir: Path | None = None,
                      episodes: str | None = None, frames: int = 1, radius: float | None = None,
                      show_progress: bool = True) -> dict[str, Any]:
    """Attention maps of the plan policy (and of the noplan policy, if given) on frames of held-out episodes."""
    policy_dir, dataset_dir, out = Path(policy_dir), Path(dataset_dir), Path(out)
    dataset = open_dataset(dataset_dir)
    policies = {"plan": load_policy(policy_dir)}
    if not policies["plan"].config.has_plan:
        raise ConfigError(f"{policy_dir}: variant {policies['plan'].config.variant!r} has no plan; give the plan "
                          "policy as --policy and the noplan one as --noplan-policy")
    check_policy_dataset(policies["plan"], dataset, policy_dir)
    if noplan_dir is not None:
        policies["noplan"] = load_policy(noplan_dir)
        check_policy_dataset(policies["noplan"], dataset, Path(noplan_dir))
        if policies["noplan"].config.cameras[0] != policies["plan"].config.cameras[0]:
            raise ConfigError(f"{noplan_dir}: primary camera {policies['noplan'].config.cameras[0]!r} differs from "
                              f"{policy_dir}'s {policies['plan'].config.cameras[0]!r}")
    camera = policies["plan"].config.cameras[0]
    size = policies["plan"].config.image_size
    radius = DEFAULT_RADIUS_FRACTION * size if radius is None else float(radius)
    held = heldout_episodes(policy_dir, dataset)
    chosen = parse_episodes(episodes, dataset, held, count=len(held) or 2)
    out.mkdir(parents=True, exist_ok=True)
    records, figures, first = [], [], None
    for index in tqdm(chosen, desc="attention (episodes)", disable=not show_progress, dynamic_ncols=True):
        episode = dataset.episode(index, load_images=True)
        picked = spread_frames(episode.length, frames)
        maps = {name: first_exec_attention(policy, frame_batch(episode, picked, policy.config.cameras))
                for name, policy in policies.items()}
        targets = _targets(dataset, episode, camera, picked)
        rows = []
        for row, frame in enumerate(picked):
            record: dict[str, Any] = {"episode": index, "task": episode.task, "frame": int(frame)}
            for name, result in maps.items():
                token_map = result["camera"][row].mean(axis=0)  # (g, g) layer mean
                record[name] = {
                    "camera_share": float(token_map.sum()),
                    "groups": {g: float(v[row].mean()) for g, v in result["groups"].items()},
                    "map": (token_map / token_map.sum()).round(5).tolist(),
                }
                target = targets.get(int(frame))
                if target is not None:
                    for key, centre in target["px"].items():
                        mass, area = disk_mass(token_map, np.asarray(centre), radius, size)
                        record[name].setdefault("disk_mass", {})[key] = mass
                        record[name].setdefault("disk_area_share", {})[key] = area
                    record[name]["target_mass"] = record[name]["disk_mass"][target["target"]]
            if int(frame) in targets:
                record["target"] = targets[int(frame)]["target"]
                record["pixels"] = {k: np.round(v, 2).tolist() for k, v in targets[int(frame)]["px"].items()}
            records.append(record)
            rows.append((int(frame), {name: result["camera"][row] for name, result in maps.items()}))
        figures.append(str(_plot_episode(out / f"attention_ep{index}.png", index, episode, camera, rows, targets,
                                         radius)))
        if first is None:
            first = (index, episode, rows[0])
    if first is not None:
        figures.append(str(_plot_layers(out / "attention_layers.png", camera, *first)))
    summary = _summarise(records, list(policies), radius, targets_found=any("target" in r for r in records))
    if not any("target" in r for r in records):
        summary["target_note"] = ("no target mass: the dataset is not Meta-World, metaworld is not installed, or its "
                                  "episodes do not record their seeds")
    result = {"policy": str(policy_dir), "noplan_policy": None if noplan_dir is None else str(noplan_dir),
              "dataset": str(dataset_dir), "camera": camera, "image_size": size, "radius_px": radius,
              "query": "first exec token (input position after the plan tokens), head mean",
              "episodes": chosen, "summary": summary, "frames": records, "figures": figures}
    atomic_write_json(out / "attention.json", result)
    return result


def _targets(dataset: Any, episode: Any, camera: str, frames: np.ndarray) -> dict[int, dict[str, Any]]:
    """{frame: {"target": key, "px": {object, goal, hand: (u, v)}}} for Meta-World episodes, else {}."""
    from c2c.analysis.camera import episode_scene, metaworld_available, target_key

    if dataset.extra_info.get("generator") != "metaworld" or not metaworld_available():
        return {}
    scene = episode_scene(dataset, episode, camera)
    if scene is None or not scene.static:
        return {}
    found = {}
    try:
        for frame in frames:
            scene.replay(episode.actions[:int(frame)])
            if np.abs(scene.hand - episode.states[int(frame), :3]).max() > 1e-3:
                return {}  # not the recorded scene
            keys = ("object", "goal", "hand")
            uv, _ = scene.project(np.array([scene.point(k) for k in keys]))
            found[int(frame)] = {"target": target_key(str(episode.metadata["env"])), "px": dict(zip(keys, uv))}
    finally:
        scene.close()
    return found


def _summarise(records: list[dict[str, Any]], names: list[str], radius: float, targets_found: bool) -> dict[str, Any]:
    summary: dict[str, Any] = {"frames": len(records)}
    for name in names:
        entry = {"camera_share": float(np.mean([r[name]["camera_share"] for r in records]))}
        groups = records[0][name]["groups"]
        entry["groups"] = {g: float(np.mean([r[name]["groups"][g] for r in records])) for g in groups}
        if targets_found:
            with_target = [r for r in records if "target" in r]
            entry["target_mass"] = float(np.mean([r[name]["target_mass"] for r in with_target]))
            entry["uniform_target_mass"] = float(np.mean([r[name]["disk_area_share"][r["target"]]
                                                          for r in with_target]))
            for key in ("object", "goal", "hand"):
                entry[f"{key}_mass"] = float(np.mean([r[name]["disk_mass"][key] for r in with_target]))
            tasks = sorted({r["task"] for r in with_target})
            entry["target_mass_by_task"] = {t: float(np.mean([r[name]["target_mass"] for r in with_target
                                                              if r["task"] == t])) for t in tasks}
        summary[name] = entry
    summary["radius_px"] = radius
    return summary


def _overlay(ax: Any, image: np.ndarray, token_map: np.ndarray, title: str, cmap: str = "inferno",
             symmetric: bool = False, vmax: float | None = None) -> Any:
    """Draw a token map over the image; maps are normalized to sum 1 (``symmetric``: a signed difference)."""
    size = image.shape[0]
    ax.imshow(image, extent=(0, size, size, 0))
    values = token_map / token_map.sum() if not symmetric else token_map
    limit = np.abs(values).max() if symmetric else vmax
    shown = ax.imshow(values, extent=(0, size, size, 0), cmap=cmap, alpha=0.6, interpolation="nearest",
                      vmin=-limit if symmetric else 0.0, vmax=limit)
    ax.set_title(title, fontsize=8)
    ax.axis("off")
    return shown


def _mark(ax: Any, target: dict[str, Any] | None, radius: float) -> None:
    if target is None:
        return
    from matplotlib.patches import Circle

    u, v = target["px"][target["target"]]
    ax.add_patch(Circle((u, v), radius, fill=False, ec="cyan", lw=1))


def _plot_episode(path: Path, index: int, episode: Any, camera: str, rows: list, targets: dict, radius: float) -> Path:
    plt = pyplot()
    names = list(rows[0][1])
    columns = 1 + len(names) + (len(names) == 2)
    fig, axes = plt.subplots(len(rows), columns, figsize=(2.9 * columns, 2.9 * len(rows)), squeeze=False)
    for (frame, maps), ax_row in zip(rows, axes):
        image = episode.images[camera][frame]
        target = targets.get(frame)
        ax_row[0].imshow(image, extent=(0, image.shape[1], image.shape[0], 0))
        ax_row[0].set_title(f"frame {frame}" + (f" ({target['target']} circled)" if target else ""), fontsize=8)
        ax_row[0].axis("off")
        _mark(ax_row[0], target, radius)
        means = {name: maps[name].mean(axis=0) for name in names}
        shared = max(float((m / m.sum()).max()) for m in means.values())  # one colour scale for the row
        for column, name in enumerate(names, start=1):
            _overlay(ax_row[column], image, means[name], f"{name}: first exec token -> image", vmax=shared)
            _mark(ax_row[column], target, radius)
        if len(names) == 2:
            plan, noplan = (means[n] / means[n].sum() for n in names)
            shown = _overlay(ax_row[3], image, plan - noplan, "plan - noplan", cmap="coolwarm", symmetric=True)
            _mark(ax_row[3], target, radius)
            fig.colorbar(shown, ax=ax_row[3], fraction=0.046, pad=0.02)
    fig.suptitle(f"episode {index}: {episode.task} - attention over {camera} tokens (mean of heads and layers)",
                 fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)


def _plot_layers(path: Path, camera: str, index: int, episode: Any, row: tuple[int, dict[str, np.ndarray]]) -> Path:
    plt = pyplot()
    frame, maps = row
    names = list(maps)
    layers = next(iter(maps.values())).shape[0]
    fig, axes = plt.subplots(len(names), layers, figsize=(2.4 * layers, 2.5 * len(names)), squeeze=False)
    image = episode.images[camera][frame]
    for name, ax_row in zip(names, axes):
        for layer, ax in enumerate(ax_row):
            _overlay(ax, image, maps[name][layer], f"{name}, layer {layer + 1}")
    fig.suptitle(f"episode {index} frame {frame}: per-layer attention of the first exec token", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)
