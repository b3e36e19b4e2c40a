"""The stage cache of `c2c run`: a finished stage writes ``stage.json`` (its settings, result and wall time); a rerun
with the same settings reuses it, other settings (or ``--force``) redo it. Also the settings that name a cached
demonstration dataset."""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from c2c.eval.presets import PipelinePreset
from c2c.utils.io import atomic_write_json

STAGE_FILE = "stage.json"


def settings_hash(settings: dict[str, Any]) -> str:
    """Ten hex digits naming ``settings`` (a cached dataset's directory is ``<simulator>-<hash>``)."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:10]


def data_settings(preset: PipelinePreset) -> dict[str, Any]:
    """The settings of ``preset``'s demonstration dataset (hashed into its directory name by ``stage_demos``)."""
    settings = {
        "generator": preset.simulator,
        "tasks": list(preset.tasks),
        "episodes_per_task": preset.episodes_per_task,
        "image_size": preset.image_size,
        "cameras": list(preset.cameras),
        "seed": preset.seed,
    }
    if preset.action_noise:  # only when set, so that the datasets made before the option keep their names
        settings["action_noise"] = float(preset.action_noise)
    if preset.suite is not None:
        settings["suite"] = preset.suite
        settings["fast_drawing"] = True  # our renderer on simplified meshes (LiberoEnv); evaluations follow it
    return settings


def same_settings(recorded: Any, settings: dict[str, Any]) -> bool:
    """Whether a stage recorded with ``recorded`` settings was run with ``settings``. A stage's own output path is
    compared by its last part only, so a run directory that was moved or copied is reused, not redone."""
    def portable(value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        return {key: Path(item).name if key == "out" and isinstance(item, str) else item
                for key, item in value.items()}

    return portable(recorded) == portable(settings)


def run_stage(stage_dir: Path, settings: dict[str, Any], force: bool, work: Callable[[], Any],
              label: str) -> dict[str, Any]:
    """Run ``work`` unless ``stage_dir`` holds a finished stage with the same settings; returns its record
    ``{"settings", "result", "seconds", "skipped"}``. ``force`` (or other settings) clears the directory first."""
    marker = stage_dir / STAGE_FILE
    if marker.is_file() and not force:
        record = json.loads(marker.read_text())
        if same_settings(record.get("settings"), settings):
            print(f"[{label}] done already ({record['seconds']:.0f} s when it ran); reusing {stage_dir}")
            return {**record, "skipped": True}
        print(f"[{label}] settings changed since the last run: redoing it")
        force = True
    if force and stage_dir.exists():
        shutil.rmtree(stage_dir)
    stage_dir.mkdir(parents=True, exist_ok=True)
    print(f"[{label}] running -> {stage_dir}")
    started = time.perf_counter()
    result = work()
    record = {"settings": settings, "result": result, "seconds": round(time.perf_counter() - started, 1)}
    atomic_write_json(marker, record)
    print(f"[{label}] finished in {record['seconds']:.0f} s")
    return {**record, "skipped": False}


def finished_stage(stage_dir: Path, settings: dict[str, Any]) -> dict[str, Any] | None:
    """The record of a finished stage with these settings, or None."""
    marker = stage_dir / STAGE_FILE
    if not marker.is_file():
        return None
    record = json.loads(marker.read_text())
    if not same_settings(record.get("settings"), settings):
        return None
    print(f"[{stage_dir.parent.name} {stage_dir.name}] done already ({record['seconds']:.0f} s when it ran); reusing "
          f"{stage_dir}")
    return {**record, "skipped": True}


def clear_stage(stage_dir: Path) -> None:
    """Empty ``stage_dir`` (made when missing)."""
    if stage_dir.exists():
        shutil.rmtree(stage_dir)
    stage_dir.mkdir(parents=True)


def stage_stamp(stage_dir: Path) -> float | None:
    """When the stage in ``stage_dir`` finished (a later stage that depends on it is redone when it changes)."""
    marker = stage_dir / STAGE_FILE
    return marker.stat().st_mtime_ns if marker.is_file() else None


def json_safe(value: Any) -> Any:
    """``value`` as JSON would store it: arrays as lists, other unknown objects as their text."""
    return json.loads(json.dumps(value, default=lambda v: v.tolist() if hasattr(v, "tolist") else str(v)))
