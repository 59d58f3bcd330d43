"""What the user chose for an evaluation: metric names, resolution, backends, strides, seed.
The engine turns settings plus the metric modules' declarations into the ``Protocol``."""

from __future__ import annotations

from dataclasses import dataclass

from talkbench import media
from talkbench.errors import MetricError
from talkbench.face import available_backends

DEFAULT_METRICS = ("ssim", "lpips", "csim", "lmd", "cpbd", "msi", "fid", "fvd", "lse", "emotion")
IDENTITY_BACKENDS = ("dlib", "arcface", "insightface")
CSIM_REFERENCES = ("auto", "portrait", "ground-truth-frame")
# FVD's 16-frame clips: every consecutive clip from frame 0 (talkbench-v1), or StyleGAN-V's one
# clip per video (generated: its first 16 frames; ground truth: a seeded random offset).
FVD_SAMPLINGS = ("consecutive", "stylegan-v")
# dlib's ResNet costs ~90 ms a frame on this class of CPU, 10× everything else together;
# identity is constant within a clip, so every 5th frame (5 per second) estimates its mean.
DLIB_CSIM_STRIDE = 5
BOOTSTRAP_REPLICATES = 1000
DISTRIBUTION_BOOTSTRAP_REPLICATES = 100  # each FID replicate re-sums 2048² outer products


class SettingsError(MetricError, ValueError):
    """A setting that names nothing known (a metric, a backend) or is out of range."""


@dataclass(frozen=True)
class EvalSettings:
    protocol_name: str = "talkbench-v1"  # the named protocol these settings implement (metrics.paper_protocols)
    metrics: tuple[str, ...] = DEFAULT_METRICS
    resolution: int = 256
    fps: float = media.DEFAULT_FPS
    face_backend: str = "dlib"
    identity_backend: str = "dlib"  # "dlib" or "arcface"
    csim_reference: str = "auto"  # "portrait", "ground-truth-frame", or "auto": portrait when given
    csim_frame_stride: int | None = None  # None: DLIB_CSIM_STRIDE for dlib, 1 for arcface and insightface
    fid_frame_stride: int = 1
    fvd_max_clips_per_video: int | None = None
    fvd_sampling: str = "consecutive"
    seed: int = 0  # bootstrap resampling; StyleGAN-V FVD's ground-truth clip offsets
    bootstrap_replicates: int = BOOTSTRAP_REPLICATES
    distribution_bootstrap_replicates: int = DISTRIBUTION_BOOTSTRAP_REPLICATES
    use_cache: bool = True  # the on-disk analysis cache (talkbench.metrics.cache)

    def csim_stride(self) -> int:
        if self.csim_frame_stride is not None:
            return self.csim_frame_stride
        return DLIB_CSIM_STRIDE if self.identity_backend == "dlib" else 1

    def check(self) -> None:
        """Every choice known; raises SettingsError naming the bad one and the choices."""
        # Imported here: the registry imports every metric module (torch), and light modules
        # (leaderboard ranking, the CLI) import these settings.
        from talkbench.metrics.registry import get_metric

        if not self.metrics:
            raise SettingsError("no metric selected")
        for name in self.metrics:
            try:
                spec = get_metric(name)
            except ValueError as exc:
                raise SettingsError(str(exc)) from None
            if spec.scope == "offline":
                raise SettingsError(f"{name} is not a video metric: {spec.description}")
        if self.identity_backend not in IDENTITY_BACKENDS:
            raise SettingsError(f"unknown identity backend {self.identity_backend!r}; use {' or '.join(IDENTITY_BACKENDS)}")
        if self.face_backend not in available_backends():
            raise SettingsError(f"unknown face backend {self.face_backend!r}; use {' or '.join(available_backends())}")
        if self.fvd_sampling not in FVD_SAMPLINGS:
            raise SettingsError(f"unknown FVD sampling {self.fvd_sampling!r}; use {' or '.join(FVD_SAMPLINGS)}")
        if self.csim_reference not in CSIM_REFERENCES:
            raise SettingsError(f"unknown CSIM reference {self.csim_reference!r}; use {', '.join(CSIM_REFERENCES)}")
        for name in ("csim_frame_stride", "fid_frame_stride", "fvd_max_clips_per_video"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise SettingsError(f"{name.replace('_', '-')} must be at least 1, got {value}")
        if self.resolution < 16:
            raise SettingsError(f"resolution must be at least 16 pixels, got {self.resolution}")
