"""CPBD (cumulative probability of blur detection, Narvekar & Karam 2011), equal to
``cpbd.compute`` of the PyPI package ``cpbd-py312`` on the same grayscale image.

RGB → gray: ITU-R 601-2 luma with PIL's integer arithmetic,
``L = (19595 R + 38470 G + 7471 B + 32768) >> 16``, i.e. exactly ``Image.convert("L")``,
which is what the reference's ``imread(path, mode="L")`` feeds it.

The reference spends its time in per-pixel Python loops (edge angles and the Marziliano edge
widths). Those loops are compiled here with numba and follow the reference step by step,
including its quirks: a pixel with zero horizontal gradient gets angle 0 (so it is measured as
a horizontal edge); only angles that quantise to 0 or ±180° get a width; widths are capped at
101 per side; blocks are the full 64×64 tiles only. The Sobel thinning and the
gradients work on integer-valued images where every sum is exact, so the compiled versions are
bit-identical. Canny (the edge-block test) is scikit-image's, its smoothing and gradients
compiled with scipy's exact operation order (bit-identical), its non-maximum suppression
called unchanged, and its hysteresis skipped where it cannot change a block's verdict.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import scipy.ndimage as ndi
from numba import njit
from skimage._shared.filters import gaussian
from skimage.feature._canny_cy import _nonmaximum_suppression_bilinear

from talkbench.metrics.base import Batch, FrameMeans, Metric, MetricSpec

VERSION = "1"
THRESHOLD = 0.002
BETA = 3.6
BLOCK = 64
MAX_MARGIN = 100


def rgb_to_gray(frames: np.ndarray) -> np.ndarray:
    """uint8 RGB (..., 3) → uint8 luma, bit-exact with PIL ``convert("L")``."""
    rgb = frames.astype(np.uint32)
    return ((rgb[..., 0] * 19595 + rgb[..., 1] * 38470 + rgb[..., 2] * 7471 + 0x8000) >> 16).astype(np.uint8)


@lru_cache(maxsize=8)
def _bleed_over(shape: tuple[int, int]) -> np.ndarray:
    return gaussian(np.ones(shape), sigma=1.0, mode="constant", cval=0.0, preserve_range=False) + np.finfo(np.float64).eps


# scipy's gaussian_filter taps for σ=1, truncate=4 (radius 4), read off its impulse response.
_GAUSS = ndi.gaussian_filter1d(np.eye(1, 9, 4).ravel(), 1.0, mode="constant", truncate=4.0)[4:]


@njit(cache=True)
def _canny_gradients(image, taps, bleed):  # pragma: no cover - compiled
    """skimage canny's smoothing and Sobel gradients, with scipy ``correlate1d``'s exact
    operation order (centre tap first, then symmetric pairs from the outside in), so the
    results are bit-identical: Gaussian (constant 0 border) along rows then columns, divided
    by the blurred mask; Sobel [-1, 0, 1] then [1, 2, 1] with reflected borders. Borders are
    padded so the inner loops run over contiguous rows without branches."""
    h, w = image.shape
    radius = taps.shape[0] - 1
    padded = np.zeros((h + 2 * radius, w))
    padded[radius : radius + h] = image
    tmp = np.zeros((h, w + 2 * radius))
    for r in range(h):
        for c in range(w):
            tmp[r, radius + c] = padded[radius + r, c] * taps[0]
        for j in range(radius, 0, -1):
            for c in range(w):
                tmp[r, radius + c] += (padded[radius + r - j, c] + padded[radius + r + j, c]) * taps[j]
    # smooth, padded by one reflected pixel on each side for the Sobel steps
    smooth = np.empty((h + 2, w + 2))
    for r in range(h):
        for c in range(w):
            smooth[r + 1, c + 1] = tmp[r, radius + c] * taps[0]
        for j in range(radius, 0, -1):
            for c in range(w):
                smooth[r + 1, c + 1] += (tmp[r, radius + c - j] + tmp[r, radius + c + j]) * taps[j]
        for c in range(w):
            smooth[r + 1, c + 1] = smooth[r + 1, c + 1] / bleed[r, c]
        smooth[r + 1, 0] = smooth[r + 1, 1]
        smooth[r + 1, w + 1] = smooth[r + 1, w]
    smooth[0] = smooth[1]
    smooth[h + 1] = smooth[h]
    dx = np.empty((h + 2, w))  # [-1, 0, 1] along columns, rows kept padded for the next step
    dy = np.empty((h, w + 2))  # [-1, 0, 1] along rows, columns kept padded
    for r in range(h + 2):
        for c in range(w):
            dx[r, c] = smooth[r, c + 1] * 0.0 + (smooth[r, c] - smooth[r, c + 2]) * -1.0
    for r in range(h):
        for c in range(w + 2):
            dy[r, c] = smooth[r + 1, c] * 0.0 + (smooth[r, c] - smooth[r + 2, c]) * -1.0
    jsobel = np.empty((h, w))
    isobel = np.empty((h, w))
    magnitude = np.empty((h, w))
    for r in range(h):
        for c in range(w):
            jv = dx[r + 1, c] * 2.0 + (dx[r, c] + dx[r + 2, c]) * 1.0
            iv = dy[r, c + 1] * 2.0 + (dy[r, c] + dy[r, c + 2]) * 1.0
            jsobel[r, c] = jv
            isobel[r, c] = iv
            magnitude[r, c] = np.sqrt(iv * iv + jv * jv)
    return isobel, jsobel, magnitude


def _suppressed(image: np.ndarray) -> np.ndarray:
    """Canny's non-maximum-suppressed magnitudes above the low threshold (0.1)."""
    isobel, jsobel, magnitude = _canny_gradients(image, _GAUSS, _bleed_over(image.shape))
    eroded = np.zeros(image.shape, dtype=bool)
    eroded[1:-1, 1:-1] = True
    return _nonmaximum_suppression_bilinear(isobel, jsobel, magnitude, eroded, 0.1)


def _hysteresis(low_masked: np.ndarray) -> np.ndarray:
    low_mask = low_masked > 0
    labels, count = ndi.label(low_mask, np.ones((3, 3), bool))
    if count == 0:
        return low_mask
    good = np.zeros(count + 1, bool)
    good[labels[low_mask & (low_masked >= 0.2)]] = True
    good[0] = False
    return good[labels]


def canny_edges(image: np.ndarray) -> np.ndarray:
    """``skimage.feature.canny(image)`` for a float64 image (σ=1, thresholds 0.1/0.2, no mask)."""
    return _hysteresis(_suppressed(image))


def _block_counts(mask: np.ndarray) -> np.ndarray:
    nh, nw = mask.shape[0] // BLOCK, mask.shape[1] // BLOCK
    return mask[: nh * BLOCK, : nw * BLOCK].reshape(nh, BLOCK, nw, BLOCK).sum(axis=(1, 3))


def edge_blocks(image: np.ndarray) -> np.ndarray:
    """Which 64×64 blocks have more than 0.2 % Canny edge pixels. Canny's edges lie between
    the strong pixels (≥ 0.2, always kept) and the weak ones (≥ 0.1), so the connected-component
    hysteresis only runs when those two counts straddle the threshold in some block."""
    low_masked = _suppressed(image)
    limit = BLOCK * BLOCK * THRESHOLD
    strong = _block_counts(low_masked >= 0.2) > limit
    weak = _block_counts(low_masked > 0) > limit
    if np.array_equal(strong, weak):
        return strong
    return _block_counts(_hysteresis(low_masked)) > limit


@njit(cache=True)
def _sobel_strength(image):  # pragma: no cover - compiled
    """Squared horizontal Sobel response, scipy ``convolve`` with reflect borders."""
    h, w = image.shape
    out = np.empty((h, w))
    for r in range(h):
        up = r - 1 if r > 0 else 0
        down = r + 1 if r < h - 1 else h - 1
        for c in range(w):
            left = c - 1 if c > 0 else 0
            right = c + 1 if c < w - 1 else w - 1
            v = (
                (image[up, left] + 2 * image[r, left] + image[down, left])
                - (image[up, right] + 2 * image[r, right] + image[down, right])
            ) / 8.0
            out[r, c] = v * v
    return out


@njit(cache=True)
def _thin(strength):  # pragma: no cover - compiled
    h, w = strength.shape
    out = np.zeros((h, w), np.bool_)
    for r in range(h):
        for c in range(w):
            s = strength[r, c]
            left = strength[r, c - 1] if c > 0 else 0.0
            right = strength[r, c + 1] if c < w - 1 else 0.0
            up = strength[r - 1, c] if r > 0 else 0.0
            down = strength[r + 1, c] if r < h - 1 else 0.0
            out[r, c] = (s > left and s > right) or (s > up and s > down)
    return out


def thinned_sobel_edges(image: np.ndarray) -> np.ndarray:
    """The reference's Octave-style Sobel edge map (vertical edges, simple thinning)."""
    strength = _sobel_strength(image)
    strength[strength <= 2 * np.sqrt(np.mean(strength))] = 0
    return _thin(strength)


@njit(cache=True)
def _edge_widths(image, edges, gy, gx):  # pragma: no cover - compiled
    h, w = image.shape
    widths = np.zeros((h, w))
    for row in range(1, h - 1):
        for col in range(1, w - 1):
            if not edges[row, col]:
                continue
            if gx[row, col] != 0:
                angle = math.atan2(gy[row, col], gx[row, col]) * (180 / math.pi)
            elif gy[row, col] == math.pi / 2:
                angle = 90.0
            else:
                angle = 0.0
            q = 45 * np.rint(angle / 45)  # np.round: half to even
            if q == 180 or q == -180:
                sign = 1.0  # walking outwards, intensity must keep rising to the left
            elif q == 0:
                sign = -1.0
            else:
                continue
            margin = 0
            for margin in range(MAX_MARGIN + 1):
                inner, outer = col - 1 - margin, col - 2 - margin
                if outer < 0 or sign * (image[row, outer] - image[row, inner]) <= 0:
                    break
            width_left = margin + 1
            for margin in range(MAX_MARGIN + 1):
                inner, outer = col + 1 + margin, col + 2 + margin
                if outer >= w or sign * (image[row, outer] - image[row, inner]) >= 0:
                    break
            widths[row, col] = width_left + margin + 1
    return widths


@njit(cache=True)
def _sharpness(image, blocks, widths):  # pragma: no cover - compiled
    hist = np.zeros(101)
    total = 0
    for bi in range(blocks.shape[0]):
        for bj in range(blocks.shape[1]):
            if not blocks[bi, bj]:
                continue
            r0, c0 = bi * BLOCK, bj * BLOCK
            lo, hi = image[r0, c0], image[r0, c0]
            for r in range(r0, r0 + BLOCK):
                for c in range(c0, c0 + BLOCK):
                    v = image[r, c]
                    lo = min(lo, v)
                    hi = max(hi, v)
            jnb = 5.0 if int(hi - lo) <= 50 else 3.0
            for r in range(r0, r0 + BLOCK):
                for c in range(c0, c0 + BLOCK):
                    width = widths[r, c]
                    if width != 0:
                        p = 1 - np.exp(-(abs(width / jnb) ** BETA))
                        hist[int(np.rint(p * 100))] += 1
                        total += 1
    if total == 0:
        return 0.0
    return hist[:64].sum() / total


def cpbd_gray(gray: np.ndarray) -> float:
    """CPBD of one 2-D grayscale image (any real dtype; the reference casts to float64)."""
    image = np.asarray(gray, dtype=np.float64)
    blocks = edge_blocks(image)
    edges = thinned_sobel_edges(image)
    gy, gx = np.gradient(image)
    # The reference measures no widths at all when every edge angle is 0 (np.any(edge_angles)).
    if not np.any((gx != 0) & ((gy != 0) | (gx < 0))) and not np.any((gx == 0) & (gy == math.pi / 2)):
        widths = np.zeros_like(image)
    else:
        widths = _edge_widths(image, edges, gy, gx)
    return float(_sharpness(image, blocks, widths))


def cpbd_frames(frames: np.ndarray) -> np.ndarray:
    """CPBD of each uint8 RGB frame (T, H, W, 3) → (T,) float64."""
    frames = np.asarray(frames)
    if frames.ndim == 3:
        frames = frames[None]
    gray = rgb_to_gray(frames)
    return np.array([cpbd_gray(g) for g in gray])


class CPBD(Metric):
    spec = MetricSpec("cpbd", VERSION, "clip", ("cpbd",), True, description="CPBD sharpness")

    def update(self, state: FrameMeans, batch: Batch) -> None:
        state.add("cpbd", cpbd_frames(batch.generated))
