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
    same_low, same_high = bootstrap.difference_interval(a, a + rng.normal(0.0, 0.01, 300), 1000, seed=0)
    assert same_low < 0 < same_high


def test_a_distribution_interval_resamples_whole_clips():
    """The distance gets each clip's multiplicity: whole clips, as many draws as clips."""
    seen = []

    def distance(multiplicity):
        seen.append(multiplicity)
        return float(multiplicity[0])

    low, high = bootstrap.distribution_interval(6, distance, 200, seed=0)
    assert all(m.sum() == 6 and len(m) == 6 for m in seen) and len(seen) == 200
    assert 0 <= low < high <= 6  # clip 0 drawn 0 … 6 times
    assert bootstrap.distribution_interval(1, distance, 200, seed=0) is None


def test_fid_replicates_equal_the_reference_sqrtm_form():
    """The eigenvalue form of the Fréchet distance the replicates use equals pytorch-fid's."""
    from talkbench.metrics.fid import frechet_distance, frechet_distance_eigh

    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(300, 64)), rng.normal(0.3, 1.2, size=(200, 64))
    args = (a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))
    assert frechet_distance_eigh(*args) == pytest.approx(frechet_distance(*args), rel=1e-9)


def test_weighted_sums_equal_repeated_rows():
    from talkbench.metrics.fid import GaussianStats

    rows = np.random.default_rng(3).normal(size=(7, 5))
    weights = np.array([0, 2, 1, 0, 3, 1, 1])
    weighted, repeated = GaussianStats.empty(5), GaussianStats.empty(5)
    weighted.update_weighted(rows, weights)
    repeated.update(np.repeat(rows, weights, axis=0))
    assert weighted.count == repeated.count == 8
    assert np.allclose(weighted.total, repeated.total, rtol=1e-14) and np.allclose(weighted.outer, repeated.outer, rtol=1e-14)
