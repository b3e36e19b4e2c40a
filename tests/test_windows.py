"""Eq. 3-4 and hold padding against hand-computed examples."""

import numpy as np
import pytest

from c2c.data.normalize import ActionNormalizers, QuantileNormalizer
from c2c.data.windows import (
    WindowSpec,
    coarse_plan_from_actions,
    dataset_windows,
    episode_windows,
    resolve_gripper_dims,
)
from c2c.errors import ConfigError, DatasetError


def _ramp_episode(length: int) -> np.ndarray:
    """(T, 2) actions: motion dim 0 = t + 1, gripper dim 1 alternates sign every 3 steps."""
    t = np.arange(length, dtype=np.float32)
    gripper = np.where((t // 3) % 2 == 0, 1.0, -1.0).astype(np.float32)
    return np.stack([t + 1.0, gripper], axis=1)


def test_coarse_plan_sums_motion_and_keeps_last_gripper():
    # Hp = 6, K = 3, c = 2: chunks (1,2), (3,4), (5,6) of motion; gripper 1,1,1,-1,-1,-1.
    actions = _ramp_episode(6)
    plan = coarse_plan_from_actions(actions, plan_steps=3, gripper_mask=np.array([False, True]))
    np.testing.assert_array_equal(plan[:, 0], [3.0, 7.0, 11.0])  # Eq. 3: 1+2, 3+4, 5+6
    np.testing.assert_array_equal(plan[:, 1], [1.0, -1.0, -1.0])  # Eq. 4: last of each chunk: a1, a3, a5


def test_paper_default_spec():
    spec = WindowSpec()
    assert (spec.exec_horizon, spec.plan_horizon, spec.plan_steps, spec.chunk_size) == (20, 160, 20, 8)


def test_windows_at_episode_end_are_hold_padded():
    actions = _ramp_episode(5)  # motion 1..5, gripper 1,1,1,-1,-1
    spec = WindowSpec(exec_horizon=3, plan_horizon=4, plan_steps=2, gripper_dims=(1,))
    w = episode_windows(actions, spec)
    # Frame 3: exec = a3, a4, pad -> motion 4, 5, 0; gripper -1, -1, -1 (last value held).
    np.testing.assert_array_equal(w.exec_chunks[3, :, 0], [4.0, 5.0, 0.0])
    np.testing.assert_array_equal(w.exec_chunks[3, :, 1], [-1.0, -1.0, -1.0])
    np.testing.assert_array_equal(w.exec_pad[3], [False, False, True])
    # Frame 3 plan: source a3, a4, pad, pad -> chunks (4+5), (0+0); gripper last of chunk: -1, -1.
    np.testing.assert_array_equal(w.plans[3], [[9.0, -1.0], [0.0, -1.0]])
    np.testing.assert_array_equal(w.plan_pad[3], [False, True])
    # Frame 0 is fully inside: plan chunks (1+2), (3+4); gripper a1 = 1, a3 = -1.
    np.testing.assert_array_equal(w.plans[0], [[3.0, 1.0], [7.0, -1.0]])
    assert not w.exec_pad[0].any() and not w.plan_pad[0].any()
    # Last frame: one real step, the rest held.
    np.testing.assert_array_equal(w.exec_chunks[4, :, 0], [5.0, 0.0, 0.0])
    np.testing.assert_array_equal(w.plans[4], [[5.0, -1.0], [0.0, -1.0]])


def test_windows_do_not_cross_episode_boundaries():
    a = _ramp_episode(4)
    b = _ramp_episode(3) * 10.0
    actions = np.concatenate([a, b])
    episode_index = np.array([0] * 4 + [1] * 3)
    spec = WindowSpec(exec_horizon=3, plan_horizon=4, plan_steps=2, gripper_dims=(1,))
    w = dataset_windows(actions, episode_index, spec)
    assert w.exec_chunks.shape == (7, 3, 2) and w.plans.shape == (7, 2, 2)
    # Frame 3 is the last of episode 0: its window must not read episode 1's first action (10).
    np.testing.assert_array_equal(w.exec_chunks[3, :, 0], [4.0, 0.0, 0.0])
    np.testing.assert_array_equal(w.exec_chunks[4], episode_windows(b, spec).exec_chunks[0])


def test_dataset_windows_reject_interleaved_episodes():
    spec = WindowSpec(exec_horizon=2, plan_horizon=2, plan_steps=1, gripper_dims=(1,))
    with pytest.raises(DatasetError, match="contiguous"):
        dataset_windows(_ramp_episode(4), np.array([0, 1, 0, 1]), spec)


def test_plan_horizon_must_be_divisible_by_plan_steps():
    with pytest.raises(ConfigError, match=r"Hp=150.*K=20"):
        WindowSpec(plan_horizon=150, plan_steps=20)


def test_no_plan_variant_has_no_plan_windows():
    w = episode_windows(_ramp_episode(5), WindowSpec(exec_horizon=2, plan_horizon=0, gripper_dims=(1,)))
    assert w.plans is None and w.exec_chunks.shape == (5, 2, 2)


def test_gripper_dims_resolution():
    assert resolve_gripper_dims(["dx", "dy", "dz", "gripper"]) == (3,)
    assert resolve_gripper_dims(None, preset="libero") == (6,)
    with pytest.raises(ConfigError, match="cannot tell"):
        resolve_gripper_dims(["a", "b"])
    with pytest.raises(ConfigError, match="unknown action layout"):
        resolve_gripper_dims(None, preset="franka")


def test_quantile_normalizer_maps_q01_q99_to_unit_range_and_clips():
    rng = np.random.default_rng(0)
    values = rng.normal(size=(10_000, 3)).astype(np.float32) * [1.0, 5.0, 0.1]
    norm = QuantileNormalizer.fit(values)
    np.testing.assert_allclose(norm.q01, np.quantile(values, 0.01, axis=0), rtol=1e-5)
    x = norm.normalize(values)
    assert x.min() >= -1.0 and x.max() <= 1.0
    inside = (values > norm.q01) & (values < norm.q99)
    np.testing.assert_allclose(norm.unnormalize(x)[inside], values[inside], rtol=1e-4, atol=1e-5)
    restored = QuantileNormalizer.from_dict(norm.to_dict())
    np.testing.assert_array_equal(restored.q99, norm.q99)


def test_constant_dimension_stays_finite():
    norm = QuantileNormalizer.fit(np.ones((100, 1), np.float32))
    assert np.isfinite(norm.normalize(np.ones((4, 1), np.float32))).all()


def test_plan_statistics_are_wider_than_action_statistics():
    rng = np.random.default_rng(1)
    actions = rng.uniform(-1, 1, size=(400, 2)).astype(np.float32)
    actions[:, 1] = np.sign(actions[:, 1])
    spec = WindowSpec(exec_horizon=4, plan_horizon=16, plan_steps=4, gripper_dims=(1,))
    windows = episode_windows(actions, spec)
    norms = ActionNormalizers.fit(actions, actions, windows)
    assert norms.plan.q99[0] - norms.plan.q01[0] > 2 * (norms.action.q99[0] - norms.action.q01[0])
    again = ActionNormalizers.from_dict(norms.to_dict())
    np.testing.assert_array_equal(again.plan.q01, norms.plan.q01)
