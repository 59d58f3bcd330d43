import numpy as np
from skimage.metrics import structural_similarity

from talkbench.metrics.ssim import ssim_frames


def skimage_ssim(a, b):
    return structural_similarity(
        a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, channel_axis=-1, data_range=255
    )


def test_equals_skimage_on_real_frames(real_frames, other_frames):
    rng = np.random.default_rng(0)
    noisy = np.clip(real_frames.astype(int) + rng.integers(-25, 25, real_frames.shape), 0, 255).astype(np.uint8)
    for gen in (other_frames, noisy, real_frames[::-1].copy()):
        ours = ssim_frames(gen, real_frames)
        reference = np.array([skimage_ssim(g, r) for g, r in zip(gen, real_frames)])
        assert np.abs(ours - reference).max() < 1e-5


def test_equals_skimage_on_extreme_and_odd_sized_images():
    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, (3, 37, 53, 3), dtype=np.uint8)
    b = np.zeros_like(a)
    b[1] = 255
    b[2] = a[2] // 2
    ours = ssim_frames(a, b)
    reference = np.array([skimage_ssim(x, y) for x, y in zip(a, b)])
    assert np.abs(ours - reference).max() < 1e-5


def test_identical_frames_score_one(real_frames):
    assert np.allclose(ssim_frames(real_frames, real_frames), 1.0, atol=1e-12)


def test_shape_mismatch_is_an_error(real_frames):
    import pytest

    with pytest.raises(ValueError, match="equal shapes"):
        ssim_frames(real_frames[:2], real_frames[:3])
