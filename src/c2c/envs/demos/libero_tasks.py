"""Which LIBERO tasks the scripted experts do, and the checks of a demonstration request's tasks and placements."""

from __future__ import annotations

from c2c.envs.libero_env import TASKS_PER_SUITE, suite_tasks
from c2c.errors import ConfigError

EXPERT_SUITES = ("libero_object", "libero_spatial", "libero_goal", "libero_10")  # suites the scripted experts cover
# Tasks of those suites no scripted expert does (see c2c.envs.libero_skills), with the reason.
UNSUPPORTED_TASKS: dict[str, dict[str, str]] = {
    "libero_goal": {
        "open_the_top_drawer_and_put_the_bowl_inside":
            "the drawer opens, but fetching the bowl from under it pushes it back and the bowl is not placed (0/10)",
    },
    "libero_10": {
        "KITCHEN_SCENE3_turn_on_the_stove_and_put_the_moka_pot_on_it":
            "the stove turns on, but the moka pot is not grasped (its handle and spout defeat the box grasp; 0/3)",
        "KITCHEN_SCENE4_put_the_black_bowl_in_the_bottom_drawer_of_the_cabinet_and_close_it":
            "the bowl goes in, but pushing the drawer shut stalls half way (0/3)",
        "KITCHEN_SCENE8_put_both_moka_pots_on_the_stove":
            "the moka pots are not grasped (0/3)",
        "KITCHEN_SCENE6_put_the_yellow_and_white_mug_in_the_microwave_and_close_it":
            "the mug must go sideways into the microwave and its hinged door be swung shut; no skill does either",
    },
}
PLACEMENTS = ("random",)  # official init states are for evaluation only
def parse_task_ids(tasks: str | list[int] | tuple[int, ...]) -> list[int]:
    """``"all"``, ``"0,3"`` or a list of ints -> sorted unique task ids in 0..9."""
    if isinstance(tasks, str):
        if tasks.strip() == "all":
            return list(range(TASKS_PER_SUITE))
        try:
            ids = [int(item) for item in tasks.split(",") if item.strip()]
        except ValueError:
            raise ConfigError(f"--tasks must be 'all' or a comma list of task ids (0..9), got {tasks!r}") from None
    else:
        ids = [int(item) for item in tasks]
    if not ids:
        raise ConfigError("no tasks given")
    bad = [task for task in ids if not 0 <= task < TASKS_PER_SUITE]
    if bad:
        raise ConfigError(f"unknown task ids {bad} (valid: 0..{TASKS_PER_SUITE - 1})")
    return sorted(set(ids))


def check_expert_tasks(suite: str, names: dict[int, str], task_ids: list[int]) -> None:
    """Raise :class:`ConfigError` naming each requested task of ``suite`` that no scripted expert does."""
    unsupported = UNSUPPORTED_TASKS.get(suite, {})
    bad = [f"task {task_id} {names[task_id]!r} ({unsupported[names[task_id]]})" for task_id in task_ids
           if names[task_id] in unsupported]
    if bad:
        raise ConfigError(f"the scripted LIBERO experts cannot do {suite} {'; '.join(bad)}; leave it out of --tasks")


def expert_task_ids(suite: str) -> tuple[list[int], dict[int, str]]:
    """The task ids of ``suite`` a scripted expert does, and ``{task id: reason}`` for the others."""
    unsupported = UNSUPPORTED_TASKS.get(suite, {})
    supported, skipped = [], {}
    for task in suite_tasks(suite):
        if task["name"] in unsupported:
            skipped[task["task_id"]] = unsupported[task["name"]]
        else:
            supported.append(task["task_id"])
    return supported, skipped


def check_placements(placements: str) -> str:
    if placements in ("official", "init_states", "init-states"):
        raise ConfigError("demonstrations are never generated from LIBERO's official init states: those are held "
                          "out for evaluation; demonstrations use the env's own random resets (--placements random)")
    if placements not in PLACEMENTS:
        raise ConfigError(f"unknown placements {placements!r} (known: {', '.join(PLACEMENTS)})")
    return placements
