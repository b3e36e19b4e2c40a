"""Policy training on a tiny synthetic dataset: outputs, exact resume, codes cached once, checks naming both sides."""

import json

import numpy as np
import pytest
import torch
from conftest import TINY_CODEC, write_two_camera_dataset_and_tokenizer
from safetensors.torch import load_file

from c2c.errors import ConfigError
from c2c.policy.policy import EMA_WEIGHTS_FILE, WEIGHTS_FILE, PlanExecutePolicy
from c2c.policy.testing import torch_threads
from c2c.policy.training import data as train_data
from c2c.policy.training.config import PolicyTrainConfig, lr_at
from c2c.policy.training.data import draw_frames
from c2c.policy.training.loop import train_policy
from c2c.tokenizer.train import TokenizerTrainConfig, train_tokenizer



@pytest.fixture(autouse=True)
def _one_thread():
    with torch_threads(1):  # debug-sized matrices: a second OpenMP thread only adds sync cost
        yield


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A 6-episode dataset with two 16-px cameras (the debug preset's size) and a joint tokenizer trained on it."""
    root = tmp_path_factory.mktemp("policy_train")
    dataset, tokenizer = write_two_camera_dataset_and_tokenizer(root)
    return {"root": root, "dataset": dataset, "tokenizer": tokenizer}


def _config(workspace, out, **overrides):
    settings = dict(dataset=str(workspace["dataset"]), tokenizer=str(workspace["tokenizer"]),
                    out=str(workspace["root"] / out), preset="debug", steps=2, batch_size=4, checkpoint_every=2,
                    eval_every=1000, eval_frames=8, decode_frames=4, eval_batch_size=4)
    settings.update(overrides)
    return PolicyTrainConfig(**settings)


def test_two_steps_write_a_loadable_policy_with_ema_and_metrics(workspace):
    config = _config(workspace, "plan")
    metrics = train_policy(config, show_progress=False)
    out = workspace["root"] / "plan"
    for name in (WEIGHTS_FILE, EMA_WEIGHTS_FILE, "metrics.json", "curves.png", "train_config.json",
                 "checkpoint/state.json"):
        assert (out / name).is_file(), name
    saved = json.loads((out / "metrics.json").read_text())
    held = saved["heldout"]
    assert {"accuracy/plan", "accuracy/exec", "loss/exec", "exec_l1", "exec_l1_raw"} <= set(held)
    assert 0 <= held["accuracy/exec"] <= 1 and held["exec_l1"] > 0 and metrics["steps"] == 2
    assert np.isfinite(held["exec_l1_true_plan"]) and held["exec_l1_true_plan"] > 0
    # The tokenizer's held-out episodes stay held out.
    tokenizer_split = json.loads((workspace["tokenizer"] / "train_config.json").read_text())["heldout_episodes"]
    assert saved["heldout_episodes"] == tokenizer_split and tokenizer_split
    # EMA weights are saved beside the model's, differ from them, and are what from_pretrained loads.
    ema, model = load_file(str(out / EMA_WEIGHTS_FILE)), load_file(str(out / WEIGHTS_FILE))
    assert any(not np.array_equal(ema[k].numpy(), model[k].numpy()) for k in ema)
    policy = PlanExecutePolicy.from_pretrained(out, variant="plan")
    loaded = {k: v.numpy() for k, v in policy.model.state_dict().items()}
    np.testing.assert_array_equal(loaded["backbone.lm_head.weight"], ema["backbone.lm_head.weight"].numpy())
    data = train_data.load_policy_data(workspace["dataset"], policy.action_tokenizer, workspace["tokenizer"],
                                       policy.config, out)
    assert not data.info["codes_computed"]  # read from the run's cache
    assert policy.predict_action_chunk(data.batch(data.heldout_frames[:2])).shape == (2, 20, 4)


def test_resume_continues_exactly_and_codes_are_computed_once(workspace, monkeypatch):
    calls = []
    original = train_data.encode_windows
    monkeypatch.setattr(train_data, "encode_windows", lambda *a: calls.append(a[2]) or original(*a))
    train_policy(_config(workspace, "straight", steps=4), show_progress=False)
    assert sorted(calls) == ["exec", "plan"]
    assert train_policy(_config(workspace, "resumed", steps=4), show_progress=False, stop_after=2) is None
    assert not (workspace["root"] / "resumed" / "metrics.json").exists()
    calls.clear()
    metrics = train_policy(_config(workspace, "resumed", steps=4), show_progress=False, resume=True)
    assert calls == [] and metrics["codes_computed_this_run"] is False  # the cache in --out was used
    for name in (WEIGHTS_FILE, EMA_WEIGHTS_FILE):
        straight = load_file(str(workspace["root"] / "straight" / name))
        resumed = load_file(str(workspace["root"] / "resumed" / name))
        for key in straight:
            np.testing.assert_array_equal(straight[key].numpy(), resumed[key].numpy(), err_msg=f"{name} {key}")


def test_resume_with_other_settings_or_without_checkpoint_is_refused(workspace):
    with pytest.raises(ConfigError, match="nothing to resume"):
        train_policy(_config(workspace, "fresh"), show_progress=False, resume=True)
    train_policy(_config(workspace, "changed", steps=4), show_progress=False, stop_after=1)
    with pytest.raises(ConfigError, match=r"other settings \(lr\)"):
        train_policy(_config(workspace, "changed", steps=4, lr=0.5), show_progress=False)


@pytest.mark.parametrize("variant", ["noplan", "plan-hp40"])
def test_other_variants_train_on_the_joint_tokenizer(workspace, variant):
    tokenizer = workspace["tokenizer"]
    if variant == "plan-hp40":  # an Hp = 160 tokenizer's plan statistics do not fit 40-step plans: refused
        with pytest.raises(ConfigError, match=r"plans over Hp=40 steps but tokenizer .* was trained on Hp=160 plans"):
            train_policy(_config(workspace, "hp40-refused", variant=variant, steps=1), show_progress=False)
        tokenizer = workspace["root"] / "tokenizer_hp40"
        train_tokenizer(TokenizerTrainConfig(dataset=str(workspace["dataset"]), out=str(tokenizer), steps=1,
                                             batch_size=8, plan_horizon=40, kmeans_samples=64, codec=TINY_CODEC),
                        show_progress=False)
    metrics = train_policy(_config(workspace, variant, variant=variant, steps=1, tokenizer=str(tokenizer)),
                           show_progress=False)
    assert ("accuracy/plan" in metrics["heldout"]) == (variant != "noplan")
    # Plan policies also decode their exec chunks after the true plan tokens (how much error the plan causes).
    assert ("exec_l1_true_plan" in metrics["heldout"]) == (variant != "noplan")
    spec = json.loads((workspace["root"] / variant / "train_config.json").read_text())["window_spec"]
    assert spec["plan_horizon"] == {"noplan": 0, "plan-hp40": 40}[variant] and spec["plan_steps"] == 20


def test_variant_and_tokenizer_must_match(workspace):
    with pytest.raises(ConfigError, match=r"policy variant 'separate' needs a separate tokenizer, but .* is a 'joint'"):
        train_policy(_config(workspace, "separate", variant="separate"), show_progress=False)
    short = workspace["root"] / "tokenizer_he10"
    train_tokenizer(TokenizerTrainConfig(dataset=str(workspace["dataset"]), out=str(short), steps=1, batch_size=8,
                                         exec_horizon=10, plan_horizon=80, plan_steps=10, kmeans_samples=64,
                                         codec=TINY_CODEC), show_progress=False)
    with pytest.raises(ConfigError, match=r"policy exec horizon He=20 does not match the exec horizon He=10"):
        train_policy(_config(workspace, "he", tokenizer=str(short)), show_progress=False)


def test_image_size_and_memory_limit_are_checked(workspace):
    with pytest.raises(ConfigError, match=r"16x16 images but the 'tiny' preset expects 96x96"):
        train_policy(_config(workspace, "tiny", preset="tiny"), show_progress=False)
    with pytest.raises(ConfigError, match=r"GiB limit"):
        train_policy(_config(workspace, "memory", max_image_gb=1e-5, loader="memory"), show_progress=False)
    # Over the limit, the default loader streams the images from the files instead of refusing.
    train_policy(_config(workspace, "streamed", max_image_gb=1e-5), show_progress=False)
    assert json.loads((workspace["root"] / "streamed" / "train_config.json").read_text())["loader"] == "stream"


def test_batches_depend_on_seed_and_step_and_ranks_get_different_frames():
    population = np.arange(1000)
    frames = draw_frames(population, seed=0, step=7, batch_size=8, grad_accum=2, processes=2)
    assert frames.shape == (2, 2, 8)
    np.testing.assert_array_equal(frames, draw_frames(population, seed=0, step=7, batch_size=8, grad_accum=2,
                                                      processes=2))
    assert not np.array_equal(frames[0, 0], frames[0, 1])
    assert not np.array_equal(frames, draw_frames(population, seed=0, step=8, batch_size=8, grad_accum=2,
                                                  processes=2))


def test_the_train_module_re_exports_the_training_api():
    """`c2c.policy.train` stays importable (and is what `python -m` runs in every training process)."""
    import c2c.policy.train as train
    from c2c.policy.training import launch, loop

    assert train.train_policy is loop.train_policy and train.PolicyTrainConfig is PolicyTrainConfig
    assert train.launch_processes is launch.launch_processes and launch.ENTRY_MODULE == train.__name__
    assert all(hasattr(train, name) for name in train.__all__)


def test_learning_rate_warms_up_then_decays():
    config = PolicyTrainConfig(dataset="d", tokenizer="t", out="o", preset="tiny", steps=1000)
    assert config.lr == 3e-4 and config.warmup_steps == 200  # the tiny preset's defaults
    assert lr_at(0, config) < lr_at(199, config) == pytest.approx(3e-4)
    assert lr_at(999, config) == pytest.approx(3e-5, rel=1e-2)  # cosine down to 10% of the peak
    paper = PolicyTrainConfig(dataset="d", tokenizer="t", out="o", preset="paligemma-3b", steps=60000)
    assert (paper.lr, paper.warmup_steps, paper.weight_decay) == (2.5e-5, 1000, 1e-10)  # C.2
    quick = PolicyTrainConfig(dataset="d", tokenizer="t", out="o", preset="nano", steps=900)
    assert (quick.lr, quick.warmup_steps, quick.ema_decay) == (2e-3, 100, 0.995)  # measured on the quick preset
    mt10 = PolicyTrainConfig(dataset="d", tokenizer="t", out="o", preset="tiny-multistream", steps=8000)
    assert mt10.lr == 5e-4  # the MT10 preset's reported runs


@pytest.mark.slow  # 20-30 s: torchrun starts two processes that each import transformers
def test_two_processes_train_on_different_data_and_save(workspace):
    from c2c.cli import main

    out = workspace["root"] / "ddp"
    code = main(["policy", "train", "--dataset", str(workspace["dataset"]), "--tokenizer", str(workspace["tokenizer"]),
                 "--out", str(out), "--preset", "debug", "--steps", "2", "--batch-size", "4", "--decode-frames", "4",
                 "--num-processes", "2"])
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    first = metrics["first_batch_frames"]
    assert metrics["processes"] == 2 and len(first) == 2 and first[0] != first[1]
    assert metrics["effective_batch_size"] == 8
    policy = PlanExecutePolicy.from_pretrained(out)
    assert policy.config.cameras == ("corner2", "wrist")


def test_random_shift_moves_each_image_within_the_pad_and_fills_with_edges():
    rng = np.random.default_rng(0)
    images = np.zeros((64, 12, 12, 3), dtype=np.uint8)
    images[:, 6, 6] = 255  # one bright pixel in the middle
    shifted = train_data.random_shift(images, 2, rng)
    assert shifted.shape == images.shape and shifted.dtype == np.uint8
    rows, cols = np.nonzero(shifted[..., 0] == 255)[1:]
    assert len(rows) == 64 and set(np.abs(rows - 6)) | set(np.abs(cols - 6)) <= {0, 1, 2}
    assert len({(r, c) for r, c in zip(rows, cols)}) > 10  # images move independently
    assert train_data.random_shift(images, 0, rng) is images
    edges = np.tile(np.arange(12, dtype=np.uint8)[None, :, None, None] * 10, (8, 1, 12, 3))  # rows 0, 10, ..., 110
    out = train_data.random_shift(edges, 3, np.random.default_rng(1))
    assert out.min() >= 0 and out.max() <= 110 and np.all(np.diff(out[..., 0, 0].astype(int), axis=1) >= 0)


def test_image_shift_trains_and_is_checked(workspace):
    with pytest.raises(ConfigError, match="--image-shift"):
        PolicyTrainConfig(dataset="d", tokenizer="t", out="o", image_shift=-1)
    config = _config(workspace, "shift", steps=2, image_shift=2)
    with torch_threads(1):
        metrics = train_policy(config, show_progress=False)
    assert metrics["steps"] == 2 and np.isfinite(metrics["train_recent"]["loss"])


def test_device_is_checked_before_training():
    with pytest.raises(ConfigError, match="--device: unknown device 'gpu0'"):
        PolicyTrainConfig(dataset="d", tokenizer="t", out="o", device="gpu0")
    with pytest.raises(ConfigError, match="--device: 'meta' is not supported"):
        PolicyTrainConfig(dataset="d", tokenizer="t", out="o", device="meta")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="--device cuda: this torch .* sees no CUDA GPU"):
            PolicyTrainConfig(dataset="d", tokenizer="t", out="o", device="cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_training_on_a_gpu_saves_a_policy_that_resumes_and_loads_on_the_cpu(workspace):
    """--device cuda: weights and batches on the GPU; the checkpoint resumes on the CPU (the device is not part of a
    run's settings) and the saved policy loads on the CPU, predicting finite chunks."""
    stopped = train_policy(_config(workspace, "gpu", steps=4, device="cuda"), show_progress=False, stop_after=2)
    assert stopped is None
    metrics = train_policy(_config(workspace, "gpu", steps=4, device="cpu"), show_progress=False, resume=True)
    assert metrics["steps"] == 4 and np.isfinite(metrics["train_recent"]["loss"])
    gpu_only = train_policy(_config(workspace, "gpu-only", steps=3, device="cuda"), show_progress=False)
    assert np.isfinite(gpu_only["heldout"]["exec_l1"])
    policy = PlanExecutePolicy.from_pretrained(workspace["root"] / "gpu-only", variant="plan")
    data = train_data.load_policy_data(workspace["dataset"], policy.action_tokenizer, workspace["tokenizer"],
                                       policy.config, workspace["root"] / "gpu-only")
    assert np.isfinite(policy.predict_action_chunk(data.batch(data.heldout_frames[:2]))).all()


def test_the_thread_schedule_is_recorded_because_the_weights_depend_on_it(workspace, monkeypatch):
    from c2c.policy.training.loop import THREADS_FILE_ENV

    # Pinned: one entry. CPU sums are split by thread, so the same schedule repeats the weights bit for bit.
    first = train_policy(_config(workspace, "one-thread-a"), show_progress=False)
    second = train_policy(_config(workspace, "one-thread-b"), show_progress=False)
    assert first["threads"] == second["threads"] == [{"step": 0, "threads": 1}]
    a, b = (load_file(str(workspace["root"] / name / WEIGHTS_FILE)) for name in ("one-thread-a", "one-thread-b"))
    assert all(torch.equal(a[key], b[key]) for key in a)
    # A side-by-side launcher raises the count through the threads file: the change and its step are recorded.
    threads_file = workspace["root"] / "threads"
    threads_file.write_text("2")
    monkeypatch.setenv(THREADS_FILE_ENV, str(threads_file))
    metrics = train_policy(_config(workspace, "raised"), show_progress=False)
    assert metrics["threads"] == [{"step": 0, "threads": 1}, {"step": 1, "threads": 2}]
    saved = json.loads((workspace["root"] / "raised" / "metrics.json").read_text())
    assert saved["threads"] == metrics["threads"]


def test_init_from_starts_at_a_trained_policys_ema_weights(workspace):
    base = workspace["root"] / "init_base"
    train_policy(_config(workspace, "init_base"), show_progress=False)
    # lr 0: the fine-tuned weights are exactly those it started from, the base's EMA (what evaluation used).
    train_policy(_config(workspace, "init_tuned", steps=1, lr=0.0, init_from=str(base)), show_progress=False)
    started = load_file(str(base / EMA_WEIGHTS_FILE))
    tuned = load_file(str(workspace["root"] / "init_tuned" / WEIGHTS_FILE))
    assert started.keys() == tuned.keys()
    for key in started:
        np.testing.assert_array_equal(started[key].numpy(), tuned[key].numpy(), err_msg=key)
    saved = json.loads((workspace["root"] / "init_tuned" / "train_config.json").read_text())
    assert saved["init_from"] == str(base)


def test_init_from_is_checked_against_the_policy_and_its_tokenizer(workspace):
    base = workspace["root"] / "check_base"
    train_policy(_config(workspace, "check_base", steps=1), show_progress=False)
    with pytest.raises(ConfigError, match=r"config.json: missing"):
        train_policy(_config(workspace, "bad1", init_from=str(workspace["root"] / "nowhere")), show_progress=False)
    with pytest.raises(ConfigError, match=r"--init-from .*check_base: the policy there differs .* variant"):
        train_policy(_config(workspace, "bad2", variant="noplan", init_from=str(base)), show_progress=False)
    other = workspace["root"] / "tokenizer_seed1"
    train_tokenizer(TokenizerTrainConfig(dataset=str(workspace["dataset"]), out=str(other), steps=1, batch_size=8,
                                         kmeans_samples=64, codec=TINY_CODEC, seed=1), show_progress=False)
    with pytest.raises(ConfigError, match=r"another action tokenizer than --tokenizer"):
        train_policy(_config(workspace, "bad3", tokenizer=str(other), init_from=str(base)), show_progress=False)
    for name in ("bad1", "bad2", "bad3"):  # refused before anything was trained
        assert not (workspace["root"] / name / "checkpoint").exists()


def test_plan_input_noise_corrupts_what_the_decoder_reads_not_the_targets(workspace):
    from c2c.policy.training.loop import noisy_plan_codes

    codes = np.arange(2 * 20 * 3).reshape(2, 20, 3) % 7
    codes[1, -1] = -1  # padding stays padding
    noisy = noisy_plan_codes(codes, 0.5, 4096, np.random.default_rng(0))
    changed = noisy != codes
    assert 0.3 < changed.mean() < 0.7 and (noisy[1, -1] == -1).all() and ((noisy >= 0) | (codes < 0)).all()
    assert np.array_equal(noisy, noisy_plan_codes(codes, 0.5, 4096, np.random.default_rng(0)))  # seeded
    assert np.array_equal(noisy_plan_codes(codes, 0.0, 4096, np.random.default_rng(0)), codes)
    # Training with it: the targets are the true codes, so the loss differs from teacher forcing only through the
    # inputs; a noplan variant refuses it in one line.
    metrics = train_policy(_config(workspace, "noisy", plan_input_noise=0.3), show_progress=False)
    assert metrics["steps"] == 2 and np.isfinite(metrics["heldout"]["exec_l1"])
    saved = json.loads((workspace["root"] / "noisy" / "train_config.json").read_text())
    assert saved["plan_input_noise"] == 0.3
    with pytest.raises(ConfigError, match="plan-input-noise 0.3: variant 'noplan' has no plan tokens"):
        _config(workspace, "bad-noise", variant="noplan", plan_input_noise=0.3)
    with pytest.raises(ConfigError, match=r"--plan-input-noise must lie in \[0, 1\)"):
        _config(workspace, "bad-noise", plan_input_noise=1.0)


def test_plan_input_codes_change_the_decoders_input_only(workspace):
    import torch

    from c2c.policy.processing import PLAN_CODES, PLAN_INPUT_CODES
    from c2c.policy.testing import debug_policy, random_batch

    policy = debug_policy("plan")
    batch = random_batch(policy.config, batch_size=2)
    with torch.no_grad():
        clean, _ = policy(batch)
        same, _ = policy({**batch, PLAN_INPUT_CODES: batch[PLAN_CODES]})
        noisy, _ = policy({**batch, PLAN_INPUT_CODES: (np.asarray(batch[PLAN_CODES]) + 1) % 16})
    assert torch.equal(clean, same) and not torch.equal(clean, noisy)
    with pytest.raises(ConfigError, match="codes.plan_input: shape"):
        policy({**batch, PLAN_INPUT_CODES: np.zeros((2, 3, 3), dtype=np.int64)})


def test_a_preset_gives_plan_input_noise_to_its_plan_variants_only(tmp_path):
    from c2c.eval.pipeline.stages import policy_configs
    from c2c.eval.presets import get_preset

    preset = get_preset("quick").replace(variants=("plan", "noplan", "regress"), plan_input_noise=0.2)
    configs = policy_configs(preset, tmp_path / "data", tmp_path)
    assert {variant: config.plan_input_noise for variant, config in configs.items()} == \
        {"plan": 0.2, "noplan": 0.0, "regress": 0.0}
    with pytest.raises(ConfigError, match="plan_input_noise must lie in"):
        get_preset("quick").replace(plan_input_noise=-0.1)


def test_read_only_arrays_become_tensors_of_their_own(recwarn):
    """An observation array numpy marks read-only (e.g. a decoded or resized image) is copied, never shared: no
    torch warning about non-writable memory, and writing to the tensor leaves the array as it was."""
    import numpy as np

    from c2c.policy.processing import _tensor

    image = np.zeros((4, 4, 3), dtype=np.uint8)
    image.flags.writeable = False
    tensor = _tensor(image, "observation.images.corner2")
    tensor += 1
    assert int(image.sum()) == 0 and int(tensor.sum()) == 48
    assert not [w for w in recwarn if "not writable" in str(w.message)]
