"""The audit's typed records: the items audited, the report every renderer reads, and the
comparison rows. ``to_json()`` gives exactly the objects of ``report.json`` (same keys, same
order); ``from_json()`` reads them back. docs/datasets/audit.md describes the fields."""

from __future__ import annotations

import types
from dataclasses import dataclass, field, fields
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar, Mapping, TypeVar, Union, get_args, get_origin, get_type_hints

from talkbench.errors import TalkbenchError

R = TypeVar("R", bound="Record")


class AuditError(TalkbenchError):
    pass


# ---------------------------------------------------------------- JSON of nested records


class Record:
    """A dataclass whose JSON is its fields in order, nested records and lists of them included.
    Fields named in ``OPTIONAL`` are left out of the JSON while they are None (the report has
    such keys only when they apply)."""

    OPTIONAL: ClassVar[tuple[str, ...]] = ()

    def to_json(self) -> dict:
        out = {}
        for f in fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if value is None and f.name in self.OPTIONAL:
                continue
            out[f.name] = _dump(value)
        return out

    @classmethod
    def from_json(cls: type[R], data: Mapping[str, Any]) -> R:
        hints = _hints(cls)
        return cls(**{f.name: _load(hints[f.name], data.get(f.name))  # type: ignore[call-arg]
                      for f in fields(cls) if f.name in data or f.name in cls.OPTIONAL})  # type: ignore[arg-type]


def _dump(value: Any) -> Any:
    if isinstance(value, Record):
        return value.to_json()
    if isinstance(value, list):
        return [_dump(x) for x in value]
    if isinstance(value, dict):
        return {k: _dump(v) for k, v in value.items()}
    return value


@lru_cache(maxsize=None)
def _hints(cls: type) -> dict[str, Any]:
    return get_type_hints(cls)


def _load(tp: Any, value: Any) -> Any:
    if value is None:
        return None
    origin = get_origin(tp)
    if origin is Union or origin is types.UnionType:
        inner = [a for a in get_args(tp) if a is not type(None)]
        return _load(inner[0], value) if len(inner) == 1 else value
    if isinstance(tp, type) and issubclass(tp, Record):
        return tp.from_json(value)
    if origin is list and get_args(tp):
        return [_load(get_args(tp)[0], x) for x in value]
    if origin is dict and get_args(tp):
        return {k: _load(get_args(tp)[1], v) for k, v in value.items()}
    return value


# ---------------------------------------------------------------- items


@dataclass
class AuditItem(Record):
    """One clip or file of the audited dataset (a row of ``clips_detail``)."""

    id: str
    path: str | None
    duration: float | None = None  # seconds
    label: str | None = None  # a known language (folder, manifest, samples.json), compared with LID
    dataset: str | None = None
    language: str | None = None
    probability: float | None = None
    top3: list = field(default_factory=list)
    speech_seconds: float | None = None
    no_speech: bool = False
    origin: str = ""  # catalog | cache | lid | error
    error: str | None = None
    emotion: str | None = None  # a catalog's emotion label (MEAD), reported as shares beside the languages
    intensity: int | None = None

    @property
    def has_language(self) -> bool:
        return bool(self.language) and not self.no_speech and self.error is None


@dataclass
class CatalogBuild(Record):
    """What a catalog says about its build beyond the accepted clips."""

    rejected_at_language_stage: dict[str, int]
    catalog_rows: int
    tags_from: dict[str, int]  # "engine / model" -> clips it tagged


# ---------------------------------------------------------------- numbers


@dataclass
class Totals(Record):
    items: int
    clips: int  # clips with detected speech (the shares are over these)
    hours: float
    all_hours: float
    no_speech: int
    errors: int
    low_confidence: int
    languages: int
    families: int
    missing_duration: int


@dataclass
class Shares(Record):
    """Indo-European share of ``n`` clips, by clips and by hours (None when there is nothing)."""

    n: int
    clips: float | None
    hours: float | None


@dataclass
class IndoEuropean(Record):
    clips: float | None
    hours: float | None
    clips_ci95: list[float | None]  # [low, high]
    hours_ci95: list[float | None]
    confident_only: Shares
    n: int


@dataclass
class LanguageRow(Record):
    code: str
    name: str
    family: str
    branch: str
    indo_european: bool
    clips: int
    hours: float
    low_confidence: int
    share_clips: float | None = None
    share_hours: float | None = None


@dataclass
class FamilyRow(Record):
    family: str
    indo_european: bool
    languages: int
    clips: int
    hours: float
    low_confidence: int
    share_clips: float | None = None
    share_hours: float | None = None
    low_confidence_share: float | None = None  # of the family's own clips


@dataclass
class NoSpeechClip(Record):
    id: str
    path: str | None
    speech_seconds: float | None


@dataclass
class NoSpeech(Record):
    count: int
    share: float | None  # of the readable items
    clips: list[NoSpeechClip]


@dataclass
class FamilyLowConfidence(Record):
    family: str
    clips: int
    low_confidence: int
    share: float | None


@dataclass
class LowConfidenceClip(Record):
    id: str
    path: str | None
    label: str | None
    language: str
    family: str
    probability: float | None
    top3: list


@dataclass
class LowConfidence(Record):
    threshold: float
    count: int
    share: float | None
    by_family: list[FamilyLowConfidence]
    clips: list[LowConfidenceClip]


@dataclass
class ItemError(Record):
    id: str
    path: str | None
    error: str | None


@dataclass
class LabelMiss(Record):
    """An item whose known language is not the one language ID found."""

    id: str
    path: str | None
    label: str
    label_name: str
    detected: str | None
    detected_name: str  # a language's name, or "no speech" / "error"
    probability: float | None
    top3: list
    error: str | None
    label_family: str
    detected_family: str | None
    same_family: bool
    crosses_indo_european: bool
    label_known: bool


@dataclass
class LabelStats(Record):
    labelled: int
    counts: dict[str, int]
    indo_european: Shares  # over clips with both a label and a detected language
    indo_european_all_labelled: Shares
    misses: list[LabelMiss]
    miss_rate: float | None
    ie_gained_by_misses: int
    ie_lost_by_misses: int
    explained_difference_clips: float | None  # ours - labels, by clips, that the misses account for
    unknown_labels: list[str]


@dataclass
class EmotionShare(Record):
    emotion: str
    clips: int = 0
    hours: float = 0.0
    share_clips: float | None = None
    share_hours: float | None = None


@dataclass
class IntensityShare(Record):
    intensity: int
    clips: int = 0
    hours: float = 0.0
    share_clips: float | None = None
    share_hours: float | None = None


@dataclass
class Summary(Record):
    """Every number of a report, from resolved items (``summarise``)."""

    OPTIONAL = ("emotions", "intensities")

    totals: Totals
    indo_european: IndoEuropean
    languages: list[LanguageRow]
    families: list[FamilyRow]
    unknown_languages: list[str]
    no_speech: NoSpeech
    low_confidence: LowConfidence
    errors: list[ItemError]
    labels: LabelStats | None
    emotions: list[EmotionShare] | None = None  # only datasets labelled with them (MEAD)
    intensities: list[IntensityShare] | None = None


# ---------------------------------------------------------------- the report


@dataclass
class Source(Record):
    OPTIONAL = ("rejected_at_language_stage", "catalog_rows", "tags_from")

    kind: str  # catalog | folder | files | items
    path: str
    labels_from_folders: bool
    rejected_at_language_stage: dict[str, int] | None = None  # catalogs only
    catalog_rows: int | None = None
    tags_from: dict[str, int] | None = None


@dataclass
class Settings(Record):
    engine: str
    model: str
    model_file: str | None
    model_sha256: str | None
    threshold: float
    seed: int
    bootstrap_resamples: int
    interval: str
    families_source: str


@dataclass
class LanguageSources(Record):
    """Where each item's language came from, and the cache used."""

    OPTIONAL = ("probed",)

    catalog: int = 0
    cache: int = 0
    lid: int = 0
    errors: int = 0
    lid_seconds: float = 0.0
    cache_path: str | None = None
    probed: int | None = None  # tagged items whose file was probed for its duration
    origins: dict[str, int] = field(default_factory=dict)


@dataclass
class PaperRow(Record):
    """A row of ``paper_language_shares.csv``: VQTalker's published share for a dataset."""

    dataset: str
    indo_european_pct: float
    kind: str  # measured | stated
    where: str
    aliases: list[str]


@dataclass
class CompareRow(Record):
    """One dataset in the layout of the paper's Table 6."""

    dataset: str
    indo_european_clips: float | None
    clips_ci95: list[float | None]
    indo_european_hours: float | None
    hours_ci95: list[float | None]
    paper_pct: float | None
    paper_kind: str | None
    clips: int
    hours: float
    no_speech: int
    low_confidence: int
    threshold: float
    engine: str
    model: str
    seed: int
    source: str


@dataclass
class AuditReport(Record):
    """The report: what was audited, with which settings, and every number."""

    OPTIONAL = ("emotions", "intensities", "seconds")

    title: str
    dataset: str
    source: Source
    settings: Settings
    language_sources: LanguageSources
    totals: Totals
    indo_european: IndoEuropean
    languages: list[LanguageRow]
    families: list[FamilyRow]
    unknown_languages: list[str]
    no_speech: NoSpeech
    low_confidence: LowConfidence
    errors: list[ItemError]
    labels: LabelStats | None
    emotions: list[EmotionShare] | None
    intensities: list[IntensityShare] | None
    paper: PaperRow | None
    by_dataset: list[CompareRow]
    created: str
    talkbench_version: str
    seconds: float | None = None  # wall time of the audit, set once its reports are written


@dataclass
class AuditResult:
    """A report with the items it counted and the files written (``report.json`` holds all three)."""

    report: AuditReport
    items: list[AuditItem]
    out_dir: Path | None = None
    files: dict[str, str] = field(default_factory=dict)

    @property
    def html(self) -> Path | None:
        return Path(self.files["html"]) if "html" in self.files else None

    def to_json(self) -> dict:
        """The content of ``report.json``."""
        return self.report.to_json() | {"clips_detail": [it.to_json() for it in self.items], "files": self.files}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AuditResult:
        return cls(report=AuditReport.from_json(data),
                   items=[AuditItem.from_json(x) for x in data.get("clips_detail", [])],
                   files=dict(data.get("files", {})))


@dataclass
class CompareResult(Record):
    """Several audits side by side (``compare.json``)."""

    OPTIONAL = ("files",)

    rows: list[CompareRow]
    created: str
    talkbench_version: str
    note: str
    files: dict[str, str] | None = None
