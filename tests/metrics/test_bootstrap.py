"""Bootstrap intervals over clips: seeded, and as wide as sampling theory says."""

from __future__ import annotations

import numpy as np
import pytest

from talkbench.metrics import bootstrap


def test_the_mean_interval_has_the_normal_theory_width():
    values = np.random.default_rng(1).normal(size=400)
    low, high = bootstrap.mean_interval(values, 2000, seed=0)
    assert low < values.mean() < high
    assert high - low == pytest.approx(2 * 1.96 / np.sqrt(len(values)), rel=0.12)  # σ = 1


def test_intervals_are_seeded_and_degenerate_cases_say_so():
    values = np.array([0.1, 0.5, 0.3, 0.9])
    assert bootstrap.mean_interval(values, 500, seed=3) == bootstrap.mean_interval(values, 500, seed=3)
    assert bootstrap.mean_interval(values, 500, seed=3) != bootstrap.mean_interval(values, 500, seed=4)
    assert bootstrap.mean_interval(np.array([0.5]), 500, seed=0) is None  # one clip: no interval
    assert bootstrap.mean_interval(np.full(5, 0.7), 500, seed=0) == pytest.approx((0.7, 0.7))


def test_a_gap_interval_excludes_zero_only_for_a_real_gap():
    rng = np.random.default_rng(2)
    a, b = rng.normal(0.0, 1, 300), rng.normal(0.5, 1, 300)
    low, high = bootstrap.difference_interval(a, b, 1000, seed=0)
    assert high < 0  # b is larger by 0.5 ≈ 6 standard errors
    same_low, same_high = bootstrap.difference_interval(a, rng.normal(0.0, 1, 300), 1000, seed=0)
    assert same_low < 0 < same_high or abs(same_low) < 0.2


def test_a_distribution_interval_resamples_whole_clips():
    """Clip i's generated and reference rows travel together; a distance of identical sides
    stays exactly 0 in every resample."""
    rng = np.random.default_rng(0)
    clips = [rng.normal(size=(5, 3)) for _ in range(6)]
    seen = []

    def distance(gen, ref):
        seen.append(len(gen))
        return float(np.abs(gen.mean(0) - ref.mean(0)).sum())

    assert bootstrap.distribution_interval(clips, clips, distance, 50, seed=0) == (0.0, 0.0)
    assert set(seen) == {30}  # six whole clips of five rows each time
