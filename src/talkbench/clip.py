"""The Clip record: one talking-face clip, wherever it came from (sample corpus, a built
dataset, a benchmark). Paths are absolute here; catalogs store them relative to their root."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Clip:
    id: str
    dataset: str
    language: str  # ISO 639-1
    duration: float  # seconds
    video: Path
    family: str = ""  # top-level language family; filled from the families table when known
    emotion: str | None = None  # the clip's emotion label (MEAD's names), on emotional benchmarks
    provenance: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["video"] = str(self.video)
        return data
