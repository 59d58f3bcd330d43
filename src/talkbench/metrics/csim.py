"""CSIM, cosine similarity of identity embeddings between each generated frame and the
identity reference: the source portrait (speech-driven tasks) or the ground-truth frame at the
same index. The embedding backend is part of the result's name and protocol: ``dlib`` (128-d
ResNet from face-recognition-models, offline), ``arcface`` (InsightFace arcface_torch
iresnet100) or ``insightface`` (InsightFace buffalo_l's w600k_r50, onnxruntime).

dlib CSIM sits in 0.94–0.996 on real method outputs while published ArcFace CSIMs span
0.3–0.93: the two scales must never be ranked together, which is why values are stored as
``csim_dlib`` / ``csim_arcface`` and ``csim`` only names the backend in the protocol.
"""

from __future__ import annotations

import numpy as np

from talkbench.metrics.base import Batch, FrameMeans, Metric, MetricSpec, Need, Unavailable

VERSION = "2"  # 2: the portrait is resized to the evaluation resolution, as the frames


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of (N, D) and (N, D) or (D,) embeddings, in float64."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    a = a / np.linalg.norm(a, axis=-1, keepdims=True)
    b = b / np.linalg.norm(b, axis=-1, keepdims=True)
    return (a * b).sum(axis=-1)


class CSIM(Metric):
    """The engine embeds every ``csim_frame_stride``-th generated frame with a face, and its
    reference (the portrait, or the ground-truth frame at the same index); this averages the
    cosine similarities of the pairs where both exist."""

    spec = MetricSpec(
        "csim", VERSION, "clip", ("csim_dlib", "csim_arcface", "csim_insightface"), True, frozenset({Need.FACES, Need.IDENTITY}),
        description="identity cosine similarity vs source portrait or ground-truth frame; value named by backend",
    )  # fmt: skip

    def value_names(self) -> tuple[str, ...]:
        return (f"csim_{self.settings.identity_backend}",)

    def protocol_fields(self) -> dict:
        return {"identity_backend": self.settings.identity_backend, "csim_frame_stride": self.settings.csim_stride()}

    def update(self, state: FrameMeans, batch: Batch) -> None:
        both = np.isfinite(batch.identity[:, 0]) & np.isfinite(batch.reference_identity[:, 0])
        if both.any():
            state.add(self.value_names()[0], cosine_similarity(batch.identity[both], batch.reference_identity[both]))

    def compute(self, state: FrameMeans) -> dict[str, float]:
        if not state.counts:
            raise Unavailable("no sampled frame with a face")
        return state.means()
