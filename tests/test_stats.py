"""Feature statistics: exact global quantiles, image histograms, JSON round trips."""

from __future__ import annotations

import json

import numpy as np
import pytest

from c2c.data.stats import (
    QUANTILES,
    STAT_NAMES,
    ImageStatsAccumulator,
    compute_feature_stats,
    compute_image_stats,
    load_stats_json,
    sample_frame_indices,
    stats_from_json,
    stats_to_json,
)
from c2c.errors import DatasetError


def test_vector_stats_match_numpy_over_all_rows() -> None:
    values = np.random.default_rng(0).normal(size=(500, 3)).astype(np.float32)
    stats = compute_feature_stats(values)
    assert set(stats) == set(STAT_NAMES)
    np.testing.assert_array_equal(stats["min"], values.min(axis=0))
    np.testing.assert_array_equal(stats["max"], values.max(axis=0))
    np.testing.assert_allclose(stats["mean"], values.astype(np.float64).mean(axis=0))
    np.testing.assert_allclose(stats["std"], values.astype(np.float64).std(axis=0))
    for name, level in QUANTILES.items():
        np.testing.assert_allclose(stats[name], np.quantile(values.astype(np.float64), level, axis=0))
    assert stats["count"].tolist() == [500]


def test_global_quantiles_differ_from_lerobots_weighted_average_of_episode_quantiles() -> None:
    rng = np.random.default_rng(1)
    calm = rng.normal(0.0, 0.1, size=(300, 1))  # an episode that barely moves
    wild = rng.normal(5.0, 3.0, size=(100, 1))  # a short episode with large motions
    both = np.concatenate([calm, wild])
    stats = compute_feature_stats(both)
    np.testing.assert_allclose(stats["q01"], np.quantile(both, 0.01, axis=0))
    np.testing.assert_allclose(stats["q99"], np.quantile(both, 0.99, axis=0))
    per_episode = [compute_feature_stats(part) for part in (calm, wild)]
    weighted_q99 = (per_episode[0]["q99"] * 300 + per_episode[1]["q99"] * 100) / 400
    assert abs(weighted_q99[0] - stats["q99"][0]) > 1.0  # the averaged "q99" is far from any real 99th percentile


def test_one_dimensional_and_integer_input() -> None:
    stats = compute_feature_stats(np.arange(10, dtype=np.int64))
    assert stats["min"].dtype == np.int64 and stats["min"].tolist() == [0]
    assert stats["max"].tolist() == [9]
    assert stats["q50"].shape == (1,) and stats["q50"][0] == pytest.approx(4.5)


def test_empty_input_is_refused() -> None:
    with pytest.raises(ValueError, match="non-empty"):
        compute_feature_stats(np.zeros((0, 3)))


def test_image_histogram_stats_are_exact_per_channel() -> None:
    frames = np.random.default_rng(2).integers(0, 256, size=(7, 9, 11, 3), dtype=np.uint8)
    frames[..., 2] //= 4  # a dark channel, so channels differ
    accumulator = ImageStatsAccumulator()
    accumulator.update(frames)
    stats = accumulator.result()
    pixels = frames.reshape(-1, 3).astype(np.float64)  # (N, 3)
    for name in ("min", "max", "mean", "std", *QUANTILES):
        assert stats[name].shape == (3, 1, 1)
    np.testing.assert_allclose(stats["mean"].ravel(), pixels.mean(axis=0) / 255)
    np.testing.assert_allclose(stats["std"].ravel(), pixels.std(axis=0) / 255)
    np.testing.assert_allclose(stats["min"].ravel(), pixels.min(axis=0) / 255)
    for name, level in QUANTILES.items():
        np.testing.assert_allclose(stats[name].ravel(), np.quantile(pixels, level, axis=0) / 255)
    assert stats["count"].tolist() == [7]
    assert 0.0 <= stats["min"].min() and stats["max"].max() <= 1.0


def test_merged_histograms_equal_one_pass_over_all_frames() -> None:
    rng = np.random.default_rng(3)
    first = rng.integers(0, 60, size=(4, 5, 5, 3), dtype=np.uint8)
    second = rng.integers(180, 256, size=(6, 5, 5, 3), dtype=np.uint8)
    merged, single, part = ImageStatsAccumulator(), ImageStatsAccumulator(), ImageStatsAccumulator()
    merged.update(first)
    part.update(second)
    merged.merge(part)
    single.update(np.concatenate([first, second]))
    for name in STAT_NAMES:
        np.testing.assert_array_equal(merged.result()[name], single.result()[name])


def test_histogram_quantiles_with_few_distinct_values() -> None:
    frames = np.zeros((1, 1, 2, 3), dtype=np.uint8)
    frames[0, 0, 1] = 255
    stats = ImageStatsAccumulator()
    stats.update(frames)
    result = stats.result()
    for name, level in QUANTILES.items():
        assert result[name][0, 0, 0] == pytest.approx(np.quantile([0.0, 1.0], level))


def test_frame_sampling_is_bounded_and_keeps_both_ends() -> None:
    indices = sample_frame_indices(1000, max_samples=50)
    assert len(indices) == 50 and indices[0] == 0 and indices[-1] == 999
    assert np.all(np.diff(indices) > 0)
    assert sample_frame_indices(7, max_samples=50).tolist() == list(range(7))
    frames = np.full((300, 4, 4, 3), 10, dtype=np.uint8)
    assert compute_image_stats(frames, max_samples=20)["count"].tolist() == [20]


def test_json_round_trip(tmp_path) -> None:
    stats = {"action": compute_feature_stats(np.random.default_rng(4).normal(size=(20, 2)))}
    stats["observation.images.cam"] = compute_image_stats(np.full((3, 4, 4, 3), 128, dtype=np.uint8))
    path = tmp_path / "stats.json"
    path.write_text(json.dumps(stats_to_json(stats)))
    loaded = load_stats_json(path)
    for feature, feature_stats in stats.items():
        for name, value in feature_stats.items():
            np.testing.assert_allclose(loaded[feature][name], value)
            assert loaded[feature][name].shape == np.asarray(value).shape


def test_malformed_stats_name_their_source(tmp_path) -> None:
    with pytest.raises(DatasetError, match="my-stats: stats of 'action'"):
        stats_from_json({"action": [1, 2]}, source="my-stats")
    with pytest.raises(DatasetError, match="not rectangular"):
        stats_from_json({"action": {"min": [[1, 2], [3]]}}, source="s")
    path = tmp_path / "stats.json"
    path.write_text("{not json")
    with pytest.raises(DatasetError, match="stats.json: malformed JSON"):
        load_stats_json(path)
    assert load_stats_json(tmp_path / "absent.json") == {}
