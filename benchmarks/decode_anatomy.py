"""Where a fast decode chunk's time goes, part by part (``bench_policy.py --parts anatomy``).

For each preset at batch 1, thread CPU time per call (min and median over interleaved rounds):

- ``prefill``: the vision tower and the prefix through the decoder (``decoding.prefill``), the same in both loops;
- ``step``: one fast-loop token through the layers (``Runner.step``);
- ``step, 8-wide weights``: the very same operations on 8-wide weights, i.e. what the step costs without its
  arithmetic and weight traffic (the per-operation cost of eager PyTorch);
- ``products alone``: the step's matrix-vector products one after another, their weights hot in cache;
- ``head``: the LM head over one position's valid ids (one residual level) and its argmax;
- ``products + one level's head rows`` / ``+ the levels' head rows in turn``: the step's products followed by
  the head, with one level's rows each time or the levels' rows in turn as a chunk reads them; the MB each call
  reads over its time is the rate the weights stream at, from cache while they fit in it, from memory once the
  rows of all levels together push the layers out.

A chunk costs about the prefill plus one head and one step per generated token; what it costs beyond that sum is
the weights falling out of cache between tokens.
"""

from __future__ import annotations

import itertools
import statistics
import time

import torch

from c2c.policy.decoding import prefill
from c2c.policy.fast_decoding import Runner, heads_of, lean_decoder, lean_step
from c2c.policy.testing import random_observation

WIDTH = 8  # the stand-in weights' width


def step_anatomy(build, tokenizer, presets: list[str], rounds: int, calls: int = 30) -> dict:
    """{preset: {part: {"us": min, "median_us": median}}} of thread CPU time per call (``calls`` calls per round,
    the prefill once); parts that read a known amount of weights add "megabytes" and "gb_per_s"."""
    result = {}
    for preset in presets:
        policy = build("plan", tokenizer, preset)
        model = policy.model
        inputs = policy.processor.prefix_inputs(random_observation(policy.config, batch_size=1, seed=1))[0]
        with torch.inference_mode():
            parts = _parts(model, inputs, calls)
            times: dict[str, list[float]] = {name: [] for name in parts}
            for _ in range(rounds):
                for name, (run, repeat, _) in parts.items():
                    run()
                    start = time.thread_time()
                    for _ in range(repeat):
                        run()
                    times[name].append(1e6 * (time.thread_time() - start) / repeat)
        result[preset] = {name: {"us": min(values), "median_us": statistics.median(values)}
                          for name, values in times.items()}
        for name, (_, _, megabytes) in parts.items():
            if megabytes:
                result[preset][name].update(megabytes=megabytes, gb_per_s=1e3 * megabytes / result[preset][name]["us"])
    return result


def _parts(model, inputs, calls: int) -> dict:
    lean, heads = lean_decoder(model), heads_of(model)
    state, hidden = prefill(model, inputs)
    runner = Runner(lean, state, model.suffix.length - 2)
    position = model.suffix.length // 2
    ids = torch.full((1, 1), heads.low[position], dtype=torch.long)
    slot = runner.prefix + position
    small = [_narrow_layer(layer, lean) for layer in lean.layers]
    keys = [torch.zeros(1, lean.kv_heads, slot + 1, WIDTH) for _ in small]
    values = [torch.zeros_like(key) for key in keys]
    x, cos, sin = torch.randn(1, 1, WIDTH), torch.randn(1, 1, 1, WIDTH), torch.randn(1, 1, 1, WIDTH)
    mask = runner.masks[position].narrow(3, 0, slot + 1)
    weights = [w for layer in lean.layers for w in layer if isinstance(w, torch.Tensor) and w.dim() == 2]
    vectors = {w.shape[1]: torch.randn(1, 1, w.shape[1]) for w in weights}
    return {
        "prefill": (lambda: prefill(model, inputs), 1, None),
        "step": (lambda: runner.step(ids, position), calls, None),
        "step, 8-wide weights": (lambda: lean_step(x, small, (1e-6, torch.ones(WIDTH)), keys, values, slot, cos, sin,
                                                   mask, lean.heads, lean.kv_heads, WIDTH, lean.pack), calls, None),
        "products alone": (lambda: _products(weights, vectors), calls, _megabytes(weights)),
        "head": (lambda: heads.logits(model, hidden, position).argmax(-1), calls, None),
        **_streaming(weights, vectors, heads, hidden, calls),
    }


def _streaming(weights: list, vectors: dict, heads, hidden, calls: int) -> dict:
    """The step's products followed by LM-head rows: one level's, or the levels' in turn as a chunk reads them.
    Their bytes over the time give the rate the weights stream at (cache or memory)."""
    ranges = sorted({(low, high) for low, high in zip(heads.low, heads.high, strict=True) if high - low > 1})
    levels = [heads.rows[heads.low.index(low)] for low, _ in ranges]
    levels = [rows for rows in levels if rows is not None]
    if not levels:
        return {}
    turn = itertools.count()

    def products(rows) -> None:
        _products(weights, vectors)
        torch.nn.functional.linear(hidden, rows)

    one = _megabytes(weights) + _megabytes(levels[:1])  # read by every call
    every = _megabytes(weights) + _megabytes(levels)
    return {"products + one level's head rows": (lambda: products(levels[0]), calls, one),
            f"products + the {len(levels)} levels' head rows in turn ({every:.1f} MB over {len(levels)} calls)":
                (lambda: products(levels[next(turn) % len(levels)]), calls, one)}


def _products(weights: list, vectors: dict) -> None:
    for w in weights:
        torch.nn.functional.linear(vectors[w.shape[1]], w)


def _megabytes(tensors: list) -> float:
    return sum(t.numel() * t.element_size() for t in tensors) / 1e6


def _narrow_layer(layer: tuple, lean) -> tuple:
    """A layer of the same structure with WIDTH-wide weights (and WIDTH-wide heads)."""
    eps, _, _, bq, _, bk, _, bv, _, bo, eps2, _, _, _, _, act = layer
    if any(bias is not None for bias in (bq, bk, bv, bo)):
        raise ValueError("decode anatomy: layers with biases are not covered")
    heads, kv = lean.heads, lean.kv_heads
    return (eps, torch.ones(WIDTH), torch.randn(heads * WIDTH, WIDTH), None, torch.randn(kv * WIDTH, WIDTH), None,
            torch.randn(kv * WIDTH, WIDTH), None, torch.randn(WIDTH, heads * WIDTH), None, eps2, torch.ones(WIDTH),
            torch.randn(WIDTH, WIDTH), torch.randn(WIDTH, WIDTH), torch.randn(WIDTH, WIDTH), act)


def format_anatomy(anatomy: dict, loops: dict | None) -> list[str]:
    lines = ["## Anatomy of a fast chunk (batch 1; thread CPU time per call, min with the median in brackets)", "",
             "| preset | part | us | weights read per call: MB at GB/s |", "| --- | --- | ---: | ---: |"]
    for preset, parts in anatomy.items():
        for name, row in parts.items():
            rate = f"{row['megabytes']:.1f} MB at {row['gb_per_s']:.1f}" if "gb_per_s" in row else ""
            lines.append(f"| {preset} | {name} | {row['us']:.0f} ({row['median_us']:.0f}) | {rate} |")
        try:
            rows = loops["presets"][preset]["1"]["plan"]
        except (KeyError, TypeError):
            continue
        tokens, base = rows["tokens"] - 1, parts["prefill"]["us"] / 1000
        for method in ("fast", "reference"):  # one step per generated token but the last
            per_token = 1000 * (rows[method]["cpu_ms"] - base) / tokens
            lines.append(f"| {preset} | {method} loop, per token: (plan chunk - prefill) / {tokens} | {per_token:.0f} | |")
    return lines + [""]
