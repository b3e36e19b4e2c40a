"""benchmarks/decode_anatomy.py: every part of a fast chunk is timed, and the report derives the per-token costs."""

import importlib.util
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load(name):
    sys.path.insert(0, str(BENCHMARKS))  # bench_policy imports decode_anatomy as a sibling
    try:
        spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(BENCHMARKS))


def test_anatomy_times_every_part_and_reports_per_token_costs():
    from c2c.policy.testing import random_action_tokenizer

    bench, anatomy = load("bench_policy"), load("decode_anatomy")
    tokenizer = random_action_tokenizer("joint", codebook_size=64)
    result = anatomy.step_anatomy(bench.build, tokenizer, ["nano"], rounds=1, calls=2)
    parts = result["nano"]
    assert list(parts)[:5] == ["prefill", "step", "step, 8-wide weights", "products alone", "head"]
    assert any(name.startswith("products + the") for name in parts)
    assert all(row["us"] > 0 and row["median_us"] >= row["us"] for row in parts.values())
    loops = {"presets": {"nano": {"1": {"plan": {"tokens": 48, "fast": {"cpu_ms": 40.0},
                                                 "reference": {"cpu_ms": 100.0}}}}}}
    text = "\n".join(anatomy.format_anatomy(result, loops))
    per_token = 1000 * (40.0 - parts["prefill"]["us"] / 1000) / 47
    assert f"| nano | fast loop, per token: (plan chunk - prefill) / 47 | {per_token:.0f} | |" in text
    assert "| nano | step |" in text and "reference loop, per token" in text
    assert parts["products alone"]["gb_per_s"] > 0 and "MB at" in text
