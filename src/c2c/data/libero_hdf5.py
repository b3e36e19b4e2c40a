"""Reader for LIBERO's robomimic-style HDF5 demonstration files.

Layout (one file per task)::

    data                      attrs: problem_info (JSON with "language_instruction"), env_args, bddl_file_name
    data/demo_<i>/actions     (T, 7) float: 6 end-effector deltas + gripper (-1 open, +1 close)
    data/demo_<i>/obs/agentview_rgb     (T, H, W, 3) uint8, rendered upside down
    data/demo_<i>/obs/eye_in_hand_rgb   (T, H, W, 3) uint8, rendered upside down
    data/demo_<i>/obs/ee_pos (T, 3), ee_ori (T, 3) axis-angle  (or ee_states (T, 6)), gripper_states (T, 2)

Episodes come out in the same form as every other reader: cameras named like LeRobot's LIBERO datasets
(``image`` = agentview, ``image2`` = wrist), the 8-dim state eef pos + axis-angle + gripper qpos, images turned
upright (rotated 180 degrees, as openpi does with the simulator's images).

Example::

    source = LiberoHDF5Dataset(["libero_object/pick_up_the_ketchup_demo.hdf5"])
    ep = source.episode(0)        # Episode(actions (T, 7), states (T, 8), images {"image", "image2"}, task)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import h5py
import numpy as np

from c2c.data.episodes import Episode
from c2c.errors import DatasetError

# Our camera name -> HDF5 observation key.
LIBERO_CAMERAS = {"image": "agentview_rgb", "image2": "eye_in_hand_rgb"}
LIBERO_FPS = 20


@dataclass(frozen=True)
class _DemoRef:
    path: Path
    demo: str  # "demo_<i>"


def _demo_sort_key(name: str) -> tuple[int, str]:
    suffix = name.rsplit("_", 1)[-1]
    return (int(suffix), name) if suffix.isdigit() else (1 << 30, name)


def read_instruction(path: Path, handle: h5py.File) -> str:
    """The task instruction from ``data.attrs["problem_info"]["language_instruction"]``."""
    if "data" not in handle:
        raise DatasetError(f"{path}: no 'data' group (not a robomimic-style LIBERO file)")
    raw = handle["data"].attrs.get("problem_info")
    if raw is None:
        raise DatasetError(f"{path}: attribute 'data.problem_info' is missing")
    try:
        info = json.loads(raw.decode() if isinstance(raw, bytes) else str(raw))
    except json.JSONDecodeError as err:
        raise DatasetError(f"{path}: attribute 'data.problem_info' is not valid JSON ({err.msg})") from None
    instruction = info.get("language_instruction") if isinstance(info, dict) else None
    if isinstance(instruction, list):  # some conversions store a list of words or sentences
        instruction = " ".join(str(word) for word in instruction)
    if not instruction:
        raise DatasetError(f"{path}: 'data.problem_info' has no 'language_instruction'")
    return str(instruction).strip()


class LiberoHDF5Dataset:
    """Episodes of one or more LIBERO HDF5 files, in file order then demo number order."""

    def __init__(self, paths: Sequence[str | Path], *, flip_images: bool = True, cameras: dict[str, str] | None = None):
        self.paths = [Path(p) for p in paths]
        if not self.paths:
            raise DatasetError("no LIBERO HDF5 files given")
        self.flip_images = flip_images
        self.cameras = dict(LIBERO_CAMERAS if cameras is None else cameras)
        self._refs: list[_DemoRef] = []
        self._instructions: dict[Path, str] = {}
        for path in self.paths:
            if not path.is_file():
                raise DatasetError(f"{path}: no such file")
            try:
                handle = h5py.File(path, "r")
            except OSError as err:
                raise DatasetError(f"{path}: not a readable HDF5 file ({err})") from None
            with handle:
                self._instructions[path] = read_instruction(path, handle)
                demos = sorted((k for k in handle["data"].keys() if k.startswith("demo")), key=_demo_sort_key)
                if not demos:
                    raise DatasetError(f"{path}: 'data' holds no demo_<i> groups")
                self._refs.extend(_DemoRef(path, demo) for demo in demos)

    @classmethod
    def from_directory(cls, root: str | Path, **kwargs) -> "LiberoHDF5Dataset":
        files = sorted(Path(root).glob("*.hdf5"))
        if not files:
            raise DatasetError(f"{root}: no *.hdf5 files")
        return cls(files, **kwargs)

    @property
    def num_episodes(self) -> int:
        return len(self._refs)

    def __len__(self) -> int:
        return self.num_episodes

    @property
    def tasks(self) -> list[str]:
        return list(dict.fromkeys(self._instructions[p] for p in self.paths))

    def episode(self, index: int, *, load_images: bool = True) -> Episode:
        if not 0 <= index < self.num_episodes:
            raise IndexError(f"episode {index} out of range [0, {self.num_episodes})")
        ref = self._refs[index]
        source = f"{ref.path}:data/{ref.demo}"
        with h5py.File(ref.path, "r") as handle:
            group = handle["data"][ref.demo]
            actions = self._read(group, "actions", source).astype(np.float32)
            obs = group.get("obs")
            if obs is None:
                raise DatasetError(f"{source}: group 'obs' is missing")
            states = self._state(obs, source)
            images = {}
            if load_images:
                for camera, key in self.cameras.items():
                    frames = self._read(obs, key, source)
                    images[camera] = np.ascontiguousarray(frames[:, ::-1, ::-1]) if self.flip_images else frames
        episode = Episode(
            actions=actions,
            states=states,
            images=images,
            task=self._instructions[ref.path],
            metadata={"source_file": ref.path.name, "demo": ref.demo},
        )
        return episode.validate(source)

    def __iter__(self) -> Iterator[Episode]:
        for index in range(self.num_episodes):
            yield self.episode(index)

    @staticmethod
    def _read(group: h5py.Group, key: str, source: str) -> np.ndarray:
        if key not in group:
            raise DatasetError(f"{source}: key '{key}' is missing (have: {', '.join(sorted(group.keys()))})")
        return np.asarray(group[key][()])

    def _state(self, obs: h5py.Group, source: str) -> np.ndarray:
        """8-dim state: eef position (3), eef axis-angle (3), gripper finger positions (2)."""
        if "ee_pos" in obs and "ee_ori" in obs:
            pose = np.concatenate([self._read(obs, "ee_pos", source), self._read(obs, "ee_ori", source)], axis=1)
        else:
            pose = self._read(obs, "ee_states", source)
        gripper = self._read(obs, "gripper_states", source)
        if pose.ndim != 2 or pose.shape[1] != 6:
            raise DatasetError(f"{source}: end-effector pose must be (T, 6), got {tuple(pose.shape)}")
        if gripper.ndim != 2 or gripper.shape[1] != 2 or len(gripper) != len(pose):
            raise DatasetError(f"{source}: 'gripper_states' must be (T, 2), got {tuple(gripper.shape)}")
        return np.concatenate([pose, gripper], axis=1).astype(np.float32)
