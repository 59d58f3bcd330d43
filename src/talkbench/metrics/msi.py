"""MSI, the Motion Stability Index of StableFace (Ling et al. 2023, arXiv 2208.13717): the
reciprocal of the variance of each key point's acceleration, over short windows.

This follows the MSI script published with StableFace (``get_MSI_func`` with its default
coefficients; transcribed in tests/metrics/reference/stableface_msi.py):

1. Scale: landmarks are multiplied by ``64 / w``, where ``w`` is the mean distance between the
   mouth corners over the first 10 frames, so the mouth is 64 units wide (``scale=0.25`` of 256).
2. Acceleration of each key point, per coordinate: ``a[t] = x[t+2] − 2 x[t+1] + x[t]``.
3. Windows of 12 accelerations starting every 6 (the last ones shorter, as in the script). In a
   window, each key point and coordinate scores ``1 / (var + 0.5)`` (population variance); the
   window's score is the mean of those scores over key points and both coordinates.
4. MSI is the mean of the window scores: 2 for a perfectly still mouth, lower with jitter.

Key points: the script measures the lips of its 669-point landmark model; here the 20 mouth
points 48–67 of the 68-point layout, and the mouth corners 48 and 54 for the scale. A frame
without a face breaks the sequence: accelerations are taken within runs of consecutive frames
with a face (bridging a gap would invent acceleration) and the windows of all runs averaged;
the scale comes from the first 10 frames with a face. Acceleration is per frame² at the
protocol's frame rate (25 fps in every paper protocol); the script takes the frames as given and
states no rate, so a clip at another rate scores on another scale.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from talkbench.face.types import MOUTH
from talkbench.metrics.base import Batch, ClipInfo, Metric, MetricSpec, Need, Unavailable

VERSION = "2"  # 2: StableFace's windowed definition (was 1 / (1 + pooled variance), ours)
MOUTH_CORNERS = (48, 54)
MOUTH_WIDTH = 64.0  # units the mouth is scaled to: the script's scale 0.25 × 256
SCALE_FRAMES = 10  # frames the mouth width is measured over
WINDOW = 12  # accelerations per window; windows start every WINDOW // 2
BIAS = 0.5  # added to each variance: a still point scores 1 / 0.5 = 2


def _runs(valid: np.ndarray) -> list[slice]:
    runs, start = [], None
    for i, ok in enumerate(list(valid) + [False]):
        if ok and start is None:
            start = i
        elif not ok and start is not None:
            runs.append(slice(start, i))
            start = None
    return runs


def mouth_scale(tracks: np.ndarray, valid: np.ndarray) -> float:
    """The factor that makes the mean mouth width of the first frames with a face 64 units."""
    first = np.asarray(tracks, dtype=np.float64)[np.asarray(valid, bool)][:SCALE_FRAMES]
    a, b = MOUTH_CORNERS
    return MOUTH_WIDTH / float(np.linalg.norm(first[:, a] - first[:, b], axis=-1).mean())


def window_scores(accelerations: np.ndarray) -> list[float]:
    """Scores of the windows of one run's (N, P, 2) accelerations."""
    return [float((1.0 / (accelerations[start : start + WINDOW].var(axis=0) + BIAS)).mean())
            for start in range(0, len(accelerations), WINDOW // 2)]  # fmt: skip


def msi(tracks: np.ndarray, valid: np.ndarray | None = None) -> float | None:
    """MSI of (T, 68, 2) landmark tracks; None when no run has 3 consecutive frames with a face."""
    tracks = np.asarray(tracks, dtype=np.float64)
    valid = np.ones(len(tracks), dtype=bool) if valid is None else np.asarray(valid, bool)
    if not valid.any():
        return None
    mouth = tracks[:, MOUTH] * mouth_scale(tracks, valid)
    scores = [score for run in _runs(valid) for score in window_scores(np.diff(mouth[run], n=2, axis=0))]
    return float(np.mean(scores)) if scores else None


@dataclass
class LandmarkTrack:
    """A clip's landmark track so far: MSI needs the whole sequence, not a running sum."""

    landmarks: list[np.ndarray] = field(default_factory=list)
    valid: list[np.ndarray] = field(default_factory=list)

    def merge(self, later: LandmarkTrack) -> LandmarkTrack:
        return LandmarkTrack(self.landmarks + later.landmarks, self.valid + later.valid)


class MSI(Metric):
    spec = MetricSpec(
        "msi", VERSION, "clip", ("msi",), True, frozenset({Need.FACES}),
        description="StableFace motion stability: mean 1 / (var + 0.5) of mouth-point acceleration, 12-frame windows",
    )  # fmt: skip

    def new_state(self, clip: ClipInfo) -> LandmarkTrack:
        return LandmarkTrack()

    def update(self, state: LandmarkTrack, batch: Batch) -> None:
        state.landmarks.append(batch.faces.landmarks)
        state.valid.append(batch.faces.valid)

    def compute(self, state: LandmarkTrack) -> dict[str, float]:
        value = msi(np.concatenate(state.landmarks), np.concatenate(state.valid))
        if value is None:
            raise Unavailable("fewer than 3 consecutive frames with a face")
        return {"msi": value}
