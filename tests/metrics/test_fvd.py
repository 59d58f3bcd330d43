"""FVD given the same detector: clip sampling, the detector call and StyleGAN-V's statistics.

The I3D TorchScript cannot be downloaded here, so a small TorchScript module with the same call
signature stands in for it on both sides; what is compared is everything around the detector.
"""

import numpy as np
import pytest
import scipy.linalg
import torch
import torch.nn.functional as F

from talkbench import weights
from talkbench.metrics import fvd
from talkbench.metrics.fid import GaussianStats


class TinyDetector(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv3d(3, 8, 3, stride=2)
        self.fc = torch.nn.Linear(8, 400)

    def forward(self, x: torch.Tensor, rescale: bool = False, resize: bool = False, return_features: bool = False):
        x = x.float()
        if rescale:
            x = x / 127.5 - 1
        if resize:
            x = F.interpolate(x, size=(x.shape[2], 224, 224), mode="trilinear", align_corners=False)
        h = self.conv(x).mean(dim=(2, 3, 4))
        return self.fc(h) if return_features else self.fc(h).softmax(-1)


@pytest.fixture(scope="module")
def detector(tmp_path_factory):
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("i3d")
    path = folder / "i3d_torchscript.pt"
    torch.jit.save(torch.jit.script(TinyDetector()), str(path))
    with pytest.MonkeyPatch.context() as env:  # load_detector loads only a recorded TorchScript
        env.setenv(weights.ENV_CACHE_DIR, str(folder / "weights"))
        weights.import_file(fvd.WEIGHTS, path)
        return fvd.load_detector(path)


def stylegan_v_fvd(features_gen: np.ndarray, features_real: np.ndarray) -> float:
    """StyleGAN-V's FeatureStats (float32 features, float64 sums) and compute_fvd, step by step."""

    def mean_cov(x):
        x64 = np.asarray(x, dtype=np.float32).astype(np.float64)
        mean = x64.sum(axis=0) / len(x64)
        cov = (x64.T @ x64) / len(x64) - np.outer(mean, mean)
        return mean, cov

    mu_gen, sigma_gen = mean_cov(features_gen)
    mu_real, sigma_real = mean_cov(features_real)
    m = np.square(mu_gen - mu_real).sum()
    s = scipy.linalg.sqrtm(np.dot(sigma_gen, sigma_real))
    return float(np.real(m + np.trace(sigma_gen + sigma_real - s * 2)))


def test_clips_are_consecutive_16_frame_windows_from_frame_0():
    frames = np.arange(40)[:, None, None, None] * np.ones((1, 4, 4, 3), np.uint8)
    clips = fvd.sample_clips(frames.astype(np.uint8))
    assert clips.shape == (2, 3, 16, 4, 4)  # the 8-frame tail is dropped
    assert clips[1, 0, :, 0, 0].tolist() == list(range(16, 32))
    assert fvd.sample_clips(frames.astype(np.uint8), max_clips=1).shape[0] == 1


def test_fvd_equals_stylegan_v_computation(detector, real_frames, other_frames):
    gen = np.concatenate([real_frames, other_frames] * 3)  # 48 frames → 3 clips
    ref = np.concatenate([other_frames, real_frames[::-1]] * 3)
    gen_clips, ref_clips = fvd.sample_clips(gen), fvd.sample_clips(ref)
    ours_gen, ours_ref = GaussianStats.empty(400), GaussianStats.empty(400)
    ours_gen.update(fvd.i3d_features(detector, gen_clips))
    ours_ref.update(fvd.i3d_features(detector, ref_clips))
    with torch.no_grad():  # the reference call: uint8 (N, C, T, H, W) with StyleGAN-V's kwargs
        ref_gen = detector(torch.from_numpy(gen_clips), rescale=True, resize=True, return_features=True).numpy()
        ref_real = detector(torch.from_numpy(ref_clips), rescale=True, resize=True, return_features=True).numpy()
    expected = stylegan_v_fvd(ref_gen, ref_real)
    assert fvd.fvd_from_stats(ours_gen, ours_ref) == pytest.approx(expected, rel=1e-6, abs=1e-6)
    assert expected > 0


def test_stylegan_v_sampling_takes_the_first_generated_clip_and_a_seeded_ground_truth_offset(stand_in_i3d):
    """StyleGAN-V's protocol through the engine: one 16-frame clip per video, the generated
    video's first 16 frames, the ground truth's clip at a random offset drawn from the seed."""
    from talkbench.metrics.cache import content_sha256
    from talkbench.metrics.engine import ClipJob, EvalSettings, evaluate

    rng = np.random.default_rng(3)
    gens = [rng.integers(0, 255, (40, 32, 32, 3), dtype=np.uint8) for _ in range(3)]
    refs = [rng.integers(0, 255, (40, 32, 32, 3), dtype=np.uint8) for _ in range(3)]
    jobs = [ClipJob("m", f"c{i}", g, r) for i, (g, r) in enumerate(zip(gens, refs))]
    detector = fvd.load_detector()

    def features(clip):
        with torch.no_grad():
            x = torch.from_numpy(np.ascontiguousarray(clip.transpose(3, 0, 1, 2))[None])
            return detector(x, rescale=True, resize=True, return_features=True).numpy()

    values = {}
    for seed in (0, 1):
        settings = EvalSettings(metrics=("fvd",), resolution=32, fvd_sampling="stylegan-v", seed=seed,
                                distribution_bootstrap_replicates=2)
        result = evaluate(jobs, settings).evaluations[0]
        offsets = [fvd.stylegan_v_offset(40, content_sha256(r), seed) for r in refs]
        expected = stylegan_v_fvd(np.concatenate([features(g[:16]) for g in gens]),
                                  np.concatenate([features(r[o : o + 16]) for r, o in zip(refs, offsets)]))
        assert result.distribution["fvd"].value == pytest.approx(expected, rel=1e-5)
        assert result.protocol.fvd_sampling == "stylegan-v" and result.protocol.fvd_max_clips_per_video == 1
        values[seed] = (result.distribution["fvd"].value, offsets)
    assert values[0][1] != values[1][1]  # the seed moves the ground-truth clips
    assert all(0 <= o <= 24 for o in values[0][1] + values[1][1])


def test_stylegan_v_ground_truth_clip_spanning_two_batches_is_whole(stand_in_i3d):
    """A ground truth longer than one 64-frame batch: its clip may start in one batch and end in
    the next; the engine must stitch exactly frames offset … offset+15."""
    from talkbench.metrics.cache import content_sha256
    from talkbench.metrics.engine import ClipJob, EvalSettings, evaluate
    from talkbench.metrics.scorer import BATCH

    rng = np.random.default_rng(5)
    length = BATCH + 36
    gens = [rng.integers(0, 255, (length, 32, 32, 3), dtype=np.uint8) for _ in range(2)]
    refs = [rng.integers(0, 255, (length, 32, 32, 3), dtype=np.uint8) for _ in range(2)]
    spans = lambda seed: [fvd.stylegan_v_offset(length, content_sha256(r), seed) for r in refs]  # noqa: E731
    seed = next(s for s in range(200) if any(BATCH - 16 < o < BATCH for o in spans(s)))
    detector = fvd.load_detector()

    def features(clip):
        with torch.no_grad():
            x = torch.from_numpy(np.ascontiguousarray(clip.transpose(3, 0, 1, 2))[None])
            return detector(x, rescale=True, resize=True, return_features=True).numpy()

    settings = EvalSettings(metrics=("fvd",), resolution=32, fvd_sampling="stylegan-v", seed=seed,
                            distribution_bootstrap_replicates=2, use_cache=False)  # fmt: skip
    result = evaluate([ClipJob("m", f"c{i}", g, r) for i, (g, r) in enumerate(zip(gens, refs))], settings)
    expected = stylegan_v_fvd(np.concatenate([features(g[:16]) for g in gens]),
                              np.concatenate([features(r[o : o + 16]) for r, o in zip(refs, spans(seed))]))
    assert result.evaluations[0].distribution["fvd"].value == pytest.approx(expected, rel=1e-5)
