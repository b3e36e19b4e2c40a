"""The Meta-World training record of a policy: the tasks and placement seeds of its training demonstrations, read
from the policy directory's ``training_data.json`` (which ``c2c policy train`` writes) or from the metadata of a
``c2c serve`` server, so that closed-loop evaluation refuses placements the policy was trained on.

Example::

    training = read_training_record(Path("runs/plan"))
    check_disjoint_seeds(jobs, training)     # a ConfigError naming the first evaluation seed used in training
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from c2c.errors import ConfigError

if TYPE_CHECKING:
    from c2c.eval.metaworld_rollouts import Job


@dataclass(frozen=True)
class TrainingRecord:
    """What a policy was trained on, from ``training_data.json`` (``known`` False: the file or seeds are absent)."""

    known: bool
    tasks: tuple[str, ...]  # Meta-World tasks of the training dataset
    seeds: dict[int, str]  # placement seed of every training demonstration attempt -> its task
    path: Path
    image_size: int | None = None  # of the training dataset's images
    fast_drawing: bool = True  # how the demonstrations were rendered (see MetaWorldEnv)


def read_training_record(policy_dir: Path) -> TrainingRecord:
    """The training tasks and placement seeds recorded in ``policy_dir/training_data.json``.

    Raises :class:`ConfigError` when the file is not valid JSON; a missing file, or a dataset record without
    Meta-World expert seeds, gives ``known=False``.
    """
    from c2c.policy.training.config import TRAINING_DATA_FILE

    path = Path(policy_dir) / TRAINING_DATA_FILE
    if not path.is_file():
        return TrainingRecord(False, (), {}, path)
    try:
        record = json.loads(path.read_text()).get("c2c") or {}
    except (json.JSONDecodeError, AttributeError) as error:
        raise ConfigError(f"{path}: not a JSON object ({error})") from None
    expert = record.get("expert")
    if record.get("generator") != "metaworld" or not isinstance(expert, dict):
        return TrainingRecord(False, tuple(record.get("tasks") or ()), {}, path)
    seeds: dict[int, str] = {}
    try:
        for task, stats in expert.items():
            for value in stats["seeds_attempted"]:
                seeds.setdefault(int(value), task)
    except (KeyError, TypeError, ValueError) as error:
        raise ConfigError(f"{path}: c2c.expert.<task>.seeds_attempted must be lists of integers ({error!r})") from None
    return TrainingRecord(True, tuple(record.get("tasks") or expert), seeds, path, record.get("image_size"),
                          bool(record.get("fast_drawing", True)))


def check_disjoint_seeds(jobs: list[Job], training: TrainingRecord) -> None:
    """Refuse evaluation placements that a training demonstration was drawn from (any task's, to be strict)."""
    for job in jobs:
        if job.seed in training.seeds:
            raise ConfigError(
                f"task {job.task} episode {job.episode}: evaluation placement seed {job.seed} was used for the "
                f"training demonstrations (of {training.seeds[job.seed]}, {training.path}); choose another --seed"
            )


def training_placement_seeds(training: TrainingRecord, tasks: list[str], episodes: int) -> dict[str, list[int]]:
    """Task -> the placement seeds of its first ``episodes`` training demonstration attempts (``--training-placements``)."""
    if not training.known:
        raise ConfigError(f"--training-placements needs the training placements, but {training.path} "
                          f"{'is missing' if not training.path.is_file() else 'records no Meta-World seeds'}")
    placements = {}
    for task in tasks:
        seeds = [seed for seed, owner in training.seeds.items() if owner == task]
        if len(seeds) < episodes:
            raise ConfigError(f"--training-placements: {training.path} has {len(seeds)} placements of {task}, fewer "
                              f"than --episodes {episodes}")
        placements[task] = seeds[:episodes]
    return placements


def served_training_record(policy: Any, server: str) -> TrainingRecord:
    """The training record a ``c2c serve`` server sends in its metadata (``known=False`` when it has none)."""
    record = policy.training_record() or {}
    path = Path(record.get("path") or "training_data.json")
    tasks = tuple(record.get("tasks") or ())
    if not record.get("known"):
        return TrainingRecord(False, tasks, {}, path)
    seeds: dict[int, str] = {}
    try:
        for task, values in record["seeds"].items():
            for value in values:
                seeds.setdefault(int(value), task)
    except (AttributeError, KeyError, TypeError, ValueError) as error:
        raise ConfigError(f"{server}: the served training record's seeds are not lists of integers per task "
                          f"({error!r})") from None
    return TrainingRecord(True, tasks, seeds, path, record.get("image_size"), bool(record.get("fast_drawing", True)))
