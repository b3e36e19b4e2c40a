"""The on-disk cache of a demonstration run: ``<out.parent>/.<out.name>.work/``.

It holds ``settings.json`` (what a recorded episode depends on), and per task ``attempts.json`` (every attempt's
seed and outcome, :class:`Attempt`) and one ``episode-<attempt>.npz`` per recorded episode. A rerun of the same
command skips what is there. Files are written atomically (a temporary name, then a rename); leftovers of an
interrupted write are removed when the cache is opened.
"""

from __future__ import annotations

import json
import os
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from c2c.errors import ConfigError


@dataclass
class Attempt:
    """One expert rollout on one placement."""

    attempt: int  # index within the task
    seed: int  # placement seed
    success: bool
    length: int  # actions taken (= frames recorded when kept)
    digest: str  # sha1 of the simulator states from reset to the last step


def work_dir_path(out: Path) -> Path:
    """The cache directory of the dataset ``out``."""
    return out.parent / f".{out.name}.work"


def write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    """``write(temporary)`` then rename the temporary file to ``path``."""
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    write(temporary)
    os.replace(temporary, path)


def save_episode_arrays(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """An .npz with zlib level 1 (about 4x smaller than raw frames, 0.7 ms a frame of two 96-px cameras)."""

    def write(target: Path) -> None:
        with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
            for name, array in arrays.items():
                with archive.open(f"{name}.npy", "w", force_zip64=True) as stream:
                    np.lib.format.write_array(stream, np.ascontiguousarray(array), allow_pickle=False)

    write_atomic(path, write)


def write_json(path: Path, value: Any) -> None:
    write_atomic(path, lambda target: target.write_text(json.dumps(value, indent=1)))


def directory_bytes(root: Path) -> int:
    """The summed size of the files under ``root`` (0 when it does not exist)."""
    return sum(path.stat().st_size for path in root.rglob("*") if path.is_file()) if root.exists() else 0


class WorkDir:
    """``<out.parent>/.<out.name>.work``: recorded episodes and attempt outcomes, valid for one ``settings``."""

    def __init__(self, out: Path, settings: dict[str, Any], *, overwrite: bool) -> None:
        self.root = work_dir_path(out)
        self.settings = settings
        settings_path = self.root / "settings.json"
        if settings_path.is_file():
            old = json.loads(settings_path.read_text())
            if old != settings:
                if not overwrite:
                    changed = ", ".join(
                        f"{key}: {old.get(key)!r} -> {settings.get(key)!r}"
                        for key in sorted(set(old) | set(settings))
                        if old.get(key) != settings.get(key)
                    )
                    raise ConfigError(
                        f"{self.root} holds episodes recorded with other settings ({changed}); use a new --out, "
                        f"or --overwrite to discard them"
                    )
                shutil.rmtree(self.root)
        self.root.mkdir(parents=True, exist_ok=True)
        for leftover in self.root.glob("**/.*.tmp-*"):  # from an interrupted write
            leftover.unlink()
        write_json(settings_path, settings)

    @classmethod
    def existing(cls, root: Path) -> "WorkDir":
        """The work directory at ``root`` as it is (a worker process's handle; its settings were checked already)."""
        work = cls.__new__(cls)
        work.root, work.settings = Path(root), None
        return work

    def episode_path(self, task: str, attempt: int) -> Path:
        (self.root / task).mkdir(exist_ok=True)
        return self.root / task / f"episode-{attempt:05d}.npz"

    def recorded(self, task: str) -> set[int]:
        """The attempts of ``task`` with an episode file."""
        return {int(path.stem.split("-")[1]) for path in (self.root / task).glob("episode-*.npz")}

    def recorded_episodes(self) -> set[tuple[str, int]]:
        """(task, attempt) of every episode file."""
        return {(path.parent.name, int(path.stem.split("-")[1])) for path in self.root.glob("*/episode-*.npz")}

    def load_attempts(self, task: str) -> dict[int, Attempt]:
        path = self.root / task / "attempts.json"
        if not path.is_file():
            return {}
        return {record["attempt"]: Attempt(**record) for record in json.loads(path.read_text())}

    def save_attempts(self, task: str, attempts: dict[int, Attempt]) -> None:
        (self.root / task).mkdir(exist_ok=True)
        records = [vars(attempts[index]) for index in sorted(attempts)]
        write_json(self.root / task / "attempts.json", records)

    def size_bytes(self) -> int:
        return directory_bytes(self.root)
