"""FVD with the StyleGAN-V protocol (``src/metrics/frechet_video_distance.py``): the I3D
Kinetics-400 TorchScript called as ``detector(videos, rescale=True, resize=True,
return_features=True)`` on uint8 clips shaped (N, 3, 16, H, W) — the script rescales to
[-1, 1] and resizes to 224 itself — and a Fréchet distance of running float64 statistics with
*population* covariance (StyleGAN-V's ``FeatureStats.get_mean_cov``), without pytorch-fid's
singular-product fallback.

Clip sampling, a protocol field (``fvd_sampling``):

- ``consecutive`` (talkbench-v1): every video at the evaluation fps and resolution is cut into
  consecutive non-overlapping 16-frame clips starting at frame 0; a tail shorter than 16
  frames is dropped; ``max_clips_per_video`` (default all) caps the count.
- ``stylegan-v`` (the paper protocols): StyleGAN-V's ``compute_fvd`` with generated videos read
  as a dataset (``src/metrics/frechet_video_distance.py``, ``src/training/dataset.py``) — one
  16-frame clip per video; the generated video's first 16 frames
  (``load_n_consecutive_random_offset=False``); the real video's clip at a random offset
  (``load_n_consecutive_random_offset=True``), here drawn from the seed and the ground truth's
  content sha256 so it is reproducible and the same for every method; videos shorter than 16
  frames are discarded (``discard_short_videos=True``).
"""

from __future__ import annotations

import hashlib
import io
import warnings

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


DETECTOR_FORMAT = "a TorchScript archive of I3D (forward(videos, rescale, resize, return_features))"


def load_detector(path=None) -> torch.jit.ScriptModule:
    """The I3D TorchScript (the installed one, or ``path``). TorchScript carries code, so only
    bytes whose sha256 is the recorded one for ``i3d-torchscript`` are loaded, ``path`` or not;
    a file that is no such TorchScript raises ``WeightsError`` saying how to replace it."""
    data = weights.read_verified(WEIGHTS, path)
    with weights.loading(WEIGHTS, DETECTOR_FORMAT, path):
        with warnings.catch_warnings():  # torch's deprecation notice of jit.load, once per worker
            warnings.simplefilter("ignore", FutureWarning)
            detector = torch.jit.load(io.BytesIO(data), map_location="cpu").eval()
        arguments = [argument.name for argument in detector.forward.schema.arguments[1:]]
        if any(name not in arguments for name in DETECTOR_KWARGS):  # else it fails mid-evaluation
            raise ValueError(f"its forward takes ({', '.join(arguments)})")
    return detector


def sample_clips(frames: np.ndarray, clip_frames: int = CLIP_FRAMES, max_clips: int | None = None) -> np.ndarray:
    """(T, H, W, 3) uint8 → (N, 3, clip_frames, H, W) uint8: consecutive clips from frame 0."""
    count = len(frames) // clip_frames
    if max_clips is not None:
        count = min(count, max_clips)
    clips = np.asarray(frames[: count * clip_frames]).reshape(count, clip_frames, *frames.shape[1:])
    return np.ascontiguousarray(clips.transpose(0, 4, 1, 2, 3))


def stylegan_v_offset(frames: int, content_sha256: str, seed: int, clip_frames: int = CLIP_FRAMES) -> int:
    """The start of a ground truth's one clip: uniform over the ``frames - clip_frames + 1``
    possible starts, drawn from (seed, content); 0 for a video too short (it gives no clip)."""
    starts = frames - clip_frames + 1
    if starts <= 1:
        return 0
    return int(hashlib.sha256(f"{seed}:{content_sha256}".encode()).hexdigest(), 16) % starts


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
        if self.stylegan_v:
            return {"fvd_clip_frames": CLIP_FRAMES, "fvd_clip_stride": None, "fvd_max_clips_per_video": 1,
                    "fvd_sampling": "stylegan-v"}
        return {"fvd_clip_frames": CLIP_FRAMES, "fvd_clip_stride": CLIP_FRAMES,
                "fvd_max_clips_per_video": self.settings.fvd_max_clips_per_video, "fvd_sampling": "consecutive"}

    @property
    def stylegan_v(self) -> bool:
        return self.settings.fvd_sampling == "stylegan-v"

    def cache_fields(self) -> dict:
        return {**self.protocol_fields(), "seed": self.settings.seed} if self.stylegan_v else self.protocol_fields()

    def reference_window(self, frames: int, content_sha256: str) -> int | None:
        if not self.stylegan_v:
            return None
        return stylegan_v_offset(frames, content_sha256, self.settings.seed)

    def load(self, models: ModelSource) -> None:
        self.model = models.get("fvd", load_detector, self.weights())

    def feature_rows(self, frames: np.ndarray, start: int) -> np.ndarray:
        if start % CLIP_FRAMES:
            raise ValueError(f"FVD batches must start on a {CLIP_FRAMES}-frame boundary, got frame {start}")
        cap = 1 if self.stylegan_v else self.settings.fvd_max_clips_per_video
        left = None if cap is None else max(0, cap - start // CLIP_FRAMES)
        return i3d_features(self.model, sample_clips(frames, max_clips=left))

    def distance(self, generated: GaussianStats, reference: GaussianStats) -> float:
        return fvd_from_stats(generated, reference)

    def resampled_distance(self, generated: GaussianStats, reference: GaussianStats) -> float:
        return frechet_distance_eigh(*generated.mean_cov(ddof=0), *reference.mean_cov(ddof=0))
