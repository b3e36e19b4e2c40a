"""Benchmark: the joint and separate RVQ tokenizers against binning and FAST, on the same data, in one run.

All four are trained or fitted on the training episodes of one dataset and measured on the same held-out
episodes: tokens per chunk, held-out L1 per mode (normalized units, [-1, 1] = q01..q99), encode+decode throughput,
codebook usage and the plan/exec overlap mass. Ratios are against binning, measured in the same run.

    python benchmarks/bench_tokenizers.py --dataset data/mw10 --steps 1500 --out runs/bench-tokenizers

Without --dataset it generates (once, cached under .cache/) an MT10 dataset of scripted demonstrations.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from c2c.tokenizer.binning import BinningTokenizer
from c2c.tokenizer.data import default_spec, load_chunks
from c2c.tokenizer.fast import FastTokenizer
from c2c.tokenizer.metrics import code_distribution, overlap_mass, usage_fraction
from c2c.tokenizer.rvq_tokenizer import RVQTokenizer
from c2c.tokenizer.train import TokenizerTrainConfig, train_tokenizer
from c2c.utils.io import atomic_write_json, atomic_write_text

DEFAULT_DATASET = Path(".cache/bench/mw10-e20-s0")


def ensure_dataset(path: Path) -> Path:
    if not (path / "meta" / "info.json").is_file():
        subprocess.run([sys.executable, "-m", "c2c", "data", "metaworld", "--tasks", "mt10", "--episodes", "20",
                        "--image-size", "32", "--cameras", "corner2", "--seed", "0", "--out", str(path)], check=True)
    return path


def measure(tokenizer, held: dict[str, np.ndarray], repeats: int = 3) -> dict:
    """Held-out L1 per mode and encode+decode throughput on the same chunks."""
    result: dict = {"tokens_per_chunk": tokenizer.tokens_per_chunk("exec")}
    codes_by_mode = {}
    for mode, chunks in held.items():
        norm = tokenizer.normalizers.action if mode == "exec" else tokenizer.normalizers.plan
        codes = tokenizer.encode(chunks, mode)
        recon = tokenizer.decode(codes, mode)
        result[f"{mode}_l1"] = float(np.abs(norm.normalize(recon) - norm.normalize(chunks)).mean())
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            tokenizer.decode(tokenizer.encode(chunks, mode), mode)
            best = min(best, time.perf_counter() - start)
        result[f"{mode}_chunks_per_s"] = len(chunks) / best
        best_decode = float("inf")  # a policy decodes at every replan but encodes its training data only once
        for _ in range(repeats):
            start = time.perf_counter()
            tokenizer.decode(codes, mode)
            best_decode = min(best_decode, time.perf_counter() - start)
        result[f"{mode}_decode_chunks_per_s"] = len(chunks) / best_decode
        codes_by_mode[mode] = codes
    if isinstance(tokenizer, RVQTokenizer):
        result["usage"] = usage_fraction(np.concatenate(list(codes_by_mode.values())), tokenizer.codebook_size)
        if tokenizer.variant == "joint":
            p, q = (code_distribution(codes_by_mode[m], tokenizer.codebook_size) for m in ("plan", "exec"))
            result["overlap_mass"] = overlap_mass(p, q).tolist()
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", type=Path, default=None)
    parser.add_argument("--steps", type=int, default=1500, help="training steps of each RVQ tokenizer")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--max-heldout", type=int, default=4000, help="held-out chunks measured per mode")
    parser.add_argument("--out", type=Path, default=Path("runs/bench-tokenizers"))
    args = parser.parse_args()
    dataset = ensure_dataset(args.dataset or DEFAULT_DATASET)
    spec = default_spec(dataset, 20, 160, 20)
    train, held_split, normalizers, _ = load_chunks(dataset, spec)
    rng = np.random.default_rng(0)
    pick = rng.permutation(len(held_split.exec_chunks))[: args.max_heldout]
    held = {"exec": held_split.exec_chunks[pick], "plan": held_split.plans[pick]}
    dim = train.exec_chunks.shape[-1]

    results, seconds = {}, {}
    start = time.perf_counter()
    results["binning"] = measure(BinningTokenizer(normalizers, action_dim=dim), held)
    seconds["binning"] = time.perf_counter() - start
    start = time.perf_counter()
    fast = FastTokenizer.fit(normalizers, train.exec_chunks, train.plans, action_dim=dim)
    seconds["fast"] = time.perf_counter() - start
    results["fast"] = measure(fast, held)
    for variant in ("joint", "separate"):
        out = args.out / variant
        config = TokenizerTrainConfig(dataset=str(dataset), out=str(out), variant=variant, steps=args.steps,
                                      batch_size=args.batch_size, eval_every=10**9)
        start = time.perf_counter()
        train_tokenizer(config)
        seconds[variant] = time.perf_counter() - start
        results[variant] = measure(RVQTokenizer.from_pretrained(out), held)
    for name, row in results.items():
        row["fit_seconds"] = round(seconds[name], 1)
        base = results["binning"]
        row["tokens_vs_binning"] = base["tokens_per_chunk"] / row["tokens_per_chunk"]
        row["exec_l1_vs_binning"] = row["exec_l1"] / base["exec_l1"]
        row["throughput_vs_binning"] = row["exec_chunks_per_s"] / base["exec_chunks_per_s"]
    command = " ".join(["python", "benchmarks/bench_tokenizers.py", "--dataset", str(dataset), "--steps",
                        str(args.steps), "--out", str(args.out)])
    report = {"dataset": str(dataset), "heldout_chunks": len(pick), "steps": args.steps, "command": command,
              "results": results}
    atomic_write_json(args.out / "bench_tokenizers.json", report)
    lines = [f"# Tokenizer benchmark ({len(pick)} held-out chunks per mode, RVQ trained {args.steps} steps)", "",
             "| tokenizer | tokens/chunk | exec L1 | plan L1 | exec L1 / binning | fewer tokens than binning | "
             "enc+dec chunks/s | dec chunks/s | fit s |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name, row in results.items():
        lines.append(f"| {name} | {row['tokens_per_chunk']} | {row['exec_l1']:.4f} | {row['plan_l1']:.4f} | "
                     f"{row['exec_l1_vs_binning']:.2f}x | {row['tokens_vs_binning']:.1f}x | "
                     f"{row['exec_chunks_per_s']:.0f} | {row['exec_decode_chunks_per_s']:.0f} | {row['fit_seconds']} |")
    for name in ("joint", "separate"):
        usage = ", ".join(f"{100 * u:.0f}%" for u in results[name]["usage"])
        lines.append(f"\n{name}: codebook usage per level {usage}")
    lines.append("joint overlap mass per level: " + ", ".join(f"{m:.3f}" for m in results["joint"]["overlap_mass"]))
    lines += ["", "Reproduce: `" + command + "`", ""]
    atomic_write_text(args.out / "bench_tokenizers.md", "\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
