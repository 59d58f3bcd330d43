"""CSIM, cosine similarity of identity embeddings between each generated frame and the
identity reference: the source portrait (speech-driven tasks) or the ground-truth frame at the
same index. The embedding backend is part of the result's name and protocol: ``dlib`` (128-d
ResNet from face-recognition-models, offline) or ``arcface`` (InsightFace iresnet100).

dlib CSIM sits in 0.94–0.996 on real method outputs while published ArcFace CSIMs span
0.3–0.93: the two scales must never be ranked together, which is why values are stored as
``csim_dlib`` / ``csim_arcface`` and ``csim`` only names the backend in the protocol.
"""

from __future__ import annotations

import numpy as np

VERSION = "1"


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of (N, D) and (N, D) or (D,) embeddings, in float64."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    a = a / np.linalg.norm(a, axis=-1, keepdims=True)
    b = b / np.linalg.norm(b, axis=-1, keepdims=True)
    return (a * b).sum(axis=-1)
