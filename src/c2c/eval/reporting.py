"""Report pieces shared by the closed-loop evaluations (:mod:`c2c.eval.metaworld_eval`, :mod:`c2c.eval.libero_eval`).

Example::

    percent(0.925)                        # "92.5%"
    precision_hint(50, "trials")          # "+-14 points per task (95%, worst case) at 50 trials"
    write_results(results, report_text, out)
    save_success_chart(out, {"reach-v3": 0.85}, {}, title="plan: 85.0% over 20 episodes")

Numbers: ``mean`` rounds to 4 digits, ``percent`` and ``number`` write ``-`` for a missing value.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any


def mean(values: list[float]) -> float | None:
    """The mean of ``values`` rounded to 4 digits; None when there are none."""
    return round(sum(values) / len(values), 4) if values else None


def percent(rate: float | None) -> str:
    """A success rate in percent with one decimal ("-" for None)."""
    return "-" if rate is None else f"{100 * rate:.1f}%"


def number(value: float | None, digits: int = 1) -> str:
    """``value`` with ``digits`` decimals ("-" for None)."""
    return "-" if value is None else f"{value:.{digits}f}"


def rate_with_counts(rate: float | None, successes: int, total: int) -> str:
    """"92.0% (46/50)": a success rate with its counts."""
    return f"{percent(rate)} ({successes}/{total})"


def precision_hint(count: int, unit: str) -> str:
    """How precise one task's rate is: the worst-case 95% half-width of a binomial rate at ``count`` rollouts
    (``unit`` names them, e.g. "trials" or "episodes")."""
    half_width = 100 * 1.96 * math.sqrt(0.25 / count)
    return f"+-{half_width:.0f} points per task (95%, worst case) at {count} {unit}"


def video_lines(videos: Iterable[str | None]) -> list[str]:
    """Report lines linking the recorded videos (none when no rollout was recorded)."""
    paths = [video for video in videos if video]
    return ["", "Videos: " + ", ".join(f"[{Path(v).stem}]({v})" for v in paths)] if paths else []


def write_results(results: dict[str, Any], report: str, out: Path) -> None:
    """results.json (``results``) and report.md (``report``) into ``out``, each written atomically."""
    from c2c.utils.io import atomic_write_json, atomic_write_text

    atomic_write_json(out / "results.json", results)
    atomic_write_text(out / "report.md", report)


def save_success_chart(out: Path, tasks: dict[str, float], groups: dict[str, float], title: str) -> None:
    """success.png in ``out``: bars of the per-task (and, when given, per-group) success rates."""
    from c2c.eval.plotting import success_chart

    success_chart(tasks, groups, out / "success.png", title=title)
