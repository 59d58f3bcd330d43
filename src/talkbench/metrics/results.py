"""The records an evaluation returns, used alike by the CLI, the leaderboard and ``--json``.

``EvaluationReport`` (one per ``talkbench eval`` call) holds an ``EvaluationResult`` per method:
its ``ClipResult`` rows, the mean of each value over clips with a bootstrap 95% interval, the
FID/FVD distances (overall and per clip group), what was unavailable and why, the clips that
failed, timing and the ``Protocol``. ``to_dict`` gives the JSON documented by
``docs/schemas/evaluation-report.schema.json``; ``from_dict`` reads it back.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from talkbench.protocol import Protocol

SCHEMA = "talkbench-evaluation-report/2"


@dataclass
class FrameCounts:
    generated: int
    reference: int | None
    compared: int


@dataclass
class ClipResult:
    id: str
    method: str
    generated: str | None  # path; None when frames were given as an array
    reference: str | None
    frames: FrameCounts
    values: dict[str, float]
    unavailable: dict[str, str]  # metric → why it has no value for this clip
    faces: dict[str, int]  # frames without a face, frames each face metric used
    identity_reference: str | None = None  # what CSIM compared with: portrait / ground-truth-frame
    group: str = "all"
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    cached: bool = False  # read from the analysis cache, not measured in this run

    @property
    def frames_without_face(self) -> int | None:
        """Generated frames in which the face analysis found no face (skipped by every face
        metric); None when no metric looked for faces."""
        return self.faces.get("generated_frames_without_face")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ClipResult:
        return cls(**{**data, "frames": FrameCounts(**data["frames"])})


@dataclass
class Summary:
    """A mean over clips with its bootstrap interval (None below 2 clips)."""

    mean: float
    clips: int
    ci95: tuple[float, float] | None = None


@dataclass
class DistributionValue:
    value: float
    generated_samples: int
    reference_samples: int
    ci95: tuple[float, float] | None = None


@dataclass
class ClipError:
    id: str
    error: str


@dataclass
class Timing:
    seconds: float  # wall clock of the whole call
    clip_seconds: float  # summed over clips (over workers)
    cpu_seconds: float
    frames: int
    clips_cached: int
    workers: int
    engine: str

    @property
    def ms_per_frame(self) -> float | None:
        return 1000 * self.clip_seconds / self.frames if self.frames else None


@dataclass
class EvaluationResult:
    method: str
    protocol: Protocol
    clips: list[ClipResult]
    summary: dict[str, Summary]
    distribution: dict[str, DistributionValue]
    group_distribution: dict[str, dict[str, DistributionValue]]
    unavailable: dict[str, str]  # metric → why, for the whole evaluation
    errors: list[ClipError]
    timing: Timing

    @property
    def protocol_sha256(self) -> str:
        return self.protocol.sha256()

    def clip(self, clip_id: str) -> ClipResult:
        return next(c for c in self.clips if c.id == clip_id)

    def frames_without_face(self) -> tuple[int, int]:
        """(generated frames without a face, generated frames) summed over the clips whose
        faces were looked for."""
        looked = [c for c in self.clips if c.frames_without_face is not None]
        return sum(c.frames_without_face for c in looked), sum(c.frames.generated for c in looked)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["protocol"] = self.protocol.to_dict()
        data["protocol_sha256"] = self.protocol_sha256
        data["timing"]["ms_per_frame"] = self.timing.ms_per_frame
        return data

    @classmethod
    def from_dict(cls, data: dict) -> EvaluationResult:
        def interval(x):
            return tuple(x) if x is not None else None

        def dist(d):
            return DistributionValue(**{**d, "ci95": interval(d.get("ci95"))})

        timing = {k: v for k, v in data["timing"].items() if k != "ms_per_frame"}
        return cls(
            method=data["method"],
            protocol=Protocol.from_dict(data["protocol"]),
            clips=[ClipResult.from_dict(c) for c in data["clips"]],
            summary={k: Summary(**{**s, "ci95": interval(s.get("ci95"))}) for k, s in data["summary"].items()},
            distribution={k: dist(d) for k, d in data["distribution"].items()},
            group_distribution={g: {k: dist(d) for k, d in v.items()} for g, v in data["group_distribution"].items()},
            unavailable=dict(data["unavailable"]),
            errors=[ClipError(**e) for e in data["errors"]],
            timing=Timing(**timing),
        )


@dataclass
class EvaluationReport:
    evaluations: list[EvaluationResult] = field(default_factory=list)
    schema: str = SCHEMA

    def method(self, name: str) -> EvaluationResult:
        return next(e for e in self.evaluations if e.method == name)

    def to_dict(self) -> dict:
        return {"schema": self.schema, "evaluations": [e.to_dict() for e in self.evaluations]}

    @classmethod
    def from_dict(cls, data: dict) -> EvaluationReport:
        if data.get("schema") != SCHEMA:
            raise ValueError(f"not a {SCHEMA} report (schema {data.get('schema')!r})")
        return cls([EvaluationResult.from_dict(e) for e in data["evaluations"]])
