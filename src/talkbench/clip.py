"""The Clip record: one talking-face clip, wherever it came from (sample corpus, a built
dataset, a benchmark). Paths are absolute here; catalogs store them relative to their root
(``talkbench.datasets.catalog.CatalogRow.to_clip`` makes a Clip of a catalog row)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Mapping

from talkbench.errors import TalkbenchError


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

    def to_json(self) -> str:
        """``to_dict`` as JSON: every field, ``video`` as a string."""
        return json.dumps(self.to_dict(), sort_keys=False)

    @classmethod
    def from_dict(cls, data: Mapping) -> Clip:
        """The inverse of ``to_dict``; a key that is no field is an error (a misspelt one would
        otherwise be dropped silently)."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise TalkbenchError(f"clip record {data.get('id', '?')!r}: unknown field(s) {', '.join(unknown)}; "
                                 f"a clip has {', '.join(f.name for f in fields(cls))}")
        missing = [n for n in ("id", "dataset", "language", "duration", "video") if n not in data]
        if missing:
            raise TalkbenchError(f"clip record {data.get('id', '?')!r}: missing field(s) {', '.join(missing)}")
        values = dict(data)
        values["video"] = Path(values["video"])
        return cls(**values)

    @classmethod
    def from_json(cls, text: str) -> Clip:
        return cls.from_dict(json.loads(text))
