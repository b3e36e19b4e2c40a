"""LeRobot dataset v3.0: the format robot-learning users exchange, written and read without ``lerobot``.

:class:`LeRobotWriter` (in :mod:`c2c.data.lerobot_write`) streams :class:`~c2c.data.episodes.Episode`
objects into a dataset atomically; :class:`LeRobotDataset` (in :mod:`c2c.data.lerobot_read`) reads one
back, whoever wrote it. ``scripts/check_lerobot_compat.py`` checks both directions against LeRobot itself.

Example::

    from c2c.data.lerobot import LeRobotDataset, LeRobotWriter

    with LeRobotWriter(Path("data/reach"), fps=80, image_format="video") as writer:
        for episode in episodes:
            writer.add_episode(episode)
        writer.finalize(extra_info={"suite": "metaworld"})

    dataset = LeRobotDataset(Path("data/reach"))
    dataset.stats["action"]["q01"], dataset.episode(0).images["corner2"].shape
"""

from __future__ import annotations

from c2c.data.lerobot_read import CODEBASE_VERSION, LeRobotDataset, is_complete_dataset
from c2c.data.lerobot_write import LeRobotWriter

__all__ = ["CODEBASE_VERSION", "LeRobotDataset", "LeRobotWriter", "is_complete_dataset"]
