"""LMD, landmark distance between generated and ground-truth frames, in the papers' three forms.

All three compare the 68 iBUG landmarks of the generated frame and the ground-truth frame at the
same index, per frame, and average over the frames where both have a face:

``m_lmd`` / ``f_lmd`` (FlowVQTalker Table 1, M-LMD citing Chen et al. 2019, F-LMD) follow the
EAT evaluation script that produced those columns' numbers (yuangan/evaluation_eat,
``code/test_lmd.py``: ``calibrate_lmk`` and ``ld``): the 20 mouth points 48–67 (``m_lmd``) or
all 68 (``f_lmd``) of each frame are centred on their own mean, then the L2 distances between
corresponding points are averaged over points. Pixels at the evaluation resolution (256, the
size of EAT's face crops). ATVGnet (lelechen63/ATVGnet ``evaluation_matrix.py``) centres the
mouth the same way.

``lmd`` (VQTalker Table 2) is not defined in the paper; its printed scale (0.067–0.73) is not
pixels. It is the uncentred mean point distance over all 68 points divided by the ground-truth
inter-ocular distance (outer eye corners 36, 45) of that frame: dimensionless, and of the
paper's scale on real clips (docs/evidence/lmd.md has the measurements behind this choice).
"""

from __future__ import annotations

import numpy as np

from talkbench.face.types import MOUTH
from talkbench.metrics.base import Batch, FrameMeans, Metric, MetricSpec, Need, Unavailable

VERSION = "2"  # 2: ``lmd`` is the uncentred, inter-ocular-normalised distance; *_iod values dropped
OUTER_EYE_CORNERS = (36, 45)


def point_distance(generated: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Per-frame mean L2 distance of corresponding points; (T, P, 2) each → (T,)."""
    generated = np.asarray(generated, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    if generated.shape != reference.shape:
        raise ValueError(f"LMD needs equal landmark shapes, got {generated.shape} and {reference.shape}")
    return np.linalg.norm(generated - reference, axis=-1).mean(axis=-1)


def centred(points: np.ndarray) -> np.ndarray:
    """Points minus their own mean, per frame: (T, P, 2)."""
    points = np.asarray(points, dtype=np.float64)
    return points - points.mean(axis=-2, keepdims=True)


def inter_ocular(reference: np.ndarray) -> np.ndarray:
    reference = np.asarray(reference, dtype=np.float64)
    a, b = OUTER_EYE_CORNERS
    return np.linalg.norm(reference[..., a, :] - reference[..., b, :], axis=-1)


def per_frame_lmd(generated: np.ndarray, reference: np.ndarray) -> dict[str, np.ndarray]:
    """Each value's per-frame distances for (T, 68, 2) tracks of frames where both have a face."""
    return {
        "lmd": point_distance(generated, reference) / inter_ocular(reference),
        "m_lmd": point_distance(centred(generated[:, MOUTH]), centred(reference[:, MOUTH])),
        "f_lmd": point_distance(centred(generated), centred(reference)),
    }


def lmd_values(generated: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """Clip values from (T, 68, 2) tracks of frames where both have a face."""
    return {name: float(per_frame.mean()) for name, per_frame in per_frame_lmd(generated, reference).items()}


class LMD(Metric):
    spec = MetricSpec(
        "lmd", VERSION, "clip", ("lmd", "m_lmd", "f_lmd"), False,
        frozenset({Need.REFERENCE, Need.FACES, Need.REFERENCE_FACES}),
        description="lmd: 68-point distance / inter-ocular (VQTalker); m_lmd, f_lmd: centred mouth / face, px (EAT)",
    )  # fmt: skip

    def update(self, state: FrameMeans, batch: Batch) -> None:
        both = batch.faces.valid & batch.reference_faces.valid
        generated, reference = batch.faces.landmarks[both], batch.reference_faces.landmarks[both]
        for name, per_frame in per_frame_lmd(generated, reference).items():
            state.add(name, per_frame)

    def compute(self, state: FrameMeans) -> dict[str, float]:
        if not state.counts.get("lmd"):
            raise Unavailable("no frame index where both the generated and the ground-truth frame have a face")
        return state.means()
