"""benchmarks/bench_gpu.py: the --smoke run on the CPU writes its report, the batch sweep stops at out-of-memory,
the targets are judged from the right rows, and without a GPU the real run stops with one line."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_gpu.py"


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_gpu", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def torch_threads_kept():
    """main(--smoke) sets one torch thread; give the test process its count back afterwards."""
    from c2c.policy.testing import torch_threads

    return torch_threads(torch.get_num_threads())


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """``bench_gpu.py --smoke`` run in this process (the imports are shared with the other tests: seconds)."""
    out = tmp_path_factory.mktemp("bench-gpu")
    with torch_threads_kept():
        assert load_bench().main(["--smoke", "--out", str(out)]) == 0
    return out, json.loads((out / "bench_gpu.json").read_text()), (out / "bench_gpu.md").read_text()


def test_smoke_writes_json_and_markdown(smoke):
    _, report, text = smoke
    for key in ("command", "device", "torch", "transformers", "cuda", "parameters", "shapes", "decode", "training",
                "targets", "smoke"):
        assert key in report, key
    assert report["smoke"] is True and report["device"] == "cpu" and report["preset"] == "debug"
    assert report["shapes"]["action_dim"] == 7 and report["shapes"]["codebook"] == "3 x 4096"
    for case, tokens in (("plan", 84), ("noplan", 42), ("plan_cached", 42)):  # 14 positions x 3 levels per branch
        row = report["decode"][case]
        assert row["generated_tokens"] == tokens and row["ms_per_chunk"] > 0 and len(row["runs_ms"]) == 2
    schemes = [(s["precision"], s["ema"], [r["batch"] for r in s["rows"]]) for s in report["training"]]
    assert schemes == [("bf16", "off", [1, 2]), ("bf16-weights", "off", [2]), ("bf16", "cpu", [2])]
    for sweep in report["training"]:
        assert 0 < sweep["trainable_parameters"] == sweep["parameters"]
        for row in sweep["rows"]:
            assert row["status"] == "ok" and row["samples_per_s"] > 0 and row["loss"] > 0
    assert len(report["targets"]) == 4 and all(check["passed"] is None for check in report["targets"])
    assert report["errors"] == [] and report["decode_compiled"] == {"status": "skipped (smoke)"}
    for heading in ("## Training", "## Decode latency", "## Targets", "| bf16-weights | off | 2 |",
                    "plan, cached plan", "plan chunk <= 150 ms on an H100"):
        assert heading in text


def test_a_failing_stage_is_recorded_and_the_others_still_run(tmp_path, monkeypatch):
    bench = load_bench()
    real_training_rows = bench.training_rows

    def training_rows(factory, precision, *args):
        if precision == "bf16-weights":
            raise RuntimeError("CUDA error: an illegal memory access was encountered\nmore detail")
        return real_training_rows(factory, precision, *args)

    monkeypatch.setattr(bench, "training_rows", training_rows)
    monkeypatch.setattr(bench, "decode_rows", lambda *args, **kwargs: {"parameters": 5, "status": "stub"})
    with torch_threads_kept():
        assert bench.main(["--smoke", "--out", str(tmp_path)]) == 1
    report = json.loads((tmp_path / "bench_gpu.json").read_text())
    assert report["errors"] == ["training: RuntimeError: CUDA error: an illegal memory access was encountered"]
    assert [(s["precision"], s["ema"], s["rows"][0]["status"][:5]) for s in report["training"]] == [
        ("bf16", "off", "ok"), ("bf16-weights", "off", "error"), ("bf16", "cpu", "ok")]
    assert "**Error** in training: RuntimeError" in (tmp_path / "bench_gpu.md").read_text()


def test_sweep_stops_at_the_first_out_of_memory():
    bench = load_bench()
    seen = []

    def run_batch(batch_size):
        seen.append(batch_size)
        if batch_size >= 8:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return {"samples_per_s": float(batch_size)}

    rows = bench.sweep_batches(run_batch, [1, 4, 8, 16], out_of_time=lambda: False)
    assert seen == [1, 4, 8]
    assert [(r["batch"], r["status"]) for r in rows] == [(1, "ok"), (4, "ok"), (8, "out of memory")]
    assert "Tried to allocate" in rows[-1]["error"]
    skipped = bench.sweep_batches(run_batch, [1, 4], out_of_time=lambda: True)
    assert [r["status"] for r in skipped] == ["skipped (time budget)"] * 2


def test_targets_on_an_h100_and_on_a_larger_gpu():
    bench = load_bench()
    rows = [{"batch": 4, "status": "ok", "peak_reserved_gib": 60.0}, {"batch": 8, "status": "ok",
                                                                       "peak_reserved_gib": 79.5}]
    decode = {"plan": {"ms_per_chunk": 140.0}, "noplan": {"ms_per_chunk": 70.0}, "plan_cached": {"ms_per_chunk": 90.0}}
    report = {"smoke": False, "ema": "off", "device": "NVIDIA H100 80GB HBM3", "device_memory_gib": 79.2,
              "training": [{"precision": "bf16", "ema": "off", "rows": rows}], "decode": decode}
    assert [c["passed"] for c in bench.judge(report)] == [True, True, False, True]
    report.update(device="NVIDIA H200", device_memory_gib=139.8)  # batch 8 needed more than an H100 holds
    checks = bench.judge(report)
    assert [c["passed"] for c in checks] == [False, True, False, None]
    assert "largest batch fitting 80 GB 4" in checks[0]["value"] and "not judged" in checks[3]["value"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown without a GPU")
def test_without_a_gpu_the_real_run_stops_with_one_line(tmp_path, capsys):
    assert load_bench().main(["--out", str(tmp_path / "out")]) == 2
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert len(lines) == 1 and "no CUDA GPU" in lines[0] and "--smoke" in lines[0], captured.err
    assert captured.out == "" and not (tmp_path / "out").exists()


def test_memory_estimate_counts_the_real_architecture_on_meta(monkeypatch):
    """memory_estimate.py's states: parameters of paligemma-3b on the meta device, bytes per option, batch limits."""
    monkeypatch.syspath_prepend(str(SCRIPT.parent))  # memory_estimate imports bench_gpu as a sibling script
    spec = importlib.util.spec_from_file_location("memory_estimate", SCRIPT.parent / "memory_estimate.py")
    estimate = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "memory_estimate", estimate)  # dataclasses look their module up there
    spec.loader.exec_module(estimate)
    bench = load_bench()
    meta = bench.random_policy(bench.bench_config("paligemma-3b"), bench.bench_tokenizer(), "meta")
    assert all(p.device.type == "meta" for p in meta.model.parameters())
    option = estimate.Option
    bf16 = estimate.states(meta.model, option("bf16", "bf16", "off"))
    weights = estimate.states(meta.model, option("bf16-weights", "bf16-weights", "on"))
    lora = estimate.states(meta.model, option("lora", "bf16", "off", freeze_vision=True, lora_rank=16))
    assert 2.9e9 < bf16["parameters"] == bf16["trainable"] < 2.95e9  # SigLIP So400m + Gemma-2B, tied embedding
    assert bf16["weights"] == bf16["grads"] == 4 * bf16["parameters"] and bf16["moments"] == 2 * bf16["grads"]
    assert bf16["ema"] == 0 and bf16["copies_ckpt"] > bf16["copies_outside"] > 0
    assert 0.5 < weights["weights"] / bf16["weights"] < 0.51 and weights["ema"] == 4 * weights["trainable"]
    assert lora["trainable"] < 0.2 * lora["parameters"] and lora["grad_vision_layer"] == 0
    counted = {"vision": 20 * 2**20, "vision_other": 2**20, "text": 120 * 2**20, "other": 90 * 2**20,
               "input_size": {"vision": 4, "text": 4}}
    shape = estimate.model_shape(meta)
    assert (shape["text_tokens"], shape["vision_tokens"], shape["suffix"]) == (645, 512, 85)
    parts = {ckpt: estimate.activation_parts(counted, shape, ckpt) for ckpt in (True, False)}
    assert parts[True]["held"] < parts[False]["held"]
    usable = 76 * 2**30
    with_ckpt, _ = estimate.largest_batch(bf16, parts[True], True, shape, usable)
    without, _ = estimate.largest_batch(bf16, parts[False], False, shape, usable)
    assert with_ckpt > without > 0
    assert estimate.peak(bf16, parts[True], with_ckpt, True, shape)[0] <= usable
    assert estimate.peak(bf16, parts[True], with_ckpt + 1, True, shape)[0] > usable
