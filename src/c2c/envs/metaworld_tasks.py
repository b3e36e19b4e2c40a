"""Meta-World task names, benchmark groups, language instructions and camera names.

Kept free of simulator imports so that configs and the command line can check task and camera names without
MuJoCo. The lists are written out here; ``tests/test_metaworld.py`` checks them against metaworld's own MT10/MT50
tables.

Example::

    resolve_tasks("mt10")                 # the ten MT10 tasks, in metaworld's order
    resolve_tasks("reach,pick-place-v3")  # ['reach-v3', 'pick-place-v3']
    instruction("pick-place-v3")          # 'pick up the puck and place it at the goal'
    difficulty_group("assembly-v3")       # 'hard'
"""

from __future__ import annotations

import difflib
from typing import Iterable

from c2c.errors import ConfigError

TASK_SUFFIX = "-v3"

# The cameras of Meta-World's scene (sawyer_xyz_base.xml).
CAMERAS = ("corner", "corner2", "corner3", "corner4", "topview", "gripperPOV", "behindGripper")


def check_cameras(cameras: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """The cameras as a tuple; raises :class:`ConfigError` naming an unknown or repeated camera."""
    cameras = tuple(cameras)
    for camera in cameras:
        if camera not in CAMERAS:
            close = difflib.get_close_matches(camera, CAMERAS, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"unknown Meta-World camera {camera!r}{hint} (known: {', '.join(CAMERAS)})")
    if len(set(cameras)) != len(cameras):
        raise ConfigError(f"cameras are repeated: {', '.join(cameras)}")
    return cameras


# metaworld.env_dict.MT10_V3, in its order.
MT10: tuple[str, ...] = (
    "reach-v3",
    "push-v3",
    "pick-place-v3",
    "door-open-v3",
    "drawer-open-v3",
    "drawer-close-v3",
    "button-press-topdown-v3",
    "peg-insert-side-v3",
    "window-open-v3",
    "window-close-v3",
)

# One instruction per MT50 task (metaworld.env_dict.MT50_V3, in its order). Written for this project: each says what
# success means in the simulator (e.g. hand-insert succeeds when the block reaches the hole, not the hand).
INSTRUCTIONS: dict[str, str] = {
    "assembly-v3": "pick up the nut and fit it over the peg",
    "basketball-v3": "pick up the ball and drop it into the basket",
    "bin-picking-v3": "pick up the cube and move it from one bin into the other bin",
    "box-close-v3": "pick up the lid and put it on the box",
    "button-press-topdown-v3": "press the button down from above",
    "button-press-topdown-wall-v3": "press the button down from above next to the wall",
    "button-press-v3": "push the button on the front of the box",
    "button-press-wall-v3": "reach past the wall and push the button",
    "coffee-button-v3": "press the button on the coffee machine",
    "coffee-pull-v3": "pull the mug away from the coffee machine",
    "coffee-push-v3": "push the mug under the coffee machine",
    "dial-turn-v3": "turn the dial",
    "disassemble-v3": "lift the nut off the peg",
    "door-close-v3": "push the door closed",
    "door-lock-v3": "turn the lock on the door to lock it",
    "door-open-v3": "pull the door open by its handle",
    "door-unlock-v3": "turn the lock on the door to unlock it",
    "hand-insert-v3": "push the block into the hole in the table",
    "drawer-close-v3": "push the drawer closed",
    "drawer-open-v3": "pull the drawer open",
    "faucet-open-v3": "turn the faucet handle to open the faucet",
    "faucet-close-v3": "turn the faucet handle to close the faucet",
    "hammer-v3": "pick up the hammer and drive the nail into the wall",
    "handle-press-side-v3": "press the handle down from the side",
    "handle-press-v3": "press the handle down",
    "handle-pull-side-v3": "pull the handle up from the side",
    "handle-pull-v3": "pull the handle up",
    "lever-pull-v3": "pull the lever up",
    "pick-place-wall-v3": "pick up the puck, carry it over the wall and place it at the goal",
    "pick-out-of-hole-v3": "pick the peg out of the hole and lift it to the goal",
    "pick-place-v3": "pick up the puck and place it at the goal",
    "plate-slide-v3": "slide the plate into the cabinet",
    "plate-slide-side-v3": "slide the plate sideways into the cabinet",
    "plate-slide-back-v3": "slide the plate back out of the cabinet",
    "plate-slide-back-side-v3": "slide the plate sideways out of the cabinet",
    "peg-insert-side-v3": "pick up the peg and insert it sideways into the hole",
    "peg-unplug-side-v3": "pull the peg sideways out of its socket",
    "soccer-v3": "push the ball into the goal",
    "stick-push-v3": "grab the stick and use it to push the bottle to the goal",
    "stick-pull-v3": "grab the stick and use it to pull the bottle to the goal",
    "push-v3": "push the puck to the goal",
    "push-wall-v3": "push the puck around the wall to the goal",
    "push-back-v3": "pull the puck back to the goal",
    "reach-v3": "move the gripper to the goal",
    "reach-wall-v3": "move the gripper over the wall to the goal",
    "shelf-place-v3": "pick up the block and put it on the shelf",
    "sweep-into-v3": "sweep the block into the hole",
    "sweep-v3": "sweep the block off the side of the table",
    "window-open-v3": "slide the window open",
    "window-close-v3": "slide the window closed",
}

MT50: tuple[str, ...] = tuple(INSTRUCTIONS)


def _v3(names: str) -> tuple[str, ...]:
    return tuple(f"{name}{TASK_SUFFIX}" for name in names.split())


# Difficulty split used by SmolVLA / LeRobot for Meta-World (28 + 11 + 6 + 5 = 50 tasks).
DIFFICULTY_GROUPS: dict[str, tuple[str, ...]] = {
    "easy": _v3(
        "button-press button-press-topdown button-press-topdown-wall button-press-wall coffee-button dial-turn "
        "door-close door-lock door-open door-unlock drawer-close drawer-open faucet-close faucet-open handle-press "
        "handle-press-side handle-pull handle-pull-side lever-pull plate-slide plate-slide-back plate-slide-back-side "
        "plate-slide-side reach reach-wall window-close window-open peg-unplug-side"
    ),
    "medium": _v3(
        "basketball bin-picking box-close coffee-pull coffee-push hammer peg-insert-side push-wall soccer sweep "
        "sweep-into"
    ),
    "hard": _v3("assembly hand-insert pick-out-of-hole pick-place push push-back"),
    "very_hard": _v3("shelf-place disassemble stick-pull stick-push pick-place-wall"),
}

# Every name `resolve_tasks` accepts for a set of tasks.
TASK_GROUPS: dict[str, tuple[str, ...]] = {"mt10": MT10, "mt50": MT50, **DIFFICULTY_GROUPS}


def _group_key(name: str) -> str:
    return name.strip().lower().replace("-", "_").replace(" ", "_")


def _task_key(name: str) -> str:
    name = name.strip().lower().replace("_", "-")
    return name if name.endswith(TASK_SUFFIX) else f"{name}{TASK_SUFFIX}"


def _unknown(name: str) -> ConfigError:
    close = difflib.get_close_matches(_group_key(name), list(TASK_GROUPS), n=2, cutoff=0.6)
    close += difflib.get_close_matches(_task_key(name), list(MT50), n=3, cutoff=0.6)
    hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    return ConfigError(
        f"unknown Meta-World task or group {name!r}{hint} (groups: {', '.join(TASK_GROUPS)}; "
        f"tasks: the 50 MT50 names such as 'pick-place-v3')"
    )


def resolve_tasks(spec: str | Iterable[str]) -> list[str]:
    """Task names (``*-v3``) from a comma list or sequence of task names and group names, in order, without repeats.

    Groups: ``mt10``, ``mt50``, ``easy``, ``medium``, ``hard``, ``very_hard``. Task names may omit ``-v3``.
    Raises :class:`ConfigError` naming an unknown entry, with the closest known names.
    """
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    items = [item.strip() for item in items if item and item.strip()]
    if not items:
        raise ConfigError(f"no Meta-World tasks given (got {spec!r}); name tasks or a group such as 'mt10'")
    tasks: list[str] = []
    for item in items:
        if _group_key(item) in TASK_GROUPS:
            names = TASK_GROUPS[_group_key(item)]
        elif _task_key(item) in INSTRUCTIONS:
            names = (_task_key(item),)
        else:
            raise _unknown(item)
        tasks.extend(name for name in names if name not in tasks)
    return tasks


def _check_task(task: str) -> str:
    key = _task_key(task)
    if key not in INSTRUCTIONS:
        raise _unknown(task)
    return key


def instruction(task: str) -> str:
    """The English instruction of a task, e.g. ``'pick up the puck and place it at the goal'``."""
    return INSTRUCTIONS[_check_task(task)]


def difficulty_group(task: str) -> str:
    """``'easy'``, ``'medium'``, ``'hard'`` or ``'very_hard'`` (the SmolVLA/LeRobot split)."""
    task = _check_task(task)
    return next(group for group, names in DIFFICULTY_GROUPS.items() if task in names)
