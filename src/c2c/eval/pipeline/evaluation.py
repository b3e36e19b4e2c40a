"""The evaluation stages of `c2c run`: closed-loop Meta-World or LIBERO evaluations of the trained variants, and
Meta-World evaluations started while other policies still train (:class:`EarlyEvaluations`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from c2c.eval.pipeline.cache import json_safe, run_stage, stage_stamp
from c2c.eval.pipeline.scheduling import use_threads
from c2c.eval.presets import PipelinePreset


def stage_evaluations(preset: PipelinePreset, out: Path, force: bool, workers: int | None = None,
                      variants: list[str] | None = None, done: dict[str, dict] | None = None,
                      show_progress: bool = True, root: str = "policy") -> dict[str, dict]:
    """Closed-loop evaluation of every trained variant (or of ``variants``) on the same unseen placements.
    ``done``: records of evaluations this run already made (kept as they are, even with ``force``). ``root``: the
    policies are ``out/root/<variant>`` (``policy-takeover`` after a takeover round)."""
    if preset.simulator == "libero":
        return stage_libero_evaluations(preset, out, force, workers)
    from c2c.envs.metaworld_tasks import resolve_tasks
    from c2c.eval.metaworld_eval import evaluate_metaworld

    tasks = resolve_tasks(list(preset.tasks))
    records = {}
    for variant in variants or preset.variants:
        if done and variant in done:
            records[variant] = done[variant]
            continue
        policy_dir, eval_dir = out / root / variant, out / "eval" / variant
        settings = {"policy": variant, "policy_stage": stage_stamp(policy_dir), "tasks": tasks,
                    "episodes": preset.eval_episodes, "seed": preset.eval_seed, "max_steps": preset.eval_max_steps,
                    "replan_every": preset.replan_every, "videos": preset.videos}
        if root != "policy":  # only then, so that the evaluations of runs made before the option stay valid
            settings["policy_root"] = root

        def work(policy_dir: Path = policy_dir, eval_dir: Path = eval_dir) -> dict[str, Any]:
            results = evaluate_metaworld(policy_dir=policy_dir, tasks=tasks, episodes=preset.eval_episodes,
                                         seed=preset.eval_seed, replan_every=preset.replan_every,
                                         max_steps=preset.eval_max_steps, videos=preset.videos, workers=workers,
                                         out=eval_dir, show_progress=show_progress)
            return json_safe(results)

        records[variant] = run_stage(eval_dir, settings, force, work, f"eval {variant}")
    return records


class EarlyEvaluations:
    """Meta-World evaluations of policies that finished training while others still train with pinned threads,
    one at a time in a background thread, on the cores the finished training freed (they would idle otherwise).

    Nothing the trainings compute depends on it (their thread counts are pinned), and an evaluation's result does
    not depend on when it runs or on its worker count (one torch thread per episode runner either way).
    """

    def __init__(self, preset: PipelinePreset, out: Path, force: bool, root: str = "policy") -> None:
        import queue
        import threading

        self.preset, self.out, self.force, self.root = preset, out, force, root
        self.records: dict[str, dict] = {}
        self.error: BaseException | None = None
        self._queue: Any = queue.Queue()
        self._thread = threading.Thread(target=self._work, name="early-evaluations", daemon=True)
        self._thread.start()

    def start(self, variant: str, freed_threads: int) -> None:
        """Queue ``variant``'s evaluation with ``freed_threads`` workers (called as its training finishes)."""
        from tqdm.auto import tqdm

        tqdm.write(f"[eval {variant}] starts on the {freed_threads} core(s) its training freed; the others still train")
        self._queue.put((variant, freed_threads))

    def _work(self) -> None:
        while (job := self._queue.get()) is not None:
            variant, workers = job
            if self.error is not None:
                continue
            try:
                records = stage_evaluations(self.preset, self.out, self.force, workers=workers, variants=[variant],
                                            show_progress=False, root=self.root)
                self.records.update({name: {**record, "while_training": not record["skipped"]}
                                     for name, record in records.items()})
            except BaseException as error:  # noqa: BLE001 - raised again by join() in the main thread
                self.error = error

    def join(self) -> dict[str, dict]:
        """Wait for the queued evaluations; their records, or the first one's error raised again."""
        self._queue.put(None)
        self._thread.join()
        if self.error is not None:
            raise self.error
        return self.records


def stage_libero_evaluations(preset: PipelinePreset, out: Path, force: bool,
                             workers: int | None = None) -> dict[str, dict]:
    """Every variant on LIBERO's official protocol: init states 0..N-1 of each task, the suite's step limit."""
    from c2c.eval.libero_eval import evaluate_libero

    tasks = None if tuple(preset.tasks) == ("all",) else ",".join(preset.tasks)
    records = {}
    for variant in preset.variants:
        policy_dir, eval_dir = out / "policy" / variant, out / "eval" / variant
        settings = {"policy": variant, "policy_stage": stage_stamp(policy_dir), "suite": preset.suite,
                    "tasks": list(preset.tasks), "trials": preset.eval_episodes, "seed": preset.eval_seed,
                    "max_steps": preset.eval_max_steps, "replan_every": preset.replan_every, "videos": preset.videos}

        def work(policy_dir: Path = policy_dir, eval_dir: Path = eval_dir) -> dict[str, Any]:
            use_threads(preset.threads)
            results = evaluate_libero(policy_dir, preset.suite, tasks=tasks, trials=preset.eval_episodes,
                                      seed=preset.eval_seed, replan_every=preset.replan_every, videos=preset.videos,
                                      out=eval_dir, max_steps=preset.eval_max_steps, workers=workers)
            return json_safe(results)

        records[variant] = run_stage(eval_dir, settings, force, work, f"eval {variant}")
    return records


def overall_success(result: dict[str, Any]) -> float | None:
    """Mean success over tasks of a Meta-World or a LIBERO evaluation's results."""
    if "suite_success_rate" in result:
        return result["suite_success_rate"]
    return result["overall"]["success_rate"]
