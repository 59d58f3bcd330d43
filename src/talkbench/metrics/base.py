"""What a metric is, for the evaluation engine.

A metric is a small class in its own module (torchmetrics' pattern). It declares what it
needs from a clip (``Need``), the weights it loads and the protocol fields its value depends
on; the engine reads those declarations to plan each clip (decode once, analyse faces once,
embed identities once) and hands the metric consecutive ``Batch`` es of frames:

    state = metric.new_state(clip)          # explicit, picklable, mergeable
    metric.update(state, batch)             # once per run of frames
    values = metric.compute(state)          # {value name: float}, or raises Unavailable

Per-clip metrics (``scope="clip"``) get a fresh state per clip. Distribution metrics
(``scope="distribution"``: FID, FVD) turn frames into feature rows per clip; the engine adds
those rows into float64 sums per side, which merge by addition across workers, and calls
``distance``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar

import numpy as np

from talkbench import weights

if TYPE_CHECKING:
    from talkbench.metrics.analysis import FaceTrack
    from talkbench.metrics.settings import EvalSettings


class Need(str, Enum):
    REFERENCE = "reference"  # ground-truth frames, aligned by index
    FACES = "faces"  # the generated clip's face track (boxes, 68 landmarks)
    REFERENCE_FACES = "reference-faces"  # the ground truth's face track
    IDENTITY = "identity"  # identity embeddings of sampled generated frames and their reference
    FILE = "file"  # the encoded generated file itself
    AUDIO = "audio"  # the clip's speech: ``ClipInfo.audio`` (the driving audio, else the file's own track)
    LABEL = "label"  # the clip's emotion label: ``ClipInfo.emotion``


class Unavailable(Exception):
    """A metric that cannot give a value for this clip; the message says why."""


@dataclass(frozen=True)
class MetricSpec:
    name: str
    version: str
    scope: str  # "clip", "distribution" or "offline" (not a video metric: no engine support)
    values: tuple[str, ...]  # the value names it reports
    higher_is_better: bool
    needs: frozenset[Need] = frozenset()
    weights: tuple[str, ...] = ()
    description: str = ""
    opposite: tuple[str, ...] = ()  # values whose direction is the other one (LSE-D beside LSE-C)
    modules: tuple[str, ...] = ()  # optional Python modules it loads (the "metrics" extra): absent → unavailable

    def higher_is_better_for(self, value: str) -> bool:
        """The direction of one of its values."""
        return self.higher_is_better != (value in self.opposite)

    def to_dict(self) -> dict:
        return {
            "name": self.name, "version": self.version, "scope": self.scope, "values": list(self.values),
            "higher_is_better": self.higher_is_better, "needs": sorted(n.value for n in self.needs),
            "weights": list(self.weights), "description": self.description, "opposite": list(self.opposite),
        }  # fmt: skip


@dataclass(frozen=True)
class ClipInfo:
    """Which clip a state belongs to, with what a metric may read besides frames."""

    clip_id: str
    generated: Path | None  # None when frames were given as an array
    reference: Path | None
    audio: Path | None = None  # a file with the clip's speech (Need.AUDIO); read with media.read_audio
    emotion: str | None = None  # the clip's emotion label, MEAD's names (Need.LABEL)
    fps: float = 25.0  # the evaluation frame rate the frames were decoded at


@dataclass
class Batch:
    """Consecutive frames ``start … start+n-1`` of one clip, with what the metrics declared.

    ``reference`` has the same length as ``generated`` (frames compared by index).
    ``identity`` / ``reference_identity`` are (n, D) float32 with NaN rows for frames that were
    not sampled or have no face; ``reference_identity`` is the portrait's embedding repeated
    when CSIM compares against the portrait."""

    start: int
    generated: np.ndarray
    reference: np.ndarray | None = None
    faces: FaceTrack | None = None
    reference_faces: FaceTrack | None = None
    identity: np.ndarray | None = None
    reference_identity: np.ndarray | None = None


@dataclass
class FrameMeans:
    """Float64 sums and counts per value name: the state of any metric that is a mean over
    frames. Merges by addition."""

    sums: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    def add(self, name: str, per_frame: np.ndarray) -> None:
        per_frame = np.asarray(per_frame, dtype=np.float64)
        self.sums[name] = self.sums.get(name, 0.0) + float(per_frame.sum())
        self.counts[name] = self.counts.get(name, 0) + len(per_frame)

    def merge(self, other: FrameMeans) -> FrameMeans:
        names = set(self.sums) | set(other.sums)
        return FrameMeans({n: self.sums.get(n, 0.0) + other.sums.get(n, 0.0) for n in names},
                          {n: self.counts.get(n, 0) + other.counts.get(n, 0) for n in names})

    def means(self) -> dict[str, float]:
        return {n: self.sums[n] / self.counts[n] for n in self.sums if self.counts[n]}


class Metric:
    """Base class; a subclass sets ``spec`` and overrides what it uses."""

    spec: ClassVar[MetricSpec]

    def __init__(self, settings: EvalSettings) -> None:
        self.settings = settings

    def weights(self) -> tuple[str, ...]:
        """Weight files this metric loads under these settings."""
        return self.spec.weights

    def value_names(self) -> tuple[str, ...]:
        return self.spec.values

    def protocol_fields(self) -> dict[str, Any]:
        """Protocol fields (``talkbench.protocol.Protocol``) this metric's value depends on."""
        return {}

    def load(self, models: ModelSource) -> None:
        """Load networks (from ``models``, which prefers caller-supplied ones)."""

    def new_state(self, clip: ClipInfo) -> Any:
        return FrameMeans()

    def update(self, state: Any, batch: Batch) -> None:
        raise NotImplementedError

    def merge(self, a: Any, b: Any) -> Any:
        return a.merge(b)

    def compute(self, state: Any) -> dict[str, float]:
        means = state.means()
        if not means:
            raise Unavailable("no frame to measure")
        return means


class DistributionMetric(Metric):
    """A metric of two sets of frames (FID, FVD): rows of features per clip, summed per side."""

    dims: ClassVar[int]
    window: ClassVar[int] = 1  # frames per feature row: batches start on a multiple of it

    def feature_rows(self, frames: np.ndarray, start: int) -> np.ndarray:
        """Feature rows for consecutive frames ``start …``: (k, dims), float64 of float32 values."""
        raise NotImplementedError

    def reference_window(self, frames: int, content_sha256: str) -> int | None:
        """Where the ground truth's single ``window``-frame clip starts, for a metric that takes
        one clip of each ground truth (StyleGAN-V's FVD); None: feature rows of every frame,
        like the generated side. ``frames`` is the decoder's predicted frame count."""
        return None

    def cache_fields(self) -> dict[str, Any]:
        """What the ground truth's feature rows depend on besides frames and weights."""
        return self.protocol_fields()

    def distance(self, generated, reference) -> float:
        """From the two sides' ``fid.GaussianStats``."""
        raise NotImplementedError

    def resampled_distance(self, generated, reference) -> float:
        """The same distance for a bootstrap replicate; may use a faster, mathematically equal
        form (FID's 2048² matrix square root costs a minute, its eigenvalue form seconds)."""
        return self.distance(generated, reference)


@dataclass
class ModelSource:
    """Networks by name: caller-supplied ones first (their weights are recorded as
    ``caller-supplied``), else built once per process with ``factory`` — once per content of
    the weight files, so a network re-imported mid-process is loaded again."""

    supplied: dict[str, object] = field(default_factory=dict)

    def get(self, name: str, factory: Callable[[], object], weight_names: tuple[str, ...] = ()) -> object:
        if name in self.supplied:
            return self.supplied[name]
        key = (name, tuple(weights.weight_sha256(w) for w in weight_names))
        if key not in _PROCESS_MODELS:
            _PROCESS_MODELS[key] = factory()
        return _PROCESS_MODELS[key]


_PROCESS_MODELS: dict[tuple, object] = {}


def clear_loaded_models() -> None:
    _PROCESS_MODELS.clear()
