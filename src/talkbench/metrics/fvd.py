"""FVD with the StyleGAN-V protocol (``src/metrics/frechet_video_distance.py``): the I3D
Kinetics-400 TorchScript called as ``detector(videos, rescale=True, resize=True,
return_features=True)`` on uint8 clips shaped (N, 3, 16, H, W) — the script rescales to
[-1, 1] and resizes to 224 itself — and a Fréchet distance of running float64 statistics with
*population* covariance (StyleGAN-V's ``FeatureStats.get_mean_cov``), without pytorch-fid's
singular-product fallback.

Clip sampling (ours; StyleGAN-V takes one clip per video): every video at the evaluation fps
and resolution is cut into consecutive non-overlapping 16-frame clips starting at frame 0; a
tail shorter than 16 frames is dropped; ``max_clips_per_video`` (default all) caps the count.
Deterministic, so no seed is involved. The settings are part of the protocol.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg
import torch

from talkbench import weights
from talkbench.metrics.base import DistributionMetric, MetricSpec, ModelSource, Need
from talkbench.metrics.fid import GaussianStats, frechet_distance_eigh

VERSION = "1"
WEIGHTS = "i3d-torchscript"
CLIP_FRAMES = 16
FEATURES = 400
DETECTOR_KWARGS = dict(rescale=True, resize=True, return_features=True)


def load_detector(path=None) -> torch.jit.ScriptModule:
    return torch.jit.load(str(path or weights.weight_path(WEIGHTS)), map_location="cpu").eval()


def sample_clips(frames: np.ndarray, clip_frames: int = CLIP_FRAMES, max_clips: int | None = None) -> np.ndarray:
    """(T, H, W, 3) uint8 → (N, 3, clip_frames, H, W) uint8: consecutive clips from frame 0."""
    count = len(frames) // clip_frames
    if max_clips is not None:
        count = min(count, max_clips)
    clips = np.asarray(frames[: count * clip_frames]).reshape(count, clip_frames, *frames.shape[1:])
    return np.ascontiguousarray(clips.transpose(0, 4, 1, 2, 3))


@torch.inference_mode()
def i3d_features(detector, clips: np.ndarray, batch: int = 4) -> np.ndarray:
    """I3D features of uint8 clips (N, 3, T, H, W) → (N, 400) float64."""
    out = []
    for i in range(0, len(clips), batch):
        features = detector(torch.from_numpy(clips[i : i + batch]), **DETECTOR_KWARGS)
        out.append(features.float().numpy().astype(np.float64))  # StyleGAN-V appends float32
    return np.concatenate(out) if out else np.zeros((0, FEATURES))


def fvd_from_stats(generated: GaussianStats, reference: GaussianStats) -> float:
    mu_gen, sigma_gen = generated.mean_cov(ddof=0)
    mu_real, sigma_real = reference.mean_cov(ddof=0)
    m = np.square(mu_gen - mu_real).sum()
    s = scipy.linalg.sqrtm(np.dot(sigma_gen, sigma_real))  # StyleGAN-V: disp=False, deprecated in SciPy 1.16
    return float(np.real(m + np.trace(sigma_gen + sigma_real - s * 2)))


class FVD(DistributionMetric):
    spec = MetricSpec("fvd", VERSION, "distribution", ("fvd",), False, frozenset({Need.REFERENCE}), (WEIGHTS,),
                      description="FVD, StyleGAN-V protocol (I3D, 16-frame clips, 224 px)")
    dims = FEATURES
    window = CLIP_FRAMES

    def protocol_fields(self) -> dict:
        return {"fvd_clip_frames": CLIP_FRAMES, "fvd_clip_stride": CLIP_FRAMES,
                "fvd_max_clips_per_video": self.settings.fvd_max_clips_per_video}

    def load(self, models: ModelSource) -> None:
        self.model = models.get("fvd", load_detector, self.weights())

    def feature_rows(self, frames: np.ndarray, start: int) -> np.ndarray:
        if start % CLIP_FRAMES:
            raise ValueError(f"FVD batches must start on a {CLIP_FRAMES}-frame boundary, got frame {start}")
        cap = self.settings.fvd_max_clips_per_video
        left = None if cap is None else max(0, cap - start // CLIP_FRAMES)
        return i3d_features(self.model, sample_clips(frames, max_clips=left))

    def distance(self, generated: GaussianStats, reference: GaussianStats) -> float:
        return fvd_from_stats(generated, reference)

    def resampled_distance(self, generated: GaussianStats, reference: GaussianStats) -> float:
        return frechet_distance_eigh(*generated.mean_cov(ddof=0), *reference.mean_cov(ddof=0))
