"""Policy training data: every frame of a dataset (images in memory or streamed), with its frozen tokenizer codes.

What one frame carries (the batch format of ``PlanExecutePolicy.forward``): the camera images (uint8), the raw state,
the instruction, the exec codes of its exec window (A[t : t + He]) and, for plan variants, the plan codes of its
coarse plan (Eq. 3-4 over A[t : t + Hp], Hp from the variant: 160, or 40 for ``plan-hp40``, always K steps).

The codes come from the frozen action tokenizer. Encoding every frame costs seconds to minutes, so they are
computed once and cached in the output directory under a key made of the tokenizer's files, the dataset's actions
and the window spec; a rerun (or a resume) reads the cache.

Images are either decoded once into memory (loader "memory": small datasets; the size is checked against a limit
first) or decoded per batch from the files (loader "stream", :mod:`c2c.data.streaming`: ``images`` then holds lazy
per-camera accessors, and :func:`batch_loader` builds the batches in DataLoader workers). Both give the same pixels.

Held-out episodes follow the tokenizer's rule (``c2c.tokenizer.data.split_episodes`` with the tokenizer's holdout
fraction and seed), so a policy is never evaluated on episodes its tokenizer was fitted on.

Baselines (:func:`training_action_tokenizer`): ``regress`` takes no tokenizer; its statistics
(``regress.ContinuousActions``) are fitted on the dataset's training episodes as tokenizer training fits them, and its
targets are the fixed-point normalised exec chunks. ``binning`` takes a saved binning tokenizer, or fits one the same
way when none is given. ``fast`` takes a saved FAST tokenizer, or fits one (DCT + BPE) on the exec chunks of the
training episodes with statistics fitted the same way; its length cap is then the longest sequence of all the
dataset's exec windows, held-out ones included (only their lengths are read), so every target fits. A saved FAST
tokenizer whose cap some window exceeds is refused (:func:`check_length_cap`): a chunk cut at the cap would not
decode to its own length. Fitted ones have no directory: their codes are computed each run (no cache; for ``fast``
the BPE fit is deterministic, so a resumed run fits the same tokenizer).

Example::

    data = load_policy_data(dataset_dir, tokenizer, tokenizer_dir, policy_config, out_dir, loader="auto")
    batch = data.batch(data.train_frames[:16])       # images, observation.state, task, codes.exec (+ codes.plan)
    for batches in batch_loader(data, lambda step: draw_frames(data.train_frames, 0, step, 16, 2)[:, 0],
                                range(100), workers=2):
        ...                                          # per step: grad_accum batches, images as torch uint8
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from c2c.constants import ACTION, EPISODE_INDEX, OBS_STATE, TASK, TASK_INDEX, camera_name, image_key
from c2c.data.streaming import FrameStore, check_decodable, resize_frame, step_batch_iterator
from c2c.data.windows import WindowSpec, dataset_windows
from c2c.errors import ConfigError, DatasetError
from c2c.policy.config import PolicyConfig
from c2c.policy.processing import CODE_KEYS
from c2c.policy.tokens import as_action_tokenizer
from c2c.tokenizer.base import PAD_CODE
from c2c.tokenizer.data import default_spec, split_episodes
from c2c.utils.io import atomic_write_bytes, atomic_write_json

CODES_DIR = "codes"  # cache directory inside the training output directory
ENCODE_BATCH = 2048  # windows per tokenizer call while computing codes
LOADERS = ("memory", "stream", "auto")  # images decoded once into memory, per batch from the files, or by size


@dataclass(frozen=True)
class TokenizerRecord:
    """What a saved tokenizer directory says about how it was trained (its ``train_config.json``)."""

    spec: WindowSpec | None  # the window spec it was trained with (None: not recorded)
    holdout_fraction: float  # its held-out episode fraction
    seed: int  # its split seed
    dataset: str | None  # the dataset it was trained on


FITTED_RECORD = TokenizerRecord(None, 0.1, 0, None)  # a tokenizer without train_config.json, or fitted here


def read_tokenizer_record(tokenizer_dir: Path | None) -> TokenizerRecord:
    if tokenizer_dir is None:
        return FITTED_RECORD
    path = Path(tokenizer_dir) / "train_config.json"
    if not path.is_file():
        return FITTED_RECORD
    raw = json.loads(path.read_text())
    spec = WindowSpec(**raw["window_spec"]) if "window_spec" in raw else None
    return TokenizerRecord(spec, float(raw.get("holdout_fraction", 0.1)), int(raw.get("seed", 0)), raw.get("dataset"))


def check_tokenizer_for_policy(config: PolicyConfig, tokenizer: Any, record: TokenizerRecord,
                               tokenizer_dir: Path | None) -> None:
    """The variant needs a tokenizer of the right kind, trained on exec windows of the policy's exec horizon."""
    tokenizer = as_action_tokenizer(tokenizer)
    tokenizer_dir = tokenizer_dir if tokenizer_dir is not None else "the tokenizer fitted on the dataset"
    variant = getattr(tokenizer, "variant", None)
    if variant not in config.tokenizer_variants:
        raise ConfigError(f"policy variant {config.variant!r} needs a {' or '.join(config.tokenizer_variants)} "
                          f"tokenizer, but {tokenizer_dir} is a {variant!r} tokenizer")
    spec_horizon = record.spec.exec_horizon if record.spec is not None else tokenizer.config.horizon
    if spec_horizon != config.exec_horizon or tokenizer.config.horizon != config.exec_horizon:
        raise ConfigError(f"policy exec horizon He={config.exec_horizon} does not match the exec horizon "
                          f"He={spec_horizon} that tokenizer {tokenizer_dir} was trained with")
    if config.has_plan and record.spec is not None and record.spec.plan_horizon != config.plan_horizon:
        raise ConfigError(f"policy variant {config.variant!r} plans over Hp={config.plan_horizon} steps but tokenizer "
                          f"{tokenizer_dir} was trained on Hp={record.spec.plan_horizon} plans (its plan statistics "
                          f"would not fit): train a tokenizer with --plan-horizon {config.plan_horizon}")
    if config.has_plan and tokenizer.config.horizon != config.plan_steps:
        raise ConfigError(f"policy plan steps K={config.plan_steps} do not match the {tokenizer.config.horizon}-step "
                          f"chunks of tokenizer {tokenizer_dir}")


def _kind(tokenizer_variants: Sequence[str]) -> str:
    """The tokenizer type a policy variant needs: "rvq" (any of its variants), "binning", "fast" or "continuous"."""
    return tokenizer_variants[0] if tokenizer_variants[0] in ("binning", "fast", "continuous") else "rvq"


FITTED_NEEDS = {"binning": "a binning tokenizer (or no --tokenizer: one is fitted on the dataset)",
                "fast": "a FAST tokenizer (or no --tokenizer: one is fitted on the dataset)"}


def fit_fast_tokenizer(dataset_dir: str | Path, *, exec_horizon: int, holdout_fraction: float, seed: int) -> Any:
    """A FAST tokenizer fitted on the exec chunks of the dataset's training episodes (statistics fitted as tokenizer
    training fits them); its length cap is the longest sequence of every exec window of the dataset."""
    from c2c.tokenizer.data import default_spec, load_chunks
    from c2c.tokenizer.fast import FastTokenizer

    spec = default_spec(Path(dataset_dir), exec_horizon, 0, exec_horizon)
    train, held, normalizers, _ = load_chunks(Path(dataset_dir), spec, holdout_fraction, seed)
    if len(train.exec_chunks) == 0:
        raise ConfigError(f"{dataset_dir}: no training exec windows to fit a FAST tokenizer on")
    fitted = FastTokenizer.fit(normalizers, train.exec_chunks, None, action_dim=normalizers.action.dim,
                               exec_horizon=exec_horizon, plan_steps=exec_horizon)
    every = np.concatenate([train.exec_chunks, held.exec_chunks])
    longest = int((fitted.encode(every, "exec") != PAD_CODE).sum(axis=1).max())
    return FastTokenizer(fitted.normalizers, fitted.bpe, action_dim=fitted.action_dim, exec_horizon=exec_horizon,
                         plan_steps=exec_horizon, scale=fitted.scale, max_tokens={"exec": longest})


def check_length_cap(tokenizer: Any, codes: dict[str, np.ndarray], tokenizer_dir: Path | None) -> None:
    """Variable-length (FAST) codes must fit the tokenizer's length cap, the policy's exec branch."""
    if not getattr(tokenizer, "variable_length", False):
        return
    cap = tokenizer.tokens_per_chunk("exec")
    lengths = (codes["exec"][:, :, 0] != PAD_CODE).sum(axis=1)  # (N,)
    over = int((lengths > cap).sum())
    if over:
        where = tokenizer_dir if tokenizer_dir is not None else "the FAST tokenizer"
        raise ConfigError(f"--tokenizer {where}: {over} of the dataset's exec windows encode to more than its "
                          f"{cap}-token length cap (longest {int(lengths.max())}); fit one on this dataset instead "
                          "(omit --tokenizer)")


def training_action_tokenizer(variant: str, tokenizer_dir: str | Path | None, dataset_dir: str | Path, *,
                              exec_horizon: int, holdout_fraction: float | None = None,
                              holdout_seed: int | None = None, init_from: str | Path | None = None) -> Any:
    """The frozen action tokenizer that ``variant`` trains with: the one saved in ``tokenizer_dir``, or, for
    ``regress`` (which takes none) and ``binning`` without one, statistics fitted on the dataset's training episodes
    (the split of :data:`FITTED_RECORD` unless given) or, when fine-tuning, those of the ``init_from`` policy."""
    from c2c.policy.config import VARIANTS
    from c2c.tokenizer import load_tokenizer
    from c2c.tokenizer.binning import BinningTokenizer

    if variant not in VARIANTS:
        raise ConfigError(f"--variant {variant!r}: unknown (known: {', '.join(VARIANTS)})")
    kinds = VARIANTS[variant].tokenizer_variants
    kind = _kind(kinds)
    if kind == "continuous" and tokenizer_dir:
        raise ConfigError(f"--tokenizer {tokenizer_dir}: variant {variant!r} regresses continuous actions and takes no "
                          "tokenizer (its statistics come from the dataset); drop --tokenizer")
    if not tokenizer_dir and kind == "rvq":
        raise ConfigError(f"variant {variant!r} needs --tokenizer: a trained {' or '.join(kinds)} RVQ tokenizer "
                          f"directory (c2c tokenizer train --variant {kinds[0]})")
    if not tokenizer_dir and init_from:  # fine-tuning keeps the statistics the policy was trained with
        from c2c.policy.policy import ACTION_TOKENIZER_DIR, PolicyConfig, load_action_tokenizer

        source = Path(init_from) / ACTION_TOKENIZER_DIR
        return load_action_tokenizer(PolicyConfig(variant=variant), source)
    if not tokenizer_dir:
        from c2c.policy.regress import ContinuousActions

        fraction = FITTED_RECORD.holdout_fraction if holdout_fraction is None else holdout_fraction
        seed = FITTED_RECORD.seed if holdout_seed is None else holdout_seed
        if kind == "fast":
            return as_action_tokenizer(fit_fast_tokenizer(dataset_dir, exec_horizon=exec_horizon,
                                                          holdout_fraction=fraction, seed=seed))
        fitted = ContinuousActions.fit(dataset_dir, exec_horizon=exec_horizon, holdout_fraction=fraction, seed=seed)
        if kind == "continuous":
            return fitted
        return as_action_tokenizer(BinningTokenizer(fitted.normalizers, action_dim=fitted.config.action_dim,
                                                    exec_horizon=exec_horizon, plan_steps=exec_horizon))
    tokenizer = as_action_tokenizer(load_tokenizer(tokenizer_dir))
    found = "rvq" if tokenizer.name == "rvq" else tokenizer.variant
    if found != kind:
        needs = FITTED_NEEDS.get(kind, f"an RVQ tokenizer (c2c tokenizer train --variant {kinds[0]})")
        raise ConfigError(f"--tokenizer {tokenizer_dir}: a {found!r} tokenizer; variant {variant!r} needs {needs}")
    return tokenizer


def policy_window_spec(config: PolicyConfig, record: TokenizerRecord, dataset_dir: Path) -> WindowSpec:
    """The variant's windows: exec horizon He, plan horizon Hp of the variant (0 for noplan), K plan steps; the
    gripper dims are the tokenizer's (else read from the dataset like the tokenizer does)."""
    gripper = record.spec.gripper_dims if record.spec is not None else default_spec(
        dataset_dir, config.exec_horizon, 0, config.plan_steps).gripper_dims
    return WindowSpec(exec_horizon=config.exec_horizon, plan_horizon=config.plan_horizon,
                      plan_steps=config.plan_steps, gripper_dims=gripper)


# --- codes, computed once ---------------------------------------------------------------------------------------
def _digest(*parts: bytes) -> str:
    hasher = hashlib.sha256()
    for part in parts:
        hasher.update(hashlib.sha256(part).digest())
    return hasher.hexdigest()


def codes_cache_key(tokenizer_dir: Path, actions: np.ndarray, episodes: np.ndarray, spec: WindowSpec) -> str:
    """Identifies the tokenizer (its config and weights), the dataset's actions and the window spec."""
    tokenizer_files = [p.read_bytes() for p in sorted(Path(tokenizer_dir).glob("*.json")) + sorted(
        Path(tokenizer_dir).glob("*.safetensors")) if p.name not in ("metrics.json", "train_config.json")]
    spec_bytes = json.dumps(asdict(spec), sort_keys=True).encode()
    return _digest(*tokenizer_files, np.ascontiguousarray(actions).tobytes(),
                   np.ascontiguousarray(episodes).tobytes(), spec_bytes)


def encode_windows(tokenizer: Any, chunks: np.ndarray, mode: str) -> np.ndarray:
    """(N, H, A) windows -> (N, Np, R) codes, in batches. Variable-length codes are PAD_CODE-padded to the widest
    batch (at least the length cap; :func:`check_length_cap` refuses wider ones)."""
    parts = [tokenizer.encode(chunks[i:i + ENCODE_BATCH], mode) for i in range(0, len(chunks), ENCODE_BATCH)]
    width = max((part.shape[1] for part in parts), default=0)
    parts = [np.pad(part, ((0, 0), (0, width - part.shape[1]), (0, 0)), constant_values=PAD_CODE) for part in parts]
    return np.concatenate(parts).astype(np.int16 if tokenizer.codebook_size <= 32767 else np.int32)


def load_or_compute_codes(tokenizer: Any, tokenizer_dir: Path | None, actions: np.ndarray, episodes: np.ndarray,
                          spec: WindowSpec, cache_dir: Path) -> tuple[dict[str, np.ndarray], np.ndarray, bool]:
    """({"exec": (N, Np, R), "plan": ...}, raw exec chunks (N, He, A), whether they were computed now). A fitted
    tokenizer (``tokenizer_dir`` None) has no files to key a cache with: its codes are computed."""
    windows = dataset_windows(actions, episodes, spec)
    if tokenizer_dir is None:
        codes = {"exec": encode_windows(tokenizer, windows.exec_chunks, "exec")}
        if spec.has_plan:
            codes["plan"] = encode_windows(tokenizer, windows.plans, "plan")
        return codes, windows.exec_chunks, True
    key = codes_cache_key(tokenizer_dir, actions, episodes, spec)
    path = Path(cache_dir) / f"{key[:20]}.npz"
    if path.is_file():
        with np.load(path) as stored:
            return {mode: stored[mode] for mode in stored.files}, windows.exec_chunks, False
    codes = {"exec": encode_windows(tokenizer, windows.exec_chunks, "exec")}
    if spec.has_plan:
        codes["plan"] = encode_windows(tokenizer, windows.plans, "plan")
    buffer = io.BytesIO()
    np.savez(buffer, **codes)
    atomic_write_bytes(path, buffer.getvalue())
    atomic_write_json(path.with_suffix(".json"), {"tokenizer": str(tokenizer_dir), "window_spec": asdict(spec),
                                                  "frames": len(actions), "key": key})
    return codes, windows.exec_chunks, True


# --- images ------------------------------------------------------------------------------------------------------
def image_memory_bytes(num_frames: int, num_cameras: int, image_size: int) -> int:
    return num_frames * num_cameras * image_size * image_size * 3


def resize_frames(frames: np.ndarray, size: int) -> np.ndarray:
    return np.stack([resize_frame(frame, size) for frame in frames])  # (T, size, size, 3)


def check_cameras(dataset: Any, config: PolicyConfig, resize: bool) -> None:
    for camera in config.cameras:
        key = image_key(camera)
        if key not in dataset.camera_keys:
            raise ConfigError(f"camera {camera!r} is not in the dataset (cameras: "
                              f"{[camera_name(k) for k in dataset.camera_keys]})")
        shape = tuple(dataset.features[key]["shape"])
        if shape != (config.image_size, config.image_size, 3) and not resize:
            raise ConfigError(f"dataset camera {camera!r} has {shape[0]}x{shape[1]} images but the "
                              f"{config.backbone!r} preset expects {config.image_size}x{config.image_size} "
                              "(pass --resize-images to resize them with PIL when loading)")


# --- the data ----------------------------------------------------------------------------------------------------
@dataclass
class PolicyData:
    """Every frame of a dataset, ready to be batched."""

    images: dict[str, Any]  # camera -> (N, H, W, 3) uint8: an array (memory) or a lazy CameraFrames (stream)
    states: np.ndarray  # (N, S) float32, raw
    tasks: np.ndarray  # (N,) object: instruction of each frame
    codes: dict[str, np.ndarray]  # "exec" (and "plan") -> (N, Np, R) target codes
    exec_chunks: np.ndarray  # (N, He, A) raw exec windows (what decoding is compared to)
    train_frames: np.ndarray  # (Nt,) frame indices of the training episodes
    heldout_frames: np.ndarray  # (Nh,) frame indices of the held-out episodes
    info: dict[str, Any]  # episodes of each split, cache key, what was computed

    @property
    def instructions(self) -> list[str]:
        return sorted(set(self.tasks.tolist()))

    def batch(self, frames: Sequence[int] | np.ndarray) -> dict[str, Any]:
        """The training batch of these frames (PlanExecutePolicy.forward's format)."""
        frames = np.asarray(frames)
        batch: dict[str, Any] = {image_key(camera): images[frames] for camera, images in self.images.items()}
        batch[OBS_STATE] = self.states[frames]  # (B, S)
        batch[TASK] = self.tasks[frames].tolist()
        for mode, codes in self.codes.items():
            batch[CODE_KEYS[mode]] = codes[frames].astype(np.int64)  # (B, Np, R)
        return batch


def load_policy_data(dataset_dir: Path, tokenizer: Any, tokenizer_dir: Path | None, config: PolicyConfig, out: Path,
                     *,
                     holdout_fraction: float | None = None, holdout_seed: int | None = None,
                     max_image_gb: float = 8.0, resize_images: bool = False, loader: str = "memory") -> PolicyData:
    """Read a dataset for training ``config`` (check sizes, split, codes from the cache or computed once).

    ``loader``: "memory" decodes every image now (refused over ``max_image_gb``), "stream" decodes the frames of each
    batch when it is made, "auto" picks memory when the images fit under ``max_image_gb``, else stream."""
    from c2c.data.lerobot import LeRobotDataset

    if loader not in LOADERS:
        raise ConfigError(f"loader must be one of {', '.join(LOADERS)}, got {loader!r}")
    dataset = LeRobotDataset(dataset_dir)
    tokenizer = as_action_tokenizer(tokenizer)
    record = read_tokenizer_record(tokenizer_dir)
    check_tokenizer_for_policy(config, tokenizer, record, tokenizer_dir)
    check_cameras(dataset, config, resize_images)
    arrays = dataset.frame_arrays([ACTION, OBS_STATE, EPISODE_INDEX])
    actions, episodes = arrays[ACTION].astype(np.float32), arrays[EPISODE_INDEX]
    needed = image_memory_bytes(len(actions), len(config.cameras), config.image_size)
    fits = needed <= max_image_gb * 2**30
    mode = ("memory" if fits else "stream") if loader == "auto" else loader
    if mode == "memory" and not fits:
        raise ConfigError(f"{dataset_dir}: its {len(actions)} frames x {len(config.cameras)} cameras of "
                          f"{config.image_size} px need {needed / 2**30:.1f} GiB in memory, over the "
                          f"{max_image_gb:g} GiB limit (raise --max-image-gb, use fewer frames or cameras, or "
                          "stream the images with loader='stream')")
    check_decodable(dataset, config.cameras)  # before anything slow: one line naming a file this PyAV cannot decode
    spec = policy_window_spec(config, record, Path(dataset_dir))
    codes, exec_chunks, computed = load_or_compute_codes(tokenizer, tokenizer_dir, actions, episodes, spec,
                                                         Path(out) / CODES_DIR)
    check_length_cap(tokenizer, codes, tokenizer_dir)
    if mode == "memory":
        images, tasks = load_frames(dataset, config, len(actions), resize_images)
    else:
        images, tasks = _stream_frames(dataset, config, len(actions))
    fraction = record.holdout_fraction if holdout_fraction is None else holdout_fraction
    seed = record.seed if holdout_seed is None else holdout_seed
    train_eps, held_eps = split_episodes(episodes, fraction, seed)  # the tokenizer's rule and settings
    frames = np.arange(len(actions))
    info = {"train_episodes": train_eps.tolist(), "heldout_episodes": held_eps.tolist(),
            "holdout_fraction": fraction, "holdout_seed": seed, "window_spec": asdict(spec),
            "codes_computed": computed, "num_frames": len(actions), "image_bytes": needed, "loader": mode}
    return PolicyData(images=images, states=arrays[OBS_STATE].astype(np.float32), tasks=tasks, codes=codes,
                      exec_chunks=exec_chunks, train_frames=frames[np.isin(episodes, train_eps)],
                      heldout_frames=frames[np.isin(episodes, held_eps)], info=info)


def load_frames(dataset: Any, config: PolicyConfig, num_frames: int, resize: bool
                 ) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """All frames' images (preallocated, filled episode by episode) and instructions, in frame order."""
    size = config.image_size
    images = {camera: np.empty((num_frames, size, size, 3), dtype=np.uint8) for camera in config.cameras}
    tasks = np.empty(num_frames, dtype=object)
    start = 0
    for index in range(dataset.num_episodes):
        episode = dataset.episode(index, load_images=True)
        stop = start + episode.length
        for camera in config.cameras:
            frames = episode.images[camera]
            images[camera][start:stop] = resize_frames(frames, size) if frames.shape[1:3] != (size, size) else frames
        tasks[start:stop] = episode.task
        start = stop
    if start != num_frames:
        raise ConfigError(f"{dataset.root}: episodes hold {start} frames but the data files hold {num_frames}")
    return images, tasks


def _stream_frames(dataset: Any, config: PolicyConfig, num_frames: int) -> tuple[dict[str, Any], np.ndarray]:
    """Lazy per-camera images (decoded per batch) and every frame's instruction; nothing is decoded here."""
    store = FrameStore(dataset, config.cameras, config.image_size)
    if store.num_frames != num_frames:
        raise ConfigError(f"{dataset.root}: episodes hold {store.num_frames} frames but the data files hold "
                          f"{num_frames}")
    return {camera: store.camera(camera) for camera in config.cameras}, frame_tasks(dataset)


def frame_tasks(dataset: Any) -> np.ndarray:
    """(N,) object: each frame's instruction, that of its episode's first frame (as ``LeRobotDataset.episode``)."""
    task_index = dataset.frame_arrays([TASK_INDEX])[TASK_INDEX]
    lengths = np.array([row["length"] for row in dataset._episodes], dtype=np.int64)
    if lengths.sum() != len(task_index):
        raise DatasetError(f"{dataset.root}: episodes hold {lengths.sum()} frames but the data files hold "
                           f"{len(task_index)}")
    first = task_index[np.cumsum(lengths) - lengths].astype(np.int64)
    bad = [int(i) for i in first if not 0 <= i < len(dataset.tasks)]
    if bad:
        raise DatasetError(f"{dataset.root}: task_index {bad[0]} is not in meta/tasks.parquet")
    return np.repeat(np.asarray(dataset.tasks, dtype=object)[first], lengths)


def batch_loader(data: PolicyData, frames_of_step: Callable[[int], np.ndarray], steps: range, *, workers: int = 0,
                 pin_memory: bool = False, prefetch_factor: int = 2) -> Iterator[list[dict[str, Any]]]:
    """Per step of ``steps``, in order: the list of ``data.batch(row)`` for each row of ``frames_of_step(step)`` (this
    process's (grad_accum, B) frames, e.g. ``draw_frames(...)[:, rank]``). Images are torch uint8 (B, H, W, 3)
    tensors (pinned when ``pin_memory`` and a GPU is present), the other entries as ``data.batch`` gives them.
    ``workers`` > 0 builds steps ahead in persistent DataLoader workers; the batches are the same for any count."""
    return step_batch_iterator(data.batch, frames_of_step, steps, workers=workers, pin_memory=pin_memory,
                               prefetch_factor=prefetch_factor)


def draw_frames(population: np.ndarray, seed: int, step: int, batch_size: int, grad_accum: int = 1,
                processes: int = 1) -> np.ndarray:
    """(grad_accum, processes, batch_size) frames of one optimisation step, drawn from a generator seeded by
    (seed, step): the data order depends neither on where training was resumed nor on the process count's rank
    layout (process r of micro-step m trains on ``[m, r]``)."""
    rng = np.random.default_rng([seed, step])
    picks = rng.integers(len(population), size=grad_accum * processes * batch_size)
    return population[picks].reshape(grad_accum, processes, batch_size)


def random_shift(images: np.ndarray, pad: int, rng: np.random.Generator) -> np.ndarray:
    """Shift each (B, H, W, 3) image by up to ``pad`` pixels in x and y, filling the border with edge pixels (the
    random-shift augmentation of DrQ / Diffusion Policy; an option of training, not part of the paper's recipe)."""
    if pad <= 0:
        return images
    count, height, width = images.shape[:3]
    padded = np.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="edge")
    offsets = rng.integers(0, 2 * pad + 1, size=(count, 2))
    out = np.empty_like(images)
    for i, (dy, dx) in enumerate(offsets):
        out[i] = padded[i, dy:dy + height, dx:dx + width]
    return out
