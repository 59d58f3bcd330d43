"""MSI, the Motion Stability Index of StableFace (Ling et al. 2023, arXiv 2208.13717): the
reciprocal of the variance of landmark acceleration. The paper gives the definition, not code,
so every normalisation here is ours and is versioned:

1. Landmark tracks (T, 68, 2) are split into runs of consecutive frames with a face; a missing
   face breaks the run instead of being bridged (bridging would invent acceleration).
2. Acceleration is the second difference ``a[t] = x[t+1] − 2 x[t] + x[t−1]`` per point and
   coordinate (units per frame², at the clip's fps).
3. The variance is the mean over points of the trace of each point's 2×2 acceleration
   covariance over time (population, pooled over all runs). A constant translation and a
   constant velocity have zero acceleration and change nothing.
4. ``MSI = 1 / (1 + variance)``: the 1 keeps a perfectly still face finite (MSI = 1, the
   maximum) and makes MSI fall monotonically as jitter grows.

``msi`` measures landmarks in pixels at the evaluation resolution; ``msi_face`` measures them
in percent of the clip's median face size (the detector box side), so it does not depend on
resolution or on how much of the frame the face fills.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from talkbench.metrics.base import Batch, ClipInfo, Metric, MetricSpec, Need, Unavailable

VERSION = "1"


def _runs(valid: np.ndarray) -> list[slice]:
    runs, start = [], None
    for i, ok in enumerate(list(valid) + [False]):
        if ok and start is None:
            start = i
        elif not ok and start is not None:
            runs.append(slice(start, i))
            start = None
    return runs


def acceleration_variance(tracks: np.ndarray, valid: np.ndarray | None = None) -> float | None:
    """Pooled variance of landmark acceleration; None when no run has 3 consecutive frames."""
    tracks = np.asarray(tracks, dtype=np.float64)
    if valid is None:
        valid = np.ones(len(tracks), dtype=bool)
    accelerations = [np.diff(tracks[run], n=2, axis=0) for run in _runs(valid) if run.stop - run.start >= 3]
    if not accelerations:
        return None
    acc = np.concatenate(accelerations)  # (N, P, 2)
    return float(acc.var(axis=0).sum(axis=-1).mean())


def msi(tracks: np.ndarray, valid: np.ndarray | None = None, scale: float = 1.0) -> float | None:
    """MSI of landmark tracks measured in units of ``scale`` pixels."""
    variance = acceleration_variance(np.asarray(tracks, dtype=np.float64) / scale, valid)
    return None if variance is None else 1.0 / (1.0 + variance)


def msi_values(tracks: np.ndarray, valid: np.ndarray, face_sizes: np.ndarray) -> dict[str, float | None]:
    """``msi`` (pixels) and ``msi_face`` (percent of the median face size) of one clip."""
    sizes = np.asarray(face_sizes, dtype=np.float64)[np.asarray(valid, bool)]
    face_unit = float(np.median(sizes)) / 100.0 if len(sizes) else 1.0
    return {"msi": msi(tracks, valid), "msi_face": msi(tracks, valid, scale=face_unit)}


@dataclass
class LandmarkTrack:
    """A clip's landmark track so far: MSI needs the whole sequence, not a running sum."""

    landmarks: list[np.ndarray] = field(default_factory=list)
    valid: list[np.ndarray] = field(default_factory=list)
    sizes: list[np.ndarray] = field(default_factory=list)

    def merge(self, later: LandmarkTrack) -> LandmarkTrack:
        return LandmarkTrack(self.landmarks + later.landmarks, self.valid + later.valid, self.sizes + later.sizes)


class MSI(Metric):
    spec = MetricSpec(
        "msi", VERSION, "clip", ("msi", "msi_face"), True, frozenset({Need.FACES}),
        description="1 / (1 + variance of landmark acceleration); px and % of face size",
    )  # fmt: skip

    def new_state(self, clip: ClipInfo) -> LandmarkTrack:
        return LandmarkTrack()

    def update(self, state: LandmarkTrack, batch: Batch) -> None:
        state.landmarks.append(batch.faces.landmarks)
        state.valid.append(batch.faces.valid)
        state.sizes.append(batch.faces.sizes)

    def compute(self, state: LandmarkTrack) -> dict[str, float]:
        values = msi_values(np.concatenate(state.landmarks), np.concatenate(state.valid), np.concatenate(state.sizes))
        if values["msi"] is None:
            raise Unavailable("fewer than 3 consecutive frames with a face")
        return values
