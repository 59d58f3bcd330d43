"""Benchmark specs shipped with the package, versioned like MTEB's ``TaskMetadata``.

Each ``<name>-v<version>.yaml`` here is one version of one benchmark: its clip list (id,
language, family, and, where the references ship with talkbench, their frame count and
sha256), tasks, main score, licence and citation. The spec pins ``clip_list_sha256``; loading
checks it, so editing a clip list in place fails loudly: a changed list is a new file with a
new version, and the old one gets ``superseded_by``. ``max_side``, ``max_frames``,
``max_seconds`` and ``max_decoded_pixels`` cap what a submission may hold (defaults derived
from the references); they are outside the pinned hash.

Clips resolve from the package (``sample``) or from a ``talkbench data build`` output directory
(``mnte``, ``hdtf-test``: the clip ids are looked up in its ``catalog.duckdb``).
"""

from __future__ import annotations

import hashlib
import json
import re
from importlib import resources
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from talkbench.clip import Clip
from talkbench.datasets.catalog import Catalog
from talkbench.errors import TalkbenchError
from talkbench.samples import load_sample_corpus
from talkbench.util import sha256_file

__all__ = [  # sha256_file: util's, still importable from here
    "INDO_EUROPEAN", "BenchmarkClip", "BenchmarkError", "BenchmarkSpec", "all_specs", "benchmark_names",
    "clip_list_sha256", "get_benchmark", "parse_spec", "resolve_clips", "sha256_file", "split_version",
]

INDO_EUROPEAN = "Indo-European"


class BenchmarkError(TalkbenchError):
    """A benchmark spec that is unknown, malformed, or whose clips cannot be found."""


class BenchmarkClip(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1)
    language: str = Field(min_length=2, max_length=3)
    family: str
    duration: float | None = None
    frames: int | None = None  # at the benchmark's fps, when the reference ships with talkbench
    reference_sha256: str | None = None
    emotion: str | None = None  # the clip's emotion label, MEAD's names (emotional benchmarks)
    intensity: int | None = None  # MEAD's level 1–3

    @property
    def indo_european(self) -> bool:
        return self.family == INDO_EUROPEAN

    def to_clip(self, video: Path, dataset: str, duration: float | None = None,
                provenance: dict | None = None) -> Clip:
        """This clip as the shared ``Clip`` record, its reference at ``video`` (absolute) in
        ``dataset``; ``duration`` (seconds) defaults to the spec's, else 0."""
        seconds = duration if duration is not None else (self.duration or 0.0)
        return Clip(id=self.id, dataset=dataset, language=self.language, duration=float(seconds), video=Path(video),
                    family=self.family, emotion=self.emotion, provenance=dict(provenance or {}))

    @classmethod
    def from_clip(cls, clip: Clip, frames: int | None = None, reference_sha256: str | None = None,
                  intensity: int | None = None) -> BenchmarkClip:
        """A spec entry for ``clip`` (what ``make_specs`` writes); ``frames`` and
        ``reference_sha256`` are pinned where the reference ships with talkbench."""
        return cls(id=clip.id, language=clip.language, family=clip.family, duration=clip.duration, frames=frames,
                   reference_sha256=reference_sha256, emotion=clip.emotion, intensity=intensity)


class BenchmarkSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    version: str
    description: str
    source: Literal["package:sample", "catalog"]
    dataset: str
    revision: str  # what the clip list was derived from, pinned
    tasks: list[Literal["speech-driven", "reconstruction"]]
    labels: list[str] = []  # per-clip labels its boards break values down by ("emotion")
    board_values: list[str] = []  # values its boards show that other boards hide (MEAD: M-LMD, F-LMD)
    main_score: str
    languages: list[str]
    fps: float = 25.0
    licence: str
    citation: str = ""
    selection: str = ""  # how the clip list was chosen, reproducibly
    superseded_by: str | None = None
    # What a submitted clip may be, refused from its headers before any frame is decoded
    # (leaderboard.submission). Not part of clip_list_sha256: tightening a cap is no new clip list.
    max_side: int = Field(default=1024, ge=256)  # largest width and height
    max_frames: int | None = Field(default=None, ge=1)  # per clip; None: its reference's frames + 2
    max_seconds: float | None = Field(default=None, gt=0)  # per clip; None: those frames / fps + 1 s
    max_decoded_pixels: int | None = Field(default=None, ge=1)  # whole submission; None: every clip at max_side², max frames
    clip_list_sha256: str
    clips: list[BenchmarkClip]

    @property
    def key(self) -> str:
        return f"{self.name}@{self.version}"

    def clip(self, clip_id: str) -> BenchmarkClip:
        for c in self.clips:
            if c.id == clip_id:
                return c
        raise KeyError(clip_id)


def clip_list_sha256(clips) -> str:
    """sha256 of the sorted (id, language, family, reference_sha256[, emotion, intensity]) list;
    the labels count where a clip has them (a relabelled clip is a new version)."""
    items = sorted((c.id, c.language, c.family, c.reference_sha256 or "")
                   + ((c.emotion, c.intensity) if c.emotion is not None else ()) for c in clips)  # fmt: skip
    return hashlib.sha256(json.dumps(items, separators=(",", ":")).encode()).hexdigest()


def _spec_files() -> list:
    root = resources.files(__name__)
    return sorted((e for e in root.iterdir() if e.name.endswith(".yaml")), key=lambda e: e.name)


def parse_spec(text: str, where: str) -> BenchmarkSpec:
    try:
        data = yaml.safe_load(text)
        spec = BenchmarkSpec.model_validate(data)
    except (yaml.YAMLError, ValidationError) as exc:
        raise BenchmarkError(f"{where}: not a valid benchmark spec ({exc})") from None
    actual = clip_list_sha256(spec.clips)
    if actual != spec.clip_list_sha256:
        raise BenchmarkError(
            f"{where}: the clip list of {spec.key} does not match its clip_list_sha256 "
            f"({actual[:12]}… vs {spec.clip_list_sha256[:12]}…); a changed clip list must be a "
            "new version (a new file), never an edit in place"
        )
    ids = [c.id for c in spec.clips]
    if len(set(ids)) != len(ids):
        raise BenchmarkError(f"{where}: duplicate clip ids in {spec.key}")
    return spec


def all_specs() -> list[BenchmarkSpec]:
    specs = [parse_spec(e.read_text(encoding="utf-8"), e.name) for e in _spec_files()]
    seen = set()
    for s in specs:
        if s.key in seen:
            raise BenchmarkError(f"benchmark {s.key} is defined twice")
        seen.add(s.key)
    return specs


def split_version(text: str) -> tuple[str, str | None]:
    """(name, version or None) from what a user typed: ``mead-emotion``, ``mead-emotion@1`` or
    ``mead-emotion-v1`` (the last only where no shipped benchmark has that whole name)."""
    if "@" in text:
        name, version = text.split("@", 1)
        return name, version
    versioned = re.fullmatch(r"(.+)-v(\d+)", text)
    if versioned and text not in benchmark_names():
        return versioned.group(1), versioned.group(2)
    return text, None


def get_benchmark(name: str, version: str | None = None) -> BenchmarkSpec:
    """A benchmark by name: the given version (``name@1``, ``name-v1``), or the current one
    (not superseded)."""
    if version is None:
        name, version = split_version(name)
    specs = [s for s in all_specs() if s.name == name]
    if not specs:
        names = sorted({s.name for s in all_specs()})
        raise BenchmarkError(f"unknown benchmark {name!r}; choose from {', '.join(names)}")
    if version is not None:
        for s in specs:
            if s.version == version:
                return s
        raise BenchmarkError(f"benchmark {name} has no version {version!r}; versions: {[s.version for s in specs]}")
    current = [s for s in specs if not s.superseded_by]
    return current[-1] if current else specs[-1]


def benchmark_names() -> list[str]:
    return sorted({s.name for s in all_specs()})


def resolve_clips(spec: BenchmarkSpec, data_dir: str | Path | None = None, verify: bool = True) -> list[Clip]:
    """The benchmark's clips as ``Clip`` records with absolute reference paths, in spec order.
    Package clips are checked against their pinned sha256 (``verify``)."""
    if spec.source == "package:sample":
        by_id = {c.id: c for c in load_sample_corpus()}
        out = []
        for bc in spec.clips:
            if bc.id not in by_id:
                raise BenchmarkError(f"benchmark {spec.key}: clip {bc.id} is not in the sample corpus")
            clip = by_id[bc.id]
            if verify and bc.reference_sha256 and sha256_file(clip.video) != bc.reference_sha256:
                raise BenchmarkError(
                    f"{clip.video}: sha256 differs from benchmark {spec.key}; the sample corpus "
                    "changed, so the benchmark needs a new version"
                )
            out.append(bc.to_clip(clip.video, clip.dataset, clip.duration, clip.provenance))
        return out

    if data_dir is None:
        raise BenchmarkError(
            f"benchmark {spec.key} needs the clips built by 'talkbench data build {spec.dataset} "
            "--out DIR'; pass that DIR (--data)"
        )
    with Catalog(data_dir, read_only=True) as catalog:
        rows = {r.clip_id: r for r in catalog.records() if r.accepted}
    missing = [c.id for c in spec.clips if c.id not in rows]
    if missing:
        raise BenchmarkError(
            f"{Path(data_dir) / 'catalog.duckdb'}: {len(missing)} of {len(spec.clips)} clips of "
            f"{spec.key} are not built (e.g. {', '.join(missing[:5])}); build them with "
            f"'talkbench data build {spec.dataset}'"
        )
    out = []
    for bc in spec.clips:
        r = rows[bc.id]
        out.append(bc.to_clip((Path(data_dir) / r.path).resolve(), spec.dataset, float(r.duration or 0.0),
                              {"catalog": str(Path(data_dir) / "catalog.duckdb")}))
    return out
