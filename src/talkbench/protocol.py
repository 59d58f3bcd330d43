"""The Protocol record: everything a metric value depends on, hashed.

Two results compare only when their protocol hashes match, or when ``differences`` names the
fields that differ. The hash is the sha256 of the record's canonical JSON (sorted keys, no
whitespace), minus the fields in ``NOT_HASHED``: the talkbench version (a release that does not
change a metric bumps no metric version and must not break comparability), the frame counts
(a description of the data, reported beside the number) and the bootstrap settings (they shape
the intervals, never the values).

The engine assembles a Protocol from the settings and the selected metric modules: a field a
metric depends on (``fvd_clip_frames``, ``csim_frame_stride`` …) comes from that metric's
``protocol_fields()`` and is None when the metric was not run.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields

from talkbench import __version__, media

NAME = "talkbench-v1"
NOT_HASHED = ("talkbench_version", "frame_counts", "bootstrap_replicates", "distribution_bootstrap_replicates",
              "bootstrap_level")


@dataclass(frozen=True)
class Protocol:
    name: str = NAME
    talkbench_version: str = __version__
    resolution: int = 256  # frames compared at resolution × resolution (the VQTalker paper's)
    fps: float = media.DEFAULT_FPS
    resize_interpolation: str = media.RESIZE_INTERPOLATION
    crop: str = "none"  # whole frames, plain scale; no face crop
    frame_alignment: str = "index"
    max_frame_count_difference: int = 2
    metric_versions: dict = field(default_factory=dict)
    weights_sha256: dict = field(default_factory=dict)
    face_backend: str | None = None  # detector + 68 landmarks, when a metric needs faces
    face_models_sha256: dict = field(default_factory=dict)
    identity_backend: str | None = None  # CSIM embedding
    csim_reference: str | None = None  # "portrait" or "ground-truth-frame"
    csim_frame_stride: int | None = None
    fid_frame_stride: int | None = None
    fvd_clip_frames: int | None = None
    fvd_clip_stride: int | None = None
    fvd_max_clips_per_video: int | None = None
    fvd_sampling: str | None = None  # "consecutive" or "stylegan-v"
    seed: int = 0  # bootstrap resampling
    bootstrap_replicates: int = 0
    distribution_bootstrap_replicates: int = 0
    bootstrap_level: float = 0.95
    frame_counts: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    def hashed_dict(self) -> dict:
        return {k: v for k, v in self.to_dict().items() if k not in NOT_HASHED}

    def sha256(self) -> str:
        canonical = json.dumps(self.hashed_dict(), sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(canonical.encode()).hexdigest()

    def __hash__(self) -> int:
        return int(self.sha256()[:16], 16)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Protocol) and self.sha256() == other.sha256()

    def differences(self, other: Protocol) -> list[str]:
        """Names of the hashed fields whose values differ."""
        a, b = self.hashed_dict(), other.hashed_dict()
        return sorted(k for k in a if a[k] != b.get(k))

    @classmethod
    def from_dict(cls, data: dict) -> Protocol:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown protocol fields: {', '.join(sorted(unknown))}")
        return cls(**data)
