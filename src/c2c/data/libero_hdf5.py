"""Reader for LIBERO's robomimic-style HDF5 demonstration files: LIBERO's own and OpenVLA's regenerated ones.

Layout (one file per task)::

    data                      attrs: problem_info (JSON with "language_instruction"), env_args, bddl_file_name
                              (LIBERO's own files only; OpenVLA's regenerated files have no attributes)
    data/demo_<i>/actions     (T, 7) float: 6 end-effector deltas + gripper (-1 open, +1 close)
    data/demo_<i>/obs/agentview_rgb     (T, H, W, 3) uint8, rendered upside down
    data/demo_<i>/obs/eye_in_hand_rgb   (T, H, W, 3) uint8, rendered upside down
    data/demo_<i>/obs/ee_pos (T, 3), ee_ori (T, 3) axis-angle  (or ee_states (T, 6)), gripper_states (T, 2)

Episodes come out in the same form as every other reader: cameras named like LeRobot's LIBERO datasets
(``image`` = agentview, ``image2`` = wrist), the 8-dim state eef pos + axis-angle + gripper qpos, images turned
upright (rotated 180 degrees, as openpi does with the simulator's images).

Three sources of LIBERO demonstrations, and how they differ:

=========================  ======  =================  =====================================================
source                     pixels  no-op actions      observation ``t``
=========================  ======  =================  =====================================================
LIBERO's original HDF5     128     kept               recorded after action ``t`` was executed (one step
                                                      late: it shows the result of action ``t``, not what
                                                      preceded it)
OpenVLA's regenerated      256     removed            recorded before action ``t`` (aligned)
HDF5 (``*_no_noops``)
LeRobot / openpi datasets  256     removed            aligned (built from the regenerated files through
                                                      RLDS; read them with :mod:`c2c.data.lerobot`)
=========================  ======  =================  =====================================================

- LIBERO's original files carry the instruction in ``data.attrs["problem_info"]``.
- OpenVLA's ``experiments/robot/libero/regenerate_libero_dataset.py`` replays each original demonstration in the
  simulator at 256 px from its first state (after 10 settling steps), drops the transitions whose action is a
  no-op (:func:`noop_actions`), drops demonstrations whose replay fails (so ``demo_<i>`` numbers have gaps) and
  writes ``<task name>_demo.hdf5`` without any attribute. The instruction then comes from the file name, as
  OpenVLA's RLDS builders derive it (:func:`instruction_from_file_name`): ``_demo.hdf5`` stripped, the words
  between ``_`` joined by spaces, LIBERO-10/90's scene prefix (``KITCHEN_SCENE3_``, ``LIVING_ROOM_SCENE2_``)
  dropped. openpi's and LeRobot's LIBERO datasets were built from these files.
- ``drop_noops=True`` drops no-op actions from LIBERO's original files as that regeneration did (the regenerated
  files have none left, so it changes nothing there). The observations stay the recorded ones: one step late.

Example::

    source = LiberoHDF5Dataset(["libero_object_no_noops/pick_up_the_ketchup_and_place_it_in_the_basket_demo.hdf5"])
    ep = source.episode(0)        # Episode(actions (T, 7), states (T, 8), images {"image", "image2"}, task)
    ep.metadata["layout"]         # "openvla-regenerated" (no problem_info) or "libero" (LIBERO's own file)
    LiberoHDF5Dataset.from_directory("libero_object", drop_noops=True)   # LIBERO's files, no-ops removed
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
# Episode.metadata["layout"]: which kind of file an episode came from (see the module docstring).
LAYOUT_LIBERO = "libero"  # LIBERO's original files: problem_info, 128 px, no-ops kept, observations one step late
LAYOUT_REGENERATED = "openvla-regenerated"  # OpenVLA's: no attributes, 256 px, no-ops removed, aligned
DEMO_SUFFIX = "_demo"  # OpenVLA's regenerated files are <task name>_demo.hdf5, as LIBERO's own
NOOP_THRESHOLD = 1e-4  # OpenVLA's: an action whose 6 motion dims have a smaller norm does not move the arm


@dataclass(frozen=True)
class _DemoRef:
    path: Path
    demo: str  # "demo_<i>"


def _demo_sort_key(name: str) -> tuple[int, str]:
    suffix = name.rsplit("_", 1)[-1]
    return (int(suffix), name) if suffix.isdigit() else (1 << 30, name)


def instruction_from_file_name(path: str | Path) -> str | None:
    """The instruction OpenVLA's RLDS builders derive from a LIBERO file name, or None when it has none.

    ``_demo`` and the extension are stripped, the rest is split at ``_`` and every word up to and including the last
    one that contains ``SCENE`` is dropped (LIBERO-10/90 names start with the scene: ``KITCHEN_SCENE3_``); the words
    left are joined by spaces. ``pick_up_the_ketchup_and_place_it_in_the_basket_demo.hdf5`` -> ``pick up the
    ketchup and place it in the basket``.
    """
    stem = Path(path).stem
    if not stem.endswith(DEMO_SUFFIX):
        return None
    words: list[str] = []
    for word in stem[: -len(DEMO_SUFFIX)].split("_"):
        if "SCENE" in word:
            words = []
        elif word:
            words.append(word)
    return " ".join(words) or None


def read_instruction(path: Path, handle: h5py.File) -> str:
    """The task instruction: ``data.attrs["problem_info"]["language_instruction"]`` (LIBERO's own files), else
    the file name's (OpenVLA's regenerated files, see :func:`instruction_from_file_name`)."""
    if "data" not in handle:
        raise DatasetError(f"{path}: no 'data' group (not a robomimic-style LIBERO file)")
    raw = handle["data"].attrs.get("problem_info")
    if raw is None:
        instruction = instruction_from_file_name(path)
        if instruction is None:
            raise DatasetError(f"{path}: no attribute 'data.problem_info' (LIBERO's own files) and the file name is "
                               f"not '<task words>{DEMO_SUFFIX}.hdf5' (OpenVLA's regenerated files), so no "
                               f"instruction; rename it to the instruction's words joined by '_' plus "
                               f"'{DEMO_SUFFIX}.hdf5'")
        return instruction
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


def file_layout(handle: h5py.File) -> str:
    """:data:`LAYOUT_LIBERO` for a file with ``data.problem_info``, else :data:`LAYOUT_REGENERATED`."""
    return LAYOUT_LIBERO if "problem_info" in handle["data"].attrs else LAYOUT_REGENERATED


def noop_actions(actions: np.ndarray, threshold: float = NOOP_THRESHOLD) -> np.ndarray:
    """(T,) bool: the actions OpenVLA's regeneration drops as no-ops.

    An action is a no-op when the norm of its first 6 dims (the arm's motion) is under ``threshold`` and its gripper
    command equals that of the last action kept (the first action: when it does not move the arm). A pause that
    opens or closes the gripper is kept.
    """
    actions = np.asarray(actions)
    if actions.ndim != 2 or actions.shape[1] < 2:
        raise ValueError(f"expected actions of shape (T, A) with A >= 2, got {actions.shape}")
    still = np.linalg.norm(actions[:, :-1].astype(np.float64), axis=1) < threshold
    noop = np.zeros(len(actions), dtype=bool)
    gripper = None  # the gripper command of the last action kept
    for t, action in enumerate(actions):
        if still[t] and (gripper is None or action[-1] == gripper):
            noop[t] = True
        else:
            gripper = action[-1]
    return noop


class LiberoHDF5Dataset:
    """Episodes of one or more LIBERO HDF5 files, in file order then demo number order.

    ``drop_noops``: leave out the frames whose action is a no-op (:func:`noop_actions`), as OpenVLA's regeneration
    did. ``flip_images``: turn the images upright (default). ``cameras``: our camera name -> HDF5 observation key.
    """

    def __init__(self, paths: Sequence[str | Path], *, flip_images: bool = True, cameras: dict[str, str] | None = None,
                 drop_noops: bool = False):
        self.paths = [Path(p) for p in paths]
        if not self.paths:
            raise DatasetError("no LIBERO HDF5 files given")
        self.flip_images = flip_images
        self.drop_noops = bool(drop_noops)
        self.cameras = dict(LIBERO_CAMERAS if cameras is None else cameras)
        self._refs: list[_DemoRef] = []
        self._instructions: dict[Path, str] = {}
        self._layouts: dict[Path, str] = {}
        for path in self.paths:
            if not path.is_file():
                raise DatasetError(f"{path}: no such file")
            try:
                handle = h5py.File(path, "r")
            except OSError as err:
                raise DatasetError(f"{path}: not a readable HDF5 file ({err})") from None
            with handle:
                self._instructions[path] = read_instruction(path, handle)
                self._layouts[path] = file_layout(handle)
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

    @property
    def layouts(self) -> dict[str, str]:
        """File name -> :data:`LAYOUT_LIBERO` or :data:`LAYOUT_REGENERATED`."""
        return {path.name: self._layouts[path] for path in self.paths}

    def episode(self, index: int, *, load_images: bool = True) -> Episode:
        if not 0 <= index < self.num_episodes:
            raise IndexError(f"episode {index} out of range [0, {self.num_episodes})")
        ref = self._refs[index]
        source = f"{ref.path}:data/{ref.demo}"
        with h5py.File(ref.path, "r") as handle:
            group = handle["data"][ref.demo]
            raw_actions = self._read(group, "actions", source)
            obs = group.get("obs")
            if obs is None:
                raise DatasetError(f"{source}: group 'obs' is missing")
            states = self._state(obs, source)
            keep = slice(None)
            metadata = {"source_file": ref.path.name, "demo": ref.demo, "layout": self._layouts[ref.path]}
            if self.drop_noops:
                if raw_actions.ndim != 2 or raw_actions.shape[1] < 2:
                    raise DatasetError(f"{source}: 'actions' must be (T, A), got shape {tuple(raw_actions.shape)}")
                if len(states) != len(raw_actions):
                    raise DatasetError(f"{source}: 'observation.state' has {len(states)} frames but 'actions' has "
                                       f"{len(raw_actions)}")
                noop = noop_actions(raw_actions)
                if noop.all():
                    raise DatasetError(f"{source}: every one of its {len(noop)} actions is a no-op; leave this demo "
                                       f"out or read it without drop_noops")
                keep = np.flatnonzero(~noop)
                metadata["noops_dropped"] = int(noop.sum())
            actions = raw_actions[keep].astype(np.float32)
            states = states[keep]
            images = {}
            if load_images:
                for camera, key in self.cameras.items():
                    frames = self._read(obs, key, source)
                    if self.drop_noops and len(frames) != len(noop):
                        raise DatasetError(f"{source}: '{key}' has {len(frames)} frames but 'actions' has {len(noop)}")
                    frames = frames[keep]
                    images[camera] = np.ascontiguousarray(frames[:, ::-1, ::-1]) if self.flip_images else frames
        episode = Episode(actions=actions, states=states, images=images, task=self._instructions[ref.path],
                          metadata=metadata)
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
