"""`c2c analyze runtime`: decode cost per chunk of the plan prefix against other prefixes (paper Table 5).

All cases run on the same backbone, observation and KV-cached constrained decoding (``c2c.policy.decoding``):

- ``plan``: the policy as is, plan tokens then exec tokens (``generate_suffix``);
- ``plan_cached``: exec tokens only, the plan given (plan caching, ``generate_suffix(plan_ids=...)``);
- ``exec_only``: prefill, then the exec tokens with no prefix at all: the cost of a noplan policy of this size;
- ``reasoning_256``: 256 extra tokens generated before the exec tokens, standing for a visual-CoT (CoT-VLA-style)
  or textual-CoT prefix of 256 tokens; each is chosen among ``codebook_size`` ids (a codebook of image tokens);
- ``noplan_policy``: a trained noplan policy's own ``generate_suffix`` (with ``--noplan-policy``).

Each case is timed ``repeats`` times, interleaved round by round so machine load affects them alike, after one
warm-up round; the median is reported, with its ratio to ``exec_only``. Latency does not depend on what the weights
learned, so the observation is random.

Outputs: ``runtime.json`` and ``runtime.md``.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from c2c.errors import ConfigError
from c2c.paper import TABLE5_SECONDS_PER_TASK
from c2c.policy import load_policy
from c2c.utils.io import atomic_write_json, atomic_write_text

REASONING_TOKENS = 256  # Table 5: the CoT-VLA-style visual prefix
# Table 5 (LIBERO, average evaluation time per task, seconds).
PAPER_TABLE5 = TABLE5_SECONDS_PER_TASK  # paper.py


@torch.no_grad()
def decode_ranges(model: Any, inputs: Any, ranges: Sequence[tuple[int, int]]) -> torch.Tensor:
    """Prefill, then greedily generate one token per (low, high) id range with the KV cache: (B, len(ranges))."""
    from c2c.policy.decoding import choose_tokens, extend, prefill

    state, hidden = prefill(model, inputs)
    tokens = []
    for position, (low, high) in enumerate(ranges):
        token = choose_tokens(model.logits(hidden, low, high))[:, None] + low  # (B, 1)
        tokens.append(token)
        if position + 1 < len(ranges):
            hidden = extend(model, state, token)
    return torch.cat(tokens, dim=1)


def exec_ranges(model: Any) -> list[tuple[int, int]]:
    """The valid id range of every exec position."""
    span = model.suffix.span("exec")
    return list(zip(model.suffix.valid_low[span].tolist(), model.suffix.valid_high[span].tolist()))


def median_times(cases: dict[str, Callable[[], Any]], repeats: int, show_progress: bool = True
                 ) -> dict[str, list[float]]:
    """Seconds per call of each case: one warm-up round, then ``repeats`` interleaved rounds."""
    times: dict[str, list[float]] = {name: [] for name in cases}
    for round_index in tqdm(range(repeats + 1), desc="runtime (rounds)", disable=not show_progress,
                            dynamic_ncols=True):
        for name, run in cases.items():
            start = time.perf_counter()
            run()
            if round_index:
                times[name].append(time.perf_counter() - start)
    return times


def analyze_runtime(policy_dir: Path, out: Path, noplan_dir: Path | None = None, repeats: int = 5,
                    reasoning_tokens: int = REASONING_TOKENS, threads: int | None = None,
                    show_progress: bool = True) -> dict[str, Any]:
    """Time the four (or five) decoding cases on one random observation and write the table."""
    from c2c.policy.decoding import generate_suffix
    from c2c.policy.testing import random_observation

    if repeats < 1:
        raise ConfigError(f"--repeats must be >= 1, got {repeats}")
    if threads:
        torch.set_num_threads(threads)
    policy_dir, out = Path(policy_dir), Path(out)
    policy = load_policy(policy_dir)
    if not policy.config.has_plan:
        raise ConfigError(f"{policy_dir}: variant {policy.config.variant!r} has no plan branch; give a plan policy")
    model = policy.model
    observation = random_observation(policy.config, seed=1)
    inputs, _ = policy.processor.prefix_inputs(observation, policy.device)
    plan_ids = generate_suffix(model, inputs)[:, model.suffix.span("plan")]  # the plan a cached chunk reuses
    execs = exec_ranges(model)
    first_exec_low = execs[0][0]
    reasoning = [(first_exec_low, first_exec_low + policy.action_tokenizer.codebook_size)] * reasoning_tokens
    plan_tokens = plan_ids.shape[1]
    cases: dict[str, tuple[Callable[[], Any], int, str]] = {
        "plan": (lambda: generate_suffix(model, inputs), plan_tokens + len(execs),
                 "plan prefix + exec (the policy as is)"),
        "plan_cached": (lambda: generate_suffix(model, inputs, plan_ids=plan_ids), len(execs),
                        "exec with the plan given (plan caching)"),
        "exec_only": (lambda: decode_ranges(model, inputs, execs), len(execs),
                      "exec only, no prefix (noplan cost, same backbone)"),
        f"reasoning_{reasoning_tokens}": (lambda: decode_ranges(model, inputs, reasoning + execs),
                                          reasoning_tokens + len(execs),
                                          f"{reasoning_tokens}-token reasoning prefix + exec (visual/textual CoT)"),
    }
    if noplan_dir is not None:
        noplan = load_policy(noplan_dir)
        if noplan.config.has_plan:
            raise ConfigError(f"{noplan_dir}: --noplan-policy has variant {noplan.config.variant!r}, which plans")
        noplan_inputs, _ = noplan.processor.prefix_inputs(random_observation(noplan.config, seed=1), noplan.device)
        cases["noplan_policy"] = (lambda: generate_suffix(noplan.model, noplan_inputs), noplan.suffix.length - 1,
                                  "the trained noplan policy")
    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    times = median_times({name: case[0] for name, case in cases.items()}, repeats, show_progress)
    base = statistics.median(times["exec_only"])
    rows = {}
    for name, (_, tokens, label) in cases.items():
        median = statistics.median(times[name])
        rows[name] = {"label": label, "generated_tokens": tokens, "ms_per_chunk": 1000 * median,
                      "ms_per_token": 1000 * median / tokens, "ratio_to_exec_only": median / base,
                      "runs_ms": [round(1000 * t, 2) for t in times[name]]}
    result = {"policy": str(policy_dir), "noplan_policy": None if noplan_dir is None else str(noplan_dir),
              "variant": policy.config.variant, "backbone": policy.config.backbone,
              "parameters": sum(p.numel() for p in model.parameters()), "repeats": repeats,
              "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(), "load_average_before": load_before,
              "batch_size": 1, "decoding": "greedy, KV cache, constrained to each position's valid ids",
              "cases": rows, "paper_table5_seconds_per_task": PAPER_TABLE5}
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "runtime.json", result)
    atomic_write_text(out / "runtime.md", format_runtime(result))
    return result


def format_runtime(result: dict[str, Any]) -> str:
    """The Markdown table of ``runtime.md``."""
    cases = result["cases"]
    reasoning = next(name for name in cases if name.startswith("reasoning_"))
    lines = [f"# Decode cost per chunk ({result['backbone']} backbone, {result['parameters'] / 1e6:.2f} M parameters, "
             f"batch 1, {result['threads']} torch threads, median of {result['repeats']})", "",
             "| case | generated tokens | ms / chunk | ms / token | vs exec only |",
             "| --- | ---: | ---: | ---: | ---: |"]
    for row in cases.values():
        lines.append(f"| {row['label']} | {row['generated_tokens']} | {row['ms_per_chunk']:.1f} | "
                     f"{row['ms_per_token']:.2f} | {row['ratio_to_exec_only']:.2f}x |")
    ours = cases[reasoning]["ms_per_chunk"] / cases["plan"]["ms_per_chunk"]
    paper = PAPER_TABLE5["Visual CoT (CoT-VLA-style, 256 tok)"] / PAPER_TABLE5["Coarse-to-Control (42 tok)"]
    load = result["load_average_before"]
    lines += ["", f"Reasoning prefix vs plan prefix: {ours:.2f}x here (per chunk, decode only); the paper's Table 5 "
              f"reports {paper:.2f}x (LIBERO, {PAPER_TABLE5['Visual CoT (CoT-VLA-style, 256 tok)']:.0f} s vs "
              f"{PAPER_TABLE5['Coarse-to-Control (42 tok)']:.0f} s of evaluation per task, rollouts included).",
              "", f"Policy: `{result['policy']}`; load average at start: {'-' if load is None else f'{load:.1f}'}.", ""]
    return "\n".join(lines)
