"""LIBERO's HDF5 demonstration files (LIBERO's own, or OpenVLA's regenerated no-op-free ones) -> our LeRobot v3
dataset: ``c2c data convert --src DIR_OR_FILE.hdf5 --out DIR [--drop-noops] [--resize N]``.

The files are read by :class:`~c2c.data.libero_hdf5.LiberoHDF5Dataset` (cameras turned upright, the 8-dim state,
7-dim actions, the instruction from ``problem_info`` or the file name; docs/libero.md says how the sources differ)
and written through :class:`~c2c.data.lerobot_write.LeRobotWriter` (atomic; the source is only read), with the
source, its layouts and the options recorded in ``meta/info.json`` under ``c2c.source``.

Example::

    convert_libero_hdf5("LIBERO/libero/datasets/libero_object", "data/libero-object", drop_noops=True)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from c2c.errors import ConfigError


def is_hdf5_source(src: Path) -> bool:
    """An ``.hdf5`` file, or a directory of them without LeRobot metadata."""
    src = Path(src)
    if src.is_file():
        return src.suffix == ".hdf5"
    return src.is_dir() and not (src / "meta" / "info.json").is_file() and any(src.glob("*.hdf5"))


def convert_libero_hdf5(src: Path | str, out: Path | str, *, drop_noops: bool = False, resize: int | None = None,
                        image_format: str | None = None, overwrite: bool = False, show_progress: bool = True) -> Path:
    """Write the LIBERO HDF5 file(s) at ``src`` as our v3.0 dataset at ``out``; returns ``out``."""
    from tqdm.auto import tqdm

    from c2c.data.lerobot_write import LeRobotWriter
    from c2c.data.libero_hdf5 import LIBERO_FPS, LiberoHDF5Dataset
    from c2c.data.streaming import resize_frame
    from c2c.envs.libero_env import ACTION_NAMES, STATE_NAMES

    src, out = Path(src), Path(out)
    if resize is not None and resize <= 0:
        raise ConfigError(f"--resize must be a positive number of pixels, got {resize}")
    source = (LiberoHDF5Dataset([src], drop_noops=drop_noops) if src.is_file()
              else LiberoHDF5Dataset.from_directory(src, drop_noops=drop_noops))
    with LeRobotWriter(out, fps=LIBERO_FPS, robot_type="panda", image_format=image_format or "image",
                       action_names=list(ACTION_NAMES), state_names=list(STATE_NAMES), overwrite=overwrite) as writer:
        bar = tqdm(total=source.num_episodes, desc="convert", unit="ep", disable=not show_progress)
        for episode in source:
            if resize is not None:
                episode.images = {camera: np.stack([resize_frame(frame, resize) for frame in frames])
                                  for camera, frames in episode.images.items()}
            writer.add_episode(episode)
            bar.update()
        bar.close()
        writer.finalize({"generator": "libero-hdf5", "action_layout": "libero", "source": {
            "path": str(src), "codebase_version": "libero-hdf5", "layouts": sorted(set(source.layouts.values())),
            "drop_noops": drop_noops, "resize": resize, "key_map": "libero-hdf5"}})
    return out
