"""Integrity of saved weights: sha256 records, finite values, and directories that are complete or absent.

A saved policy or tokenizer lists a sha256 of each weights file in its config (``"weights": {file: digest}``);
loading recomputes it, so flipped bytes are refused before a single parameter is used. A loaded state with a NaN or
inf is refused with the file and the first tensor named. Directories are written into a staging folder beside them
and moved into place with the config last: a kill at any moment leaves either the previous complete directory, or
a config whose digests do not match (refused, never half-loaded), or no config at all (not a saved directory).

Example::

    digests = {"model.safetensors": sha256_file(staging / "model.safetensors")}
    commit_staging(staging, directory, last="config.json")
    verify_digest(directory / "model.safetensors", config.get("weights"))
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Mapping
from pathlib import Path

import torch

from c2c.errors import ConfigError

WEIGHTS_KEY = "weights"  # config key: {weights file name: sha256 hex digest}
STAGING = ".saving.tmp"


def sha256_file(path: Path) -> str:
    hasher = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            hasher.update(block)
    return hasher.hexdigest()


def verify_digest(path: Path, recorded: Mapping[str, str] | None) -> None:
    """Refuse ``path`` when its config recorded another sha256 for it (a config without records is accepted)."""
    if not recorded or path.name not in recorded:
        return
    if not path.is_file():
        raise ConfigError(f"{path}: missing, but {path.parent / 'config.json'} lists it; the directory is "
                          "incomplete (was the save interrupted?): save or copy it again")
    if sha256_file(path) != recorded[path.name]:
        raise ConfigError(f"{path}: its sha256 differs from the one recorded when it was saved; the file is damaged "
                          "or from another save: save or copy the directory again")


def check_finite(state: Mapping[str, torch.Tensor], path: Path) -> None:
    """Refuse weights holding NaN or inf, naming the first such tensor."""
    for name, tensor in state.items():
        if not tensor.is_floating_point() or bool(torch.isfinite(tensor.float().sum())):
            continue  # a finite sum means finite values (fast); an infinite one is checked element by element
        if not bool(torch.isfinite(tensor).all()):
            bad = int((~torch.isfinite(tensor)).sum())
            raise ConfigError(f"{path}: tensor {name!r} has {bad} non-finite values of {tensor.numel()}; the weights "
                              "are damaged: save or copy them again")


def staging_dir(directory: Path) -> Path:
    """An empty staging folder inside ``directory`` (created), for a save that ``commit_staging`` moves in."""
    staging = Path(directory) / STAGING
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    return staging


def commit_staging(staging: Path, directory: Path, last: str) -> None:
    """Move every entry of ``staging`` into ``directory`` (replacing what is there), ``last`` at the end."""
    entries = sorted(staging.iterdir(), key=lambda entry: entry.name == last)
    for entry in entries:
        target = Path(directory) / entry.name
        if entry.is_dir():
            if target.exists():
                old = target.with_name(f".{target.name}.old")
                shutil.rmtree(old, ignore_errors=True)
                target.rename(old)
                entry.rename(target)
                shutil.rmtree(old, ignore_errors=True)
            else:
                entry.rename(target)
        else:
            os.replace(entry, target)
    staging.rmdir()
