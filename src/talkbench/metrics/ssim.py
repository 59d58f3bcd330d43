"""SSIM per frame, equal to ``skimage.metrics.structural_similarity`` with the Wang et al. settings:
RGB (channel mean), Gaussian window σ=1.5 truncated at 3.5σ (11 taps), K1=0.01, K2=0.03,
data range 255, population covariance.

skimage filters the whole image with reflect padding and then drops a border of 5 pixels
before averaging; a *valid* filter computes exactly that inner region, so no padding is
needed. The separable filter and the SSIM map are fused in one numba loop in float64 (the
uxx − ux² terms cancel badly in float32); only vx + vy enters SSIM, so x² + y² is filtered as
one map instead of two.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from talkbench.metrics.base import Batch, FrameMeans, Metric, MetricSpec, Need

VERSION = "1"
SIGMA = 1.5
TRUNCATE = 3.5
K1, K2 = 0.01, 0.03
DATA_RANGE = 255.0


def gaussian_taps(sigma: float = SIGMA, truncate: float = TRUNCATE) -> np.ndarray:
    radius = int(truncate * sigma + 0.5)  # as scipy.ndimage.gaussian_filter
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    taps = np.exp(-0.5 * (x / sigma) ** 2)
    return taps / taps.sum()


# fastmath without reassociation: a vectorised sum whose order followed the alignment of the
# scratch arrays would move results in the last bit from one process to another.
@njit(parallel=True, cache=True, fastmath={"nnan", "ninf", "nsz", "arcp", "contract", "afn"})
def _ssim_kernel(gen, ref, taps, c1, c2):  # pragma: no cover - compiled
    n, h, w, channels = gen.shape
    size = taps.shape[0]
    ho, wo = h - size + 1, w - size + 1
    out = np.zeros(n)
    for t in prange(n):
        total = 0.0
        x = np.empty((h, w))
        y = np.empty((h, w))
        # horizontally filtered maps: mean x, mean y, mean (x² + y²), mean xy
        hx = np.empty((h, wo))
        hy = np.empty((h, wo))
        hsq = np.empty((h, wo))
        hxy = np.empty((h, wo))
        lx = np.empty(wo)
        ly = np.empty(wo)
        lsq = np.empty(wo)
        lxy = np.empty(wo)
        for c in range(channels):
            for i in range(h):
                for j in range(w):
                    x[i, j] = gen[t, i, j, c]
                    y[i, j] = ref[t, i, j, c]
            for i in range(h):
                for j in range(wo):
                    hx[i, j] = 0.0
                    hy[i, j] = 0.0
                    hsq[i, j] = 0.0
                    hxy[i, j] = 0.0
                for k in range(size):
                    wk = taps[k]
                    for j in range(wo):
                        a = x[i, j + k]
                        b = y[i, j + k]
                        hx[i, j] += wk * a
                        hy[i, j] += wk * b
                        hsq[i, j] += wk * (a * a + b * b)
                        hxy[i, j] += wk * (a * b)
            for i in range(ho):
                for j in range(wo):
                    lx[j] = 0.0
                    ly[j] = 0.0
                    lsq[j] = 0.0
                    lxy[j] = 0.0
                for k in range(size):
                    wk = taps[k]
                    for j in range(wo):
                        lx[j] += wk * hx[i + k, j]
                        ly[j] += wk * hy[i + k, j]
                        lsq[j] += wk * hsq[i + k, j]
                        lxy[j] += wk * hxy[i + k, j]
                for j in range(wo):
                    ux = lx[j]
                    uy = ly[j]
                    v = lsq[j] - ux * ux - uy * uy  # vx + vy
                    vxy = lxy[j] - ux * uy
                    total += ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (v + c2))
        out[t] = total / (channels * ho * wo)
    return out


_TAPS = gaussian_taps()


def ssim_frames(generated: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """SSIM of each frame pair; (T, H, W, 3) uint8 arrays → (T,) float64."""
    if generated.shape != reference.shape:
        raise ValueError(f"SSIM needs equal shapes, got {generated.shape} and {reference.shape}")
    if generated.ndim == 3:
        generated, reference = generated[None], reference[None]
    c1 = (K1 * DATA_RANGE) ** 2
    c2 = (K2 * DATA_RANGE) ** 2
    return _ssim_kernel(np.ascontiguousarray(generated), np.ascontiguousarray(reference), _TAPS, c1, c2)


class SSIM(Metric):
    spec = MetricSpec("ssim", VERSION, "clip", ("ssim",), True, frozenset({Need.REFERENCE}),
                      description="SSIM, RGB, Gaussian σ=1.5")

    def update(self, state: FrameMeans, batch: Batch) -> None:
        state.add("ssim", ssim_frames(batch.generated, batch.reference))
