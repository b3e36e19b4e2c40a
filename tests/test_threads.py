"""free_cpus: an explicit OMP_NUM_THREADS wins; otherwise the cores other processes leave free, at least one."""

import os
import time

import pytest

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
    """A process spinning at normal priority is always runnable (state R): the real /proc counts it."""
    import subprocess
    import sys

    if os.nice(0) > 0:
        pytest.skip("run under nice: the spinner would inherit it, and niced threads are not counted")
    spin = "import time\nend = time.time() + 60\nwhile time.time() < end: pass"  # ends by itself if orphaned
    spinner = subprocess.Popen([sys.executable, "-c", spin])
    try:
        time.sleep(0.2)  # past the interpreter's start-up reads
        assert threads.busy_cpus(samples=5, interval=0.02) >= 1
    finally:
        spinner.kill()
        spinner.wait()


def _task(proc, pid, tid, state, nice, comm="python (x)"):
    """A <proc>/<pid>/task/<tid>/stat line as Linux writes it (comm may hold spaces and parentheses)."""
    path = proc / str(pid) / "task" / str(tid)
    path.mkdir(parents=True)
    fields = [state, "1"] + ["0"] * 14 + [str(nice)] + ["1", "0"]  # fields 3..21: state, ppid, ..., nice (19)
    (path / "stat").write_text(f"{tid} ({comm}) " + " ".join(fields) + "\n")


def test_niced_and_sleeping_threads_leave_the_cores_free(tmp_path):
    _task(tmp_path, 100, 100, "R", 0)  # a training at normal priority
    _task(tmp_path, 100, 101, "R", 0)  # its second thread
    _task(tmp_path, 100, 102, "S", 0)  # a sleeping one
    _task(tmp_path, 200, 200, "R", 19)  # a background job run with nice -n 19
    _task(tmp_path, 300, 300, "R", -20, comm="kworker/0:1")
    _task(tmp_path, os.getpid(), os.getpid(), "R", 0)  # this process is not "other work"
    (tmp_path / "self").mkdir()
    assert threads.busy_cpus(samples=3, interval=0.0, proc=tmp_path) == 3
    assert threads.busy_cpus(samples=1, proc=tmp_path / "missing") == 0
    (tmp_path / "stat").write_text("cpu  1 2 3\nprocs_running 1\nprocs_blocked 0\n")  # only the caller runs
    assert threads.busy_cpus(samples=1, proc=tmp_path) == 0
