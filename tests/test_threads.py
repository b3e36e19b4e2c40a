"""free_cpus: an explicit OMP_NUM_THREADS wins; otherwise the cores other processes leave free, at least one."""

import os

from c2c.utils import threads


def test_explicit_thread_count_wins(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert threads.free_cpus() == 3


def test_busy_cores_are_left_alone(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    monkeypatch.setattr(threads, "busy_cpus", lambda: 0)
    assert threads.free_cpus() == 2
    monkeypatch.setattr(threads, "busy_cpus", lambda: 1)
    assert threads.free_cpus() == 1
    monkeypatch.setattr(threads, "busy_cpus", lambda: 5)
    assert threads.free_cpus() == 1


def test_busy_cpus_reads_this_machine():
    assert threads.busy_cpus(samples=2, interval=0.01) >= 0
