"""Benchmark: `c2c serve` under load on loopback: latency and throughput of N concurrent clients against one client,
batching, and bad inputs injected during the load (which must not disturb the well-behaved clients).

The server runs as ``c2c serve`` in a process of its own, started with a policy directory (the argument) or, when
none is given, a random-weight LIBERO-shaped debug policy (``c2c.policy.testing``: cameras image/image2 at 16 px,
8-dim state, 7-dim actions, plan variant) saved to a temporary directory. Clients speak openpi's request keys
through the server's key map, from threads of this process.

(a) one client, M requests back to back: p50/p99 latency and requests/s;
(b) N clients x M requests at once (each its own observation, replies checked against the one-client answer for
    it), while a separate connection sends each bad input (malformed msgpack, refused dtypes, bad shape and byte
    count, missing key, wrong image size, non-finite state, text frame, oversized message) and checks the error.

Everything stops at ``--max-seconds``; unfinished requests are reported, not waited for.

    python benchmarks/bench_serve.py [POLICY_DIR] --clients 8 --requests 200 --out runs/bench-serve
"""

from __future__ import annotations

import argparse
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
    }
    atomic_write_json(args.out / "results.json", report)
    atomic_write_text(args.out / "report.md", markdown(report))
    print(f"bad inputs refused as expected: {report['bad_inputs_refused']}/{len(bad)}; "
          f"throughput x{report['speedup_throughput']} over one client")
    print(f"saved to {args.out} (results.json, report.md, server.log)")
    ok = report["well_behaved_clients_undisturbed"] and report["bad_inputs_refused"] == len(bad) and bad
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
