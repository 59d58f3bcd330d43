"""LMD, landmark distance between generated and ground-truth frames.

Per frame, the 68 landmarks of each image are mean-centred (the mean of the points being
compared is subtracted, so a head that is merely shifted is not penalised), then the L2
distance between corresponding points is averaged over points; the clip value is the mean over
frames where both images have a face. ``f_lmd`` uses all 68 points (``lmd`` is the same
number under its common name); ``m_lmd`` uses the 20 mouth points 48–67, centred on their own
mean. Values are in pixels at the evaluation resolution (256 in ``talkbench-v1``).

``*_iod`` variants divide each frame's distance by the ground-truth inter-ocular distance
(outer eye corners 36 and 45), which makes them independent of resolution and face size.
"""

from __future__ import annotations

import numpy as np

from talkbench.face.types import MOUTH
from talkbench.metrics.base import Batch, FrameMeans, Metric, MetricSpec, Need, Unavailable

VERSION = "1"
OUTER_EYE_CORNERS = (36, 45)


def _centred(points: np.ndarray) -> np.ndarray:
    return points - points.mean(axis=-2, keepdims=True)


def landmark_distance(generated: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Per-frame mean point distance of mean-centred landmarks; (T, P, 2) each → (T,)."""
    generated = np.asarray(generated, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    if generated.shape != reference.shape:
        raise ValueError(f"LMD needs equal landmark shapes, got {generated.shape} and {reference.shape}")
    return np.linalg.norm(_centred(generated) - _centred(reference), axis=-1).mean(axis=-1)


def inter_ocular(reference: np.ndarray) -> np.ndarray:
    reference = np.asarray(reference, dtype=np.float64)
    a, b = OUTER_EYE_CORNERS
    return np.linalg.norm(reference[..., a, :] - reference[..., b, :], axis=-1)


def lmd_values(generated: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """Clip LMD values from (T, 68, 2) landmark tracks of frames where both have a face."""
    full = landmark_distance(generated, reference)
    mouth = landmark_distance(generated[:, MOUTH], reference[:, MOUTH])
    iod = inter_ocular(reference)
    return {
        "lmd": float(full.mean()),
        "f_lmd": float(full.mean()),
        "m_lmd": float(mouth.mean()),
        "f_lmd_iod": float((full / iod).mean()),
        "m_lmd_iod": float((mouth / iod).mean()),
    }


class LMD(Metric):
    spec = MetricSpec(
        "lmd", VERSION, "clip", ("lmd", "f_lmd", "m_lmd", "f_lmd_iod", "m_lmd_iod"), False,
        frozenset({Need.REFERENCE, Need.FACES, Need.REFERENCE_FACES}),
        description="mean-centred 68-point landmark distance, pixels at eval resolution; *_iod / inter-ocular",
    )  # fmt: skip

    def update(self, state: FrameMeans, batch: Batch) -> None:
        both = batch.faces.valid & batch.reference_faces.valid
        generated, reference = batch.faces.landmarks[both], batch.reference_faces.landmarks[both]
        full = landmark_distance(generated, reference)
        mouth = landmark_distance(generated[:, MOUTH], reference[:, MOUTH])
        iod = inter_ocular(reference)
        for name, per_frame in (("lmd", full), ("f_lmd", full), ("m_lmd", mouth),
                                ("f_lmd_iod", full / iod), ("m_lmd_iod", mouth / iod)):  # fmt: skip
            state.add(name, per_frame)

    def compute(self, state: FrameMeans) -> dict[str, float]:
        if not state.counts.get("lmd"):
            raise Unavailable("no frame index where both the generated and the ground-truth frame have a face")
        return state.means()
