import cpbd as cpbd_reference
import numpy as np
from PIL import Image

from talkbench.metrics.cpbd import (
    BLOCK,
    THRESHOLD,
    canny_edges,
    cpbd_frames,
    cpbd_gray,
    edge_blocks,
    rgb_to_gray,
    thinned_sobel_edges,
)


def test_gray_conversion_is_pil_luma(real_frames):
    ours = rgb_to_gray(real_frames)
    for frame, gray in zip(real_frames, ours):
        assert np.array_equal(np.asarray(Image.fromarray(frame).convert("L")), gray)


def test_equals_cpbd_py312_on_real_frames(real_frames, other_frames):
    frames = np.concatenate([real_frames[:2], other_frames[:1]])
    ours = cpbd_frames(frames)
    reference = np.array([cpbd_reference.compute(g) for g in rgb_to_gray(frames)])
    assert np.abs(ours - reference).max() < 1e-6
    assert (reference > 0).all()  # the comparison is not between two zeros


def test_equals_cpbd_py312_on_blurred_noisy_and_flat_images(real_frames):
    from scipy.ndimage import gaussian_filter

    gray = rgb_to_gray(real_frames[0])
    rng = np.random.default_rng(0)
    images = [
        gaussian_filter(gray.astype(float), 2).round().astype(np.uint8),  # blurred: lower CPBD
        rng.integers(0, 256, (128, 192), dtype=np.uint8),  # noise, non-square, 2x3 blocks
        np.full((128, 128), 77, np.uint8),  # flat: no edges at all
        np.tile(np.arange(128, dtype=np.uint8), (128, 1)),  # a ramp: all angles 0
    ]
    for image in images:
        assert abs(cpbd_gray(image) - cpbd_reference.compute(image)) < 1e-6


def test_internal_steps_are_bit_identical(real_frames):
    from skimage.feature import canny

    import cpbd.octave

    image = rgb_to_gray(real_frames[3]).astype(np.float64)
    assert np.array_equal(canny_edges(image), canny(image))
    assert np.array_equal(thinned_sobel_edges(image), cpbd.octave.sobel(image))


def test_edge_block_shortcut_agrees_with_full_canny(real_frames):
    from skimage.feature import canny

    rng = np.random.default_rng(3)
    sparse = np.zeros((128, 128))
    sparse[10:12, 5:9] = 200  # a few weak edges: counts near the 8-pixel threshold
    sparse[70:71, 70:76] = rng.integers(1, 40, 6)
    # faint noise: few strong pixels (≥ 0.2) but many weak ones, so the hysteresis decides
    faint = np.random.default_rng(4).normal(0, 0.04, (128, 128))
    images = [rgb_to_gray(real_frames[0]).astype(np.float64), sparse, rng.normal(0, 0.2, (128, 128)), faint]
    for image in images:
        edges = canny(image)
        expected = edges.reshape(image.shape[0] // BLOCK, BLOCK, -1, BLOCK).sum(axis=(1, 3)) > BLOCK * BLOCK * THRESHOLD
        assert np.array_equal(edge_blocks(image), expected)
    assert not expected.all()  # (of the faint image) hysteresis dropped weak-only blocks
