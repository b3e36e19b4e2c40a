"""Benchmark: `c2c serve` under load on loopback: latency and throughput of N concurrent clients against one client,
batching, and bad inputs injected during the load (which must not disturb the well-behaved clients).

The server runs as ``c2c serve`` in a process of its own, started with a policy directory (the argument) or, when
none is given, a random-weight LIBERO-shaped debug policy (``c2c.policy.testing``: cameras image/image2 at 16 px,
8-dim state, 7-dim actions, plan variant) saved to a temporary directory. Clients speak openpi's request keys
through the server's key map, from threads of this process.

(a) one client, M requests back to back: p50/p99 latency and requests/s;
(b) N clients x M requests at once (each its own observation, replies checked against the one-client answer for
    it), while a separate connection sends each bad input (malformed msgpack, refused dtypes, bad shape and byte
    count, missing key, wrong image size, non-finite state, text frame, oversized message) and checks the error;
(c) amplification: one well-behaved client sends requests back to back through windows of ``--attack-seconds``:
    ``idle``; ``bulk``, another process keeping ``--attack-connections`` connections sending ``--attack-messages``
    plain messages of 15.3 MiB each (one bin in a map: the cost of the bytes alone), reconnecting when refused;
    ``amplification``, the same with the amplification message (a list header declaring 16 million elements, then
    16 million one-byte empty lists: 15.3 MiB, under the 16 MiB message limit); ``burst``, one round of the
    amplification attack (each connection sends its messages once), the window lasting from its start to its end.
    ``--attack-rounds`` rounds of the windows, interleaved, so that other load on the machine weighs on each alike.
    Reported per window kind (pooled): the client's p50/p99, the server's resident memory (RSS, sampled every 20 ms
    from /proc) and CPU time. Targets: p99 under the amplification flood and burst within 2x of idle, RSS < 2x.

Everything stops at ``--max-seconds``; unfinished requests are reported, not waited for.

    python benchmarks/bench_serve.py [POLICY_DIR] --clients 8 --requests 200 --out runs/bench-serve
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from c2c.serve.client import PolicyClient
from c2c.serve.keymap import KeyMap
from c2c.serve.testing import bad_requests, probe, to_wire
from c2c.utils.io import atomic_write_json, atomic_write_text

WARMUP = 5
ATOL = 1e-4  # batched decodes agree with single ones to float rounding
ATTACK_ELEMENTS = 16_000_000
TARGET_P99_RATIO = 2.0
TARGET_RSS_RATIO = 2.0


def random_policy_dir(directory: Path) -> Path:
    """A random-weight LIBERO-shaped debug policy saved to ``directory``."""
    import torch

    from c2c.policy.policy import PlanExecutePolicy
    from c2c.policy.testing import INSTRUCTIONS, debug_config, random_action_tokenizer

    torch.manual_seed(0)
    config = debug_config("plan", cameras=("image", "image2"), state_dim=8, action_dim=7)
    policy = PlanExecutePolicy.build(config, random_action_tokenizer("joint", action_dim=7, state_dim=8),
                                     instructions=INSTRUCTIONS)
    return policy.save_pretrained(directory)


def observation_for(metadata: dict[str, Any], seed: int) -> dict[str, Any]:
    """A random observation in the server's wire keys, shaped as its metadata says."""
    rng = np.random.default_rng(seed)
    size = metadata["image_size"]
    ours: dict[str, Any] = {key: rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
                            for key in metadata["image_keys"]}
    ours["observation.state"] = rng.uniform(-1, 1, metadata["state_dim"]).astype(np.float32)
    ours["task"] = ["pick up the puck and place it at the goal", "open the drawer"][seed % 2]
    key_map = metadata["key_map"]
    return to_wire(ours, KeyMap(key_map["name"], key_map["keys"]))


class Server:
    """``c2c serve`` in a subprocess on a free loopback port."""

    def __init__(self, policy_dir: Path, threads: int, max_batch: int, log_path: Path) -> None:
        self.log = log_path.open("w")
        command = [sys.executable, "-m", "c2c", "serve", "--policy", str(policy_dir), "--port", "0",
                   "--threads", str(threads), "--max-batch", str(max_batch)]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=self.log, text=True)
        line = self.process.stdout.readline()
        match = re.search(r"on (ws://\S+) ", line)
        if not match:
            self.stop()
            raise SystemExit(f"the server did not start (see {log_path}): {line!r}")
        self.url, self.banner = match.group(1), line.strip()

    def stop(self) -> str:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                out, _ = self.process.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                out, _ = self.process.communicate()
        else:
            out = self.process.stdout.read()
        self.log.close()
        return out.strip()


def percentiles(latencies_s: list[float]) -> dict[str, float | None]:
    if not latencies_s:
        return {"p50_ms": None, "p99_ms": None, "mean_ms": None, "max_ms": None}
    ms = np.asarray(latencies_s) * 1000
    return {"p50_ms": round(float(np.percentile(ms, 50)), 2), "p99_ms": round(float(np.percentile(ms, 99)), 2),
            "mean_ms": round(float(ms.mean()), 2), "max_ms": round(float(ms.max()), 2)}


class Load:
    """Clients sending their observation ``requests`` times each, checked against a reference answer."""

    def __init__(self, url: str, observations: list[dict[str, Any]], references: list[np.ndarray], requests: int,
                 deadline: float) -> None:
        self.url, self.observations, self.references = url, observations, references
        self.requests, self.deadline = requests, deadline
        self.latencies: list[float] = []
        self.batch_sizes: list[int] = []
        self.queue_ms: list[float] = []
        self.infer_ms: list[float] = []
        self.errors: list[str] = []
        self.done = 0
        self.lock = threading.Lock()

    def client(self, index: int) -> None:
        observation, reference = self.observations[index], self.references[index]
        try:
            with PolicyClient(self.url) as client:
                for _ in range(self.requests):
                    if time.perf_counter() > self.deadline:
                        return
                    started = time.perf_counter()
                    reply = client.infer(observation)
                    elapsed = time.perf_counter() - started
                    timing = reply["server_timing"]
                    with self.lock:
                        self.latencies.append(elapsed)
                        self.batch_sizes.append(int(timing["batch_size"]))
                        self.queue_ms.append(float(timing["queue_ms"]))
                        self.infer_ms.append(float(timing["infer_ms"]))
                        self.done += 1
                        if not np.allclose(reply["actions"], reference, atol=ATOL):
                            self.errors.append(f"client {index}: wrong actions")
        except Exception as error:  # noqa: BLE001 - every failure is counted
            with self.lock:
                self.errors.append(f"client {index}: {type(error).__name__}: {error}")

    def run(self, clients: int) -> float:
        threads = [threading.Thread(target=self.client, args=(index,), daemon=True) for index in range(clients)]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(max(0.0, self.deadline - time.perf_counter()) + 30)
        return time.perf_counter() - started

    def summary(self, clients: int, seconds: float) -> dict[str, Any]:
        return {
            "clients": clients, "requests_per_client": self.requests, "completed": self.done,
            "planned": clients * self.requests, "seconds": round(seconds, 2),
            "throughput_rps": round(self.done / seconds, 2) if seconds else None,
            **percentiles(self.latencies),
            "mean_batch_size": round(statistics.mean(self.batch_sizes), 2) if self.batch_sizes else None,
            "max_batch_size": max(self.batch_sizes, default=None),
            "server_queue_ms_p50": round(float(np.median(self.queue_ms)), 2) if self.queue_ms else None,
            "server_infer_ms_p50": round(float(np.median(self.infer_ms)), 2) if self.infer_ms else None,
            "errors": len(self.errors), "error_samples": self.errors[:5],
        }


def inject_bad_inputs(url: str, wire: dict[str, Any], metadata: dict[str, Any], start_after: float,
                      results: list[dict[str, Any]], stop: threading.Event) -> None:
    """Each bad input from a connection of its own, spread over the load."""
    wire_of = {ours: w for w, ours in metadata["key_map"]["keys"].items()}
    cases = bad_requests(wire, state_key=wire_of.get("observation.state", "observation.state"),
                         image_key=wire_of.get(metadata["image_keys"][0], metadata["image_keys"][0]),
                         prompt_key=wire_of.get("task", "task"), max_message_bytes=metadata["max_message_bytes"])
    stop.wait(start_after)
    for name, message, expected in cases:
        if stop.is_set():
            break
        try:
            ok, detail = probe(url, message, expected)
        except Exception as error:  # noqa: BLE001 - reported
            ok, detail = False, f"{type(error).__name__}: {error}"
        results.append({"input": name, "refused_as_expected": ok, "server_said": detail[:200]})
        stop.wait(0.05)


def amplification_message(elements: int = ATTACK_ELEMENTS) -> bytes:
    """A list header declaring ``elements`` elements, then that many one-byte empty lists."""
    return b"\xdd" + elements.to_bytes(4, "big") + b"\x90" * elements


def bulk_message(size: int) -> bytes:
    """A message of ``size`` bytes that builds nothing large: one bin in a map (refused: it lacks every key)."""
    import msgpack

    return msgpack.packb({"padding": b"\0" * (size - 20)}, use_bin_type=True)


def attack_process(url: str, kind: str, connections: int, messages: int, once: bool, ready: Any, stop: Any,
                   results: Any) -> None:
    """In a process of its own: ``connections`` threads, each connecting, sending ``messages`` messages of ``kind``
    (``amplification`` or ``bulk``, as large) back to back and reading the answer; again and again until ``stop``,
    or one time each with ``once``. Counts and this process's CPU time go to ``results``."""
    import logging
    import resource

    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    logging.getLogger("websockets").setLevel(logging.CRITICAL)  # the resets this client gets, as tracebacks
    message = amplification_message() if kind == "amplification" else bulk_message(5 + ATTACK_ELEMENTS)
    counts: dict[str, Any] = {"connections_opened": 0, "messages_sent": 0, "refused": 0, "answers": {}}
    lock = threading.Lock()
    opened = threading.Barrier(connections + 1)

    def attacker() -> None:
        first = True
        while first or not (once or stop.is_set()):
            answer: Any = "no answer"
            try:
                with connect(url, compression=None, max_size=None, open_timeout=30, close_timeout=5,
                             proxy=None) as connection:
                    connection.recv(timeout=30)  # the metadata
                    if first:
                        opened.wait(60)  # every connection open before the first message
                    with lock:
                        counts["connections_opened"] += 1
                    try:
                        for _ in range(messages):
                            connection.send(message)
                            with lock:
                                counts["messages_sent"] += 1
                    except ConnectionClosed:
                        pass
                    answer = connection.recv(timeout=120)
            except ConnectionClosed as closed:
                answer = f"closed with code {closed.rcvd.code if closed.rcvd else None}"
            except Exception as error:  # noqa: BLE001 - counted
                answer = f"{type(error).__name__}: {error}"
            first = False
            answer = answer if isinstance(answer, str) else "a binary reply"
            with lock:
                counts["refused"] += answer.startswith("bad request: ")
                counts["answers"][answer[:160]] = counts["answers"].get(answer[:160], 0) + 1

    threads = [threading.Thread(target=attacker, daemon=True) for _ in range(connections)]
    for thread in threads:
        thread.start()
    opened.wait(60)
    ready.set()
    for thread in threads:
        thread.join()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    counts["cpu_s"] = round(usage.ru_utime + usage.ru_stime, 2)
    results.put(counts)


class RssSampler:
    """The server process's resident memory (``/proc/PID/status`` VmRSS) every ``every_s``; max per window."""

    def __init__(self, pid: int, every_s: float = 0.02) -> None:
        self.pid, self.every_s = pid, every_s
        self.current_max_kb = 0
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def read(self) -> dict[str, int]:
        fields = {}
        with open(f"/proc/{self.pid}/status") as status:
            for line in status:
                name, _, value = line.partition(":")
                if name in ("VmRSS", "VmHWM"):
                    fields[name] = int(value.split()[0])
        return fields

    def _run(self) -> None:
        while not self.stop.wait(self.every_s):
            try:
                rss = self.read()["VmRSS"]
            except (OSError, KeyError, ValueError):
                return
            with self.lock:
                self.current_max_kb = max(self.current_max_kb, rss)

    def window(self) -> int:
        """The largest RSS (kB) since the last call."""
        with self.lock:
            peak, self.current_max_kb = self.current_max_kb, 0
        return peak

    def cpu_s(self) -> float:
        """CPU seconds (user + system) the process has used."""
        with open(f"/proc/{self.pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    @staticmethod
    def peak_kb(pid: int) -> int:
        """The process's peak resident memory so far (VmHWM)."""
        with open(f"/proc/{pid}/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)


class WellBehaved:
    """One client sending its request back to back in a thread; latencies and server timings per window. Paused
    between windows, so that a request is counted in the window it started in."""

    def __init__(self, url: str, observation: dict[str, Any], reference: np.ndarray) -> None:
        self.observation, self.reference = observation, reference
        self.client = PolicyClient(url)
        self.latencies: list[float] = []
        self.infer_ms: list[float] = []
        self.errors: list[str] = []
        self.lock = threading.Lock()
        self.stop, self.running, self.idle = threading.Event(), threading.Event(), threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            while not self.stop.is_set():
                if not self.running.is_set():
                    self.idle.set()
                    self.running.wait(0.05)
                    continue
                self.idle.clear()
                started = time.perf_counter()
                reply = self.client.infer(self.observation)
                elapsed = time.perf_counter() - started
                with self.lock:
                    self.latencies.append(elapsed)
                    self.infer_ms.append(float(reply["server_timing"]["infer_ms"]))
                    if not np.allclose(reply["actions"], self.reference, atol=ATOL):
                        self.errors.append("wrong actions")
        except Exception as error:  # noqa: BLE001 - counted
            with self.lock:
                self.errors.append(f"{type(error).__name__}: {error}")

    def pause(self, timeout_s: float) -> None:
        """Send no new request; wait (at most ``timeout_s``) for the one in flight."""
        self.running.clear()
        self.idle.clear()
        self.idle.wait(timeout_s)

    def resume(self) -> None:
        self.running.set()

    def take(self) -> tuple[list[float], list[float], list[str]]:
        """What was measured since the last call."""
        with self.lock:
            taken = self.latencies, self.infer_ms, self.errors
            self.latencies, self.infer_ms, self.errors = [], [], []
        return taken

    def close(self) -> None:
        self.stop.set()
        self.running.set()
        self.thread.join(60)
        self.client.close()


def flood_window(url: str, kind: str, client: WellBehaved, sampler: RssSampler,
                 args: argparse.Namespace) -> dict[str, Any]:
    """One window of the well-behaved client: ``idle`` for ``--attack-seconds``; ``bulk`` or ``amplification``
    floods for as long; ``burst``: from the start of one round of the amplification attack (each connection sends
    its messages once) to its end."""
    context = multiprocessing.get_context("spawn")
    ready, stop, results = context.Event(), context.Event(), context.Queue()
    attacker = None
    counts: dict[str, Any] = {}
    try:
        if kind != "idle":
            attacker = context.Process(target=attack_process, daemon=True, args=(
                url, "bulk" if kind == "bulk" else "amplification", args.attack_connections, args.attack_messages,
                kind == "burst", ready, stop, results))
            attacker.start()
            if not ready.wait(60):
                raise SystemExit(f"the {kind} flood did not connect within 60 s")
        client.take()
        client.resume()
        sampler.window()
        cpu_before, started = sampler.cpu_s(), time.perf_counter()
        if kind == "burst":
            attacker.join(args.max_seconds)
        else:
            time.sleep(args.attack_seconds)
        client.pause(args.max_seconds)  # the request in flight belongs to this window
        latencies, infer_ms, errors = client.take()
        rss_kb, cpu_s, seconds = sampler.window(), sampler.cpu_s() - cpu_before, time.perf_counter() - started
    finally:
        if attacker is not None:
            stop.set()
            try:
                counts = results.get(timeout=60)
            except Exception:  # noqa: BLE001 - reported as missing
                counts = {"error": "the flood process sent no counts"}
            attacker.join(30)
            if attacker.is_alive():
                attacker.kill()
    return {"kind": kind, "seconds": seconds, "latencies": latencies, "infer_ms": infer_ms, "errors": errors,
            "rss_kb": rss_kb, "cpu_s": cpu_s, "counts": counts}


def pooled(windows: list[dict[str, Any]]) -> dict[str, Any]:
    """The windows of one kind over all rounds, pooled."""
    latencies = [x for window in windows for x in window["latencies"]]
    infer_ms = [x for window in windows for x in window["infer_ms"]]
    errors = [x for window in windows for x in window["errors"]]
    counts = [window["counts"] for window in windows]
    total = {key: sum(c.get(key, 0) for c in counts) for key in ("messages_sent", "refused", "connections_opened")}
    return {
        "windows": len(windows), "seconds": round(sum(w["seconds"] for w in windows), 1),
        "requests": len(latencies), **percentiles(latencies),
        "server_infer_ms_p50": round(float(np.median(infer_ms)), 2) if infer_ms else None,
        "server_rss_mib_max": round(max(w["rss_kb"] for w in windows) / 1024, 1),
        "server_cpu_s": round(sum(w["cpu_s"] for w in windows), 2),
        "flood_cpu_s": round(sum(c.get("cpu_s", 0) for c in counts), 2) if any(counts) else None,
        **(total if any(counts) else {}),
        "answers": sorted({a for c in counts for a in c.get("answers", {})})[:5],
        "round_p99_ms": [percentiles(w["latencies"])["p99_ms"] for w in windows],
        "errors": len(errors), "error_samples": errors[:5],
    }


def amplification(url: str, pid: int, observation: dict[str, Any], reference: np.ndarray,
                  args: argparse.Namespace) -> dict[str, Any]:
    """Phase (c): rounds of windows (idle, bulk flood, amplification flood, amplification burst), interleaved so
    that the load of other processes on the machine weighs on every kind alike; pooled per kind."""
    asked = {kind.strip() for kind in args.floods.split(",")}
    kinds = [kind for kind in ("idle", "bulk", "amplification", "burst") if kind in asked]
    sampler = RssSampler(pid)
    client = WellBehaved(url, observation, reference)
    rounds: dict[str, list[dict[str, Any]]] = {kind: [] for kind in kinds}
    try:
        for index in range(args.attack_rounds):
            for kind in kinds:
                window = flood_window(url, kind, client, sampler, args)
                rounds[kind].append(window)
                stats = percentiles(window["latencies"])
                print(f"round {index + 1}, {kind}: {len(window['latencies'])} requests, p50 {stats['p50_ms']} ms, "
                      f"p99 {stats['p99_ms']} ms, server RSS {window['rss_kb'] / 1024:.0f} MiB, server CPU "
                      f"{window['cpu_s']:.2f} s, flood messages {window['counts'].get('messages_sent', 0)}",
                      flush=True)
    finally:
        client.close()
        sampler.close()
    result = {kind: pooled(windows) for kind, windows in rounds.items()}
    # The server's memory before any flood (the first idle window): later idle windows keep what the allocator
    # did not give back after a flood.
    rss_before = round(rounds["idle"][0]["rss_kb"] / 1024, 1) if rounds.get("idle") else None

    def ratio(kind: str, key: str) -> float | None:
        if kind not in result or "idle" not in result or result[kind][key] is None or not result["idle"][key]:
            return None
        return round(result[kind][key] / result["idle"][key], 2)

    def paired(kind: str) -> float | None:
        """The median over rounds of this kind's p99 over the idle window's of the same round."""
        each = [percentiles(w["latencies"])["p99_ms"] / percentiles(i["latencies"])["p99_ms"]
                for w, i in zip(rounds[kind], rounds.get("idle", []), strict=False)
                if w["latencies"] and i["latencies"]]
        return round(float(np.median(each)), 2) if each else None

    ratios = {kind: {"p99": ratio(kind, "p99_ms"), "p99_paired_median": paired(kind),
                     "rss": round(result[kind]["server_rss_mib_max"] / rss_before, 2) if rss_before else None}
              for kind in kinds if kind != "idle"}
    judged = [kind for kind in ("amplification", "burst") if kind in ratios]
    return {
        "connections": args.attack_connections, "messages_per_connection": args.attack_messages,
        "elements": ATTACK_ELEMENTS, "message_bytes": 5 + ATTACK_ELEMENTS, "seconds_per_window": args.attack_seconds,
        "rounds": args.attack_rounds, "kinds": result, "ratios": ratios, "rss_before_floods_mib": rss_before,
        "p99_target": TARGET_P99_RATIO, "rss_target": TARGET_RSS_RATIO,
        "p99_met": bool(judged) and all(ratios[k]["p99"] is not None and ratios[k]["p99"] <= TARGET_P99_RATIO
                                        for k in judged),
        "rss_met": bool(judged) and all(ratios[k]["rss"] is not None and ratios[k]["rss"] < TARGET_RSS_RATIO
                                        for k in judged),
        "client_errors": sum(stats["errors"] for stats in result.values()),
        "peak_rss_mib": round(RssSampler.peak_kb(pid) / 1024, 1) if os.path.exists(f"/proc/{pid}") else None,
    }


def server_log_summary(path: Path) -> dict[str, int]:
    """What the server logged: refusals of the amplification message, other bad requests, tracebacks."""
    lines = path.read_text(errors="replace").splitlines() if path.exists() else []
    return {"amplification_refused": sum("a list of 16000000 elements" in line for line in lines),
            "bad_requests": sum(" bad request from " in line for line in lines),
            "tracebacks": sum(line.startswith("Traceback") for line in lines), "lines": len(lines)}


def markdown(report: dict[str, Any]) -> str:
    single, load = report["single_client"], report["concurrent"]
    rows = [("1 client", single), (f"{load['clients']} clients", load)]
    lines = [
        "# `c2c serve` under load", "",
        f"Policy `{report['policy']}`; server `{report['server_command']}`; {report['machine']}.",
        f"Bad inputs injected during the concurrent phase: {report['bad_inputs_refused']}/{len(report['bad_inputs'])} "
        f"refused as expected; well-behaved clients' errors: {load['errors']}.", "",
        "```", report["command"], "```", "",
        "| clients | requests done | p50 ms | p99 ms | mean ms | throughput req/s | mean batch | errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, stats in rows:
        lines.append(f"| {name} | {stats['completed']}/{stats['planned']} | {stats['p50_ms']} | {stats['p99_ms']} | "
                     f"{stats['mean_ms']} | {stats['throughput_rps']} | {stats['mean_batch_size']} | "
                     f"{stats['errors']} |")
    lines += ["", "| bad input | refused as expected | server said |", "|---|---|---|"]
    for case in report["bad_inputs"]:
        said = case["server_said"].replace("|", "\\|").replace("\n", " ")
        lines.append(f"| {case['input']} | {'yes' if case['refused_as_expected'] else '**no**'} | {said} |")
    amp = report.get("amplification")
    if amp:
        lines += ["", f"Floods: {amp['connections']} connections, each sending {amp['messages_per_connection']} "
                  f"messages of {amp['message_bytes']} bytes back to back, reconnecting when refused, "
                  f"{amp['seconds_per_window']} s per window; {amp['rounds']} rounds of the windows, interleaved. "
                  f"amplification: a list header declaring {amp['elements']} elements, then as many one-byte empty "
                  f"lists. bulk (the cost of the bytes alone): one bin of the same size in a map, refused for lacking "
                  f"every key. burst: one round of the amplification attack (each connection sends its messages "
                  f"once), the window lasting from its start to its end.", "",
                  "| window | well-behaved requests | p50 ms | p99 ms | max ms | p99 per round ms | server infer ms "
                  "p50 | server RSS MiB (max) | server CPU s | flood messages sent | error texts read | flood CPU s | "
                  "errors |",
                  "|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
        for name, stats in amp["kinds"].items():
            lines.append(f"| {name} | {stats['requests']} | {stats['p50_ms']} | {stats['p99_ms']} | "
                         f"{stats['max_ms']} | {', '.join(str(x) for x in stats['round_p99_ms'])} | "
                         f"{stats['server_infer_ms_p50']} | {stats['server_rss_mib_max']} | {stats['server_cpu_s']} | "
                         f"{stats.get('messages_sent', '-')} | {stats.get('refused', '-')} | "
                         f"{stats.get('flood_cpu_s') or '-'} | {stats['errors']} |")
        lines += ["", f"Server RSS before any flood (the first idle window): {amp['rss_before_floods_mib']} MiB."]
        lines += [f"{kind}: p99 x{r['p99']} of idle (pooled; median over rounds of the round's ratio: "
                  f"x{r['p99_paired_median']}), server RSS (max) x{r['rss']} of the RSS before any flood."
                  for kind, r in amp["ratios"].items()]
        lines += [f"Targets (amplification and burst: p99 <= x{amp['p99_target']}, RSS < x{amp['rss_target']}): p99 "
                  f"{'met' if amp['p99_met'] else '**not met**'}, RSS {'met' if amp['rss_met'] else '**not met**'}; "
                  f"server peak RSS (VmHWM) {amp['peak_rss_mib']} MiB."]
    logged = report.get("server_log")
    if logged:
        lines += ["", f"Server log: {logged['amplification_refused']} amplification messages refused, "
                  f"{logged['bad_requests']} bad requests in all, {logged['tracebacks']} tracebacks "
                  f"({logged['lines']} lines)."]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("policy", nargs="?", type=Path, default=None,
                        help="saved policy directory (default: a random-weight debug policy in a temp dir)")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients (default 8)")
    parser.add_argument("--requests", type=int, default=200, help="requests per client (default 200)")
    parser.add_argument("--max-batch", type=int, default=8, help="server --max-batch (default 8)")
    parser.add_argument("--threads", type=int, default=1, help="server torch threads (default 1)")
    parser.add_argument("--max-seconds", type=float, default=300.0, help="time bound of each phase (default 300)")
    parser.add_argument("--attack-seconds", type=float, default=5.0,
                        help="length of each idle and flood window (default 5; 0 skips phase c)")
    parser.add_argument("--attack-rounds", type=int, default=3, help="rounds of the windows (default 3)")
    parser.add_argument("--floods", default="idle,bulk,amplification,burst",
                        help="windows of phase c, comma-separated (default idle,bulk,amplification,burst)")
    parser.add_argument("--attack-connections", type=int, default=3, help="attacking connections (default 3)")
    parser.add_argument("--attack-messages", type=int, default=3,
                        help="amplification messages each connection sends back to back (default 3)")
    parser.add_argument("--out", type=Path, default=Path("runs/bench-serve"), help="output directory")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="c2c-bench-serve-") as tmp:
        policy_dir = args.policy if args.policy is not None else random_policy_dir(Path(tmp) / "policy")
        server = Server(policy_dir, args.threads, args.max_batch, args.out / "server.log")
        print(server.banner, flush=True)
        try:
            with PolicyClient(server.url) as client:
                metadata = client.metadata
                observations = [observation_for(metadata, seed) for seed in range(args.clients)]
                references = [client.infer(observation)["actions"] for observation in observations]
                for _ in range(WARMUP):
                    client.infer(observations[0])

            single = Load(server.url, observations, references, args.requests, time.perf_counter() + args.max_seconds)
            single_stats = single.summary(1, single.run(1))
            print(f"1 client: p50 {single_stats['p50_ms']} ms, p99 {single_stats['p99_ms']} ms, "
                  f"{single_stats['throughput_rps']} req/s", flush=True)

            load = Load(server.url, observations, references, args.requests, time.perf_counter() + args.max_seconds)
            bad: list[dict[str, Any]] = []
            stop = threading.Event()
            injector = threading.Thread(target=inject_bad_inputs, daemon=True,
                                        args=(server.url, observations[0], metadata, 0.5, bad, stop))
            injector.start()
            load_stats = load.summary(args.clients, load.run(args.clients))
            stop.set()
            injector.join(30)
            print(f"{args.clients} clients: p50 {load_stats['p50_ms']} ms, p99 {load_stats['p99_ms']} ms, "
                  f"{load_stats['throughput_rps']} req/s, mean batch {load_stats['mean_batch_size']}, "
                  f"errors {load_stats['errors']}", flush=True)
            amp = (amplification(server.url, server.process.pid, observations[0], references[0], args)
                   if args.attack_seconds > 0 else None)
        finally:
            server_out = server.stop()

    report = {
        "policy": str(args.policy) if args.policy else ("random-weight debug policy (c2c.policy.testing), LIBERO "
                                                        "shapes: 2 cameras at 16 px, 8-dim state, 7-dim actions, "
                                                        "plan variant"),
        "server_command": f"c2c serve --threads {args.threads} --max-batch {args.max_batch}",
        "server_banner": server.banner, "server_exit": server_out,
        "machine": f"{os.cpu_count()} CPUs, {platform.processor() or platform.machine()}, python "
                   f"{platform.python_version()}, load average {load_before:.1f} before and "
                   f"{os.getloadavg()[0]:.1f} after",
        "command": "python benchmarks/bench_serve.py " + " ".join(sys.argv[1:]),
        "single_client": single_stats, "concurrent": load_stats,
        "speedup_throughput": (round(load_stats["throughput_rps"] / single_stats["throughput_rps"], 2)
                               if single_stats["throughput_rps"] and load_stats["throughput_rps"] else None),
        "bad_inputs": bad, "bad_inputs_refused": sum(case["refused_as_expected"] for case in bad),
        "well_behaved_clients_undisturbed": load_stats["errors"] == 0 and single_stats["errors"] == 0,
        "amplification": amp,
        "server_log": server_log_summary(args.out / "server.log"),
    }
    atomic_write_json(args.out / "results.json", report)
    atomic_write_text(args.out / "report.md", markdown(report))
    print(f"bad inputs refused as expected: {report['bad_inputs_refused']}/{len(bad)}; "
          f"throughput x{report['speedup_throughput']} over one client")
    print(f"saved to {args.out} (results.json, report.md, server.log)")
    ok = report["well_behaved_clients_undisturbed"] and report["bad_inputs_refused"] == len(bad) and bad \
        and (amp is None or (amp["p99_met"] and amp["rss_met"] and not amp["client_errors"])) \
        and report["server_log"]["tracebacks"] == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
