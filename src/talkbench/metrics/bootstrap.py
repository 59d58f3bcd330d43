"""Bootstrap 95% intervals over clips, seeded (the seed and replicate count are protocol fields).

A clip is the unit that varies between benchmarks, so clips are resampled with replacement:
for a mean, the mean of each resample; for FID/FVD, each resample's clips' feature rows are
added into the float64 sums and the distance recomputed. Percentile intervals.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

LEVEL = 0.95


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def resamples(count: int, replicates: int, seed: int) -> np.ndarray:
    """(replicates, count) clip indices drawn with replacement."""
    return _rng(seed).integers(0, count, size=(replicates, count))


def percentile_interval(samples: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(samples, [tail, 100 - tail])
    return float(low), float(high)


def mean_interval(values: np.ndarray, replicates: int, seed: int, level: float = LEVEL) -> tuple[float, float] | None:
    """Interval of the mean of per-clip values; None for fewer than 2 clips or no replicates."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) < 2 or replicates < 1:
        return None
    means = values[resamples(len(values), replicates, seed)].mean(axis=1)
    return percentile_interval(means, level)


def difference_interval(a: np.ndarray, b: np.ndarray, replicates: int, seed: int,
                        level: float = LEVEL) -> tuple[float, float] | None:
    """Interval of mean(a) − mean(b), each group resampled on its own (e.g. the Indo-European /
    non-Indo-European gap)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if len(a) < 2 or len(b) < 2 or replicates < 1:
        return None
    rng = _rng(seed)
    diffs = (a[rng.integers(0, len(a), size=(replicates, len(a)))].mean(axis=1)
             - b[rng.integers(0, len(b), size=(replicates, len(b)))].mean(axis=1))  # fmt: skip
    return percentile_interval(diffs, level)


def distribution_interval(clips: int, distance: Callable[[np.ndarray], float], replicates: int, seed: int,
                          level: float = LEVEL) -> tuple[float, float] | None:
    """Interval of a distance between two feature sets, resampling whole clips: ``distance``
    gets each clip's multiplicity in the resample (its rows on both sides count that often)."""
    if clips < 2 or replicates < 1:
        return None
    values = []
    for picks in resamples(clips, replicates, seed):
        try:
            values.append(distance(np.bincount(picks, minlength=clips)))
        except ValueError:  # a resample with too few rows
            continue
    return percentile_interval(np.array(values), level) if values else None
