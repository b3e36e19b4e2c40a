"""How LIBERO evaluation draws the cameras: as the policy's training images were drawn (render size, the chain of
resizes, fast drawing or robosuite's cameras), read from the policy's training record and its dataset, and the env
that applies it (:func:`make_env`). Used by :mod:`c2c.eval.libero_eval`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from c2c.errors import ConfigError


@dataclass(frozen=True)
class RenderPlan:
    """How the cameras are drawn for a policy: at ``render_size`` px, then resized to each of ``resizes`` in turn
    (PIL bilinear, as the training images were; the last is the policy's size), ``source`` saying where it came
    from."""

    render_size: int
    resizes: tuple[int, ...]
    source: str

    @staticmethod
    def chain(render_size: int, *sizes: int | None, source: str) -> "RenderPlan":
        resizes: list[int] = []
        for size in sizes:
            if size is not None and size != (resizes[-1] if resizes else render_size):
                resizes.append(int(size))
        return RenderPlan(int(render_size), tuple(resizes), source)

    def describe(self) -> str:
        return f"rendered at {self.render_size} px" + "".join(f", resized to {size} px" for size in self.resizes)


# Stored camera size of datasets `c2c data convert` knows by its key map preset, for when the source is gone.
CONVERTED_SOURCE_SIZES = {"openpi-libero": 256, "lerobot-libero": 256}


def _json_object(path: Path, required: bool = False) -> dict[str, Any] | None:
    """A JSON object file, None when it is absent (or, unless ``required``, malformed)."""
    if not path.is_file():
        return None
    try:
        value = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        if required:
            raise ConfigError(f"{path}: not a JSON object ({error})") from None
        return None
    if not isinstance(value, dict):
        if required:
            raise ConfigError(f"{path}: not a JSON object (got {type(value).__name__})")
        return None
    return value


def stored_camera_size(info: dict[str, Any] | None, keys: Sequence[str]) -> int | None:
    """The side of the first of ``keys`` that ``info`` (a dataset's meta/info.json) declares as a square camera."""
    features = (info or {}).get("features")
    if not isinstance(features, dict):
        return None
    for key in keys:
        spec = features.get(key)
        if not isinstance(spec, dict) or spec.get("dtype") not in ("image", "video"):
            continue
        try:
            shape = [int(size) for size in spec.get("shape") or []]
        except (TypeError, ValueError):
            continue
        if len(shape) == 3 and shape[2] == 3 and shape[0] == shape[1] > 0:  # (H, W, 3)
            return shape[0]
        if len(shape) == 3 and shape[0] == 3 and shape[1] == shape[2] > 0:  # (3, H, W)
            return shape[1]
    return None


def training_render_plan(policy_dir: str | Path | None, cameras: Sequence[str], image_size: int) -> RenderPlan:
    """The :class:`RenderPlan` of the policy at ``policy_dir`` from its training record (see the module docstring).

    ``training_data.json`` gives the dataset (``train_config.json`` too) and its ``c2c`` record at training time; the
    dataset's ``meta/info.json``, when it is still there, the cameras' stored shape. Without any of that: drawn at the
    policy's ``image_size``.
    """
    from c2c.constants import image_key

    own = RenderPlan(int(image_size), (), f"the policy's image size ({image_size} px): no training record")
    if policy_dir is None:
        return RenderPlan(int(image_size), (), f"the policy's image size ({image_size} px): a policy object")
    from c2c.policy.training.config import TRAINING_DATA_FILE

    directory = Path(policy_dir)
    record = _json_object(directory / TRAINING_DATA_FILE, required=True) or {}
    dataset = record.get("dataset") or (_json_object(directory / "train_config.json") or {}).get("dataset")
    if not dataset:
        return own
    info = _json_object(Path(dataset) / "meta" / "info.json")
    made = record.get("c2c") or (info or {}).get("c2c") or {}
    if not isinstance(made, dict):
        made = {}
    wanted = [image_key(camera) for camera in cameras]
    stored = stored_camera_size(info, wanted)
    if made.get("generator") == "libero" and (made.get("image_size") or stored):
        stored = stored or int(made["image_size"])
        drawn = int(made.get("render_size") or stored)
        return RenderPlan.chain(drawn, stored, image_size,
                                source=f"{dataset}: drawn at {drawn} px, stored at {stored} px (c2c data libero)")
    source = made.get("source")
    if made.get("generator") == "lerobot-convert" and isinstance(source, dict):
        keys = source.get("keys") if isinstance(source.get("keys"), dict) else {}
        source_keys = [key for ours in wanted for key, target in keys.items() if target == ours]
        source_path = source.get("path")
        source_info = _json_object(Path(source_path) / "meta" / "info.json") if source_path else None
        drawn = stored_camera_size(source_info, source_keys)
        where = f"{source_path}/meta/info.json"
        if drawn is None and source.get("key_map") in CONVERTED_SOURCE_SIZES:
            drawn = CONVERTED_SOURCE_SIZES[source["key_map"]]
            where = f"{source['key_map']} datasets (the source {source_path} is not readable)"
        if drawn is not None:
            stored = stored or source.get("resize") or drawn
            return RenderPlan.chain(drawn, stored, image_size,
                                    source=f"{dataset} converted from {drawn} px cameras ({where})")
    if stored is not None:
        return RenderPlan.chain(stored, image_size, source=f"{dataset}/meta/info.json: cameras stored at {stored} px")
    return RenderPlan(int(image_size), (), f"the policy's image size ({image_size} px): {dataset} is not readable")


def training_drawing(policy_dir: str | None) -> bool:
    """Whether the policy's training data was drawn with ``fast_drawing`` (from ``training_data.json``; False when
    the policy is an object, the file is absent or the data came from elsewhere, e.g. LIBERO's own datasets)."""
    if policy_dir is None:
        return False
    from c2c.policy.training.config import TRAINING_DATA_FILE

    path = Path(policy_dir) / TRAINING_DATA_FILE
    if not path.is_file():
        return False
    try:
        record = json.loads(path.read_text()).get("c2c") or {}
    except (json.JSONDecodeError, AttributeError) as error:
        raise ConfigError(f"{path}: not a JSON object ({error})") from None
    return record.get("generator") == "libero" and bool(record.get("fast_drawing", False))


class ResizedEnv:
    """A :class:`LiberoEnv` whose observations' images are resized on to each of ``sizes`` (PIL bilinear, the
    function training resizes dataset frames with); everything else is the env's."""

    def __init__(self, env: Any, sizes: Sequence[int]) -> None:
        self.env, self.sizes = env, tuple(int(size) for size in sizes)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.env, name)

    @property
    def image_size(self) -> int:
        return self.sizes[-1] if self.sizes else self.env.image_size

    def reset(self, init_state_index: int = 0) -> dict[str, Any]:
        return self._resized(self.env.reset(init_state_index))

    def step(self, action: Any, render: bool = True) -> tuple[dict[str, Any], bool, bool]:
        obs, success, done = self.env.step(action, render=render)
        return self._resized(obs), success, done

    def _resized(self, obs: dict[str, Any]) -> dict[str, Any]:
        """``obs`` with each image resized; an observation without images (``step(render=False)``) as it is."""
        from c2c.constants import image_key
        from c2c.data.streaming import resize_frame

        for camera in self.env.cameras:
            if image_key(camera) not in obs:
                continue
            for size in self.sizes:
                obs[image_key(camera)] = resize_frame(obs[image_key(camera)], size)
        return obs


def make_env(suite: str, task_id: int, cameras: Sequence[str], plan: RenderPlan, *, max_steps: int | None, seed: int,
             fast_drawing: bool) -> Any:
    """The task's env drawing ``cameras`` as ``plan`` says: LIBERO renders at ``plan.render_size`` and resizes to
    the first size (:func:`~c2c.envs.libero_env.upright_image`), :class:`ResizedEnv` does the others."""
    from c2c.envs.libero_env import LiberoEnv

    first = plan.resizes[0] if plan.resizes else plan.render_size
    env = LiberoEnv(suite, task_id, image_size=first, render_size=plan.render_size, cameras=cameras,
                    max_steps=max_steps, seed=seed, fast_drawing=fast_drawing)
    return ResizedEnv(env, plan.resizes[1:]) if len(plan.resizes) > 1 else env
