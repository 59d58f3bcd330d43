"""Codebook utilisation: the share of codes used at least once, from an index array."""

from __future__ import annotations

import numpy as np

from talkbench.metrics.base import Metric, MetricSpec

VERSION = "1"


def utilisation(indices: np.ndarray, codes: int) -> dict:
    """Utilisation of a (..., groups, residual_layers) array of code indices in [0, codes).

    Returns the share of the ``codes`` entries used at least once for each (group, layer)
    codebook, the mean per group and per layer, and ``overall``, the mean over all codebooks
    (each group and layer has its own codebook, as in GRVQ/GRFSQ).
    """
    indices = np.asarray(indices)
    if indices.ndim < 2:
        raise ValueError(f"indices need shape (..., groups, residual_layers), got {indices.shape}")
    if indices.size and (indices.min() < 0 or indices.max() >= codes):
        raise ValueError(f"indices must lie in [0, {codes}), found {indices.min()}..{indices.max()}")
    groups, layers = indices.shape[-2:]
    flat = indices.reshape(-1, groups, layers)
    used = np.zeros((groups, layers), dtype=np.float64)
    for g in range(groups):
        for r in range(layers):
            used[g, r] = np.unique(flat[:, g, r]).size / codes
    return {
        "per_codebook": used.tolist(),
        "per_group": used.mean(axis=1).tolist(),
        "per_layer": used.mean(axis=0).tolist(),
        "overall": float(used.mean()),
    }


class Utilisation(Metric):
    """Listed with the metrics for its spec; it reads code indices, not videos, so the engine
    refuses it (call ``utilisation()``)."""

    spec = MetricSpec("utilisation", VERSION, "offline", ("utilisation",), True,
                      description="codebook utilisation from code indices (not a video metric; call utilisation())")
