"""What a demonstration generator reports: per task the expert's record, and the run's frames, time and sizes;
and the progress bar it shows meanwhile."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from c2c.envs.demos.cache import directory_bytes, work_dir_path
from c2c.errors import ConfigError


@dataclass
class TaskReport:
    """The expert's record on one task and what went into the dataset."""

    task: str
    attempts: int
    successes: int
    episodes: int  # kept in the dataset
    frames: int
    seeds_attempted: list[int] = field(default_factory=list)

    @property
    def success_rate(self) -> float:
        return self.successes / self.attempts if self.attempts else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "attempts": self.attempts, "successes": self.successes, "success_rate": round(self.success_rate, 4),
            "episodes": self.episodes, "frames": self.frames, "seeds_attempted": self.seeds_attempted,
        }


@dataclass
class GenerationReport:
    """What a demonstration generator did; ``summary()`` is the table the command line prints."""

    out: Path
    work_dir: Path
    tasks: list[TaskReport]
    seconds: float  # wall time of this call
    frames_recorded: int  # frames rendered by this call (the rest came from the cache)
    dataset_bytes: int
    work_bytes: int
    already_complete: bool = False  # the dataset existed with the same settings; nothing was done

    @property
    def total_frames(self) -> int:
        return sum(task.frames for task in self.tasks)

    @property
    def total_episodes(self) -> int:
        return sum(task.episodes for task in self.tasks)

    def summary(self) -> str:
        width = max([len("task")] + [len(task.task) for task in self.tasks])
        lines = [f"{'task':<{width}}  expert success  episodes  frames", "-" * (width + 35)]
        for task in self.tasks:
            rate = f"{100 * task.success_rate:5.1f}% ({task.successes}/{task.attempts})"
            lines.append(f"{task.task:<{width}}  {rate:>14}  {task.episodes:>8}  {task.frames:>6}")
        lines.append("-" * (width + 35))
        lines.append(f"{'total':<{width}}  {'':>14}  {self.total_episodes:>8}  {self.total_frames:>6}")
        if self.already_complete:
            lines.append(f"{self.out}: already complete with these settings; nothing to do")
        else:
            rate = self.frames_recorded / self.seconds if self.seconds > 0 else 0.0
            lines.append(
                f"recorded {self.frames_recorded} frames in {self.seconds:.1f} s ({rate:.1f} frames/s); "
                f"{self.total_frames - self.frames_recorded} came from the cache"
            )
        per_1000 = self.dataset_bytes / max(self.total_frames, 1) * 1000
        lines.append(f"dataset: {self.out} ({megabytes(self.dataset_bytes)}, {megabytes(per_1000)} per 1000 frames)")
        lines.append(f"cache: {self.work_dir} ({megabytes(self.work_bytes)}; delete it when done adding episodes)")
        return "\n".join(lines)


def megabytes(count: float) -> str:
    return f"{count / 1024**2:.1f} MB"


def task_report(task: str, attempts: list[Any]) -> TaskReport:
    """The report of ``task`` whose kept attempts (:class:`~c2c.envs.demos.cache.Attempt`) are ``attempts``."""
    successes = [attempt for attempt in attempts if attempt.success]
    return TaskReport(task=task, attempts=len(attempts), successes=len(successes), episodes=len(successes),
                      frames=sum(attempt.length for attempt in successes),
                      seeds_attempted=[attempt.seed for attempt in attempts])


def report_existing(out: Path, extra_info: dict[str, Any], started: float) -> GenerationReport:
    """The report of a dataset found complete with the requested settings (its record in ``extra_info``)."""
    work_dir = work_dir_path(out)
    reports = [
        TaskReport(
            task=task, attempts=stats["attempts"], successes=stats["successes"], episodes=stats["episodes"],
            frames=stats["frames"], seeds_attempted=list(stats["seeds_attempted"]),
        )
        for task, stats in extra_info["expert"].items()
    ]
    return GenerationReport(
        out=out, work_dir=work_dir, tasks=reports, seconds=time.perf_counter() - started, frames_recorded=0,
        dataset_bytes=directory_bytes(out), work_bytes=directory_bytes(work_dir), already_complete=True,
    )


def check_values(checks: list[tuple[str, Any, bool, str]]) -> None:
    """Raise :class:`ConfigError` for the first ``(name, value, ok, expected)`` that is not ``ok``."""
    for name, value, ok, expected in checks:
        if not ok:
            raise ConfigError(f"{name} must be {expected}, got {value}")


class Progress:
    """A tqdm bar over kept episodes, or nothing."""

    def __init__(self, total: int, enabled: bool, desc: str) -> None:
        self.bar = None
        if enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc=desc, unit="ep", dynamic_ncols=True)

    def show(self, label: str, successes: int, attempts: int) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(f"{label} expert {successes}/{attempts}", refresh=True)

    def advance(self, count: int = 1) -> None:
        if self.bar is not None:
            self.bar.update(count)

    def shrink(self, count: int) -> None:
        """``count`` fewer episodes than planned will be kept (a task ran out of attempts)."""
        if self.bar is not None and count:
            self.bar.total -= count
            self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
