"""The evaluation worker pool (c2c.eval.workers) with a tiny runner: no simulator, no policy."""

from __future__ import annotations

import os

import pytest

from c2c.errors import C2CError, ConfigError
from c2c.eval import workers
from c2c.eval.workers import Progress, WorkerPool


class TinyRunner:
    """Made once per process from its settings (what to do with a group); picklable by reference."""

    def __init__(self, behaviour: str) -> None:
        if behaviour == "refuse to start":
            raise ConfigError("the runner cannot start: no policy here")
        self.behaviour = behaviour

    def run_group(self, group: list[int]) -> list[dict]:
        if self.behaviour == "c2c error" and 3 in group:
            raise ConfigError("episode 3 asked for a missing camera 'image9'")
        if self.behaviour == "bug" and 3 in group:
            raise ValueError("a bug in episode 3")
        if self.behaviour == "die":
            os._exit(1)  # as the out-of-memory killer would
        return [{"episode": episode, "success": episode % 2 == 0, "pid": os.getpid()} for episode in group]

    def close(self) -> None:
        pass


GROUPS = [[0, 1], [2, 3], [4]]


def test_every_group_s_results_come_back_from_the_processes():
    with WorkerPool(2, TinyRunner, "work") as pool:
        records = list(pool.run(GROUPS))
    assert sorted(record["episode"] for record in records) == [0, 1, 2, 3, 4]
    assert os.getpid() not in {record["pid"] for record in records}
    for group in GROUPS:  # a group's results stay together, in the runner's order
        at = [record["episode"] for record in records].index(group[0])
        assert [record["episode"] for record in records[at:at + len(group)]] == group


def test_a_c2c_error_in_a_worker_reaches_the_caller_as_a_c2c_error_with_its_message():
    with pytest.raises(C2CError) as caught, WorkerPool(1, TinyRunner, "c2c error") as pool:
        list(pool.run(GROUPS))
    assert str(caught.value) == "episode 3 asked for a missing camera 'image9'"


def test_a_runner_that_cannot_start_is_reported_with_its_message():
    with pytest.raises(C2CError, match="^the runner cannot start: no policy here$"), \
            WorkerPool(1, TinyRunner, "refuse to start") as pool:
        list(pool.run(GROUPS))


def test_any_other_error_is_a_runtime_error_with_the_worker_s_traceback():
    with pytest.raises(RuntimeError) as caught, WorkerPool(1, TinyRunner, "bug") as pool:
        list(pool.run(GROUPS))
    message = str(caught.value)
    assert message.startswith("an evaluation worker failed: ValueError: a bug in episode 3\n")
    assert "Traceback" in message and "in run_group" in message


def test_workers_that_all_died_are_a_clear_error_not_a_hang(monkeypatch):
    monkeypatch.setattr(workers, "RESULT_TIMEOUT_S", 0.2)
    with pytest.raises(C2CError, match="every evaluation worker process died"), \
            WorkerPool(2, TinyRunner, "die") as pool:
        list(pool.run(GROUPS))


def test_progress_hands_on_every_record_and_counts_the_successes():
    seen = []
    progress = Progress(3, enabled=False, on_record=seen.append, desc="tiny eval")
    for episode in range(3):
        progress.advance({"task": "reach", "episode": episode, "success": episode != 1})
    progress.close()
    assert [record["episode"] for record in seen] == [0, 1, 2]
    assert (progress.successes, progress.done) == (2, 3)
